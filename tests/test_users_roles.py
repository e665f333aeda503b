"""Per-role grants end to end (issue #15 item 1, docs/decisions.md D-ROLES; issue #12 list form).

Real nodes: bank issues, shop owns `sales`, helper computes. shop grants bank's certificate only
`filter` on `amount`, bank's analysts `group_key` on `region` and `aggregate` on `amount`, its
auditors `public` on `amount`. Two users of bank with different roles get different answers and
refusals to the same query; the certificate alone gets the party-level grant; a user's roles are
read at query time; every party records the user and roles whose grants it applied.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import duckdb
import pyarrow as pa
import pytest

from fedsql import errors
from fedsql.users import Accounts
from tests.adversarial.harness import running, write_config
from tests.result_compare import assert_matches, duckdb_arrow

pytestmark = pytest.mark.e2e

PASSWORD = "role-test-password"

CONFIG = """\
[federation]
name = "roles"
compute = ["bank", "shop", "helper"]
deadline_seconds = 60

[parties.bank]
address = "127.0.0.1:{port1}"
[parties.bank.tables.accounts]
source = "bank_accounts.parquet"
columns = {{ cust_id = ["join_key", "group_key"], balance = "aggregate" }}

[parties.shop]
address = "127.0.0.1:{port2}"
[parties.shop.tables.sales]
source = "shop_sales.parquet"
columns = {{ cust_id = ["join_key", "group_key"], region = "aggregate", amount = "aggregate" }}
[parties.shop.tables.sales.grants]
bank = {{ amount = "filter" }}
"bank:analyst" = {{ region = "group_key", amount = "aggregate" }}
"bank:auditor" = {{ amount = "public" }}
"helper:analyst" = {{ region = "public" }}

