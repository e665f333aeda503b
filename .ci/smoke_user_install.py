"""Smoke test of a plain `pip install .` (no extras): the README's first two commands, then the
shell in a real terminal — completion and highlighting need `prompt_toolkit` and `pygments`
as declared dependencies, which the test venv (with its extras) cannot prove.

Run by .ci/run with the user venv's python, in an empty directory. Standard library only.
Exit 0 when every step worked; otherwise 1 with what was seen.
"""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
FEDSQL = str(BIN / "fedsql")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def fail(message: str, seen: str = "") -> None:
    print(f"smoke: FAILED: {message}", file=sys.stderr)
    if seen:
        print("---- seen ----\n" + seen[-3000:], file=sys.stderr)
    sys.exit(1)


def demo() -> Path:
    proc = subprocess.run([FEDSQL, "demo", "--no-shell"], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 or "Tour done" not in proc.stdout:
        fail("`fedsql demo --no-shell` did not finish its tour", proc.stdout + proc.stderr)
    print("smoke: fedsql demo --no-shell: ok")
    return Path("fedsql-demo/federation.toml").resolve()


def start_up(config: Path) -> subprocess.Popen:
    up = subprocess.Popen([FEDSQL, "up", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ready, _, _ = select.select([up.stdout], [], [], 120)
    line = up.stdout.readline() if ready else ""  # type: ignore[union-attr]
    if "ready" not in line:
        up.kill()
        fail("`fedsql up` did not report ready", line)
    return up


class Terminal:
    """A program on a pseudo-terminal, read until a pattern shows (a tiny pexpect)."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child
            os.execve(argv[0], argv, env)
        self.seen = ""

    def expect(self, pattern: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, ANSI.sub("", self.seen)):
            left = deadline - time.monotonic()
            if left <= 0:
                fail(f"the shell never showed {pattern!r}", self.seen)
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    fail(f"the shell ended before showing {pattern!r}", self.seen)
                if not chunk:
                    fail(f"the shell ended before showing {pattern!r}", self.seen)
                self.seen += chunk.decode("utf-8", errors="replace")

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)


def shell(config: Path) -> None:
    home = Path("home").resolve()
    home.mkdir(exist_ok=True)
    env = {"PATH": f"{BIN}:{os.environ.get('PATH', '')}", "HOME": str(home), "TERM": "xterm",
           "PROMPT_TOOLKIT_NO_CPR": "1", "LANG": "C.UTF-8"}
    term = Terminal([FEDSQL, "shell", str(config), "--party", "h1"], env)
    try:
        term.expect(r"fedsql h1>")
        mark = len(term.seen)
        term.send("SELECT COUNT(*) AS n FROM patie")
        term.send("\t")  # completion: the table name
        term.expect(r"patients")
        if "\x1b[" not in term.seen[mark:]:
            fail("no highlighting escape codes while typing SQL (is pygments installed?)", term.seen)
        term.send(";\r")
        term.expect(r"\(1 row")
        term.send(".quit\r")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            done, _ = os.waitpid(term.pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.2)
        else:
            fail("`.quit` did not end the shell", term.seen)
    finally:
        try:
            term.close()
        except ChildProcessError:
            pass
    print("smoke: fedsql shell in a terminal (completion, highlighting, a query, .quit): ok")


def main() -> None:
    if shutil.which(FEDSQL) is None:
        fail(f"{FEDSQL} is not installed")
    config = demo()
    up = start_up(config)
    try:
        shell(config)
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()


if __name__ == "__main__":
    main()
