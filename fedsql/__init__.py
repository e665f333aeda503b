"""fedsql: privacy-preserving federated SQL.

`fedsql.connect(config, party)` is the PEP 249 entry point; the module also
carries the DB-API globals, type objects and exception classes so that
`fedsql` itself can be used as a DB-API module (e.g. by generic tools that
expect `module.connect`, `module.paramstyle`, `module.Error`).

The DB-API names are loaded from `connectors.dbapi` on first use (PEP 562), so
`fedsql` — imported by every layer for its errors and config — never imports the
connectors back (no import cycle).
"""

from __future__ import annotations

__version__ = "0.1.0"

from fedsql.errors import (
    ConfigError,
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    PartyUnavailable,
    PolicyViolation,
    ProgrammingError,
    QueryCancelled,
    QueryTimeout,
    SqlSyntaxError,
    UnknownObjectError,
    UnsupportedSql,
    Warning,
)

__all__ = [
    "__version__", "connect", "Connection", "Cursor",
    "apilevel", "threadsafety", "paramstyle",
    "STRING", "BINARY", "NUMBER", "DATETIME", "ROWID",
    "Date", "Time", "Timestamp", "Binary", "DateFromTicks", "TimeFromTicks", "TimestampFromTicks",
    "Warning", "Error", "InterfaceError", "DatabaseError", "DataError", "OperationalError",
    "IntegrityError", "InternalError", "ProgrammingError", "NotSupportedError",
    "ConfigError", "SqlSyntaxError", "UnknownObjectError", "PolicyViolation", "UnsupportedSql",
    "PartyUnavailable", "QueryTimeout", "QueryCancelled",
]

_DBAPI = frozenset({
    "connect", "Connection", "Cursor", "apilevel", "threadsafety", "paramstyle",
    "STRING", "BINARY", "NUMBER", "DATETIME", "ROWID",
    "Date", "Time", "Timestamp", "Binary", "DateFromTicks", "TimeFromTicks", "TimestampFromTicks",
})


def __getattr__(name: str):
    if name in _DBAPI:
        from connectors import dbapi

        value = getattr(dbapi, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fedsql' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _DBAPI)
