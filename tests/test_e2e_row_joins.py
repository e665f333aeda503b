"""Row-level joint queries over real nodes: private set intersection (the issuer's own rows that
match another party's keys) and enrichment (its rows plus columns another owner granted as
`payload`), each compared with DuckDB over the pooled tables in every mode that can run it.

Keys repeat on both sides, include NULLs, mixed-case strings and values only one side has; one
table is empty; party d deals its data from outside the compute parties and also issues queries.
"""

from __future__ import annotations

import decimal

import numpy as np
import pyarrow as pa
import pytest

from fedsql import errors as fedsql_errors
from fedsql.errors import PolicyViolation
from tests.federation_harness import running_federation
from tests.result_compare import assert_matches, duckdb_arrow, pooled_duckdb

pytestmark = pytest.mark.e2e

CONFIG = """\
[federation]
name = "rowjoins"
compute = ["a", "b", "c"]
deadline_seconds = 120

[parties.a]
address = "127.0.0.1:{p0}"
[parties.a.tables.cust]
source = "a_cust.parquet"
columns = {{ cid = "join_key", Name = "join_key", seg = "group_key", credit = "aggregate" }}

[parties.b]
address = "127.0.0.1:{p1}"
[parties.b.tables.acct]
source = "b_acct.parquet"
columns = {{ cid = "join_key", Name = "join_key", branch = "payload", bal = ["aggregate", "payload"], vip = "aggregate" }}

[parties.c]
address = "127.0.0.1:{p2}"
[parties.c.tables.profile]
source = "c_profile.parquet"
columns = {{ cid = "join_key", tier = "payload", lim = "payload", since = "payload", big = "payload" }}
unique = ["cid"]
[parties.c.tables.nothing]
source = "c_nothing.parquet"
columns = {{ cid = "join_key", v = "payload" }}
unique = ["cid"]

[parties.d]
address = "127.0.0.1:{p3}"
[parties.d.tables.phones]
source = "d_phones.parquet"
columns = {{ cid = "join_key", phone = "payload" }}
unique = ["cid"]
"""

NAMES = ["Ann", "ann", "BOB", "Zoë", "", "carl", None]


def _tables(rng: np.random.Generator) -> dict[str, pa.Table]:
    def keys(n: int, hi: int) -> list:
        k = rng.integers(-5, hi, n).tolist()
        k[:4] = [7] * 4  # a skewed key
        k[4] = None
        return k

    n_a, n_b = 70, 90
    cust = pa.table({
        "cid": pa.array(keys(n_a, 60), pa.int64()),
        "Name": pa.array([NAMES[int(i)] for i in rng.integers(0, len(NAMES), n_a)], pa.string()),
        "seg": pa.array([["retail", "sme", None][int(i)] for i in rng.integers(0, 3, n_a)], pa.string()),
        "credit": pa.array([decimal.Decimal(int(v)).scaleb(-2) for v in rng.integers(-5000, 9000, n_a)],
                           pa.decimal128(10, 2)),
    })
    bal = rng.integers(-300, 1000, n_b).tolist()
    bal[2] = None
    bal[3] = 0
    acct = pa.table({
        "cid": pa.array(keys(n_b, 70), pa.int32()),
        "Name": pa.array([NAMES[int(i)] for i in rng.integers(0, len(NAMES), n_b)], pa.string()),
        "branch": pa.array([[f"br{i}", "Nord", None][int(i) % 3] for i in rng.integers(0, 6, n_b)], pa.string()),
        "bal": pa.array(bal, pa.int64()),
        "vip": pa.array(rng.random(n_b) < 0.3),
    })
    ids = rng.permutation(np.arange(-5, 80))[:50]
    profile = pa.table({
        "cid": pa.array(ids, pa.int64()),
        "tier": pa.array([["gold", "Silver", None][int(v)] for v in rng.integers(0, 3, len(ids))], pa.string()),
        "lim": pa.array([None if i % 7 == 0 else int(v) for i, v in enumerate(rng.integers(-100, 800, len(ids)))],
                        pa.int64()),
        "since": pa.array([18000 + int(v) for v in rng.integers(0, 3000, len(ids))], pa.date32()),
        # hashed ids use the whole int64 range: shown row by row, they need no arithmetic headroom
        "big": pa.array([None if i == 1 else int(v) * (-1) ** i for i, v in
                         enumerate(rng.integers(2**62, 2**63 - 1, len(ids)))], pa.int64()),
    })
    nothing = pa.table({"cid": pa.array([], pa.int64()), "v": pa.array([], pa.int64())})
    pids = rng.permutation(70)[:30]
    phones = pa.table({"cid": pa.array(pids, pa.int64()),
                       "phone": pa.array([f"+41 79 {int(p):03d} 00 {i:02d}" for i, p in enumerate(pids)])})
    return {"a.cust": cust, "b.acct": acct, "c.profile": profile, "c.nothing": nothing, "d.phones": phones}


