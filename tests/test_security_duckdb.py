"""Issue #11 (Critical 1, Low): the type grammar, checked Describe replies, locked DuckDBs,
and statements the planner refuses because DuckDB would read them differently."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fedsql import errors
from fedsql.config import parse_config
from fedsql.locked_duckdb import DuckDBProgrammingError, for_remote, open_locked
from planner.compile import compile_query
from planner.parse import parse_statement
from plan.schemas import duckdb_type, parse_describe_reply
from planner.validate import describe

ALL_TYPES = """a BOOLEAN, b TINYINT, c SMALLINT, d INTEGER, e BIGINT, f HUGEINT, g UTINYINT, h USMALLINT,
 i UINTEGER, j UBIGINT, k UHUGEINT, l FLOAT, m DOUBLE, n VARCHAR, o BLOB, p DATE, q TIME, r TIMESTAMP,
 s TIMESTAMP_S, t TIMESTAMP_MS, u TIMESTAMP_NS, v TIMESTAMPTZ, w TIMETZ, x INTERVAL, y UUID, z BIT,
 aa DECIMAL(10,2), ab DECIMAL(38,0), ac INTEGER[], ad VARCHAR[3], ae STRUCT(a INTEGER, "B c" VARCHAR, "q""x" INT),
 af MAP(VARCHAR, INTEGER[]), ag UNION(n INTEGER, s VARCHAR), ai VARINT, aj JSON, ak INTEGER[][], al DECIMAL,
 an TIME_NS, ao STRUCT(x STRUCT(y INTEGER))"""


def test_every_type_duckdb_describes_is_accepted_unchanged() -> None:
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t ({ALL_TYPES})")
    rows = con.execute("DESCRIBE t").fetchall() + con.execute(
        "DESCRIBE SELECT NULL AS a, [] AS b, {} AS c, map() AS d").fetchall()
    for _, typ, *_ in rows:
        assert duckdb_type(typ) == typ


@pytest.mark.parametrize("text", [
    "BIGINT); COPY (SELECT 1) TO '/tmp/x.csv'; CREATE TABLE z (q INTEGER",
    "VARCHAR, extra INTEGER", "INTEGER DEFAULT 1", "INTEGER CHECK (1)", "VARCHAR COLLATE nocase",
    "ENUM('a', 'b')", "INTEGER -- c", "INTEGER /* c */", "main.mytype", "VARCHAR(10)", "DECIMAL(99,2)",
    "INTEGER[", "STRUCT(a INTEGER", "INTEGER\x00", "", "x" * 5000, "STRUCT(a " * 20 + "INTEGER" + ")" * 20,
])
def test_crafted_types_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        duckdb_type(text)


def test_a_quoted_struct_field_stays_one_quoted_name() -> None:
    typ = duckdb_type('STRUCT("a"" INTEGER); DROP" INTEGER)')
    con = open_locked()
    con.execute(f"CREATE TABLE t (c {typ})")  # one column, one struct field: nothing else ran
    assert [r[1] for r in con.execute("DESCRIBE t").fetchall()] == [typ]


@pytest.mark.parametrize("payload, why", [
    ("not json", "not JSON"),
    (json.dumps({"u": [["a", "INTEGER"]]}), "exactly the table"),
    (json.dumps({"t": [["a", "INTEGER"]], "u": []}), "exactly the table"),
    (json.dumps({"t": []}), "1 to"),
    (json.dumps({"t": [["a", "INTEGER", "x"]]}), "pair"),
    (json.dumps({"t": [["a", "INTEGER"], ["A", "INTEGER"]]}), "twice"),
    (json.dumps({"t": [["a\nb", "INTEGER"]]}), "control"),
    (json.dumps({"t": [["a", 7]]}), "non-empty string"),
    (json.dumps({"t": [["a", "INTEGER); DROP TABLE x; --"]]}), "unexpected"),
    (json.dumps({"t": [["a", "INTEGER"]] * 5000}), "1 to"),
])
def test_describe_replies_are_checked_in_full(payload: str, why: str) -> None:
    with pytest.raises(errors.ProgrammingError, match=why) as info:
        parse_describe_reply("p2", "t", payload)
    assert "party 'p2'" in str(info.value)


def test_a_valid_describe_reply_gives_canonical_types() -> None:
    schema = parse_describe_reply("p2", "t", json.dumps({"t": [["a", "decimal(10, 2)"], ["b", "varchar[]"]]}))
    assert schema == (("a", "DECIMAL(10,2)"), ("b", "VARCHAR[]"))


def test_planning_ddl_never_takes_an_unparsed_type() -> None:
    with pytest.raises(errors.ProgrammingError, match="not a plain DuckDB type"):
        describe("SELECT * FROM t", {"t": (("a", "INTEGER); SELECT 1; CREATE TABLE z (q INTEGER"),)})


def test_a_locked_duckdb_reads_no_file_and_keeps_its_settings(tmp_path: Path) -> None:
    allowed = tmp_path / "ok.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), allowed)
    other = tmp_path / "secret.csv"
    other.write_text("secret\nvalue\n")
    con = open_locked([allowed], memory_limit_mb=256)
    assert con.execute(f"SELECT SUM(a) FROM read_parquet('{allowed.resolve()}')").fetchall() == [(3,)]
    for sql in (f"SELECT * FROM read_csv('{other}')", f"COPY (SELECT 1) TO '{tmp_path / 'w.csv'}'",
                f"ATTACH '{tmp_path / 'x.db'}'", "LOAD httpfs"):
        with pytest.raises(duckdb.PermissionException):
            con.execute(sql)
    for sql in ("SET enable_external_access = true", "SET lock_configuration = false", "SET memory_limit = '8GB'"):
        with pytest.raises(duckdb.InvalidInputException, match="locked"):
            con.execute(sql)
    assert not (tmp_path / "w.csv").exists()
    local_table = pa.table({"z": [1]})  # noqa: F841 - a Python variable SQL must not see
    with pytest.raises(duckdb.CatalogException):
        con.execute("SELECT * FROM local_table")


def _fed(tmp_path: Path):
    pq.write_table(pa.table({"a": [1, 2, 3], "s": ["x", "y", "z"]}), tmp_path / "a.parquet")
    return parse_config(f"""
