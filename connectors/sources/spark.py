"""Spark tables, read through Spark Connect (`source = "sc://host:port"`, `table = "db.table"`).

The party's local fragment runs as Spark SQL on its cluster (sqlglot's spark dialect), and only
the fragment's output crosses into the node, as Arrow (`DataFrame.toArrow()`). No JVM runs in the
node: the Connect client is plain gRPC (pyspark's `connect` extra, `pip install 'fedsql[spark]'`).

Each statement gets its own Connect session (released afterwards), as the other sources get their
own connection: no session state outlives a query and a restarted server is picked up at once.
Every session runs with ANSI mode on, so an overflowing SUM or product is an error there (and the
node then computes it itself), never a silent NULL or wrap-around as with ANSI off. The bearer
token, when the server wants one, is the table's password (connectors/sources/secrets.py).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, Iterator

import pyarrow as pa
from sqlglot import exp

from connectors.sources import Source, integer_arithmetic_only

# Spark type name (DataType.simpleString) → DuckDB type. char(n) is left out on purpose: Spark pads
# it and compares it padded, DuckDB would not; binary, intervals and nested types are not shared.
_TYPES = {
    "tinyint": "TINYINT", "smallint": "SMALLINT", "int": "INTEGER", "bigint": "BIGINT", "float": "FLOAT",
    "double": "DOUBLE", "boolean": "BOOLEAN", "string": "VARCHAR", "date": "DATE",
    "timestamp": "TIMESTAMP WITH TIME ZONE",  # Spark's TIMESTAMP is an instant (LTZ)
    "timestamp_ntz": "TIMESTAMP",
}
# pyspark logs a failed query's message (which may quote a value) to stderr, i.e. the node log
_CHATTY_LOGGERS = ("SQLQueryContextLogger", "DataFrameQueryContextLogger", "pyspark.sql.connect.logging",
                   "pyspark.sql.connect.session", "pyspark.sql.connect.client.core")
_SESSION_CONF = {"spark.sql.ansi.enabled": "true"}


def _quiet_pyspark() -> None:
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).disabled = True


class _Session:
    """One Spark Connect session: the `con` the shared `Source._run` opens and closes."""

    def __init__(self, session: Any):
        self.session = session

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.session.stop()


class SparkSource(Source):
    kind = "spark"
    engine_name = "Spark"
    dialect = "spark"

    def _remote(self) -> str:
        """The Connect URL without the token: a token in it would be parsed as URL options (one
        with ';' or '=' splits, and pyspark's error quotes the piece after it: the node log)."""
        options = [f"{k}={v}" for k, v in self.url.params]
        return f"sc://{self.url.host}:{self.url.port}" + (f"/;{';'.join(options)}" if options else "")

    def _connect(self) -> _Session:
        try:
            from pyspark.sql.connect.client import ChannelBuilder, DefaultChannelBuilder
            from pyspark.sql.connect.client.retries import RetryPolicy
            from pyspark.sql.connect.session import SparkSession
        except ImportError:
            raise self.fail("the Spark Connect client is not installed", hint="pip install 'fedsql[spark]'") from None
        _quiet_pyspark()
        try:
            channel = DefaultChannelBuilder(self._remote())
            if self._password is not None:  # handed over as is, never through the URL's parser
                channel.set(ChannelBuilder.PARAM_TOKEN, self._password)
            session = SparkSession.builder.channelBuilder(channel).create()
        except Exception as exc:  # noqa: BLE001 - a malformed option: say so without the token
            raise self.fail("cannot open a Spark Connect session", exc, "check the sc:// URL's options") from None
        # pyspark retries an unreachable server for ten minutes; a query's deadline is far shorter
        session.client.set_retry_policies([RetryPolicy(max_retries=2, initial_backoff=200, max_backoff=1000)])
        try:
            for key, value in _SESSION_CONF.items():
                session.conf.set(key, value)  # the first call: reaches the server, checks the token
        except Exception as exc:  # noqa: BLE001 - any client failure becomes a clear SourceError
            with contextlib.suppress(Exception):
                session.stop()
            code = str(getattr(exc, "getGrpcStatusCode", lambda: "")()) + " " + str(exc)
            if "UNAUTHENTICATED" in code or "PERMISSION_DENIED" in code:
                raise self.fail("the Spark Connect server refused the login", exc,
                                "check the token (password) in the party's secrets file or its environment "
                                "variable") from None
            raise self.fail("cannot connect to the Spark Connect server (is it running and reachable?)", exc,
                            "the node keeps serving its other tables") from None
        return _Session(session)

    @contextlib.contextmanager
    def _stream(self, con: _Session, sql: str, max_rows: int | None = None) -> Iterator[pa.RecordBatchReader]:
        frame = con.session.sql(sql)
        if max_rows is not None:  # Spark stops at one row past the limit: a huge output never crosses
            frame = frame.limit(max_rows + 1)
        timer = None
        if self.statement_timeout:  # cancel it in Spark when it outlives the query's deadline
            timer = threading.Timer(self.statement_timeout, lambda: con.session.interruptAll())
            timer.daemon = True
            timer.start()
        try:
            table = frame.toArrow()
        except Exception as exc:
            if timer is not None and not timer.is_alive() and "OPERATION_CANCELED" in str(exc).upper():
                raise self.fail(f"the statement ran longer than {self.statement_timeout:g} s (the query's deadline) "
                                "and Spark cancelled it", hint="retry later or raise deadline_seconds") from None
            raise
        finally:
            if timer is not None:
                timer.cancel()
        yield pa.Table.from_batches(table.to_batches(), _plain(table.schema)).to_reader()

    def schema(self) -> list[tuple[str, str]]:
        con = self._connect()
        try:
            fields = con.session.table(self.relation).schema.fields
        except Exception as exc:  # noqa: BLE001
            if "TABLE_OR_VIEW_NOT_FOUND" in str(exc) or "SCHEMA_NOT_FOUND" in str(exc):
                raise self.fail("the relation does not exist (or the user may not read it)",
                                hint="create it, or fix table = \"db.table\" in the configuration") from None
            raise self.fail("Spark could not describe the table", exc, "the node log has the error") from None
        finally:
            con.close()
        out = []
        for f in fields:
            t = f.dataType.simpleString()
            if t.startswith("decimal("):
                out.append((f.name, t.replace("decimal", "DECIMAL").replace(" ", "")))
            elif t in _TYPES or t.startswith("varchar("):
                out.append((f.name, _TYPES.get(t, "VARCHAR")))
            else:
                raise self.fail(f"column {f.name!r} has type {t}, which fedsql does not read",
                                hint="expose a view that casts it to a number, string, date or timestamp")
        return out

    def can_run(self, ast: exp.Expression, types: dict[str, str]) -> bool:
        # decimal arithmetic: Spark's result precision rules (and its scale cut past 38 digits)
        # differ from DuckDB's; integer arithmetic overflows with an error in both (ANSI mode)
        return super().can_run(ast, types) and integer_arithmetic_only(
            ast, types, ("TINYINT", "SMALLINT", "INTEGER", "BIGINT"))


def _plain(schema: pa.Schema) -> pa.Schema:
    """`schema` without Spark's per-field metadata (its JSON could name internals)."""
    return pa.schema([pa.field(f.name, f.type, f.nullable) for f in schema])
