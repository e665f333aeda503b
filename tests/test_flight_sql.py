"""Arrow Flight SQL endpoint, driven by the real ADBC Flight SQL driver.

The endpoint runs in-process next to party p1's real node (the `federation`
fixture); queries go through it exactly as from a BI tool. Metadata result
schemas are also checked byte-for-byte against the spec with a raw Flight
client, since ADBC tolerates small deviations that stricter clients (JDBC)
do not.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path
from typing import Any, Iterator

import pytest

pa = pytest.importorskip("pyarrow")
flight = pytest.importorskip("pyarrow.flight")
try:
    import adbc_driver_flightsql.dbapi as adbc
except ImportError:  # the unit tests and raw-Flight tests still run
    adbc = None

from connectors import flight_sql as fs  # noqa: E402
from connectors.flightsql import FlightSql_pb2 as fsql  # noqa: E402

# -- units (no federation) --------------------------------------------------------------


def test_sql_info_table_has_the_spec_schema() -> None:
    table = fs.sql_info_table()
    assert table.schema.equals(fs.SQL_INFO_SCHEMA)
    value = table.schema.field("value")
    assert value.nullable and not table.schema.field("info_name").nullable
    assert [f.name for f in value.type] == [
        "string_value", "bool_value", "bigint_value", "int32_bitmask", "string_list", "int32_to_int32_list_map"]
    assert value.type.mode == "dense" and value.type.type_codes == [0, 1, 2, 3, 4, 5]
    rows = {r["info_name"]: r["value"] for r in table.to_pylist()}
    assert rows[fsql.FLIGHT_SQL_SERVER_NAME] == "fedsql"
    assert rows[fsql.FLIGHT_SQL_SERVER_READ_ONLY] is True
    only = fs.sql_info_table([fsql.FLIGHT_SQL_SERVER_ARROW_VERSION, 99999])
    assert only.to_pylist() == [{"info_name": 2, "value": pa.__version__}]


def test_metadata_schemas_match_the_spec() -> None:
    assert str(fs.CATALOGS_SCHEMA) == "catalog_name: string not null"
    assert str(fs.DB_SCHEMAS_SCHEMA) == "catalog_name: string\ndb_schema_name: string not null"
    assert str(fs.TABLES_SCHEMA_WITH_SCHEMA) == (
        "catalog_name: string\ndb_schema_name: string\ntable_name: string not null\n"
        "table_type: string not null\ntable_schema: binary not null")
    assert str(fs.TABLE_TYPES_SCHEMA) == "table_type: string not null"


@pytest.mark.parametrize("pattern, yes, no", [
    ("p%", ["p1", "p", "pxyz"], ["ap1"]),
    ("p_", ["p1"], ["p", "p12"]),
    ("a\\_b", ["a_b"], ["axb"]),
    ("", [""], ["a"]),
])
def test_like_patterns(pattern: str, yes: list[str], no: list[str]) -> None:
    regex = fs.like_to_regex(pattern)
    assert all(fs._matches(regex, s) for s in yes)
    assert not any(fs._matches(regex, s) for s in no)


@pytest.mark.parametrize("duck, arrow", [
    ("BIGINT", pa.int64()), ("INTEGER", pa.int32()), ("VARCHAR", pa.utf8()), ("DOUBLE", pa.float64()),
    ("DECIMAL(10,2)", pa.decimal128(10, 2)), ("BOOLEAN", pa.bool_()), ("DATE", pa.date32()),
    ("TIMESTAMP WITH TIME ZONE", pa.timestamp("us", tz="UTC")), ("INTEGER[]", pa.list_(pa.int32())),
    ("STRUCT(a INTEGER)", pa.utf8()),
])
def test_duckdb_types(duck: str, arrow: Any) -> None:
    assert fs.duckdb_to_arrow(duck) == arrow


def test_normalise_names_strips_catalog_and_union_schema(tmp_path: Path, write_federation: Any) -> None:
    from fedsql.config import load_config

    fed = load_config(write_federation(tmp_path)[0])
    norm = lambda sql: fs.normalise_names(sql, fed, "federated")  # noqa: E731
    assert norm("SELECT COUNT(*) FROM t") == "SELECT COUNT(*) FROM t"  # untouched
    assert norm('SELECT COUNT(*) FROM "testfed"."federated"."t"') == 'SELECT COUNT(*) FROM "t"'
    assert norm("SELECT SUM(x) FROM testfed.p2.t") == "SELECT SUM(x) FROM p2.t"
    assert norm("SELECT COUNT(*) FROM federated.t") == "SELECT COUNT(*) FROM t"


def test_errors_map_to_db_api_families() -> None:
    from fedsql import errors

    assert isinstance(fs.flight_error(errors.PolicyViolation("no")), flight.FlightUnauthorizedError)
    assert isinstance(fs.flight_error(errors.SqlSyntaxError("no")), pa.ArrowInvalid)
    assert isinstance(fs.flight_error(errors.UnsupportedSql("no")), pa.ArrowNotImplementedError)
    assert isinstance(fs.flight_error(errors.PartyUnavailable("no")), flight.FlightUnavailableError)
    assert isinstance(fs.flight_error(errors.QueryTimeout("no")), flight.FlightTimedOutError)
    assert isinstance(fs.flight_error(errors.InternalError("no")), flight.FlightInternalError)
    assert "PolicyViolation: no" in str(fs.flight_error(errors.PolicyViolation("no")))


# -- against the real federation ---------------------------------------------------------


@pytest.fixture(scope="module")
def endpoint(federation: tuple[Path, dict[str, Any]]) -> Iterator[fs.FedSqlFlightServer]:
    from fedsql.config import load_config

    config, _ = federation
    fed = load_config(config)
    # as the node starts it: its certificate, and only p1's client certificate accepted
    server = fs.start_flight_server(fed, "p1", fed.parties["p1"].address, "127.0.0.1:0",
                                    **fs.party_flight_tls(fed, "p1"))
    server.fed_config = fed
    try:
        yield server
    finally:
        server.shutdown()


def connect_tls(endpoint: fs.FedSqlFlightServer, client: bool = True) -> Any:
    """ADBC over mutual TLS with p1's client certificate (client=False: none)."""
    from fedsql import tls

    paths = tls.paths(endpoint.fed_config, "p1")
    options = {
        "adbc.flight.sql.client_option.tls_root_certs": paths.certificate.read_text(),
        "adbc.flight.sql.client_option.tls_override_hostname": tls.server_name("p1"),
    }
    if client:
        options["adbc.flight.sql.client_option.mtls_cert_chain"] = paths.client_certificate.read_text()
        options["adbc.flight.sql.client_option.mtls_private_key"] = paths.client_key.read_text()
    return adbc.connect(f"grpc+tls://127.0.0.1:{endpoint.port}", db_kwargs=options)


