"""Database source passwords: the owner's own, never in the shared federation file.

Looked up per table, first in the environment, then in the party's private secrets file:

    FEDSQL_SOURCE_PASSWORD_<PARTY>_<TABLE>=...           (upper case; non-alphanumerics → _)

    # <config dir>/.fedsql/<party>/secrets.toml  (mode 0600: only the node's user reads it)
    [tables.accounts]
    password = "..."

A password is only ever handed to the driver; messages and logs use `SourceURL.display`.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from pathlib import Path

from fedsql.errors import ConfigError

SECRETS_FILE = "secrets.toml"


def env_name(party: str, table: str) -> str:
    """The environment variable holding `party.table`'s source password."""
    return "FEDSQL_SOURCE_PASSWORD_" + re.sub(r"[^A-Z0-9]", "_", f"{party}_{table}".upper())


def load_passwords(state_dir: Path | None, party: str, tables: list[str]) -> dict[str, str]:
    """Passwords of `tables` that have one (a table without one connects as its URL's user alone,
    e.g. over a Unix socket with peer authentication or through ~/.pgpass). No `state_dir`: the
    environment only."""
    path = state_dir / SECRETS_FILE if state_dir is not None else None
    from_file = _read(path) if path is not None and path.exists() else {}
    out: dict[str, str] = {}
    for table in tables:
        env = os.environ.get(env_name(party, table))
        if env is not None:
            out[table] = env
            continue
        entry = from_file.get(table)
        if entry is None:
            continue
        if not isinstance(entry, dict) or set(entry) != {"password"} or not isinstance(entry["password"], str):
            raise ConfigError(f"{path}: [tables.{table}] must hold exactly password = \"...\"")
        out[table] = entry["password"]
    return out


def read_secrets_file(path: Path) -> dict[str, object]:
    """The whole secrets file, which only its owner may read: `[tables.NAME]` passwords and the
    owner's `[webhook]` (fedsql/webhook.py)."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path}: other users may read this secrets file (mode {stat.S_IMODE(mode):o}); "
                          f"run: chmod 600 {path}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        # the decoder's message may quote the line, and so the password: say where only
        line = getattr(exc, "lineno", None)
        raise ConfigError(f"{path}: not a readable TOML secrets file"
                          f"{f' (near line {line})' if line else ''}; see docs/configuration.md") from None
    unknown = set(raw) - {"tables", "webhook"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; "
                          'the file holds [tables.NAME] password = "..." and [webhook] url = "..."')
    return raw


def _read(path: Path) -> dict[str, object]:
    """The [tables] of a secrets file."""
    tables = read_secrets_file(path).get("tables", {})
    if not isinstance(tables, dict):
        raise ConfigError(f'{path}: expected [tables.NAME] password = "..."')
    return tables
