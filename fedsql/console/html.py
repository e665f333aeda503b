"""HTML building blocks of the console: escaping by default, the page frame, tables, the SVG chart.

Everything that is not a `Markup` is escaped with `html.escape` when it is put into a page, so a
query text such as `<script>…` (SQL comes from other parties' users) is shown as text, never
run. The pages carry no script at all and load nothing from elsewhere (the Content-Security-Policy
of the server forbids both), so the chart is inline SVG drawn here.
"""

from __future__ import annotations

import html
from typing import Any, Iterable, Sequence


class Markup(str):
    """HTML that is already safe (built from escaped parts): inserted as is. Adding anything to it
    escapes that part (`Markup("<b>") + "<i>"` is `<b>&lt;i&gt;`)."""

    def __add__(self, other: Any) -> "Markup":
        return Markup(str.__add__(self, esc(other)))

    def __radd__(self, other: Any) -> "Markup":
        return Markup(str.__add__(esc(other), self))


def esc(value: Any) -> Markup:
    """`value` as HTML text: Markup stays, None is empty, anything else is escaped (quotes too)."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[Any], sep: str = "") -> Markup:
    return Markup(esc(sep).join(esc(p) for p in parts))


VOID = frozenset({"input", "meta", "br"})


def tag(element: str, content: Any = "", /, **attrs: Any) -> Markup:
    """`<element attr="…">content</element>`; attribute values are escaped; `class_` → class; True → bare."""
    rendered = "".join(
        f" {k.rstrip('_').replace('_', '-')}" if v is True else f' {k.rstrip("_").replace("_", "-")}="{esc(v)}"'
        for k, v in attrs.items() if v is not None and v is not False)
    if element in VOID:
        return Markup(f"<{element}{rendered}>")
    return Markup(f"<{element}{rendered}>{esc(content)}</{element}>")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], empty: str = "nothing to show") -> Markup:
    head = join(tag("th", h, scope="col") for h in headers)
    body = join(tag("tr", join(tag("td", c) for c in row)) for row in rows)
    if not body:
        body = tag("tr", tag("td", empty, colspan=str(len(headers)), class_="empty"))
    return tag("table", tag("thead", tag("tr", head)) + tag("tbody", body))


STYLE = Markup("""
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1f3a5f;color:#fff;padding:10px 20px;display:flex;gap:24px;align-items:center;flex-wrap:wrap}
header b{font-size:16px} header nav a{color:#dbe7f5;margin-right:14px;text-decoration:none}
header nav a.on{color:#fff;border-bottom:2px solid #fff} header form{margin-left:auto}
main{padding:16px 20px;max-width:1400px}
h1{font-size:20px;margin:4px 0 12px} h2{font-size:16px;margin:20px 0 8px}
table{border-collapse:collapse;background:#fff;width:100%;margin-bottom:12px}
th,td{border:1px solid #d5dae1;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#e9edf2} td.empty{color:#777;text-align:center}
code,pre{font:12px/1.4 ui-monospace,Menlo,Consolas,monospace} pre{white-space:pre-wrap;margin:0;max-width:560px}
.ok{color:#14652c;font-weight:600} .bad{color:#a11;font-weight:600} .muted{color:#667}
.box{background:#fff;border:1px solid #d5dae1;padding:10px 14px;margin-bottom:12px}
form.filters{display:flex;gap:8px;flex-wrap:wrap;align-items:end;margin-bottom:10px}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:#445}
input,select,button{font:inherit;padding:3px 6px} .pager a{margin-right:10px}
.login{max-width:360px;margin:60px auto} .login label{display:block;margin:8px 0}
.login input{width:100%;box-sizing:border-box} .error{color:#a11;background:#fdecec;padding:6px 10px}
""")


def page(title: str, body: Any, *, party: str, federation: str, nav: Sequence[tuple[str, str]] = (),
         current: str = "", user: str | None = None, csrf: str | None = None) -> Markup:
    """The whole document: header with the party, navigation, who is logged in and a logout button."""
    links = join(tag("a", label, href=path, class_="on" if path == current else None) for path, label in nav)
    logout = (tag("form", esc(f"{user} ") + hidden("csrf", csrf) + tag("button", "log out", type="submit"),
                  method="post", action="/logout") if user and csrf else Markup(""))
    header = tag("header", tag("b", f"fedsql console · {party}") + tag("span", f"federation {federation}",
                                                                         class_="muted")
                 + tag("nav", links) + logout)
    return Markup(Markup("<!doctype html>") + tag("html", tag("head", Markup('<meta charset="utf-8">')
                                                      + tag("title", f"{title} · {party} · fedsql")
                                                      + tag("style", STYLE))
                                          + tag("body", header + tag("main", tag("h1", title) + esc(body))),
                                          lang="en"))


def hidden(name: str, value: str | None) -> Markup:
    return Markup(f'<input type="hidden" name="{esc(name)}" value="{esc(value)}">')


PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


def line_chart(series: dict[str, list[tuple[float, float]]], *, limit: float | None = None,
               x_label: Any = None, y_label: str = "", width: int = 640, height: int = 220) -> Markup:
    """Step lines (cumulative spend) per series, a dashed line at `limit` (the budget), and a legend.

    Points are (unix time, value); labels are escaped. An empty series dict draws the axes only."""
    from fedsql.console.audit_index import utc

    left, right, top, bottom = 56, 150, 12, 34
    w, h = width - left - right, height - top - bottom
    points = [p for pts in series.values() for p in pts]
    t0 = min((t for t, _ in points), default=0.0)
    t1 = max((t for t, _ in points), default=1.0)
    if t1 <= t0:
        t0, t1 = t0 - 1.0, t0 + 1.0
    top_value = max([v for _, v in points] + ([limit] if limit else []) + [1e-9])

    def x(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * w

    def y(v: float) -> float:
        return top + h - v / top_value * h

    parts = [f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="#fff" stroke="#bbb"/>']
    for frac in (0.0, 0.5, 1.0):
        v = top_value * frac
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" font-size="11" text-anchor="end">{v:.3g}</text>')
    parts.append(f'<text x="{left}" y="{height - 6}" font-size="11">{esc(utc(t0))}</text>')
    parts.append(f'<text x="{left + w}" y="{height - 6}" font-size="11" text-anchor="end">{esc(utc(t1))}</text>')
    if limit:
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{y(limit):.1f}" y2="{y(limit):.1f}" stroke="#a11" '
                     f'stroke-dasharray="5,4"/><text x="{left + w + 6}" y="{y(limit) + 4:.1f}" font-size="11" '
                     f'fill="#a11">budget {limit:g}</text>')
    for i, (label, pts) in enumerate(sorted(series.items())):
        color = PALETTE[i % len(PALETTE)]
        path, last = [], 0.0
        for t, v in sorted(pts):
            path.append(f"{x(t):.1f},{y(last):.1f} {x(t):.1f},{y(v):.1f}")
            last = v
        path.append(f"{left + w:.1f},{y(last):.1f}")
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(path)}"/>')
        ly = top + 30 + 16 * i
        parts.append(f'<rect x="{left + w + 6}" y="{ly - 9}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{left + w + 20}" y="{ly}" font-size="11">{esc(label)}</text>')
    title = tag("title", y_label) if y_label else Markup("")
    return Markup(f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
                  f'viewBox="0 0 {width} {height}">{title}{"".join(parts)}</svg>')
