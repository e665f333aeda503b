"""The owner's console end to end: real node processes, a real HTTP client (urllib), real queries.

The federation: p1 serves its console on loopback HTTP and owns a DP table `d`; p2 serves it over
TLS with its node certificate and owns `s` (a private column of marker strings and marker
numbers); p3 serves one with no account yet. p1's user alice and party p2 run queries (one with
`<script>` in its SQL, one refused, one DP); then every console page is fetched and checked:
login, CSRF, lockout, escaping, filters, budget, policies, audit verification and its offline
export, and that no other party's row value or un-noised DP value appears anywhere.
"""

from __future__ import annotations

import http.client
import http.cookiejar
import json
import re
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

pytestmark = pytest.mark.e2e

SCRIPT_SQL = "SELECT COUNT(*) AS n FROM t WHERE k <> '<script>alert(\"x\")</script>'"
P1_PASSWORD = "correct horse battery"
SECRET_PREFIX = "zq-secret-"
MARKER_BASE = 918273645
D_VALUES = [7, 0, 93, 500, 1000, 13, 250, 44]  # SUM = 1907: the un-noised DP value that must not show
EXTRA = """
[parties.p1.tables.d]
source = "p1_d.parquet"
columns = {{ x = "aggregate" }}
[parties.p1.tables.d.dp]
unit = "row"
bounds = {{ x = [0, 1000] }}
epsilon = 3.0
max_epsilon_per_query = 1.0

[parties.p2.tables.s]
source = "p2_s.parquet"
columns = {{ id = "private", secret = "private", v = "aggregate" }}
grants = {{ p1 = {{ id = "join_key" }}, "p1:analyst" = {{ id = ["group_key"] }} }}
"""


def _user_add(config: Path, party: str, user: str, password: str, roles: tuple[str, ...] = ()) -> None:
    subprocess.run([sys.executable, "-m", "fedsql.cli", "user", "add", str(config), "--party", party, user,
                    "--password-stdin", *(f"--role={r}" for r in roles)], input=password + "\n", text=True,
                   check=True, capture_output=True)


@pytest.fixture(scope="module")
def consoles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.conftest import write_test_federation
    from fedsql.launcher import free_ports, start_federation

    directory = tmp_path_factory.mktemp("console")
    config, data = write_test_federation(directory)
    pq.write_table(pa.table({"x": pa.array(D_VALUES, pa.int64())}), directory / "p1_d.parquet")
    pq.write_table(pa.table({"id": pa.array([1, 2, 3], pa.int64()),
                             "secret": [f"{SECRET_PREFIX}{i}" for i in range(3)],
                             "v": pa.array([MARKER_BASE + i for i in range(3)], pa.int64())}),
                   directory / "p2_s.parquet")
    text = config.read_text(encoding="utf-8")
    taken = set(re.findall(r"127\.0\.0\.1:(\d+)", text))
    ports = free_ports(4)
    while taken & {str(p) for p in ports}:  # free_ports does not know the nodes' ports (not bound yet)
        ports = free_ports(4)
    for party, address in zip(("p1", "p2", "p3"), (f"127.0.0.1:{ports[0]}", f"https://127.0.0.1:{ports[1]}",
                                                   f"127.0.0.1:{ports[2]}")):
        text = text.replace(f"[parties.{party}]\n", f'[parties.{party}]\nconsole = "{address}"\n', 1)
    text = text.replace("[parties.p1]\n", f'[parties.p1]\nflight_password = "127.0.0.1:{ports[3]}"\n', 1)
    text = text.replace("\n[federated.t]", EXTRA.format() + "\n[federated.t]")
    config.write_text(text, encoding="utf-8")
    _user_add(config, "p1", "alice", P1_PASSWORD)
    _user_add(config, "p1", "target", P1_PASSWORD)
    _user_add(config, "p1", "shared", P1_PASSWORD)
    _user_add(config, "p2", "bob", P1_PASSWORD)
    with start_federation(config, log_dir=directory / "logs", timeout=90):
        import fedsql

        with fedsql.connect(str(config), party="p1", user="alice", password=P1_PASSWORD) as conn:
            cur = conn.cursor()
            cur.execute("SELECT k, COUNT(*) AS n, SUM(x) AS sx FROM t GROUP BY k ORDER BY k")
            cur.fetchall()
            cur.execute(SCRIPT_SQL)
            cur.fetchall()
            cur.execute("SELECT SUM(v) AS sv, COUNT(*) AS n FROM p2.s")
            cur.fetchall()
            with pytest.raises(fedsql.ProgrammingError):
                cur.execute("SELECT secret FROM p2.s")  # private: refused by the planner
        with fedsql.connect(str(config), party="p2") as conn:
            cur = conn.cursor()
            cur.execute("SET fedsql.epsilon = 0.5")
            for _ in range(2):
                cur.execute("SELECT SUM(x) AS s FROM p1.d")
                cur.fetchall()
        yield {"config": config, "dir": directory, "data": data,
               "p1": f"http://127.0.0.1:{ports[0]}", "p2": f"https://127.0.0.1:{ports[1]}",
               "p3": f"http://127.0.0.1:{ports[2]}", "flight_password": ports[3]}


