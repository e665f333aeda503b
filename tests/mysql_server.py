"""A throw-away MariaDB server for tests: `mariadb-install-db` in a temp dir, started on a free
loopback port as the unprivileged `mysql` user, with the general query log on, stopped afterwards.

    with mysql_server() as my:
        my.sql("CREATE TABLE bank.t ...")     # as root, over the server's Unix socket
        my.url("bank")                        # mysql://fedsql_reader@127.0.0.1:PORT/bank
        my.log()                              # every statement the server received
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

SERVER, INSTALL, CLIENT = Path("/usr/sbin/mariadbd"), Path("/usr/bin/mariadb-install-db"), Path("/usr/bin/mariadb")
READER, READER_PASSWORD = "fedsql_reader", "s3cret-My-pw!"


def available() -> str | None:
    """Why a server cannot be started here, or None."""
    for binary in (SERVER, INSTALL, CLIENT):
        if not binary.exists():
            return f"MariaDB is not installed ({binary} missing; apt-get install mariadb-server)"
    return None


@dataclass
class Server:
    root: Path
    port: int
    user: str
    proc: subprocess.Popen | None = None

    @property
    def socket(self) -> Path:
        return self.root / "mysqld.sock"

    def sql(self, sql: str, db: str | None = None) -> str:
        out = subprocess.run([str(CLIENT), "--no-defaults", "-S", str(self.socket), "-u", "root", "-N", "-B",
                              *([db] if db else []), "-e", sql], capture_output=True, text=True, timeout=120)
        if out.returncode:
            raise RuntimeError(out.stderr)
        return out.stdout

    def url(self, db: str, user: str = READER) -> str:
        return f"mysql://{user}@127.0.0.1:{self.port}/{db}"

    def log(self) -> str:
        path = self.root / "general.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(SERVER), "--no-defaults", f"--datadir={self.root / 'data'}", f"--socket={self.socket}",
             f"--port={self.port}", "--bind-address=127.0.0.1", f"--user={self.user}",
             f"--pid-file={self.root / 'mysqld.pid'}", "--general-log=1", f"--general-log-file={self.root / 'general.log'}",
             "--skip-log-bin", "--innodb-buffer-pool-size=64M", "--max-connections=60",
             f"--log-error={self.root / 'error.log'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.sql("SELECT 1")
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = (self.root / "error.log").read_text(errors="replace")[-2000:] if (self.root / "error.log").exists() else ""
                raise RuntimeError("MariaDB did not start:\n" + err)
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


@contextlib.contextmanager
def mysql_server() -> Iterator[Server]:
    from fedsql.launcher import free_ports

    user = pwd.getpwuid(os.geteuid()).pw_name
    root = Path(tempfile.mkdtemp(prefix="fedsql-my-"))
    if os.geteuid() == 0:  # mariadbd refuses to run as root unless told to: run it as `mysql`
        user = "mysql"
        pw = pwd.getpwnam(user)
        os.chown(root, pw.pw_uid, pw.pw_gid)
        os.chmod(root, 0o755)
    server = Server(root, free_ports(1)[0], user)
    try:
        subprocess.run([str(INSTALL), "--no-defaults", f"--datadir={root / 'data'}", f"--user={user}",
                        "--auth-root-authentication-method=socket", "--skip-test-db"],
                       check=True, capture_output=True, timeout=180)
        server.start()
        server.sql(f"CREATE USER '{READER}'@'%' IDENTIFIED BY '{READER_PASSWORD}'")
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
