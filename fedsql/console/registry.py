"""The console's pages: a registry the server routes by, so a feature adds its page without
touching the server.

A page is a path, a title for the navigation, a GET handler and optionally a POST handler. The
server checks the session and the CSRF token before any handler runs, and escapes nothing itself:
handlers return `Markup` built with fedsql/console/html.py (escaped by default) or a `Reply`.

A feature adds its page in a module of its own that calls `register_page(Page(path, title, get,
post=…, order=…))` at import and is named in `PAGE_MODULES` (fedsql/console/approvals.py does so).
A POST handler gets `view.form` only after the CSRF check, and `view.user` is the logged-in account.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from fedsql.console.server import Console

PAGE_MODULES: tuple[str, ...] = ("fedsql.console.pages", "fedsql.console.approvals")
"""Modules whose import registers pages."""


@dataclass
class Reply:
    """A response other than an HTML page of status 200: a status, a body, its type, headers."""

    body: bytes | str = b""
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def redirect(location: str) -> Reply:
    """303 See Other: after a POST the browser GETs `location` (a reload does not post again)."""
    return Reply(status=303, headers={"Location": location})


@dataclass
class View:
    """What a handler gets: the console (configuration, audit index, paths), the logged-in user,
    the query string and, for POST, the form fields (first value of each; CSRF already checked)."""

    console: "Console"
    user: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    csrf: str


class BadRequest(Exception):
    """A handler's answer to bad input: the server shows the message with status 400."""

    status = 400
    title = "Bad request"


class Forbidden(BadRequest):
    """A handler's refusal of what this account may not do: the message with status 403."""

    status = 403
    title = "Refused"


Handler = Callable[[View], Any]


@dataclass(frozen=True)
class Page:
    path: str
    title: str
    get: Handler
    post: Handler | None = None
    order: int = 100
    in_nav: bool = True


_PAGES: dict[str, Page] = {}


def register_page(page: Page) -> None:
    """Add a page; a second page at the same path is a programming error."""
    if not page.path.startswith("/") or page.path in ("/login", "/logout", "/"):
        raise ValueError(f"page path {page.path!r} must start with / and not be a reserved path")
    existing = _PAGES.get(page.path)
    if existing is not None and existing != page:
        raise ValueError(f"two console pages at {page.path}")
    _PAGES[page.path] = page


def pages() -> list[Page]:
    """Every registered page (the modules in PAGE_MODULES imported first), in navigation order."""
    for name in PAGE_MODULES:
        importlib.import_module(name)
    return sorted(_PAGES.values(), key=lambda p: (p.order, p.path))


def console_url(party_config: Any) -> str:
    """The address the owner opens: http://127.0.0.1:8088/ or https://host:port/."""
    return f"{'https' if party_config.console_tls else 'http'}://{party_config.console}/"
