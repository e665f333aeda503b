"""The typed column header (executors/wire_header.py): what an honest party sends round-trips,
and every malformed field a modified peer could send is a MessageError naming it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from executors.transport_errors import MessageError
from executors.wire_header import MAX_BYTES, MAX_WORDS, ColumnsHeader

COLUMNS = {"k", "k__v", "Mixed Case"}


def raw(fields: object) -> np.ndarray:
    return np.frombuffer(json.dumps(fields).encode(), np.uint8).copy()


def decode(data: object) -> ColumnsHeader:
    return ColumnsHeader.decode(data, "c0", step="r.keys", columns=COLUMNS)


@pytest.mark.parametrize("names", [("k", "k__v", "Mixed Case"), ("k#0", "k#1", "k#2", "k__v", "Mixed Case#0")])
def test_an_honest_header_round_trips(names: tuple[str, ...]) -> None:
    header = ColumnsHeader("r.keys", names)
    assert decode(header.encode()) == header
    assert ColumnsHeader.decode(ColumnsHeader("r.keys", ()).encode(), "c0", step="r.keys", columns=()).names == ()


def good(**change: object) -> dict:
    return {"v": 1, "step": "r.keys", "names": ["k#0", "k#1", "k__v", "Mixed Case"], **change}


MALFORMED = {
    "not an array": b"{}",
    "int64 array": np.zeros(4, np.int64),
    "2-D": np.zeros((2, 2), np.uint8),
    "too long": np.full(MAX_BYTES + 1, 32, np.uint8),
    "not UTF-8": np.frombuffer(b'{"v": 1, \xff}', np.uint8).copy(),
    "not JSON": np.frombuffer(b'{"v": 1,', np.uint8).copy(),
    "NaN": np.frombuffer(b'{"v": NaN, "step": "r.keys", "names": []}', np.uint8).copy(),
    "a list": raw(["k", "k__v", "Mixed Case"]),
    "missing field": raw({"v": 1, "names": ["k", "k__v", "Mixed Case"]}),
    "extra field": raw(good(rows=3)),
    "version 2": raw(good(v=2)),
    "version true": raw(good(v=True)),
    "version string": raw(good(v="1")),
    "other step": raw(good(step="r2.keys")),
    "names a string": raw(good(names="k,k__v")),
    "a name not a string": raw(good(names=["k", "k__v", 7])),
    "named twice": raw(good(names=["k", "k", "k__v", "Mixed Case"])),
    "unknown column": raw(good(names=["k", "k__v", "Mixed Case", "salary"])),
    "a column missing": raw(good(names=["k", "k__v"])),
    "whole and words": raw(good(names=["k", "k#0", "k__v", "Mixed Case"])),
    "word gap": raw(good(names=["k#0", "k#2", "k__v", "Mixed Case"])),
    "word not from 0": raw(good(names=["k#1", "k__v", "Mixed Case"])),
    "negative word": raw(good(names=["k#-1", "k__v", "Mixed Case"])),
    "leading zero": raw(good(names=["k#00", "k__v", "Mixed Case"])),
    "word not decimal": raw(good(names=["k#x", "k__v", "Mixed Case"])),
    "too many words": raw(good(names=[f"k#{i}" for i in range(MAX_WORDS + 1)] + ["k__v", "Mixed Case"])),
}


@pytest.mark.parametrize("data", list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_malformed_header_is_a_protocol_error_naming_the_sender(data: object) -> None:
    with pytest.raises(MessageError, match=r"party 'c0' sent a malformed column header for step 'r.keys': "):
        decode(data)
