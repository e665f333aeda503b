"""Issue #15 item 2: information_schema, SELECT 1 and prepared statements, as BI tools send them.

Power BI / DBeaver navigate with information_schema queries, Superset probes with
`SELECT 1`, JDBC prepares every statement (SET included). The answers must equal what
the catalog says (SHOW TABLES / DESCRIBE) through the DB-API and through Flight SQL,
and a catalog query must not become a way to read files or data tables.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterator

import pytest

import fedsql
from fedsql import errors

pa = pytest.importorskip("pyarrow")
adbc = pytest.importorskip("adbc_driver_flightsql.dbapi")

from connectors import flight_sql as fs  # noqa: E402
from fedsql import tls  # noqa: E402
from fedsql.config import load_config  # noqa: E402
from fedsql.users import Accounts, Authenticator  # noqa: E402

PASSWORD = "catalog-browser-pw"


@pytest.fixture(scope="module")
def db(federation: tuple[Path, dict[str, Any]]) -> Iterator[Any]:
    with fedsql.connect(str(federation[0]), "p1") as conn:
        yield conn


def _rows(conn: Any, sql: str) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return [tuple(r) for r in cur.fetchall()]


def _catalog(db: Any) -> dict[str, Any]:
    shown = db.tables()
    columns = {}
    for schema, name, kind in shown:
        ref = name if kind == "federated" else f"{schema}.{name}"
        columns[(schema, name)] = [(c, t) for c, t, _ in db.describe(ref)]
    return {"tables": shown, "columns": columns}


def _check_against_catalog(conn: Any, catalog: dict[str, Any], fed_name: str) -> None:
    tables = _rows(conn, "SELECT table_schema, table_name FROM information_schema.tables ORDER BY 1, 2")
    assert tables == sorted((s, n) for s, n, _ in catalog["tables"])
    schemata = _rows(conn, "SELECT catalog_name, schema_name FROM information_schema.schemata")
    assert {s for _, s in schemata} >= {s for s, _, _ in catalog["tables"]}
    assert {c for c, _ in schemata} == {fed_name}
    for (schema, name), expected in catalog["columns"].items():
        got = _rows(conn, "SELECT column_name, data_type FROM information_schema.columns "
                          f"WHERE table_schema = '{schema}' AND table_name = '{name}' ORDER BY ordinal_position")
        assert got == expected, (schema, name)


def test_information_schema_through_dbapi_equals_the_catalog(db: Any, federation: Any) -> None:
    _check_against_catalog(db, _catalog(db), load_config(federation[0]).name)
    # a join and an aggregate over the catalog, as tools write them
    counts = _rows(db, "SELECT t.table_schema, count(*) FROM information_schema.tables t JOIN "
                       "information_schema.columns c USING (table_schema, table_name) GROUP BY 1 ORDER BY 1")
    assert counts and all(n > 0 for _, n in counts)


def test_select_one_probe(db: Any) -> None:
    assert _rows(db, "SELECT 1") == [(1,)]


@pytest.mark.parametrize("sql, error, words", [
    ("SELECT * FROM information_schema.tables, p1.t", errors.NotSupportedError, "not both"),
    ("SELECT * FROM information_schema.views", errors.ProgrammingError, "information_schema.columns"),
    ("SELECT * FROM information_schema.tables, read_csv('/etc/passwd')", errors.ProgrammingError, "file"),
    ("SELECT * FROM information_schema.tables WHERE table_name IN (SELECT k FROM t)",
     errors.NotSupportedError, "not both"),
])
def test_catalog_queries_cannot_reach_data_or_files(db: Any, sql: str, error: type, words: str) -> None:
    with pytest.raises(error, match=words) as caught:
        _rows(db, sql)
    assert "root:" not in str(caught.value)


# -- through Flight SQL (client certificate and password endpoints), plain and prepared -----


@pytest.fixture(scope="module")
def endpoints(federation: Any) -> Iterator[dict[str, Any]]:
    fed = load_config(federation[0])
    accounts = Accounts.of(fed, "p1")
    if not accounts.exists("browser"):
        accounts.add("browser", PASSWORD)
    files = fs.party_flight_tls(fed, "p1")
    mtls = fs.start_flight_server(fed, "p1", fed.parties["p1"].address, "127.0.0.1:0", **files)
    pw = fs.start_flight_server(fed, "p1", fed.parties["p1"].address, "127.0.0.1:0",
                                tls_certificates=files["tls_certificates"], auth=Authenticator(accounts))
    try:
        yield {"fed": fed, "mtls": mtls, "password": pw}
    finally:
        mtls.shutdown()
        pw.shutdown()


def _flight(endpoints: dict[str, Any], kind: str) -> Any:
    fed = endpoints["fed"]
    p = tls.paths(fed, "p1")
    options = {"adbc.flight.sql.client_option.tls_root_certs": p.certificate.read_text(),
               "adbc.flight.sql.client_option.tls_override_hostname": tls.server_name("p1")}
    if kind == "mtls":
        options["adbc.flight.sql.client_option.mtls_cert_chain"] = p.client_certificate.read_text()
        options["adbc.flight.sql.client_option.mtls_private_key"] = p.client_key.read_text()
    else:
        options.update(username="browser", password=PASSWORD)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return adbc.connect(f"grpc+tls://127.0.0.1:{endpoints[kind].port}", db_kwargs=options)


class _Prepared:
    """A connection whose cursors prepare every statement first, as JDBC does."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def cursor(self) -> Any:
        conn = self.conn

        class Cursor:
            def __enter__(self) -> Any:
                self.cur = conn.cursor()
                return self

            def __exit__(self, *exc: object) -> None:
                self.cur.close()

            def execute(self, sql: str) -> None:
                self.cur.adbc_prepare(sql)  # CreatePreparedStatement
                self.cur.execute(sql)       # runs the prepared handle

            def fetchall(self) -> list:
                return self.cur.fetchall()

        return Cursor()


