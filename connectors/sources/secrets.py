"""Database source passwords: the owner's own, never in the shared federation file.

Looked up per table, first in the environment, then in the party's private secrets file:

    FEDSQL_SOURCE_PASSWORD_<PARTY>_<TABLE>=...           (upper case; non-alphanumerics → _)

    # <config dir>/.fedsql/<party>/secrets.toml  (mode 0600: only the node's user reads it)
    [tables.accounts]
    password = "..."

A sink (`[parties.P.sinks.NAME]`, fedsql/scratch.py) has a namespace of its own, so that a
table called `sink_NAME` and a sink `NAME` never share a password:

    FEDSQL_SINK_PASSWORD_<PARTY>_<SINK>=...
    [sinks.NAME]
    password = "..."

A sink's password first went under the table key `sink_NAME` (FEDSQL_SOURCE_PASSWORD_<PARTY>_SINK_<NAME>,
[tables.sink_NAME]); that key is still read for a sink that has no key of its own, unless the
party has a table whose key it is.

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


def sink_env_name(party: str, sink: str) -> str:
    """The environment variable holding the password of `party`'s sink `sink`."""
    return "FEDSQL_SINK_PASSWORD_" + re.sub(r"[^A-Z0-9]", "_", f"{party}_{sink}".upper())


def sink_password(state_dir: Path | None, party: str, sink: str, tables: list[str]) -> str | None:
    """The password of `party`'s sink `sink`, or None (connect as the URL's user alone).

    Its own keys first (FEDSQL_SINK_PASSWORD_<PARTY>_<SINK>, then `[sinks.SINK]`); then, for
    configurations written before sinks had a namespace, the table key `sink_SINK` — unless one
    of the party's `tables` owns that key (same environment variable name), whose password it is."""
    env = os.environ.get(sink_env_name(party, sink))
    if env is not None:
        return env
    path = state_dir / SECRETS_FILE if state_dir is not None else None
    raw = read_secrets_file(path) if path is not None and path.exists() else {}
    sinks = raw.get("sinks", {})
    if not isinstance(sinks, dict):
        raise ConfigError(f'{path}: expected [sinks.NAME] password = "..."')
    entry = sinks.get(sink)
    if entry is not None:
        if not isinstance(entry, dict) or set(entry) != {"password"} or not isinstance(entry["password"], str):
            raise ConfigError(f"{path}: [sinks.{sink}] must hold exactly password = \"...\"")
        return entry["password"]
    legacy = f"sink_{sink}"
    if any(env_name(party, t) == env_name(party, legacy) for t in tables):
        return None  # that key is the table's
    return load_passwords(state_dir, party, [legacy]).get(legacy)


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
    """The whole secrets file, which only its owner may read: `[tables.NAME]` and `[sinks.NAME]`
    passwords and the owner's `[webhook]` (fedsql/webhook.py)."""
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
    unknown = set(raw) - {"tables", "sinks", "webhook"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; the file holds "
                          '[tables.NAME] password = "...", [sinks.NAME] password = "..." and [webhook] url = "..."')
    return raw


def _read(path: Path) -> dict[str, object]:
    """The [tables] of a secrets file."""
    tables = read_secrets_file(path).get("tables", {})
    if not isinstance(tables, dict):
        raise ConfigError(f'{path}: expected [tables.NAME] password = "..."')
    return tables
