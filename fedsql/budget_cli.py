"""`fedsql budget CONFIG --party NAME`: what each issuer has spent of this owner's budgets.

Reads the owner's ledger (see fedsql/ledger.py) and the DP policies of the
owner's tables from CONFIG, and prints one row per (issuer, table): ε spent,
ε budget, ε left, δ spent, δ budget, number of queries. Safe to run while the
node is up (SQLite WAL: readers do not block the node's writes).
"""

from __future__ import annotations

import sys
import tomllib
from dataclasses import astuple, dataclass
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from fedsql.dp_config import DPPolicy, parse_dp_policy


def default_ledger_path(fed_path: str | Path, party: str) -> Path:
    """Where party `party` keeps its ledger: ``<config dir>/.fedsql/<party>/ledger.sqlite``."""
    from fedsql.state import state_dir

    return state_dir(fed_path, party) / "ledger.sqlite"


def dp_policies(fed, party: str) -> dict[str, DPPolicy]:
    """table name → DP policy for the tables of `party` that declare one.

    Uses ``TableConfig.dp`` when config.py provides it; otherwise parses the
    ``dp`` sub-tables of the file itself (same validation, same errors)."""
    out: dict[str, DPPolicy] = {}
    raw_tables = None
    for name, table in fed.party(party).tables.items():
        if hasattr(table, "dp"):
            policy = table.dp
        else:
            if raw_tables is None:
                raw = tomllib.loads(Path(fed.path).read_text(encoding="utf-8"))
                raw_tables = raw.get("parties", {}).get(party, {}).get("tables", {})
            raw_dp = (raw_tables.get(name) or {}).get("dp")
            policy = None if raw_dp is None else parse_dp_policy(raw_dp, f"parties.{party}.tables.{name}.dp", fed.path)
        if policy is not None:
            out[name] = policy
    return out


def _left(limit: float, spent: float) -> float:
    return float(max(Decimal(0), Decimal(repr(limit)) - Decimal(repr(spent))))


@dataclass(frozen=True)
class BudgetRow:
    """What `issuer` has spent of `table`'s budget; the budget fields are None when the table no
    longer declares a DP policy (spends recorded before it was removed)."""

    issuer: str
    table: str
    epsilon_spent: float
    epsilon_budget: float | None
    epsilon_left: float | None
    delta_spent: float
    delta_budget: float | None
    queries: int


def ledger_path_of(fed, party: str, ledger_path: str | Path | None = None) -> Path:
    return Path(ledger_path).expanduser() if ledger_path else default_ledger_path(fed.path, party)


def budget_rows(fed, party: str, ledger_path: str | Path | None = None) -> list[BudgetRow]:
    """One row per (issuer, table) with a DP policy or a recorded spend, sorted by table then issuer.
    The CLI and the owner's console both show these; a missing ledger is not created."""
    from fedsql.ledger import Ledger, Spent

    policies = dp_policies(fed, party)
    path = ledger_path_of(fed, party, ledger_path)
    totals: dict[tuple[str, str], Spent] = {}
    if path.exists():
        with Ledger(path) as led:
            totals = led.totals()
    others = sorted(p for p in fed.parties if p != party)
    keys = {(issuer, f"{party}.{t}") for t in policies for issuer in others} | set(totals)
    rows = []
    for issuer, qualified in sorted(keys, key=lambda k: (k[1], k[0])):
        spent = totals.get((issuer, qualified), Spent(0.0, 0.0, 0))
        pol = policies.get(qualified.partition(".")[2]) if qualified.startswith(f"{party}.") else None
        if pol is None:
            rows.append(BudgetRow(issuer, qualified, spent.epsilon, None, None, spent.delta, None, spent.queries))
        else:
            rows.append(BudgetRow(issuer, qualified, spent.epsilon, pol.epsilon, _left(pol.epsilon, spent.epsilon),
                                  spent.delta, pol.delta, spent.queries))
    return rows


def run_budget(config_path: str, party: str, ledger_path: str | None = None, *, out: TextIO | None = None) -> int:
    """Print the spends and remaining budget per (issuer, table); 0 on success.

    Raises fedsql.errors.ConfigError for a bad config or unknown party and
    OperationalError when the ledger cannot be read (the CLI prints them)."""
    from fedsql.config import load_config
    from fedsql.render import format_rows

    out = out or sys.stdout
    fed = load_config(config_path)
    fed.party(party)
    policies = dp_policies(fed, party)
    path = ledger_path_of(fed, party, ledger_path)
    rows = [astuple(r) for r in budget_rows(fed, party, ledger_path)]

    print(f"privacy budget of party {party} (federation {fed.name})", file=out)
    print(f"ledger: {path}" + ("" if path.exists() else "  (not created yet: no DP query has spent budget)"),
          file=out)
    if not rows:
        print(f"no table of {party} declares a DP policy ([parties.{party}.tables.T.dp]) and no spend is recorded",
              file=out)
        return 0
    names = ["issuer", "table", "eps spent", "eps budget", "eps left", "delta spent", "delta budget", "queries"]
    print(format_rows(names, rows), file=out)
    orphans = [r for r in rows if r[3] is None]
    if orphans:
        print("NULL budget: spends recorded on a table that no longer declares a DP policy", file=out)
    caps = ", ".join(f"{party}.{t} {p.max_epsilon_per_query:g}" for t, p in sorted(policies.items()))
    if caps:
        print(f"per-query epsilon caps: {caps}", file=out)
    return 0
