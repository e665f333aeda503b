"""Only the MPC engine (executors/mpc/) sees inside a share (issue #18): elsewhere no code reads
a share's `.a` / `.b` components or builds an AShare / BShare from arrays, so the operators above
the engine cannot depend on its representation (they use `zeros`, `constant`, `slice_rows`,
`sum_all`, `sum_segments`, `mul_public`, … instead)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "executors" / "mpc"
SOURCES = sorted(p for pkg in ("fedsql", "planner", "executors", "connectors") for p in (ROOT / pkg).rglob("*.py")
                 if ENGINE not in p.parents and not p.name.endswith(("_pb2.py", "_pb2_grpc.py")))


def share_internals(path: Path) -> list[str]:
    """`line: what` for each `.a` / `.b` read and each AShare(...) / BShare(...) built in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr in ("a", "b"):
            found.append(f"{node.lineno}: .{node.attr}")
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ("AShare", "BShare"):
                found.append(f"{node.lineno}: {name}(...)")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_no_share_internals_outside_the_engine(path: Path) -> None:
    assert share_internals(path) == [], f"{path.relative_to(ROOT)} reaches into shares; use an engine operation"


def test_the_check_sees_share_internals() -> None:
    assert share_internals(ROOT / "executors" / "mpc" / "shares.py")  # the engine itself does
