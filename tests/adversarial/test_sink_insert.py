"""Issue #14 item 4: `INSERT INTO sink.name SELECT …` puts the issuer's result into its own database.

A real federation (p1, p2, p3 with table `t`) whose party p1 configures a throw-away PostgreSQL 15
table as a sink. The SELECT runs as an ordinary federated query (policies hold); its rows land
in PostgreSQL equal to DuckDB over the pooled data. The test process, as a user of p1 and of p2,
tries to insert into sinks that are not theirs or not configured, and into a relation the
reader may not write: every attempt is a clear error, nothing is written, no password shows.
On the code before this change `INSERT INTO sink.x` was refused ("writes only to your own
scratch space"), so these tests fail there.
"""

from __future__ import annotations

from typing import Any, Iterator

import duckdb
import pytest

import fedsql
from tests import pg_server
from tests.adversarial.harness import running, standard_federation

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(pg_server.available() is not None, reason=pg_server.available() or "")]

QUERY = "SELECT k AS region, COUNT(*) AS n, SUM(x) AS sx FROM t GROUP BY k"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, Any], Any]]:
    directory = tmp_path_factory.mktemp("sinkfed")
    config, data = standard_federation(directory)
    with pg_server.postgres_server() as pg:
        pg.psql("CREATE DATABASE bank")
        pg.psql("CREATE TABLE public.results (region text, n bigint, sx bigint); "
                "CREATE TABLE public.readonly (region text, n bigint, sx bigint); "
                f"GRANT INSERT, SELECT ON public.results TO {pg_server.READER}; "
                f"GRANT SELECT ON public.readonly TO {pg_server.READER}", db="bank")
        text = config.read_text()
        sinks = (f'\n[parties.p1.sinks.results]\nsource = "{pg.url("bank")}"\ntable = "public.results"\n'
                 f'[parties.p1.sinks.readonly]\nsource = "{pg.url("bank")}"\ntable = "public.readonly"\n')
        marker = "[parties.p2]"
        config.write_text(text.replace(marker, sinks + marker, 1), encoding="utf-8")
        secrets = config.parent / ".fedsql" / "p1" / "secrets.toml"
        secrets.parent.mkdir(parents=True, exist_ok=True)
        secrets.write_text(f'[tables.sink_results]\npassword = "{pg_server.READER_PASSWORD}"\n'
                           f'[tables.sink_readonly]\npassword = "{pg_server.READER_PASSWORD}"\n')
        secrets.chmod(0o600)
        with running(config) as running_fed:
            yield running_fed, data, pg


def _rows(pg: Any, sql: str) -> list[tuple]:
    out = pg.psql(sql, db="bank").strip()
    return sorted((tuple(line.split("|")) for line in out.splitlines()), key=repr) if out else []


def test_insert_into_sink_equals_duckdb(fed: tuple[Any, dict[str, Any], Any]) -> None:
    running_fed, data, pg = fed
    db = duckdb.connect()
    db.register("t", data["t"])
    want = sorted(((r or "", str(n), str(int(s))) for r, n, s in db.execute(QUERY).fetchall()), key=repr)
    with running_fed.connect("p1") as conn:
        cur = conn.execute(f"INSERT INTO sink.results {QUERY}")
        assert cur.rowcount == len(want)
        assert any("inserts the result into its own database (sink.results)" in item for item in cur.leakage)
        with pytest.raises(fedsql.PolicyViolation):  # the SELECT obeys the owners' policies; nothing written
            conn.execute("INSERT INTO sink.results SELECT CAST(id AS VARCHAR), 1, 1 FROM t")
        conn.execute("CREATE OR REPLACE TABLE scratch.one AS SELECT 'scratch' AS region, 1 AS n, 2 AS sx")
        assert conn.execute("INSERT INTO sink.results SELECT * FROM scratch.one").rowcount == 1
    got = _rows(pg, "SELECT coalesce(region, ''), n, sx FROM public.results")
    assert got == sorted(want + [("scratch", "1", "2")], key=repr)


def test_sink_refusals(fed: tuple[Any, dict[str, Any], Any]) -> None:
    running_fed, _, pg = fed
    before = _rows(pg, "SELECT * FROM public.results")
    with running_fed.connect("p1") as conn:
        with pytest.raises(fedsql.UnknownObjectError, match="no sink 'elsewhere' for party 'p1'; its sinks: "
                                                            "sink.readonly, sink.results"):
            conn.execute(f"INSERT INTO sink.elsewhere {QUERY}")
        with pytest.raises(fedsql.NotSupportedError, match="takes no column list"):
            conn.execute(f"INSERT INTO sink.results (region, n, sx) {QUERY}")
        with pytest.raises(fedsql.OperationalError, match="refused to insert the rows") as info:
            conn.execute(f"INSERT INTO sink.readonly {QUERY}")  # SELECT but no INSERT grant
        assert pg_server.READER_PASSWORD not in str(info.value)
        with pytest.raises(fedsql.OperationalError, match="'k', which the relation does not have"):
            conn.execute("INSERT INTO sink.results SELECT k, COUNT(*) AS n FROM t GROUP BY k")
        with pytest.raises(fedsql.NotSupportedError, match="only to your own scratch space"):
            conn.execute("UPDATE sink.results SET n = 0")
    with running_fed.connect("p2") as other:  # p1's sink is not p2's
        with pytest.raises(fedsql.UnknownObjectError, match="no sink 'results' for party 'p2'; its sinks: none"):
            other.execute(f"INSERT INTO sink.results {QUERY}")
    assert _rows(pg, "SELECT * FROM public.results") == before
    assert _rows(pg, "SELECT * FROM public.readonly") == []
    for party in ("p1", "p2", "p3"):
        assert pg_server.READER_PASSWORD not in running_fed.node_log(party)
