"""`fedsql shell`: an interactive SQL shell over the DB-API, and its batch modes.

Interactive (stdin and stdout are terminals) it runs on prompt_toolkit:
statements end with `;` and may span lines, history is kept in
`~/.fedsql_history` (Up/Down search by prefix, Ctrl-R reverse search),
Tab completes keywords, table names (`p.t`, federated `t`, `scratch.t`),
columns of the tables the statement names and meta commands; SQL is
highlighted with Pygments' SqlLexer. While a query runs, a progress line on
stderr shows the elapsed time and the current secure step, and Ctrl-C
cancels the query at every party (not the shell).

Results are printed as their record batches arrive, never as one text: `table` and `markdown`
show the first `.maxrows` rows (then how many more there are and how to see them), `csv` and
`json` print every row batch by batch; while a large result transfers to a file or pipe, the
progress line on stderr counts the rows received.

Otherwise plain lines are read, so piping a file in behaves like `-f`.
`-c SQL` and `-f FILE` run statements and exit: 0 when all succeeded, 1 at
the first failure.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TextIO

from connectors.dbapi import Connection, sql_segments
from fedsql import errors, render

MODES = ("table", "csv", "json", "markdown")
MAXROWS = 40
"""Rows `table` and `markdown` show by default (`.maxrows N`; 0: all)."""
PROGRESS_DELAY = 0.3
"""Seconds before the progress line appears (fast statements print none)."""
PAGE_ROWS = 10_000
"""With `.maxrows 0`, rows are rendered in pages of this many (one page's text at a time)."""

HELP = """\
Statements end with ';' and may span lines. Meta commands:
  .help                 this text
  .tables               tables you can query: party.table, federated tables, your scratch tables
  .schema TABLE         columns of TABLE with their types and their policy level for you
  .parties              parties, their addresses and roles
  .mode MODE            result format: table (default), csv, json, markdown
  .timer on|off         print how long each statement took
  .maxrows N            rows shown in table/markdown mode (default 40; 0: all, in pages); csv and json print all
  .explain [next]       EXPLAIN the last query (plan + leakage report); 'next': explain the next one instead of running it
  .budget               differential-privacy budgets your node keeps as a data owner
  .params V, V, ...     values for the ? marks of the next statement (SQL literals: 42, 'text', NULL);
                        with SET fedsql.hidden_params = on they stay secret (a hidden lookup); never saved
                        in the history; .params clear drops them
  .quit                 leave (also .exit or Ctrl-D)
Keys: Tab completes, Up/Down search history by prefix, Ctrl-R searches it, Ctrl-C cancels a running query.
Settings: SET fedsql.mode = 'reveal' | 'sizes' | 'oblivious';
Results you want to keep: CREATE TABLE scratch.name AS SELECT ...; (only you can read them)."""

KEYWORDS = (
    "SELECT", "FROM", "WHERE", "GROUP BY", "HAVING", "ORDER BY", "LIMIT", "OFFSET", "AS", "AND", "OR", "NOT",
    "IN", "IS", "NULL", "BETWEEN", "LIKE", "CASE", "WHEN", "THEN", "ELSE", "END", "DISTINCT", "JOIN", "ON",
    "USING", "LEFT", "INNER", "UNION ALL", "WITH", "ASC", "DESC", "NULLS FIRST", "NULLS LAST", "CAST",
    "COUNT", "SUM", "AVG", "MIN", "MAX", "EXPLAIN", "SET", "fedsql.mode", "CREATE TABLE", "CREATE OR REPLACE TABLE",
    "INSERT INTO", "VALUES", "DROP TABLE", "DELETE FROM", "UPDATE", "DESCRIBE", "SHOW TABLES", "TRUE", "FALSE",
)
META_COMMANDS = (".help", ".tables", ".schema", ".parties", ".mode", ".timer", ".maxrows", ".explain", ".budget",
                 ".params", ".quit", ".exit")


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


class Progress:
    """The live status line of a running query on a terminal: elapsed time and current step.

    A ticker thread keeps the time moving between the node's step events; it
    only writes after `delay` seconds, so fast queries print nothing.
    """

    def __init__(self, stream: TextIO, delay: float | None = None) -> None:
        self.stream = stream
        self.delay = PROGRESS_DELAY if delay is None else delay
        self.step = "planning"
        self.width = 0
        self._start = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True)

    def __enter__(self) -> "Progress":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        with self._lock:
            if self.width:
                self.stream.write("\r" + " " * self.width + "\r")
                self.stream.flush()
                self.width = 0

    def update(self, elapsed: float, step: str) -> None:
        self.step = step
        self._draw()

    def _tick(self) -> None:
        while not self._stop.wait(0.2):
            self._draw()

    def _draw(self) -> None:
        elapsed = time.monotonic() - self._start
        if elapsed < self.delay or self._stop.is_set():
            return
        text = f"  running {elapsed:5.1f} s  {self.step}  (Ctrl-C cancels)"[:110]
        with self._lock:
            if self._stop.is_set():
                return
            self.stream.write("\r" + text.ljust(self.width))
            self.stream.flush()
            self.width = len(text)