class Browser:
    """urllib with a cookie jar, no redirect following (the tests look at each answer)."""

    def __init__(self, base: str, context: ssl.SSLContext | None = None) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        handlers: list[Any] = [urllib.request.HTTPCookieProcessor(self.jar), NoRedirect()]
        if context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self.opener = urllib.request.build_opener(*handlers)

    def request(self, path: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        try:
            with self.opener.open(req, timeout=30) as resp:
                return resp.status, dict(resp.headers), resp.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode("utf-8")

    def csrf(self, html: str) -> str:
        found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
        assert found, html[:2000]
        return found.group(1)

    def login(self, user: str, password: str) -> tuple[int, dict[str, str], str]:
        _, _, page = self.request("/login")
        return self.request("/login", {"user": user, "password": password, "csrf": self.csrf(page)})


def _logged_in(base: str, user: str = "alice", context: ssl.SSLContext | None = None) -> Browser:
    b = Browser(base, context)
    status, headers, _ = b.login(user, P1_PASSWORD)
    assert status == 303 and headers["Location"] == "/queries", status
    return b


def test_data_pages_need_a_login_and_login_sets_a_strict_cookie(consoles: dict[str, Any]) -> None:
    b = Browser(consoles["p1"])
    for path in ("/queries", "/budget", "/policies", "/audit", "/audit/export.jsonl", "/"):
        status, headers, _ = b.request(path)
        assert status == 303 and headers["Location"] == "/login", path
    status, headers, _ = b.login("alice", P1_PASSWORD)
    assert status == 303
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie  # plain loopback HTTP
    status, headers, page = b.request("/queries")
    assert status == 200 and "alice" in page
    assert "script-src" not in headers["Content-Security-Policy"]  # default-src 'none': no script runs
    assert "default-src 'none'" in headers["Content-Security-Policy"] and headers["X-Frame-Options"] == "DENY"


def test_login_without_its_csrf_token_is_refused(consoles: dict[str, Any]) -> None:
    b = Browser(consoles["p1"])
    b.request("/login")
    status, _, page = b.request("/login", {"user": "alice", "password": P1_PASSWORD})
    assert status == 403 and "expired" in page
    status, _, _ = b.request("/login", {"user": "alice", "password": P1_PASSWORD, "csrf": "0" * 64})
    assert status == 403
    assert b.request("/queries")[0] == 303  # still not logged in


def test_post_without_csrf_token_is_refused_and_changes_nothing(consoles: dict[str, Any]) -> None:
    b = _logged_in(consoles["p1"])
    status, _, page = b.request("/logout", {})
    assert status == 403 and "CSRF" in page
    status, _, page = b.request("/logout", {"csrf": "f" * 64})
    assert status == 403
    status, _, page = b.request("/logout", {"csrf": "é" * 64})  # not even a hex string: still a 403, no crash
    assert status == 403
    status, _, page = b.request("/queries")
    assert status == 200  # the session survived both forged logouts
    status, headers, _ = b.request("/logout", {"csrf": b.csrf(page)})
    assert status == 303 and headers["Location"] == "/login"
    assert b.request("/queries")[0] == 303  # logged out: the token is revoked


def test_a_stolen_cookie_replayed_after_logout_is_refused(consoles: dict[str, Any]) -> None:
    b = _logged_in(consoles["p1"])
    token = next(c.value for c in b.jar if c.name == "fedsql-console-p1")
    page = b.request("/queries")[2]
    b.request("/logout", {"csrf": b.csrf(page)})
    thief = Browser(consoles["p1"])
    status, _, _ = thief.request("/queries", headers={"Cookie": f"fedsql-console-p1={token}"})
    assert status == 303


def test_wrong_passwords_lock_the_account_for_a_while(consoles: dict[str, Any]) -> None:
    b = Browser(consoles["p1"])
    for _ in range(5):
        status, _, page = b.login("target", "wrong password!")
        assert status == 401 and "invalid user name or password" in page
    status, _, page = b.login("target", P1_PASSWORD)  # the right password, but locked now
    assert status == 401 and "invalid user name or password" in page
    time.sleep(1.3)  # the first lock lasts 1 s (fedsql/users.py LoginThrottle)
    status, _, _ = b.login("target", P1_PASSWORD)
    assert status == 303


def test_failures_at_flight_sql_count_at_the_console_too(consoles: dict[str, Any]) -> None:
    """One throttle per node: a guesser cannot get five more tries by switching front ends."""
    from pyarrow import flight

    from fedsql import tls
    from fedsql.config import load_config

    fed = load_config(consoles["config"])
    client = flight.FlightClient(f"grpc+tls://127.0.0.1:{consoles['flight_password']}",
                                 tls_root_certs=tls.paths(fed, "p1").certificate.read_bytes(),
                                 override_hostname=tls.server_name("p1"))
    try:
        for _ in range(5):
            with pytest.raises(flight.FlightUnauthenticatedError):
                client.authenticate_basic_token("shared", "wrong password!")
    finally:
        client.close()
    b = Browser(consoles["p1"])
    status, _, page = b.login("shared", P1_PASSWORD)
    assert status == 401 and "invalid user name or password" in page
    time.sleep(1.3)
    assert b.login("shared", P1_PASSWORD)[0] == 303


def test_a_query_text_with_script_is_shown_escaped(consoles: dict[str, Any]) -> None:
    b = _logged_in(consoles["p1"])
    _, _, page = b.request("/queries?" + urllib.parse.urlencode({"q": "alert"}))
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "<script" not in page.lower()
    # the search text itself is echoed into the form: escaped there too
    _, _, page = b.request("/queries?" + urllib.parse.urlencode({"q": '"><script>alert(1)</script>'}))
    assert "<script" not in page.lower() and "&quot;&gt;&lt;script&gt;" in page


def test_query_list_shows_issuer_user_plan_hash_leakage_outcome(consoles: dict[str, Any]) -> None:
    b = _logged_in(consoles["p1"])
    _, _, page = b.request("/queries")
    assert "page 1 of 1" in page
    assert "alice" in page and "p2" in page
    assert re.search(r'<code title="[0-9a-f]{64}">[0-9a-f]{16}</code>', page)
    assert "leakage line(s)" in page and "secret shares of" in page  # what p1 revealed, and to whom
    assert "→ p1, p2, p3" in page
    for outcome in ("done", "refused"):
        assert f">{outcome}</span>" in page
    assert re.search(r"\d+\.\d{3} s", page)  # a duration
    _, _, refused = b.request("/queries?outcome=refused")
    assert "SELECT secret FROM p2.s" in refused and "PolicyViolation" in refused and "SUM(x)" not in refused
    _, _, theirs = b.request("/queries?issuer=p2")
    assert "FROM p1.d" in theirs and "alert" not in theirs and "participant" in theirs
    _, _, text = b.request("/queries?q=" + urllib.parse.quote("p2.S"))  # case-insensitive text
    assert "FROM p2.s" in text and "GROUP BY k" not in text
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert "GROUP BY k" in b.request(f"/queries?from={today}&to={today}")[2]
    assert "no query matches" in b.request("/queries?to=2001-01-01")[2]


@pytest.mark.parametrize("query, says", [
    ("from=31/12/2026", "YYYY-MM-DD"), ("outcome=exploded", "must be one of"), ("page=0", "positive number"),
    ("issuer=nobody", "must be one of"), ("page=abc", "positive number")])
def test_bad_filters_are_a_clear_400(consoles: dict[str, Any], query: str, says: str) -> None:
    b = _logged_in(consoles["p1"])
    status, _, page = b.request("/queries?" + query)
    assert status == 400 and says in page


def test_budget_page_shows_spent_left_and_a_chart(consoles: dict[str, Any]) -> None:
    b = _logged_in(consoles["p1"])
    _, _, page = b.request("/budget")
    rows = re.findall(r"<tr><td>(p\d)</td><td>p1\.d</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td>", page)
    assert ("p2", "1", "3", "2") in rows and ("p3", "0", "3", "3") in rows, rows
    assert page.count("<svg") == 1 and "<polyline" in page and "budget 3" in page


def test_policies_page_shows_levels_grants_and_dp(consoles: dict[str, Any]) -> None:
    b = _logged_in(consoles["p2"], "bob", _insecure())
    _, _, page = b.request("/policies")
    # p2.s: id private by default, join_key for p1 (a grant), private for p3; p1's analysts add group_key
    assert ">level for p1 users with role analyst</th>" in page
    assert "<tr><td>id</td><td>private</td><td>join_key</td><td>private</td><td>join_key+group_key</td></tr>" in page
    assert "<tr><td>v</td><td>aggregate</td><td>aggregate</td><td>aggregate</td><td>aggregate</td></tr>" in page
    b1 = _logged_in(consoles["p1"])
    _, _, page = b1.request("/policies")
    assert "p1.d: differential privacy" in page and "max_epsilon_per_query" in page
    assert "member of the federated union(s): t" in page
    assert "<tr><td>k</td><td>group_key</td>" in page  # columns come from the table's schema too


def test_audit_page_verifies_and_the_export_verifies_offline(consoles: dict[str, Any], tmp_path: Path) -> None:
    b = _logged_in(consoles["p1"])
    _, _, page = b.request("/audit")
    assert "chain intact" in page
    anchor = re.search(r"<code>(\d+:[0-9a-f]{64})</code>", page).group(1)
    status, headers, body = b.request("/audit/export.jsonl")
    assert status == 200 and headers["Content-Type"] == "application/jsonl"
    assert "attachment" in headers["Content-Disposition"]
    chain = tmp_path / "chain.jsonl"
    chain.write_text(body, encoding="utf-8")
    cmd = [sys.executable, "-m", "fedsql.cli", "audit", "verify", str(chain)]
    ok = subprocess.run(cmd + ["--anchor", anchor], capture_output=True, text=True)
    assert ok.returncode == 0 and "chain intact" in ok.stdout and "1 anchor(s) match" in ok.stdout, ok.stderr
    seq, digest = anchor.split(":")
    wrong = subprocess.run(cmd + ["--anchor", f"{seq}:{'0' * 64}"], capture_output=True, text=True)
    assert wrong.returncode == 1 and "does not match" in wrong.stderr
    lines = body.splitlines()
    entry = json.loads(lines[1])
    entry["sql"] = "SELECT 1"  # an edit a regulator must see
    chain.write_text("\n".join([lines[0], json.dumps(entry)] + lines[2:]) + "\n", encoding="utf-8")
    tampered = subprocess.run(cmd, capture_output=True, text=True)
    assert tampered.returncode == 1 and "line 2" in tampered.stderr


def test_no_other_partys_rows_nor_unnoised_dp_value_anywhere(consoles: dict[str, Any]) -> None:
    pages = []
    b1 = _logged_in(consoles["p1"])
    for path in ("/queries", "/queries?issuer=p2", "/budget", "/policies", "/audit", "/audit/export.jsonl"):
        status, _, body = b1.request(path)
        assert status == 200
        pages.append(body)
    b2 = _logged_in(consoles["p2"], "bob", _insecure())
    for path in ("/queries", "/budget", "/policies", "/audit", "/audit/export.jsonl"):
        pages.append(b2.request(path)[2])
    everything = "\n".join(pages)

    def shown(value: object) -> bool:
        """`value` as a number of its own in the pages (not as digits inside a hex hash or id)."""
        return re.search(rf"(?<![0-9A-Za-z]){re.escape(str(value))}(?![0-9A-Za-z])", everything) is not None

    assert SECRET_PREFIX not in everything  # p2's private strings
    for i in range(3):
        assert not shown(MARKER_BASE + i)  # p2's row values (p1 got only their sum, as its result)
    assert not shown(3 * MARKER_BASE + 3)  # not even that result: results are not recorded
    assert not shown(sum(D_VALUES))  # p1.d's un-noised sum
    data = consoles["data"]
    for party in ("p2", "p3"):
        for f in data[f"{party}.t"].column("f").to_pylist():
            if f is not None:
                assert not shown(repr(f))


def test_search_texts_and_passwords_stay_out_of_the_node_log(consoles: dict[str, Any]) -> None:
    b = _logged_in(consoles["p1"])
    b.request("/queries?q=needle-7781")
    b.request("/login?q=needle-7782")
    Browser(consoles["p1"]).login("alice", "needle-7783-password")  # a wrong password
    time.sleep(0.5)
    log = (consoles["dir"] / "logs" / "p1.log").read_text(encoding="utf-8")
    for needle in ("needle-7781", "needle-7782", "needle-7783", P1_PASSWORD):
        assert needle not in log


def test_tls_console_uses_the_node_certificate_and_secure_cookies(consoles: dict[str, Any]) -> None:
    from fedsql import tls
    from fedsql.config import load_config

    fed = load_config(consoles["config"])
    host, port = consoles["p2"].removeprefix("https://").split(":")
    pem = ssl.get_server_certificate((host, int(port)))
    assert tls.fingerprint(pem.encode()) == tls.fingerprint(tls.paths(fed, "p2").certificate.read_bytes())
    b = Browser(consoles["p2"], _insecure())
    status, headers, _ = b.login("bob", P1_PASSWORD)
    assert status == 303
    cookie = headers["Set-Cookie"]
    assert cookie.startswith("__Host-fedsql-console-p2=") and "Secure" in cookie and "HttpOnly" in cookie
    plain = Browser(consoles["p2"].replace("https://", "http://"))
    with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
        plain.request("/login")  # no plain HTTP on the TLS port


def test_party_without_accounts_says_how_to_create_one_and_serves_nothing(consoles: dict[str, Any]) -> None:
    b = Browser(consoles["p3"])
    for path in ("/queries", "/login", "/audit/export.jsonl"):
        status, _, page = b.request(path)
        assert status == 503 and "fedsql user add" in page and "--party p3" in page
        assert '"seq"' not in page and "SELECT" not in page


def test_an_account_added_while_the_node_runs_opens_the_console(consoles: dict[str, Any]) -> None:
    """Runs after the no-account test (file order): `fedsql user add` acts on a running node."""
    _user_add(consoles["config"], "p3", "carol", P1_PASSWORD)
    b = Browser(consoles["p3"])
    status, _, _ = b.login("carol", P1_PASSWORD)
    assert status == 303
    status, _, page = b.request("/queries")
    assert status == 200 and "queries" in page


def test_a_foreign_host_name_gets_nothing(consoles: dict[str, Any]) -> None:
    """DNS rebinding: a page at evil.example whose name resolves to 127.0.0.1 reaches the console
    with Host: evil.example; it must not even get the login form."""
    b = Browser(consoles["p1"])
    status, _, body = b.request("/login", headers={"Host": "evil.example:80"})
    assert status == 421 and "csrf" not in body
    status, _, _ = b.request("/login", headers={"Host": "localhost"})
    assert status == 200


def _insecure() -> ssl.SSLContext:
    """The node certificate is self-signed and pinned, not issued for 127.0.0.1: the fingerprint
    test above checks it; these requests only need the channel."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx



@pytest.mark.browser
def test_real_browser_logs_in_and_sees_the_queries(consoles: dict[str, Any],
                                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    """Headless Chromium (Debian's `chromium` + `chromium-driver`, driven by selenium) logs in at p1
    over HTTP and at p2 over TLS, sees the queries (the `<script>` one as text, and no script ran),
    and saves a screenshot of every page under the test run's temp dir (`screenshots/`)."""
    import shutil

    chromium = next(filter(None, (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome"))), None)
    driver_bin = shutil.which("chromedriver")
    if not chromium or not driver_bin:
        pytest.skip("no chromium and chromedriver binaries here (Debian: apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium", reason="selenium is in the test extra: pip install -e '.[test]'")
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    shots = tmp_path_factory.mktemp("screenshots", numbered=False)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--ignore-certificate-errors", "--disable-gpu", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_bin))
    try:
        driver.set_page_load_timeout(30)
        for base, user in ((consoles["p1"], "alice"), (consoles["p2"], "bob")):
            party = "p1" if base == consoles["p1"] else "p2"
            driver.get(base + "/queries")
            assert driver.current_url.endswith("/login")
            driver.save_screenshot(str(shots / f"{party}-login.png"))
            driver.find_element(By.NAME, "user").send_keys(user)
            driver.find_element(By.NAME, "password").send_keys(P1_PASSWORD)
            driver.find_element(By.CSS_SELECTOR, "form.login button").click()
            WebDriverWait(driver, 30).until(lambda d: d.current_url.endswith("/queries"))  # the POST and redirect
            cells = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "tbody td")]
            assert any("FROM p2.s" in c for c in cells), cells[:20]
            if party == "p1":
                assert any('<script>alert("x")</script>' in c for c in cells)  # shown as text
                assert driver.execute_script("return document.scripts.length") == 0  # and nothing ran
            driver.save_screenshot(str(shots / f"{party}-queries.png"))
            for path in ("/budget", "/policies", "/audit"):
                driver.get(base + path)
                assert "Internal error" not in driver.title and "Log in" not in driver.title, driver.title
                driver.save_screenshot(str(shots / f"{party}-{path.strip('/')}.png"))
            driver.get(base + "/audit")
            assert "chain intact" in driver.find_element(By.TAG_NAME, "main").text
    finally:
        driver.quit()
    print(f"screenshots: {shots}")
