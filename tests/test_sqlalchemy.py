"""The `fedsql://` SQLAlchemy dialect: entry point, URL, inspector, queries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

sqlalchemy = pytest.importorskip("sqlalchemy")

from sqlalchemy import create_engine, inspect, text  # noqa: E402

from connectors.sqlalchemy_dialect import FedsqlDialect, sqla_type  # noqa: E402


def test_entry_point_and_url() -> None:
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="sqlalchemy.dialects")}
    assert eps.get("fedsql") == "connectors.sqlalchemy_dialect:FedsqlDialect"
    from sqlalchemy.engine import make_url

    url = make_url("fedsql:///fed/federation.toml?party=h1&mode=reveal&timeout=30")
    assert url.get_dialect() is FedsqlDialect
    args, kwargs = FedsqlDialect().create_connect_args(url)
    assert args == [] and kwargs == {"config": "fed/federation.toml", "party": "h1", "mode": "reveal", "timeout": 30.0}
    _, kwargs = FedsqlDialect().create_connect_args(make_url("fedsql:////abs/federation.toml?party=h1"))
    assert kwargs["config"] == "/abs/federation.toml"
    import fedsql

    with pytest.raises(fedsql.InterfaceError, match="party"):
        FedsqlDialect().create_connect_args(make_url("fedsql:///f.toml"))


def test_type_mapping() -> None:
    from sqlalchemy import types as t

    assert isinstance(sqla_type("BIGINT"), t.BigInteger)
    dec = sqla_type("DECIMAL(10,2)")
    assert isinstance(dec, t.Numeric) and (dec.precision, dec.scale) == (10, 2)
    assert isinstance(sqla_type("VARCHAR"), t.String)
    assert isinstance(sqla_type("DOUBLE"), getattr(t, "Double", t.Float))  # 1.4 has no Double
    assert isinstance(sqla_type("TIMESTAMP WITH TIME ZONE"), t.DateTime) and sqla_type("TIMESTAMPTZ").timezone
    assert isinstance(sqla_type("DATE"), t.Date) and isinstance(sqla_type("BOOLEAN"), t.Boolean)
    assert isinstance(sqla_type("INTEGER[]"), t.ARRAY)
    assert isinstance(sqla_type("MAP(VARCHAR, INTEGER)"), t.NullType)


@pytest.mark.e2e
def test_inspector_and_queries(federation: tuple[Path, Any], reference: Any) -> None:
    config, _ = federation
    engine = create_engine(f"fedsql:///{config}?party=p1")  # absolute path: four slashes
    try:
        insp = inspect(engine)
        schemas = insp.get_schema_names()
        assert {"p1", "p2", "p3", "federated", "scratch"} <= set(schemas)
        assert insp.default_schema_name == "federated"
        assert insp.get_table_names() == ["t"]
        assert insp.get_table_names(schema="p2") == ["t"]
        assert insp.has_table("t", schema="p3") and not insp.has_table("nope", schema="p3")
        cols = insp.get_columns("t", schema="p2")
        assert [c["name"] for c in cols] == ["id", "k", "x", "d", "f", "b", "g"]
        types = {c["name"]: c["type"] for c in cols}
        assert isinstance(types["d"], sqlalchemy.Numeric) and types["d"].scale == 2
        assert isinstance(types["k"], sqlalchemy.String) and isinstance(types["b"], sqlalchemy.Boolean)
        assert cols[0]["comment"] == "fedsql level: private"
        assert insp.get_pk_constraint("t", schema="p2")["constrained_columns"] == []
        assert insp.get_foreign_keys("t") == [] and insp.get_indexes("t") == [] and insp.get_view_names() == []

        with engine.connect() as c:
            n = c.execute(text("SELECT COUNT(*) AS n FROM t WHERE g >= :g"), {"g": 2}).scalar_one()
            assert n == reference("SELECT COUNT(*) FROM t WHERE g >= 2").column(0)[0].as_py()
            # Core expressions over reflected tables: the union's pseudo schema is not rendered
            meta = sqlalchemy.MetaData()
            tbl = sqlalchemy.Table("t", meta, schema="federated", autoload_with=c)
            stmt = sqlalchemy.select(tbl.c.k, sqlalchemy.func.count().label("n")).group_by(tbl.c.k).order_by(tbl.c.k)
            assert "federated" not in str(stmt.compile(engine))
            got = c.execute(stmt).all()
            want = reference("SELECT k, COUNT(*) AS n FROM t GROUP BY k ORDER BY k NULLS LAST").to_pylist()
            assert [tuple(r) for r in got] == [(w["k"], w["n"]) for w in want]
            p2 = sqlalchemy.Table("t", meta, schema="p2", autoload_with=c)
            s = c.execute(sqlalchemy.select(sqlalchemy.func.sum(p2.c.x))).scalar_one()
            assert s == reference('SELECT SUM(x) FROM "p2"."t"').column(0)[0].as_py()
            # scratch tables appear in the inspector once written
            c.execute(text("CREATE OR REPLACE TABLE scratch.sa_result AS SELECT g, COUNT(*) AS n FROM t GROUP BY g"))
            assert "sa_result" in inspect(c).get_table_names(schema="scratch")
            rows = c.execute(text("SELECT SUM(n) FROM scratch.sa_result")).scalar_one()
            assert rows == reference("SELECT COUNT(*) FROM t").column(0)[0].as_py()
    finally:
        engine.dispose()


@pytest.mark.e2e
def test_pandas_read_sql(federation: tuple[Path, Any], reference: Any) -> None:
    """What Superset and notebooks do: pandas over the engine."""
    pd = pytest.importorskip("pandas")
    config, _ = federation
    engine = create_engine(f"fedsql:///{config}?party=p1")
    try:
        frame = pd.read_sql(text("SELECT g, COUNT(*) AS n, SUM(x) AS s FROM t GROUP BY g ORDER BY g"), engine)
        want = reference("SELECT g, COUNT(*) AS n, SUM(x) AS s FROM t GROUP BY g ORDER BY g").to_pylist()
        assert [(int(r.g), int(r.n), int(r.s)) for r in frame.itertuples()] == [(w["g"], w["n"], w["s"]) for w in want]
    finally:
        engine.dispose()
