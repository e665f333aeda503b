"""The console's read-only pages: queries, privacy budget, policies, audit chain (and its export).

Each reads this party's own records only: its audit chain (which holds SQL texts, plan hashes,
leakage lines and outcomes, never a row value or an un-noised DP value: fedsql/audit.py), its
DP ledger (ε and δ spent, per issuer and table), its configuration and its tables' public schemas.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

from fedsql.console.audit_index import OUTCOMES, Filters, QueryRecord, utc
from fedsql.console.html import Markup, esc, join, line_chart, table, tag
from fedsql.console.registry import BadRequest, Page, Reply, View, register_page

PAGE_SIZE = 50
ROLES = ("issuer", "participant")


# -- queries ------------------------------------------------------------------------------


def _date(view: View, name: str) -> float | None:
    text = view.query.get(name, "").strip()
    if not text:
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        raise BadRequest(f"the date '{name}' must be written YYYY-MM-DD (UTC), e.g. 2026-12-31; "
                         f"got {text[:40]!r}") from None
    return (day + timedelta(days=1) if name == "to" else day).timestamp()


def _choice(view: View, name: str, allowed: tuple[str, ...] | list[str]) -> str:
    value = view.query.get(name, "")
    if value and value not in allowed:
        raise BadRequest(f"'{name}' must be one of {', '.join(allowed)} (or empty for all); got {value[:40]!r}")
    return value


def filters_of(view: View) -> tuple[Filters, int]:
    """The list's filters and page number from the query string; BadRequest says what is wrong."""
    page_text = view.query.get("page", "1")
    if not page_text.isdigit() or not 1 <= int(page_text) <= 10 ** 7:
        raise BadRequest(f"'page' must be a positive number; got {page_text[:20]!r}")
    issuers = sorted(view.console.fed.parties)
    f = Filters(text=view.query.get("q", "")[:500], issuer=_choice(view, "issuer", issuers),
                outcome=_choice(view, "outcome", OUTCOMES), role=_choice(view, "role", ROLES),
                since=_date(view, "from"), until=_date(view, "to"))
    return f, int(page_text)


def _select(name: str, options: list[str], current: str) -> Markup:
    opts = tag("option", "all", value="") + join(
        tag("option", o, value=o, selected=o == current) for o in options)
    return tag("select", opts, name=name)


def _revealed(rec: QueryRecord) -> Markup:
    """The leakage lines and this party's reveal steps, to whom; folded (no script: <details>)."""
    if not rec.leakage and not rec.revealed:
        return esc("nothing (refused before it ran)" if rec.outcome == "refused" else "nothing beyond the result")
    items = [tag("li", line if isinstance(line, str) else str(line)) for line in rec.leakage]
    items += [tag("li", f"step {r.get('step')}: {r.get('what')} → {', '.join(map(str, r.get('to') or []))}")
              for r in rec.revealed]
    summary = f"{len(rec.leakage)} leakage line(s), {len(rec.revealed)} step(s) from this party"
    return tag("details", tag("summary", summary) + tag("ul", join(items)))


def _sql(rec: QueryRecord) -> Markup:
    short = rec.sql if len(rec.sql) <= 240 else rec.sql[:240] + "…"
    body = tag("pre", short)
    if short != rec.sql:
        body = tag("details", tag("summary", tag("pre", short)) + tag("pre", rec.sql))
    return body


def _outcome(rec: QueryRecord) -> Markup:
    cls = {"done": "ok", "failed": "bad", "refused": "bad"}.get(rec.outcome)
    text = tag("span", rec.outcome, class_=cls)
    if rec.error_kind or rec.error_message:
        text += tag("details", tag("summary", rec.error_kind or "error") + tag("pre", rec.error_message or ""))
    elif rec.rows is not None:
        text += esc(f" ({rec.rows} row{'' if rec.rows == 1 else 's'})")
    return text


