"""DB-API: parameter substitution, types, cursor semantics; then the same against real nodes.

The first part needs no node: the cursor is driven by a stub client whose `stream` decodes
canned results from the node's own event encoding (fedsql/result_meta.py), as `NodeClient.stream`
does.
The end-to-end part (marked `e2e`) uses the session federation of conftest.py.
"""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import fedsql
from connectors.dbapi import Connection, sql_literal, substitute_parameters
from fedsql.launcher import free_ports

# -- parameters ------------------------------------------------------------------


def test_qmark_substitution_skips_quotes_and_comments() -> None:
    sql = "SELECT '?', \"?\", ? -- ?\n/* ? */ FROM t WHERE a = ? AND b::int > 0"
    out = substitute_parameters(sql, [1, "x"])
    assert out == "SELECT '?', \"?\", 1 -- ?\n/* ? */ FROM t WHERE a = 'x' AND b::int > 0"


def test_named_substitution() -> None:
    out = substitute_parameters("SELECT :a, :b, :a FROM t", {"a": 2, "b": None})
    assert out == "SELECT 2, NULL, 2 FROM t"


@pytest.mark.parametrize(
    "value, literal",
    [
        (None, "NULL"),
        (True, "TRUE"),
        (False, "FALSE"),
        (-5, "-5"),
        (2**70, str(2**70)),
        (1.5, "1.5"),
        (decimal.Decimal("-12.30"), "-12.30"),
        ("o'clock; DROP TABLE t --", "'o''clock; DROP TABLE t --'"),
        (dt.date(2024, 2, 29), "DATE '2024-02-29'"),
        (dt.datetime(2024, 2, 29, 13, 5, 1), "TIMESTAMP '2024-02-29 13:05:01'"),
        (dt.time(13, 5), "TIME '13:05:00'"),
        (b"\x00\xff", "CAST('\\x00\\xFF' AS BLOB)"),
        (float("nan"), "CAST('nan' AS DOUBLE)"),
    ],
)
def test_literals(value: Any, literal: str) -> None:
    assert sql_literal(value) == literal


def test_injection_stays_a_string() -> None:
    out = substitute_parameters("SELECT * FROM t WHERE k = ?", ["' OR 1=1 --"])
    assert out == "SELECT * FROM t WHERE k = ''' OR 1=1 --'"


@pytest.mark.parametrize(
    "sql, params",
    [
        ("SELECT ?, ?", [1]),
        ("SELECT ?", [1, 2]),
        ("SELECT :a", {"b": 1}),
        ("SELECT ?", {"a": 1}),
        ("SELECT ?", "x"),
    ],
)
def test_parameter_mismatch(sql: str, params: Any) -> None:
    with pytest.raises(fedsql.ProgrammingError):
        substitute_parameters(sql, params)


def test_unsupported_parameter_type() -> None:
    with pytest.raises(fedsql.NotSupportedError):
        sql_literal(object())


# -- module surface ----------------------------------------------------------------


def test_module_globals() -> None:
    assert fedsql.apilevel == "2.0"
    assert fedsql.threadsafety == 1
    assert fedsql.paramstyle == "qmark"
    assert isinstance(fedsql.__version__, str)
    for name in ("Warning", "Error", "InterfaceError", "DatabaseError", "DataError", "OperationalError",
                 "IntegrityError", "InternalError", "ProgrammingError", "NotSupportedError"):
        cls = getattr(fedsql, name)
        assert issubclass(cls, Exception)
        assert getattr(Connection, name) is cls
    assert issubclass(fedsql.PolicyViolation, fedsql.ProgrammingError)
    assert issubclass(fedsql.PartyUnavailable, fedsql.OperationalError)


def test_type_objects() -> None:
    assert fedsql.STRING == "VARCHAR"
    assert fedsql.NUMBER == "DECIMAL(10,2)"
    assert fedsql.NUMBER == "BIGINT"
    assert fedsql.DATETIME == "DATE"
    assert fedsql.BINARY == "BLOB"
    assert fedsql.STRING != "BIGINT"
    assert fedsql.Date(2024, 1, 2) == dt.date(2024, 1, 2)
    assert fedsql.Binary(b"x") == b"x"
    assert isinstance(fedsql.TimestampFromTicks(0), dt.datetime)


# -- cursor semantics over a stub client -------------------------------------------------


