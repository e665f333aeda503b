"""planner/compose.py: which statements are answered as parts plus a step at the issuer (SQL in,
parts and combine step out), and which stay one query for the planner. The results of composite
statements are compared with DuckDB in tests/test_corpus.py (COMPOSITE)."""

from __future__ import annotations

import pytest

from fedsql.config import load_config
from planner.compose import decompose, parse
from planner.parse import DIALECT

import sqlglot

CONFIG = """\
[federation]
name = "compose"
compute = ["p", "q", "r"]
[parties.p]
address = "127.0.0.1:1"
[parties.p.tables.cust]
source = "c.parquet"
columns = { cid = "join_key", seg = "group_key" }
[parties.p.tables.u]
source = "u.parquet"
columns = { g = "group_key" }
[parties.q]
address = "127.0.0.1:2"
[parties.q.tables.ord]
source = "o.parquet"
columns = { cid = "join_key", amount = "aggregate", ch = "group_key" }
[parties.q.tables.u]
source = "u.parquet"
columns = { g = "group_key" }
[parties.r]
address = "127.0.0.1:3"
[federated.u]
union = ["p.u", "q.u"]
"""

JOIN = "FROM p.cust c JOIN q.ord o ON c.cid = o.cid"


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    path = tmp_path_factory.mktemp("compose") / "federation.toml"
    path.write_text(CONFIG)
    return load_config(path)


def _d(sql: str, fed):
    return decompose(sqlglot.parse_one(sql, read=DIALECT), fed)


def test_windows_over_groups_lift_the_grouped_query(fed):
    c = _d(f"SELECT c.seg, SUM(o.amount) AS s, RANK() OVER (ORDER BY SUM(o.amount) DESC) {JOIN} GROUP BY c.seg "
           "ORDER BY s LIMIT 3", fed)
    assert [p.sql for p in c.parts] == [
        f'SELECT c.seg AS "__g1", SUM(o.amount) AS "__a1" FROM p.cust AS c JOIN q.ord AS o ON c.cid = o.cid '
        "GROUP BY c.seg"]
    assert c.combine == ('SELECT "__g1", "__a1" AS s, RANK() OVER (ORDER BY "__a1" DESC) FROM "__part1" '
                         "ORDER BY s LIMIT 3")
    assert c.rename is not None and c.parts[0].what == "the grouped query"


def test_positional_and_alias_group_keys_and_qualify(fed):
    c = _d(f"SELECT o.ch AS channel, COUNT(*) n, ROW_NUMBER() OVER (ORDER BY COUNT(*)) {JOIN} GROUP BY channel "
           "QUALIFY ROW_NUMBER() OVER (ORDER BY COUNT(*)) = 1", fed)
    assert c.parts[0].sql.startswith('SELECT o.ch AS "__g1", COUNT(*) AS "__a1" FROM')
    assert 'QUALIFY ROW_NUMBER() OVER (ORDER BY "__a1") = 1' in c.combine
    c = _d(f"SELECT o.ch, COUNT(*), SUM(COUNT(*)) OVER () {JOIN} GROUP BY 1", fed)
    assert c.combine == 'SELECT "__g1", "__a1", SUM("__a1") OVER () FROM "__part1"'


def test_grouped_derived_tables_over_several_parties_are_parts(fed):
    c = _d(f"WITH j AS (SELECT o.ch, COUNT(*) AS k {JOIN} GROUP BY o.ch), s AS (SELECT seg FROM p.cust GROUP BY seg) "
           "SELECT j.ch, j.k FROM j, j AS again, s WHERE j.k > 2", fed)
    assert [(p.name, p.what) for p in c.parts] == [("__part1", "CTE j"), ("__part2", "CTE s")]  # j once
    assert c.combine == 'SELECT j.ch, j.k FROM "__part1" AS j, "__part1" AS again, "__part2" AS s WHERE j.k > 2'
    # a CTE read through another CTE travels with it
    c = _d(f"WITH a AS (SELECT o.ch, COUNT(*) AS k {JOIN} GROUP BY o.ch), b AS (SELECT MAX(k) AS m FROM a) "
           "SELECT m FROM b", fed)
    assert c.parts[0].sql.startswith("WITH a AS (SELECT o.ch, COUNT(*) AS k FROM p.cust")
    # a federated union table is several parties' rows
    assert _d("SELECT AVG(k) FROM (SELECT g, COUNT(*) AS k FROM u GROUP BY g) x", fed).parts[0].what == \
        "derived table x"


def test_union_inside_a_derived_table_is_a_composite_part(fed):
    c = _d("SELECT g, SUM(k) FROM (SELECT g, COUNT(*) AS k FROM p.u GROUP BY g UNION ALL "
           "SELECT ch, COUNT(*) FROM q.ord GROUP BY ch) x GROUP BY g", fed)
    inner = _d(c.parts[0].sql, fed)
    assert [p.what for p in inner.parts] == ["branch 1", "branch 2"]
    assert inner.combine == 'SELECT * FROM "__part1" UNION ALL SELECT * FROM "__part2"'


