"""Issue #18 item 3 (Flight SQL slice): the Flight SQL catalog asks the node through the client
API; it opens no channel with the node's identity and keeps no cache of its own.

The endpoint is started in this process with node identities forbidden (as if the Flight
process had only the party's client key); table lists, table schemas with levels and the
schema a statement plans with still work, and equal the node's own DESCRIBE. Before this, the
Flight `Catalog` described tables by calling peers' `Describe` as the node (node key) with a
60 s cache of its own.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from connectors import flight_sql as fs
from fedsql import tls
from tests.test_flight_sql import connect_tls

pytestmark = pytest.mark.e2e


def test_the_flight_catalog_needs_no_node_identity(federation: tuple[Path, Any], conn: Any, monkeypatch) -> None:
    from fedsql.config import load_config

    config, data = federation
    fed = load_config(config)
    honest = tls.Identity.__init__

    def client_only(self, fed_, party, *, node=True):
        if node:
            raise AssertionError("the Flight SQL endpoint used a node identity (node key)")
        honest(self, fed_, party, node=False)

    monkeypatch.setattr(tls.Identity, "__init__", client_only)
    server = fs.start_flight_server(fed, "p1", fed.parties["p1"].address, "127.0.0.1:0",
                                    **fs.party_flight_tls(fed, "p1"))
    server.fed_config = fed  # what tests/test_flight_sql.py connect_tls reads
    try:
        entries = {(e.db_schema, e.name): e for e in server.catalog.tables()}
        for (db_schema, name), key in ((("p2", "t"), "p2.t"), ((fed.federated_schema, "t"), "t")):
            schema = server.catalog.table_schema(entries[(db_schema, name)])
            assert schema.names == data[key].schema.names
            described = conn.describe(f"{db_schema}.{name}" if db_schema != fed.federated_schema else name)
            assert [(f.name, f.metadata[b"fedsql:level"].decode()) for f in schema] == \
                [(row[0], row[2]) for row in described]
        assert server.catalog.schema_of("p3", "t") == tuple(
            (row[0], row[1]) for row in conn.describe("p3.t"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ADBC: "Cannot disable autocommit"
            db = connect_tls(server)
        try:
            cur = db.cursor()
            cur.execute("SELECT COUNT(*) FROM t")  # plans its result schema through the same catalog
            assert cur.fetchall() == [(data["t"].num_rows,)]
        finally:
            db.close()
    finally:
        server.shutdown()
