"""Approving held queries in the owner's console (issue #16: items 1 and 2 together).

p1 holds every query that reads its table `t` (approval = "manual") and serves its console on
loopback. p2 issues queries over p1.t, each waiting in its own thread; p1's owner sees them on
the Approvals page and approves or rejects them there — over HTTP with urllib, and by clicking
in headless Chromium. The approved query's result equals DuckDB over p1's rows; the rejected one
fails with the owner's reason; the audit chain names the console account as the decision's author.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.result_compare import assert_matches, duckdb_arrow, pooled_duckdb
from tests.test_console import Browser, _user_add

pytestmark = pytest.mark.e2e

PASSWORD = "owner's long passphrase"
SQL = "SELECT COUNT(*) AS n, SUM(x) AS sx, MIN(x) AS lo FROM p1.t WHERE x <> {v}"


class Held:
    """One query of p2 waiting in a thread for p1's decision."""

    def __init__(self, config: Path, sql: str) -> None:
        import fedsql

        self.sql, self.result, self.error = sql, None, None
        self.conn = fedsql.connect(str(config), party="p2")

        def run() -> None:
            try:
                self.result = self.conn.cursor().execute(sql).fetch_arrow_table()
            except Exception as exc:  # noqa: BLE001 - the test looks at it
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def wait(self) -> None:
        self.thread.join(90)
        assert not self.thread.is_alive(), "the query still waits after the decision"
        self.conn.close()


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from fedsql.launcher import free_ports, start_federation
    from tests.conftest import write_test_federation

    directory = tmp_path_factory.mktemp("console-approvals")
    config, data = write_test_federation(directory)
    text = config.read_text(encoding="utf-8")
    taken = set(re.findall(r"127\.0\.0\.1:(\d+)", text))
    port = next(p for p in free_ports(4) if str(p) not in taken)
    text = text.replace("[parties.p1]\n", f'[parties.p1]\nconsole = "127.0.0.1:{port}"\n', 1)
    text = text.replace("[parties.p1.tables.t]\n", '[parties.p1.tables.t]\napproval = "manual"\n', 1)
    config.write_text(text, encoding="utf-8")
    _user_add(config, "p1", "owner", PASSWORD, roles=("approver",))
    _user_add(config, "p1", "analyst", PASSWORD)  # p1's own analyst: logs in, must not decide
    with start_federation(config, log_dir=directory / "logs", timeout=90):
        yield {"config": config, "dir": directory, "base": f"http://127.0.0.1:{port}",
               "ref": pooled_duckdb({"p1.t": data["p1.t"]})}


def _owner(base: str) -> Browser:
    b = Browser(base)
    assert b.login("owner", PASSWORD)[0] == 303
    return b


def _pending_key(b: Browser, sql: str, timeout: float = 60) -> tuple[str, str]:
    """The key of the held request for `sql` once the Approvals page lists it, and the page."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status, _, page = b.request("/approvals")
        assert status == 200, page[:500]
        for key in re.findall(r"<h2>(p2/[0-9a-f]+)</h2>", page):
            block = page[page.index(f"<h2>{key}</h2>"):]
            if sql.replace("<>", "&lt;&gt;") in block[:4000]:
                return key, page
        time.sleep(0.3)
    raise AssertionError("the held query never appeared on the Approvals page")


def _approval_entries(config: Path, query_id: str, timeout: float = 10) -> list[dict]:
    """p1's audit entries for the decision on `query_id` (the node writes them within a second)."""
    import json

    from fedsql.audit import audit_path
    from fedsql.config import load_config

    path = audit_path(load_config(config), "p1")
    end = time.monotonic() + timeout
    while True:
        found = [e for e in (json.loads(line) for line in path.read_text().splitlines() if line.strip())
                 if e.get("event") == "approval" and e.get("query_id") == query_id]
        if found or time.monotonic() > end:
            return found
        time.sleep(0.2)


def test_owner_approves_in_the_console_and_the_result_equals_duckdb(held: dict[str, Any]) -> None:
    sql = SQL.format(v=-12345)
    q = Held(held["config"], sql)
    b = _owner(held["base"])
    key, page = _pending_key(b, sql)
    assert "plan hash" in page and "reveals" in page
    # a forged POST (no CSRF token) decides nothing
    status, _, _ = b.request("/approvals", {"key": key, "action": "approve"})
    assert status == 403
    assert key in b.request("/approvals")[2]
    status, headers, _ = b.request("/approvals", {"key": key, "action": "approve", "reason": "monthly report",
                                                  "csrf": b.csrf(page)})
    assert status == 303 and headers["Location"].startswith("/approvals?done=")
    done = urllib.parse.unquote_plus(headers["Location"].split("done=", 1)[1])
    assert done.startswith(f"approved query {key}") and "owner (console)" in done
    q.wait()
    assert q.error is None, q.error
    assert_matches(q.result, duckdb_arrow(held["ref"], sql), sql)
    assert f"<h2>{key}</h2>" not in b.request("/approvals")[2]  # no longer pending
    (entry,) = _approval_entries(held["config"], key.split("/", 1)[1])
    assert entry["decision"] == "approved" and entry["decided_by"] == "owner (console)"
    assert entry["reason"] == "monthly report" and entry["issuer"] == "p2" and len(entry["plan_hash"]) == 64