@pytest.fixture(scope="module")
def rowfed(tmp_path_factory):
    import fedsql

    d = tmp_path_factory.mktemp("rowjoins")
    tables = _tables(np.random.default_rng(2026))
    with running_federation(d, CONFIG, tables) as config:
        conns = {p: fedsql.connect(str(config), party=p) for p in ("a", "d")}
        yield conns, pooled_duckdb(tables), d
        for c in conns.values():
            c.close()


PSI = [  # the issuer's own rows, filtered or joined by membership in another party's keys
    "SELECT x.cid, x.seg FROM a.cust x JOIN b.acct y ON x.cid = y.cid",
    "SELECT x.* FROM a.cust x WHERE x.cid IN (SELECT cid FROM b.acct WHERE vip)",
    "SELECT x.cid, x.\"Name\" FROM a.cust x WHERE EXISTS (SELECT 1 FROM b.acct y WHERE y.cid = x.cid "
    "AND y.\"Name\" = x.\"Name\")",
    "SELECT x.cid FROM a.cust x WHERE NOT EXISTS (SELECT 1 FROM b.acct y WHERE y.cid = x.cid)",
    "SELECT x.cid, x.credit FROM a.cust x JOIN b.acct y ON x.cid = y.cid AND x.\"Name\" = y.\"Name\"",
    "SELECT DISTINCT x.seg, x.\"Name\" FROM a.cust x JOIN b.acct y ON x.\"Name\" = y.\"Name\"",
    "SELECT x.cid, x.credit * 2 AS c2 FROM a.cust x JOIN b.acct y ON x.cid = y.cid WHERE y.bal > x.credit "
    "ORDER BY x.cid, c2 LIMIT 9",
    "SELECT x.cid FROM a.cust x JOIN c.nothing n ON x.cid = n.cid",
    "SELECT cid, x.seg FROM a.cust x JOIN b.acct y USING (cid)",
    # the other side's key equals the issuer's own on every row: join_key suffices to show it
    "SELECT y.cid, y.\"Name\", x.seg FROM a.cust x JOIN b.acct y ON x.cid = y.cid AND x.\"Name\" = y.\"Name\"",
]
ENRICH = [  # plus the columns the other owner granted as payload
    "SELECT x.cid, x.seg, y.branch, y.bal FROM a.cust x JOIN b.acct y ON x.cid = y.cid WHERE y.bal >= 0",
    "SELECT x.cid, y.branch, y.bal + x.credit AS total FROM a.cust x LEFT JOIN b.acct y ON x.cid = y.cid AND y.vip "
    "ORDER BY x.cid, y.branch NULLS FIRST, total",
    "SELECT y.branch, x.seg FROM b.acct y RIGHT JOIN a.cust x ON x.cid = y.cid",
]
PK_FK = [  # one side's key declared unique: these also run in oblivious mode
    "SELECT x.cid, x.seg, p.tier, p.lim, p.since FROM a.cust x JOIN c.profile p ON x.cid = p.cid",
    "SELECT x.cid, p.tier, p.lim * 2 AS l2 FROM a.cust x LEFT JOIN c.profile p ON x.cid = p.cid WHERE x.credit > 0",
    "SELECT x.cid, p.tier FROM a.cust x JOIN c.profile p ON x.cid = p.cid WHERE p.lim IS NULL OR p.lim < x.credit",
    "SELECT x.\"Name\", h.phone FROM a.cust x JOIN d.phones h ON x.cid = h.cid ORDER BY h.phone, x.\"Name\"",
    "SELECT x.cid, n.v FROM a.cust x LEFT JOIN c.nothing n ON x.cid = n.cid",
    "SELECT x.cid, x.seg FROM a.cust x WHERE x.cid IN (SELECT cid FROM c.profile WHERE lim > 100)",
    "SELECT x.cid, p.big FROM a.cust x JOIN c.profile p ON x.cid = p.cid",
]


