"""The console's parts without a federation: the `console` key, escaping, the chart, and a console
served in-process (real sockets, urllib) over a synthetic chain of 10^5 audit records."""

from __future__ import annotations

import json
import re
import time
from urllib.parse import urlencode
from pathlib import Path
from typing import Any, Iterator

import pytest

from fedsql.config import parse_config
from fedsql.errors import ConfigError

BASE = """\
[federation]
name = "f"
compute = ["a", "b", "c"]
[parties.a]
address = "127.0.0.1:7001"
{console}
[parties.b]
address = "127.0.0.1:7002"
[parties.c]
address = "127.0.0.1:7003"
"""


def _parse(console: str) -> Any:
    return parse_config(BASE.format(console=console), Path("/cfg/federation.toml"))


@pytest.mark.parametrize("value, address, tls", [
    ('"127.0.0.1:8088"', "127.0.0.1:8088", False), ('"http://localhost:8088"', "localhost:8088", False),
    ('"[::1]:8088"', "[::1]:8088", False), ('"127.8.9.1:8088"', "127.8.9.1:8088", False),
    ('"https://0.0.0.0:8443"', "0.0.0.0:8443", True), ('"https://10.1.2.3:8443"', "10.1.2.3:8443", True)])
def test_console_addresses_that_are_accepted(value: str, address: str, tls: bool) -> None:
    party = _parse(f"console = {value}").parties["a"]
    assert (party.console, party.console_tls) == (address, tls)
    assert _parse("").parties["a"].console is None  # off by default


def test_non_loopback_without_tls_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError) as info:
        _parse('console = "0.0.0.0:8088"')
    message = str(info.value)
    assert "parties.a.console" in message and "not a loopback address" in message
    assert 'console = "https://0.0.0.0:8088"' in message and '"127.0.0.1:8088"' in message
    with pytest.raises(ConfigError, match="not a loopback"):
        _parse('console = "http://myhost.example:8088"')


@pytest.mark.parametrize("value, says", [
    ('"ftp://127.0.0.1:8088"', "not ftp://"), ('"127.0.0.1"', "host:port"), ("8088", "expected"),
    ('"127.0.0.1:7001"', "port of its own")])
def test_bad_console_values_say_what_is_wrong(value: str, says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        _parse(f"console = {value}")


def test_a_typo_in_the_key_names_it() -> None:
    with pytest.raises(ConfigError, match="did you mean 'console'"):
        _parse('consle = "127.0.0.1:8088"')


def test_everything_not_markup_is_escaped() -> None:
    from fedsql.console.html import Markup, esc, line_chart, tag

    assert tag("td", "<b>") == "<td>&lt;b&gt;</td>"
    assert tag("a", "x", href='"><script>') == '<a href="&quot;&gt;&lt;script&gt;">x</a>'
    assert Markup("<i>") + "<b>" == "<i>&lt;b&gt;" and "<b>" + Markup("<i>") == "&lt;b&gt;<i>"
    assert isinstance(Markup("<i>") + "x", Markup) and esc(None) == ""
    svg = line_chart({"<script>": [(1.0, 0.5), (2.0, 1.5)]}, limit=2.0)
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "budget 2" in svg
    assert svg.count("<polyline") == 1 and line_chart({}).startswith("<svg")


# -- a console over 10^5 audit records ----------------------------------------------------

N_QUERIES = 50_000  # a `query` and a `done` line each: 10^5 records


def _synthetic_chain(path: Path) -> None:
    from fedsql.audit import GENESIS, _canonical, entry_hash

    prev, seq, out = GENESIS, 0, []
    t0 = time.time() - N_QUERIES
    for i in range(N_QUERIES):
        for event, fields in (("query", {"query_id": f"q{i:06d}", "issuer": "b" if i % 3 else "a",
                                          "role": "participant" if i % 3 else "issuer",
                                          "sql": f"SELECT COUNT(*) FROM t WHERE x > {i}",
                                          "plan_hash": f"{i:064x}", "participants": ["a", "b", "c"],
                                          "leakage": ["base sizes"], "settings": {},
                                          "revealed": [{"step": 1, "what": "shares", "to": ["b", "c"]}]}),
                              ("done" if i % 7 else "failed", {"query_id": f"q{i:06d}", "rows": 1})):
            seq += 1
            entry = {"seq": seq, "time": t0 + i + (0.25 if event != "query" else 0), "event": event, **fields,
                     "prev": prev}
            entry["hash"] = prev = entry_hash(entry)
            out.append(_canonical(entry))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(out) + b"\n")


