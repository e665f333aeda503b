"""The issuer's side of a reveal: opened words → the result table (plaintext, no peers).

Opened value columns, opened or public group keys, and the issuer's own group labels (when the
GROUP BY keys are its own, only their rank `__grank` was shared) become Arrow columns by each
RevealColumn's encoding (executors/codec.py).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from executors import codec
from executors.transport_errors import MessageError
from plan.physical import GROUP_RANK, RevealColumn, RevealResult


def decode_result(step: RevealResult, values: dict[str, np.ndarray], keys: dict[str, np.ndarray],
                  own: pa.Table | None) -> pa.Table:
    """The result table of `step`: `values` are the opened value columns (and `count?` NULL
    flags, and GROUP_RANK with local keys), `keys` the key columns by word name, `own` the
    issuer's fragment holding the local keys."""
    rows = rows_of_ranks(own, values[GROUP_RANK].view(np.int64)) if step.local_keys else None
    arrays = []
    for col in step.columns:
        if col.how == "local_key":
            arr = local_labels(own, col, rows)
        elif col.how == "local_row":  # the issuer's own value, as its fragment holds it
            arr = own[col.source].take(pa.array(np.where(rows >= 0, rows, 0), mask=rows < 0)) if own.num_rows \
                else pa.nulls(len(rows), own.schema.field(col.source).type)
        elif col.how == "key":
            words = [keys[k] for k in sorted(keys, key=word_index) if k.split("#")[0] == col.source]
            arr = codec.decode_words(words, col.encoding, keys[col.count] != 0)
        elif col.how == "sum_or_null":
            arr = codec.decode_words([values[col.source]], col.encoding, values[col.count + "?"] != 0)
        elif col.how == "minmax":
            raw = values[col.source].view(np.int64)
            arr = codec.decode_words([values[col.source]], col.encoding, np.abs(raw) < (1 << 62))
        else:
            arr = codec.decode_words([values[col.source]], col.encoding)
        arrays.append(arr)
    table = pa.table(arrays, names=[col.name for col in step.columns])
    return table.filter(pa.array(values[step.rows] != 0)) if step.rows else table


def rows_of_ranks(own: pa.Table, ranks: np.ndarray) -> np.ndarray:
    """For each opened group rank, a row of the issuer's own fragment carrying it; -1 for
    rank 0 (all keys NULL, also an oblivious LEFT JOIN's unmatched rows), which may have none."""
    mine = own[GROUP_RANK].to_numpy().astype(np.int64)
    values, first = np.unique(mine, return_index=True)
    at = np.minimum(np.searchsorted(values, ranks), max(len(values) - 1, 0))
    found = (values[at] == ranks) if len(values) else np.zeros(len(ranks), bool)
    if not (found | (ranks == 0)).all():
        raise MessageError("the opened group numbers do not match this party's own rows")
    return np.where(found & (ranks != 0), first[at] if len(values) else -1, -1)


def local_labels(own: pa.Table, col: RevealColumn, rows: np.ndarray) -> pa.Array:
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


def word_index(name: str) -> int:
    """k of a key word column `name#k` (0 for a one-word column)."""
    return int(name.split("#")[1]) if "#" in name else 0
