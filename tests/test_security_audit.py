"""The per-node audit log: hash chain, tamper detection, what each node records (issue #6, item 3)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from fedsql.audit import GENESIS, AuditLog, audit_path, read_entries, verify


def _log(tmp_path: Path, n: int = 5) -> Path:
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    for i in range(n):
        log.append("query", query_id=f"q{i}", sql=f"SELECT {i} -- ünïcode \n newline")
    log.close()
    return path


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_chain_verifies_and_reopen_continues(tmp_path: Path) -> None:
    path = _log(tmp_path, 3)
    log = AuditLog(path)  # a restarted node continues the chain
    log.append("done", query_id="q2")
    log.close()
    result = verify(path)
    assert result.ok and result.lines == 4
    entries = read_entries(path)
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]
    assert entries[0]["prev"] == GENESIS and entries[3]["prev"] == entries[2]["hash"]
    assert path.stat().st_mode & 0o077 == 0


def test_edited_line_detected(tmp_path: Path) -> None:
    path = _log(tmp_path)
    lines = _lines(path)
    obj = json.loads(lines[2])
    obj["sql"] = "SELECT nothing to see"
    lines[2] = (json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
    path.write_bytes(b"".join(lines))
    result = verify(path)
    assert not result.ok and result.broken_line == 3 and "edited" in result.problem


def test_rehashed_edit_detected_at_the_next_line(tmp_path: Path) -> None:
    from fedsql.audit import entry_hash

    path = _log(tmp_path)
    lines = _lines(path)
    obj = json.loads(lines[1])
    obj["sql"] = "SELECT forged"
    obj["hash"] = entry_hash(obj)  # the forger recomputes this line's hash, but not the chain after it
    lines[1] = (json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n").encode()
    path.write_bytes(b"".join(lines))
    result = verify(path)
    assert not result.ok and result.broken_line == 3 and "previous line" in result.problem


@pytest.mark.parametrize("how", ["delete", "swap", "duplicate", "truncate_tail_line"])
def test_structural_tampering_detected(tmp_path: Path, how: str) -> None:
    path = _log(tmp_path)
    lines = _lines(path)
    if how == "delete":
        del lines[1]
        expected = 2
    elif how == "swap":
        lines[1], lines[2] = lines[2], lines[1]
        expected = 2
    elif how == "duplicate":
        lines.insert(2, lines[1])
        expected = 3
    else:
        lines[-1] = lines[-1][:40]
        expected = 5
    path.write_bytes(b"".join(lines))
    result = verify(path)
    assert not result.ok and result.broken_line == expected


def test_torn_last_line_is_reported_and_the_log_goes_on(tmp_path: Path) -> None:
    path = _log(tmp_path, 2)
    with open(path, "ab") as f:
        f.write(b'{"seq":3,"ev')  # a crash in the middle of a write
    log = AuditLog(path)
    log.append("query", query_id="after-crash")
    log.close()
    result = verify(path)
    assert not result.ok and result.broken_line == 3 and "torn" in result.problem


def test_concurrent_appends_keep_the_chain(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    threads = [threading.Thread(target=lambda i=i: [log.append("query", query_id=f"{i}-{j}") for j in range(25)])
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    result = verify(tmp_path / "audit.log")
    assert result.ok and result.lines == 200


def test_cli_verify(tmp_path: Path) -> None:
    path = _log(tmp_path)
    ok = subprocess.run([sys.executable, "-m", "fedsql.cli", "audit", "verify", str(path)],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "chain intact" in ok.stdout
    lines = _lines(path)
    lines[3] = lines[3].replace(b"SELECT 3", b"SELECT 4")
    path.write_bytes(b"".join(lines))
    bad = subprocess.run([sys.executable, "-m", "fedsql.cli", "audit", "verify", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "line 4" in bad.stderr


# -- what the nodes record ----------------------------------------------------------------


@pytest.mark.e2e
def test_every_participant_records_the_query(federation: tuple[Path, Any], conn: Any) -> None:
    from fedsql.config import load_config

    fed = load_config(federation[0])
    cur = conn.cursor()
    sql = "SELECT k, SUM(x) AS sx FROM t GROUP BY k"
    cur.execute(sql)
    cur.fetchall()
    by_party = {}
    for party in ("p1", "p2", "p3"):
        path = audit_path(fed, party)
        assert verify(path).ok, verify(path).describe()
        entries = [e for e in read_entries(path) if e.get("sql") == sql and e["event"] == "query"]
        assert entries, party
        start = entries[-1]
        ends = [e for e in read_entries(path) if e.get("query_id") == start["query_id"] and e["event"] == "done"]
        assert ends, party
        by_party[party] = start
    qids = {e["query_id"] for e in by_party.values()}
    assert len(qids) == 1
    hashes = {e["plan_hash"] for e in by_party.values()}
    assert len(hashes) == 1
    assert by_party["p1"]["role"] == "issuer" and by_party["p2"]["role"] == "participant"
    for party, entry in by_party.items():
        assert entry["issuer"] == "p1" and entry["leakage"]
        shares = [r for r in entry["revealed"] if "secret shares" in r["what"]]
        assert shares and set(shares[0]["to"]) == {"p1", "p2", "p3"}
        assert any(r["to"] == ["p1"] and "result" in r["what"] for r in entry["revealed"])


@pytest.mark.e2e
def test_cli_verify_with_config(federation: tuple[Path, Any], conn: Any) -> None:
    conn.cursor().execute("SELECT COUNT(*) FROM t")
    proc = subprocess.run([sys.executable, "-m", "fedsql.cli", "audit", "verify", str(federation[0]), "--party", "p3"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "chain intact" in proc.stdout and ".fedsql/p3/audit.log" in proc.stdout


@pytest.mark.e2e
def test_policy_refusal_at_issuer_is_audited(federation: tuple[Path, Any], conn: Any) -> None:
    import fedsql
    from fedsql.config import load_config

    with pytest.raises(fedsql.PolicyViolation):
        conn.cursor().execute("SELECT id FROM p2.t")
    entries = read_entries(audit_path(load_config(federation[0]), "p1"))
    last = [e for e in entries if e["event"] == "refused"][-1]
    assert last["sql"] == "SELECT id FROM p2.t" and last["error"]["kind"] == "PolicyViolation"
