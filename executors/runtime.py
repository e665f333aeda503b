"""One party's run of a physical plan (every participant runs the same steps).

Each step says where it runs; a party does its part of each step and skips
the rest. Secure steps run at the three compute parties in lockstep; the MPC
context numbers their rounds. Only the issuer ends with a result table.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Mapping

import numpy as np
import pyarrow as pa

from executors import codec
from executors import mpc as ops
from executors.local_duckdb import LocalExecutor, run_over_tables
from executors.mpc import MPC, AShare
from executors.operators import SECURE_OPERATORS, SecureOperator
from executors.reveal import Seat, reveal_result
from executors.secure_table import SecretTable, max_of
from executors.transport import Transport
from executors.transport_errors import MessageError
from plan.physical import (
    AgreeTagKey,
    AgreeWidth,
    ComputeTags,
    FinalQuery,
    LocalQuery,
    PhysicalPlan,
    RevealResult,
    SendPlain,
    ShareTable,
)

from fedsql import errors

Progress = Callable[[str], None]

AGREE_TIMEOUT = 30.0
"""Seconds a participant waits for the others' plan hashes: they only compile the query
first, so a party that has not answered by then is not going to (a dead or lying issuer
never asked it); the query fails instead of holding its slot until the deadline."""


def table_to_ipc(table: pa.Table) -> bytes:
    """A table as one Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def table_to_bytes(table: pa.Table) -> np.ndarray:
    """A table as Arrow IPC in a uint8 array: how plaintext tables travel between parties."""
    return np.frombuffer(table_to_ipc(table), dtype=np.uint8)


def table_from_bytes(data: np.ndarray) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data.tobytes())).read_all()



def secret_last_use(steps) -> dict[str, list[str]]:
    """step id → the secret tables whose last reader it is. A step names the tables it reads in
    its `input` / `left` / `right` / `outer` / `inner` / `inputs` fields."""
    last: dict[str, str] = {}
    for step in steps:
        for field_name in ("input", "left", "right", "outer", "inner", "inputs"):
            value = getattr(step, field_name, None)
            for name in (value if isinstance(value, tuple) else (value,)):
                if isinstance(name, str) and name:
                    last[name] = step.id
    out: dict[str, list[str]] = {}
    for name, step_id in last.items():
        if name != step_id:
            out.setdefault(step_id, []).append(name)
    return out