WINDOWS = [  # windows over joined rows: the rows are a row-level part, the windows run at the issuer
    "SELECT x.cid, p.tier, ROW_NUMBER() OVER (PARTITION BY p.tier ORDER BY x.cid) AS rn FROM a.cust x "
    "JOIN c.profile p ON x.cid = p.cid",
    "SELECT x.cid, p.lim, SUM(p.lim) OVER (ORDER BY x.cid) AS running, RANK() OVER (ORDER BY p.lim DESC) AS r "
    "FROM a.cust x JOIN c.profile p ON x.cid = p.cid WHERE p.lim IS NOT NULL QUALIFY r <= 10 ORDER BY r, x.cid",
]


def test_windows_over_joined_rows_match_duckdb(rowfed):
    conns, ref, _ = rowfed
    cur = conns["a"].cursor()
    for sql in WINDOWS:
        cur.execute(sql)
        assert_matches(cur.fetch_arrow_table(), duckdb_arrow(ref, sql), sql)
        assert any("the rows the windows read" in line for line in cur.leakage), cur.leakage
    with pytest.raises(PolicyViolation, match="a.cust.credit|b.acct.vip"):  # vip is not payload
        cur.execute("SELECT x.cid, ROW_NUMBER() OVER (PARTITION BY y.vip ORDER BY x.cid) FROM a.cust x "
                    "JOIN b.acct y ON x.cid = y.cid")


@pytest.mark.parametrize("mode", ["sizes", "reveal", "oblivious"])
def test_row_level_joins_match_duckdb(rowfed, mode):
    conns, ref, _ = rowfed
    cur = conns["a"].cursor()
    cur.execute(f"SET fedsql.mode = '{mode}'")
    queries = PK_FK if mode == "oblivious" else PSI + ENRICH + PK_FK
    for sql in queries:
        cur.execute(sql)
        assert_matches(cur.fetch_arrow_table(), duckdb_arrow(ref, sql), sql)
        assert any(line.startswith("to a only: the joined rows") for line in cur.leakage), (sql, cur.leakage)


def test_an_issuer_outside_the_compute_parties_gets_its_rows(rowfed):
    conns, ref, _ = rowfed
    cur = conns["d"].cursor()
    for mode in ("sizes", "oblivious"):
        cur.execute(f"SET fedsql.mode = '{mode}'")
        for sql in ("SELECT h.cid, h.phone, p.tier FROM d.phones h JOIN c.profile p ON h.cid = p.cid",
                    "SELECT h.phone FROM d.phones h WHERE h.cid IN (SELECT cid FROM c.profile)"):
            cur.execute(sql)
            assert_matches(cur.fetch_arrow_table(), duckdb_arrow(ref, sql), sql)


@pytest.mark.parametrize("sql, column, missing", [
    ("SELECT x.cid, y.vip FROM a.cust x JOIN b.acct y ON x.cid = y.cid", "b.acct.vip", "payload"),
    ("SELECT y.cid FROM a.cust x JOIN b.acct y ON x.\"Name\" = y.\"Name\"", "b.acct.cid", "payload"),
    # the preserved side of an outer join shows rows that match nothing: payload is not enough
    ("SELECT y.branch FROM b.acct y LEFT JOIN a.cust x ON x.cid = y.cid", "b.acct.branch", "public"),
    ("SELECT x.cid, p.tier FROM a.cust x FULL JOIN c.profile p ON x.cid = p.cid", "c.profile.tier", "public"),
])
def test_columns_not_granted_are_refused_by_name(rowfed, sql, column, missing):
    conns, _, _ = rowfed
    with pytest.raises(PolicyViolation) as err:
        conns["a"].cursor().execute(sql)
    assert column in str(err.value) and f"lacks permission '{missing}'" in str(err.value)



def test_explain_says_how_the_rows_are_opened(rowfed):
    conns, _, _ = rowfed
    cur = conns["a"].cursor()
    sql = "EXPLAIN SELECT x.cid, p.tier FROM a.cust x JOIN c.profile p ON x.cid = p.cid"
    cur.execute("SET fedsql.mode = 'sizes'")
    cur.execute(sql)  # sizes mode: b, holding no input, opens with a which rows are real
    text = "\n".join(str(v) for row in cur.fetchall() for v in row)
    assert "a and b open __show, then open" in text and "of the real rows to a only" in text, text
    assert "by row number" in text and "to b: the number of result rows" in text, text
    cur.execute("SET fedsql.mode = 'oblivious'")
    try:
        cur.execute(sql)
        text = "\n".join(str(v) for row in cur.fetchall() for v in row)
        assert "zero those not in the result" in text and "number of result rows" not in text, text
    finally:
        cur.execute("SET fedsql.mode = 'sizes'")


