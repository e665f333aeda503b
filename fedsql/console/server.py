"""The owner's console: an HTTP(S) server inside a party's node, serving the pages of the registry.

`console = "127.0.0.1:8088"` (plain HTTP, loopback only) or `console = "https://HOST:PORT"` (TLS
with the node's certificate) in `[parties.NAME]` turns it on (docs/configuration.md). The standard
library's ThreadingHTTPServer serves it (docs/decisions.md, "Owner's console").

What every request goes through, in order (docs/security.md, "The owner's console"):
- at most MAX_CONNECTIONS at once, each with a socket timeout (a slow client cannot hold it);
- on plain HTTP, a Host header naming a loopback name (DNS rebinding: a web page whose name
  resolves to 127.0.0.1 gets nothing from this server);
- no account of the party → a page saying how to create one, and nothing else;
- login with the party's accounts (fedsql/users.py: scrypt, the same lockout as Flight SQL's
  password endpoint, shared with it inside one node); the session is a random token in an
  HttpOnly, SameSite=Strict cookie (Secure, and `__Host-`, over TLS);
- every POST carries a CSRF token (an HMAC of the session under a per-process key), checked
  before any handler runs, and only form-encoded bodies up to MAX_BODY bytes are read;
- every answer forbids scripts, framing, caching and outside resources (SECURITY_HEADERS).
Request lines are not logged (a search text is the owner's business); errors are logged without
the query string.
"""

from __future__ import annotations

import hashlib
import hmac
import http.cookies
import logging
import secrets
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import parse_qs, urlsplit

from fedsql import errors
from fedsql.config import Federation, is_loopback
from fedsql.console.audit_index import AuditIndex
from fedsql.console.html import Markup, esc, hidden, page, tag
from fedsql.console.registry import BadRequest, Page, Reply, View, pages, redirect
from fedsql.console.verification import ChainVerifier
from fedsql.users import Accounts, Authenticator, LoginThrottle

log = logging.getLogger("fedsql.console")

MAX_CONNECTIONS = 32
REQUEST_TIMEOUT = 15.0
MAX_BODY = 16 * 1024
LOGIN_SLOTS = 4
"""Password checks at once: scrypt takes 32 MiB each (fedsql/users.py); more logins wait for a slot."""
SESSION_SECONDS = 3600.0