class PartyRun:
    """State of this party during one query."""

    def __init__(self, me: str, plan: PhysicalPlan, executor: LocalExecutor | None, channel: Transport,
                 progress: Progress | None = None, hidden: Mapping[str, pa.Table] | None = None):
        """`hidden`: at the issuer, the values of the statement's hidden parameters by table
        (LocalQuery.params); they never enter the plan."""
        self.me = me
        self.hidden = dict(hidden or {})
        self.plan = plan
        self.executor = executor
        self.channel = channel
        self.progress = progress or (lambda _step: None)
        self.plain: dict[str, pa.Table] = {}
        self.secret: dict[str, SecretTable] = {}
        self.widths: dict[str, int] = {}
        self.tag_keys: dict[str, bytes] = {}
        self.mpc: MPC | None = None
        self.is_compute = me in plan.compute
        self.step_times: list[tuple[str, str, float, float]] = []

    # -- driver ------------------------------------------------------------------

    def run(self) -> pa.Table | None:
        self._agree_plan()
        if self.plan.secure and self.is_compute:
            self.mpc = MPC(self.channel, self.plan.compute)
            self.mpc.setup()
        timed = os.environ.get("FEDSQL_STEP_TIMES") == "1"  # benchmarks: per-step seconds in stats()
        last_use = secret_last_use(self.plan.steps)
        for i, step in enumerate(self.plan.steps, 1):
            self.progress(f"step {i}/{len(self.plan.steps)}: {step.op}")
            started, cpu = time.perf_counter(), time.process_time()
            self._dispatch(step)
            for dead in last_use.get(step.id, ()):  # secret tables no later step reads: free them now
                self.secret.pop(dead, None)
            if timed:  # (step, op, wall s, CPU s of this whole process, gRPC threads included)
                self.step_times.append((step.id, step.op, round(time.perf_counter() - started, 4),
                                        round(time.process_time() - cpu, 4)))
        return self.plain.get(self.plan.result) if self.me == self.plan.issuer else None

    def _dispatch(self, step) -> None:
        """Run this party's part of `step`: a secure operator (executors/operators/) at the compute
        parties, or one of the interpreter's own steps (STEPS)."""
        operator: SecureOperator | None = SECURE_OPERATORS.get(type(step))
        if operator is not None:
            if self.is_compute:
                self.secret[step.id] = operator(self.mpc, self.secret, step, check_memory=self._check_memory)
            return
        handler = STEPS.get(type(step))
        if handler is None:
            raise errors.InternalError(f"this node cannot run plan steps of type {type(step).__name__}; "
                                       "are all parties running the same fedsql version?")
        handler(self, step)

    def _agree_plan(self) -> None:
        """Before any value moves: every participant shows every other its plan hash over the
        authenticated peer channel. Each checked its own compile against what the issuer sent
        it, so one hash everywhere means one plan everywhere; an issuer that sent different
        plans to different parties is refused here by every party it lied to."""
        if not self.plan.hash:
            raise errors.InternalError("a plan without a hash cannot run")
        differ = self.channel.agree(self.plan.participants, self.plan.hash, AGREE_TIMEOUT)
        if differ:
            raise errors.PlanMismatch(
                f"party '{self.me}' and {', '.join(repr(p) for p in differ)} were given different plans for this "
                f"query by the issuer '{self.plan.issuer}' (plan hash {self.plan.hash[:16]}… here); refused before "
                "any share was dealt or opened"
            )

    def stats(self) -> dict[str, int]:
        out = {
            "rounds": self.mpc.rounds if self.mpc else 0,
            "bytes_sent": int(getattr(self.channel, "bytes_sent", 0)),
        }
        if self.step_times:
            out["steps"] = self.step_times
        return out

    # -- plaintext steps -------------------------------------------------------

    def _local_query(self, step: LocalQuery) -> None:
        if self.me != step.party:
            return
        if step.params:  # the issuer's hidden parameter values, in a DuckDB of their own
            missing = [n for n in step.params if n not in self.hidden]
            if missing:
                raise errors.InternalError("the values of this query's hidden parameters are not at this node")
            self.plain[step.id] = run_over_tables(step.sql, {n: self.hidden[n] for n in step.params})
            return
        self.plain[step.id] = self.executor.query(step.sql)

    def _send_plain(self, step: SendPlain) -> None:
        if self.me == step.party:
            self.channel.send(step.to, step.id, [table_to_bytes(self.plain[step.source])])
        elif self.me == step.to:
            self.plain[step.id] = received_table(self.channel.recv(step.party, step.id), step.party)

    def _final_query(self, step: FinalQuery) -> None:
        if self.me != step.party:
            return
        tables = {}
        for name, ref in step.inputs:
            if ref.startswith("*"):
                parts = [self.plain[r] for r in ref[1:].split(",") if r]
                tables[name] = pa.concat_tables(parts, promote_options="default")
            else:
                tables[name] = self.plain[ref]
        self.plain[step.id] = run_over_tables(step.sql, tables)

    # -- secure steps ----------------------------------------------------------

    def _share_vector(self, owner: str, tag: str, values: np.ndarray | None, n: int) -> AShare | None:
        """Owner's uint64 vector → shares at the compute parties (owner may be outside them)."""
        if owner in self.plan.compute:
            if self.is_compute:
                return ops.share_input(self.mpc, owner, values if self.me == owner else None, n)
            return None
        if self.me == owner:
            ops.deal_to_compute(self.channel, self.plan.compute, tag, values)
            return None
        if self.is_compute:
            return ops.receive_dealt(self.mpc, owner, tag, n)
        return None

    def _announce(self, owner: str, tag: str, value: int | None) -> int | None:
        """Owner tells the compute parties a public number (a row count)."""
        if self.me == owner:
            for p in self.plan.compute:
                if p != owner:
                    self.channel.send(p, tag, [np.array([value], dtype=np.int64)])
            return value
        if self.is_compute:
            return received_count(self.channel.recv(owner, tag), owner)
        return None

    def _agree_width(self, step: AgreeWidth) -> None:
        members = [p for p, _ in step.sources]
        mine = {p: s for p, s in step.sources}
        shared = []
        for owner in members:
            local = None
            if self.me == owner:
                table = self.plain[mine[owner]]
                cols = [c for c in table.column_names if table.schema.field(c).type in (pa.string(), pa.large_string())]
                local = np.array([max([codec.string_width(table[c]) for c in cols] or [1])], dtype=np.uint64)
            share = self._share_vector(owner, f"{step.id}.{owner}", local, 1)
            if share is not None:
                shared.append(share)
        width = None
        if self.is_compute:
            width = int(ops.reveal(self.mpc, max_of(self.mpc, shared), None)[0])
            if self.me == self.plan.compute[0]:
                for owner in members:
                    if owner not in self.plan.compute:
                        self.channel.send(owner, f"{step.id}.w", [np.array([width], dtype=np.int64)])
        elif self.me in members:
            width = received_count(self.channel.recv(self.plan.compute[0], f"{step.id}.w"), self.plan.compute[0])
        if width is not None:
            self.widths[step.id] = width

    def _share_table(self, step: ShareTable) -> None:
        width = step.width or self.widths.get(step.width_from, 1)
        words: list[np.ndarray] = []
        n = None
        if self.me == step.party:
            table = self.plain[step.source]
            n = table.num_rows
            if step.permute and n:  # a uniformly random order from OS randomness, known to this party only
                table = table.take(pa.array(np.argsort(np.frombuffer(os.urandom(8 * n), dtype=np.uint64))))
            for col in step.columns:
                words += codec.encode_column(table[col.name], col.encoding, width, col.name)
        n = self._announce(step.party, f"{step.id}.n", n)
        layout = [(c.name, codec.words_per_value(c.encoding, width)) for c in step.columns]
        total = sum(w for _, w in layout)
        if self.is_compute:
            self._check_memory(n or 0, total, f"sharing {step.party}'s {n} rows")
        # no columns (e.g. only a row count is shared) still deals an empty column
        flat = np.concatenate(words).astype(np.uint64, copy=False) if words else np.zeros(0, np.uint64)
        shared = self._share_vector(step.party, step.id, flat, (n or 0) * total)
        if shared is None:
            return
        words_of = iter(ops.split(shared, [n] * total))  # the flat share, one column after another
        self.secret[step.id] = SecretTable(n=n, secret={
            name if w == 1 else f"{name}#{k}": next(words_of) for name, w in layout for k in range(w)},
            order_of=step.party if step.permute else "")

    def _check_memory(self, rows: int, columns: int, what: str) -> None:
        """A secret table of rows × columns costs 16 bytes per cell (two uint64 shares), and the
        protocols keep a few working copies: refuse before allocating past max_memory_mb."""
        limit = getattr(self.executor, "max_memory_mb", None)
        held = sum(t.n * len(t.secret) * 16 for t in self.secret.values())  # the query's live secret tables
        need = rows * columns * 16 * 4
        if limit and held + need > limit * (1 << 20):
            raise errors.ResourceLimitExceeded(
                f"at party '{self.me}': {what} needs about {need >> 20} MB of secret shares next to the "
                f"{held >> 20} MB this query already holds, over max_memory_mb = {limit}; filter or aggregate "
                "more before the secure step, or raise the limit"
            )

    def _reveal_result(self, step: RevealResult) -> None:
        """Open the result to the issuer (executors/reveal.py); only it keeps a table."""
        own = self.plain[step.local_keys] if step.local_keys and self.me == step.to else None
        table = reveal_result(Seat(self.me, self.plan.compute, self.channel, self.mpc), step,
                              self.secret.get(step.input), own)
        if table is not None:
            self.plain[step.id] = table

    # -- join tags -----------------------------------------------------------------

    def _agree_tag_key(self, step: AgreeTagKey) -> None:
        """The first owner draws a fresh join tag key and sends it to the other owners only."""
        first, others = step.parties[0], step.parties[1:]
        if self.me == first:
            key = os.urandom(16)
            for p in others:
                self.channel.send(p, step.id, [np.frombuffer(key, dtype=np.uint8)])
            self.tag_keys[step.id] = key
        elif self.me in others:
            arrays = self.channel.recv(first, step.id)
            if len(arrays) != 1 or arrays[0].dtype != np.uint8 or arrays[0].shape != (16,):
                raise MessageError(f"party '{first}' sent a malformed join tag key")
            self.tag_keys[step.id] = arrays[0].tobytes()

    def _compute_tags(self, step: ComputeTags) -> None:
        """The owner appends keyed tags of its join key columns to its fragment (plaintext)."""
        if self.me != step.party:
            return
        table = self.plain[step.source]
        tags = codec.keyed_tags(self.tag_keys[step.key_from], [table[c] for c in step.columns], step.bits)
        self.plain[step.source] = table.append_column(step.out, codec.tag_column(tags))


