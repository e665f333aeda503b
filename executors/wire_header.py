"""The one header that travels between parties ahead of arrays: which columns follow.

A compute party tells an issuer outside the compute parties the names of the key columns it
opens to it, because their number depends on the data (a string key is as many words
`name#0 … name#k-1` as the agreed width, executors/codec.py). The header arrives from a peer, so
every field is checked as untrusted input before anything reads it: a malformed header from a
modified peer is a MessageError naming the sender, never a KeyError or a JSON traceback later.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from executors.transport_errors import MessageError

VERSION = 1
MAX_BYTES = 1 << 16
"""A header names at most a few hundred columns; anything longer is refused unparsed."""
MAX_WORDS = 1 << 12
"""Words of one column (7 bytes each): a 28 KB string key, far over any a fragment holds."""
_WORD = re.compile(r"(0|[1-9][0-9]{0,3})")


@dataclass(frozen=True)
class ColumnsHeader:
    """`names` of the columns that follow, in order, for plan step `step`."""

    step: str
    names: tuple[str, ...]

    def encode(self) -> np.ndarray:
        """The header as a uint8 array (one array of a message; JSON text inside)."""
        text = json.dumps({"v": VERSION, "step": self.step, "names": list(self.names)}, separators=(",", ":"))
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()

    @classmethod
    def decode(cls, data: object, sender: str, *, step: str, columns: Iterable[str]) -> ColumnsHeader:
        """Parse and check a header from `sender`: the version, that it is for `step`, and that
        `names` are exactly the plan's `columns` (each once, whole or as its words #0..#k-1)."""

        def bad(what: str) -> MessageError:
            return MessageError(f"party '{sender}' sent a malformed column header for step {step!r}: {what}; "
                                "it does not run this fedsql version's protocol (or was modified)")

        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 1:
            raise bad("not a byte array")
        if data.size > MAX_BYTES:
            raise bad(f"{data.size} bytes, over {MAX_BYTES}")
        try:
            fields = json.loads(data.tobytes().decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError):
            raise bad("not UTF-8 JSON") from None
        if not isinstance(fields, dict) or set(fields) != {"v", "step", "names"}:
            raise bad("not an object with exactly the fields v, step, names")
        if type(fields["v"]) is not int or fields["v"] != VERSION:
            raise bad(f"version {fields['v']!r}, expected {VERSION}")
        if fields["step"] != step:
            raise bad("it names another step")
        names = fields["names"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise bad("names is not a list of strings")
        if len(set(names)) != len(names):
            raise bad("a column is named twice")
        _check_columns(names, set(columns), bad)
        return cls(step=step, names=tuple(names))


def _no_constant(name: str) -> None:
    raise ValueError(f"JSON constant {name}")


def _check_columns(names: list[str], columns: set[str], bad) -> None:
    """Every name is a plan column or one of its words; every plan column is there, whole or as
    the contiguous words 0..k-1 (never both)."""
    words: dict[str, list[int]] = {}
    for name in names:
        base, sep, word = name.partition("#")
        if base not in columns:
            raise bad("it names a column the plan does not reveal here")
        if sep and not _WORD.fullmatch(word):
            raise bad("a column word number is not a small decimal")
        words.setdefault(base, []).append(int(word) if sep else -1)
    for base in columns:
        got = sorted(words.get(base, []))
        if not got or len(got) > MAX_WORDS or (got != [-1] and got != list(range(len(got)))):
            raise bad(f"column {base!r} is missing or its words are not 0..k-1")