@pytest.fixture()
def db(endpoint: fs.FedSqlFlightServer) -> Iterator[Any]:
    if adbc is None:
        pytest.skip("adbc-driver-flightsql is not installed (pip install adbc-driver-flightsql)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ADBC: "Cannot disable autocommit" (fedsql is read-only)
        conn = connect_tls(endpoint)
    try:
        yield conn
    finally:
        conn.close()


def _scalar(conn: Any, sql: str, params: Any = None) -> Any:
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        return cur.fetchone()[0]
    finally:
        cur.close()


@pytest.mark.e2e
def test_get_info(db: Any) -> None:
    info = db.adbc_get_info()
    assert info["vendor_name"] == "fedsql"
    assert info["vendor_arrow_version"] == pa.__version__


@pytest.mark.e2e
def test_get_table_types(db: Any) -> None:
    assert db.adbc_get_table_types() == ["TABLE"]


@pytest.mark.e2e
def test_get_objects_lists_parties_union_and_columns(db: Any, federation: Any) -> None:
    objects = db.adbc_get_objects(depth="columns").read_all().to_pylist()
    assert [c["catalog_name"] for c in objects] == ["testfed"]
    schemas = {s["db_schema_name"]: s["db_schema_tables"] for s in objects[0]["catalog_db_schemas"]}
    assert sorted(schemas) == ["federated", "p1", "p2", "p3"]
    for name in schemas:
        (table,) = schemas[name]
        assert table["table_name"] == "t" and table["table_type"] == "TABLE"
        columns = [(c["column_name"], c["xdbc_type_name"]) for c in table["table_columns"]]
        assert columns == [("id", "BIGINT"), ("k", "VARCHAR"), ("x", "BIGINT"), ("d", "DECIMAL(10,2)"),
                           ("f", "DOUBLE"), ("b", "BOOLEAN"), ("g", "INTEGER")]
        assert [c["ordinal_position"] for c in table["table_columns"]] == list(range(1, 8))
    filtered = db.adbc_get_objects(depth="tables", db_schema_filter="p_", table_name_filter="t").read_all()
    assert [s["db_schema_name"] for s in filtered.to_pylist()[0]["catalog_db_schemas"]] == ["p1", "p2", "p3"]


@pytest.mark.e2e
def test_get_table_schema(db: Any, federation: Any) -> None:
    _, data = federation
    for db_schema, key in (("p2", "p2.t"), ("federated", "t")):
        schema = db.adbc_get_table_schema("t", catalog_filter="testfed", db_schema_filter=db_schema)
        assert schema.names == data[key].schema.names
        assert schema.types == data[key].schema.types
    levels = {f.name: f.metadata[b"fedsql:level"].decode()
              for f in db.adbc_get_table_schema("t", db_schema_filter="p2")}
    assert levels["id"] == "private" and levels["k"] == "group_key" and levels["g"] == "public"
    own = db.adbc_get_table_schema("t", db_schema_filter="p1")
    assert {f.metadata[b"fedsql:level"] for f in own} == {b"public"}  # an owner is unrestricted


@pytest.mark.e2e
def test_raw_metadata_results_have_exact_schemas(endpoint: fs.FedSqlFlightServer) -> None:
    from fedsql import tls

    paths = tls.paths(endpoint.fed_config, "p1")
    client = flight.FlightClient(
        f"grpc+tls://127.0.0.1:{endpoint.port}", tls_root_certs=paths.certificate.read_bytes(),
        cert_chain=paths.client_certificate.read_bytes(), private_key=paths.client_key.read_bytes(),
        override_hostname=tls.server_name("p1"))
    try:
        cases = [
            (fsql.CommandGetCatalogs(), fs.CATALOGS_SCHEMA, 1),
            (fsql.CommandGetDbSchemas(), fs.DB_SCHEMAS_SCHEMA, 4),
            (fsql.CommandGetTables(), fs.TABLES_SCHEMA, 4),
            (fsql.CommandGetTables(include_schema=True, db_schema_filter_pattern="federated"),
             fs.TABLES_SCHEMA_WITH_SCHEMA, 1),
            (fsql.CommandGetTableTypes(), fs.TABLE_TYPES_SCHEMA, 1),
            (fsql.CommandGetSqlInfo(info=[0, 1, 2, 3]), fs.SQL_INFO_SCHEMA, 4),
            (fsql.CommandGetPrimaryKeys(table="t"), fs.PRIMARY_KEYS_SCHEMA, 0),
            (fsql.CommandGetCatalogs(), fs.CATALOGS_SCHEMA, 1),
        ]
        for command, schema, rows in cases:
            descriptor = flight.FlightDescriptor.for_command(fs.pack(command))
            info = client.get_flight_info(descriptor)
            assert info.schema.equals(schema, check_metadata=True), type(command).__name__
            assert client.get_schema(descriptor).schema.equals(schema)
            table = client.do_get(info.endpoints[0].ticket).read_all()
            assert table.schema.equals(schema), type(command).__name__
            assert table.num_rows == rows, type(command).__name__
        info = client.get_flight_info(flight.FlightDescriptor.for_command(
            fs.pack(fsql.CommandGetTables(include_schema=True, db_schema_filter_pattern="p3"))))
        row = client.do_get(info.endpoints[0].ticket).read_all().to_pylist()[0]
        assert pa.ipc.read_schema(pa.py_buffer(row["table_schema"])).names == ["id", "k", "x", "d", "f", "b", "g"]
        with pytest.raises((flight.FlightError, pa.ArrowException), match="unknown or expired ticket"):
            client.do_get(flight.Ticket(fs.pack(fsql.TicketStatementQuery(statement_handle=b"nope")))).read_all()
    finally:
        client.close()


@pytest.mark.e2e
def test_errors_become_db_api_exceptions(db: Any) -> None:
    cur = db.cursor()
    with pytest.raises(adbc.ProgrammingError, match="PolicyViolation"):
        cur.execute("SELECT id FROM t")  # id is private at every party
    with pytest.raises(adbc.ProgrammingError, match="SqlSyntaxError"):
        cur.execute("SELEC COUNT(*) FROM t")
    with pytest.raises(adbc.ProgrammingError, match="UnknownObjectError"):
        cur.execute("SELECT COUNT(*) FROM nope")
    cur.close()


@pytest.mark.e2e
def test_query_count(db: Any, reference: Any) -> None:
    expected = reference("SELECT COUNT(*) FROM t").column(0)[0].as_py()
    assert _scalar(db, "SELECT COUNT(*) FROM t") == expected
    assert _scalar(db, 'SELECT COUNT(*) FROM "testfed"."federated"."t"') == expected


@pytest.mark.e2e
def test_query_arrow_result(db: Any, reference: Any) -> None:
    cur = db.cursor()
    cur.execute("SELECT k, COUNT(*) AS n FROM t GROUP BY k ORDER BY k NULLS FIRST")
    got = cur.fetch_arrow_table()
    cur.close()
    want = reference("SELECT k, COUNT(*) AS n FROM t GROUP BY k ORDER BY k NULLS FIRST")
    assert got.column_names == ["k", "n"]
    assert got.to_pylist() == want.to_pylist()


def _raw_client(endpoint: fs.FedSqlFlightServer) -> Any:
    from fedsql import tls

    paths = tls.paths(endpoint.fed_config, "p1")
    return flight.FlightClient(
        f"grpc+tls://127.0.0.1:{endpoint.port}", tls_root_certs=paths.certificate.read_bytes(),
        cert_chain=paths.client_certificate.read_bytes(), private_key=paths.client_key.read_bytes(),
        override_hostname=tls.server_name("p1"))


@pytest.mark.e2e
def test_a_large_result_streams_through_doget(endpoint: fs.FedSqlFlightServer, conn: Any) -> None:
    """GetFlightInfo returns once the node sent the header (rows: the header's count); DoGet sends
    the batches as they come off the node's stream, in exactly the announced schema."""
    rows = 400_000
    sql = f"SELECT range AS i, (range % 11)::VARCHAR AS s FROM range({rows})"
    conn.execute(f"CREATE OR REPLACE TABLE scratch.flight_big AS {sql}")
    client = _raw_client(endpoint)
    try:
        query = fs.pack(fsql.CommandStatementQuery(query="SELECT i, s FROM scratch.flight_big ORDER BY i"))
        info = client.get_flight_info(flight.FlightDescriptor.for_command(query))
        assert info.total_records == rows and info.schema.names == ["i", "s"]
        (pending,) = [r for _, r, _ in endpoint._results.values()]
        stream = pending.source
        assert stream.rows_received == 0  # nothing but the header has been read from the node yet
        reader = client.do_get(info.endpoints[0].ticket)
        assert reader.schema.equals(info.schema, check_metadata=True)
        batches, seen = 0, 0
        for chunk in reader:
            assert chunk.data.schema.equals(info.schema)
            assert chunk.data.column(0)[0].as_py() == seen  # in order, nothing lost
            batches, seen = batches + 1, seen + chunk.data.num_rows
            if batches == 1:
                assert stream.rows_received < rows  # DoGet sends while the node still streams
        assert batches > 1 and seen == rows and stream.done
        assert not endpoint._results
    finally:
        client.close()
        conn.execute("DROP TABLE scratch.flight_big")


@pytest.mark.e2e
def test_prepared_statement_with_parameters(db: Any, reference: Any) -> None:
    for g in (1, 2):
        expected = reference(f"SELECT COUNT(*) FROM t WHERE g = {g}").column(0)[0].as_py()
        assert _scalar(db, "SELECT COUNT(*) FROM t WHERE g = ?", (g,)) == expected
    cur = db.cursor()
    cur.adbc_prepare("SELECT SUM(x) AS s FROM p2.t WHERE g = ?")
    assert pa.schema(cur.adbc_statement.get_parameter_schema()).names == ["parameter_1"]
    cur.close()


@pytest.mark.e2e
def test_prepared_statement_with_hidden_parameters(db: Any, reference: Any) -> None:
    """SET fedsql.hidden_params = on: bound values go to the node beside the SQL (a hidden lookup)."""
    cur = db.cursor()
    cur.execute("SET fedsql.hidden_params = on")
    try:
        cur.execute("SELECT p.g FROM p2.t p WHERE p.g = ?", (2,))
        got = cur.fetch_arrow_table()
        leakage = json.loads((got.schema.metadata or {}).get(b"fedsql:leakage", b"[]"))
        assert any("looked up 1 hidden key value" in line for line in leakage), leakage
        assert sorted(got.column(0).to_pylist()) == sorted(reference("SELECT g FROM p2.t WHERE g = 2").column(0).to_pylist())
    finally:
        cur.execute("SET fedsql.hidden_params = off")
        cur.close()


@pytest.mark.e2e
def test_execute_schema_plans_without_running(db: Any) -> None:
    cur = db.cursor()
    schema = cur.adbc_execute_schema("SELECT k, COUNT(*) AS n, SUM(d) AS sd FROM t GROUP BY k")
    cur.close()
    assert schema.names == ["k", "n", "sd"]
    assert schema.types == [pa.utf8(), pa.int64(), pa.decimal128(38, 2)]
    with pytest.raises(adbc.ProgrammingError, match="PolicyViolation"):
        db.cursor().adbc_execute_schema("SELECT id FROM t")


def _session_options(conn: Any) -> dict[str, str]:
    return json.loads(conn.adbc_connection.get_option("adbc.flight.sql.session.options"))


@pytest.mark.e2e
def test_set_mode_is_kept_per_connection(db: Any, endpoint: fs.FedSqlFlightServer) -> None:
    cur = db.cursor()
    cur.execute("SET fedsql.mode = 'reveal'")
    cur.close()
    assert _session_options(db) == {"fedsql.mode": "reveal"}
    cur = db.cursor()
    cur.adbc_statement.set_sql_query("SET fedsql.mode = 'oblivious'")
    cur.adbc_statement.execute_update()  # DoPut CommandStatementUpdate, as JDBC's executeUpdate does
    cur.close()
    assert _session_options(db) == {"fedsql.mode": "oblivious"}
    db.adbc_connection.set_options(**{"adbc.flight.sql.session.option.fedsql.mode": "sizes"})
    assert _session_options(db) == {"fedsql.mode": "sizes"}

    sessions_before = len(endpoint.sessions._by_key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = connect_tls(endpoint)
    try:
        assert _session_options(other) == {}
        assert len(endpoint.sessions._by_key) > sessions_before
    finally:
        other.close()  # the driver sends CloseSession
    assert len(endpoint.sessions._by_key) == sessions_before



def test_flight_refuses_clients_without_the_party_certificate(endpoint: fs.FedSqlFlightServer) -> None:
    if adbc is None:
        pytest.skip("adbc-driver-flightsql is not installed")
    with pytest.raises(Exception):
        conn = connect_tls(endpoint, client=False)
        try:
            conn.cursor().execute("SELECT COUNT(*) FROM t")
        finally:
            conn.close()
    with pytest.raises(Exception):
        plain = adbc.connect(f"grpc://127.0.0.1:{endpoint.port}")
        try:
            plain.cursor().execute("SELECT COUNT(*) FROM t")
        finally:
            plain.close()


@pytest.mark.e2e
def test_session_options_are_checked_like_set(db: Any) -> None:
    """Issue #11: a bad fedsql.* option is refused (fedsql/settings.py), not stored for later queries."""
    before = _session_options(db)
    for name, value in (("fedsql.mode", "bogus"), ("fedsql.nope", "x"), ("fedsql.epsilon", "-1")):
        with contextlib.suppress(adbc.Error):  # the driver may raise on the error the server returns
            db.adbc_connection.set_options(**{f"adbc.flight.sql.session.option.{name}": value})
        assert _session_options(db) == before


@pytest.mark.e2e
def test_the_docs_adbc_example_runs_as_written(endpoint: fs.FedSqlFlightServer, capsys: Any) -> None:
    """Issue #15 item 7: docs/flight-sql.md's ADBC example used grpc:// (refused). Its code block
    runs here with only the names changed (party bank → p1, its tables → the test's, the port)."""
    import re

    if adbc is None:
        pytest.skip("adbc-driver-flightsql is not installed")
    doc = (Path(__file__).resolve().parents[1] / "docs" / "flight-sql.md").read_text(encoding="utf-8")
    code = re.search(r"ADBC \(Python\).*?```python\n(.*?)```", doc, re.S).group(1)
    assert 'connect("grpc+tls://127.0.0.1:32010"' in code
    state = str(endpoint.fed_config.path.parent / ".fedsql") + "/"
    code = (code.replace('".fedsql/"', repr(state)).replace("bank.fedsql", "p1.fedsql")
            .replace("certs/bank.crt", "certs/p1.crt").replace("bank/client.", "p1/client.")
            .replace("127.0.0.1:32010", f"127.0.0.1:{endpoint.port}")
            .replace("FROM patients", "FROM t").replace("bank.accounts WHERE region = ?", "p2.t WHERE g = ?")
            .replace('("north",)', "(1,)"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, "docs/flight-sql.md", "exec"), {})
    out = capsys.readouterr().out
    assert "COUNT" in out.upper() and "catalog_name" in out