# -- hidden lookup: SET fedsql.hidden_params = on --------------------------------------------------

NEEDLES = ["needle-7f3a9c", 918273645]  # looked up, absent everywhere: no file of any party may hold them


def _reference(ref, sql: str, params: list) -> pa.Table:
    from connectors.dbapi import substitute_parameters

    return duckdb_arrow(ref, substitute_parameters(sql, params))


@pytest.mark.parametrize("sql, params", [
    ("SELECT p.tier, p.lim FROM c.profile p WHERE p.cid = ?", "present"),
    ("SELECT p.tier, p.lim FROM c.profile p WHERE p.cid = ?", [NEEDLES[1]]),
    ("SELECT p.tier, p.lim FROM c.profile p WHERE p.cid = ?", [None]),
    ("SELECT p.cid, p.tier, p.since FROM c.profile p WHERE p.cid IN (?, ?, ?, ?, ?) ORDER BY p.cid", "mixed"),
    ("SELECT y.branch, y.bal FROM b.acct y WHERE y.\"Name\" = ? AND y.bal > ?", None),
    ("SELECT y.branch, y.bal FROM b.acct y WHERE y.\"Name\" = ?", ["Ann"]),
    ("SELECT y.branch FROM b.acct y WHERE y.\"Name\" IN (?, ?)", [NEEDLES[0], "ann"]),
])
@pytest.mark.parametrize("mode", ["sizes", "oblivious"])  # a matcher holding no input / no matcher at all
def test_hidden_lookup_returns_the_matching_rows(rowfed, sql, params, mode):
    conns, ref, _ = rowfed
    present = duckdb_arrow(ref, "SELECT cid FROM c.profile ORDER BY cid")["cid"].to_pylist()
    if isinstance(params, str):
        params = {"present": [present[3]], "mixed": [present[0], present[0], None, NEEDLES[1], present[-1]]}[params]
    cur = conns["a"].cursor()
    cur.execute(f"SET fedsql.mode = '{mode}'")
    cur.execute("SET fedsql.hidden_params = on")
    try:
        if params is None:  # a ? that is not a lookup key is refused, and says what to do
            with pytest.raises(fedsql_errors.UnsupportedSql, match="col = \\?"):
                cur.execute(sql, ["Ann", 0])
            return
        cur.execute(sql, params)
        assert_matches(cur.fetch_arrow_table(), _reference(ref, sql, params), sql)
        k = len(params)
        assert any(f"looked up {k} hidden key value" in line for line in cur.leakage), cur.leakage
        matched = any("match each hidden value" in line for line in cur.leakage)
        assert matched == (mode == "sizes"), cur.leakage
    finally:
        cur.execute("SET fedsql.hidden_params = off")
        cur.execute("SET fedsql.mode = 'sizes'")


def test_a_hidden_lookup_of_thousands_of_keys(rowfed):
    conns, ref, _ = rowfed
    keys = list(range(-2000, 1000))
    sql = f"SELECT p.cid, p.lim FROM c.profile p WHERE p.cid IN ({', '.join('?' for _ in keys)})"
    cur = conns["a"].cursor()
    cur.execute("SET fedsql.hidden_params = on")
    for mode in ("sizes", "oblivious"):  # matched by b / an oblivious sort of keys and rows
        cur.execute(f"SET fedsql.mode = '{mode}'")
        cur.execute(sql, keys)
        assert_matches(cur.fetch_arrow_table(), _reference(ref, sql, keys), sql)
    cur.execute("SET fedsql.hidden_params = off")
    cur.execute("SET fedsql.mode = 'sizes'")


