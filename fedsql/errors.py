"""PEP 249 exception hierarchy plus fedsql's named error kinds.

Every error a user can see is one of these classes. Errors cross process
boundaries (node → client) as ``(kind, message)``; ``error_from_kind`` rebuilds
the right class on the client side so DB-API users can catch precisely.
Messages must never contain row data.
"""

from __future__ import annotations


class Warning(Exception):  # noqa: A001 - name required by PEP 249
    """Important warnings (PEP 249)."""


class Error(Exception):
    """Base of all fedsql errors (PEP 249)."""

    kind = "Error"


class InterfaceError(Error):
    kind = "InterfaceError"


class DatabaseError(Error):
    kind = "DatabaseError"


class DataError(DatabaseError):
    kind = "DataError"


class OperationalError(DatabaseError):
    kind = "OperationalError"


class IntegrityError(DatabaseError):
    kind = "IntegrityError"


class InternalError(DatabaseError):
    kind = "InternalError"


class ProgrammingError(DatabaseError):
    kind = "ProgrammingError"


class NotSupportedError(DatabaseError):
    kind = "NotSupportedError"


# -- fedsql-specific kinds -------------------------------------------------


class ConfigError(InterfaceError):
    """The federation configuration cannot be used as written."""

    kind = "ConfigError"


class SqlSyntaxError(ProgrammingError):
    kind = "SqlSyntaxError"


class UnknownObjectError(ProgrammingError):
    """A table, column or party named in the query does not exist."""

    kind = "UnknownObjectError"


class PolicyViolation(ProgrammingError):
    """The plan would reveal something a data owner's policy forbids."""

    kind = "PolicyViolation"


class BudgetExhausted(PolicyViolation):
    """A query would take an issuer over a table's privacy budget: refused by the table's owner."""

    kind = "BudgetExhausted"


class ApprovalRefused(PolicyViolation):
    """A data owner did not approve the query: rejected, expired, or not approved for this plan."""

    kind = "ApprovalRefused"


class UnsupportedSql(NotSupportedError):
    kind = "UnsupportedSql"


class EncodingError(DataError):
    """A value cannot be encoded for secure computation (type or range)."""

    kind = "EncodingError"


class PartyUnavailable(OperationalError):
    """A party's node cannot be reached or stopped answering."""

    kind = "PartyUnavailable"


class QueryTimeout(OperationalError):
    kind = "QueryTimeout"


class QueryCancelled(OperationalError):
    kind = "QueryCancelled"


class PlanMismatch(OperationalError):
    """A party compiled a different plan than the issuer sent: refused."""

    kind = "PlanMismatch"


class ResourceLimitExceeded(OperationalError):
    """A query needs more than a node's configured limits (rows, concurrent queries)."""

    kind = "ResourceLimitExceeded"


class AuthenticationError(OperationalError):
    """A connection or call was refused: missing, unknown or mismatched certificate."""

    kind = "AuthenticationError"


def _all_subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


_KINDS: dict[str, type[Error]] = {c.kind: c for c in [Error, *_all_subclasses(Error)]}


def error_from_kind(kind: str, message: str) -> Error:
    """Rebuild an error received from a node; unknown kinds become DatabaseError."""
    return _KINDS.get(kind, DatabaseError)(message)
