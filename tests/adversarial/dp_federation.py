"""A small federation with a DP table, for the DP adversarial tests (issue #11 findings 2, 3).

bank (the issuer in the attacks), telco (owns `subscribers` and the DP table `usage`:
one row per customer, minutes bounded to [0, 3000]) and third (a compute party). The
secret the attacks go after: customer 7's exact minutes, SECRET_MINUTES.
"""

from __future__ import annotations

from pathlib import Path

from tests.adversarial.harness import write_config

SECRET_ID = 7
SECRET_MINUTES = 1234

CONFIG = """
[federation]
name = "dpadv"
compute = ["bank", "telco", "third"]
deadline_seconds = 30

[parties.bank]
address = "127.0.0.1:{port1}"
[parties.bank.tables.customers]
source = "bank.parquet"
columns = {{ customer_id = "join_key", income = "aggregate" }}
unique = ["customer_id"]

[parties.telco]
address = "127.0.0.1:{port2}"
[parties.telco.tables.subscribers]
source = "subscribers.parquet"
columns = {{ customer_id = "join_key", tenure_months = "aggregate" }}
unique = ["customer_id"]
[parties.telco.tables.usage]
source = "usage.parquet"
columns = {{ customer_id = "aggregate", region = "group_key", minutes = "aggregate" }}
[parties.telco.tables.usage.dp]
unit = "customer_id"
max_rows = 1
bounds = {{ minutes = [0, 3000] }}
epsilon = 1000.0
max_epsilon_per_query = 1.0
public_groups = {{ region = ["north", "south"] }}

[parties.third]
address = "127.0.0.1:{port3}"
[parties.third.tables.x]
source = "x.parquet"
columns = {{ k = "aggregate" }}
"""


def dp_federation(directory: Path) -> Path:
    """Write the federation (data + config); returns the config path."""
    import pyarrow as pa

    ids = list(range(1, 31))
    minutes = [SECRET_MINUTES if i == SECRET_ID else 100 + 10 * i for i in ids]
    tables = {
        "bank.parquet": pa.table({"customer_id": pa.array(ids, pa.int64()),
                                  "income": pa.array([1000 * i for i in ids], pa.int64())}),
        "subscribers.parquet": pa.table({"customer_id": pa.array(ids, pa.int64()),
                                         "tenure_months": pa.array([1] * len(ids), pa.int64())}),
        "usage.parquet": pa.table({"customer_id": pa.array(ids, pa.int64()),
                                   "region": pa.array(["north" if i % 2 else "south" for i in ids]),
                                   "minutes": pa.array(minutes, pa.int32())}),
        "x.parquet": pa.table({"k": pa.array([1, 2, 3], pa.int64())}),
    }
    return write_config(directory, CONFIG, tables)


def spent(config: Path, issuer: str = "bank", table: str = "telco.usage") -> tuple[float, int]:
    """(ε spent, number of charged queries) of `issuer` on `table`, from the owner's own ledger."""
    from fedsql.budget_cli import default_ledger_path
    from fedsql.ledger import Ledger

    path = default_ledger_path(config, table.split(".")[0])
    if not path.exists():
        return 0.0, 0
    with Ledger(path) as ledger:
        s = ledger.spent(issuer, table)
    return s.epsilon, s.queries