@pytest.mark.parametrize("kind", ["mtls", "password"])
@pytest.mark.parametrize("prepared", [False, True])
def test_information_schema_through_flight_equals_the_catalog(db: Any, endpoints: dict[str, Any],
                                                              kind: str, prepared: bool) -> None:
    catalog = _catalog(db)
    with _flight(endpoints, kind) as conn:
        target = _Prepared(conn) if prepared else conn
        _check_against_catalog(target, catalog, endpoints["fed"].name)
        assert _rows(target, "SELECT 1") == [(1,)]
        assert sorted(_rows(target, "SHOW TABLES")) == sorted(catalog["tables"])
        assert [r[0] for r in _rows(target, "DESCRIBE p1.t")] == [c for c, _ in catalog["columns"][("p1", "t")]]
        _rows(target, "SET fedsql.mode = 'sizes'")
        assert _rows(target, "SELECT count(*) FROM p1.t WHERE id >= 0")[0][0] > 0


@pytest.fixture(scope="module")
def mtls_only(federation: Any) -> Iterator[dict[str, Any]]:
    fed = load_config(federation[0])
    server = fs.start_flight_server(fed, "p1", fed.parties["p1"].address, "127.0.0.1:0",
                                    **fs.party_flight_tls(fed, "p1"))
    try:
        yield {"fed": fed, "mtls": server}
    finally:
        server.shutdown()


@pytest.mark.parametrize("sql", ["SHOW TABLES", "DESCRIBE p1.t", "SELECT 1",
                                 "SELECT table_name FROM information_schema.tables",
                                 "CREATE OR REPLACE TABLE scratch.prep AS SELECT 1 AS one"])
def test_statements_the_node_answers_itself_can_be_prepared(mtls_only: dict[str, Any], sql: str) -> None:
    """JDBC prepares every statement: preparing must not ask the planner about statements it does not plan."""
    with _flight(mtls_only, "mtls") as conn, conn.cursor() as cur:
        cur.adbc_prepare(sql)
        cur.execute(sql)
        if not sql.startswith("CREATE"):
            assert cur.fetchall()


# -- JDBC's own decision: an empty dataset schema means an update ----------------------------


def _raw_client(endpoints: dict[str, Any], kind: str) -> tuple[Any, Any]:
    flight = pytest.importorskip("pyarrow.flight")
    fed = endpoints["fed"]
    p = tls.paths(fed, "p1")
    extra = ({"cert_chain": p.client_certificate.read_bytes(), "private_key": p.client_key.read_bytes()}
             if kind == "mtls" else {})
    client = flight.FlightClient(f"grpc+tls://127.0.0.1:{endpoints[kind].port}",
                                 tls_root_certs=p.certificate.read_bytes(),
                                 override_hostname=tls.server_name("p1"), **extra)
    options = (flight.FlightCallOptions(headers=[client.authenticate_basic_token("browser", PASSWORD)])
               if kind == "password" else flight.FlightCallOptions())
    return client, options


