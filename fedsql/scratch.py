"""Statements the issuer's node answers on its own: the scratch space and the catalog.

The *scratch space* keeps results for the issuer (docs/architecture.md: results belong to the
issuer only). Each party's node stores its user's scratch tables as Parquet
files under ``<config dir>/.fedsql/<party>/scratch/<name>.parquet``; SQL names
them ``scratch.<name>``. Only that party's node reads or writes them, and no
other party ever takes part in a statement over them:

- ``CREATE TABLE scratch.x AS SELECT …`` and ``INSERT INTO scratch.x SELECT …``
  whose SELECT reads federation tables first run that SELECT as an ordinary
  federated query (same planning, policy checks, leakage report), then store
  the issuer's result;
- every statement that reads only scratch tables (or no table: ``SELECT 1``)
  runs in a private in-memory DuckDB at the issuer: SELECT, CREATE TABLE
  (with columns or AS SELECT), INSERT (VALUES or SELECT), UPDATE, DELETE,
  DROP TABLE. That DuckDB has file access and Python replacement scans turned
  off, so SQL cannot read files or the node's memory; scratch tables are
  loaded into it through pyarrow and written back atomically.

A statement may not mix scratch and federation tables (a cross-party join of
the issuer's own data is the planner's business); it is refused by name.

The catalog statements are answered here too, from the configuration and the
owners' public schemas: ``SHOW TABLES`` (schema, name, kind),
``DESCRIBE name`` (column_name, column_type, level — the level for this
issuer) and any query that reads only ``information_schema.schemata``,
``.tables`` or ``.columns`` (what BI tools navigate with; filled from the same
catalog, run in a private locked DuckDB). They serve the shell's
`.tables`/`.schema`, the SQLAlchemy inspector and BI tools over the client's
own node only.

If a party is called ``scratch``, ``scratch.x`` means its tables and the
scratch space is off.
"""

from __future__ import annotations

import logging
import itertools
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa

from fedsql import errors, result_meta
from fedsql.permissions import Principal
from fedsql.proto import node_pb2 as pb

log = logging.getLogger("fedsql.node")

SCRATCH = "scratch"
SINK = "sink"  # INSERT INTO sink.NAME: a database of the issuer's own ([parties.P.sinks.NAME])
SOURCE = "__fedsql_source"
INFORMATION_SCHEMA = "information_schema"
INFORMATION_TABLES = ("schemata", "tables", "columns")
_INFO_DB = "__fedsql_information_schema"  # where the answers sit in the private DuckDB (not DuckDB's own)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_EXPLAIN = re.compile(r"^\s*EXPLAIN\s+", re.IGNORECASE)
DIALECT = "duckdb"


def scratch_dir(config_path: str | Path, party: str) -> Path:
    """``<config dir>/.fedsql/<party>/scratch`` (next to the DP ledger)."""
    from fedsql.state import state_dir

    return state_dir(config_path, party) / SCRATCH


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class Routed:
    kind: str  # local | from_federated | copy | copy_local | show_tables | describe | information_schema
    ast: Any
    explain: bool = False
    source_sql: str = ""  # from_federated / copy: the federated SELECT to run first
    target: str = ""  # scratch table written (lower case), if any
    copy: Any = None  # copy / copy_local: the export file written (fedsql/export.py CopyTarget)


