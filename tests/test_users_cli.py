"""`fedsql user add|list|remove|passwd` and the accounts file (issue #15 item 1)."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from fedsql import cli
from fedsql.config import load_config
from fedsql.users import Accounts, decode_basic, users_path


@pytest.fixture()
def config(tmp_path: Path, write_federation: Any) -> Path:
    return write_federation(tmp_path)[0]


def _run(monkeypatch: pytest.MonkeyPatch, argv: list[str], stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return cli.main(argv)


def test_add_list_passwd_remove(config: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    base = ["--party", "p1"]
    assert _run(monkeypatch, ["user", "add", str(config), *base, "alice", "--password-stdin"], "s3cret-pass\n") == 0
    assert _run(monkeypatch, ["user", "add", str(config), *base, "bob", "--password-stdin"], "other-pass\n") == 0
    capsys.readouterr()
    assert _run(monkeypatch, ["user", "list", str(config), *base]) == 0
    assert capsys.readouterr().out.split() == ["alice", "bob"]
    fed = load_config(config)
    path = users_path(fed, "p1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "s3cret-pass" not in text
    entry = json.loads(text)["users"]["alice"]
    assert entry["kdf"] == "scrypt" and {"n", "r", "p", "salt", "hash"} <= set(entry)
    assert entry["salt"] != json.loads(text)["users"]["bob"]["salt"]
    accounts = Accounts.of(fed, "p1")
    assert accounts.verify("alice", "s3cret-pass") and not accounts.verify("alice", "s3cret-pasS")
    assert _run(monkeypatch, ["user", "passwd", str(config), *base, "alice", "--password-stdin"], "new-password\n") == 0
    assert accounts.verify("alice", "new-password") and not accounts.verify("alice", "s3cret-pass")
    assert _run(monkeypatch, ["user", "remove", str(config), *base, "bob"]) == 0
    assert accounts.names() == ["alice"]
    assert not list(path.parent.glob("*.tmp"))  # written atomically, nothing left behind


@pytest.mark.parametrize("argv, stdin, words", [
    (["user", "add", "{c}", "--party", "p1", "bad name", "--password-stdin"], "long-enough\n", "invalid user name"),
    (["user", "add", "{c}", "--party", "p1", "eve", "--password-stdin"], "short\n", "8 to 1024 characters"),
    (["user", "add", "{c}", "--party", "p1", "eve", "--password-stdin"], "", "stdin was empty"),
    (["user", "remove", "{c}", "--party", "p1", "nobody"], "", "no user 'nobody'"),
    (["user", "passwd", "{c}", "--party", "p1", "nobody", "--password-stdin"], "long-enough\n", "no user 'nobody'"),
    (["user", "list", "{c}", "--party", "nope"], "", "nope"),
])
def test_bad_input_is_one_clear_line(config: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any,
                                     argv: list[str], stdin: str, words: str) -> None:
    code = _run(monkeypatch, [a.format(c=config) for a in argv], stdin)
    err = capsys.readouterr().err
    assert code != 0 and words in err and "Traceback" not in err and err.startswith("error: ")


def test_duplicate_add_is_refused(config: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    argv = ["user", "add", str(config), "--party", "p1", "alice", "--password-stdin"]
    assert _run(monkeypatch, argv, "long-enough\n") == 0
    assert _run(monkeypatch, argv, "long-enough\n") != 0
    assert "already exists" in capsys.readouterr().err


def test_prompt_asks_twice(config: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    answers = iter(["first-password", "other-password"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert _run(monkeypatch, ["user", "add", str(config), "--party", "p1", "alice"]) != 0
    assert "differ" in capsys.readouterr().err
    assert Accounts.of(load_config(config), "p1").names() == []


def test_corrupt_accounts_file_is_a_clear_error(config: Path) -> None:
    fed = load_config(config)
    path = users_path(fed, "p1")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    with pytest.raises(Exception, match="not a fedsql accounts file"):
        Accounts.of(fed, "p1").verify("alice", "whatever-pass")


def test_basic_credentials_with_and_without_padding() -> None:
    assert decode_basic("YWxpY2U6cHc=") == ("alice", "pw")
    assert decode_basic("YWxpY2U6cHc") == ("alice", "pw")
    assert decode_basic("YTpiOmM") == ("a", "b:c")
    with pytest.raises(Exception, match="malformed"):
        decode_basic("bm9jb2xvbg")  # "nocolon"


def test_concurrent_adds_keep_every_user(config: Path) -> None:
    import threading

    accounts = [Accounts.of(load_config(config), "p1") for _ in range(4)]  # as separate processes would
    threads = [threading.Thread(target=a.add, args=(f"user{i}", "long-enough-pw")) for i, a in enumerate(accounts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Accounts.of(load_config(config), "p1").names() == [f"user{i}" for i in range(4)]


def test_foreign_entry_parameters_are_refused_not_run(config: Path) -> None:
    fed = load_config(config)
    accounts = Accounts.of(fed, "p1")
    accounts.add("mallory", "long-enough-pw")
    path = users_path(fed, "p1")
    data = json.loads(path.read_text())
    data["users"]["mallory"]["n"] = 2 ** 30  # would allocate 1 TiB
    path.write_text(json.dumps(data))
    assert not accounts.verify("mallory", "long-enough-pw")


def test_roles_add_set_list_and_survive_passwd(config: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    base = [str(config), "--party", "p1"]
    assert _run(monkeypatch, ["user", "add", *base, "ann", "--role", "analyst", "--role", "auditor",
                              "--password-stdin"], "long-enough\n") == 0
    assert _run(monkeypatch, ["user", "add", *base, "bob", "--password-stdin"], "long-enough\n") == 0
    accounts = Accounts.of(load_config(config), "p1")
    assert accounts.roles("ann") == ("analyst", "auditor") and accounts.roles("bob") == ()
    assert accounts.roles("nobody") == ()  # a name without an account: the party's grants only
    capsys.readouterr()
    assert _run(monkeypatch, ["user", "list", *base]) == 0
    assert capsys.readouterr().out.splitlines() == ["ann\tanalyst, auditor", "bob"]
    assert _run(monkeypatch, ["user", "passwd", *base, "ann", "--password-stdin"], "another-pass\n") == 0
    assert accounts.roles("ann") == ("analyst", "auditor")  # a new password keeps the roles
    assert _run(monkeypatch, ["user", "roles", *base, "ann", "--role", "viewer"]) == 0
    assert "has roles: viewer" in capsys.readouterr().out
    assert _run(monkeypatch, ["user", "roles", *base, "ann"]) == 0  # no --role: none
    assert accounts.roles("ann") == () and accounts.principal("p1", "ann").roles == ()
    assert accounts.principal("p1", None).user == "" and accounts.principal("p1", "bob").party == "p1"


@pytest.mark.parametrize("argv, words", [
    (["user", "roles", "{c}", "--party", "p1", "nobody", "--role", "x"], "no user 'nobody'"),
    (["user", "add", "{c}", "--party", "p1", "eve", "--role", "bank:analyst", "--password-stdin"],
     "invalid role name 'bank:analyst'"),
])
def test_bad_roles_are_one_clear_line(config: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any,
                                      argv: list[str], words: str) -> None:
    code = _run(monkeypatch, [a.format(c=config) for a in argv], "long-enough\n")
    err = capsys.readouterr().err
    assert code != 0 and words in err and "Traceback" not in err, err
