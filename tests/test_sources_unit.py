"""Issue #14 without servers: source URLs and keys, secrets, the pushdown split, file datasets."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.sources import parse_fragment
from connectors.sources.pushdown import split
from connectors.sources.secrets import env_name, load_passwords
from fedsql.config import parse_config
from fedsql.errors import ConfigError

HEAD = '[federation]\nname = "u"\ncompute = ["a", "b", "c"]\n[parties.b]\naddress = "127.0.0.1:2"\n[parties.c]\naddress = "127.0.0.1:3"\n'


def _fed(tmp_path: Path, table: str):
    return parse_config(HEAD + '[parties.a]\naddress = "127.0.0.1:1"\n[parties.a.tables.t]\n' + table, tmp_path / "f.toml")


def test_database_source_keys(tmp_path):
    t = _fed(tmp_path, 'source = "postgresql://reader@db.example:5433/bank"\ntable = "public.accounts"\n').table("a", "t")
    assert (t.format, t.source, t.relation, t.is_database) == ("postgresql", "postgresql://reader@db.example:5433/bank",
                                                              "public.accounts", True)


@pytest.mark.parametrize("table, needle", [
    ('source = "postgresql://reader:hunter2@h:5432/bank"\ntable = "t"\n', "carries a password"),
    ('source = "postgresql://reader@h:5432/bank?password=hunter2"\ntable = "t"\n', "password parameter"),
    ('source = "postgresql://reader@h:5432/bank"\n', 'missing "table"'),
    ('source = "mysql://reader:hunter2@h/bank"\ntable = "t"\n', "carries a password"),
    ('source = "mariadb://reader@h/bank?password=hunter2"\ntable = "t"\n', "password parameter"),
    ('source = "mysql://reader@h/bank?charset=latin1"\ntable = "t"\n', "no URL parameters"),
    ('source = "oracle://h/x"\ntable = "t"\n', "unknown source scheme"),
    ('source = "sqlite://rel/path.db"\ntable = "t"\n', "absolute path"),
    ('source = "sqlite:///abs/p.db"\ntable = "a.b.c"\n', '"schema.table"'),
    ('source = "x.parquet"\ntable = "t"\n', "file source has none"),
])
def test_bad_sources_are_clear_and_never_echo_a_password(tmp_path, table, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        _fed(tmp_path, table)
    assert "hunter2" not in str(info.value)


def test_secrets_env_overrides_file_and_file_must_be_private(tmp_path, monkeypatch):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[tables.t]\npassword = "from-file"\n[tables.u]\npassword = "u-pw"\n')
    secrets.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600") as info:
        load_passwords(tmp_path, "a", ["t"])
    assert "from-file" not in str(info.value)
    secrets.chmod(0o600)
    monkeypatch.setenv(env_name("a", "t"), "from-env")
    assert load_passwords(tmp_path, "a", ["t", "u", "v"]) == {"t": "from-env", "u": "u-pw"}
    secrets.write_text('[tables.t]\npassword = "unterminated\n')
    with pytest.raises(ConfigError) as info:
        load_passwords(tmp_path, "a", ["t"])
    assert "unterminated" not in str(info.value)


def test_split_pushes_relational_core_and_keeps_finishing_casts():
    sql = ("SELECT CAST((k) IS NOT NULL AS BIGINT) AS v, COALESCE(CAST(SUM(x) AS BIGINT), 0) AS s, COUNT(*) AS n "
           'FROM "t" AS "t" WHERE g >= 2 GROUP BY k')
    cut = split(parse_fragment(sql), lambda e: True, ["v", "s", "n"])
    assert cut.inner.sql() == 'SELECT k AS "__p0", SUM(x) AS "__p1", COUNT(*) AS "__p2" FROM "t" AS "t" WHERE g >= 2 GROUP BY k'
    assert "COALESCE" in cut.outer.sql() and "WHERE" not in cut.outer.sql()


@pytest.mark.parametrize("sql", [
    'SELECT x FROM "t" ORDER BY x',                       # ORDER BY: not cut
    'SELECT * FROM "t"',                                  # star: the needed columns are read instead
    'SELECT k, x FROM "t" GROUP BY k',                    # a column outside aggregates and keys
    'SELECT SUM(x) FROM (SELECT x FROM "t") AS r',        # subquery
])
def test_split_refuses_what_it_cannot_cut(sql):
    ast = parse_fragment(sql)
    assert split(ast, lambda e: True, ["c"] * len(ast.expressions)) is None


def test_split_refuses_a_construct_the_source_lacks():
    from sqlglot import exp

    ast = parse_fragment('SELECT SUM(x / 2) FROM "t"')
    assert split(ast, lambda e: e.find(exp.Div) is None, ["c"]) is None


def test_directory_and_glob_sources_hive_partitioned(tmp_path):
    from executors.local_duckdb import LocalExecutor

    for region, xs in (("north", [1, 2]), ("south", [10])):
        part = tmp_path / "ds" / f"region={region}"
        part.mkdir(parents=True)
        pq.write_table(pa.table({"x": pa.array(xs, pa.int64())}), part / "0.parquet")
    (tmp_path / "secret.parquet").write_bytes(b"not yours")
    for source in ("ds", "ds/*/*.parquet"):
        fed = _fed(tmp_path, f'source = "{source}"\n')
        assert fed.table("a", "t").format == "parquet"
        ex = LocalExecutor(fed.party("a"))
        assert ex.query('SELECT region, SUM(x) AS s FROM "t" GROUP BY 1 ORDER BY 1').to_pylist() == [
            {"region": "north", "s": 3}, {"region": "south", "s": 10}]
        with pytest.raises(Exception, match="does not allow"):  # the lock still holds outside the dataset
            ex.query(f"SELECT * FROM read_parquet('{tmp_path}/secret.parquet')")


def test_sqlite_pushdown_only_where_storage_is_exact(tmp_path):
    from executors.local_duckdb import LocalExecutor

    db = tmp_path / "a.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (k TEXT, x INTEGER, d DECIMAL(10,2), day DATE)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", [("a", 1, 0.1, "2024-01-02"), ("a", None, 0.2, None),
                                                          ("b", 5, None, "2024-03-04")])
    con.commit()
    fed = _fed(tmp_path, f'source = "sqlite://{db}"\ntable = "t"\n')
    ex = LocalExecutor(fed.party("a"))
    assert [tuple(c) for c in ex.schema("t")] == [("k", "VARCHAR"), ("x", "BIGINT"), ("d", "DECIMAL(10,2)"), ("day", "DATE")]
    out = ex.query('SELECT k, SUM(d) AS s, MIN(day) AS m, COUNT(x) AS n FROM "t" GROUP BY k ORDER BY k')
    assert str(out.schema.field("s").type) == "decimal128(38, 2)"
    assert [(r["k"], str(r["s"]), str(r["m"]), r["n"]) for r in out.to_pylist()] == [
        ("a", "0.30", "2024-01-02", 1), ("b", "None", "2024-03-04", 1)]
    con = sqlite3.connect(db)
    con.execute("INSERT INTO t VALUES ('c', 'secret-value', NULL, NULL)")  # not STRICT: SQLite takes it
    con.commit()
    con.close()
    with pytest.raises(Exception, match=r"column\(s\) x \(1 rows\) hold values that are not of the declared type") as info:
        ex.query('SELECT SUM(x) AS s FROM "t"')
    assert "secret-value" not in str(info.value)
    os.remove(db)
    with pytest.raises(Exception, match=r"party 'a': table 't' \(source sqlite://.*\): the database file does not exist"):
        ex.schema("t")


def test_sqlite_and_duckdb_file_fragments_are_pushed(tmp_path, caplog):
    import logging

    import duckdb

    from executors.local_duckdb import LocalExecutor

    lite = tmp_path / "a.db"
    con = sqlite3.connect(lite)
    con.execute("CREATE TABLE t (k TEXT, x INTEGER)")
    con.executemany("INSERT INTO t VALUES (?, ?)", [("a", 1), ("a", 2), ("b", None), (None, 7)])
    con.commit()
    con.close()
    duck = tmp_path / "b.duckdb"
    dcon = duckdb.connect(str(duck))
    dcon.execute("CREATE TABLE t AS SELECT * FROM (VALUES ('a', 1), ('a', 2), ('b', NULL), (NULL, 7)) v(k, x)")
    dcon.close()
    frag = ("SELECT CAST((k) IS NOT NULL AS BIGINT) AS v, COALESCE((k), '') AS g, COALESCE(CAST(SUM(x) AS BIGINT), 0) AS s, "
            'COUNT(*) AS n FROM "t" AS "t" WHERE x > 0 OR x IS NULL GROUP BY k')
    for source, kind in ((f"sqlite://{lite}", "sqlite"), (f"duckdb://{duck}", "duckdb")):
        ex = LocalExecutor(_fed(tmp_path, f'source = "{source}"\ntable = "t"\n').party("a"))
        with caplog.at_level(logging.INFO, logger="fedsql.node"):
            out = ex.query(frag).to_pylist()
        assert f"pushed into its {kind} source" in caplog.text
        caplog.clear()
        out = sorted(out, key=lambda r: (r["v"], r["g"]))
        assert [(r["v"], r["g"], r["s"], r["n"]) for r in out] == [(0, "", 7, 1), (1, "a", 3, 2), (1, "b", 0, 1)]



def test_a_join_with_a_file_table_of_the_party_is_not_pushed(tmp_path, caplog):
    """A fragment joining a database table with one of the party's file tables (a view in the
    node's DuckDB) runs in the node: pushed, the file table's name would be looked up in the
    database, which here holds another relation of that name (wrong rows, silently)."""
    import logging

    from executors.local_duckdb import LocalExecutor

    lite = tmp_path / "a.db"
    con = sqlite3.connect(lite)
    con.execute("CREATE TABLE t (id INTEGER, x INTEGER)")
    con.executemany("INSERT INTO t VALUES (?, ?)", [(1, 10), (2, 20), (3, 30)])
    con.execute("CREATE TABLE w (id INTEGER, y INTEGER)")  # not the party's table w
    con.executemany("INSERT INTO w VALUES (?, ?)", [(1, 1000), (2, 1000), (3, 1000)])
    con.commit()
    con.close()
    pq.write_table(pa.table({"id": pa.array([1, 2], pa.int64()), "y": pa.array([5, 6], pa.int64())}), tmp_path / "w.parquet")
    fed = _fed(tmp_path, f'source = "sqlite://{lite}"\ntable = "t"\n[parties.a.tables.w]\nsource = "w.parquet"\n')
    ex = LocalExecutor(fed.party("a"))
    with caplog.at_level(logging.INFO, logger="fedsql.node"):
        out = ex.query('SELECT SUM(t.x) AS sx, SUM(w.y) AS sy, COUNT(*) AS n FROM "t" AS "t" JOIN "w" AS "w" ON t.id = w.id')
    assert [(int(r["sx"]), int(r["sy"]), r["n"]) for r in out.to_pylist()] == [(30, 11, 2)]
    assert "pushed into" not in caplog.text and "runs in the node's DuckDB" in caplog.text

@pytest.mark.parametrize("sql", [
    "SELECT SUM(LENGTH(pg_read_file('/etc/passwd'))) FROM \"t\"",   # a server function: never pushed
    'SELECT SUM(x) / COUNT(x) FROM "t" WHERE x / 2 > 1',            # integer division differs
    'SELECT MIN(k) FROM "t"',                                        # text order = the server's collation
    'SELECT SUM(r) FROM "t"',                                        # real sums in float4 there
    'SELECT COUNT(*) FROM "t" LEFT JOIN "u" ON t.x = u.x',           # outer join
])
def test_postgresql_pushes_only_what_means_the_same(sql):
    from connectors.sources import open_source

    source = open_source("a", "t", "postgresql://r@h:5432/db", "public.t", None)
    types = {"x": "BIGINT", "k": "VARCHAR", "r": "FLOAT"}
    ast = parse_fragment(sql)
    assert split(ast, lambda e: source.can_run(e, types), ["c"] * len(ast.expressions)) is None


def test_postgresql_transpiles_the_pushed_core():
    from connectors.sources import open_source

    source = open_source("a", "t", "postgresql://r@h:5432/db", "public.t", None)
    ast = parse_fragment('SELECT COALESCE(CAST(SUM(x) AS BIGINT), 0) AS s FROM "t" AS "t" WHERE k IN (\'a\', \'b\') AND x BETWEEN 1 AND 9')
    cut = split(ast, lambda e: source.can_run(e, {"x": "BIGINT", "k": "VARCHAR"}), ["s"])
    assert source.transpile(cut.inner) == ('SELECT SUM("x") AS "__p0" FROM "t" AS "t" WHERE "k" IN (\'a\', \'b\') '
                                           'AND "x" BETWEEN 1 AND 9')


def test_spark_connect_source_keys(tmp_path):
    t = _fed(tmp_path, 'source = "sc://spark.example/;use_ssl=true"\ntable = "bank.accounts"\n').table("a", "t")
    assert (t.format, t.source, t.relation) == ("spark", "sc://spark.example/;use_ssl=true", "bank.accounts")
    from connectors.sources.url import parse_source_url

    assert parse_source_url("sc://h:15123").port == 15123 and parse_source_url("sc://h").port == 15002


@pytest.mark.parametrize("source, needle", [
    ("sc://h:15002/;token=hunter2", "carries a token"),
    ("sc://h:15002/;use_ssl=true;Token=hunter2", "carries a token"),
    ("sc://u:hunter2@h:15002", "no user or password"),
    ("sc://h:15002/;colour=blue", "unknown option 'colour'"),
    ("sc://h:99999", "port"),
    ("spark://master:7077", "Spark Connect only"),
    ("spark+local://", "Spark Connect only"),
])
def test_bad_spark_sources_are_clear_and_never_echo_a_token(tmp_path, source, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        _fed(tmp_path, f'source = "{source}"\ntable = "db.t"\n')
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("sql", [
    'SELECT SUM(d * 2) FROM "t"',                 # decimal arithmetic: Spark's precision rules differ
    'SELECT SUM(x * 1.5) FROM "t"',               # a decimal literal in arithmetic
    'SELECT SUM(x) FROM "t" WHERE x / 2 > 1',     # division (integer in one, not the other)
    'SELECT SUM(LENGTH(k)) FROM "t"',             # a function
    'SELECT COUNT(*) FROM "t" LEFT JOIN "u" ON t.x = u.x',
])
def test_spark_pushes_only_what_means_the_same(sql):
    from connectors.sources import open_source

    source = open_source("a", "t", "sc://h:15002", "db.t", None)
    types = {"x": "BIGINT", "k": "VARCHAR", "d": "DECIMAL(10,2)"}
    ast = parse_fragment(sql)
    assert split(ast, lambda e: source.can_run(e, types), ["c"] * len(ast.expressions)) is None


def test_spark_transpiles_the_pushed_core_with_its_string_escapes():
    """Spark reads a backslash in a string literal as an escape: sqlglot doubles it, so a value
    cannot end the literal early (an injection through a constant of the query)."""
    from connectors.sources import open_source

    source = open_source("a", "t", "sc://h:15002", "db.t", None)
    ast = parse_fragment("SELECT COALESCE(CAST(SUM(x * 3) AS BIGINT), 0) AS s, MIN(k) AS m FROM \"t\" AS \"t\" "
                         "WHERE k IN ('it''s', 'x\\', 'a\\'' OR 1=1 --') AND x BETWEEN -1 AND 9 GROUP BY g")
    cut = split(ast, lambda e: source.can_run(e, {"x": "BIGINT", "k": "VARCHAR", "g": "INTEGER"}), ["s", "m"])
    assert source.transpile(cut.inner) == (
        "SELECT SUM(`x` * 3) AS `__p0`, MIN(`k`) AS `__p1` FROM `t` AS `t` WHERE `k` IN ('it\\'s', 'x\\\\', "
        "'a\\\\\\' OR 1=1 --') AND `x` BETWEEN -1 AND 9 GROUP BY `g`")



@pytest.mark.parametrize("token", ["ab;cdTAIL9", "a=b%;TAIL9=x"])
def test_a_spark_token_with_url_separators_never_reaches_the_log(token, caplog):
    """The token is handed to the Connect client apart from the URL: put in it, a ';' or '='
    split it into URL options and pyspark's refusal quoted the piece after it (the node log)."""
    import logging

    pytest.importorskip("pyspark.sql.connect.client")
    from connectors.sources import SourceError, open_source
    from fedsql.launcher import free_ports

    source = open_source("a", "t", f"sc://127.0.0.1:{free_ports(1)[0]}", "db.t", token)  # nothing listens there
    with caplog.at_level(logging.INFO, logger="fedsql.node"), pytest.raises(SourceError) as info:
        source.schema()
    assert "cannot connect to the Spark Connect server" in str(info.value)
    for text in (str(info.value), caplog.text):
        assert "TAIL9" not in text and token not in text