SECURITY_HEADERS = {
    # no script at all, nothing from elsewhere; inline <style> and inline SVG only
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class Console:
    """The console's state: configuration, accounts and sessions, the audit index, paths."""

    def __init__(self, fed: Federation, party: str, *, schema_of: Callable[[str], Any] | None = None,
                 throttle: LoginThrottle | None = None, session_seconds: float = SESSION_SECONDS) -> None:
        from fedsql.audit import audit_path

        cfg = fed.party(party)
        self.fed, self.party = fed, party
        self.tls = cfg.console_tls
        self.audit_path: Path = audit_path(fed, party)
        self.index = AuditIndex(self.audit_path)
        self.verifier = ChainVerifier(self.audit_path)
        self.accounts = Accounts.of(fed, party)
        self.auth = Authenticator(self.accounts, token_ttl=session_seconds, throttle=throttle)
        self.schema_of = schema_of
        self.login_slots = threading.BoundedSemaphore(LOGIN_SLOTS)
        self._key = secrets.token_bytes(32)  # CSRF tokens die with the process, as sessions do
        prefix = "__Host-" if self.tls else ""
        self.session_cookie = f"{prefix}fedsql-console-{party}"  # the party in the name: consoles of
        self.login_cookie = f"{prefix}fedsql-login-{party}"      # several parties on one host coexist

    def csrf(self, purpose: str, value: str) -> str:
        return hmac.new(self._key, f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()

    def cookie(self, name: str, value: str, max_age: int | None = None) -> str:
        attrs = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Strict"]
        if self.tls:
            attrs.append("Secure")
        if max_age is not None:
            attrs.append(f"Max-Age={max_age}")
        return "; ".join(attrs)


class ConsoleServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with a bound on connections, per-connection timeouts and TLS handshakes in
    the connection's own thread (a client that never finishes its handshake blocks nobody)."""

    daemon_threads = True
    allow_reuse_address = False  # a second console on the same port must fail, not share it

    def __init__(self, address: tuple[str, int], console: Console, ssl_context: ssl.SSLContext | None,
                 allowed_hosts: set[str] | None) -> None:
        self.console, self.ssl_context, self.allowed_hosts = console, ssl_context, allowed_hosts
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        host = self.server_address[0]
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.ssl_context else 'http'}://{host}:{self.port}/"

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # busy: refuse at once rather than queue without bound
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(REQUEST_TIMEOUT)
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        try:
            tls_sock = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # not TLS, a wrong certificate at the client, a timeout: nothing to answer
        try:
            self.RequestHandlerClass(tls_sock, client_address, self)
        finally:
            try:
                tls_sock.close()
            except OSError:
                pass

    def start(self) -> "ConsoleServer":
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.25},
                                        name=f"fedsql-console-{self.console.party}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def _form(handler: "_Handler") -> dict[str, str]:
    ctype = handler.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise BadRequest("the console accepts only HTML form posts (application/x-www-form-urlencoded)")
    try:
        length = int(handler.headers.get("Content-Length", ""))
    except ValueError:
        raise BadRequest("a POST needs a Content-Length") from None
    if not 0 <= length <= MAX_BODY:
        raise BadRequest(f"the form is larger than {MAX_BODY} bytes")
    body = handler.rfile.read(length).decode("utf-8", "replace")
    try:
        parsed = parse_qs(body, keep_blank_values=True, max_num_fields=50)
    except ValueError:
        raise BadRequest("the form has too many fields") from None
    return {k: v[0] for k, v in parsed.items()}