@pytest.fixture(scope="module")
def big_console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    from fedsql.audit import audit_path
    from fedsql.config import load_config
    from fedsql.console.server import start_console
    from fedsql.launcher import free_ports
    from fedsql.users import Accounts

    directory = tmp_path_factory.mktemp("bigconsole")
    config = directory / "federation.toml"
    config.write_text(BASE.format(console=f'console = "127.0.0.1:{free_ports(1)[0]}"'), encoding="utf-8")
    fed = load_config(config)
    _synthetic_chain(audit_path(fed, "a"))
    Accounts.of(fed, "a").add("owner", "long enough password")
    server = start_console(fed, "a")
    server.console.index.refresh()  # wait for the start-up indexing (the node does it before its first query)
    try:
        yield server.url.rstrip("/"), fed
    finally:
        server.stop()


def _session(base: str) -> Any:
    import http.cookiejar
    import urllib.request

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(base + "/login", timeout=30).read().decode()
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
    form = urlencode({"user": "owner", "password": "long enough password", "csrf": csrf}).encode()
    assert opener.open(base + "/login", data=form, timeout=30).geturl().endswith("/queries")
    return opener


@pytest.mark.parametrize("query", ["", "page=1000", "q=x+%3E+4999", "outcome=failed&issuer=a", "role=issuer&page=50",
                                   "from=2000-01-01&q=q049999"])
def test_pages_load_within_a_second_over_1e5_records(big_console: tuple[str, Any], query: str) -> None:
    base, _ = big_console
    opener = _session(base)
    started = time.monotonic()
    page = opener.open(f"{base}/queries?{query}", timeout=30).read().decode()
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"/queries?{query} took {elapsed:.2f} s"
    assert "<tbody><tr><td>" in page and "no query matches" not in page


@pytest.mark.parametrize("path", ["/approvals", "/budget", "/policies", "/audit"])
def test_every_other_page_loads_within_a_second_over_1e5_records(big_console: tuple[str, Any], path: str) -> None:
    base, _ = big_console
    opener = _session(base)
    started = time.monotonic()
    with opener.open(f"{base}{path}", timeout=30) as resp:
        status, page = resp.status, resp.read().decode()
    elapsed = time.monotonic() - started
    assert status == 200 and "<main" in page, page[:500]
    assert elapsed < 1.0, f"{path} took {elapsed:.2f} s"


def test_pagination_is_newest_first_and_complete(big_console: tuple[str, Any]) -> None:
    base, _ = big_console
    opener = _session(base)
    first = opener.open(f"{base}/queries", timeout=30).read().decode()
    assert f"page 1 of {N_QUERIES // 50}" in first and f"{N_QUERIES} queries" in first
    ids = re.findall(r"WHERE x &gt; (\d+)", first)
    assert ids[0] == str(N_QUERIES - 1) and len(ids) == 50
    last = opener.open(f"{base}/queries?page={N_QUERIES // 50}", timeout=30).read().decode()
    assert re.findall(r"WHERE x &gt; (\d+)", last)[-1] == "0" and "older →" not in last
    failed = opener.open(f"{base}/queries?outcome=failed", timeout=30).read().decode()
    expected = len([i for i in range(N_QUERIES) if i % 7 == 0])
    assert f"{expected} queries" in failed


def test_new_lines_are_indexed_as_they_are_appended(big_console: tuple[str, Any]) -> None:
    from fedsql.audit import AuditLog, audit_path

    base, fed = big_console
    opener = _session(base)
    log = AuditLog(audit_path(fed, "a"))
    try:
        log.append("query", query_id="fresh-1", issuer="c", role="participant", sql="SELECT 'appended now'")
    finally:
        log.close()
    page = opener.open(f"{base}/queries?issuer=c", timeout=30).read().decode()
    assert "appended now" in page and "running" in page
    deadline = time.monotonic() + 120
    while True:  # the page answers at once; the full check of 10^5 lines runs behind it
        started = time.monotonic()
        status = opener.open(f"{base}/audit", timeout=60).read().decode()
        assert time.monotonic() - started < 1.5
        if f"{2 * N_QUERIES + 1} entries" in status or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "chain intact" in status and f"{2 * N_QUERIES + 1} entries" in status


