"""Minimal SQL shell over the DB-API: statements end with `;`, results print as tables.

Interactive input uses prompt_toolkit (history, multi-line) when stdin and
stdout are terminals; otherwise plain lines are read, so piping a file in
behaves like `-f`. The full shell (completion, .mode, progress line) is a
later issue; this keeps its shape: one `Shell` object, one `run_statement`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, TextIO

from connectors.dbapi import Connection, sql_segments
from fedsql import errors, render

HELP = """\
Statements end with ';' and may span lines. Meta commands:
  .help       this text
  .tables     tables of the federation (party.table and federated tables) with column levels
  .parties    parties, their addresses and roles
  .quit       leave (also .exit or Ctrl-D)
Settings: SET fedsql.mode = 'reveal' | 'sizes' | 'oblivious';
Prefix a query with EXPLAIN to see its plan and leakage report."""


def split_statements(text: str) -> tuple[list[str], str]:
    """Split `text` into complete `;`-terminated statements and the unfinished rest.

    Semicolons inside quotes or comments do not end a statement.
    """
    done: list[str] = []
    current: list[str] = []
    for kind, piece in sql_segments(text):
        if kind == "semicolon":
            stmt = "".join(current).strip()
            if _has_code(stmt):
                done.append(stmt)
            current = []
        else:
            current.append(piece)
    return done, "".join(current)


def _has_code(sql: str) -> bool:
    return any(k not in ("line_comment", "block_comment") and p.strip() for k, p in sql_segments(sql))


class Shell:
    """Runs statements against one connection and prints to `out`/`err`."""

    def __init__(self, conn: Connection, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.conn = conn
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def print(self, text: str = "") -> None:
        if text:
            print(text, file=self.out, flush=True)

    def error(self, exc: BaseException) -> None:
        print(f"error: {exc}", file=self.err, flush=True)

    # -- statements ------------------------------------------------------------

    def run_statement(self, sql: str, show_sql: bool = False) -> bool:
        """Run one statement and print its outcome; False when it failed."""
        if show_sql:
            self.print(f"{self.prompt_text()}{sql};")
        cur = self.conn.cursor()
        start = time.monotonic()
        progress = self._progress_line if _isatty(self.err) else None
        try:
            cur.execute(sql, on_progress=progress)
        except errors.Error as exc:
            self._clear_progress()
            self.error(exc)
            return False
        except KeyboardInterrupt:
            self._clear_progress()
            self.error(errors.QueryCancelled("query cancelled (Ctrl-C)"))
            return False
        self._clear_progress()
        elapsed = time.monotonic() - start
        self.print_result(cur, elapsed)
        return True

    def _progress_line(self, elapsed: float, step: str) -> None:
        """Live status for long queries on a terminal: elapsed time and the current step."""
        text = f"  running {elapsed:5.1f} s  {step}"[:100]
        self.err.write("\r" + text.ljust(getattr(self, "_progress_width", 0)))
        self.err.flush()
        self._progress_width = len(text)

    def _clear_progress(self) -> None:
        width = getattr(self, "_progress_width", 0)
        if width:
            self.err.write("\r" + " " * width + "\r")
            self.err.flush()
            self._progress_width = 0

    def print_result(self, cur: object, elapsed: float) -> None:
        meta = getattr(cur, "meta", {}) or {}
        kind = meta.get("kind", "rows")
        if kind == "explain":
            self.print(render.format_explain(cur.fetch_arrow_table()))  # type: ignore[attr-defined]
            self.print(render.format_leakage(cur.leakage))  # type: ignore[attr-defined]
            return
        if kind == "set":
            settings = meta.get("settings") or {}
            self.print("SET " + ", ".join(f"{k} = {v!r}" for k, v in sorted(settings.items())))
            return
        if kind == "ok" or cur.description is None:  # type: ignore[attr-defined]
            self.print(f"OK ({elapsed:.2f} s)")
            return
        table = cur.fetch_arrow_table()  # type: ignore[attr-defined]
        self.print(render.format_table(table))
        notes = render.format_notes(cur.columns_meta)  # type: ignore[attr-defined]
        if notes:
            self.print(notes)
        self.print(render.format_footer(table.num_rows, elapsed, meta.get("stats")))
        self.print(render.format_leakage(cur.leakage))  # type: ignore[attr-defined]

    # -- meta commands -----------------------------------------------------------

    def meta_command(self, line: str) -> bool:
        """Handle a `.command`; returns False when the shell should quit."""
        cmd = line.strip().split()[0].lower()
        fed = self.conn.federation
        if cmd in (".quit", ".exit", ".q"):
            return False
        if cmd == ".help":
            self.print(HELP)
        elif cmd == ".tables" and fed is not None:
            rows = []
            for pname, party in fed.parties.items():
                for tname, t in party.tables.items():
                    cols = ", ".join(f"{c}:{lvl}" for c, lvl in t.levels.items())
                    rows.append((f"{pname}.{tname}", t.format, cols + ("  (others private)" if cols else "all private")))
            for fname, ft in fed.federated.items():
                rows.append((fname, "federated", "UNION ALL of " + ", ".join(f"{p}.{t}" for p, t in ft.members)))
            self.print(render.format_rows(["table", "source", "columns (level for other parties)"], rows, max_col_width=100))
        elif cmd == ".parties" and fed is not None:
            rows = []
            for pname, party in fed.parties.items():
                roles = []
                if pname in fed.compute:
                    roles.append("compute")
                roles.append("helper" if party.is_helper else "data")
                if pname == self.conn.party:
                    roles.append("you")
                rows.append((pname, party.address, ", ".join(roles), len(party.tables)))
            self.print(render.format_rows(["party", "address", "role", "tables"], rows))
        else:
            print(f"error: unknown command {cmd!r}; try .help", file=self.err, flush=True)
        return True

    def prompt_text(self) -> str:
        return f"fedsql {self.conn.party}> "

    # -- loops -------------------------------------------------------------------

    def run_script(self, text: str, echo: bool = False) -> int:
        """Batch mode: run every statement, stop at the first failure; 0 ok, 1 failed.

        A trailing statement without `;` still runs (handy for `-c "SELECT 1"`).
        """
        buffer = ""
        for line in text.splitlines():
            if not _has_code(buffer) and line.strip().startswith("."):
                if not self.meta_command(line):
                    return 0
                continue
            buffer += line + "\n"
            statements, buffer = split_statements(buffer)
            for stmt in statements:
                if not self.run_statement(stmt, show_sql=echo):
                    return 1
        if _has_code(buffer) and not self.run_statement(buffer.strip(), show_sql=echo):
            return 1
        return 0

    def repl(self, stdin: TextIO | None = None) -> int:
        """Interactive loop; returns the exit code (0, or 1 if the last statement failed)."""
        stdin = stdin or sys.stdin
        interactive = stdin.isatty() and self.out.isatty()
        read = _prompt_toolkit_reader(self) if interactive else _plain_reader(stdin)
        if interactive:
            self.print(f"fedsql shell, party '{self.conn.party}'. End statements with ';'. .help for help.")
        buffer = ""
        status = 0
        while True:
            try:
                line = read("...> " if buffer.strip() else self.prompt_text())
            except KeyboardInterrupt:
                buffer = ""
                continue
            except EOFError:
                break
            if line is None:
                break
            if not buffer.strip() and line.strip().startswith("."):
                if not self.meta_command(line):
                    break
                continue
            buffer += line + "\n"
            statements, buffer = split_statements(buffer)
            for stmt in statements:
                status = 0 if self.run_statement(stmt) else 1
        if _has_code(buffer) and not interactive:
            status = 0 if self.run_statement(buffer.strip()) else 1
        return status


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _plain_reader(stdin: TextIO) -> Callable[[str], str | None]:
    def read(prompt: str) -> str | None:
        line = stdin.readline()
        if not line:
            return None
        return line.rstrip("\n")

    return read


def _prompt_toolkit_reader(shell: Shell) -> Callable[[str], str | None]:
    try:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, InMemoryHistory
    except ImportError:  # pragma: no cover - dependency is declared
        return lambda prompt: input(prompt)
    try:
        hist_path = Path.home() / ".fedsql_history"
        history = FileHistory(str(hist_path))
    except OSError:
        history = InMemoryHistory()
    session: PromptSession[str] = PromptSession(history=history)
    return lambda prompt: session.prompt(prompt)


def run_shell(
    config: str,
    party: str,
    command: str | None = None,
    file: str | None = None,
    mode: str | None = None,
) -> int:
    """Entry point of `fedsql shell`: connect, then batch (-c/-f) or interactive."""
    import fedsql

    conn = fedsql.connect(config=config, party=party, mode=mode)
    try:
        shell = Shell(conn)
        if command is not None:
            return shell.run_script(command)
        if file is not None:
            try:
                text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
            except OSError as exc:
                raise errors.InterfaceError(f"cannot read {file}: {exc.strerror or exc}") from None
            return shell.run_script(text)
        return shell.repl()
    finally:
        conn.close()