def test_a_driver_message_quoting_the_password_is_scrubbed_in_the_log(caplog):
    """A driver whose message echoes the connection string (raw or URL-encoded password, or any
    user:password@ of a URL) leaves the password out of the node log and the error."""
    import logging

    from connectors.sources import open_source

    pw = "p@ss w/rd;x"
    source = open_source("a", "t", "postgresql://r@h:5432/db", "public.t", pw)
    driver = RuntimeError(f"could not connect to postgresql://r:p%40ss%20w%2Frd%3Bx@h:5432/db (password {pw}); "
                          "also mysql://other:guess@h/db")
    with caplog.at_level(logging.INFO, logger="fedsql.node"):
        err = source.fail("cannot connect", driver)
    assert "cannot connect" in caplog.text and "r:***@h" in caplog.text
    for text in (caplog.text, str(err)):
        assert pw not in text and "p%40ss" not in text and "guess" not in text

def test_mysql_source_keys(tmp_path):
    t = _fed(tmp_path, 'source = "mariadb://reader@db.example/bank"\ntable = "bank.accounts"\n').table("a", "t")
    assert (t.format, t.source, t.relation) == ("mysql", "mariadb://reader@db.example/bank", "bank.accounts")
    from connectors.sources.url import parse_source_url

    assert parse_source_url("mysql://r@h/bank").port == 3306


