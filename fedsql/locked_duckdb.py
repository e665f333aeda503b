"""The one way fedsql opens a DuckDB: in memory, no file or network access, settings locked.

Every DuckDB a node opens (planning, the owner's fragments, the issuer's final step,
scratch statements) runs SQL that a remote party or a user influenced, so none may
read or write files, load extensions, see Python variables, or change its own
settings (issue #11: a crafted schema made a node write a file and read its private
key back through an error). The only files an owner's DuckDB reads are its table
sources, named in `allowed_paths`; they are fixed before file access is switched off.
A DuckDB database file (an owner's source, read-only, or its sink, written) is opened by
`open_locked_file` with the same rules: it reaches that file alone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

import duckdb

from fedsql.errors import Error, ProgrammingError, SqlSyntaxError

log = logging.getLogger("fedsql.node")


def open_locked(allowed_paths: Iterable[str | Path] = (), memory_limit_mb: int | None = None,
                threads: int | None = None, allowed_directories: Iterable[str | Path] = ()) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with external access off and its configuration locked.

    `allowed_paths`: files it may still read (an owner's table sources), exactly these;
    `allowed_directories`: directories it may read below (directory and glob sources).
    `memory_limit_mb`/`threads`: set before the lock, since nothing can change them after."""
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                             "autoload_known_extensions": False,
                                             "python_enable_replacements": False})
    try:
        paths = [str(Path(p).resolve()) for p in allowed_paths]
        if paths:
            con.execute("SET allowed_paths = ?", [paths])
        dirs = [str(Path(p).resolve()) + "/" for p in allowed_directories]
        if dirs:
            con.execute("SET allowed_directories = ?", [dirs])
        if memory_limit_mb is not None:
            con.execute(f"SET memory_limit = '{int(memory_limit_mb)}MB'")
        if threads is not None:
            con.execute(f"SET threads = {int(threads)}")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


LOCKED_FILE_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False,
                      "python_enable_replacements": False, "enable_external_access": False,
                      "lock_configuration": True}


def open_locked_file(path: str | Path, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """The DuckDB database file `path` (a source: read-only; a sink: `read_only=False`), with
    external access off and its configuration locked from the connect on: it reads and writes
    its own file (and its WAL) only — no other file, no ATTACH, no extension installed or loaded
    from disk, no network, no Python variable — and no statement can change that. The settings
    are given at connect, so every connection of the process to that file shares one instance."""
    return duckdb.connect(str(path), read_only=read_only, config=dict(LOCKED_FILE_CONFIG))


class DuckDBText:
    """Marks a fedsql error whose message quotes DuckDB's own error text.

    Such a message is fine for the party's own user (it is about their SQL and the public
    schemas), but it is not fedsql's wording and may echo whatever DuckDB read: a node never
    sends it to another party (fedsql/node.py `Run` replaces it with `for_remote`)."""


class DuckDBSyntaxError(SqlSyntaxError, DuckDBText):
    pass


class DuckDBProgrammingError(ProgrammingError, DuckDBText):
    pass


def for_remote(err: Error, party: str, step: str) -> Error:
    """`err` as another party may see it: DuckDB's text is replaced by one naming the party and
    the step (the details stay in this node's log)."""
    if not isinstance(err, DuckDBText):
        return err
    log.warning("party %s: DuckDB refused the query while %s (not sent to the issuer): %s", party, step, err)
    cls = SqlSyntaxError if isinstance(err, SqlSyntaxError) else ProgrammingError
    return cls(f"party '{party}' could not bind the query while {step}; its node log has the details")