class _Handler(BaseHTTPRequestHandler):
    server: ConsoleServer
    server_version = "fedsql-console"
    sys_version = ""
    timeout = REQUEST_TIMEOUT

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        pass  # no access log: paths carry the owner's search texts

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        # http.server's messages may quote the raw request line (a search text): the code only
        log.info("console: refused a request (%s)", args[0] if args and isinstance(args[0], int) else "error")

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    # -- plumbing -------------------------------------------------------------------------

    def _send(self, reply: Reply, cookies: Sequence[str] = ()) -> None:
        body = reply.body.encode("utf-8") if isinstance(reply.body, str) else reply.body
        self.send_response(reply.status)
        for k, v in {**SECURITY_HEADERS, **reply.headers}.items():
            self.send_header(k, v)
        for c in cookies:
            self.send_header("Set-Cookie", c)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _page(self, title: str, body: Any, status: int = 200, user: str | None = None, csrf: str | None = None,
              current: str = "") -> Reply:
        c = self.server.console
        nav = [(p.path, p.title) for p in pages() if p.in_nav] if user else []
        return Reply(page(title, body, party=c.party, federation=c.fed.name, nav=nav, current=current,
                          user=user, csrf=csrf), status=status)

    def _cookies(self) -> dict[str, str]:
        jar = http.cookies.SimpleCookie()
        try:
            jar.load(self.headers.get("Cookie", ""))
        except http.cookies.CookieError:
            return {}
        return {k: m.value for k, m in jar.items()}

    def _host_ok(self) -> bool:
        allowed = self.server.allowed_hosts
        if allowed is None:
            return True
        host = self.headers.get("Host", "").strip().lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in allowed

    def _handle(self, method: str) -> None:
        try:
            self._route(method)
        except BadRequest as exc:
            self._send(self._page(exc.title, tag("p", str(exc), class_="error"), status=exc.status))
        except (ConnectionError, TimeoutError, ssl.SSLError):
            pass
        except errors.Error as exc:  # e.g. an unreadable accounts file: fedsql errors carry no data
            log.warning("console: %s at %s %s", exc.kind, method, urlsplit(self.path).path[:200])
            self._send(self._page("Error", tag("p", str(exc), class_="error"), status=500))
        except Exception:  # noqa: BLE001 - the browser gets a generic page, the node log the trace
            log.exception("console: internal error at %s %s", method, urlsplit(self.path).path[:200])
            self._send(self._page("Internal error", tag("p", "internal error; the node logged the details",
                                                        class_="error"), status=500))

    def _route(self, method: str) -> None:
        c = self.server.console
        if not self._host_ok():
            self._send(Reply("this console answers only under a loopback name (127.0.0.1, localhost, [::1]): "
                             "open it there", status=421, content_type="text/plain; charset=utf-8"))
            return
        url = urlsplit(self.path)
        path = url.path
        try:
            query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True, max_num_fields=30).items()}
        except ValueError:
            raise BadRequest("the address has too many parameters") from None
        if not c.accounts.names():
            self._send(self._page("No account yet", _setup_text(c), status=503))
            return
        cookies = self._cookies()
        if path == "/login":
            self._login(method, cookies)
            return
        token = cookies.get(c.session_cookie, "")
        user = c.auth.token_user(token) if token else None
        if user is None:
            if method == "POST":
                self._send(self._page("Not logged in", tag("p", "log in first", class_="error"), status=403))
            else:
                self._send(redirect("/login"))
            return
        csrf = c.csrf("session", token)
        form: dict[str, str] = {}
        if method == "POST":
            form = _form(self)
            if not _same(form.get("csrf", ""), csrf):
                self._send(self._page("Refused", tag("p", "the form's CSRF token is missing or does not belong to "
                                                          "this session; reload the page and submit it again",
                                                     class_="error"), status=403, user=user, csrf=csrf))
                return
        if path == "/logout" and method == "POST":
            c.auth.revoke_token(token)
            self._send(redirect("/login"), [c.cookie(c.session_cookie, "", max_age=0)])
            return
        if path == "/":
            self._send(redirect("/queries"))
            return
        found: Page | None = next((p for p in pages() if p.path == path), None)
        if found is None:
            self._send(self._page("Not found", tag("p", f"no page {path[:200]}", class_="error"), status=404,
                                  user=user, csrf=csrf))
            return
        handler = found.get if method == "GET" else found.post
        if handler is None:
            self._send(self._page("Not allowed", tag("p", f"{path} does not take {method}", class_="error"),
                                  status=405, user=user, csrf=csrf))
            return
        result = handler(View(c, user, path, query, form, csrf))
        if not isinstance(result, Reply):
            result = self._page(found.title, result, user=user, csrf=csrf, current=found.path)
        self._send(result)

    def _login(self, method: str, cookies: dict[str, str]) -> None:
        c = self.server.console
        pre = cookies.get(c.login_cookie, "")
        set_cookies: list[str] = []
        if not pre:
            pre = secrets.token_urlsafe(24)
            set_cookies.append(c.cookie(c.login_cookie, pre))
        message = ""
        status = 200
        if method == "POST":
            form = _form(self)
            if not cookies.get(c.login_cookie) or not _same(form.get("csrf", ""), c.csrf("login", pre)):
                self._send(self._login_page(pre, "the login form expired or did not come from this console; "
                                                 "try again", 403), set_cookies)
                return
            if not c.login_slots.acquire(timeout=REQUEST_TIMEOUT):
                self._send(self._login_page(pre, "the console is busy with other logins; try again", 503),
                           set_cookies)
                return
            try:
                user = c.auth.login(form.get("user", ""), form.get("password", ""), peer=self._peer())
            except errors.AuthenticationError as exc:
                message, status = str(exc), 401
                user = ""
            finally:
                c.login_slots.release()
            if user:
                token = c.auth.issue_token(user)  # a new token at every login: no session fixation
                self._send(redirect("/queries"), [c.cookie(c.session_cookie, token, int(SESSION_SECONDS)),
                                                  c.cookie(c.login_cookie, "", max_age=0)])
                return
        self._send(self._login_page(pre, message, status), set_cookies)

    def _login_page(self, pre: str, message: str, status: int) -> Reply:
        c = self.server.console
        body = tag("form", (tag("p", message, class_="error") if message else Markup(""))
                   + tag("p", f"Log in with an account of party {c.party} (`fedsql user add`).", class_="muted")
                   + tag("label", esc("user") + tag("input", "", name="user", autocomplete="username",
                                                    required=True, autofocus=True))
                   + tag("label", esc("password") + tag("input", "", name="password", type="password",
                                                        autocomplete="current-password", required=True))
                   + hidden("csrf", c.csrf("login", pre)) + tag("button", "log in", type="submit"),
                   method="post", action="/login", class_="login box")
        return self._page("Log in", body, status=status)

    def _peer(self) -> str:
        host = str(self.client_address[0])
        return f"ipv6:[{host}]:0" if ":" in host else f"ipv4:{host}:0"


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison of a submitted token (any text, non-ASCII included) with ours."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("ascii"))


