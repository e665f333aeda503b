"""The SQLAlchemy dialect under SQLAlchemy 1.4, which Superset pins (issue #15: `sqlalchemy.types`
has no `Double` there and the dialect failed to import).

Builds a venv with `sqlalchemy<2` and the pandas/numpy/pyarrow of that era (pandas < 2.2 needs
numpy 1.x, which pyarrow < 21 still supports), installs fedsql into it, and runs
tests/test_sqlalchemy.py there (its own test federation, the same assertions).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


def test_dialect_under_sqlalchemy_1_4(tmp_path: Path) -> None:
    venv = tmp_path / "sa14"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    pip = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                          "sqlalchemy>=1.4,<2", "pandas<2.2", "numpy<2", "pyarrow>=18,<21", "pytest>=8", "hypothesis", "-e", str(ROOT)],
                         capture_output=True, text=True, timeout=600)
    if pip.returncode != 0 and "No matching distribution" in pip.stderr + pip.stdout:
        pytest.skip("SQLAlchemy 1.4 is not installable here")
    assert pip.returncode == 0, pip.stderr[-3000:]
    version = subprocess.run([str(py), "-c", "import sqlalchemy; print(sqlalchemy.__version__)"],
                             capture_output=True, text=True, check=True).stdout
    assert version.startswith("1.4."), version
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = subprocess.run([str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_sqlalchemy.py",
                          f"--basetemp={tmp_path / 'run'}"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, env=env)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout.splitlines()[-1], run.stdout[-500:]
