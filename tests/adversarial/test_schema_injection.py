"""Critical 1 (issue #11): SQL injection through a peer's schema.

p2 runs a modified node whose Describe replies put crafted SQL in a column type. Before the
fix, p1's planner pasted it into `CREATE TABLE` in a DuckDB with file access on: it wrote
files and read p1's private key back (through an error). Now the type is refused by the
strict type grammar, the planning DuckDB cannot touch files anyway, nothing secret shows in
any reply or log, and the refused schema is not cached: an honest reply is used at once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import fedsql
from fedsql import tls
from tests.adversarial.harness import running, standard_federation

pytestmark = pytest.mark.e2e

# the poisoned type closes the CREATE TABLE the planner builds and runs statements of its own
WRITE = "BIGINT); COPY (SELECT 'pwned') TO '{marker}' (FORMAT csv); CREATE TABLE zz (q INTEGER"
READ = ("BIGINT); SELECT CAST(string_agg(column0, '') AS INTEGER) FROM read_csv('{key}', header = false, "
        "delim = '|', quote = '', escape = '', columns = {{'column0': 'VARCHAR'}}); CREATE TABLE zz (q INTEGER")


def _count(fed, sql: str) -> list:
    with fed.connect("p1") as conn:
        cur = conn.cursor()
        cur.execute(sql)
        return cur.fetchall()


def test_a_crafted_describe_type_is_refused_touches_no_file_and_is_not_cached(tmp_path: Path) -> None:
    config, data = standard_federation(tmp_path)
    payload_file = tmp_path / "payload.txt"
    marker = tmp_path / "pwned.csv"
    with running(config, attacks={"p2": "schema_injection_describe"},
                 params={"p2": {"payload_file": str(payload_file)}}) as fed:
        key = tls.paths(fed.fed, "p1").private_key
        secrets = [line for line in key.read_text().splitlines() if len(line) >= 16 and "-----" not in line]
        assert secrets
        errors_seen = []
        for payload in (WRITE.format(marker=marker), READ.format(key=key)):
            payload_file.write_text(payload, encoding="utf-8")
            with pytest.raises(fedsql.Error) as info:
                _count(fed, "SELECT COUNT(*) FROM p2.t")
            errors_seen.append(info.value)
        assert not marker.exists(), "the victim's planner wrote a file"
        everything = "\n".join([str(e) for e in errors_seen] + [fed.node_log("p1"), fed.audit_text("p1")])
        for line in secrets:
            assert line not in everything, "p1's private key leaked"
        assert "Traceback" not in fed.node_log("p1")
        for err in errors_seen:  # a clear refusal naming the party
            assert isinstance(err, fedsql.ProgrammingError), err
            assert "party 'p2'" in str(err) and "invalid schema" in str(err)
        # the refused schema was not cached: once p2 answers honestly, the query runs
        payload_file.write_text("", encoding="utf-8")
        assert _count(fed, "SELECT COUNT(*) FROM p2.t") == [(data["p2.t"].num_rows,)]
        assert [r["poisoned"] for r in fed.attack_log("p2")][-1] is False
