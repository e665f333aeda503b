"""The node's one catalog: list, resolve, describe-for-viewer and schema, with one cache.

Planning (`Node.compile`), `SHOW TABLES` / `DESCRIBE` / `information_schema` (fedsql/scratch.py)
and, through the client API, Flight SQL metadata (connectors/flightsql/metadata.py) all read
it, so they agree on what a table looks like. Peers' schemas are fetched with `Describe`
(checked in full: plan/schemas.py, by the fetch function the node passes in) and cached for
`ttl` seconds; `invalidate` forgets them early, which the node does when a participant refuses
a plan because it compiled another one (the usual sign of a schema that changed meanwhile).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping

from google.protobuf.message import DecodeError

from fedsql.config import Federation
from fedsql.permissions import Principal
from fedsql.proto import node_pb2 as pb
from planner.catalog import Schema, TableRef, resolve_table
from plan.schemas import MAX_REPLY_BYTES, checked_describe_reply, describe_refusal


def encode_described(schemas: Mapping[str, Schema]) -> bytes:
    """A Describe reply's tables (DescribeReply.tables): a DescribedTables message."""
    return pb.DescribedTables(tables=[
        pb.TableSchema(name=name, columns=[pb.ColumnSchema(name=c, type=t) for c, t in schema])
        for name, schema in schemas.items()]).SerializeToString()


def decode_described(party: str, table: str, payload: bytes) -> Schema:
    """`party.table`'s schema from its Describe reply, checked in full (plan/schemas.py): the
    size before parsing (no per-column allocation past the limit), then every name and type."""
    if len(payload) > MAX_REPLY_BYTES:
        raise describe_refusal(party, table, f"the reply is larger than {MAX_REPLY_BYTES} bytes")
    described = pb.DescribedTables()
    try:
        described.ParseFromString(payload)
    except (DecodeError, ValueError, RuntimeError):
        raise describe_refusal(party, table, "the reply is not a valid DescribedTables message") from None
    return checked_describe_reply(party, table, [(t.name, [(c.name, c.type) for c in t.columns])
                                                 for t in described.tables])


class NodeCatalog:
    """What party `me` knows of the federation's tables. `local(table)` describes its own
    tables (always fresh); `remote(party, table)` a peer's (a checked Describe reply)."""

    def __init__(self, fed: Federation, me: str, local: Callable[[str], Schema],
                 remote: Callable[[str, str], Schema], ttl: float) -> None:
        self.fed = fed
        self.me = me
        self._local = local
        self._remote = remote
        self.ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, Schema]] = {}  # (party, table) -> (fetched, schema)
        self._lock = threading.Lock()

    def schema(self, party: str, table: str) -> Schema:
        """The public schema of `party.table`; a peer's is cached for `ttl` seconds, and only
        once it passed its checks (a refused reply is asked again next time)."""
        if party == self.me:
            return self._local(table)
        key = (party, table)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and time.monotonic() - hit[0] < self.ttl:
                return hit[1]
        schema = self._remote(party, table)
        with self._lock:
            self._cache[key] = (time.monotonic(), schema)
        return schema

    def invalidate(self, parties: Iterable[str] | None = None) -> None:
        """Forget the cached schemas of `parties` (all when None): the next use describes again."""
        with self._lock:
            if parties is None:
                self._cache.clear()
                return
            drop = set(parties)
            for key in [k for k in self._cache if k[0] in drop]:
                del self._cache[key]

    def tables(self) -> list[tuple[str, str, str]]:
        """(schema, name, kind) of every federation table: each party's, then the unions."""
        rows = [(pname, tname, "table") for pname, party in sorted(self.fed.parties.items())
                for tname in sorted(party.tables)]
        return rows + [(self.fed.federated_schema, name, "federated") for name in sorted(self.fed.federated)]

    def resolve(self, db: str | None, name: str) -> TableRef:
        """`db.name` (a party's table) or `name` (a union) with its schema, as the planner resolves it."""
        return resolve_table(self.fed, db or None, name, self.schema)

    def describe(self, ref: TableRef, viewer: "Principal | str | None" = None) -> list[tuple[str, str, str]]:
        """(column, type, level) of a resolved table for `viewer` (default: this party alone; a
        user's roles add their grants): what binds it is the other owners' levels (its own columns
        are public to it); 'mixed' when they differ."""
        others = [m for m in ref.members if m.party != self.me] or list(ref.members)
        out = []
        for column, typ in ref.schema:
            found = {m.level(column, viewer or self.me) for m in others}
            out.append((column, typ, found.pop() if len(found) == 1 else "mixed"))
        return out
