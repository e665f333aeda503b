"""The audit page's chain verification: `fedsql.audit.verify` over the whole file, in the background.

A full check of 10^5 lines takes seconds, longer than a page may take; checking only what was
appended would miss an edit of lines already checked. So the whole chain is verified again, by
the same function `fedsql audit verify` runs, in a thread of its own whenever the file changed,
and the page shows the latest finished result with the time it was taken (a short chain's result
is waited for, so it is always current).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fedsql import errors
from fedsql.audit import VerifyResult, verify

WAIT_SECONDS = 0.5
"""How long a page waits for a verification it started before showing the previous result."""


@dataclass(frozen=True)
class Checked:
    result: VerifyResult | None
    error: str | None
    at: float  # unix time the check finished
    stamp: tuple[int, int, int]  # (inode, size, mtime_ns) of the file it read


class ChainVerifier:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._last: Checked | None = None
        self._running: threading.Thread | None = None

    def _stamp(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _run(self, stamp: tuple[int, int, int]) -> None:
        try:
            checked = Checked(verify(self.path), None, time.time(), stamp)
        except errors.Error as exc:
            checked = Checked(None, str(exc), time.time(), stamp)
        with self._lock:
            self._last, self._running = checked, None

    def status(self) -> tuple[Checked | None, bool]:
        """(the latest finished check, whether a newer one is still running); starts one when the
        file changed since the last check."""
        stamp = self._stamp()
        with self._lock:
            current = self._last is not None and self._last.stamp == stamp
            thread = self._running
            if not current and thread is None:
                thread = self._running = threading.Thread(target=self._run, args=(stamp,), daemon=True,
                                                          name="fedsql-console-verify")
                thread.start()
        if thread is not None:
            thread.join(WAIT_SECONDS)
        with self._lock:
            return self._last, self._running is not None
