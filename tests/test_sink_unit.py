"""Sinks without a server (connectors/sources: `_as_relation`, each engine's storage form, the
MySQL parameters, the sink password's own namespace, the locked DuckDB sink file)."""

from __future__ import annotations

import datetime
import decimal
import os
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from connectors.sources import SourceError
from connectors.sources.mysql import MySQLSource, insert_statement, mysql_rows
from connectors.sources.secrets import sink_env_name, sink_password
from connectors.sources.sqlite import SQLiteSource
from connectors.sources.url import parse_source_url
from fedsql.errors import ConfigError

TYPED = [("k", "VARCHAR"), ("n", "BIGINT"), ("sd", "DECIMAL(12,2)"), ("day", "DATE"), ("ts", "TIMESTAMP"),
         ("b", "BOOLEAN")]


def _rows(sql: str) -> pa.Table:
    return duckdb.connect().sql(sql).to_arrow_table()


GOOD = ("SELECT * FROM (VALUES ('a''x', 1::HUGEINT, 12.345::DECIMAL(18,3), DATE '2024-02-29', "
        "TIMESTAMP '2024-01-02 03:04:05.000006', true), (NULL, 2, NULL, NULL, NULL, NULL)) v(k, n, sd, day, ts, b)")


def _sqlite() -> SQLiteSource:
    return SQLiteSource("p1", "sink.out", parse_source_url("sqlite:///nowhere/out.db"), "out", None)


def _mysql(fsp: dict[str, int] | None = None) -> MySQLSource:
    src = MySQLSource("p1", "sink.out", parse_source_url("mysql://w@127.0.0.1:1/bank"), "bank.out", "pw-XYZ")
    src._fsp = fsp or {}
    return src


def test_cast_by_name_to_the_relations_types() -> None:
    out = _mysql()._as_relation(_rows(GOOD).select(["b", "sd", "n", "k"]).rename_columns(["b", "sd", "n", "K"]), TYPED)  # order and case free
    assert out.column_names == ["b", "sd", "n", "k"]  # the relation's spelling
    assert out.schema.types == [pa.bool_(), pa.decimal128(12, 2), pa.int64(), pa.string()]
    assert out.to_pylist() == [{"b": True, "sd": decimal.Decimal("12.35"), "n": 1, "k": "a'x"},
                               {"b": None, "sd": None, "n": 2, "k": None}]  # DuckDB's cast rounds; NULLs stay


def test_mismatches_are_refused_by_column_name() -> None:
    src = _mysql()
    for sql, message in [
        ("SELECT 1 AS n, 2 AS zz", "column 'zz', which the relation does not have \\(it has k, n, sd, day, ts, b\\)"),
        ("SELECT 1 AS n, 2 AS N", "two columns for the relation's column 'n' \\('n' and 'N'\\)"),
        ("SELECT * FROM (VALUES ('1'), ('x'), ('y')) v(n)", "column 'n' \\(BIGINT\\): 2 values do not cast"),
        ("SELECT DATE '2024-01-01' AS n", "column 'n' \\(BIGINT\\): 1 value does not cast"),
        ("SELECT 1234567890123.45::DECIMAL(15,2) AS sd", "column 'sd' \\(DECIMAL\\(12,2\\)\\): 1 value does not cast"),
    ]:
        with pytest.raises(SourceError, match=message) as info:
            src._as_relation(_rows(sql), TYPED)
        text = str(info.value)
        assert text.startswith("party 'p1': sink 'out' (source mysql://w@127.0.0.1:1/bank, table bank.out): ")
        assert "pw-XYZ" not in text and "'x'" not in text and "'y'" not in text  # never a value or the password


def test_sqlite_storage_form() -> None:
    out = _sqlite()._as_relation(_rows(GOOD), TYPED)
    assert out.schema.types == [pa.string(), pa.int64(), pa.float64(), pa.string(), pa.string(), pa.int32()]
    assert out.to_pylist()[0] == {"k": "a'x", "n": 1, "sd": 12.35, "day": "2024-02-29",
                                  "ts": "2024-01-02 03:04:05.000006", "b": 1}
    assert set(out.to_pylist()[1].values()) == {None, 2}
    # as the SQLite source reads it back: the declared types' values, exactly
    db = duckdb.connect()
    db.register("out", out)
    back = db.sql("SELECT CAST(sd AS DECIMAL(12,2)) AS sd, CAST(day AS DATE) AS d, CAST(ts AS TIMESTAMP) AS ts "
                                "FROM out LIMIT 1").fetchall()
    assert back == [(decimal.Decimal("12.35"), datetime.date(2024, 2, 29), datetime.datetime(2024, 1, 2, 3, 4, 5, 6))]


def test_sqlite_refuses_what_it_cannot_hold_exactly() -> None:
    wide = [("sd", "DECIMAL(18,2)"), ("day", "DATE")]
    ok = _sqlite()._as_relation(_rows("SELECT 9999999999999.99::DECIMAL(18,2) AS sd"), wide)  # 15 digits: exact
    assert ok.column("sd").to_pylist() == [9999999999999.99]
    with pytest.raises(SourceError, match="column 'sd': values with more digits than SQLite keeps exactly .* "
                                          "\\(1 value\\) \\(nothing was written\\)"):
        _sqlite()._as_relation(_rows("SELECT * FROM (VALUES (1.5), (1234567890123456.78)) v(sd)"), wide)
    with pytest.raises(SourceError, match="column 'day': values outside the years 1-9999"):
        _sqlite()._as_relation(_rows("SELECT DATE '10000-01-01' AS day"), wide)


