"""Declared dependencies match the imports (issue #15: `pygments` was imported but not declared,
so `pip install .` gave a shell without completion; `gmpy2` was declared but unused).

Every third-party module the product imports (fedsql/, plan/, planner/, executors/, connectors/) comes
from a distribution in `[project] dependencies`; every declared dependency is imported by the
product; tests and benchmarks may also use the `test`/`bench` extras.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("fedsql", "plan", "planner", "executors", "connectors")
OWN = set(PRODUCT) | {"tests", "benchmarks"}
# declared for what they provide at run time, not imported under their own name
IMPLIED = {"protobuf": "imported as google.protobuf by the generated *_pb2 modules"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist_names(specs: list[str]) -> set[str]:
    return {_norm(re.split(r"[<>=!~ \[;]", s, maxsplit=1)[0]) for s in specs}


def _imports(folders: tuple[str, ...]) -> dict[str, str]:
    """top-level module → one file that imports it (every import, module level or not)."""
    out: dict[str, str] = {}
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names = [node.module]
                for n in names:
                    out.setdefault(n.split(".")[0], str(path.relative_to(ROOT)))
    return {m: f for m, f in out.items() if m not in OWN and m not in sys.stdlib_module_names}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


# module → distribution for optional packages that may not be installed here
NOT_INSTALLED = {"snsql": "smartnoise-sql"}


def _distributions_of(module: str) -> set[str]:
    return {_norm(d) for d in packages_distributions().get(module, [NOT_INSTALLED.get(module, module)])}


def test_product_imports_are_declared() -> None:
    """In the dependencies, or in the extra of the optional integration that imports it."""
    project = _project()
    extras = {k: _dist_names(v) for k, v in project.get("optional-dependencies", {}).items()}
    declared = _dist_names(project["dependencies"]) | extras.get("sqlalchemy", set())
    missing = {m: f for m, f in _imports(PRODUCT).items() if not _distributions_of(m) & declared}
    assert not missing, f"imported but not in [project] dependencies (or the sqlalchemy extra): {missing}"
    assert extras["sqlalchemy"] <= extras["test"], "the tests exercise the SQLAlchemy dialect"


def test_declared_dependencies_are_used() -> None:
    used = set().union(*(_distributions_of(m) for m in _imports(PRODUCT)))  # noqa: C417
    unused = _dist_names(_project()["dependencies"]) - used - set(IMPLIED)
    assert not unused, f"declared in [project] dependencies but never imported by the product: {unused}"


def test_test_and_benchmark_imports_are_declared() -> None:
    project = _project()
    declared = _dist_names(project["dependencies"]).union(
        *(_dist_names(v) for v in project.get("optional-dependencies", {}).values()))
    # spu/jax: the side-by-side MPC peer in its own venv (benchmarks/spu_peer.py);
    # `exceptions`: tests/dbapi20.py's Python 2 fallback inside try/except
    optional = {"spu", "jax", "exceptions"}
    missing = {m: f for m, f in _imports(("tests", "benchmarks")).items()
               if not _distributions_of(m) & declared and m not in optional}
    assert not missing, f"imported by tests/benchmarks but not declared (dependencies or an extra): {missing}"
