"""Issue #11 (Low): the uniqueness check of an oblivious PK–FK join opened the *number* of
duplicate keys to every compute party; the leakage report did not mention it. Now one bit
("some key repeats") is opened, and the report says so."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from fedsql import errors
from tests.adversarial.harness import running, write_config

pytestmark = pytest.mark.e2e

CONFIG = """\
[federation]
name = "uniquebit"
compute = ["p1", "p2", "p3"]
deadline_seconds = 60

[parties.p1]
address = "127.0.0.1:{port1}"
[parties.p1.tables.c]
source = "p1_c.parquet"
columns = {{ cid = "join_key", v = "aggregate" }}
unique = ["cid"]

[parties.p2]
address = "127.0.0.1:{port2}"
[parties.p2.tables.s]
source = "p2_s.parquet"
columns = {{ cid = "join_key", w = "aggregate" }}

[parties.p3]
address = "127.0.0.1:{port3}"
"""

DUPLICATES = 6  # rows of p1.c whose cid repeats an earlier one, although p1 declared cid unique
TABLES = {
    "p1_c.parquet": pa.table({"cid": pa.array(list(range(1, 31)) + list(range(1, DUPLICATES + 1)), pa.int64()),
                              "v": pa.array(range(30 + DUPLICATES), pa.int64())}),
    "p2_s.parquet": pa.table({"cid": pa.array([i % 40 for i in range(90)], pa.int64()),
                              "w": pa.array(range(90), pa.int64())}),
}
JOIN = "SELECT COUNT(*), SUM(s.w) FROM p1.c AS c JOIN p2.s AS s ON c.cid = s.cid"


def test_a_false_unique_declaration_opens_one_bit_not_the_count(tmp_path: Path) -> None:
    config = write_config(tmp_path, CONFIG, TABLES)
    with running(config, attacks={"p3": "uniqueness_reveal_spy"}) as fed:
        with fed.connect("p1", mode="oblivious") as conn:
            cur = conn.cursor()
            cur.execute("EXPLAIN " + JOIN)
            assert any("whether the key declared unique on p1's side of the p1–p2 join repeats (one bit" in line
                       for line in cur.leakage), cur.leakage
            with pytest.raises(errors.DataError, match="declared unique .* has duplicates"):
                cur.execute(JOIN)
        opened = [r["opened"] for r in fed.attack_log("p3")]
        assert opened, "the spy saw no opened value"
        assert DUPLICATES not in opened and set(opened) <= {0, 1}, opened
