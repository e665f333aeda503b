"""Where a party keeps its private state: `<config dir>/.fedsql/`.

A leaf module (no project imports): the node, the CLI, the launcher and the tests all
derive every state path from here — keys, certificates, audit log, DP ledger, scratch
tables, node logs — so a path is written down once.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def state_root(config_path: str | Path) -> Path:
    """`<config dir>/.fedsql/`: shared by the parties run from this configuration's directory."""
    return Path(config_path).expanduser().resolve().parent / ".fedsql"


def state_dir(config_path: str | Path, party: str) -> Path:
    """`<config dir>/.fedsql/<party>/`: one party's private state (keys, audit, DP ledger, scratch)."""
    return state_root(config_path) / party


def certificates_dir(config_path: str | Path) -> Path:
    """`<config dir>/.fedsql/certs/`: every party's certificate (public)."""
    return state_root(config_path) / "certs"


def logs_dir(config_path: str | Path) -> Path:
    """`<config dir>/.fedsql/logs/`: node logs of a local federation (`fedsql up`)."""
    return state_root(config_path) / "logs"


def write_private(path: Path, data: bytes) -> None:
    """Atomic 0600 replace in a 0700 directory: a crash leaves the old or the new file, never half
    of one, and no other user can read it at any moment (keys, accounts)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
