"""The layers of the package (pyproject.toml's import-linter contracts) hold, and a forbidden import
breaks them: the check is live, not a contract that cannot fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (pip install -e '.[dev]')")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--no-cache", "--config", str(root / "pyproject.toml")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "multiticket", root / "multiticket",
                    ignore=shutil.ignore_patterns("__pycache__", "resources"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_real_tree_keeps_every_contract():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


@pytest.mark.parametrize(("where", "line", "contract"), [
    ("core/mask.py", "import multiticket.adapters", "core:"),
    ("core/prune.py", "from multiticket.config import TaskConfig", "core:"),
    ("adapters/toy.py", "from multiticket.config import TaskConfig", "adapters:"),
    ("launch/status.py", "from multiticket.cli import main", "launch:"),
])
def test_a_forbidden_import_breaks_its_contract(tmp_path, where, line, contract):
    root = _copy(tmp_path)
    module = root / "multiticket" / where
    module.write_text(module.read_text() + f"\n\ndef _forbidden() -> None:\n    {line}  # noqa\n")
    result = _lint(root)
    assert result.returncode != 0
    broken = [ln for ln in result.stdout.splitlines() if " BROKEN" in ln]
    assert any(b.startswith(contract) for b in broken), result.stdout  # (layers above may break with it)