def test_windows_over_rows_lift_the_rows_they_read(fed):
    """The part is the row-level query of every column the windows and the list read; its owners'
    policies decide whether the issuer may have those rows (tests/test_e2e_row_joins.py)."""
    c = _d(f"SELECT c.cid, ROW_NUMBER() OVER (PARTITION BY o.ch ORDER BY c.cid) AS rn {JOIN} WHERE o.amount > 3 "
           "QUALIFY rn <= 2 ORDER BY c.cid LIMIT 5", fed)
    assert [p.sql for p in c.parts] == [
        'SELECT c.cid AS "__c1", o.ch AS "__c2" FROM p.cust AS c JOIN q.ord AS o ON c.cid = o.cid WHERE o.amount > 3']
    assert c.combine == ('SELECT "__c1", ROW_NUMBER() OVER (PARTITION BY "__c2" ORDER BY "__c1") AS rn FROM "__part1" '
                         'QUALIFY rn <= 2 ORDER BY "__c1" LIMIT 5')
    assert c.rename is not None and c.parts[0].what == "the rows the windows read"
    assert _d("SELECT g, ROW_NUMBER() OVER () FROM u", fed).parts[0].sql == 'SELECT g AS "__c1" FROM u'


@pytest.mark.parametrize("sql", [
    f"SELECT COUNT(*) FROM (SELECT c.cid {JOIN}) x",  # row-level: folds into the outer query
    "SELECT SUM(k) FROM (SELECT ch, COUNT(*) AS k FROM q.ord GROUP BY ch) s",  # one party: a local view
    f"SELECT x.k FROM (SELECT o.ch, COUNT(*) AS k {JOIN} GROUP BY o.ch) x JOIN p.cust c ON c.seg = x.ch",
    f"SELECT * FROM (SELECT o.ch, COUNT(*) AS k {JOIN} GROUP BY o.ch) x WHERE k > (SELECT COUNT(*) FROM q.ord)",
    f"SELECT c.seg, COUNT(*) {JOIN} GROUP BY c.seg",  # plain: one query
    f"SELECT o.ch, COUNT(*), RANK() OVER (ORDER BY c.seg) {JOIN} GROUP BY o.ch",  # ungrouped column
])
def test_statements_planned_as_one_query(fed, sql):
    assert _d(sql, fed) is None


def test_parse_sees_explain_and_leaves_syntax_errors_to_the_planner(fed):
    c, explain = parse("EXPLAIN SELECT 1 UNION ALL SELECT 2", fed)
    assert explain and [p.sql for p in c.parts] == ["SELECT 1", "SELECT 2"]
    assert parse("SELECT ((", fed) == (None, False)
    assert parse("SELECT COUNT(*) FROM q.ord", fed) == (None, False)


def test_rollup_cube_and_grouping_sets_are_one_part_per_set(fed):
    c = _d(f"SELECT c.seg, o.ch, SUM(o.amount) s, GROUPING(c.seg, o.ch) g {JOIN} GROUP BY ROLLUP (c.seg, o.ch) "
           "HAVING SUM(o.amount) > 0 ORDER BY g DESC, s LIMIT 4", fed)
    assert [p.what for p in c.parts] == ["grouping set 1", "grouping set 2", "grouping set 3"]
    assert c.parts[1].sql == ('SELECT c.seg AS "__g1", SUM(o.amount) AS "__a1" FROM p.cust AS c JOIN q.ord AS o '
                              "ON c.cid = o.cid GROUP BY c.seg HAVING SUM(o.amount) > 0")
    assert c.parts[2].sql.endswith("ON c.cid = o.cid HAVING SUM(o.amount) > 0")  # the () set: no GROUP BY
    assert '3 AS "__c4"' in c.combine and 'NULL AS "__c1", NULL AS "__c2"' in c.combine  # GROUPING: a bitmask
    assert c.combine.endswith('ORDER BY "__o1" DESC, "__o2" LIMIT 4') and c.rename is not None
    assert len(_d(f"SELECT c.seg, o.ch, COUNT(*) {JOIN} GROUP BY CUBE (c.seg, o.ch)", fed).parts) == 4
    sets = _d(f"SELECT c.seg, o.ch, COUNT(*) {JOIN} GROUP BY c.seg, GROUPING SETS ((o.ch), ())", fed)
    assert [p.sql.split("GROUP BY ")[-1] for p in sets.parts] == ["c.seg, o.ch", "c.seg"]


@pytest.mark.parametrize("sql, message", [
    (f"SELECT * {JOIN} GROUP BY ROLLUP (c.seg)", "name the columns"),
    (f"SELECT c.seg, RANK() OVER (ORDER BY COUNT(*)) {JOIN} GROUP BY ROLLUP (c.seg)", "window functions"),
    (f"SELECT c.seg, COUNT(*) {JOIN} GROUP BY ROLLUP (c.seg) HAVING c.seg <> 'x'", "HAVING condition over a key"),
    (f"SELECT c.seg, o.amount, COUNT(*) {JOIN} GROUP BY ROLLUP (c.seg)", "o.amount is neither grouped"),
    (f"SELECT COUNT(*) {JOIN} GROUP BY CUBE (c.seg, o.ch, c.cid, o.cid, o.amount, c.seg, o.ch)", "at most 64"),
])
def test_grouping_sets_that_cannot_be_parts_are_refused_by_name(fed, sql, message):
    from fedsql.errors import UnsupportedSql

    with pytest.raises(UnsupportedSql, match=message):
        _d(sql, fed)
