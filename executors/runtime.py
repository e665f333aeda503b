"""One party's run of a physical plan (every participant runs the same steps).

Each step says where it runs; a party does its part of each step and skips
the rest. Secure steps run at the three compute parties in lockstep; the MPC
context numbers their rounds. Only the issuer ends with a result table.
"""

from __future__ import annotations

import io
import json
import os
import time
from typing import Callable

import numpy as np
import pyarrow as pa

from executors import codec
from executors import mpc as ops
from executors.local_duckdb import LocalExecutor, run_over_tables
from executors.mpc import MPC, AShare
from executors.secure_eval import Evaluator
from executors.secure_table import (
    SecretTable,
    concat_tables,
    extreme_many,
    nonzero_flags,
    segmented_extreme,
    segmented_sum,
    segments,
    slice_rows,
)
from executors.operators import SECURE_OPERATORS, SecureOperator
from executors.operators.joins import (  # noqa: F401 - re-exported: their old home
    SORT_KEY_BITS, match_pairs, match_tags, received_pairs, tag_words,
)
from executors.transport import Transport
from executors.transport_errors import MessageError
from plan.physical import (
    GROUP_RANK,
    AddNoise,
    AgreeTagKey,
    AgreeWidth,
    ComputeTags,
    DistinctMark,
    FinalQuery,
    GroupCombine,
    LocalQuery,
    ObliviousGroup,
    PhysicalPlan,
    RevealResult,
    SecureEval,
    SecureFinish,
    SecureUnion,
    SendPlain,
    ShareTable,
)

from fedsql import errors
from plan.physical import SENTINEL

Progress = Callable[[str], None]

AGREE_TIMEOUT = 30.0
"""Seconds a participant waits for the others' plan hashes: they only compile the query
first, so a party that has not answered by then is not going to (a dead or lying issuer
never asked it); the query fails instead of holding its slot until the deadline."""