[parties.helper]
address = "127.0.0.1:{port3}"
"""

TABLES = {
    "bank_accounts.parquet": pa.table({
        "cust_id": pa.array([1, 2, 3, 3, 4, None, 7, 0], pa.int64()),
        "balance": pa.array([100, -50, 0, 25, 10, 5, -7, 3], pa.int64()),
    }),
    "shop_sales.parquet": pa.table({
        "cust_id": pa.array([1, 1, 2, 3, None, 5, 0, 0, 4, 3], pa.int64()),
        "region": pa.array(["north", "north", "south", None, "south", "east", "North", "east", None, "south"]),
        "amount": pa.array([10, -3, 0, 7, 4, None, 12, -12, 0, 5], pa.int64()),
    }),
}

Q_GROUP = "SELECT region, SUM(amount) AS total, COUNT(*) AS n FROM shop.sales GROUP BY region"
Q_FILTER = "SELECT COUNT(*) AS n FROM shop.sales WHERE amount > 0"
Q_SUM = "SELECT SUM(amount) AS s FROM shop.sales"
Q_ROWS = "SELECT amount FROM shop.sales ORDER BY amount"
Q_REGION_ROWS = "SELECT region FROM shop.sales"
Q_JOIN = ("SELECT s.cust_id, COUNT(*) AS n, SUM(a.balance) AS b FROM bank.accounts a "
          "JOIN shop.sales s ON a.cust_id = s.cust_id GROUP BY s.cust_id")


def _reference(sql: str) -> pa.Table:
    db = duckdb.connect()
    db.register("accounts", TABLES["bank_accounts.parquet"])
    db.register("sales", TABLES["shop_sales.parquet"])
    return duckdb_arrow(db, sql.replace("shop.sales", "sales").replace("bank.accounts", "accounts"))


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    config = write_config(tmp_path_factory.mktemp("roles"), CONFIG, TABLES)
    with running(config) as running_fed:
        accounts = Accounts.of(running_fed.fed, "bank")
        accounts.add("ann", PASSWORD, ["analyst"])
        accounts.add("bob", PASSWORD)
        accounts.add("carol", PASSWORD, ["auditor"])
        yield running_fed


def _run(fed: Any, sql: str, user: str | None = None) -> pa.Table:
    kwargs = {"user": user, "password": PASSWORD} if user else {}
    with fed.connect("bank", **kwargs) as conn:
        cur = conn.cursor()
        cur.execute(sql)
        return cur.fetch_arrow_table()


def _audit(fed: Any, party: str) -> list[dict]:
    return [json.loads(line) for line in fed.audit_text(party).splitlines() if line.strip()]


def test_two_users_same_query_different_answers(fed: Any) -> None:
    assert_matches(_run(fed, Q_GROUP, "ann"), _reference(Q_GROUP), Q_GROUP)  # analyst: region is a group key
    with pytest.raises(errors.PolicyViolation) as info:
        _run(fed, Q_GROUP, "bob")
    msg = str(info.value)
    assert ("shop.sales.region is 'aggregate' for issuer 'bank' (user 'bob', no roles), which lacks "
            "permission 'group_key'") in msg, msg
    # both may filter on amount (the party grant); only the analyst may sum it
    for user in ("ann", "bob"):
        assert_matches(_run(fed, Q_FILTER, user), _reference(Q_FILTER), Q_FILTER)
    assert_matches(_run(fed, Q_SUM, "ann"), _reference(Q_SUM), Q_SUM)
    with pytest.raises(errors.PolicyViolation, match="is 'filter' for issuer 'bank' \\(user 'bob', no roles\\), "
                                                     "which lacks permission 'aggregate'"):
        _run(fed, Q_SUM, "bob")


def test_certificate_login_gets_the_party_grant(fed: Any) -> None:
    assert_matches(_run(fed, Q_FILTER), _reference(Q_FILTER), Q_FILTER)
    with pytest.raises(errors.PolicyViolation) as info:
        _run(fed, Q_GROUP)
    msg = str(info.value)
    assert "shop.sales.region is 'aggregate' for issuer 'bank', which lacks permission 'group_key'" in msg, msg
    assert "user" not in msg
    with pytest.raises(errors.PolicyViolation, match="is 'filter' for issuer 'bank', which lacks permission "
                                                     "'aggregate'"):
        _run(fed, Q_SUM)


def test_roles_add_and_are_scoped_to_their_party(fed: Any) -> None:
    # the auditor's role adds `public` on amount (row values); the analyst's does not
    assert_matches(_run(fed, Q_ROWS, "carol"), _reference(Q_ROWS), Q_ROWS)
    with pytest.raises(errors.PolicyViolation, match="lacks permission 'public'"):
        _run(fed, Q_ROWS, "ann")
    # "helper:analyst" grants helper's analysts, not bank's
    with pytest.raises(errors.PolicyViolation, match="region is 'group_key' for issuer 'bank' \\(user 'ann', "
                                                     "roles analyst\\), which lacks permission 'public'"):
        _run(fed, Q_REGION_ROWS, "ann")


def test_describe_shows_the_users_permissions(fed: Any) -> None:
    def levels(user: str | None) -> dict[str, str]:
        table = _run(fed, "DESCRIBE shop.sales", user)
        return dict(zip(table.column("column_name").to_pylist(), table.column("level").to_pylist()))

    assert levels(None) == {"cust_id": "join_key+group_key", "region": "aggregate", "amount": "filter"}
    assert levels("ann") == {"cust_id": "join_key+group_key", "region": "group_key", "amount": "aggregate"}
    assert levels("carol")["amount"] == "public"


def test_information_schema_shows_the_users_permissions(fed: Any) -> None:
    """BI tools browse with information_schema.columns: the same permissions DESCRIBE shows the user."""
    def levels(user: str | None) -> dict[str, str]:
        table = _run(fed, "SELECT column_name, fedsql_level FROM information_schema.columns "
                          "WHERE table_schema = 'shop' AND table_name = 'sales'", user)
        return dict(zip(table.column("column_name").to_pylist(), table.column("fedsql_level").to_pylist()))

    assert levels(None)["amount"] == "filter" and levels(None)["region"] == "aggregate"
    assert levels("ann")["amount"] == "aggregate" and levels("ann")["region"] == "group_key"
    assert levels("carol")["amount"] == "public"


def test_list_form_join_key_and_group_key(fed: Any) -> None:
    """cust_id is ["join_key", "group_key"]: joined across parties and used as a label without `public`."""
    assert_matches(_run(fed, Q_JOIN), _reference(Q_JOIN), Q_JOIN)
    with pytest.raises(errors.PolicyViolation, match="lacks permission 'public'"):
        _run(fed, "SELECT cust_id FROM shop.sales")


def test_roles_are_read_per_query_and_audited_everywhere(fed: Any) -> None:
    accounts = Accounts.of(fed.fed, "bank")
    accounts.set_roles("bob", ["analyst"])
    try:
        assert_matches(_run(fed, Q_GROUP, "bob"), _reference(Q_GROUP), Q_GROUP)
    finally:
        accounts.set_roles("bob", [])
    with pytest.raises(errors.PolicyViolation):
        _run(fed, Q_GROUP, "bob")
    for party in ("bank", "shop"):  # helper takes no part in a one-owner aggregate
        records = [r for r in _audit(fed, party) if r["event"] == "query" and r.get("sql") == Q_GROUP]
        assert {(r.get("user"), tuple(r.get("roles", ()))) for r in records} >= {("bob", ("analyst",)),
                                                                                  ("ann", ("analyst",))}, records
        hashes = {r.get("user"): r["plan_hash"] for r in records}
        assert hashes["bob"] != hashes["ann"]  # the plan binds the user
    refused = [r for r in _audit(fed, "bank") if r["event"] == "refused" and r.get("sql") == Q_GROUP]
    assert any(r.get("user") == "bob" and "roles" not in r for r in refused)
    assert "role-test-password" not in fed.audit_text("bank") + fed.audit_text("shop")
    lines = [json.loads(line[line.index("{"):]) for line in fed.node_log("shop").splitlines()
             if '"event": "query"' in line]
    assert any(ln.get("user") == "bob" and ln.get("roles") == ["analyst"] and ln["role"] == "participant"
               for ln in lines), lines


def test_flight_sql_password_login_applies_the_users_roles(fed: Any) -> None:
    """The BI path: ADBC with user + password on the password endpoint; the prepared statement's
    schema is planned under the user's roles too (else an analyst's prepare would be refused)."""
    import warnings

    adbc = pytest.importorskip("adbc_driver_flightsql.dbapi")
    from connectors import flight_sql as fs
    from fedsql import tls
    from fedsql.users import Authenticator

    files = fs.party_flight_tls(fed.fed, "bank")
    server = fs.start_flight_server(fed.fed, "bank", fed.fed.parties["bank"].address, "127.0.0.1:0",
                                    tls_certificates=files["tls_certificates"],
                                    auth=Authenticator(Accounts.of(fed.fed, "bank")))
    options = {"adbc.flight.sql.client_option.tls_root_certs": tls.paths(fed.fed, "bank").certificate.read_text(),
               "adbc.flight.sql.client_option.tls_override_hostname": tls.server_name("bank")}

    def connect(user: str) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return adbc.connect(f"grpc+tls://127.0.0.1:{server.port}",
                                db_kwargs={**options, "username": user, "password": PASSWORD})

    def levels(conn: Any) -> dict[str, str]:  # GetTables with schemas: what BI tools show per column
        schema = conn.adbc_get_table_schema("sales", db_schema_filter="shop")
        return {f.name: f.metadata[b"fedsql:level"].decode() for f in schema}

    try:
        with connect("ann") as conn:
            assert levels(conn)["amount"] == "aggregate" and levels(conn)["region"] == "group_key"
        with connect("bob") as conn:
            assert levels(conn)["amount"] == "filter" and levels(conn)["region"] == "aggregate"
        with connect("ann") as conn, conn.cursor() as cur:
            cur.adbc_prepare(Q_GROUP)
            cur.execute(Q_GROUP)
            assert_matches(cur.fetch_arrow_table(), _reference(Q_GROUP), Q_GROUP)
        with connect("bob") as conn, conn.cursor() as cur:
            with pytest.raises(adbc.Error, match="lacks permission 'group_key'"):
                cur.execute(Q_GROUP)
    finally:
        server.shutdown()