def queries(view: View) -> Markup:
    f, page_no = filters_of(view)
    index = view.console.index
    found, total = index.search(f, (page_no - 1) * PAGE_SIZE, PAGE_SIZE)
    q = view.query
    form = tag("form", join([
        tag("label", esc("text (SQL, id, user, hash)") + tag("input", "", name="q", value=q.get("q", ""), size="28")),
        tag("label", esc("issuer") + _select("issuer", sorted(view.console.fed.parties), f.issuer)),
        tag("label", esc("outcome") + _select("outcome", list(OUTCOMES), f.outcome)),
        tag("label", esc("role here") + _select("role", list(ROLES), f.role)),
        tag("label", esc("from (UTC)") + tag("input", "", type="date", name="from", value=q.get("from", ""))),
        tag("label", esc("to (UTC)") + tag("input", "", type="date", name="to", value=q.get("to", ""))),
        tag("button", "search", type="submit"),
    ]), method="get", action="/queries", class_="filters")
    rows = [(utc(r.time), r.issuer, r.user or "", r.role, _sql(r), tag("code", (r.plan_hash or "")[:16],
                                                                         title=r.plan_hash or ""),
             _revealed(r), _outcome(r), "—" if r.duration is None else f"{r.duration:.3f} s") for r in found]
    pages = max(1, -(-total // PAGE_SIZE))
    keep = {k: v for k, v in q.items() if k != "page" and v}

    def link(n: int, label: str) -> Markup:
        return tag("a", label, href="/queries?" + urlencode({**keep, "page": n}))

    pager = tag("p", join(([link(page_no - 1, "← newer")] if page_no > 1 else [])
                          + [esc(f"page {page_no} of {pages} · {total} queries ")]
                          + ([link(page_no + 1, "older →")] if page_no < pages else [])), class_="pager")
    intro = tag("p", "Every query this node took part in, newest first, as its audit chain recorded it: "
                     "the issuer, its user, the SQL, the plan hash every party agreed on, what the plan "
                     "revealed and to whom, the outcome and the duration. No result values are recorded.",
                class_="muted")
    return intro + form + pager + table(["when", "issuer", "user", "role here", "SQL", "plan hash",
                                         "revealed (to whom)", "outcome", "duration"], rows,
                                        empty="no query matches") + pager


# -- privacy budget -----------------------------------------------------------------------


def budget(view: View) -> Markup:
    from fedsql.budget_cli import budget_rows, ledger_path_of
    from fedsql.ledger import Ledger

    console = view.console
    rows = budget_rows(console.fed, console.party)
    path = ledger_path_of(console.fed, console.party)
    if not rows:
        return tag("p", f"No table of {console.party} declares a DP policy ([parties.{console.party}.tables.T.dp], "
                        "docs/dp.md) and no spend is recorded.")

    def num(v: float | None) -> str:
        return "—" if v is None else f"{v:.6g}"

    body = table(["issuer", "table", "ε spent", "ε budget", "ε left", "δ spent", "δ budget", "queries"],
                 [(r.issuer, r.table, num(r.epsilon_spent), num(r.epsilon_budget), num(r.epsilon_left),
                   num(r.delta_spent), num(r.delta_budget), str(r.queries)) for r in rows])
    entries = []
    if path.exists():
        with Ledger(path) as led:
            entries = led.entries()
    limits = {r.table: r.epsilon_budget for r in rows}
    charts = []
    for name in sorted({r.table for r in rows}):
        series: dict[str, list[tuple[float, float]]] = {}
        totals: dict[str, float] = {}
        for e in entries:
            if e.table == name:
                totals[e.issuer] = totals.get(e.issuer, 0.0) + e.epsilon
                series.setdefault(e.issuer, []).append((e.time, totals[e.issuer]))
        chart = line_chart(series, limit=limits.get(name), y_label=f"cumulative ε spent on {name}")
        charts.append(tag("div", tag("h2", f"{name}: cumulative ε spent per issuer") + chart
                          + (Markup("") if series else tag("p", "no spend yet", class_="muted")), class_="box"))
    return (tag("p", f"Spends are charged to {console.party}'s ledger before its shares are used; a query "
                     "over budget is refused. Only ε and δ are recorded, never a value.", class_="muted")
            + body + join(charts))


# -- policies -----------------------------------------------------------------------------


def policies(view: View) -> Markup:
    console = view.console
    fed, me = console.fed, console.party
    cfg = fed.party(me)
    if not cfg.tables:
        return tag("p", f"{me} is a helper: it owns no tables, so no policy applies to its data.")
    others = sorted(p for p in fed.parties if p != me)
    out = [tag("p", "The level each other party gets for each column, grants applied, as every node's "
                    "planner computes it from the federation file; columns not listed there are private. "
                    f"{me}'s own queries over its own tables are unrestricted.", class_="muted")]
    for name, t in sorted(cfg.tables.items()):
        columns = list(t.levels)
        schema_note = Markup("")
        if console.schema_of is not None:
            try:
                read = [c for c, _ in console.schema_of(name)]
                columns = read + [c for c in t.levels if c not in read]
            except Exception as exc:  # noqa: BLE001 - a source that cannot be read now: say so, show the config
                schema_note = tag("p", f"(the table's schema cannot be read now: {type(exc).__name__}; "
                                       "showing the configured columns only)", class_="muted")
        rows = [[c, t.levels.get(c, "private")] + [t.level(c, o) for o in others] for c in columns]
        unions = [f for f, ft in sorted(fed.federated.items()) if (me, name) in ft.members]
        facts = [f"source: {t.format}" + (f", relation {t.relation}" if t.relation else "")]
        if t.unique:
            facts.append("unique keys: " + "; ".join(", ".join(k) for k in t.unique))
        if unions:
            facts.append("member of the federated union(s): " + ", ".join(unions))
        dp = Markup("")
        if t.dp is not None:
            c = t.dp.canonical()
            dp = tag("h2", f"{me}.{name}: differential privacy") + table(
                ["setting", "value"], [(k, str(v)) for k, v in c.items()])
        out.append(tag("div", tag("h2", f"{me}.{name}") + tag("p", " · ".join(facts)) + schema_note
                       + table(["column", "default level"] + [f"level for {o}" for o in others], rows)
                       + dp, class_="box"))
    return join(out)


# -- audit chain --------------------------------------------------------------------------


def audit(view: View) -> Markup:
    console = view.console
    path = console.audit_path
    if not path.exists():
        return tag("p", "The audit log has no entry yet (the node writes one per query).")
    checked, running = console.verifier.status()
    console.index.refresh()
    if checked is None:
        status = tag("p", "Verifying the chain (a long chain takes a few seconds); reload this page.")
    elif checked.result is None:
        status = tag("p", tag("span", "cannot verify", class_="bad") + esc(f": {checked.error}"))
    elif checked.result.ok:
        result = checked.result
        status = tag("p", tag("span", "chain intact", class_="ok")
                     + esc(f": {result.lines} entries; last hash ") + tag("code", result.last_hash)) + tag(
            "p", esc("Anchor to note elsewhere: ") + tag("code", f"{result.lines}:{result.last_hash}"))
    else:
        result = checked.result
        status = tag("p", tag("span", "chain broken", class_="bad")
                     + esc(f" at line {result.broken_line}: {result.problem}. Entries up to line "
                           f"{(result.broken_line or 1) - 1} verify; keep a copy of the file and investigate."))
    if checked is not None:
        status += tag("p", f"Checked {utc(checked.at)} over the whole file"
                      + ("; newer entries are being checked now (reload)" if running else "") + ".",
                      class_="muted")
    others = console.index.other_events
    other = (tag("p", "Other entries: " + ", ".join(f"{k} × {n}" for k, n in sorted(others.items())))
             if others else Markup(""))
    how = tag("div", join([
        tag("h2", "Export for offline verification"),
        tag("p", join([tag("a", "Download the chain (JSON Lines)", href="/audit/export.jsonl"),
                       esc(" — every entry up to now, as the node wrote it.")])),
        tag("p", "Anyone with fedsql installed can check a copy without access to this node:"),
        tag("pre", "fedsql audit verify chain.jsonl\n"
                   "# optional: the chain must contain an entry you noted earlier (an anchor)\n"
                   "fedsql audit verify chain.jsonl --anchor SEQ:HASH"),
        tag("p", "It prints the number of entries and the last hash, or the first broken line. Note the last "
                 "hash in another system from time to time: an edit of the file that rewrites every later "
                 "line cannot then go unnoticed.", class_="muted"),
    ]), class_="box")
    return tag("div", status + other, class_="box") + how


def export(view: View) -> Reply:
    """The chain's bytes up to the last complete line (a line being written is left out)."""
    path = view.console.audit_path
    data = path.read_bytes() if path.exists() else b""
    data = data[:data.rfind(b"\n") + 1]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Reply(body=data, content_type="application/jsonl",
                 headers={"Content-Disposition": f'attachment; filename="{view.console.party}-audit-{stamp}.jsonl"'})


register_page(Page("/queries", "Queries", queries, order=10))
register_page(Page("/budget", "Privacy budget", budget, order=20))
register_page(Page("/policies", "Policies", policies, order=30))
register_page(Page("/audit", "Audit chain", audit, order=40))
register_page(Page("/audit/export.jsonl", "Audit export", export, order=41, in_nav=False))