class IssuerLocal:
    """Routes and runs the issuer-only statements of one node."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.fed = node.fed
        self.me = node.me
        self.enabled = SCRATCH not in self.fed.parties
        self.directory = scratch_dir(self.fed.path, self.me)
        self.federated_schema = self.fed.federated_schema
        self._lock = threading.Lock()

    @classmethod
    def router(cls, fed: Any, party: str) -> "IssuerLocal":
        """Routing only (`route`), for front ends that must know whether the node plans a statement
        or answers it on its own (e.g. Flight SQL, to give a prepared statement's schema)."""
        from types import SimpleNamespace

        return cls(SimpleNamespace(fed=fed, me=party))

    # -- routing ---------------------------------------------------------------

    def route(self, sql: str) -> Routed | None:
        """How to run `sql`: a Routed, or None for the normal federated path.

        Raises a fedsql error for statements that are refused here (mixing
        scratch and federation tables, writing outside the scratch space).
        """
        import sqlglot
        from sqlglot import exp

        text = sql.strip().rstrip(";").strip()
        explain = bool(_EXPLAIN.match(text))
        if explain:
            text = _EXPLAIN.sub("", text, count=1)
        try:
            trees = [t for t in sqlglot.parse(text, read=DIALECT) if t is not None]
        except Exception:  # noqa: BLE001 - the planner reports syntax errors itself
            return None
        if len(trees) != 1:
            return None
        ast = trees[0]
        if isinstance(ast, exp.Show) and not explain:
            if (ast.name or "").upper() == "TABLES" and not ast.args.get("target"):
                return Routed("show_tables", ast)
            return None
        if isinstance(ast, exp.Describe) and not explain:
            if isinstance(ast.this, exp.Table):
                return Routed("describe", ast)
            return None
        if isinstance(ast, exp.Query) and self._information_schema_tables(ast):
            return Routed("information_schema", ast, explain)
        if isinstance(ast, exp.Copy):
            return self._route_copy(ast, explain)
        writes = isinstance(ast, (exp.Create, exp.Insert, exp.Drop, exp.Delete, exp.Update, exp.Alter))
        if writes:
            return self._route_write(ast, explain)
        if isinstance(ast, exp.Query) and self.enabled:
            local, federated = self._classify(ast)
            if local and federated:
                raise self._mixed()
            if not federated:
                return Routed("local", ast, explain)
        return None

    def _route_write(self, ast: Any, explain: bool) -> Routed:
        from sqlglot import exp

        if isinstance(ast, exp.Alter):
            raise errors.UnsupportedSql("ALTER TABLE is not supported; recreate the scratch table with CREATE TABLE … AS")
        if isinstance(ast, (exp.Create, exp.Drop)) and str(ast.args.get("kind") or "").upper() != "TABLE":
            raise errors.UnsupportedSql(
                f"{ast.key.upper()} {str(ast.args.get('kind') or '').upper()} is not supported: "
                "fedsql keeps only tables in the scratch space (CREATE TABLE scratch.name …)"
            )
        target = ast.this
        if isinstance(ast, exp.Insert) and self._is_sink(target.this if isinstance(target, exp.Schema) else target):
            return self._route_sink(ast, explain)
        if isinstance(ast, exp.Drop) and target is None:
            tables = ast.args.get("tables") or []
            if len(tables) != 1:
                raise errors.UnsupportedSql("drop one scratch table at a time: DROP TABLE scratch.name")
            target = tables[0]
        if isinstance(target, exp.Schema):  # CREATE TABLE x (cols) / INSERT INTO x (cols)
            target = target.this
        if not isinstance(target, exp.Table) or not self._is_scratch(target):
            where = "" if self.enabled else f" (the scratch space is off: a party is called '{SCRATCH}')"
            raise errors.UnsupportedSql(
                f"fedsql writes only to your own scratch space{where}: name the table scratch.<name>, "
                f"e.g. CREATE TABLE scratch.result AS SELECT …; other parties' tables are read-only"
            )
        name = target.name
        if not _NAME.match(name):
            raise errors.ProgrammingError(
                f"scratch table names are letters, digits and '_' (at most 63, not starting with a digit): {name!r}"
            )
        source = ast.args.get("expression")
        if isinstance(ast, (exp.Create, exp.Insert)) and isinstance(source, exp.Query):
            local, federated = self._classify(source)
            # the target itself may appear in the source (INSERT INTO scratch.x SELECT … FROM scratch.x)
            if federated and local:
                raise self._mixed()
            if federated:
                return Routed("from_federated", ast, explain, source.sql(dialect=DIALECT), name.lower())
        local, federated = self._classify(ast)
        if federated:
            raise self._mixed()
        return Routed("local", ast, explain, target=name.lower())

    def _route_copy(self, ast: Any, explain: bool) -> Routed:
        """COPY (query) TO 'file' / COPY table TO 'file': the query runs as it would on its own
        (federated, or over the scratch space); the issuer's result goes to its export directory."""
        from sqlglot import exp

        from fedsql.export import export_dir, parse_target

        target = parse_target(ast, export_dir(self.fed, self.me))
        source = ast.this
        if isinstance(source, exp.Subquery):
            source = source.this
        elif isinstance(source, exp.Table):
            source = exp.select("*").from_(source.copy())
        if not isinstance(source, exp.Query):
            raise errors.ProgrammingError("COPY … TO copies a query or a table: COPY (SELECT …) TO 'result.parquet'")
        return self._by_source("copy", source, explain, copy=target)

    def _is_sink(self, table: Any) -> bool:
        from sqlglot import exp

        return (isinstance(table, exp.Table) and SINK not in self.fed.parties and not table.catalog
                and table.db.lower() == SINK)

    def _route_sink(self, ast: Any, explain: bool) -> Routed:
        """INSERT INTO sink.name SELECT …: the SELECT runs as it would alone (federated, or over the
        scratch space); its rows, the issuer's own, go into the issuer's configured database."""
        from sqlglot import exp

        target = ast.this
        if isinstance(target, exp.Schema):
            raise errors.UnsupportedSql("INSERT INTO sink.name takes no column list: name the SELECT's columns "
                                        "as the sink's (SELECT k AS region, …) and they are matched by name")
        sinks = getattr(self.fed.parties.get(self.me), "sinks", {}) or {}
        name = target.name
        if name not in sinks:
            have = ", ".join(f"sink.{n}" for n in sorted(sinks)) or "none"
            raise errors.UnknownObjectError(
                f"no sink '{name}' for party '{self.me}'; its sinks: {have} "
                f"(configure [parties.{self.me}.sinks.NAME] with source and table, docs/configuration.md)")
        source = ast.args.get("expression")
        if not isinstance(source, exp.Query):
            raise errors.UnsupportedSql("INSERT INTO sink.name needs a SELECT: INSERT INTO sink.name SELECT … FROM …")
        return self._by_source("sink", source, explain, target=name)

    def _by_source(self, kind: str, source: Any, explain: bool, **extra: Any) -> Routed:
        """`kind` when `source` reads federation tables (it runs as a federated query first),
        `kind_local` when it reads only the scratch space; reading both is refused."""
        local, federated = self._classify(source)
        if local and federated:
            raise self._mixed()
        if federated:
            return Routed(kind, source, explain, source.sql(dialect=DIALECT), **extra)
        return Routed(f"{kind}_local", source, explain, **extra)

    def _classify(self, ast: Any) -> tuple[bool, bool]:
        """(reads scratch tables, reads federation tables)."""
        from sqlglot import exp

        ctes = {c.alias_or_name.lower() for c in ast.find_all(exp.CTE)}
        local = federated = False
        for table in ast.find_all(exp.Table):
            if self._is_scratch(table):
                local = True
            elif not table.name or isinstance(table.this, (exp.Anonymous, exp.Func)):
                continue  # table function: runs with file access off
            elif not table.db and table.name.lower() in ctes:
                continue
            else:
                federated = True
        return local, federated

    def _is_information_schema(self, table: Any) -> bool:
        return (INFORMATION_SCHEMA not in self.fed.parties and table.db.lower() == INFORMATION_SCHEMA
                and (not table.catalog or table.catalog.lower() == self.fed.name.lower()))

    def _information_schema_tables(self, ast: Any) -> set[str]:
        """The information_schema tables a query reads (empty: none). Refuses a query that also
        reads data tables, or names an information_schema table fedsql does not answer."""
        from sqlglot import exp

        ctes = {c.alias_or_name.lower() for c in ast.find_all(exp.CTE)}
        info: set[str] = set()
        other = False
        for table in ast.find_all(exp.Table):
            if self._is_information_schema(table):
                if table.name.lower() not in INFORMATION_TABLES:
                    raise errors.UnknownObjectError(
                        f"information_schema.{table.name} is not available; fedsql answers "
                        + ", ".join(f"information_schema.{t}" for t in INFORMATION_TABLES))
                info.add(table.name.lower())
            elif table.name and not isinstance(table.this, (exp.Anonymous, exp.Func)) and not (
                    not table.db and table.name.lower() in ctes):
                other = True
        if info and other:
            raise errors.UnsupportedSql(
                "a statement may read information_schema or the federation's tables, not both; "
                "query the catalog first, then the data")
        return info

    def _is_scratch(self, table: Any) -> bool:
        return self.enabled and not table.catalog and table.db.lower() == SCRATCH

    def _mixed(self) -> errors.Error:
        return errors.UnsupportedSql(
            "a statement may read your scratch tables or the federation's tables, not both; "
            "store the federated part first (CREATE TABLE scratch.x AS SELECT … FROM federation tables) "
            "and combine scratch tables afterwards"
        )

    # -- execution -------------------------------------------------------------

    def execute(self, routed: Routed, request: Any, context: Any) -> Iterator[pb.ExecuteEvent]:
        settings = dict(request.settings)
        try:
            if routed.kind == "show_tables":
                yield from self._result(self.show_tables(), "rows", [], settings)
            elif routed.kind == "describe":
                # levels as the asking user has them (its roles' grants), like the planner's checks
                who = self.node.accounts.principal(self.me, request.user)
                yield from self._result(self.describe(routed.ast.this, who), "rows", [], settings)
            elif routed.kind == "information_schema":
                if routed.explain:
                    yield from self._explain([f"catalog query answered by {self.me} alone from the configuration and the "
                                    "owners' public schemas"], [f"nothing leaves {self.me}"], settings)
                    return
                who = self.node.accounts.principal(self.me, request.user)
                table, types = self.information_schema(routed.ast, who)
                yield from self._result(table, "rows", [], settings, table.num_rows, types=types)
            elif routed.kind in ("copy_local", "sink_local"):
                yield from self._deliver_local(routed, settings)
            elif routed.kind == "local":
                if routed.explain:
                    yield from self._explain(self._local_plan(routed), self._local_leakage(routed), settings)
                    return
                table, kind, rowcount, types = self.run_local(routed.ast, routed.target)
                yield from self._result(table, kind, self._local_leakage(routed), settings, rowcount, types=types)
            else:
                yield from self._from_federated(routed, request, context, settings)
        except errors.Error as exc:
            yield pb.ExecuteEvent(error=pb.Error(kind=exc.kind, message=str(exc)))
        except Exception as exc:  # noqa: BLE001 - a clear error, never a broken stream
            log.exception("internal error in an issuer-local statement")
            err = errors.InternalError(f"internal error in a scratch/catalog statement ({type(exc).__name__}); "
                                       "the node logged the details")
            yield pb.ExecuteEvent(error=pb.Error(kind=err.kind, message=str(err)))

    def _local_plan(self, routed: Routed) -> list[str]:
        what = f"writes scratch.{routed.target}" if routed.target else "reads only scratch tables (or none)"
        return [f"issuer-local statement at {self.me}: {what}",
                f"  runs in {self.me}'s own DuckDB over its scratch space ({self.directory}); no other party takes part"]

    def _local_leakage(self, routed: Routed) -> list[str]:
        return [f"nothing leaves {self.me}: the statement {'writes' if routed.target else 'reads'} "
                f"only its own scratch space"]

    def _federated(self, sql: str, request: Any, context: Any, settings: dict[str, str]):
        """Run `sql` as an ordinary federated query (the node's own path: planning, policies,
        leakage report, audit); pass its progress and errors on. Returns (table, meta), or None
        after an error event."""
        inner = pb.ExecuteRequest(sql=sql, settings=settings, query_id=request.query_id,
                                  timeout_seconds=request.timeout_seconds, user=request.user)
        events = iter(self.node.Execute(inner, context))
        for event in events:  # progress and errors before the header are this statement's own
            if event.WhichOneof("event") == "header":
                break
            yield event
            if event.WhichOneof("event") == "error":
                return None
        else:
            raise errors.InternalError("the federated part ended without a result")
        with result_meta.ResultStream(itertools.chain([event], events), f"party '{self.me}'") as result:
            return result.read_all(), result.header

    def _from_federated(self, routed: Routed, request: Any, context: Any, settings: dict[str, str]):
        got = yield from self._federated(("EXPLAIN " if routed.explain else "") + routed.source_sql,
                                         request, context, settings)
        if got is None:
            return
        table, meta = got
        stored = self._delivered(routed)
        leakage = [*meta.leakage, stored]
        if routed.explain:
            lines = [str(v) for v in table.column(0).to_pylist()] if table.num_columns else []
            yield from self._explain(lines + [stored], leakage, settings)
            return
        if meta.kind != pb.ROWS:
            what = {"copy": "COPY … TO", "sink": "INSERT INTO sink"}.get(routed.kind, "CREATE TABLE … AS / INSERT … SELECT")
            raise errors.ProgrammingError(f"the SELECT of {what} returned no rows")
        stats = meta.stats if meta.HasField("stats") else None
        if routed.kind in ("copy", "sink"):
            yield from self._deliver(table, routed, leakage, settings, stats)
            return
        from sqlglot import exp

        ast = routed.ast.copy()
        ast.set("expression", exp.select("*").from_(SOURCE))
        out, kind, rowcount, _ = self.run_local(ast, routed.target, source=table)
        yield from self._result(out, kind, leakage, settings, rowcount, stats=stats)

    def _result(self, table: pa.Table, kind: str, leakage: list, settings: dict[str, str], rowcount: int = -1,
                stats: pb.QueryStats | None = None, types: list[str] | None = None) -> Iterator[pb.ExecuteEvent]:
        """A scratch or catalog answer (fedsql/result_meta.py); catalog answers are all text."""
        types = types or ["VARCHAR"] * table.num_columns
        columns = list(zip(table.column_names, types)) if kind == "rows" else []
        return result_meta.result_events(table, kind, parties=self.fed.parties, settings=settings, columns=columns,
                                        leakage=leakage, stats=stats, rowcount=rowcount)

    def _explain(self, lines: list[str], leakage: list, settings: dict[str, str]) -> Iterator[pb.ExecuteEvent]:
        return result_meta.result_events(pa.table({"plan": pa.array(lines, pa.utf8())}), "explain",
                                        parties=self.fed.parties, settings=settings,
                                        columns=[("plan", "VARCHAR")], leakage=leakage)

    def _delivered(self, routed: Routed) -> str:
        """The leakage report's last line: where the issuer's result goes."""
        if routed.kind in ("copy", "copy_local"):
            return (f"then {self.me} writes the result to {routed.copy.shown} in its export directory, "
                    f"which only {self.me} can read")
        if routed.kind in ("sink", "sink_local"):
            return f"then {self.me} inserts the result into its own database (sink.{routed.target})"
        return f"then {self.me} stores the result in scratch.{routed.target}, which only {self.me} can read"

    def _deliver_local(self, routed: Routed, settings: dict[str, str]):
        """COPY / INSERT INTO sink of a query over the scratch space only (or constants): run here, then deliver."""
        leakage = self._local_leakage(routed) + [self._delivered(routed)]
        if routed.explain:
            yield from self._explain(self._local_plan(routed) + [self._delivered(routed)], leakage, settings)
            return
        table, _, _, _ = self.run_local(routed.ast)
        yield from self._deliver(table, routed, leakage, settings)

    def _deliver(self, table: pa.Table, routed: Routed, leakage: list, settings: dict[str, str],
                 stats: pb.QueryStats | None = None) -> Iterator[pb.ExecuteEvent]:
        """Write the issuer's result to its export file or insert it into its sink."""
        if routed.kind in ("sink", "sink_local"):
            written = self._sink(routed.target).append(table)
            log.info("party %s: inserted %d rows into sink.%s", self.me, written, routed.target)
            return self._result(pa.table({}), "ok", leakage, settings, written, stats=stats)
        from fedsql.export import export_dir, write

        root = export_dir(self.fed, self.me)
        try:
            write(table, routed.copy, root)
        except OSError as exc:  # a full disk, a read-only or unwritable directory: say which and why
            raise errors.OperationalError(f"COPY … TO could not write {routed.copy.shown} in the export directory "
                                          f"{root}: {exc.strerror or type(exc).__name__}; check that the node may "
                                          "write there (export_directory in the federation file)") from None
        log.info("party %s: COPY wrote %d rows to %s in its export directory", self.me, table.num_rows,
                 routed.copy.shown)
        return self._result(pa.table({}), "ok", leakage, settings, table.num_rows, stats=stats)

    def _sink(self, name: str) -> Any:
        """The configured sink as a Source (its driver, password from the environment or secrets file)."""
        from connectors.sources import open_source
        from connectors.sources.secrets import sink_password
        from fedsql.state import state_dir

        party = self.fed.parties[self.me]
        sink = party.sinks[name]
        # FEDSQL_SINK_PASSWORD_<PARTY>_<NAME> or [sinks.<name>]; the older key sink_<name> as a fallback
        password = sink_password(state_dir(self.fed.path, self.me), self.me, name, list(party.tables))
        return open_source(self.me, f"sink.{name}", sink.source, sink.relation, password,
                           statement_timeout=self.fed.deadline_seconds)

    def run_local(self, ast: Any, target: str = "",
                  source: pa.Table | None = None) -> tuple[pa.Table, str, int, list[str]]:
        """Run one statement over the scratch tables it names; store `target` back.

        Returns (result table, "rows" | "ok", rowcount, DuckDB type names of the columns).
        """
        import duckdb
        from sqlglot import exp

        from fedsql.locked_duckdb import open_locked

        names = sorted({t.name.lower() for t in ast.find_all(exp.Table) if self._is_scratch(t)} | ({target} - {""}))
        sql = ast.sql(dialect=DIALECT)
        with self._lock:
            con = open_locked()
            try:
                con.execute(f"CREATE SCHEMA {SCRATCH}")
                for name in names:
                    path = self._path(name)
                    if not path.is_file() and name != target:
                        have = ", ".join(f"scratch.{t}" for t in self.scratch_tables()) or "none"
                        raise errors.UnknownObjectError(f"no scratch table '{name}'; your scratch tables: {have}")
                    if path.is_file():
                        con.register("__load", self._read(path))
                        con.execute(f"CREATE TABLE {SCRATCH}.{_quote(name)} AS SELECT * FROM __load")
                        con.unregister("__load")
                if source is not None:
                    con.register(SOURCE, source)
                try:
                    cur = con.execute(sql)
                    rows_kind = isinstance(ast, (exp.Query, exp.Describe))
                    types = [str(d[1]) for d in cur.description or []]
                    table = cur.to_arrow_table() if cur.description else pa.table({})
                except duckdb.Error as exc:
                    raise _duckdb_error(exc) from None
                if not rows_kind:
                    rowcount = -1
                    if table.num_columns and table.column_names[0] == "Count" and table.num_rows:
                        rowcount = int(table.column(0)[0].as_py())
                    if target:
                        self._store(con, target)
                    return pa.table({}), "ok", rowcount, []
                return table, "rows", table.num_rows, types
            finally:
                con.close()

    def _path(self, name: str) -> Path:
        return self.directory / f"{name.lower()}.parquet"

    @staticmethod
    def _read(path: Path) -> pa.Table:
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise errors.OperationalError(f"cannot read scratch table {path.name}: {exc}") from None

    def _store(self, con: Any, name: str) -> None:
        """Write scratch.name back (atomically), or remove it when it was dropped."""
        import pyarrow.parquet as pq

        exists = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND lower(table_name) = ?", [SCRATCH, name]
        ).fetchone()[0]
        path = self._path(name)
        if not exists:
            path.unlink(missing_ok=True)
            return
        table = con.execute(f"SELECT * FROM {SCRATCH}.{_quote(name)}").to_arrow_table()
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.directory)
        os.close(fd)
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # -- catalog ---------------------------------------------------------------

    def scratch_tables(self) -> list[str]:
        if not self.enabled or not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.parquet") if _NAME.match(p.stem))

    def show_tables(self) -> pa.Table:
        rows = self.node.catalog.tables() + [(SCRATCH, name, "scratch") for name in self.scratch_tables()]
        cols = list(zip(*rows)) if rows else [(), (), ()]
        return pa.table({"schema": pa.array(cols[0], pa.utf8()), "name": pa.array(cols[1], pa.utf8()),
                         "kind": pa.array(cols[2], pa.utf8())})

    def information_schema(self, ast: Any, viewer: Principal | str | None = None) -> tuple[pa.Table, list[str]]:
        """Run a query over information_schema.schemata/tables/columns, filled from the same
        catalog as SHOW TABLES and DESCRIBE (what this party may know: the federation's public
        schemas and its own scratch tables; levels as `viewer` has them), in a private locked DuckDB."""
        import duckdb
        from sqlglot import exp

        from fedsql.locked_duckdb import open_locked

        names = self._information_schema_tables(ast)
        tables = {name: self._information_table(name, viewer) for name in sorted(names)}

        def rename(node: Any) -> Any:
            if isinstance(node, exp.Table) and self._is_information_schema(node):
                node = node.copy()
                node.set("catalog", None)
                node.set("db", exp.to_identifier(_INFO_DB))
            return node

        sql = ast.transform(rename).sql(dialect=DIALECT)
        con = open_locked()
        try:
            con.execute(f"CREATE SCHEMA {_INFO_DB}")
            for name, table in tables.items():
                con.register("__load", table)
                con.execute(f"CREATE TABLE {_INFO_DB}.{name} AS SELECT * FROM __load")
                con.unregister("__load")
            try:
                cur = con.execute(sql)
                types = [str(d[1]) for d in cur.description or []]
                return cur.to_arrow_table(), types
            except duckdb.Error as exc:
                raise _duckdb_error(exc) from None
        finally:
            con.close()

    def _information_table(self, name: str, viewer: Principal | str | None = None) -> pa.Table:
        from sqlglot import exp

        catalog = self.fed.name
        listed = self.show_tables().to_pylist()
        if name == "schemata":
            schemas = list(dict.fromkeys([*sorted(self.fed.parties)] + [r["schema"] for r in listed]
                                         + ([SCRATCH] if self.enabled else [])))
            return pa.table({"catalog_name": [catalog] * len(schemas), "schema_name": schemas,
                             "schema_owner": [s if s in self.fed.parties else None for s in schemas]},
                            schema=pa.schema([("catalog_name", pa.utf8()), ("schema_name", pa.utf8()),
                                              ("schema_owner", pa.utf8())]))
        if name == "tables":
            return pa.table({
                "table_catalog": pa.array([catalog] * len(listed), pa.utf8()),
                "table_schema": pa.array([r["schema"] for r in listed], pa.utf8()),
                "table_name": pa.array([r["name"] for r in listed], pa.utf8()),
                "table_type": pa.array(["BASE TABLE"] * len(listed), pa.utf8()),
                "is_insertable_into": pa.array(["YES" if r["kind"] == "scratch" else "NO" for r in listed], pa.utf8()),
            })
        rows: list[tuple[str, str, str, int, str, str]] = []
        for r in listed:
            ref = exp.Table(this=exp.to_identifier(r["name"]),
                            db=exp.to_identifier(r["schema"]) if r["kind"] != "federated" else None)
            described = self.describe(ref, viewer).to_pylist()
            rows += [(r["schema"], r["name"], c["column_name"], i, c["column_type"], c["level"])
                     for i, c in enumerate(described, 1)]
        cols = list(zip(*rows)) if rows else [()] * 6
        return pa.table({
            "table_catalog": pa.array([catalog] * len(rows), pa.utf8()),
            "table_schema": pa.array(cols[0], pa.utf8()),
            "table_name": pa.array(cols[1], pa.utf8()),
            "column_name": pa.array(cols[2], pa.utf8()),
            "ordinal_position": pa.array(cols[3], pa.int32()),
            "column_default": pa.array([None] * len(rows), pa.utf8()),
            "is_nullable": pa.array(["YES"] * len(rows), pa.utf8()),
            "data_type": pa.array(cols[4], pa.utf8()),
            "fedsql_level": pa.array(cols[5], pa.utf8()),  # what the asking user may do (DESCRIBE's `level`)
        })

    def describe(self, table: Any, viewer: Principal | str | None = None) -> pa.Table:
        """Columns, types and, per column, what `viewer` (default: this party alone) may do with it."""
        from sqlglot import exp

        db = table.db
        if self._is_scratch(table):
            ast = exp.Describe(this=table.copy())
            out, _, _, _ = self.run_local(ast)
            names = out.column("column_name").to_pylist()
            types = out.column("column_type").to_pylist()
            levels = ["owner"] * len(names)
        else:
            if db and db not in self.fed.parties and db.lower() in (self.federated_schema, self.fed.name.lower()):
                db = ""
            described = self.node.catalog.describe(self.node.catalog.resolve(db or None, table.name), viewer)
            names, types, levels = (list(col) for col in zip(*described)) if described else ([], [], [])
        return pa.table({"column_name": pa.array(names, pa.utf8()), "column_type": pa.array(types, pa.utf8()),
                         "level": pa.array(levels, pa.utf8())})


def _duckdb_error(exc: Exception) -> errors.Error:
    """DuckDB's message is safe to show here: scratch data belongs to the issuer."""
    import duckdb

    text = str(exc).strip().split("\n\nLINE")[0].split("\nDid you mean")[0]
    if isinstance(exc, duckdb.PermissionException):
        return errors.ProgrammingError("scratch statements cannot access files or extensions: " + text)
    if isinstance(exc, duckdb.ConstraintException):
        return errors.IntegrityError(text)
    if isinstance(exc, (duckdb.ConversionException, duckdb.OutOfRangeException, duckdb.InvalidInputException)):
        return errors.DataError(text)
    if isinstance(exc, duckdb.ParserException):
        return errors.SqlSyntaxError(text)
    if isinstance(exc, (duckdb.CatalogException, duckdb.BinderException)):
        return errors.ProgrammingError(text)
    if isinstance(exc, duckdb.NotImplementedException):
        return errors.NotSupportedError(text)
    return errors.OperationalError(text)
