"""PostgreSQL tables, read through ADBC (adbc-driver-postgresql: libpq, Arrow-native COPY).

Each call opens its own short connection: no connection state outlives a query, a restarted
server or a changed password is picked up at once, and one slow query does not block others.
"""

from __future__ import annotations

from urllib.parse import quote as urlquote

from sqlglot import exp

from connectors.sources import Source, pushdown_types_ok, sql_string

# character(n) is left out on purpose: PostgreSQL compares it ignoring trailing blanks, DuckDB would not
_TYPES = {
    "smallint": "SMALLINT", "integer": "INTEGER", "bigint": "BIGINT", "real": "FLOAT",
    "double precision": "DOUBLE", "boolean": "BOOLEAN", "text": "VARCHAR", "character varying": "VARCHAR",
    "date": "DATE", "timestamp without time zone": "TIMESTAMP",
    "timestamp with time zone": "TIMESTAMP WITH TIME ZONE", "uuid": "UUID",
}


class PostgreSQLSource(Source):
    kind = "postgresql"
    engine_name = "PostgreSQL"
    dialect = "postgres"

    def _uri(self) -> str:
        u = self.url
        auth = urlquote(u.user or "", safe="")
        if self._password is not None:
            auth += ":" + urlquote(self._password, safe="")
        params = [*u.params, ("connect_timeout", "5")]
        if self.statement_timeout:  # the server cancels a statement that outlives the query's deadline
            params.append(("options", f"-c statement_timeout={int(self.statement_timeout * 1000)}"))
        extra = "?" + "&".join(f"{urlquote(k)}={urlquote(v)}" for k, v in params)
        return f"postgresql://{auth}{'@' if auth else ''}{u.host}:{u.port}/{urlquote(u.database or '')}{extra}"

    def _connect(self):
        try:
            import adbc_driver_postgresql.dbapi as pg
        except ImportError:
            raise self.fail("the PostgreSQL driver is not installed", hint="pip install adbc-driver-postgresql") from None
        try:
            return pg.connect(self._uri())
        except Exception as exc:  # noqa: BLE001 - any driver failure becomes a clear SourceError
            text = str(exc).lower()
            if "password authentication failed" in text or "no password supplied" in text or "authentication" in text:
                raise self.fail("PostgreSQL refused the login", exc,
                                "check the user in the URL and the password in the party's secrets file "
                                "or its environment variable") from None
            if "does not exist" in text and "database" in text:
                raise self.fail("the database does not exist", exc, "fix the database name in the source URL") from None
            raise self.fail("cannot connect to PostgreSQL (is the server running and reachable?)", exc,
                            "the node keeps serving its other tables") from None

    def schema(self) -> list[tuple[str, str]]:
        schema, name = self.relation_parts()
        rows = self._run(
            "SELECT column_name, data_type, numeric_precision, numeric_scale FROM information_schema.columns "
            f"WHERE table_schema = {sql_string(schema or 'public')} AND table_name = {sql_string(name)} ORDER BY ordinal_position",
            "describe the table").to_pylist()
        if not rows:
            raise self.fail("the relation does not exist (or the user may not read it)",
                            hint="create it, grant SELECT on it, or fix table = ... in the configuration")
        out = []
        for r in rows:
            t = r["data_type"]
            if t == "numeric":
                if r["numeric_precision"] is None:
                    raise self.fail(f"column {r['column_name']!r} is numeric without a precision",
                                    hint="declare it numeric(p, s) (p ≤ 38) or expose a view that casts it")
                p, s = int(r["numeric_precision"]), int(r["numeric_scale"] or 0)
                if p > 38:
                    raise self.fail(f"column {r['column_name']!r} is numeric({p}, {s}); at most 38 digits are supported")
                out.append((r["column_name"], f"DECIMAL({p},{s})"))
            elif t in _TYPES:
                out.append((r["column_name"], _TYPES[t]))
            else:
                raise self.fail(f"column {r['column_name']!r} has type {t}, which fedsql does not read",
                                hint="expose a view that casts it to a number, text, date or timestamp")
        return out

    def can_run(self, ast: exp.Expression, types: dict[str, str]) -> bool:
        # text order follows the database's collation (often not DuckDB's byte order); real sums
        # accumulate in float4 there, in DOUBLE in DuckDB
        return super().can_run(ast, types) and pushdown_types_ok(ast, types, ("UUID", "FLOAT"), ("VARCHAR",))