STEPS: dict[type, Callable[[PartyRun, object], None]] = {
    LocalQuery: PartyRun._local_query,
    SendPlain: PartyRun._send_plain,
    FinalQuery: PartyRun._final_query,
    AgreeWidth: PartyRun._agree_width,
    ShareTable: PartyRun._share_table,
    RevealResult: PartyRun._reveal_result,
    AgreeTagKey: PartyRun._agree_tag_key,
    ComputeTags: PartyRun._compute_tags,
}
"""Step class → the interpreter's own handler: the steps that move data between parties or
talk to the local executor. Every secure computation is an operator (SECURE_OPERATORS, looked
up first)."""


def received_count(arrays: list[np.ndarray], sender: str) -> int:
    """A public count (rows, width) from a peer: one non-negative int64, within the row limit."""
    if len(arrays) != 1 or arrays[0].shape != (1,) or arrays[0].dtype != np.int64 or not 0 <= arrays[0][0] < 1 << 40:
        raise MessageError(f"party '{sender}' sent a malformed count for this step")
    return int(arrays[0][0])


def received_table(arrays: list[np.ndarray], sender: str) -> pa.Table:
    if len(arrays) != 1 or arrays[0].dtype != np.uint8 or arrays[0].ndim != 1:
        raise MessageError(f"party '{sender}' sent a malformed table")
    try:
        return table_from_bytes(arrays[0])
    except (pa.ArrowInvalid, pa.ArrowException, OSError):
        raise MessageError(f"party '{sender}' sent a table that is not Arrow IPC") from None
