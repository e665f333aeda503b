"""fedsql: privacy-preserving federated SQL.

`fedsql.connect(config, party)` is the PEP 249 entry point; the module also
carries the DB-API globals, type objects and exception classes so that
`fedsql` itself can be used as a DB-API module (e.g. by generic tools that
expect `module.connect`, `module.paramstyle`, `module.Error`).
"""

from __future__ import annotations

__version__ = "0.1.0"

from connectors.dbapi import (  # noqa: E402  (re-exported PEP 249 surface)
    BINARY,
    DATETIME,
    NUMBER,
    ROWID,
    STRING,
    Binary,
    Connection,
    Cursor,
    Date,
    DateFromTicks,
    Time,
    TimeFromTicks,
    Timestamp,
    TimestampFromTicks,
    apilevel,
    connect,
    paramstyle,
    threadsafety,
)
from fedsql.errors import (  # noqa: E402
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
