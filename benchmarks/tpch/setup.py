"""Generate TPC-H data and a three-party federation over it (issue #3).

    python -m benchmarks.tpch.setup --sf 0.1 --out /tmp/fedsql-tpch-sf0.1

Writes DIR/data/<table>.parquet with tpchgen-cli (`pip install tpchgen-cli`, or
`pip install -e '.[bench]'`) and DIR/federation.toml with this split:

    retail     customer, orders
    logistics  lineitem
    supply     supplier, part, partsupp
    every party: nation, region (public tables, the same file)

The three parties are also the compute parties. Column levels and the reason
for each are in benchmarks/tpch/README.md (and repeated as comments in the
written federation.toml).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

TABLES = ("customer", "orders", "lineitem", "supplier", "part", "partsupp", "nation", "region")

SPLIT = {
    "retail": ("customer", "orders"),
    "logistics": ("lineitem",),
    "supply": ("supplier", "part", "partsupp"),
}
PUBLIC_TABLES = ("nation", "region")  # at every party

# column → (level, reason); unlisted columns would be private, but every column is listed here
POLICY: dict[str, dict[str, tuple[str, str]]] = {
    "customer": {
        "c_custkey": ("group_key", "Q10 labels its groups by customer; customer joins orders only locally at retail"),
        "c_name": ("group_key", "Q10 returns it as a group label"),
        "c_address": ("group_key", "Q10 returns it as a group label"),
        "c_nationkey": ("join_key", "Q5 matches it with the supplier's nation (supply)"),
        "c_phone": ("group_key", "Q10 returns it as a group label"),
        "c_acctbal": ("group_key", "Q10 returns it as a group label (a measure, but Q10 groups by it)"),
        "c_mktsegment": ("aggregate", "Q3 filters on it"),
        "c_comment": ("group_key", "Q10 returns it as a group label; in sizes/reveal mode the compute parties see "
                                   "group labels (see README)"),
    },
    "orders": {
        "o_orderkey": ("public", "joined with lineitem across parties (join_key) and Q3's group label "
                                 "(group_key); no single level below public allows both. A surrogate key"),
        "o_custkey": ("join_key", "key to customer"),
        "o_orderstatus": ("aggregate", "filters"),
        "o_totalprice": ("aggregate", "a measure"),
        "o_orderdate": ("group_key", "Q3 returns it as a group label; Q8/Q9 group by its year; filters"),
        "o_orderpriority": ("group_key", "Q4 groups by it; Q12 aggregates a CASE over it"),
        "o_clerk": ("private", "employee identity, no query needs it"),
        "o_shippriority": ("group_key", "Q3 returns it as a group label"),
        "o_comment": ("private", "free text"),
    },
    "lineitem": {
        "l_orderkey": ("join_key", "matched with orders (retail)"),
        "l_partkey": ("join_key", "matched with part/partsupp (supply)"),
        "l_suppkey": ("join_key", "matched with supplier/partsupp (supply)"),
        "l_linenumber": ("aggregate", "a measure"),
        "l_quantity": ("aggregate", "a measure, predicates (Q19)"),
        "l_extendedprice": ("aggregate", "a measure (revenue expressions)"),
        "l_discount": ("aggregate", "a measure (revenue expressions), Q6 predicate"),
        "l_tax": ("aggregate", "a measure (Q1)"),
        "l_returnflag": ("group_key", "Q1 groups by it; Q10 filters"),
        "l_linestatus": ("group_key", "Q1 groups by it"),
        "l_shipdate": ("group_key", "Q7 groups by its year; date filters"),
        "l_commitdate": ("aggregate", "Q4/Q12 predicates"),
        "l_receiptdate": ("aggregate", "Q4/Q12 predicates"),
        "l_shipinstruct": ("aggregate", "Q19 predicate"),
        "l_shipmode": ("group_key", "Q12 groups by it"),
        "l_comment": ("private", "free text"),
    },
    "supplier": {
        "s_suppkey": ("join_key", "matched with lineitem (logistics)"),
        "s_name": ("private", "identity; only subquery queries (Q2/Q15/Q20/Q21) would return it"),
        "s_address": ("private", "identity"),
        "s_nationkey": ("join_key", "Q5 matches it with the customer's nation (retail)"),
        "s_phone": ("private", "identity"),
        "s_acctbal": ("aggregate", "a measure"),
        "s_comment": ("private", "free text"),
    },
    "part": {
        "p_partkey": ("join_key", "matched with lineitem (logistics)"),
        "p_name": ("aggregate", "Q9 filters on it (LIKE)"),
        "p_mfgr": ("aggregate", "predicates"),
        "p_brand": ("group_key", "Q16 groups by it; Q19 predicates"),
        "p_type": ("group_key", "Q16 groups by it; Q14 CASE, Q8 filter"),
        "p_size": ("group_key", "Q16 groups by it; Q19 predicates"),
        "p_container": ("aggregate", "Q17/Q19 predicates"),
        "p_retailprice": ("aggregate", "a measure"),
        "p_comment": ("private", "free text"),
    },
    "partsupp": {
        "ps_partkey": ("public", "matched with lineitem (Q9: join_key) and Q11's group label (group_key); "
                                 "no level below public allows both. A surrogate key"),
        "ps_suppkey": ("join_key", "matched with lineitem (Q9)"),
        "ps_availqty": ("aggregate", "a measure"),
        "ps_supplycost": ("aggregate", "a measure (Q9 profit)"),
        "ps_comment": ("private", "free text"),
    },
    # reference data, identical at every party
    "nation": {c: ("public", "public reference table") for c in ("n_nationkey", "n_name", "n_regionkey", "n_comment")},
    "region": {c: ("public", "public reference table") for c in ("r_regionkey", "r_name", "r_comment")},
}


# primary keys, declared so that `oblivious` mode can run PK-FK joins (the engine checks them at run time)
UNIQUE: dict[str, list] = {
    "customer": ["c_custkey"],
    "orders": ["o_orderkey"],
    "lineitem": [["l_orderkey", "l_linenumber"]],
    "supplier": ["s_suppkey"],
    "part": ["p_partkey"],
    "partsupp": [["ps_partkey", "ps_suppkey"]],
    "nation": ["n_nationkey"],
    "region": ["r_regionkey"],
}


def tpchgen() -> str:
    """Path of the tpchgen-cli executable (next to this Python first)."""
    here = Path(sys.executable).parent / "tpchgen-cli"
    if here.exists():
        return str(here)
    found = shutil.which("tpchgen-cli")
    if found:
        return found
    raise SystemExit("tpchgen-cli not found: pip install tpchgen-cli (or pip install -e '.[bench]')")


def generate(sf: float, data: Path) -> None:
    """DIR/data/<table>.parquet at scale factor `sf` (kept when DIR/data/SF already says so)."""
    marker = data / "SF"
    if marker.is_file() and marker.read_text().strip() == f"{sf:g}" and all(
        (data / f"{t}.parquet").is_file() for t in TABLES
    ):
        return
    data.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    for t in TABLES:  # another scale factor, or an interrupted run: start afresh
        (data / f"{t}.parquet").unlink(missing_ok=True)
    # one file per table (no --parts): each party's source is a single Parquet file
    subprocess.run([tpchgen(), "parquet", "-s", f"{sf:g}", "--output-dir", str(data), "-q"], check=True)
    for t in TABLES:
        if not (data / f"{t}.parquet").is_file():
            raise SystemExit(f"tpchgen-cli did not write {data / (t + '.parquet')}")
    marker.write_text(f"{sf:g}\n")


def _toml_columns(table: str) -> str:
    return "{ " + ", ".join(f'{c} = "{lvl}"' for c, (lvl, _) in POLICY[table].items()) + " }"


def federation_toml(sf: float, ports: list[int]) -> str:
    lines = [
        f"# Federated TPC-H, SF {sf:g} (benchmarks/tpch/setup.py). Policies: benchmarks/tpch/README.md",
        "[federation]",
        f'name = "tpch"',
        'compute = ["retail", "logistics", "supply"]',
        "deadline_seconds = 1800",
        'default_mode = "sizes"',
        "",
    ]
    for (party, tables), port in zip(SPLIT.items(), ports):
        lines += [f"[parties.{party}]", f'address = "127.0.0.1:{port}"']
        for t in tables + PUBLIC_TABLES:
            lines += [f"[parties.{party}.tables.{t}]", f'source = "data/{t}.parquet"']
            for col, (lvl, why) in POLICY[t].items():
                if t not in PUBLIC_TABLES:
                    lines.append(f"# {col}: {lvl} - {why}")
            lines.append(f"columns = {_toml_columns(t)}")
            lines.append("unique = " + json.dumps(UNIQUE[t]))
        lines.append("")
    return "\n".join(lines)


def write_federation(sf: float, out: Path) -> Path:
    from fedsql.launcher import free_ports

    out.mkdir(parents=True, exist_ok=True)
    generate(sf, out / "data")
    config = out / "federation.toml"
    config.write_text(federation_toml(sf, free_ports(3)))
    return config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sf", type=float, default=0.1, help="TPC-H scale factor (default 0.1)")
    ap.add_argument("--out", required=True, type=Path, help="directory for data/ and federation.toml")
    args = ap.parse_args(argv)
    config = write_federation(args.sf, args.out)
    print(f"wrote {config} (data in {args.out / 'data'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
