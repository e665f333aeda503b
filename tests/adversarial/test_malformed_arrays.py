"""Issue #18 item 4: peer arrays are protobuf, every field checked as untrusted.

A modified compute party p2 sends malformed share traffic once the plan is agreed. The
issuer's query fails within seconds with an error that names p2 and says the message was
malformed (never a share's bytes), and p1's node keeps serving. "trailing" fails without the
data-length check (the extra bytes would be ignored and the query would succeed), "bool"
without the 0/1 check, "header" without the header-size limit (millions of entries parsed).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fedsql import errors
from tests.adversarial.harness import running, standard_federation

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("how, reason", [
    ("trailing", "truncated or trailing bytes"),
    ("bool", "other than 0 or 1"),
    ("header", "header has"),
])
def test_malformed_share_traffic_fails_the_query_naming_the_sender(tmp_path: Path, how: str, reason: str) -> None:
    config, data = standard_federation(tmp_path)
    with running(config, attacks={"p2": "malformed_arrays"}, params={"p2": {"how": how}}) as fed:
        with fed.connect("p1") as conn:
            cur = conn.cursor()
            started = time.monotonic()
            with pytest.raises(errors.Error) as err:
                cur.execute("SELECT k, SUM(x) FROM t GROUP BY k")
            assert time.monotonic() - started < 60
            text = str(err.value)
            assert "party 'p2' sent a malformed message" in text and reason in text, text
            assert "\\x07" not in text and "\\x00" not in text
            assert any(r.get("sent") for r in fed.attack_log("p2")), "the attack never sent share traffic"
            cur.execute("SELECT COUNT(*) FROM p1.t")  # p1's node still serves (a query p2 is no part of)
            assert cur.fetchone()[0] == data["p1.t"].num_rows
