"""The console's approvals page: the queries held for this party's approval, approve or reject.

The page reads and decides through the same store and the same `decide` as `fedsql approve|reject`
(fedsql/approvals_cli.py), so both apply one set of checks; the decision's author is the logged-in
console account ("NAME (console)"). Only an account with the role `approver` decides: the party's
accounts are also its analysts' Flight SQL logins, and an analyst must not approve other parties'
queries over the owner's data (docs/decisions.md D-APPROVALS: the approver is the owner's operator);
others see the requests without the form. The node notices the decision within a second, answers the
waiting issuer and writes it into the audit chain (fedsql/approval_gate.py).
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from fedsql import errors
from fedsql.approvals import ApprovalStore, store_path
from fedsql.approvals_cli import decide
from fedsql.console.audit_index import utc
from fedsql.console.html import Markup, esc, hidden, join, table, tag
from fedsql.console.registry import BadRequest, Forbidden, Page, View, redirect, register_page

MAX_REASON = 500
APPROVER_ROLE = "approver"
"""The account role that may approve or reject in the console (`fedsql user roles … --role approver`)."""


def may_decide(view: View) -> bool:
    """Whether the logged-in account has the approver role (read now: a role change acts at once)."""
    return APPROVER_ROLE in view.console.accounts.roles(view.user)


def _not_approver(view: View) -> str:
    c = view.console
    return (f"account '{view.user}' may see these requests but not decide them: only an account with the role "
            f"'{APPROVER_ROLE}' approves or rejects (`fedsql user roles {c.fed.path} --party {c.party} {view.user} "
            f"--role {APPROVER_ROLE}`), or use `fedsql approve|reject` at the node")


def _held_tables(view: View) -> list[str]:
    cfg = view.console.fed.party(view.console.party)
    return [name for name, t in cfg.tables.items() if t.approval != "auto"]


def _store(view: View) -> ApprovalStore:
    return ApprovalStore(store_path(view.console.fed.path, view.console.party))


def _form(view: View, key: str, mode: str) -> Markup:
    """One request's decision form: a reason, approve or reject; for a template table also
    'approve this shape' with an expiry and an ε cap."""
    fields = [hidden("csrf", view.csrf), hidden("key", key),
              tag("label", esc("reason ") + Markup('<input name="reason" maxlength="500" size="40">'))]
    if mode == "template":
        fields.append(tag("label", Markup('<input type="checkbox" name="template" value="1"> ')
                          + esc("approve this shape for later queries, expires after ")
                          + Markup('<input name="expires" size="5" placeholder="7d">')
                          + esc(", max ε ") + Markup('<input name="max_epsilon" size="5">')))
    fields.append(tag("button", "approve", type="submit", name="action", value="approve"))
    fields.append(tag("button", "reject", type="submit", name="action", value="reject"))
    return tag("form", join(fields, " "), method="post", action="/approvals")


def approvals(view: View) -> Markup:
    held = _held_tables(view)
    me = view.console.party
    if not held:
        return tag("p", f"No table of {me} needs approval: every query that reads them runs without asking "
                        "(approval = \"auto\"). Set approval = \"manual\" or \"template\" on [parties."
                        f"{me}] or on a table to hold queries here (docs/configuration.md, approvals).")
    with _store(view) as store:
        store.expire()
        pending = store.pending()
        templates = store.templates()
    out = []
    decides = may_decide(view)
    if not decides:
        out.append(tag("p", _not_approver(view), class_="muted"))
    if view.query.get("done"):
        out.append(tag("p", view.query["done"], class_="ok"))
    out.append(tag("p", f"Tables held for approval: {', '.join(f'{me}.{t}' for t in held)}. "
                        f"{len(pending)} {'query waits' if len(pending) == 1 else 'queries wait'}."))
    for r in pending:
        facts = table(["", "request"], [
            ("issuer", r.issuer + (f" (user {r.user})" if r.user else "")),
            ("asked", utc(r.created_at)), ("expires", utc(r.expires_at)),
            ("tables", ", ".join(f"{me}.{t}" for t in r.tables) + f" (approval = {r.mode})"),
            ("plan hash", tag("code", r.plan_hash)),
            ("ε charged to " + me, f"{r.epsilon:g}" if r.epsilon else "none"),
            ("reveals", join([tag("div", line) for line in r.leakage]) if r.leakage else "nothing beyond the result"),
        ])
        out.append(tag("div", tag("h2", r.key) + tag("pre", r.sql) + facts
                       + (_form(view, r.key, r.mode) if decides else Markup("")),
                       class_="box"))
    if templates:
        now = time.time()
        rows = [(t.id, t.issuer, "revoked" if t.revoked else "expired" if t.expires_at and t.expires_at <= now
                 else "live", "none" if t.max_epsilon is None else f"{t.max_epsilon:g}",
                 utc(t.expires_at) if t.expires_at else "never", t.created_by, tag("code", t.shape))
                for t in templates]
        out.append(tag("div", tag("h2", "Templates") + table(
            ["id", "issuer", "state", "max ε", "expires", "approved by", "shape"], rows), class_="box"))
    return join(out)


def decide_from_form(view: View):
    if not may_decide(view):
        raise Forbidden(_not_approver(view))
    form = view.form
    action = form.get("action", "")
    if action not in ("approve", "reject"):
        raise BadRequest("choose approve or reject")
    key = form.get("key", "")
    if "/" not in key:
        raise BadRequest("the form names no pending query; reload the page")
    reason = form.get("reason", "").strip()
    if len(reason) > MAX_REASON:
        raise BadRequest(f"the reason is {len(reason)} characters long; the limit is {MAX_REASON}")
    template = form.get("template") == "1" and action == "approve"
    epsilon_text = form.get("max_epsilon", "").strip()
    try:
        max_epsilon = float(epsilon_text) if template and epsilon_text else None
    except ValueError:
        raise BadRequest(f"max ε {epsilon_text!r} is not a number") from None
    expires = (form.get("expires", "").strip() or None) if template else None
    if not _held_tables(view):
        raise BadRequest("no table of this party needs approval")
    try:
        with _store(view) as store:
            if not store.find(key):
                raise BadRequest(f"query {key} is no longer pending (decided, cancelled or expired); reload the page")
            done = decide(store, view.console.party, key, action == "approve", by=f"{view.user} (console)",
                          reason=reason or None, template=template, expires=expires, max_epsilon=max_epsilon)
    except errors.Error as exc:
        raise BadRequest(str(exc)) from None
    return redirect("/approvals?" + urlencode({"done": done}))


register_page(Page("/approvals", "Approvals", approvals, post=decide_from_form, order=15))
