"""`fedsql approvals|approve|reject CONFIG --party P …`: an owner decides on held queries.

The commands act on the owner's approvals store in its private state directory
(fedsql/approvals.py), next to a running node: the node sees a decision within a fraction of a
second (its held `Authorize` calls poll the store), answers the waiting issuer, and writes the
decision — who, why, for which plan hash — into its audit chain (fedsql/approval_gate.py).
"""

from __future__ import annotations

import getpass
import sys
import time
from datetime import datetime, timezone
from typing import TextIO

from fedsql import errors
from fedsql.approvals import ApprovalStore, Request, parse_duration, store_path


def _when(t: float | None) -> str:
    if t is None:
        return "never"
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _open(config_path: str, party: str) -> tuple[ApprovalStore, object]:
    from fedsql.config import load_config

    fed = load_config(config_path)
    cfg = fed.party(party)
    held = [t for t, tc in cfg.tables.items() if tc.approval != "auto"]
    if not held:
        raise errors.InterfaceError(
            f"no table of party '{party}' needs approval; set approval = \"manual\" or \"template\" on "
            f"[parties.{party}] or on its tables in {fed.path} (docs/configuration.md#approvals)")
    return ApprovalStore(store_path(fed.path, party)), fed


def run_list(config_path: str, party: str, *, out: TextIO | None = None) -> int:
    """Print the pending requests (oldest first) and the templates of `party`."""
    out = out or sys.stdout
    store, fed = _open(config_path, party)
    with store:
        store.expire()
        pending = store.pending()
        templates = store.templates()
    print(f"approvals of party {party} (federation {fed.name}): {len(pending)} pending", file=out)
    for r in pending:
        print(f"\n{r.key}", file=out)
        print(f"  issuer:    {r.issuer}" + (f" (user {r.user})" if r.user else ""), file=out)
        print(f"  asked:     {_when(r.created_at)}; expires {_when(r.expires_at)}", file=out)
        print(f"  tables:    {', '.join(f'{party}.{t}' for t in r.tables)} (approval = \"{r.mode}\")", file=out)
        print(f"  plan hash: {r.plan_hash}", file=out)
        if r.epsilon:
            print(f"  epsilon:   {r.epsilon:g} charged to {party}", file=out)
        if r.note:
            print(f"  note:      {r.note}", file=out)
        print(f"  sql:       {r.sql}", file=out)
        if r.mode == "template":
            print(f"  shape:     {r.shape}", file=out)
        for line in r.leakage:
            print(f"  reveals:   {line}", file=out)
    if templates:
        print("\ntemplates:", file=out)
        for t in templates:
            state = "revoked" if t.revoked else ("expired" if t.expires_at and t.expires_at <= time.time() else "live")
            cap = f"max epsilon {t.max_epsilon:g}" if t.max_epsilon is not None else "no epsilon cap"
            print(f"  {t.id} [{state}] issuer {t.issuer}, {cap}, expires {_when(t.expires_at)}, by {t.created_by}: "
                  f"{t.shape}", file=out)
    return 0


def _one_pending(store: ApprovalStore, party: str, query_id: str) -> Request:
    found = store.find(query_id)
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        keys = ", ".join(r.key for r in found)
        raise errors.InterfaceError(f"several issuers sent query id {query_id!r}: {keys}; name one as ISSUER/ID")
    decided = store.find(query_id, status=None)
    if decided:
        r = decided[-1]
        raise errors.InterfaceError(f"query {r.key} is not pending at '{party}': it is {r.status}"
                                    + (f" ({r.decided_by}: {r.reason})" if r.decided_by else ""))
    raise errors.InterfaceError(f"no pending query {query_id!r} at '{party}'; `fedsql approvals CONFIG --party "
                                f"{party}` lists them")


def decide(store: ApprovalStore, party: str, query_id: str, approve: bool, *, by: str, reason: str | None = None,
           template: bool = False, expires: str | None = None, max_epsilon: float | None = None) -> str:
    """Approve or reject one pending query (with `template`: also approve its shape); returns what was
    done. One function for the CLI and the owner's console, so both apply the same checks."""
    if not template and (expires is not None or max_epsilon is not None):
        raise errors.InterfaceError("--expires and --max-epsilon describe a template: add --template")
    if max_epsilon is not None and not max_epsilon > 0:
        raise errors.InterfaceError(f"--max-epsilon {max_epsilon:g}: expected a positive number")
    store.expire()
    req = _one_pending(store, party, query_id)
    tid = None
    if template:
        if req.mode != "template":
            raise errors.InterfaceError(
                f"query {req.key} reads a table with approval = \"manual\" ({req.note}); approve it alone, "
                "without --template")
        if max_epsilon is not None and req.epsilon > max_epsilon:
            raise errors.InterfaceError(f"query {req.key} itself spends epsilon {req.epsilon:g}, above "
                                        f"--max-epsilon {max_epsilon:g}; raise the cap or approve it alone")
        until = time.time() + parse_duration(expires) if expires else None
        tid = store.add_template(req, by, reason or "", max_epsilon, until).id
    status = "approved" if approve else "rejected"
    if not store.decide(req.key, status, by, reason or ("" if approve else "no reason given"), tid):
        raise errors.InterfaceError(f"query {req.key} was decided or expired meanwhile; see `fedsql approvals`")
    return (f"{status} query {req.key} (plan {req.plan_hash[:16]}…) as {by}"
            + (f"; template {tid} approves its shape for {req.issuer}" if tid else ""))


def run_decide(config_path: str, party: str, query_id: str, approve: bool, *, reason: str | None = None,
               by: str | None = None, template: bool = False, expires: str | None = None,
               max_epsilon: float | None = None, out: TextIO | None = None) -> int:
    """`fedsql approve|reject`: `decide` on the party's store, as the OS user unless --by names one."""
    store, _ = _open(config_path, party)
    with store:
        done = decide(store, party, query_id, approve, by=by or getpass.getuser(), reason=reason, template=template,
                      expires=expires, max_epsilon=max_epsilon)
    print(done, file=out or sys.stdout)
    return 0


def run_revoke(config_path: str, party: str, template_id: str, *, out: TextIO | None = None) -> int:
    """Revoke a template: later queries of its shape wait again."""
    out = out or sys.stdout
    store, _ = _open(config_path, party)
    with store:
        if not store.revoke(template_id):
            known = ", ".join(t.id for t in store.templates() if not t.revoked) or "none"
            raise errors.InterfaceError(f"no live template {template_id!r} at '{party}' (live: {known})")
    print(f"revoked template {template_id}", file=out)
    return 0
