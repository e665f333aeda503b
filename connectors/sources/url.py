"""Database source URLs: parsed, checked, and shown without credentials.

A `source = "postgresql://user@host:port/db"` sits in the shared federation file that every
party and client reads, so it may name a user but never carry a password (issue #14): the
password comes from the owner's private secrets file or environment (connectors/sources/secrets.py).
`display` is the only form of a URL that reaches messages and logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import parse_qsl, unquote, urlsplit

SERVER_KINDS = {"postgresql": ("postgresql", 5432), "postgres": ("postgresql", 5432),
                "mysql": ("mysql", 3306), "mariadb": ("mysql", 3306)}
SPARK_LOCAL = {"spark", "spark+local"}  # a Spark session inside the node: refused, see _spark
SPARK_PARAMS = {"use_ssl", "user_id", "session_id"}  # sc:// ";key=value" options fedsql passes on (the token is a secret)
SPARK_DEFAULT_PORT = 15002
FLIGHT_PARAMS = {"tls_root_certificate", "tls_server_name", "dialect"}
SECRET_PARAMS = {"password", "passfile", "sslpassword"}


class SourceURLError(ValueError):
    """A source URL that cannot be used; the message says why and what to write instead."""


@dataclass(frozen=True)
class SourceURL:
    kind: str  # postgresql, mysql, sqlite, duckdb, flightsql, spark
    display: str  # the URL as configured, never with a password
    user: str | None = None
    host: str | None = None
    port: int | None = None
    database: str | None = None
    path: str | None = None  # sqlite / duckdb: the absolute database file
    params: tuple[tuple[str, str], ...] = ()


def parse_source_url(url: str) -> SourceURL:
    """Parse a database source URL; refuse passwords and kinds not built yet."""
    scheme = url.partition("://")[0].lower()
    if scheme in SERVER_KINDS:
        return _server_database(url, *SERVER_KINDS[scheme])
    if scheme == "sc" or scheme in SPARK_LOCAL:
        return _spark(url)
    if scheme == "grpc":
        raise SourceURLError(f"{_redacted(url)}: Flight SQL sources are read over TLS only; write grpc+tls://")
    if scheme == "grpc+tls":
        return _flight_sql(url)
    if scheme in ("sqlite", "duckdb"):
        return _file_database(scheme, url)
    raise SourceURLError(f"unknown source scheme {scheme + '://'!r}; use postgresql://user@host:port/db, mysql://user@host:port/db, "
                         "sqlite:///abs/path.db, duckdb:///abs/path.duckdb, sc://host:port (Spark Connect) "
                         "or a Parquet/CSV path")


def _server_database(url: str, kind: str, default_port: int) -> SourceURL:
    """`postgresql://user@host:port/db` or `mysql://user@host:port/db` (`mariadb://` too)."""
    parts = urlsplit(url)
    where = _redacted(url)
    if parts.password is not None:
        raise SourceURLError(f"{where} carries a password; credentials never go in the shared federation file: "
                             "put the password in the party's secrets file (<config dir>/.fedsql/<party>/secrets.toml) "
                             "or its environment variable (docs/configuration.md, 'Database sources')")
    params = tuple(parse_qsl(parts.query, keep_blank_values=True))
    if any(k.lower() in SECRET_PARAMS for k, _ in params):
        raise SourceURLError(f"{where} sets a password parameter; put it in the party's secrets file instead")
    try:
        port = parts.port
    except ValueError:
        raise SourceURLError(f"{where}: the port is not a number from 1 to 65535") from None
    database = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not database or "/" in database:
        raise SourceURLError(f"{where}: expected {parts.scheme}://user@host:port/database")
    if kind == "mysql" and params:
        raise SourceURLError(f"{where}: MySQL sources take no URL parameters; write mysql://user@host:port/database")
    user = unquote(parts.username) if parts.username else None
    prefix = "postgresql" if kind == "postgresql" else parts.scheme.lower()
    display = f"{prefix}://{parts.netloc}/{parts.path.lstrip('/')}" + (f"?{parts.query}" if parts.query else "")
    return SourceURL(kind, display, user, parts.hostname, port or default_port, database, None, params)


def _spark(url: str) -> SourceURL:
    """`sc://host[:port][/;use_ssl=true;user_id=NAME]`: a Spark Connect server (Spark >= 3.4)
    in front of the party's cluster. `spark://` and `spark+local://` (a Spark driver inside the
    node) are refused with the way to write it (docs/decisions.md, "Spark sources")."""
    scheme, _, rest = url.partition("://")
    where = _redacted(url.split(";")[0])
    if scheme.lower() in SPARK_LOCAL:
        raise SourceURLError(f"{where}: fedsql reads Spark through Spark Connect only, so no Spark driver runs "
                             "inside the node; start the Connect server next to the cluster "
                             "($SPARK_HOME/sbin/start-connect-server.sh --master spark://...) and write "
                             f"source = \"sc://host:{SPARK_DEFAULT_PORT}\"")
    address, _, options = rest.partition("/")
    params: list[tuple[str, str]] = []
    for item in options.split(";"):
        if not item:
            continue
        key, eq, value = item.partition("=")
        if key.lower() == "token":
            raise SourceURLError(f"{where} carries a token; credentials never go in the shared federation file: "
                                 "put it in the party's secrets file (<config dir>/.fedsql/<party>/secrets.toml) as "
                                 "password = \"...\" or in its environment variable (docs/configuration.md)")
        if not eq or key not in SPARK_PARAMS:
            raise SourceURLError(f"{where}: unknown option {key!r}; write sc://host:port/;key=value with keys "
                                 f"{', '.join(sorted(SPARK_PARAMS))}")
        params.append((key, value))
    parts = urlsplit(f"sc://{address}")
    try:
        port = parts.port
    except ValueError:
        raise SourceURLError(f"{where}: the port is not a number from 1 to 65535") from None
    if not parts.hostname or parts.password is not None or parts.username is not None:
        raise SourceURLError(f"{where}: expected sc://host:port (Spark Connect; no user or password in the URL)")
    display = f"sc://{address}" + (f"/;{';'.join(f'{k}={v}' for k, v in params)}" if params else "")
    return SourceURL("spark", display, dict(params).get("user_id"), parts.hostname, port or SPARK_DEFAULT_PORT,
                     None, None, tuple(params))


def _flight_sql(url: str) -> SourceURL:
    """`grpc+tls://[user@]host:port[?tls_root_certificate=/abs/ca.pem&tls_server_name=NAME&dialect=duckdb]`."""
    parts = urlsplit(url)
    where = _redacted(url)
    if parts.password is not None:
        raise SourceURLError(f"{where} carries a password; put it in the party's secrets file or its environment "
                             "variable (docs/configuration.md, 'Database sources')")
    params = tuple(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted({k for k, _ in params} - FLIGHT_PARAMS)
    if unknown:
        raise SourceURLError(f"{where}: unknown parameter {', '.join(unknown)}; known: {', '.join(sorted(FLIGHT_PARAMS))}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or not port or parts.path not in ("", "/"):
        raise SourceURLError(f"{where}: expected grpc+tls://user@host:port (a port from 1 to 65535)")
    given = dict(params)
    root = given.get("tls_root_certificate")
    if root is not None and not PurePosixPath(root).is_absolute():
        raise SourceURLError(f"{where}: tls_root_certificate must be an absolute path to a PEM file")
    user = unquote(parts.username) if parts.username else None
    display = f"grpc+tls://{parts.netloc}" + (f"?{parts.query}" if parts.query else "")
    return SourceURL("flightsql", display, user, parts.hostname, port, None, root, params)


def _file_database(scheme: str, url: str) -> SourceURL:
    rest = url.partition("://")[2]
    example = f"{scheme}:///abs/path.{'db' if scheme == 'sqlite' else 'duckdb'}"
    if not rest.startswith("/") or "?" in rest or "#" in rest:
        raise SourceURLError(f"{url!r}: expected {example} (three slashes, then an absolute path)")
    path = PurePosixPath(unquote(rest))
    if ".." in path.parts:
        raise SourceURLError(f"{url!r}: the path may not contain '..'; write the absolute path")
    return SourceURL(scheme, f"{scheme}://{path}", path=str(path))


def _redacted(url: str) -> str:
    """`url` with any password replaced by ***, for the error that refuses it."""
    parts = urlsplit(url)
    if parts.password is None:
        return repr(url.split("?")[0])
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return repr(f"{parts.scheme}://{user}:***@{netloc[1]}{parts.path}")