def _jdbc_execute(client: Any, options: Any, sql: str) -> tuple[pa.Schema, Any]:
    """What the Arrow Flight SQL JDBC driver does for Statement.execute: CreatePreparedStatement,
    then executeUpdate (DoPut CommandPreparedStatementUpdate) when the dataset schema has no
    fields (ArrowFlightSqlClientHandler.PreparedStatement.getType), else GetFlightInfo + DoGet."""
    from pyarrow import flight

    from connectors.flightsql import FlightSql_pb2 as fsql

    body = fs.pack(fsql.ActionCreatePreparedStatementRequest(query=sql))
    created = fs.unpack(next(iter(client.do_action(flight.Action("CreatePreparedStatement", body),
                                                   options=options))).body.to_pybytes())
    schema = pa.ipc.read_schema(pa.py_buffer(created.dataset_schema)) if created.dataset_schema else pa.schema([])
    handle = created.prepared_statement_handle
    try:
        if not schema.names:  # JDBC: StatementType.UPDATE, no result set
            descriptor = flight.FlightDescriptor.for_command(
                fs.pack(fsql.CommandPreparedStatementUpdate(prepared_statement_handle=handle)))
            writer, reader = client.do_put(descriptor, pa.schema([]), options=options)
            writer.done_writing()
            reader.read()
            writer.close()
            return schema, None
        descriptor = flight.FlightDescriptor.for_command(
            fs.pack(fsql.CommandPreparedStatementQuery(prepared_statement_handle=handle)))
        info = client.get_flight_info(descriptor, options=options)
        return schema, client.do_get(info.endpoints[0].ticket, options=options).read_all()
    finally:
        close = fs.pack(fsql.ActionClosePreparedStatementRequest(prepared_statement_handle=handle))
        list(client.do_action(flight.Action("ClosePreparedStatement", close), options=options))


@pytest.mark.parametrize("kind", ["mtls", "password"])
def test_jdbc_prepared_flow_gets_result_sets_for_statements_the_node_answers(db: Any, endpoints: dict[str, Any],
                                                                            kind: str) -> None:
    """SELECT 1, SHOW TABLES, DESCRIBE, information_schema and scratch reads report their columns
    when prepared, so JDBC fetches their rows; SET and scratch writes stay updates and take effect."""
    from pyarrow import flight

    from connectors.flightsql import FlightSession_pb2 as session_pb

    catalog = _catalog(db)
    client, options = _raw_client(endpoints, kind)
    try:
        schema, table = _jdbc_execute(client, options, "SELECT 1 AS one")
        assert schema.names == ["one"] and table.to_pylist() == [{"one": 1}]
        schema, table = _jdbc_execute(client, options, "SHOW TABLES")
        assert schema.names == table.schema.names and table.num_rows == len(catalog["tables"])
        schema, table = _jdbc_execute(client, options, "DESCRIBE p1.t")
        assert table.column(0).to_pylist() == [c for c, _ in catalog["columns"][("p1", "t")]]
        schema, table = _jdbc_execute(client, options, "SELECT table_schema, table_name FROM information_schema.tables")
        assert schema.names == ["table_schema", "table_name"] and table.num_rows == len(catalog["tables"])
        # updates: no dataset schema, run by DoPut, effective for the session's later statements
        schema, table = _jdbc_execute(client, options, "SET fedsql.mode = 'sizes'")
        assert not schema.names and table is None
        got = session_pb.GetSessionOptionsResult()
        got.ParseFromString(next(iter(client.do_action(flight.Action("GetSessionOptions", b""),
                                                       options=options))).body.to_pybytes())
        assert got.session_options["fedsql.mode"].string_value == "sizes"
        name = f"jdbc_{kind}"
        schema, table = _jdbc_execute(client, options, f"CREATE OR REPLACE TABLE scratch.{name} AS SELECT 41 + 1 AS v")
        assert not schema.names and table is None
        schema, table = _jdbc_execute(client, options, f"SELECT v FROM scratch.{name}")
        assert schema.names == ["v"] and table.to_pylist() == [{"v": 42}]
        schema, table = _jdbc_execute(client, options, "SELECT count(*) AS n FROM p1.t WHERE id >= 0")
        assert schema.names == ["n"] and table.column(0)[0].as_py() > 0
    finally:
        client.close()