[federation]
name = "unit"
[parties.h1]
address = "127.0.0.1:7101"
[parties.h1.tables.t]
source = "{tmp_path / 'a.parquet'}"
columns = {{ a = "aggregate", s = "public" }}
[parties.h2]
address = "127.0.0.1:7102"
[parties.h2.tables.t]
source = "{tmp_path / 'a.parquet'}"
columns = {{ a = "aggregate", s = "public" }}
[parties.h3]
address = "127.0.0.1:7103"
""", tmp_path / "unit.toml")


def test_the_owners_duckdb_is_locked(tmp_path: Path) -> None:
    from executors.local_duckdb import LocalExecutor

    executor = LocalExecutor(_fed(tmp_path).party("h1"), max_memory_mb=512)
    assert executor.query("SELECT SUM(a) AS s FROM t").to_pylist() == [{"s": 6}]
    locked = executor.query("SELECT current_setting('lock_configuration') AS l, "
                            "current_setting('enable_external_access') AS e").to_pylist()
    assert locked == [{"l": True, "e": False}]
    with pytest.raises(errors.ProgrammingError, match="read a file") as info:
        executor.query("SELECT * FROM read_csv('/etc/passwd')")
    assert "root:" not in str(info.value)
    with pytest.raises(errors.Error):
        executor.query("SET memory_limit = '64GB'")


@pytest.mark.parametrize("sql, match", [
    ("SELECT COUNT(*) FROM h1.t WHERE s = $1a$ , (SELECT 1) , $1a$", "dollar-quoted"),
    ("SELECT COUNT(*) FROM h1.t WHERE s = $$x$$", "dollar-quoted"),
    ("SELECT COUNT(*) FROM h1.t WHERE s = current_setting('temp_directory')", "node's own state"),
    ("SELECT * FROM read_csv('/etc/passwd')", "table functions"),
    ("SELECT COUNT(*) FROM h1.t WHERE s IN (SELECT * FROM query('SELECT s FROM t'))", "table functions"),
])
def test_statements_duckdb_would_read_differently_or_that_read_node_state_are_refused(sql: str, match: str) -> None:
    with pytest.raises(errors.Error, match=match):
        parse_statement(sql)


@pytest.mark.parametrize("sql", [
    "SELECT 'it''s', \"s\" FROM h1.t -- a comment",
    "SELECT COUNT(*) FROM h1.t /* one /* nested */ comment */ WHERE s = 'a--b'",
    "SELECT E'a\\'b', 'é' || \"s\" FROM h1.t",
])
def test_ordinary_strings_and_comments_still_parse(sql: str) -> None:
    assert parse_statement(sql).kind == "select"


def test_planning_cannot_read_files(tmp_path: Path) -> None:
    fed = _fed(tmp_path)
    secret = tmp_path / "secret.csv"
    secret.write_text("hdr\nSECRETLINE\n")
    with pytest.raises(errors.UnsupportedSql, match="table functions"):
        compile_query(f"SELECT COUNT(*) FROM h2.t WHERE s IN (SELECT * FROM read_csv('{secret}'))",
                      fed, "h1", {}, lambda p, t: (("a", "BIGINT"), ("s", "VARCHAR")))
    # the planning DuckDB itself, whatever text reaches it: no file is read
    with pytest.raises(errors.ProgrammingError, match="Permission|file system") as info:
        describe(f"SELECT x.nosuch FROM read_csv('{secret}', header = true, skip = 1) x", {})
    assert "SECRETLINE" not in str(info.value)
    with pytest.raises(errors.ProgrammingError, match="Permission|file system"):
        describe(f"SELECT * FROM read_csv('{tmp_path}/a.parquet')", {})


def test_duckdb_text_never_goes_to_another_party() -> None:
    err = DuckDBProgrammingError('Binder Error: Referenced column "x" not found. Candidate bindings: "SECRET"')
    remote = for_remote(err, "h2", "planning")
    assert isinstance(remote, errors.ProgrammingError) and "SECRET" not in str(remote)
    assert "party 'h2'" in str(remote) and "planning" in str(remote)
    plain = errors.PolicyViolation("column h2.t.a is private")
    assert for_remote(plain, "h2", "planning") is plain


def test_the_schema_cache_keeps_checked_schemas_only_and_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import types

    from fedsql import node as node_module
    from fedsql.proto import node_pb2 as pb

    replies = [json.dumps({"t": [["a", "INTEGER); DROP TABLE x; --"]]}), json.dumps({"t": [["a", "INTEGER"]]}),
               json.dumps({"t": [["a", "BIGINT"]]})]
    calls = []

    class Stub:
        def Describe(self, request, timeout=None, wait_for_ready=None):  # noqa: N802 - gRPC name
            calls.append(request.tables[0])
            return pb.DescribeReply(schemas_json=replies[len(calls) - 1])

    fake = types.SimpleNamespace(me="p1", _schemas={}, _schema_lock=threading.Lock(), stubs={"p2": Stub()},
                                 _reconnect=lambda party, stub: stub)
    schema_of = node_module.Node.schema_of.__get__(fake)
    with pytest.raises(errors.ProgrammingError, match="invalid schema"):
        schema_of("p2", "t")
    assert fake._schemas == {}  # the refused reply is not cached
    assert schema_of("p2", "t") == (("a", "INTEGER"),)
    assert schema_of("p2", "t") == (("a", "INTEGER"),) and len(calls) == 2  # cached
    monkeypatch.setattr(node_module, "SCHEMA_TTL", 0.0)
    assert schema_of("p2", "t") == (("a", "BIGINT"),) and len(calls) == 3  # expired: described again
