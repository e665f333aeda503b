"""A throw-away PostgreSQL 15 server for tests: `initdb` in a temp dir, started on a free port
as an unprivileged user (PostgreSQL refuses to run as root), stopped afterwards.

    with postgres_server(tmp_path) as pg:
        pg.sql("CREATE TABLE ...")            # as the superuser, through psql
        pg.url("bank")                         # postgresql://fedsql_reader@127.0.0.1:PORT/bank
        pg.log()                               # the server log (log_statement = 'all')
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

BIN = Path("/usr/lib/postgresql/15/bin")
READER, READER_PASSWORD = "fedsql_reader", "s3cret-Pg-pw!"


def available() -> str | None:
    """Why a server cannot be started here, or None."""
    if not (BIN / "initdb").exists():
        return f"PostgreSQL 15 is not installed ({BIN}/initdb missing)"
    return None


def _user() -> tuple[str, int, int] | None:
    """An unprivileged account to run the server as (None: we are not root, run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pw = pwd.getpwnam(name)
            return name, pw.pw_uid, pw.pw_gid
    subprocess.run(["useradd", "--system", "--no-create-home", "fedsql_pg"], check=True, capture_output=True)
    pw = pwd.getpwnam("fedsql_pg")
    return "fedsql_pg", pw.pw_uid, pw.pw_gid


@dataclass
class Server:
    root: Path
    port: int
    runas: list[str]

    def psql(self, sql: str, db: str = "postgres") -> str:
        out = subprocess.run([*self.runas, str(BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.root),
                              "-p", str(self.port), "-U", "postgres", "-d", db, "-At", "-c", sql],
                             capture_output=True, text=True, timeout=60)
        if out.returncode:
            raise RuntimeError(out.stderr)
        return out.stdout

    def url(self, db: str, user: str = READER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{db}"

    def log(self) -> str:
        return (self.root / "server.log").read_text(errors="replace")

    def stop(self) -> None:
        subprocess.run([*self.runas, str(BIN / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)

    def start(self) -> None:
        subprocess.run([*self.runas, str(BIN / "pg_ctl"), "-D", str(self.root / "data"), "-l", str(self.root / "server.log"),
                        "-w", "-t", "30", "start"], check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def postgres_server() -> Iterator[Server]:
    from fedsql.launcher import free_ports

    user = _user()
    root = Path(tempfile.mkdtemp(prefix="fedsql-pg-"))
    runas: list[str] = []
    if user is not None:
        os.chown(root, user[1], user[2])
        os.chmod(root, 0o755)
        runas = ["runuser", "-u", user[0], "--"]
    port = free_ports(1)[0]
    server = Server(root, port, runas)
    try:
        subprocess.run([*runas, str(BIN / "initdb"), "-D", str(root / "data"), "-U", "postgres", "--auth=trust",
                        "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C"], check=True, capture_output=True, timeout=120)
        conf = root / "data" / "postgresql.conf"
        with open(conf, "a") as f:
            f.write(f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{root}'\n"
                    "log_statement = 'all'\nfsync = off\nshared_buffers = 16MB\nmax_connections = 40\n")
        server.start()
        server.psql(f"CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}'")
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
