"""A throw-away Spark Connect server for tests: pyspark's own Spark (local mode, 2 cores) with the
Connect plugin, on a free loopback port, requiring a bearer token, stopped afterwards.

    with spark_server() as spark:
        spark.session().sql("CREATE TABLE bank.t ...")   # a client session (with the token)
        spark.url                                        # sc://localhost:PORT
        spark.plans()                                    # the physical plans Spark ran (its event log)

The server is a real Spark: tables are Parquet files in its warehouse (a temp dir), every query
is planned and run by Spark SQL, and its event log records each plan, which is how tests see
that a fragment's WHERE and GROUP BY ran in Spark.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

TOKEN = "s3cret-Spark-t0ken"


def available() -> str | None:
    """Why a server cannot be started here, or None."""
    try:
        import pyspark  # noqa: F401
        from pyspark.sql.connect.session import SparkSession  # noqa: F401
    except ImportError:
        return "pyspark[connect] is not installed (pip install -e '.[spark]')"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no Java runtime (Spark needs Java 17+)"
    return None


@dataclass
class Server:
    root: Path
    port: int
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"sc://localhost:{self.port}"

    def session(self, token: str | None = TOKEN) -> Any:
        from pyspark.sql.connect.session import SparkSession

        return SparkSession.builder.remote(self.url + (f"/;token={token}" if token else "")).create()

    def log(self) -> str:
        return (self.root / "server.log").read_text(errors="replace")

    def _events(self, kind: str) -> list[dict]:
        out = []
        for path in sorted(p for p in (self.root / "events").rglob("*") if p.is_file()):
            for line in path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if isinstance(event, dict) and str(event.get("Event")).endswith(kind):
                        out.append(event)
        return out

    def statements(self) -> list[str]:
        """The text of every statement a Connect client sent so far (newest last)."""
        return [e.get("statementText", "") for e in self._events("SparkListenerConnectOperationStarted")]

    def plans(self) -> list[str]:
        """The physical plan of every SQL execution Spark ran so far (newest last)."""
        return [e.get("physicalPlanDescription", "") for e in self._events("SparkListenerSQLExecutionStart")]

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)


def start(root: Path, port: int, cores: int = 2, memory: str = "1g") -> Server:
    """Start the server in `root` (warehouse, event log, log file) and wait until it listens."""
    import pyspark

    home = Path(pyspark.__file__).parent
    (root / "events").mkdir(parents=True, exist_ok=True)
    conf = {
        "spark.connect.grpc.binding.port": str(port), "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.authenticate.token": TOKEN, "spark.sql.warehouse.dir": str(root / "warehouse"),
        "spark.eventLog.enabled": "true", "spark.eventLog.dir": f"file://{root}/events",
        "spark.eventLog.compress": "false", "spark.eventLog.rolling.enabled": "false",
        "spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4",
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={root}",
    }
    cmd = [str(home / "bin" / "spark-submit"), "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
           "--master", f"local[{cores}]", "--driver-memory", memory, "--name", "fedsql-test-connect"]
    for k, v in conf.items():
        cmd += ["--conf", f"{k}={v}"]
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1"}
    env.pop("SPARK_CONNECT_AUTHENTICATE_TOKEN", None)
    log = open(root / "server.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env, start_new_session=True)
    log.close()
    server = Server(root, port, proc)
    deadline = time.monotonic() + 180
    while "Spark Connect server started" not in server.log():
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError("the Spark Connect server did not start:\n" + server.log()[-3000:])
        time.sleep(0.5)
    return server


@contextlib.contextmanager
def spark_server(cores: int = 2, memory: str = "1g") -> Iterator[Server]:
    from fedsql.launcher import free_ports

    root = Path(tempfile.mkdtemp(prefix="fedsql-spark-"))
    server = start(root, free_ports(1)[0], cores, memory)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