class StubClient:
    """Stands in for NodeClient: records SQL, streams canned results (in batches of two rows)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, str]]] = []
        self.closed = False
        self.streams: list[Any] = []

    def stream(self, sql: str, settings: dict[str, str], timeout: Any = None, on_progress: Any = None) -> Any:
        from fedsql import result_meta

        self.sent.append((sql, dict(settings)))
        if sql.upper().startswith("SET"):
            events = result_meta.result_events(None, "set", parties={"p1"}, settings={"fedsql.mode": "reveal"})
        elif sql.upper().startswith("FAIL"):
            raise fedsql.PolicyViolation("h2.t.id is private")
        else:
            table = pa.table({
                "k": ["a", "b", None, "d", "e"],
                "n": pa.array([1, 2, 3, 4, 5], pa.int64()),
                "c": pa.array([decimal.Decimal("1.50")] * 5, pa.decimal128(10, 2)),
            })
            events = result_meta.result_events(
                table, "rows", parties={"p1"}, settings={},
                columns=[("k", "VARCHAR"), ("n", "BIGINT"), ("c", "DECIMAL(10,2)")],
                leakage=["sizes of p1.t, p2.t to all parties"])
        events = list(events)
        if len(events) > 2:  # the rows as batches of two, as a large result arrives
            table = pa.ipc.open_stream(b"".join(e.chunk.arrow_ipc for e in events[1:-1])).read_all()
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                for batch in table.to_batches(max_chunksize=2):
                    writer.write_batch(batch)
            from fedsql.proto import node_pb2 as pb

            events[1:-1] = [pb.ExecuteEvent(chunk=pb.ResultChunk(arrow_ipc=sink.getvalue().to_pybytes()))]
        result = result_meta.ResultStream(events, "stub node", cancel=lambda reason: None)
        self.streams.append(result)
        return result

    def close(self) -> None:
        self.closed = True


@pytest.fixture()
def stub_conn() -> Connection:
    return Connection(StubClient(), "p1")


def test_description_and_fetch(stub_conn: Connection) -> None:
    cur = stub_conn.cursor()
    assert cur.description is None and cur.rowcount == -1
    assert cur.execute("SELECT k, n, c FROM t") is cur
    assert [d[0] for d in cur.description] == ["k", "n", "c"]
    assert all(len(d) == 7 for d in cur.description)
    assert cur.description[1][1] == fedsql.NUMBER
    assert cur.description[0][1] == fedsql.STRING
    assert cur.description[2][4:6] == (10, 2)
    assert cur.rowcount == 5
    assert cur.leakage == ["sizes of p1.t, p2.t to all parties"]
    assert cur.columns_meta[2]["type"] == "DECIMAL(10,2)"
    assert cur.fetchone() == ("a", 1, decimal.Decimal("1.50"))
    assert cur.arraysize == 1
    assert len(cur.fetchmany()) == 1
    assert [r[1] for r in cur.fetchmany(2)] == [3, 4]
    assert [r[1] for r in cur.fetchall()] == [5]
    assert cur.fetchone() is None
    assert cur.fetchmany(3) == []
    assert cur.fetchall() == []
    assert cur.fetch_arrow_table().num_rows == 0  # the rows not fetched yet, as in DuckDB
    assert cur.fetch_arrow_table().column_names == ["k", "n", "c"]


def test_fetches_read_one_batch_at_a_time(stub_conn: Connection) -> None:
    """Rows are converted a batch at a time; Arrow fetches hand out the rows not fetched yet."""
    cur = stub_conn.cursor()
    cur.execute("SELECT k, n, c FROM t")
    result = stub_conn._client.streams[-1]  # type: ignore[attr-defined]
    assert result.rows_received == 0 and cur.rowcount == 5  # the count came with the header
    assert cur.fetchone()[1] == 1 and result.rows_received == 2  # one batch of two read
    assert cur.fetch_arrow_table().column("n").to_pylist() == [2, 3, 4, 5]
    cur.execute("SELECT k, n, c FROM t")
    assert [r[1] for r in cur.fetchmany(3)] == [1, 2, 3]
    reader = cur.fetch_record_batch()
    assert [b.num_rows for b in reader] == [1, 1]  # the rest of the batch (4), then the last batch (5)
    cur.execute("SELECT k, n, c FROM t")
    first = stub_conn._client.streams[-1]  # type: ignore[attr-defined]
    cur.execute("SELECT k, n, c FROM t")  # a new execute stops the previous stream
    assert first.done and not stub_conn._client.streams[-1].done  # type: ignore[attr-defined]
    cur.close()
    assert stub_conn._client.streams[-1].done  # type: ignore[attr-defined]


def test_iteration_and_executemany(stub_conn: Connection) -> None:
    cur = stub_conn.cursor()
    cur.execute("SELECT * FROM t WHERE n > ?", (1,))
    assert [r[1] for r in cur] == [1, 2, 3, 4, 5]
    cur.executemany("SELECT * FROM t WHERE n > ?", [(1,), (2,)])
    assert cur.rowcount == 10
    sent = [s for s, _ in stub_conn._client.sent]  # type: ignore[attr-defined]
    assert sent[-2:] == ["SELECT * FROM t WHERE n > 1", "SELECT * FROM t WHERE n > 2"]


def test_set_updates_session_settings(stub_conn: Connection) -> None:
    cur = stub_conn.cursor()
    cur.execute("SET fedsql.mode = 'reveal'")
    assert cur.description is None and cur.rowcount == -1
    with pytest.raises(fedsql.ProgrammingError):
        cur.fetchall()
    assert stub_conn.settings == {"fedsql.mode": "reveal"}
    cur.execute("SELECT 1")
    assert stub_conn._client.sent[-1][1] == {"fedsql.mode": "reveal"}  # type: ignore[attr-defined]


def test_errors_and_closing(stub_conn: Connection) -> None:
    cur = stub_conn.cursor()
    with pytest.raises(fedsql.ProgrammingError, match="private"):
        cur.execute("FAIL")
    with pytest.raises(fedsql.ProgrammingError):
        cur.fetchone()
    stub_conn.commit()
    with pytest.raises(fedsql.NotSupportedError):
        stub_conn.rollback()
    cur.close()
    with pytest.raises(fedsql.InterfaceError):
        cur.execute("SELECT 1")
    with stub_conn as c:
        assert c is stub_conn
    assert stub_conn.closed and stub_conn._client.closed  # type: ignore[attr-defined]
    with pytest.raises(fedsql.InterfaceError):
        stub_conn.cursor()


# -- connecting without a node ----------------------------------------------------------------


def _config_with_free_ports(tmp_path: Path) -> Path:
    ports = free_ports(3)
    text = "[federation]\nname = 'x'\n" + "".join(
        f"[parties.p{i}]\naddress = '127.0.0.1:{port}'\n" for i, port in enumerate(ports, 1)
    )
    path = tmp_path / "federation.toml"
    path.write_text(text)
    return path


def test_connect_to_a_party_that_is_not_running(tmp_path: Path) -> None:
    config = _config_with_free_ports(tmp_path)
    from fedsql.config import load_config
    from fedsql.tls import create_keys

    create_keys(load_config(config), "p2")  # without keys: a ConfigError naming `fedsql keys`
    with pytest.raises(fedsql.PartyUnavailable) as info:
        fedsql.connect(str(config), party="p2")
    message = str(info.value)
    assert "p2" in message and "fedsql up" in message


def test_connect_unknown_party_or_config(tmp_path: Path) -> None:
    config = _config_with_free_ports(tmp_path)
    with pytest.raises(fedsql.ConfigError, match="p9"):
        fedsql.connect(str(config), party="p9")
    with pytest.raises(fedsql.ConfigError, match="not found"):
        fedsql.connect(str(tmp_path / "missing.toml"), party="p1")


# -- against real nodes -------------------------------------------------------------------------

e2e = pytest.mark.e2e


@e2e
def test_e2e_count_and_description(conn: Any, reference: Any) -> None:
    cur = conn.cursor()
    cur.execute("SELECT COUNT(*) AS n FROM t")
    assert [d[0] for d in cur.description] == ["n"]
    assert cur.description[0][1] == fedsql.NUMBER
    assert cur.rowcount == 1
    assert cur.fetchall() == [(reference("SELECT COUNT(*) AS n FROM t").column(0)[0].as_py(),)]
    assert isinstance(cur.leakage, list)


@e2e
def test_e2e_parameters_and_fetch(conn: Any, reference: Any) -> None:
    cur = conn.cursor()
    cur.execute("SELECT k, COUNT(*) AS n, SUM(x) AS s FROM t WHERE x > ? GROUP BY k ORDER BY k", [0])
    expected = reference("SELECT k, COUNT(*) AS n, SUM(x) AS s FROM t WHERE x > 0 GROUP BY k ORDER BY k")
    assert cur.rowcount == expected.num_rows
    first = cur.fetchone()
    assert first == tuple(expected.to_pylist()[0].values())
    got = cur.fetch_arrow_table()  # the rows not fetched yet
    assert got.column_names == ["k", "n", "s"]
    assert [first] + [tuple(r.values()) for r in got.to_pylist()] == [tuple(r.values()) for r in expected.to_pylist()]
    assert cur.fetchmany(100) == []


@e2e
def test_e2e_private_column_is_refused(conn: Any) -> None:
    cur = conn.cursor()
    with pytest.raises(fedsql.ProgrammingError) as info:
        cur.execute("SELECT id FROM t")
    assert "id" in str(info.value)
    cur.execute("SELECT COUNT(*) FROM t")  # the node keeps serving
    assert cur.fetchone() is not None


@e2e
def test_e2e_syntax_error_and_unknown_table(conn: Any) -> None:
    cur = conn.cursor()
    with pytest.raises(fedsql.ProgrammingError):
        cur.execute("SELEC COUNT(*) FROM t")
    with pytest.raises(fedsql.ProgrammingError):
        cur.execute("SELECT COUNT(*) FROM no_such_table")


@e2e
def test_e2e_explain(conn: Any) -> None:
    cur = conn.cursor()
    cur.execute("EXPLAIN SELECT COUNT(*) FROM t")
    assert cur.meta.get("kind") == "explain"
    assert [d[0] for d in cur.description] == ["plan"]
    assert len(cur.fetchall()) >= 1