@pytest.mark.parametrize("sql, pushed", [
    ('SELECT SUM(x) FROM "t" WHERE x > 1 GROUP BY n', True),
    ('SELECT MIN(k) FROM "t"', False),                  # text under a case-insensitive collation
    ('SELECT COUNT(*) FROM "t" WHERE kb = \'a\'', True),  # ... but kb's is binary and NO PAD
    ('SELECT SUM(n + 1) FROM "t"', False),               # INT arithmetic: BIGINT in MySQL
    ('SELECT SUM(x + 1) FROM "t"', True),
    ('SELECT COUNT(*) FROM "t" WHERE b', False),          # BOOLEAN is a tinyint there
    ('SELECT COUNT(*) FROM "t" WHERE x > 0 = TRUE', False),
])
def test_mysql_pushes_only_what_means_the_same(sql, pushed):
    from connectors.sources import open_source

    source = open_source("a", "t", "mysql://r@h:3306/db", "db.t", None)
    source._exact_text = {"kb"}  # what schema() found: kb has a binary NO PAD collation
    types = {"x": "BIGINT", "n": "INTEGER", "k": "VARCHAR", "kb": "VARCHAR", "b": "BOOLEAN"}
    ast = parse_fragment(sql)
    cut = split(ast, lambda e: source.can_run(e, types), ["c"] * len(ast.expressions))
    assert (cut is not None) == pushed
