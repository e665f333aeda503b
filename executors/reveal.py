"""Opening a secret result to the issuer, and only to it (the RevealResult step).

The compute parties open the value columns (and NULL flags, and the issuer's group ranks) to
the issuer; group keys are either already public among them (sizes mode: compute[0] forwards
them) or secret (oblivious GROUP BY: opened to the issuer only). An issuer outside the compute
parties learns the key columns' names from a ColumnsHeader (executors/wire_header.py), checked
against the plan. The issuer then decodes the table (executors/result_decode.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from executors import mpc as ops
from executors.mpc import MPC, AShare
from executors.result_decode import decode_result
from executors.secure_table import SecretTable, nonzero_flags
from executors.transport import Transport
from executors.transport_errors import MessageError
from executors.wire_header import ColumnsHeader
from plan.physical import GROUP_RANK, RevealResult


@dataclass(frozen=True)
class Seat:
    """Who this party is in the run: what opening needs (mpc is None outside the compute parties)."""

    me: str
    compute: tuple[str, str, str]
    channel: Transport
    mpc: MPC | None

    @property
    def is_compute(self) -> bool:
        return self.me in self.compute


def reveal_result(seat: Seat, step: RevealResult, table: SecretTable | None, own: pa.Table | None) -> pa.Table | None:
    """Open `table` (held by the compute parties) to `step.to`; the issuer returns the decoded
    result (`own`: its fragment holding local group labels), every other party None."""
    issuer = step.to
    if step.rows and seat.is_compute:
        table = conceal_rows(seat.mpc, table, step)
    opened_here = [c for c in step.columns if c.how not in ("key", "local_key", "local_row")]
    names: list[str] = []
    for col in opened_here:
        names.append(col.source)
        if col.how == "sum_or_null":
            names.append(col.count + "?")
    if step.local_keys:
        names.append(GROUP_RANK)
    if step.rows:
        names.append(step.rows)
    to_open: list[AShare] = []
    if seat.is_compute:
        counts = [table.secret[c.count] for c in step.columns if c.how == "sum_or_null"]
        flags = iter(nonzero_flags(seat.mpc, counts))
        for col in opened_here:
            to_open.append(table.secret[col.source])
            if col.how == "sum_or_null":
                to_open.append(next(flags))
        if step.local_keys:
            to_open.append(table.secret[GROUP_RANK])
        if step.rows:
            to_open.append(table.secret[step.rows])
    opened = open_to(seat, issuer, to_open, step.id, len(names), step.count_to)
    keys = open_secret_keys(seat, table, step) if step.secret_keys else keys_to(seat, table, step)
    if seat.me != issuer:
        return None
    return decode_result(step, dict(zip(names, opened)), keys, own)


def conceal_rows(mpc: MPC, table: SecretTable, step: RevealResult) -> SecretTable:
    """A row-level result before it is opened: shuffled (the rows' order came from the joins —
    keyed-tag order in oblivious mode), then either every column multiplied by the 0/1
    `step.rows`, so the issuer learns the real rows and, of the others, only that they exist; or
    (`count_to`) only the real rows kept (`compact_rows`). Rows still in the random order their
    owner shared them in need no shuffle, unless that owner is one of those who see positions."""
    keep = table.secret[step.rows]
    wanted = {c.source for c in step.columns} | key_sources(step) | ({GROUP_RANK} if step.local_keys else set())
    names = [c for c in table.secret if c.split("#")[0] in wanted and c != step.rows]
    if not table.n:
        return table
    rows = [table.secret[c] for c in names] + [keep]
    if not (table.order_of and table.order_of not in step.count_to + (step.to,)):
        rows = ops.shuffle(mpc, rows)  # else already in an order none of those who see positions knows
    if step.count_to:
        return compact_rows(mpc, dict(zip(names + [step.rows], rows)), step.rows, step.count_to)
    keep = rows[-1]
    zeroed = ops.mul_many(mpc, rows[:-1], [keep] * len(names)) if names else []
    return SecretTable(n=table.n, secret={**dict(zip(names, zeroed)), step.rows: keep})


def compact_rows(mpc: MPC, columns: dict[str, AShare], flag: str, seeing: tuple[str, ...]) -> SecretTable:
    """The rows whose 0/1 `flag` is 1, in their (random) order: `flag` is opened to the parties
    `seeing` alone, which keep those rows; the remaining party holds none (n = 0) and takes no part
    in opening them (reveal_many's `senders`). Instead of zeroing and opening every row: one opened
    column, and only the real rows travel."""
    opened = ops.reveal_many(mpc, [columns[flag]], seeing, seeing)
    if opened is None:
        return SecretTable(n=0, secret={c: ops.zeros(0) for c in columns})
    real = opened[0]
    if not np.all(real <= 1):
        raise MessageError("the result's row flags opened to values other than 0 and 1: a compute party "
                           "sent a wrong share; are all compute parties running the same plan?")
    rows = np.flatnonzero(real)
    return SecretTable(n=len(rows), secret={c: ops.take(x, rows) for c, x in columns.items()})


def open_to(seat: Seat, issuer: str, shares: list[AShare], tag: str, count: int,
            senders: tuple[str, ...] = ()) -> list[np.ndarray]:
    """Open `count` equally long shared columns to the issuer only, in one batch (`senders`:
    the compute parties that hold the rows, when a compact row-level result left one without)."""
    if issuer in seat.compute:
        if not seat.is_compute:
            return []
        return ops.reveal_many(seat.mpc, shares, issuer, senders or None) or []
    # every opened column of a result has one value per group: equal lengths
    if seat.is_compute:
        if shares:
            ops.reveal_to_outsider(seat.mpc, ops.concat(shares), issuer, tag, senders or None)
        return []
    if seat.me == issuer and count:
        flat = ops.receive_revealed(seat.channel, senders or seat.compute, tag)
        if len(flat) % count:
            raise MessageError(f"the compute parties opened {len(flat)} values for {count} equally long "
                               f"columns of step {tag!r}")
        return np.split(flat, count)
    return []


def key_sources(step: RevealResult) -> set[str]:
    """The columns a reveal's key columns read: each key's words and its validity column."""
    return {c.source for c in step.columns if c.how == "key"} | {c.count for c in step.columns if c.how == "key"}


def open_secret_keys(seat: Seat, table: SecretTable | None, step: RevealResult) -> dict[str, np.ndarray]:
    """Keys an oblivious GROUP BY kept secret: opened to the issuer only, with their names."""
    issuer, tag = step.to, f"{step.id}.keys"
    sources = key_sources(step)
    names: list[str] = []
    if seat.is_compute:
        names = sorted(c for c in table.secret if c.split("#")[0] in sources)
        if issuer not in seat.compute and seat.me == seat.compute[0]:
            seat.channel.send(issuer, tag + ".names", [ColumnsHeader(tag, tuple(names)).encode()])
    elif seat.me == issuer:
        arrays = seat.channel.recv(seat.compute[0], tag + ".names")
        names = list(_header(arrays[0] if len(arrays) == 1 else None, seat.compute[0], tag, sources).names)
    shares = [table.secret[n] for n in names] if seat.is_compute else []
    opened = open_to(seat, issuer, shares, tag, len(names), step.count_to)
    return dict(zip(names, opened)) if seat.me == issuer else {}


def keys_to(seat: Seat, table: SecretTable | None, step: RevealResult) -> dict[str, np.ndarray]:
    """Opened group keys are public among compute parties; an outside issuer gets the ones its
    result shows from compute[0]."""
    issuer, tag = step.to, f"{step.id}.keys"
    sources = key_sources(step)
    if seat.is_compute:
        keys = dict(table.public)
        if sources and issuer not in seat.compute and seat.me == seat.compute[0]:
            names = sorted(k for k in keys if k.split("#")[0] in sources)
            seat.channel.send(issuer, tag, [ColumnsHeader(tag, tuple(names)).encode()] + [keys[k] for k in names])
        return keys
    if seat.me == issuer and sources:
        sender = seat.compute[0]
        arrays = seat.channel.recv(sender, tag)
        names = _header(arrays[0] if arrays else None, sender, tag, sources).names
        columns = arrays[1:]
        if len(columns) != len(names) or any(a.dtype != np.uint64 or a.ndim != 1 for a in columns) or \
                len({len(a) for a in columns}) > 1:
            raise MessageError(f"party '{sender}' sent group keys for step {tag!r} that do not match their "
                               "header (one uint64 column per name, all equally long)")
        return dict(zip(names, columns))
    return {}


def _header(data: object, sender: str, tag: str, sources: set[str]) -> ColumnsHeader:
    return ColumnsHeader.decode(data, sender, step=tag, columns=sources)