def _setup_text(c: Console) -> Markup:
    return (tag("p", f"Party {c.party} has no user account yet, so this console serves no data.")
            + tag("p", "Create one on the node's machine (the password is asked for twice), then reload:")
            + tag("pre", f"fedsql user add {c.fed.path} --party {c.party} NAME"))


def _ssl_context(fed: Federation, party: str) -> ssl.SSLContext:
    """TLS with the node's own certificate and key (the ones its peers pin)."""
    from fedsql import tls

    p = tls.paths(fed, party)
    for f in (p.certificate, p.private_key):
        if not f.exists():
            raise errors.ConfigError(f"{f} is missing; the console's TLS uses the node's certificate and key: "
                                     f"create them with `fedsql keys {fed.path} --party {party}`")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(p.certificate), str(p.private_key))
    return ctx


def start_console(fed: Federation, party: str, *, schema_of: Callable[[str], Any] | None = None,
                  throttle: LoginThrottle | None = None) -> ConsoleServer:
    """Serve `parties.<party>.console` in a background thread; `.stop()` ends it.

    `schema_of(table)` gives the policies page the table's columns (the node passes its own);
    `throttle` is the node's count of failed logins, shared with its Flight SQL password endpoint."""
    cfg = fed.party(party)
    if not cfg.console:
        raise errors.ConfigError(f"{fed.path}: parties.{party}.console is not set; add e.g. "
                                 f'console = "127.0.0.1:8088"')
    host, _, port = cfg.console.rpartition(":")
    host = host.strip("[]")
    if not cfg.console_tls and not is_loopback(host):  # config.py refuses it too; never serve it anyway
        raise errors.ConfigError(f"{fed.path}: parties.{party}.console: plain HTTP only on a loopback address")
    bind = "127.0.0.1" if host.lower() == "localhost" else host
    allowed = None if cfg.console_tls else {"127.0.0.1", "localhost", "[::1]", "::1", host.lower()}
    console = Console(fed, party, schema_of=schema_of, throttle=throttle)
    # index the chain in the background (requests wait for it): a long chain does not delay the node
    threading.Thread(target=console.index.refresh, daemon=True, name=f"fedsql-console-index-{party}").start()
    try:
        server = ConsoleServer((bind, int(port)), console, _ssl_context(fed, party) if cfg.console_tls else None,
                               allowed)
    except OSError as exc:
        raise errors.OperationalError(f"party '{party}': the console cannot listen on {cfg.console} ({exc.strerror}); "
                                      f"stop what uses it or change parties.{party}.console in {fed.path}") from None
    return server.start()