def table_to_bytes(table: pa.Table) -> np.ndarray:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return np.frombuffer(sink.getvalue(), dtype=np.uint8)


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
                 progress: Progress | None = None):
        self.me = me
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
        if self.me == step.party:
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
            best = shared[0]
            for other in shared[1:]:
                best = extreme_many(self.mpc, [best], [other], ["max"])[0]
            width = int(ops.reveal(self.mpc, best, None)[0])
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
            for col in step.columns:
                words += codec.encode_column(table[col.name], col.encoding, width, col.name)
        n = self._announce(step.party, f"{step.id}.n", n)
        layout = [(c.name, codec.words_per_value(c.encoding, width)) for c in step.columns]
        total = sum(w for _, w in layout)
        if self.is_compute:
            self._check_memory(n or 0, total, f"sharing {step.party}'s {n} rows")
        # no columns (e.g. only a row count is shared) still deals an empty column
        flat = np.concatenate(words).astype(np.uint64) if words else np.zeros(0, np.uint64)
        shared = self._share_vector(step.party, step.id, flat, (n or 0) * total)
        if shared is None:
            return
        table = SecretTable(n=n)
        offset = 0
        for name, w in layout:
            for k in range(w):
                key = name if w == 1 else f"{name}#{k}"
                table.secret[key] = slice_rows(shared, offset * n, (offset + 1) * n)
                offset += 1
        self.secret[step.id] = table

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

    def _secure_union(self, step: SecureUnion) -> None:
        if self.is_compute:
            self.secret[step.id] = concat_tables([self.secret[i] for i in step.inputs])

    def _group_combine(self, step: GroupCombine) -> None:
        if not self.is_compute:
            return
        table = self.secret[step.input]
        key_cols = [c for c in table.secret if c.split("#")[0] in step.keys]
        value_cols = [c.column for c in step.combine]
        if key_cols:
            opened_cols = key_cols + ([step.flag] if step.flag else [])
            shuffled = ops.shuffle(self.mpc, [table.secret[c] for c in opened_cols + value_cols])
            opened = ops.reveal_many(self.mpc, shuffled[: len(opened_cols)], None)
            values = dict(zip(value_cols, shuffled[len(opened_cols):]))
            if step.flag:  # rows the WHERE clause dropped form no group (sizes mode reveals the count)
                keep = np.flatnonzero(opened.pop() != 0)
                opened = [k[keep] for k in opened]
                values = {c: ops.take(v, keep) for c, v in values.items()}
            order, starts, distinct = segments(opened)
            public = {c: np.ascontiguousarray(distinct[:, i]) for i, c in enumerate(key_cols)}
        elif table.n == 0:  # a global aggregate over no rows is still one row
            self.secret[step.id] = self._empty_global(step)
            return
        else:
            values = {c: table.secret[c] for c in value_cols}
            order = np.arange(table.n)
            starts = np.zeros(1, dtype=np.int64)
            public = {}
        out = SecretTable(n=len(starts), public=public)
        extremes = [c for c in step.combine if c.how in ("min", "max")]
        for c in step.combine:
            if c.how == "sum":
                out.secret[c.column] = segmented_sum(values[c.column], order, starts)
        if extremes:
            reduced = segmented_extreme(
                self.mpc, [values[c.column] for c in extremes], [c.how for c in extremes], order, starts, len(order)
            )
            out.secret.update({c.column: r for c, r in zip(extremes, reduced)})
        self.secret[step.id] = out

    def _empty_global(self, step: GroupCombine) -> SecretTable:
        out = SecretTable(n=1)
        zero = AShare(np.zeros(1, np.uint64), np.zeros(1, np.uint64))
        for c in step.combine:
            fill = {"sum": 0, "min": SENTINEL, "max": -SENTINEL}[c.how]
            out.secret[c.column] = ops.add_public(self.mpc, zero, fill)
        return out

    def _add_noise(self, step) -> None:
        """DP noise inside the MPC (executors/dp/mpc_noise.py): each compute party inputs its part."""
        if self.is_compute:
            from executors.dp.mpc_noise import add_noise

            self.secret[step.id] = add_noise(self.mpc, self.plan.compute, self.secret[step.input], step.noise)

    def _reveal_result(self, step: RevealResult) -> None:
        issuer = step.to
        names: list[str] = []
        opened_here = [c for c in step.columns if c.how not in ("key", "local_key")]
        for col in opened_here:
            names.append(col.source)
            if col.how == "sum_or_null":
                names.append(col.count + "?")
        if step.local_keys:
            names.append(GROUP_RANK)
        to_open: list[AShare] = []
        table = self.secret.get(step.input)
        if self.is_compute:
            counts = [table.secret[c.count] for c in step.columns if c.how == "sum_or_null"]
            flags = iter(nonzero_flags(self.mpc, counts))
            for col in opened_here:
                to_open.append(table.secret[col.source])
                if col.how == "sum_or_null":
                    to_open.append(next(flags))
            if step.local_keys:
                to_open.append(table.secret[GROUP_RANK])
        opened = self._open_to(issuer, to_open, step.id, len(names))
        keys = self._open_secret_keys(issuer, table, step) if step.secret_keys else self._keys_to(issuer, table, step)
        if self.me != issuer:
            return
        values = dict(zip(names, opened))
        rows = self._rows_of_ranks(step.local_keys, values[GROUP_RANK].view(np.int64)) if step.local_keys else None
        arrays, fields = [], []
        for col in step.columns:
            if col.how == "local_key":
                arr = self._local_labels(self.plain[step.local_keys], col, rows)
            elif col.how == "key":
                words = [keys[k] for k in sorted(keys, key=_word_index) if k.split("#")[0] == col.source]
                arr = codec.decode_words(words, col.encoding, keys[col.count] != 0)
            elif col.how == "sum_or_null":
                arr = codec.decode_words([values[col.source]], col.encoding, values[col.count + "?"] != 0)
            elif col.how == "minmax":
                raw = values[col.source].view(np.int64)
                arr = codec.decode_words([values[col.source]], col.encoding, np.abs(raw) < (1 << 62))
            else:
                arr = codec.decode_words([values[col.source]], col.encoding)
            arrays.append(arr)
            fields.append(col.name)
        self.plain[step.id] = pa.table(arrays, names=fields)

    def _rows_of_ranks(self, fragment: str, ranks: np.ndarray) -> np.ndarray:
        """For each opened group rank, a row of the issuer's own fragment carrying it; -1 for
        rank 0 (all keys NULL, also an oblivious LEFT JOIN's unmatched rows), which may have none."""
        own = self.plain[fragment][GROUP_RANK].to_numpy().astype(np.int64)
        values, first = np.unique(own, return_index=True)
        at = np.minimum(np.searchsorted(values, ranks), max(len(values) - 1, 0))
        found = (values[at] == ranks) if len(values) else np.zeros(len(ranks), bool)
        if not (found | (ranks == 0)).all():
            raise MessageError("the opened group numbers do not match this party's own rows")
        return np.where(found & (ranks != 0), first[at] if len(values) else -1, -1)

    @staticmethod
    def _local_labels(own: pa.Table, col, rows: np.ndarray) -> pa.Array:
        """The issuer's own group labels for the result rows (rows = -1: NULL labels)."""
        present = rows >= 0
        take = pa.array(np.where(present, rows, 0)) if own.num_rows else None
        labels = own[col.source].take(take) if take is not None else pa.nulls(len(rows))
        valid = present & (own[col.count].take(take).to_numpy() != 0) if take is not None else present
        if take is None:
            words = [np.zeros(len(rows), np.uint64)]
        else:
            width = codec.string_width(labels) if col.encoding.kind == "string" else 1
            words = codec.encode_column(labels, col.encoding, width, col.name)
        return codec.decode_words(words, col.encoding, valid)

    def _open_to(self, issuer: str, shares: list[AShare], tag: str, count: int) -> list[np.ndarray]:
        """Open `count` equally long shared columns to the issuer only, in one batch."""
        if issuer in self.plan.compute:
            if not self.is_compute:
                return []
            return ops.reveal_many(self.mpc, shares, issuer) or []
        # every opened column of a result has one value per group: equal lengths
        if self.is_compute:
            if shares:
                ops.reveal_to_outsider(self.mpc, ops.concat(shares), issuer, tag)
            return []
        if self.me == issuer and count:
            return np.split(ops.receive_revealed(self.channel, self.plan.compute, tag), count)
        return []

    def _open_secret_keys(self, issuer: str, table: SecretTable | None, step: RevealResult) -> dict[str, np.ndarray]:
        """Keys an oblivious GROUP BY kept secret: opened to the issuer only, with their names."""
        tag = f"{step.id}.keys"
        names: list[str] = []
        if self.is_compute:
            sources = {c.source for c in step.columns if c.how == "key"} | {c.count for c in step.columns if c.how == "key"}
            names = sorted(c for c in table.secret if c.split("#")[0] in sources)
            if issuer not in self.plan.compute and self.me == self.plan.compute[0]:
                self.channel.send(issuer, tag + ".names", [np.frombuffer(json.dumps(names).encode(), dtype=np.uint8)])
        elif self.me == issuer:
            names = json.loads(self.channel.recv(self.plan.compute[0], tag + ".names")[0].tobytes().decode())
        shares = [table.secret[n] for n in names] if self.is_compute else []
        opened = self._open_to(issuer, shares, tag, len(names))
        return dict(zip(names, opened)) if self.me == issuer else {}

    def _oblivious_group(self, step) -> None:
        if not self.is_compute:
            return
        table = self.secret[step.input]
        key_cols = [c for c in table.secret if c.split("#")[0] in step.keys]
        value_cols = [c.column for c in step.combine]
        hows = [c.how for c in step.combine]
        carried = [table.secret[c] for c in value_cols]
        if step.flag:
            carried.append(table.secret[step.flag])
            hows.append("sum")
        if table.n == 0:
            empty = {c: table.secret[c] for c in key_cols + value_cols}
            if step.mark:
                empty[step.mark] = AShare(np.zeros(0, np.uint64), np.zeros(0, np.uint64))
            self.secret[step.id] = SecretTable(n=0, secret=empty)
            return
        if step.rank:  # one narrow sort key (the owner's dense rank); the key columns ride along
            bits = [table.n.bit_length() + 1]  # ranks are in 0..n: the plan's inputs bound them
            (rank,), moved = ops.sort_by(self.mpc, [table.secret[step.rank]], [table.secret[c] for c in key_cols]
                                         + carried, key_bits=bits)
            keys, carried = moved[:len(key_cols)], moved[len(key_cols):]
            starts = ops.segment_starts(self.mpc, [rank])
        else:
            keys, carried = ops.sort_by(self.mpc, [table.secret[c] for c in key_cols], carried)
            starts = ops.segment_starts(self.mpc, keys)
        totals = ops.segmented_scan(self.mpc, starts, carried, hows)  # a group's last row holds its total
        one = ops.add_public(self.mpc, AShare(np.zeros(1, np.uint64), np.zeros(1, np.uint64)), 1)
        last = ops.concat([slice_rows(starts, 1, table.n), one])
        if step.flag:  # keep groups with at least one kept row
            nonempty = nonzero_flags(self.mpc, [totals.pop()])[0]
            last = ops.mul(self.mpc, last, nonempty)
        if step.mark:  # DP partition selection decides later which groups are opened: open nothing here
            out = SecretTable(n=table.n, secret=dict(zip(key_cols + value_cols, keys + totals)))
            out.secret[step.mark] = last
            self.secret[step.id] = out
            return
        shuffled = ops.shuffle(self.mpc, keys + totals + [last])
        keep = np.flatnonzero(ops.reveal(self.mpc, shuffled[-1], None) != 0)
        out = SecretTable(n=len(keep))
        for name, col in zip(key_cols + value_cols, shuffled[:-1]):
            out.secret[name] = ops.take(col, keep)
        self.secret[step.id] = out

    def _keys_to(self, issuer: str, table: SecretTable | None, step: RevealResult) -> dict[str, np.ndarray]:
        """Opened group keys are public among compute parties; the issuer gets them from compute[0]."""
        if self.is_compute:
            keys = dict(table.public)
            if issuer not in self.plan.compute and self.me == self.plan.compute[0]:
                names = sorted(keys)
                header = np.frombuffer(json.dumps(names).encode(), dtype=np.uint8)
                self.channel.send(issuer, f"{step.id}.keys", [header] + [keys[k] for k in names])
            return keys
        if self.me == issuer and any(c.how == "key" for c in step.columns):
            arrays = self.channel.recv(self.plan.compute[0], f"{step.id}.keys")
            return dict(zip(json.loads(arrays[0].tobytes().decode()), arrays[1:]))
        return {}


    # -- joins -------------------------------------------------------------------

    def _agree_tag_key(self, step) -> None:
        first, others = step.parties[0], step.parties[1:]
        if self.me == first:
            key = os.urandom(16)
            for p in others:
                self.channel.send(p, step.id, [np.frombuffer(key, dtype=np.uint8)])
            self.tag_keys[step.id] = key
        elif self.me in others:
            (key,) = self.channel.recv(first, step.id)
            if key.dtype != np.uint8 or key.shape != (16,):
                raise MessageError(f"party '{first}' sent a malformed join tag key")
            self.tag_keys[step.id] = key.tobytes()

    def _compute_tags(self, step) -> None:
        if self.me != step.party:
            return
        table = self.plain[step.source]
        tags = codec.keyed_tags(self.tag_keys[step.key_from], [table[c] for c in step.columns], step.bits)
        self.plain[step.source] = table.append_column(step.out, codec.tag_column(tags))

    def _distinct_mark(self, step) -> None:
        if not self.is_compute:
            return
        table = self.secret[step.input]
        # (keys, x, valid): NULL x (filled 0, valid 0) still forms its own run; the 0/1 last packs with the tie
        sort_cols = [c for c in table.secret if c.split("#")[0] in step.keys] + [step.column] + \
            ([step.valid] if step.valid else [])
        if table.n == 0:
            out = SecretTable(n=0, secret=dict(table.secret))
            out.secret[step.out] = table.secret[step.column]
            self.secret[step.id] = out
            return
        others = [c for c in table.secret if c not in sort_cols]  # other aggregates' partials ride along
        bits = [None] * (len(sort_cols) - 1) + [2 if step.valid else None]
        keys, carried = ops.sort_by(self.mpc, [table.secret[c] for c in sort_cols], [table.secret[c] for c in others],
                                    key_bits=bits)
        out = SecretTable(n=table.n, secret={**dict(zip(sort_cols, keys)), **dict(zip(others, carried))})
        starts = ops.segment_starts(self.mpc, keys)
        out.secret[step.out] = ops.mul(self.mpc, starts, out.secret[step.valid]) if step.valid else starts
        self.secret[step.id] = out

    def _secure_finish(self, step) -> None:
        if not self.is_compute:
            return
        mpc = self.mpc
        table = self.secret[step.input]
        n = table.n
        zero = AShare(np.zeros(n, np.uint64), np.zeros(n, np.uint64))
        cols = dict(table.secret)
        for name, values in table.public.items():  # opened keys become (trivial) shares again
            cols[name] = ops.add_public(mpc, zero, values.astype(np.uint64))
        counts = [p for p in step.preps if p.how == "count"]
        for p, flag in zip(counts, nonzero_flags(mpc, [cols[p.source] for p in counts])):
            cols[p.column + "__v"] = flag
        for p in step.preps:
            if p.how == "copy":
                cols[p.column + "__v"] = cols[p.source]
        sentinels = [p for p in step.preps if p.how == "sentinel"]
        if sentinels and n:
            bits = ops.compare_many(mpc, [(op, cols[p.column], bound) for p in sentinels
                                          for op, bound in (("lt", SENTINEL), ("gt", -SENTINEL))])
            both = ops.b2a_bit(mpc, ops.concat(bits))
            parts = ops.split(both, [n] * (2 * len(sentinels)))
            for i, p in enumerate(sentinels):
                cols[p.column + "__v"] = ops.mul(mpc, parts[2 * i], parts[2 * i + 1])
        names = list(cols)
        if step.having is not None and n:
            keep = Evaluator(mpc, SecretTable(n=n, secret=cols)).truth(step.having).t
            shuffled = ops.shuffle(mpc, [cols[c] for c in names] + [keep])
            kept = np.flatnonzero(ops.reveal(mpc, shuffled[-1], None) != 0)
            cols = {c: ops.take(v, kept) for c, v in zip(names, shuffled[:-1])}
            n = len(kept)
        if step.order and n:
            ev = Evaluator(mpc, SecretTable(n=n, secret=cols))
            keys, desc = [], []
            for node, descending, nulls_first in step.order:
                value = ev.number(node)
                valid = value.valid if value.valid is not None else ops.add_public(
                    mpc, AShare(np.zeros(n, np.uint64), np.zeros(n, np.uint64)), 1)
                keys.append(valid if nulls_first else ops.sub(ops.add_public(mpc, AShare(
                    np.zeros(n, np.uint64), np.zeros(n, np.uint64)), 1), valid))
                keys.append(value.value)
                desc += [False, bool(descending)]
            _, carried = ops.sort_by(mpc, keys, [cols[c] for c in names], desc)
            cols = dict(zip(names, carried))
        if step.limit >= 0:
            rows = np.arange(min(n, step.offset), min(n, step.offset + step.limit))
            cols = {c: ops.take(v, rows) for c, v in cols.items()}
            n = len(rows)
        self.secret[step.id] = SecretTable(n=n, secret=cols)

    def _secure_eval(self, step) -> None:
        if not self.is_compute:
            return
        table = self.secret[step.input]
        out = SecretTable(n=table.n, secret=dict(table.secret), public=dict(table.public))
        evaluator = Evaluator(self.mpc, out)  # later outputs may use earlier ones (the row flag)
        for name, node in step.outputs:
            out.secret[name] = evaluator.number(node).value
        self.secret[step.id] = out


STEPS: dict[type, Callable[[PartyRun, object], None]] = {
    LocalQuery: PartyRun._local_query,
    SendPlain: PartyRun._send_plain,
    FinalQuery: PartyRun._final_query,
    AgreeWidth: PartyRun._agree_width,
    ShareTable: PartyRun._share_table,
    SecureUnion: PartyRun._secure_union,
    GroupCombine: PartyRun._group_combine,
    AddNoise: PartyRun._add_noise,
    RevealResult: PartyRun._reveal_result,
    ObliviousGroup: PartyRun._oblivious_group,
    AgreeTagKey: PartyRun._agree_tag_key,
    ComputeTags: PartyRun._compute_tags,
    DistinctMark: PartyRun._distinct_mark,
    SecureFinish: PartyRun._secure_finish,
    SecureEval: PartyRun._secure_eval,
}
"""Step class → the interpreter's handler, for the steps that are not (yet) operators of
executors/operators/ (SECURE_OPERATORS is looked up first)."""


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


def _word_index(name: str) -> int:
    return int(name.split("#")[1]) if "#" in name else 0
