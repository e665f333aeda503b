"""The docs stand alone: every file they cite exists in the repository.

Markdown links and code paths under the project's own folders (e.g.
`planner/compile.py`) in README.md and docs/*.md must name files or folders that
are here; a design document outside the repository is never cited.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "RESULTS.md",
        ROOT / "benchmarks" / "tpch" / "README.md"]
TOP = ("fedsql", "plan", "planner", "executors", "connectors", "tests", "benchmarks", "docs", ".ci")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
PATH = re.compile(r"(?<![\w./-])((?:%s)/[\w./*-]*[\w*])" % "|".join(re.escape(t) for t in TOP))


def _cited(doc: Path) -> list[tuple[str, Path]]:
    text = doc.read_text(encoding="utf-8")
    out = []
    for target in LINK.findall(text):
        if "://" not in target and not target.startswith("mailto:"):
            out.append((target, (doc.parent / target)))
    for target in PATH.findall(text):
        out.append((target, ROOT / target))
    return out


@pytest.mark.parametrize("doc", [d for d in DOCS if d.exists()], ids=lambda d: str(d.relative_to(ROOT)))
def test_cited_files_exist(doc: Path) -> None:
    missing = []
    for target, path in _cited(doc):
        if "*" in target:
            if not list(path.parent.glob(path.name)):
                missing.append(target)
        elif not path.exists():
            missing.append(target)
    assert not missing, f"{doc.relative_to(ROOT)} cites files the repository lacks: {sorted(set(missing))}"


def test_no_external_design_document_is_cited() -> None:
    banned = "DESIGN" + ".md"  # the target design lives outside the repository
    for doc in [*DOCS, *ROOT.glob("*/**/*.py")]:
        if doc.exists() and ".venv" not in doc.parts:
            assert banned not in doc.read_text(encoding="utf-8", errors="replace"), doc


def test_the_code_cites_docs_that_exist() -> None:
    """Docstrings and comments point readers at docs/*.md: those files must be here."""
    cited = re.compile(r"docs/[\w.-]+\.md")
    missing = set()
    for top in ("fedsql", "plan", "planner", "executors", "connectors", "benchmarks", "tests"):
        for source in (ROOT / top).rglob("*.py"):
            for target in cited.findall(source.read_text(encoding="utf-8", errors="replace")):
                if not (ROOT / target).exists():
                    missing.add(f"{source.relative_to(ROOT)}: {target}")
    assert not missing, sorted(missing)