def test_a_tampered_chain_is_reported_broken_on_the_page(tmp_path: Path) -> None:
    from fedsql.audit import AuditLog, audit_path
    from fedsql.config import load_config
    from fedsql.console.server import start_console
    from fedsql.launcher import free_ports
    from fedsql.users import Accounts

    config = tmp_path / "federation.toml"
    config.write_text(BASE.format(console=f'console = "127.0.0.1:{free_ports(1)[0]}"'), encoding="utf-8")
    fed = load_config(config)
    log = AuditLog(audit_path(fed, "a"))
    for i in range(3):
        log.append("query", query_id=f"q{i}", issuer="b", role="participant", sql=f"SELECT {i}")
    log.close()
    path = audit_path(fed, "a")
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace("SELECT 1", "SELECT 9")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    Accounts.of(fed, "a").add("owner", "long enough password")
    server = start_console(fed, "a")
    try:
        page = _session(server.url.rstrip("/")).open(server.url + "audit", timeout=30).read().decode()
    finally:
        server.stop()
    assert "chain broken" in page and "at line 2" in page and "line edited" in page


def test_export_is_the_chain_up_to_its_last_complete_line(big_console: tuple[str, Any]) -> None:
    from fedsql.audit import audit_path

    base, fed = big_console
    opener = _session(base)
    body = opener.open(f"{base}/audit/export.jsonl", timeout=60).read()
    assert body == audit_path(fed, "a").read_bytes()
    assert json.loads(body.splitlines()[0])["seq"] == 1


def test_a_malformed_anchor_is_a_usage_error(tmp_path: Path, capsys: Any) -> None:
    from fedsql.audit import AuditLog
    from fedsql.cli import main

    log = AuditLog(tmp_path / "chain.jsonl")
    entry = log.append("query", query_id="q1", issuer="a", role="issuer", sql="SELECT 1")
    log.close()
    assert main(["audit", "verify", str(tmp_path / "chain.jsonl"), "--anchor", "1:abc"]) == 2
    assert "write SEQ:HASH" in capsys.readouterr().err
    assert main(["audit", "verify", str(tmp_path / "chain.jsonl"), "--anchor", f"1:{entry['hash']}"]) == 0
    assert main(["audit", "verify", str(tmp_path / "chain.jsonl"), "--anchor", f"2:{entry['hash']}"]) == 1
    assert "only 1 entries" in capsys.readouterr().err


def test_the_index_folds_starts_and_ends_and_survives_odd_lines(tmp_path: Path) -> None:
    from fedsql.console.audit_index import AuditIndex, Filters

    path = tmp_path / "audit.log"
    lines = [
        {"seq": 1, "time": 10.0, "event": "query", "query_id": "a", "issuer": "p1", "role": "issuer", "sql": "S1"},
        {"seq": 2, "time": 12.5, "event": "done", "query_id": "a", "rows": 3},
        {"seq": 3, "time": 13.0, "event": "refused", "query_id": "b", "issuer": "p2", "role": "participant",
         "sql": "S2", "error": {"kind": "PolicyViolation", "message": "column x is private"}},
        {"seq": 4, "time": 14.0, "event": "failed", "query_id": "zzz", "error": {"kind": "X", "message": "m"}},
        {"seq": 5, "time": 15.0, "event": "refused", "reason": "authentication", "caller": "?"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n" + '{"seq": 7, "event": "query"',
                    encoding="utf-8")
    index = AuditIndex(path)
    found, total = index.search(Filters())
    assert total == 2 and [r.query_id for r in found] == ["b", "a"]
    a, b = found[1], found[0]
    assert (a.outcome, a.rows, a.duration) == ("done", 3, 2.5)
    assert (b.outcome, b.error_kind, b.duration) == ("refused", "PolicyViolation", None)
    assert index.other_events == {"failed (no query line)": 1, "refused (authentication)": 1}
    with open(path, "a", encoding="utf-8") as f:  # the torn line is completed later: read then
        f.write(', "time": 20.0, "query_id": "c", "issuer": "p3", "role": "participant", "sql": "S3"}\n')
    found, total = index.search(Filters(issuer="p3"))
    assert total == 1 and found[0].outcome == "running"
    assert index.search(Filters(text="s1"))[1] == 1 and index.search(Filters(since=13.5))[1] == 1
