"""Start every party of a federation on this machine, one OS process each.

Used by `fedsql up`, `fedsql demo` and the end-to-end tests, so "a real
federation" always means the same thing: separate `fedsql node` processes that
talk gRPC. Each node's stdout/stderr go to `<log_dir>/<party>.log`; when a node
fails to come up or dies, the error shows the tail of that log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from fedsql.config import Federation, load_config
from fedsql.errors import ConfigError, OperationalError, PartyUnavailable

DEFAULT_START_TIMEOUT = 60.0
"""Seconds to wait for all nodes to answer Health (imports are slow on busy machines)."""


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def port_in_use(address: str) -> bool:
    """True when something already listens on `address` (or it cannot be bound here)."""
    host, port = _split_address(address)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return True
    family, _, _, _, sockaddr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR: ignore TIME_WAIT leftovers, still fail on a live listener.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(sockaddr)
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS just reported free (used for demo and test configs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """`n` distinct free ports (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    kept = [ln for ln in text.splitlines() if ln.strip()][-lines:]
    return "\n".join("    " + ln for ln in kept) if kept else "    (log is empty)"


# a launcher holds gRPC channels (readiness checks, the demo's client) while it starts nodes;
# grpcio's fork handlers must not run in the children (grpc/grpc#43055); set before grpc loads
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

PARENT_ENV = "FEDSQL_LAUNCHER_PID"
"""Set for the nodes a launcher starts: each node asks the kernel for SIGTERM when that
process dies (`die_with_launcher`), so no node is orphaned holding its port. It is done in
the node, not in a `preexec_fn`: running Python between fork and exec in a process with live
gRPC channels crashes the child in grpcio's fork handlers (grpc/grpc#43055)."""


def die_with_launcher() -> None:
    """In a node started by a launcher: SIGTERM when the launcher dies (Linux; elsewhere the
    launcher's `stop()` is the only cleanup). A launcher already gone: exit at once."""
    expected = os.environ.get(PARENT_ENV)
    if not expected or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != expected:  # it died before prctl took effect
        os._exit(0)


@dataclass
class NodeProcess:
    party: str
    address: str
    process: subprocess.Popen
    log_path: Path

    def describe_exit(self) -> str:
        code = self.process.returncode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return f"node of party '{self.party}' ({self.address}) stopped ({how}); last lines of {self.log_path}:\n{tail(self.log_path)}"


@dataclass
class FederationProcesses:
    """Handle on a running local federation."""

    federation: Federation
    config_path: Path
    log_dir: Path
    nodes: dict[str, NodeProcess] = field(default_factory=dict)

    def ready_line(self) -> str:
        addrs = " ".join(f"{p}={n.address}" for p, n in self.nodes.items())
        return f"fedsql: federation '{self.federation.name}' ready: {addrs}"

    def dead(self) -> NodeProcess | None:
        """The first node that has exited, if any."""
        for node in self.nodes.values():
            if node.process.poll() is not None:
                return node
        return None

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM every node, wait up to `grace` seconds, then SIGKILL what is left."""
        for node in self.nodes.values():
            if node.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    node.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for node in self.nodes.values():
            remaining = max(deadline - time.monotonic(), 0.0)
            try:
                node.process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    node.process.kill()
                node.process.wait()

    def wait(self, poll: float = 0.5) -> NodeProcess:
        """Block until some node exits; returns it (the caller stops the rest)."""
        while True:
            node = self.dead()
            if node is not None:
                return node
            time.sleep(poll)


def check_ports(fed: Federation, parties: list[str] | None = None) -> None:
    """Refuse to start when a party's port is taken, naming party and port."""
    for name in parties or list(fed.parties):
        party = fed.parties[name]
        if port_in_use(party.address):
            raise OperationalError(
                f"cannot start party '{name}': address {party.address} is already in use "
                f"(another federation running? stop it, or change parties.{name}.address in {fed.path})"
            )


def _wait_ready(procs: FederationProcesses, timeout: float) -> None:
    from fedsql.client import NodeClient

    pending = dict(procs.nodes)
    cfg = str(procs.config_path)
    clients = {p: NodeClient(n.address, party=p, config_path=cfg) for p, n in pending.items()}
    deadline = time.monotonic() + timeout
    try:
        while pending:
            for party in list(pending):
                node = pending[party]
                if node.process.poll() is not None:
                    raise PartyUnavailable("could not start the federation: " + node.describe_exit())
                try:
                    info = clients[party].health(timeout=1.0)
                except PartyUnavailable:
                    continue
                if info.get("party") and info["party"] != party:
                    raise OperationalError(
                        f"{node.address} answers as party '{info['party']}', expected '{party}'"
                    )
                del pending[party]
            if not pending:
                break
            if time.monotonic() > deadline:
                party = sorted(pending)[0]
                node = pending[party]
                raise PartyUnavailable(
                    f"node of party '{party}' did not come up at {node.address} within {timeout:g} s; "
                    f"last lines of {node.log_path}:\n{tail(node.log_path)}"
                )
            time.sleep(0.2)
    finally:
        for c in clients.values():
            c.close()


def default_log_dir(fed: Federation) -> Path:
    """`<config dir>/.fedsql/logs/`: node logs of local federations, one `<party>.log` each
    (the previous run's as `<party>.log.1`), next to the parties' other local state."""
    from fedsql.state import logs_dir

    return logs_dir(fed.path)


@contextlib.contextmanager
def start_federation(
    config_path: str | os.PathLike[str],
    log_dir: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_START_TIMEOUT,
    parties: list[str] | None = None,
    node_command: Callable[[str], list[str]] | None = None,
) -> Iterator[FederationProcesses]:
    """Start the nodes of `config_path` (all parties, or `parties`), wait until
    every one answers Health, yield, then stop them all, whatever happens.

    `node_command(party)` replaces the argv that starts a party's node (tests run a
    *modified* node this way, tests/adversarial/); by default `fedsql node CONFIG --party P`."""
    fed = load_config(config_path)
    selected = parties or list(fed.parties)
    for p in selected:
        fed.party(p)  # ConfigError for unknown names
    check_ports(fed, selected)
    # a federation run on one machine gets its keys made here (production: `fedsql keys`)
    from fedsql.tls import ensure_local_keys, pin_in_config
    from fedsql.tls import paths as tls_paths

    ensure_local_keys(fed, selected)
    # the parties run here hold their keys here: pin them in the federation file (docs/security.md)
    own = [p for p in selected if tls_paths(fed, p).private_key.exists() and not tls_paths(fed, p).certificate_sha256]
    if own:
        pin_in_config(fed, own)
        fed = load_config(config_path)
    logs = Path(log_dir) if log_dir else default_log_dir(fed)
    logs.mkdir(parents=True, exist_ok=True)
    procs = FederationProcesses(fed, fed.path, logs)
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env[PARENT_ENV] = str(os.getpid())
    try:
        for p in selected:
            log_path = logs / f"{p}.log"
            if log_path.exists():  # keep the previous run's log next to the new one
                os.replace(log_path, log_path.with_name(f"{p}.log.1"))
            log = open(log_path, "wb")
            try:
                argv = (node_command(p) if node_command else
                        [sys.executable, "-m", "fedsql.cli", "node", str(fed.path), "--party", p])
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    # Own session: Ctrl-C reaches only the launcher, which stops nodes in order.
                    start_new_session=True,
                )
            finally:
                log.close()
            procs.nodes[p] = NodeProcess(p, fed.parties[p].address, proc, log_path)
        _wait_ready(procs, timeout)
        yield procs
    finally:
        procs.stop()


def run_up(config_path: str, log_dir: str | None = None, timeout: float = DEFAULT_START_TIMEOUT) -> int:
    """`fedsql up`: start, print one ready line, run until Ctrl-C/SIGTERM or a node dies."""

    def _on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, _on_term)
    try:
        with start_federation(config_path, log_dir=log_dir, timeout=timeout) as procs:
            print(f"{procs.ready_line()} (logs in {procs.log_dir}; Ctrl-C stops)", flush=True)
            node = procs.wait()
            print(f"error: {node.describe_exit()}\nstopping the other nodes", file=sys.stderr, flush=True)
            return 1
    except KeyboardInterrupt:
        print("fedsql: stopping federation", file=sys.stderr, flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, old)


__all__ = [
    "start_federation", "FederationProcesses", "NodeProcess", "run_up",
    "check_ports", "port_in_use", "free_port", "free_ports", "ConfigError",
]