def test_hidden_lookup_refusals_are_clear(rowfed):
    conns, _, _ = rowfed
    cur = conns["a"].cursor()
    cur.execute("SET fedsql.hidden_params = on")
    try:
        with pytest.raises(fedsql_errors.Error, match="has 2 hidden \\? parameters but 1 value were sent"):
            cur.execute("SELECT p.tier FROM c.profile p WHERE p.cid IN (?, ?)", [1])
        with pytest.raises(fedsql_errors.UnsupportedSql, match="a's own column"):
            cur.execute("SELECT x.seg FROM a.cust x WHERE x.cid = ?", [1])
        with pytest.raises(fedsql_errors.DataError, match="hidden parameter 1 cannot be read as BIGINT"):
            cur.execute("SELECT p.tier FROM c.profile p WHERE p.cid = ?", ["not a number"])
        cur.execute("SELECT x.seg FROM a.cust x UNION SELECT y.seg FROM a.cust y")  # no ?: runs as usual
        cur.execute("EXPLAIN SELECT p.tier FROM c.profile p WHERE p.cid IN (?, ?)", [1, 2])
        plan = "\n".join(str(r[0]) for r in cur.fetchall())
        assert "hidden" in plan.lower() and "1, 2" not in plan, plan
        with pytest.raises(fedsql_errors.UnsupportedSql, match="single SELECT"):
            cur.execute("SELECT x.seg FROM a.cust x UNION SELECT p.tier FROM c.profile p WHERE p.cid = ?", [1])
        with pytest.raises(fedsql_errors.PolicyViolation, match="c.profile.cid"):  # an outer join shows every row
            cur.execute("SELECT p.cid FROM c.profile p LEFT JOIN a.cust x ON p.cid = x.cid WHERE p.cid = ?", [1])
    finally:
        cur.execute("SET fedsql.hidden_params = off")


def test_no_party_keeps_the_hidden_values(rowfed):
    """After lookups of values no table holds, no file of any party — state directories, audit
    chains, logs, the issuer's own included — contains them (only the issuer's client had them)."""
    conns, _, d = rowfed
    cur = conns["a"].cursor()
    cur.execute("SET fedsql.hidden_params = on")
    cur.execute("SELECT y.branch FROM b.acct y WHERE y.\"Name\" = ?", [NEEDLES[0]])
    cur.execute("SELECT p.tier FROM c.profile p WHERE p.cid IN (?, ?)", [NEEDLES[1], 3])
    with pytest.raises(fedsql_errors.DataError):  # a failing lookup neither
        cur.execute("SELECT p.tier FROM c.profile p WHERE p.cid = ?", [NEEDLES[0]])
    cur.execute("SET fedsql.hidden_params = off")
    checked = 0
    for path in d.rglob("*"):
        if path.is_file() and path.suffix != ".parquet":
            data = path.read_bytes()
            checked += 1
            for needle in NEEDLES:
                assert str(needle).encode() not in data, (needle, path)
    assert checked > 5  # logs and audit chains of every party were read


def test_hidden_lookup_from_the_shell(rowfed):
    """`.params` gives the next statement's ? values; with hidden_params on they stay secret."""
    import io

    from fedsql.shell import Shell

    conns, ref, _ = rowfed
    key = duckdb_arrow(ref, "SELECT MIN(cid) AS k FROM c.profile")["k"][0].as_py()
    out, err = io.StringIO(), io.StringIO()
    script = ("SET fedsql.hidden_params = on;\n.mode csv\n"
              f".params {key}\nSELECT p.lim FROM c.profile p WHERE p.cid = ?;\n"
              "SET fedsql.hidden_params = off;\n")
    assert Shell(conns["a"], out=out, err=err).repl(io.StringIO(script)) == 0, err.getvalue()
    want = duckdb_arrow(ref, f"SELECT lim FROM c.profile WHERE cid = {key}")["lim"][0].as_py()
    assert f"lim\n{'' if want is None else want}\n" in out.getvalue(), out.getvalue()
    assert "1 parameter for the next statement" in out.getvalue()


def test_a_joint_row_result_kept_as_a_scratch_table(rowfed):
    """CREATE TABLE scratch.x AS <PSI/enrichment>: the rows stay at the issuer, queryable there."""
    conns, ref, _ = rowfed
    sql = "SELECT x.cid, x.seg, p.tier FROM a.cust x JOIN c.profile p ON x.cid = p.cid"
    cur = conns["a"].cursor()
    cur.execute(f"CREATE OR REPLACE TABLE scratch.matched AS {sql}")
    cur.execute("SELECT * FROM scratch.matched")
    assert_matches(cur.fetch_arrow_table(), duckdb_arrow(ref, sql), sql)
    cur.execute("DROP TABLE scratch.matched")
