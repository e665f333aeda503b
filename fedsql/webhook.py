"""The owner's webhook: a POST to the owner's own chat or ticket system when a query waits for its
approval, when an approval is rejected or expires, and when this node refuses a query.

The URL is the owner's secret (chat webhooks carry a token in it), so it never sits in the shared
federation file: `FEDSQL_WEBHOOK_<PARTY>` in the node's environment, or in the party's private
secrets file (mode 0600):

    # <config dir>/.fedsql/<party>/secrets.toml
    [webhook]
    url = "https://chat.example.org/hooks/…"

https:// anywhere, http:// only to a loopback address. The JSON body carries identifiers only —
event, party, issuer, user, query id, tables, plan hash, decision, error kind, time and the console
address — never SQL text, messages or values: the console and the audit chain hold the details.
Delivery runs in one background thread, 5 s per attempt, three attempts; it never delays a query,
and a failure is logged (status or error class only).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from fedsql.config import is_loopback
from fedsql.errors import ConfigError

log = logging.getLogger("fedsql.webhook")

EVENTS = ("approval_requested", "approval", "refused")
"""Audit events that call the webhook (an `approval` only when rejected or expired)."""
FIELDS = ("query_id", "issuer", "user", "role", "tables", "plan_hash", "decision", "decided_by", "approval",
          "expires_at", "reason")
"""What of an audit entry the webhook carries; `reason` only as the refusal's kind (see `_payload`)."""
ATTEMPTS = (0.0, 1.0, 4.0)
TIMEOUT = 5.0
MAX_QUEUED = 1000


def env_name(party: str) -> str:
    return "FEDSQL_WEBHOOK_" + re.sub(r"[^A-Z0-9]", "_", party.upper())


def webhook_url(state_dir: Path, party: str) -> str | None:
    """The party's webhook URL (checked), or None when it has none."""
    from connectors.sources.secrets import SECRETS_FILE, read_secrets_file

    url = os.environ.get(env_name(party))
    where = env_name(party)
    if url is None:
        path = state_dir / SECRETS_FILE
        if not path.exists():
            return None
        section = read_secrets_file(path).get("webhook")
        if section is None:
            return None
        if not isinstance(section, dict) or set(section) != {"url"} or not isinstance(section["url"], str):
            raise ConfigError(f'{path}: [webhook] must hold exactly url = "https://…"')
        url, where = section["url"], f"{path} [webhook]"
    check_url(url, where)
    return url


def check_url(url: str, where: str) -> None:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"{where}: the webhook must be an https:// URL (http:// only to a loopback address)")
    if parsed.scheme == "http" and not is_loopback(parsed.hostname):
        raise ConfigError(f"{where}: http:// would send the notifications in clear text to {parsed.hostname}; "
                          "use https://, or a loopback address for a local relay")


class Webhook:
    """Queues notifications and posts them from one daemon thread, in order."""

    def __init__(self, url: str, party: str, federation: str, console: str | None = None) -> None:
        self.url, self.party, self.federation, self.console = url, party, federation, console
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=MAX_QUEUED)
        self._thread = threading.Thread(target=self._run, name="fedsql-webhook", daemon=True)
        self._thread.start()
        self.sent = 0

    def notify(self, event: str, entry: dict[str, Any]) -> None:
        """Called with every audit entry the node writes; posts those that need the owner."""
        if event not in EVENTS or (event == "approval" and entry.get("decision") not in ("rejected", "expired")):
            return
        try:
            self._queue.put_nowait(self._payload(event, entry))
        except queue.Full:
            log.warning("webhook queue full (%d notifications waiting); dropped one %s notification", MAX_QUEUED,
                        event)

    def _payload(self, event: str, entry: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"event": "approval_pending" if event == "approval_requested" else
                                "approval_" + str(entry.get("decision")) if event == "approval" else "query_refused",
                                "party": self.party, "federation": self.federation,
                                "time": entry.get("time", round(time.time(), 3))}
        for key in FIELDS:
            if key in entry and entry[key] is not None:
                body[key] = entry[key]
        if event == "refused":  # the refusal's kind, never its message (a message may quote a literal)
            body["reason"] = entry.get("reason") or (entry.get("error") or {}).get("kind") or "refused"
        elif event == "approval":
            body.pop("reason", None)  # the owner's own words stay in its audit chain and console
        if self.console:
            body["console"] = self.console
        return body

    def close(self, timeout: float = 2.0) -> None:
        """Let queued notifications go for up to `timeout` seconds, then stop."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            body = self._queue.get()
            if body is None:
                return
            data = json.dumps(body, sort_keys=True).encode()
            for delay in ATTEMPTS:
                time.sleep(delay)
                request = urllib.request.Request(self.url, data=data, method="POST",
                                                 headers={"Content-Type": "application/json",
                                                          "User-Agent": "fedsql-webhook"})
                try:
                    with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:
                        if 200 <= resp.status < 300:
                            self.sent += 1
                            break
                        problem = f"HTTP {resp.status}"
                except urllib.error.HTTPError as exc:
                    problem = f"HTTP {exc.code}"
                except (OSError, ValueError) as exc:
                    problem = type(exc).__name__
                log.warning("webhook %s notification not delivered (%s)", body["event"], problem)
