"""Text rendering of results, shared by the shell and the demo so both look alike."""

from __future__ import annotations

import datetime as _dt
import decimal
from typing import Any, Iterable

NULL_TEXT = "NULL"


class _Gap:
    """Marks rows left out of a long result."""


_GAP = _Gap()


def _cell(value: Any) -> str:
    if value is None:
        return NULL_TEXT
    if value is _GAP:
        return "…"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value:  # NaN
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        if abs(value) >= 1e15 or (value != 0 and abs(value) < 1e-4):
            return f"{value:.6g}"
        return f"{value:.4f}".rstrip("0").rstrip(".") or "0"
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat(sep=" ") if isinstance(value, _dt.datetime) else value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return "\\x" + bytes(value).hex()
    text = str(value)
    return text.replace("\n", "\\n").replace("\t", "\\t")


def _is_numeric_column(values: Iterable[Any]) -> bool:
    seen = False
    for v in values:
        if v is None or v is _GAP:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float, decimal.Decimal)):
            return False
        seen = True
    return seen


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def format_rows(
    names: list[str], rows: list[tuple[Any, ...]], max_col_width: int = 40
) -> str:
    """Aligned table: numbers right-aligned, NULL spelled out, long cells clipped."""
    if not names:
        return "(no columns)"
    columns = list(zip(*rows)) if rows else [() for _ in names]
    numeric = [_is_numeric_column(col) for col in columns]
    cells = [[_clip(_cell(v), max_col_width) for v in row] for row in rows]
    heads = [_clip(str(n), max_col_width) for n in names]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(heads)]

    def line(values: list[str], header: bool = False) -> str:
        parts = []
        for i, v in enumerate(values):
            parts.append(v.rjust(widths[i]) if numeric[i] and not header else v.ljust(widths[i]))
        return " " + " | ".join(parts)

    out = [line(heads, header=True), "-" + "-+-".join("-" * w for w in widths) + "-"]
    out.extend(line(r) for r in cells)
    return "\n".join(s.rstrip() for s in out)


def format_table(table: Any, max_rows: int = 40, max_col_width: int = 40) -> str:
    """Render a pyarrow.Table; long results show head and tail with a gap marker."""
    names = list(table.column_names)
    n = table.num_rows
    if n > max_rows:
        head = max_rows // 2
        tail = max_rows - head
        top = table.slice(0, head)
        bottom = table.slice(n - tail, tail)
        rows = _to_rows(top) + [tuple(_GAP for _ in names)] + _to_rows(bottom)
    else:
        rows = _to_rows(table)
    return format_rows(names, rows, max_col_width=max_col_width)


def _to_rows(table: Any) -> list[tuple[Any, ...]]:
    cols = [c.to_pylist() for c in table.columns]
    return list(zip(*cols)) if cols else []


def format_footer(rows: int, elapsed: float | None = None, stats: dict[str, Any] | None = None) -> str:
    """`(3 rows, 0.42 s, 12 rounds, 1.2 MB sent)`: what the query cost."""
    parts = [f"{rows} row{'s' if rows != 1 else ''}"]
    if elapsed is not None:
        parts.append(f"{elapsed:.2f} s")
    stats = stats or {}
    if stats.get("rounds"):
        parts.append(f"{stats['rounds']} rounds")
    if stats.get("bytes_sent"):
        parts.append(f"{format_bytes(int(stats['bytes_sent']))} sent")
    return "(" + ", ".join(parts) + ")"


def format_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def format_leakage(items: list[str]) -> str:
    """Leakage report lines; says so explicitly when nothing beyond the result is revealed."""
    if not items:
        return "leakage: nothing beyond the result"
    return "\n".join(["leakage:"] + [f"  - {item}" for item in items])


def format_explain(table: Any) -> str:
    """EXPLAIN results are one text line per row in column `plan`."""
    if table.num_columns == 0:
        return ""
    return "\n".join("" if v is None else str(v) for v in table.column(0).to_pylist())


def format_notes(columns: list[dict[str, Any]]) -> str:
    """Per-column notes from the node (e.g. DP noise scale), one line each; a DP AVG/VAR/STDDEV
    column's per-row 95% intervals follow on one more line (they differ by row: they depend on its count)."""
    lines = []
    for c in columns:
        if c.get("note"):
            lines.append(f"note: {c['name']}: {c['note']}")
        rows = c.get("confidence_interval_95")
        if rows:
            shown = ", ".join("unknown (too few rows)" if r is None else f"[{r[0]:.4g}, {r[1]:.4g}]"
                              for r in rows[:MAX_INTERVAL_ROWS])
            more = f" (+{len(rows) - MAX_INTERVAL_ROWS} more rows)" if len(rows) > MAX_INTERVAL_ROWS else ""
            lines.append(f"note: {c['name']}: 95% interval per row: {shown}{more}")
    return "\n".join(lines)


MAX_INTERVAL_ROWS = 20
"""Rows whose DP interval the shell prints (all of them are in the result metadata)."""


# -- other result formats (the shell's .mode) -------------------------------------


def _plain(value: Any) -> Any:
    """JSON-friendly value: numbers stay numbers, the rest becomes text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() and value.as_tuple().exponent >= 0 else float(value)
    if isinstance(value, (bytes, bytearray)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return _cell(value)
    return str(value)


def _csv_field(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, str):
        return value
    return str(_plain(value))


def format_csv(table: Any) -> str:
    """RFC 4180 CSV with a header line; NULL is an empty field."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.column_names)
    for row in _to_rows(table):
        writer.writerow([_csv_field(v) for v in row])
    return buf.getvalue()


def format_json(table: Any) -> str:
    """A JSON array of row objects (column name → value)."""
    import json

    names = list(table.column_names)
    return json.dumps([dict(zip(names, (_plain(v) for v in row))) for row in _to_rows(table)], ensure_ascii=False)


def format_markdown(table: Any) -> str:
    """A GitHub-flavoured Markdown table; numbers right-aligned."""
    names = list(table.column_names)
    rows = _to_rows(table)
    columns = list(zip(*rows)) if rows else [() for _ in names]

    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    head = "| " + " | ".join(esc(str(n)) for n in names) + " |"
    rule = "|" + "|".join("---:" if _is_numeric_column(c) else "---" for c in columns) + "|"
    body = ["| " + " | ".join(esc(_cell(v)) for v in row) + " |" for row in rows]
    return "\n".join([head, rule, *body])
