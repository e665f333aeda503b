"""The project's modules import each other without cycles (issue #18: layers point one way).

Only module-level imports count: they run when a module loads, so a cycle among them
makes some import order fail (`import connectors.dbapi` used to, through
`fedsql/__init__`). Imports inside functions are deliberate late bindings.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fedsql", "plan", "planner", "executors", "connectors")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
            if not p.name.endswith("_pb2.py") and not p.name.endswith("_pb2_grpc.py")}


def _top_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()

    def add(target: str) -> None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        while target:  # importing a.b.c first runs a/__init__ and a/b/__init__
            if target != name and target in known:
                out.add(target)
            target = target.rpartition(".")[0]

    for node in tree.body:  # module level only (including under if/try at top level)
        stack = [node]
        while stack:
            n = stack.pop()
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if isinstance(n, ast.If) and isinstance(n.test, ast.Name) and n.test.id == "TYPE_CHECKING":
                continue
            if isinstance(n, ast.Import):
                for alias in n.names:
                    add(alias.name)
            elif isinstance(n, ast.ImportFrom):
                base = n.module or ""
                if n.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (n.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in n.names:
                    add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
            stack.extend(ast.iter_child_nodes(n))
    return out


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for dep in sorted(graph.get(m, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_module_level_import_cycle() -> None:
    modules = _modules()
    known = set(modules)
    graph = {m: _top_level_imports(m, p, known) for m, p in modules.items()}
    # a package imports its own submodules' names for re-export; that is not a cycle
    for m, deps in graph.items():
        deps.difference_update({d for d in deps if d.startswith(m + ".")})
    cycle = _cycle(graph)
    assert cycle is None, "module-level import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("module", ["connectors.dbapi", "connectors.sqlalchemy_dialect", "fedsql.node",
                                    "planner.compile", "executors.runtime", "connectors.flight_sql"])
def test_each_entry_module_imports_first(module: str) -> None:
    """Any module can be the first one imported (a cycle would break some order)."""
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_dbapi_surface_is_still_on_the_package() -> None:
    import fedsql
    from connectors import dbapi

    assert fedsql.connect is dbapi.connect and fedsql.Cursor is dbapi.Cursor
    assert fedsql.paramstyle == "qmark" and fedsql.STRING == "VARCHAR"
    assert "connect" in dir(fedsql)


MPC_MODULES = sorted(m for m in _modules() if m == "executors.mpc" or m.startswith("executors.mpc."))


@pytest.mark.parametrize("module", MPC_MODULES)
def test_the_mpc_engine_imports_no_grpc(module: str) -> None:
    """The MPC engine runs on any Transport (executors/transport.py): loading it, alone and first,
    must not load gRPC, directly or through another project module (issue #18)."""
    code = (f"import sys, {module}\n"
            "bad = sorted(m for m in sys.modules if m == 'grpc' or m.startswith('grpc.') or m.endswith('_pb2_grpc'))\n"
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, f"importing {module} loads gRPC:\n{proc.stderr[-2000:]}"


LEAVES = {"fedsql.errors", "fedsql.config", "fedsql.dp_config", "fedsql.settings", "fedsql.locked_duckdb",
          "fedsql.state"}
"""Errors, configuration, levels, settings, the locked DuckDB and the state directory: imported by
every layer, importing only each other."""

LATE_EDGES = {("fedsql.config", "connectors.sources.url"): "config checks a table's source URL with the "
              "sources' own parser, inside the function that needs it"}


def _layer(module: str) -> tuple[int, str]:
    """(rank, group): a module may import lower ranks, and its own group at the same rank."""
    if module in LEAVES:
        return 0, "leaf"
    top = module.split(".")[0]
    if top == "plan":
        return 1, "plan"
    if top in ("planner", "executors") or module.startswith("connectors.sources"):
        return 2, "connectors.sources" if top == "connectors" else top
    return 3, "app"


def _all_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every project module `name` imports, at module level or inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                base = ".".join(anchor[: len(anchor) - (node.level - 1)] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def test_layers_point_one_way() -> None:
    """planner → plan ← executors, both over the leaf modules; the node, clients and CLI on top
    (docs/architecture.md §8). Function-level imports count too: a late import is still an edge."""
    modules = _modules()
    known = set(modules)
    upward = []
    for m, p in sorted(modules.items()):
        rank, group = _layer(m)
        for dep in sorted(_all_imports(m, p, known)):
            dep_rank, dep_group = _layer(dep)
            allowed = dep_rank < rank or dep_group == group or (group == "executors" and dep_group == "connectors.sources")
            if not allowed and (m, dep) not in LATE_EDGES:
                upward.append(f"{m} -> {dep}")
    assert not upward, "imports against the layers:\n" + "\n".join(upward)
