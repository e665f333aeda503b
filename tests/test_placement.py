"""Placement (planner/placement.py): a party's local fragment never joins tables the query did not connect.

Every TPC-H query of benchmarks/tpch/queries/ is planned in each mode over the benchmark's
federation (no data needed: the schemas are TPC-H's), and each local fragment's FROM
tables must be connected by its own conditions. Q8 is the case that broke: supply.part and
supply.supplier meet only through logistics.lineitem, and their cross product ran out of
memory at SF 1.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from benchmarks.tpch.run import fedsql_text
from benchmarks.tpch.setup import federation_toml
from fedsql import errors
from fedsql.config import parse_config
from planner.compile import compile_query
from planner.explain import explain_lines
from planner.placement import aliases_of

TYPES = {
    "customer": "c_custkey BIGINT, c_name VARCHAR, c_address VARCHAR, c_nationkey BIGINT, c_phone VARCHAR, "
                "c_acctbal DECIMAL(15,2), c_mktsegment VARCHAR, c_comment VARCHAR",
    "orders": "o_orderkey BIGINT, o_custkey BIGINT, o_orderstatus VARCHAR, o_totalprice DECIMAL(15,2), "
              "o_orderdate DATE, o_orderpriority VARCHAR, o_clerk VARCHAR, o_shippriority INTEGER, o_comment VARCHAR",
    "lineitem": "l_orderkey BIGINT, l_partkey BIGINT, l_suppkey BIGINT, l_linenumber INTEGER, "
                "l_quantity DECIMAL(15,2), l_extendedprice DECIMAL(15,2), l_discount DECIMAL(15,2), "
                "l_tax DECIMAL(15,2), l_returnflag VARCHAR, l_linestatus VARCHAR, l_shipdate DATE, l_commitdate DATE, "
                "l_receiptdate DATE, l_shipinstruct VARCHAR, l_shipmode VARCHAR, l_comment VARCHAR",
    "supplier": "s_suppkey BIGINT, s_name VARCHAR, s_address VARCHAR, s_nationkey BIGINT, s_phone VARCHAR, "
                "s_acctbal DECIMAL(15,2), s_comment VARCHAR",
    "part": "p_partkey BIGINT, p_name VARCHAR, p_mfgr VARCHAR, p_brand VARCHAR, p_type VARCHAR, p_size INTEGER, "
            "p_container VARCHAR, p_retailprice DECIMAL(15,2), p_comment VARCHAR",
    "partsupp": "ps_partkey BIGINT, ps_suppkey BIGINT, ps_availqty INTEGER, ps_supplycost DECIMAL(15,2), "
                "ps_comment VARCHAR",
    "nation": "n_nationkey BIGINT, n_name VARCHAR, n_regionkey BIGINT, n_comment VARCHAR",
    "region": "r_regionkey BIGINT, r_name VARCHAR, r_comment VARCHAR",
}
SCHEMAS = {t: tuple(tuple(c.strip().split(" ", 1)) for c in cols.replace("(15,2)", "(15;2)").split(","))
           for t, cols in TYPES.items()}
SCHEMAS = {t: tuple((c, ty.replace(";", ",")) for c, ty in cols) for t, cols in SCHEMAS.items()}
QUERIES = sorted(int(p.stem[1:]) for p in (Path(__file__).parents[1] / "benchmarks/tpch/queries").glob("q*.sql"))
MODES = ("sizes", "reveal", "oblivious")


@pytest.fixture(scope="module")
def fed():
    return parse_config(federation_toml(0.01, [7301, 7302, 7303]), Path("/tmp/tpch-placement.toml"))


def plan(fed, sql: str, mode: str = "sizes"):
    return compile_query(sql, fed, "retail", {"fedsql.mode": mode}, lambda p, t: SCHEMAS[t]).plan


def unconnected(sql: str) -> list[str]:
    """The FROM tables of a fragment's top-level SELECT that its own conditions do not connect
    to the first one ([] when connected; a fragment reading a subquery is judged by its tables)."""
    select = sqlglot.parse_one(sql, read="duckdb")
    tables = [t for t in [select.args["from_"].this] + [j.this for j in select.args.get("joins") or []]
              if isinstance(t, exp.Table)]
    aliases = [t.alias_or_name for t in tables]
    conds = [select.args["where"].this] if select.args.get("where") else []
    conds += [j.args["on"] for j in select.args.get("joins") or [] if j.args.get("on")]
    parts = [c for cond in conds for c in (cond.flatten() if isinstance(cond, exp.And) else [cond])]
    reached = set(aliases[:1])
    grew = True
    while grew:
        grew = False
        for c in parts:
            used = aliases_of(c) & set(aliases)
            if used & reached and not used <= reached:
                reached |= used
                grew = True
    return [a for a in aliases if a not in reached]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("number", QUERIES)
def test_no_fragment_joins_tables_the_query_does_not_connect(fed, number, mode):
    try:
        p = plan(fed, fedsql_text(number), mode)
    except (errors.NotSupportedError, errors.PolicyViolation):
        pytest.skip(f"Q{number} is refused in {mode} mode")
    for step in p.steps:
        if step.op == "local_query":
            assert unconnected(step.sql) == [], f"Q{number} {mode}: {step.id} at {step.party} is a cross product"


@pytest.mark.parametrize("mode", MODES)
def test_q8_supply_runs_part_and_supplier_as_two_fragments(fed, mode):
    p = plan(fed, fedsql_text(8), mode)
    supply = [s.sql for s in p.steps if s.op == "local_query" and s.party == "supply"]
    tables = sorted(sorted(t.name for t in sqlglot.parse_one(sql, read="duckdb").find_all(exp.Table)) for sql in supply)
    assert tables == [["nation", "supplier"], ["part"]]
    text = "\n".join(explain_lines(p))
    assert "supply (part)" in text and "supply (supplier, n2)" in text  # the leakage report names each part


def test_the_querys_own_cross_product_stays_in_one_fragment(fed):
    # region is joined with nothing: the query asks for the cross product, computed locally as before
    p = plan(fed, "SELECT COUNT(*) FROM retail.orders o, retail.region r, logistics.lineitem l "
                  "WHERE o.o_orderkey = l.l_orderkey")
    retail = [s.sql for s in p.steps if s.op == "local_query" and s.party == "retail"]
    assert len(retail) == 1 and "region" in retail[0] and "orders" in retail[0]


def test_parts_are_merged_only_where_the_query_would_fall_apart(fed):
    # supply's part meets lineitem and its supplier meets orders, but lineitem and orders are not
    # joined: the only connection is supply's own cross product, so it stays one fragment
    p = plan(fed, "SELECT COUNT(*) FROM supply.part p, supply.supplier s, logistics.lineitem l, retail.customer c "
                  "WHERE p.p_partkey = l.l_partkey AND s.s_nationkey = c.c_nationkey")
    supply = [s for s in p.steps if s.op == "local_query" and s.party == "supply"]
    assert len(supply) == 1


def test_a_local_theta_join_keeps_its_tables_together(fed):
    # part and supplier are connected by a non-equality of their own: one fragment, as written
    p = plan(fed, "SELECT COUNT(*) FROM supply.part p, supply.supplier s, logistics.lineitem l "
                  "WHERE p.p_partkey = l.l_partkey AND s.s_suppkey = l.l_suppkey AND p.p_size < s.s_nationkey")
    supply = [s.sql for s in p.steps if s.op == "local_query" and s.party == "supply"]
    assert len(supply) == 1 and "p.p_size < s.s_nationkey" in supply[0]


def test_a_group_key_over_two_tables_of_one_party_keeps_them_together(fed):
    # the key must be computed by one fragment: part and supplier stay one (as the query needs)
    p = plan(fed, "SELECT p.p_brand || n.n_name AS k, COUNT(*) FROM supply.part p, supply.supplier s, "
                  "supply.nation n, logistics.lineitem l WHERE p.p_partkey = l.l_partkey AND s.s_suppkey = l.l_suppkey "
                  "AND s.s_nationkey = n.n_nationkey GROUP BY p.p_brand || n.n_name")
    supply = [s.sql for s in p.steps if s.op == "local_query" and s.party == "supply"]
    assert len(supply) == 1 and "part" in supply[0] and "supplier" in supply[0]
