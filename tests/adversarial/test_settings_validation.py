"""Issue #11 (Low): session settings are checked wherever they enter. A settings map that never
went through SET — a client's Execute, a peer's RunRequest — used to be planned as given: an
unknown mode such as 'bogus' ran as reveal mode (no shuffle) at every party."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pytest

from fedsql import errors
from fedsql.proto import node_pb2 as pb
from planner.compile import compile_query
from tests.adversarial.harness import running, standard_federation

pytestmark = pytest.mark.e2e

SQL = "SELECT k, COUNT(*) FROM t GROUP BY k"


def _plan_hash(fed, data, settings: dict[str, str]) -> str:
    """The hash an honest issuer would send (today's planner accepted the bad settings)."""
    def schema_of(party: str, table: str):
        db = duckdb.connect()
        db.register("x", data[f"{party}.{table}"])
        return tuple((r[0], r[1]) for r in db.execute("DESCRIBE SELECT * FROM x").fetchall())

    try:
        return compile_query(SQL, fed, "p1", settings, schema_of).plan.hash
    except errors.Error:
        return "0" * 64


@pytest.mark.parametrize("settings, says", [
    ({"fedsql.mode": "bogus"}, "fedsql.mode must be one of reveal, sizes, oblivious"),
    ({"fedsql.shuffle": "off"}, "unknown setting 'fedsql.shuffle'; the settings are: fedsql.mode, fedsql.epsilon"),
])
def test_bad_settings_are_refused_by_the_issuer_and_by_every_participant(tmp_path: Path, settings, says) -> None:
    config, data = standard_federation(tmp_path)
    with running(config) as fed:
        with fed.connect("p1") as conn:  # a client that bypasses SET
            conn.settings.update(settings)
            with pytest.raises(errors.Error, match=says):
                conn.cursor().execute(SQL)
        # the test process acting as p1's node: p2 checks the settings of the RunRequest itself
        reply = fed.stub("p1", "p2").Run(pb.RunRequest(
            query_id="bad-settings", issuer="p1", sql=SQL, settings=settings,
            plan_hash=_plan_hash(fed.fed, data, settings), deadline_unix=time.time() + 3), timeout=30)
        assert not reply.ok
        assert reply.error.message.startswith("the settings sent by 'p1' are invalid: "), reply.error.message
        assert says in reply.error.message and reply.error.kind in ("SqlSyntaxError", "UnsupportedSql")
        assert "Traceback" not in reply.error.message