def test_mysql_parameters_and_datetime_precision() -> None:
    assert insert_statement("bank", "o`ut", ["a", "b`c"]) == \
        "INSERT INTO `bank`.`o``ut` (`a`, `b``c`) VALUES (%s, %s)"
    out = _mysql({"ts": 6})._as_relation(_rows(GOOD), TYPED)
    assert mysql_rows(out.to_batches()[0]) == [
        ("a'x", 1, decimal.Decimal("12.35"), datetime.date(2024, 2, 29), datetime.datetime(2024, 1, 2, 3, 4, 5, 6), True),
        (None, 2, None, None, None, None)]  # PyMySQL escapes each; the SQL has %s only
    src = _mysql({"ts": 0})
    assert src._as_relation(_rows("SELECT TIMESTAMP '2024-01-02 03:04:05' AS ts"), TYPED).num_rows == 1
    with pytest.raises(SourceError, match="column 'ts': values with finer fractional seconds than the column's "
                                          "DATETIME\\(0\\) keeps"):
        src._as_relation(_rows("SELECT TIMESTAMP '2024-01-02 03:04:05.5' AS ts"), TYPED)
    assert _mysql({"ts": 3})._as_relation(_rows("SELECT TIMESTAMP '2024-01-02 03:04:05.123' AS ts"), TYPED).num_rows == 1


def test_mysql_refused_login_hint_names_insert_for_a_sink(monkeypatch: pytest.MonkeyPatch) -> None:
    import pymysql

    def refuse(**_: object) -> None:  # what PyMySQL raises for a wrong password (no server here)
        raise pymysql.err.OperationalError(1045, "Access denied for user 'w'@'localhost' (using password: YES)")

    monkeypatch.setattr(pymysql, "connect", refuse)
    with pytest.raises(SourceError, match="MySQL refused the login") as sink:
        _mysql()._login()
    assert "GRANT SELECT, INSERT on the database" in str(sink.value) and "pw-XYZ" not in str(sink.value)
    table = MySQLSource("p1", "t", parse_source_url("mysql://r@127.0.0.1:1/bank"), "bank.t", "pw-XYZ")
    with pytest.raises(SourceError, match="MySQL refused the login") as source:
        table._login()
    assert "GRANT SELECT on the database" in str(source.value)  # a source only reads


def _secrets(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "secrets.toml"
    path.write_text(text)
    path.chmod(0o600)
    return directory


def test_sink_passwords_have_their_own_namespace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("FEDSQL_SINK_PASSWORD_", "FEDSQL_SOURCE_PASSWORD_")):
            monkeypatch.delenv(name)
    both = _secrets(tmp_path / "both", '[tables.sink_out]\npassword = "table-pw"\n[sinks.out]\npassword = "sink-pw"\n')
    assert sink_password(both, "p1", "out", ["sink_out"]) == "sink-pw"  # the table's key is the table's
    assert sink_password(both, "p1", "out", []) == "sink-pw"
    legacy = _secrets(tmp_path / "legacy", '[tables.sink_out]\npassword = "old"\n')
    assert sink_password(legacy, "p1", "out", []) == "old"  # configurations written before [sinks]
    assert sink_password(legacy, "p1", "out", ["sink_out"]) is None  # ... unless a table owns that key
    assert sink_password(legacy, "p1", "out", ["SINK-OUT"]) is None  # (the same environment variable)
    monkeypatch.setenv("FEDSQL_SOURCE_PASSWORD_P1_SINK_OUT", "old-env")
    assert sink_password(legacy, "p1", "out", []) == "old-env"
    assert sink_password(legacy, "p1", "out", ["sink_out"]) is None
    monkeypatch.setenv(sink_env_name("p1", "out"), "sink-env")
    assert sink_env_name("p1", "out") == "FEDSQL_SINK_PASSWORD_P1_OUT"
    assert sink_password(legacy, "p1", "out", ["sink_out"]) == "sink-env"
    bad = _secrets(tmp_path / "bad", '[sinks.out]\npass = "x"\n')
    monkeypatch.delenv(sink_env_name("p1", "out"))
    with pytest.raises(ConfigError, match=r"\[sinks.out\] must hold exactly password"):
        sink_password(bad, "p1", "out", [])


def test_a_sink_duckdb_file_reaches_no_other_file(tmp_path: Path) -> None:
    from fedsql.locked_duckdb import open_locked_file

    other = tmp_path / "other.csv"
    other.write_text("a\n1\n")
    path = tmp_path / "sink.duckdb"
    duckdb.connect(str(path)).execute("CREATE TABLE t (a INTEGER)").close()
    con = open_locked_file(path, read_only=False)
    try:
        con.execute("INSERT INTO t VALUES (1)")
        for sql in [f"SELECT * FROM read_csv('{other}')", f"ATTACH '{tmp_path / 'x.duckdb'}' AS x",
                    f"COPY t TO '{tmp_path / 'out.csv'}'", "INSTALL httpfs", "SET enable_external_access = true",
                    "SET lock_configuration = false"]:
            with pytest.raises(duckdb.Error):
                con.execute(sql)
        assert con.execute("SELECT * FROM t").fetchall() == [(1,)]
    finally:
        con.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.csv", "sink.duckdb"]