def test_an_account_without_the_approver_role_sees_requests_but_cannot_decide(held: dict[str, Any]) -> None:
    """p1's accounts are also its analysts' Flight SQL logins: only the approver role decides."""
    sql = SQL.format(v=-45678)
    q = Held(held["config"], sql)
    key, _ = _pending_key(_owner(held["base"]), sql)
    b = Browser(held["base"])
    assert b.login("analyst", PASSWORD)[0] == 303
    _, _, page = b.request("/approvals")
    assert f"<h2>{key}</h2>" in page and "role &#x27;approver&#x27;" in page
    assert 'value="approve"' not in page and 'name="reason"' not in page  # no form for this account
    status, _, body = b.request("/approvals", {"key": key, "action": "approve", "reason": "me too",
                                               "csrf": b.csrf(page)})
    assert status == 403 and "--role approver" in body
    assert q.thread.is_alive()  # still held: the analyst's POST decided nothing
    owner = _owner(held["base"])
    _, page = _pending_key(owner, sql)
    status, _, _ = owner.request("/approvals", {"key": key, "action": "reject", "reason": "test done",
                                                "csrf": owner.csrf(page)})
    assert status == 303
    q.wait()
    (entry,) = _approval_entries(held["config"], key.split("/", 1)[1])
    assert entry["decision"] == "rejected" and entry["decided_by"] == "owner (console)"


def test_owner_rejects_with_a_reason_the_issuer_sees(held: dict[str, Any]) -> None:
    import fedsql

    sql = SQL.format(v=-23456)
    q = Held(held["config"], sql)
    b = _owner(held["base"])
    key, page = _pending_key(b, sql)
    status, _, body = b.request("/approvals", {"key": key, "action": "launch", "csrf": b.csrf(page)})
    assert status == 400 and "approve or reject" in body
    status, _, body = b.request("/approvals", {"key": "p2/0000", "action": "approve", "csrf": b.csrf(page)})
    assert status == 400 and "no longer pending" in body
    status, _, _ = b.request("/approvals", {"key": key, "action": "reject", "reason": "<b>not this month</b>",
                                            "csrf": b.csrf(page)})
    assert status == 303
    q.wait()
    assert isinstance(q.error, fedsql.Error) and "p1" in str(q.error) and "not this month" in str(q.error)
    (entry,) = _approval_entries(held["config"], key.split("/", 1)[1])
    assert entry["decision"] == "rejected" and entry["reason"] == "<b>not this month</b>"


@pytest.mark.browser
def test_real_browser_approves_a_held_query(held: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> None:
    chromium = next(filter(None, (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome"))), None)
    driver_bin = shutil.which("chromedriver")
    if not chromium or not driver_bin:
        pytest.skip("no chromium and chromedriver binaries here (Debian: apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium", reason="selenium is in the test extra: pip install -e '.[test]'")
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    sql = SQL.format(v=-34567)
    q = Held(held["config"], sql)
    key, _ = _pending_key(_owner(held["base"]), sql)
    shots = tmp_path_factory.mktemp("approval-screenshots", numbered=False)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--disable-gpu", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_bin))
    try:
        driver.set_page_load_timeout(30)
        driver.get(held["base"] + "/approvals")
        driver.find_element(By.NAME, "user").send_keys("owner")
        driver.find_element(By.NAME, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "form.login button").click()
        WebDriverWait(driver, 30).until(lambda d: not d.current_url.endswith("/login"))  # logged in
        driver.get(held["base"] + "/approvals")
        driver.save_screenshot(str(shots / "approvals-pending.png"))
        box = next(d for d in driver.find_elements(By.CSS_SELECTOR, "div.box")
                   if d.find_elements(By.TAG_NAME, "h2") and d.find_element(By.TAG_NAME, "h2").text == key)
        box.find_element(By.NAME, "reason").send_keys("checked in the browser")
        box.find_element(By.CSS_SELECTOR, "button[value=approve]").click()
        # the form's POST navigates: an element read mid-navigation is stale, read it again
        WebDriverWait(driver, 30, ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda d: f"approved query {key}" in d.find_element(By.TAG_NAME, "main").text)
        driver.save_screenshot(str(shots / "approvals-decided.png"))
    finally:
        driver.quit()
    q.wait()
    assert q.error is None, q.error
    assert_matches(q.result, duckdb_arrow(held["ref"], sql), sql)
    print(f"screenshots: {shots}")