class Shell:
    """Runs statements against one connection and prints to `out`/`err`."""

    def __init__(self, conn: Connection, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.conn = conn
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.mode = "table"
        self.maxrows = MAXROWS
        self.timer = False
        self.last_query: str | None = None
        self.explain_next = False
        self.pending = ""  # lines of an unfinished statement (for completion)
        self.where = ""  # batch mode: which statement runs, for error messages
        self._tables: list[tuple[str, str, str]] | None = None
        self._columns: dict[str, list[str]] = {}

    def print(self, text: str = "") -> None:
        if text:
            print(text, file=self.out, flush=True)

    def error(self, exc: BaseException) -> None:
        where = f"{self.where}: " if self.where else ""
        print(f"error: {where}{exc}", file=self.err, flush=True)

    # -- statements ------------------------------------------------------------

    def run_statement(self, sql: str, show_sql: bool = False) -> bool:
        """Run one statement and print its outcome; False when it failed."""
        if show_sql:
            self.print(f"{self.prompt_text()}{sql};")
        if self.explain_next and not re.match(r"\s*EXPLAIN\b", sql, re.I):
            self.explain_next = False
            sql = "EXPLAIN " + sql
        cur = self.conn.cursor()
        params = None
        if self.params is not None and any(kind == "qmark" for kind, _ in sql_segments(sql)):
            params, self.params = self.params, None  # for this statement only
        start = time.monotonic()
        try:
            if _isatty(self.err):
                with Progress(self.err) as progress:
                    cur.execute(sql, params, on_progress=progress.update)
            else:
                cur.execute(sql, params)
            elapsed = time.monotonic() - start
            if re.match(r"\s*(SELECT|WITH|\()", sql, re.I):
                self.last_query = sql
            if re.match(r"\s*(CREATE|DROP)\b", sql, re.I):
                self._tables = None  # the scratch space changed
            self.print_result(cur, elapsed)
        except errors.Error as exc:
            self.error(exc)
            return False
        except KeyboardInterrupt:
            self.error(errors.QueryCancelled("query cancelled (Ctrl-C); it was stopped at every party"))
            return False
        finally:
            cur.close()  # a result not read to its end stops at the node
        if self.timer:
            self.print(f"Run Time: {elapsed:.3f} s")
        return True

    def print_result(self, cur: Any, elapsed: float) -> None:
        """Print `cur`'s result as its record batches arrive (see the module docstring)."""
        meta = getattr(cur, "meta", {}) or {}
        kind = meta.get("kind", "rows")
        if kind == "explain":  # the plan text ends with its own leakage report
            self.print(render.format_explain(cur.fetch_arrow_table()))
            return
        if kind == "set":
            settings = meta.get("settings") or {}
            self.print("SET " + ", ".join(f"{k} = {v!r}" for k, v in sorted(settings.items())))
            return
        if kind == "ok" or cur.description is None:
            count = getattr(cur, "rowcount", -1)
            done = f"{count} row{'s' if count != 1 else ''}" if count is not None and count >= 0 else "done"
            self.print(f"OK, {done} ({elapsed:.2f} s)")
            if cur.leakage and self.mode in ("table", "markdown"):
                self.print(render.format_leakage(cur.leakage))
            return
        total = cur.rowcount if cur.rowcount is not None and cur.rowcount >= 0 else None
        with self._receiving(total) as received:
            batches = _counted(cur.fetch_record_batch(), received)
            if self.mode == "csv":
                self._print_csv(batches, cur)
                return
            if self.mode == "json":
                self._print_json(batches)
                return
            shown = self._print_pages(batches, cur)
        if total is not None and total > shown:
            self.print(f"… {total - shown:,} more row{'s' if total - shown != 1 else ''} not shown ({total:,} in all): "
                       ".maxrows N shows more, .maxrows 0 all; .mode csv prints every row; "
                       "CREATE TABLE scratch.x AS … keeps them")
        notes = render.format_notes(cur.columns_meta)
        if notes:
            self.print(notes)
        self.print(render.format_footer(total if total is not None else shown, elapsed, meta.get("stats")))
        self.print(render.format_leakage(cur.leakage))

    def _receiving(self, total: int | None) -> Any:
        """A progress line counting rows received, on a terminal stderr while stdout goes elsewhere
        (on the terminal itself the rows are their own progress); `received(n)` counts."""
        import contextlib

        if not (_isatty(self.err) and not _isatty(self.out)):
            return contextlib.nullcontext(lambda n: None)

        @contextlib.contextmanager
        def shown() -> Any:
            with Progress(self.err) as progress:
                count = 0
                of = f" of {total:,}" if total is not None else ""

                def received(n: int) -> None:
                    nonlocal count
                    count += n
                    progress.update(0.0, f"receiving rows: {count:,}{of}")

                received(0)
                yield received

        return shown()

    def _print_pages(self, batches: Iterable[Any], cur: Any) -> int:
        """table/markdown: the first `.maxrows` rows (all with 0, a page's text at a time); the
        rows shown. The rest is not read: closing the cursor stops the stream."""
        import pyarrow as pa

        limit = self.maxrows or None
        page_rows = min(limit, PAGE_ROWS) if limit else PAGE_ROWS
        pending: list[Any] = []
        count = shown = pages = 0
        schema = None

        def flush() -> None:
            nonlocal pending, count, shown, pages
            table = pa.Table.from_batches(pending, schema=schema)
            if self.mode == "markdown":
                text = render.format_markdown(table)
                text = text if not pages else "\n".join(text.splitlines()[2:])  # one header for all pages
            else:
                text = render.format_table(table, max_rows=max(table.num_rows, 1))
            if text:
                self.print(text)
            shown += table.num_rows
            pages += 1
            pending, count = [], 0

        for batch in batches:
            schema = batch.schema
            while batch.num_rows:
                room = page_rows - count
                if limit is not None:
                    room = min(room, limit - shown - count)
                pending.append(batch.slice(0, room))
                count += min(room, batch.num_rows)
                batch = batch.slice(room)
                if count >= page_rows or (limit is not None and shown + count >= limit):
                    flush()
                if limit is not None and shown >= limit:
                    return shown
        if pending or not pages:
            if schema is None:
                schema = cur.fetch_arrow_table().schema
            flush()
        return shown

    def _print_csv(self, batches: Iterable[Any], cur: Any) -> None:
        first = True
        for batch in batches:
            import pyarrow as pa

            text = render.format_csv(pa.Table.from_batches([batch])).rstrip("\n")
            if not first:
                text = text.split("\n", 1)[1] if "\n" in text else ""
            if text:
                self.print(text)
            first = False
        if first:  # no batch at all: the header line alone
            self.print(",".join(render.format_csv(cur.fetch_arrow_table()).splitlines()[:1]))

    def _print_json(self, batches: Iterable[Any]) -> None:
        """The same JSON array format_json gives, written a batch at a time."""
        import pyarrow as pa

        self.out.write("[")
        sep = ""
        for batch in batches:
            body = render.format_json(pa.Table.from_batches([batch]))[1:-1]
            if body:
                self.out.write(sep + body)
                sep = ", "
        self.out.write("]\n")
        self.out.flush()

    # -- meta commands -----------------------------------------------------------

    def meta_command(self, line: str) -> bool:
        """Handle a `.command`; returns False when the shell should quit."""
        parts = line.strip().split(None, 1)
        cmd = parts[0].lower()
        arg = parts[1].strip().rstrip(";").strip() if len(parts) > 1 else ""
        try:
            return self._meta(cmd, arg)
        except errors.Error as exc:
            self.error(exc)
            self.meta_failed = True
            return True

    meta_failed = False
    params: list | None = None  # .params: the values of the next statement's ? marks

    def _meta(self, cmd: str, arg: str) -> bool:
        fed = self.conn.federation
        if cmd in (".quit", ".exit", ".q"):
            return False
        if cmd == ".help":
            self.print(HELP)
        elif cmd == ".tables":
            self.print_tables()
        elif cmd == ".schema":
            if not arg:
                raise errors.InterfaceError("usage: .schema TABLE (e.g. .schema p1.t, .schema t, .schema scratch.x)")
            rows = self.conn.describe(arg)
            self.print(render.format_rows(["column", "type", "level (for you)"], rows))
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
        elif cmd == ".mode":
            if arg.lower() not in MODES:
                raise errors.InterfaceError(f"usage: .mode {'|'.join(MODES)} (now: {self.mode})")
            self.mode = arg.lower()
        elif cmd == ".maxrows":
            if not re.fullmatch(r"\d+", arg):
                raise errors.InterfaceError(f"usage: .maxrows N (rows shown in table/markdown mode; 0: all; now: "
                                            f"{self.maxrows})")
            self.maxrows = int(arg)
        elif cmd == ".timer":
            if arg.lower() not in ("on", "off"):
                raise errors.InterfaceError(f"usage: .timer on|off (now: {'on' if self.timer else 'off'})")
            self.timer = arg.lower() == "on"
        elif cmd == ".explain":
            if arg.lower() == "next":
                self.explain_next = True
                self.print("the next statement will be explained, not run")
            elif arg:
                raise errors.InterfaceError("usage: .explain (the last query) or .explain next")
            elif self.last_query is None:
                self.explain_next = True
                self.print("no query yet: the next statement will be explained, not run")
            else:
                self.run_statement("EXPLAIN " + self.last_query)
        elif cmd == ".budget":
            self.print_budget()
        elif cmd == ".params":
            if arg.lower() == "clear":
                self.params = None
            elif not arg:
                raise errors.InterfaceError("usage: .params V, V, ... (SQL literals, e.g. .params 42, 'abc', NULL) "
                                            "or .params clear")
            else:
                self.params = parse_params(arg)
                self.print(f"{len(self.params)} parameter{'s' if len(self.params) != 1 else ''} for the next "
                           "statement with ? marks")
        else:
            raise errors.InterfaceError(f"unknown command {cmd!r}; try .help")
        return True

    def print_tables(self) -> None:
        fed = self.conn.federation
        rows = []
        for schema, name, kind in self.tables(refresh=True):
            if kind == "table" and fed is not None and schema in fed.parties:
                t = fed.parties[schema].tables.get(name)
                levels = ", ".join(f"{c}:{t.level(c)}" for c in t.levels) if t else ""
                rows.append((f"{schema}.{name}", t.format if t else "table",
                             (levels + "  (others private)") if levels else "all private"))
            elif kind == "federated" and fed is not None and name in fed.federated:
                members = ", ".join(f"{p}.{t}" for p, t in fed.federated[name].members)
                rows.append((name, "federated", "UNION ALL of " + members))
            elif kind == "scratch":
                rows.append((f"scratch.{name}", "scratch", "your own results; only you can read them"))
            else:
                rows.append((f"{schema}.{name}", kind, ""))
        self.print(render.format_rows(["table", "source", "columns (level for other parties)"], rows, max_col_width=100))

    def print_budget(self) -> None:
        try:
            from fedsql.budget_cli import run_budget
        except ImportError:
            self.print("DP budgets: not available yet")
            return
        fed = self.conn.federation
        if fed is None:
            self.print("DP budgets: not available (no federation file)")
            return
        run_budget(str(fed.path), self.conn.party, out=self.out)

    # -- catalog for completion ---------------------------------------------------

    def tables(self, refresh: bool = False) -> list[tuple[str, str, str]]:
        if self._tables is None or refresh:
            self._tables = self.conn.tables()
        return self._tables

    def table_names(self) -> list[str]:
        """Names as SQL writes them: `p.t`, federated `t`, `scratch.t`."""
        try:
            return [name if kind == "federated" else f"{schema}.{name}" for schema, name, kind in self.tables()]
        except errors.Error:
            return []

    def columns_of(self, table: str) -> list[str]:
        if table not in self._columns:
            try:
                self._columns[table] = [c for c, _, _ in self.conn.describe(table)]
            except errors.Error:
                self._columns[table] = []
        return self._columns[table]

    def completions(self, text: str, word: str) -> list[str]:
        """Candidates for `word` (the token before the cursor) given the statement so far."""
        if text.lstrip().startswith(".") and " " not in text.strip():
            return [m for m in META_COMMANDS if m.startswith(word.lower())]
        tables = self.table_names()
        mentioned = [t for t in tables if re.search(r"(?<![\w.])" + re.escape(t) + r"(?![\w.])", text, re.I)]
        columns = sorted({c for t in mentioned for c in self.columns_of(t)})
        low = word.lower()
        out = [t for t in tables if t.lower().startswith(low)]
        out += [c for c in columns if c.lower().startswith(low) and c not in out]
        if "." not in word:
            out += [k for k in KEYWORDS if k.lower().startswith(low)]
        return out

    def prompt_text(self) -> str:
        return f"fedsql {self.conn.party}> "

    # -- loops -------------------------------------------------------------------

    def run_script(self, text: str, echo: bool = False) -> int:
        """Batch mode: run every statement, stop at the first failure; 0 ok, 1 failed.

        A trailing statement without `;` still runs (handy for `-c "SELECT 1"`).
        """
        buffer = ""
        count, first_line = 0, 1

        def run(stmt: str) -> bool:
            nonlocal count
            count += 1
            self.where = f"statement {count} (from line {first_line})"  # which one failed, in errors
            try:
                return self.run_statement(stmt, show_sql=echo)
            finally:
                self.where = ""

        for number, line in enumerate(text.splitlines(), 1):
            if not _has_code(buffer) and line.strip().startswith("."):
                self.meta_failed = False
                if not self.meta_command(line):
                    return 0
                if self.meta_failed:
                    return 1
                continue
            if not _has_code(buffer):
                first_line = number
            buffer += line + "\n"
            statements, buffer = split_statements(buffer)
            for stmt in statements:
                if not run(stmt):
                    return 1
            if statements and _has_code(buffer):
                first_line = number
        if _has_code(buffer) and not run(buffer.strip()):
            return 1
        return 0

    def repl(self, stdin: TextIO | None = None) -> int:
        """Interactive loop; returns the exit code (0, or 1 if the last statement failed)."""
        stdin = stdin or sys.stdin
        interactive = _isatty(stdin) and _isatty(self.out)
        read = _prompt_toolkit_reader(self) if interactive else _plain_reader(stdin)
        if interactive:
            self.print(f"fedsql shell, party '{self.conn.party}'. End statements with ';'. .help for help.")
        buffer = ""
        status = 0
        while True:
            self.pending = buffer
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


def _counted(batches: Iterable[Any], received: Callable[[int], None]) -> Iterator[Any]:
    for batch in batches:
        received(batch.num_rows)
        yield batch


def parse_params(text: str) -> list:
    """`.params 42, -1.5, 'it''s', NULL, TRUE` → [42, Decimal('-1.5'), "it's", None, True]."""
    import decimal

    import sqlglot
    from sqlglot import exp

    try:
        items = sqlglot.parse_one(f"SELECT {text}", read="duckdb").expressions
    except Exception:  # noqa: BLE001 - sqlglot's errors name positions of the wrapped text
        raise errors.InterfaceError("could not read the .params values: write SQL literals separated by commas, "
                                    "e.g. .params 42, 'abc', NULL") from None
    out: list = []
    for i, item in enumerate(items, 1):
        neg = isinstance(item, exp.Neg)
        node = item.this if neg else item
        if isinstance(node, exp.Null) and not neg:
            out.append(None)
        elif isinstance(node, exp.Boolean) and not neg:
            out.append(bool(node.this))
        elif isinstance(node, exp.Literal) and node.is_string and not neg:
            out.append(node.this)
        elif isinstance(node, exp.Literal):
            text_value = ("-" if neg else "") + node.this
            out.append(int(text_value) if re.fullmatch(r"-?\d+", text_value) else decimal.Decimal(text_value))
        else:
            raise errors.InterfaceError(f".params value {i} is not a literal (a number, 'text', TRUE/FALSE or NULL)")
    return out


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
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
        from prompt_toolkit.completion import Completer, Completion
        from prompt_toolkit.history import FileHistory, InMemoryHistory
        from prompt_toolkit.lexers import PygmentsLexer
        from pygments.lexers.sql import SqlLexer
    except ImportError:  # pragma: no cover - dependencies are declared
        return lambda prompt: input(prompt)

    class SqlCompleter(Completer):
        def get_completions(self, document: Any, complete_event: Any) -> Iterable[Any]:
            word = document.get_word_before_cursor(pattern=re.compile(r"[\w.]+|^\.\w*"))
            text = shell.pending + document.text_before_cursor
            for cand in shell.completions(text, word):
                yield Completion(cand, start_position=-len(word))

    class ShellHistory(FileHistory):
        def store_string(self, string: str) -> None:
            if not string.lstrip().lower().startswith(".params"):  # parameter values stay off the disk
                super().store_string(string)

    try:
        history: Any = ShellHistory(str(Path.home() / ".fedsql_history"))
    except OSError:
        history = InMemoryHistory()
    session: Any = PromptSession(
        history=history,
        completer=SqlCompleter(),
        complete_while_typing=False,  # Tab completes; typing stays fast over a slow catalog
        lexer=PygmentsLexer(SqlLexer),
        enable_history_search=True,
    )
    return lambda prompt: session.prompt(prompt)


def run_shell(
    config: str,
    party: str,
    command: str | None = None,
    file: str | None = None,
    mode: str | None = None,
    user: str | None = None,
    password: str | None = None,
) -> int:
    """Entry point of `fedsql shell`: connect, then batch (-c/-f) or interactive.
    With `user`, the password (asked for when not given) is checked and queries are audited as the user."""
    import fedsql

    if user is not None and password is None:
        import getpass

        password = getpass.getpass(f"password of {user}: ")
    conn = fedsql.connect(config=config, party=party, mode=mode, user=user, password=password)
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
        if not conn.closed:
            conn.close()


__all__ = ["Shell", "Progress", "run_shell", "split_statements", "HELP", "MODES"]
