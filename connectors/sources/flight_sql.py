"""Flight SQL endpoints (another fedsql node's, or any Flight SQL server), read through ADBC.

`source = "grpc+tls://user@host:port?tls_root_certificate=/abs/ca.pem&tls_server_name=NAME"`:
always TLS (a `grpc://` URL is refused at load). The remote endpoint's certificate is pinned by
`tls_root_certificate` (the PEM the client trusts, e.g. the remote party's node certificate)
and, when the certificate does not name the host, `tls_server_name`; without it the system's
roots are used. The user logs in with the password from the owner's environment or secrets
file (connectors/sources/secrets.py), as for the other sources. The fragment is sent as SQL in
`dialect` (DuckDB by default: a fedsql node and most Flight SQL servers speak it).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from connectors.sources import Source, sql_string


class FlightSQLSource(Source):
    kind = "flightsql"
    engine_name = "Flight SQL"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        params = dict(self.url.params)
        self.dialect = params.get("dialect") or "duckdb"
        self._server_name = params.get("tls_server_name")

    def _connect(self) -> Any:
        try:
            import adbc_driver_flightsql.dbapi as fl
        except ImportError:
            raise self.fail("the Flight SQL driver is not installed", hint="pip install adbc-driver-flightsql") from None
        options: dict[str, str] = {}
        if self.url.path:
            try:
                options["adbc.flight.sql.client_option.tls_root_certs"] = Path(self.url.path).read_text()
            except OSError:
                raise self.fail(f"cannot read tls_root_certificate {self.url.path}",
                                hint="point it at the remote endpoint's certificate (PEM)") from None
        if self._server_name:
            options["adbc.flight.sql.client_option.tls_override_hostname"] = self._server_name
        if self.url.user is not None:
            options["username"] = self.url.user
            options["password"] = self._password or ""
        if self.statement_timeout:
            options["adbc.flight.sql.rpc.timeout_seconds.query"] = str(float(self.statement_timeout))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return fl.connect(f"grpc+tls://{self.url.host}:{self.url.port}", db_kwargs=options)
        except Exception as exc:  # noqa: BLE001 - any driver failure becomes a clear SourceError
            text = str(exc).lower()
            if "unauthenticated" in text or "invalid" in text and "password" in text:
                raise self.fail("the Flight SQL endpoint refused the login", exc,
                                "check the user in the URL and the password in the party's secrets file "
                                "or its environment variable") from None
            raise self.fail("cannot connect to the Flight SQL endpoint (is it running, and is its certificate "
                            "the pinned one?)", exc, "the node keeps serving its other tables") from None

    def schema(self) -> list[tuple[str, str]]:
        schema, name = self.relation_parts()
        where = f"table_name = {sql_string(name)}" + (f" AND table_schema = {sql_string(schema)}" if schema else "")
        rows = self._run(f"SELECT column_name, data_type FROM information_schema.columns WHERE {where} "
                         "ORDER BY ordinal_position", "describe the table")
        if rows.num_rows == 0:
            raise self.fail("the relation does not exist (or the user may not see it)",
                            hint="fix table = ... in the configuration")
        return list(zip(rows.column(0).to_pylist(), rows.column(1).to_pylist()))
