"""Start a real federation in which some parties run a modified node.

    config, data = standard_federation(tmp_path)
    with running(config, attacks={"p2": "schema_injection"}, params={"p2": {...}}) as fed:
        with fed.connect("p1") as conn: ...          # a user of p1
        stub = fed.stub("p2", "p1")                  # the test process acting as p2's node
        fed.attack_log("p2")                         # what the modified node recorded

A modified node is a real node process (`tests/adversarial/modified_node.py`) with an
attack module from `tests/adversarial/attacks/` applied before it serves.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parents[2]


def standard_federation(directory: Path, sizes: tuple[int, int, int] = (120, 80, 0)) -> tuple[Path, dict[str, Any]]:
    """The usual three-party test federation (p1, p2, p3 with table `t`; union `t`)."""
    from tests.conftest import write_test_federation

    return write_test_federation(Path(directory), sizes)


def write_config(directory: Path, config_text: str, tables: dict[str, Any]) -> Path:
    """Write `tables` (file name → pyarrow.Table, as Parquet) and `config_text` with its
    `{port1}`, `{port2}`, … placeholders filled with free local ports; returns the config path."""
    import pyarrow.parquet as pq

    from fedsql.launcher import free_ports

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        pq.write_table(table, directory / name)
    ports = free_ports(9)
    config = directory / "federation.toml"
    config.write_text(config_text.format(**{f"port{i + 1}": p for i, p in enumerate(ports)}), encoding="utf-8")
    return config


@dataclass
class Running:
    """A running federation; some of its nodes modified."""

    config: Path
    fed: Any
    procs: Any
    records: dict[str, Path] = field(default_factory=dict)

    def connect(self, party: str, **kwargs: Any) -> Any:
        """A DB-API connection as a user of `party` (its client certificate)."""
        import fedsql

        return fedsql.connect(str(self.config), party=party, **kwargs)

    def stub(self, as_party: str, target: str) -> Any:
        """A NodeStub to `target` authenticated with `as_party`'s node certificate."""
        from fedsql import tls
        from fedsql.proto import node_pb2_grpc as rpc

        return rpc.NodeStub(tls.Identity(self.fed, as_party).secure_channel(target))

    def attack_log(self, party: str) -> list[dict]:
        path = self.records.get(party)
        if path is None or not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def node_log(self, party: str) -> str:
        return self.procs.nodes[party].log_path.read_text(encoding="utf-8", errors="replace")

    def state_dir(self, party: str) -> Path:
        from fedsql.tls import state_dir

        return state_dir(self.fed, party)

    def audit_text(self, party: str) -> str:
        """The raw audit log of `party` (every line, for "does this secret appear" checks)."""
        from fedsql.audit import audit_path

        path = Path(audit_path(self.fed, party))
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def kill(self, party: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.nodes[party].process
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        proc.wait(timeout=10)


@contextlib.contextmanager
def running(config: Path, attacks: dict[str, str] | None = None,
            params: dict[str, dict] | None = None, timeout: float = 90.0) -> Iterator[Running]:
    """Start every party of `config`; those in `attacks` run the named attack module."""
    from fedsql.config import load_config
    from fedsql.launcher import start_federation

    attacks = attacks or {}
    params = params or {}
    config = Path(config)
    fed = load_config(config)
    log_dir = config.parent / "logs"
    records = {p: log_dir / f"{p}.attack.jsonl" for p in attacks}
    log_dir.mkdir(parents=True, exist_ok=True)
    for path in records.values():
        path.unlink(missing_ok=True)

    def command(party: str) -> list[str]:
        if party not in attacks:
            return [sys.executable, "-m", "fedsql.cli", "node", str(config), "--party", party]
        return [sys.executable, "-m", "tests.adversarial.modified_node", str(config), "--party", party,
                "--attack", attacks[party], "--params", json.dumps(params.get(party, {})),
                "--record", str(records[party])]

    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([old] if old else []))
    try:
        with start_federation(config, log_dir=log_dir, timeout=timeout, node_command=command) as procs:
            yield Running(config, fed, procs, records)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
