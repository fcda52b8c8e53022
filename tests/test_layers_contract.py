"""The whole package's layers contract (pyproject.toml) holds, and is live: a copy of the package with
an upward import injected fails it, and so does a root module that no layer places or two parts that
must not know each other importing one another. Also: the console entry point is the CLI's, so the
signal handling below it imports nothing of multiticket."""

from __future__ import annotations

import ast
import importlib
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"

needs_lint = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (pip install -e '.[dev]')")


def _copy(tmp_path: Path) -> Path:
    """The package and pyproject.toml in a fresh folder (the shipped data left out: no code there)."""
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "multiticket", root / "multiticket",
                    ignore=shutil.ignore_patterns("__pycache__", "resources"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def _broken(root: Path) -> list[str]:
    """The contracts lint-imports reports broken for the package under ``root`` (it must run: rc 0 or 1)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    result = subprocess.run([str(LINT), "--no-cache", str(root / "pyproject.toml")], cwd=root, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    broken = [ln.partition(" BROKEN")[0] for ln in result.stdout.splitlines() if " BROKEN" in ln]
    assert (result.returncode == 0) == (not broken), result.stdout
    return broken


def _inject(root: Path, where: str, line: str) -> None:
    """Append a function holding ``line`` to ``multiticket/<where>`` (function-level imports count)."""
    module = root / "multiticket" / where
    module.write_text(module.read_text() + f"\n\ndef _injected() -> None:\n    {line}  # noqa\n")


def test_the_layers_contract_covers_the_whole_package():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = [c for c in contracts if c["type"] == "layers"]
    assert len(layers) == 1 and layers[0]["containers"] == ["multiticket"] and layers[0]["exhaustive"]
    placed = {part.strip() for layer in layers[0]["layers"] for part in layer.split("|")}
    on_disk = {p.stem for p in (ROOT / "multiticket").glob("*.py") if p.stem != "__init__"}
    on_disk |= {p.parent.name for p in (ROOT / "multiticket").glob("*/__init__.py")}
    assert placed == on_disk


@needs_lint
def test_the_untouched_copy_keeps_every_contract(tmp_path):
    assert _broken(_copy(tmp_path)) == []


@needs_lint
@pytest.mark.parametrize(("where", "line", "contract"), [
    ("core/mask.py", "import multiticket.cli", "layers:"),  # the core reaching the top
    ("config/loading.py", "from multiticket.rundir import read_run_config", "layers:"),  # no forbidden contract
    ("interrupts.py", "from multiticket.cli import main", "layers:"),  # the old cycle, back
    ("schema.py", "import multiticket.errors", "layers:"),  # two leaves of one layer
    ("analysis/report.py", "import multiticket.launch.driver", "independence: launching"),
    ("adapters/hf/data.py", "import multiticket.adapters.sb3", "independence: one domain's"),
])
def test_an_upward_or_sideways_import_breaks_the_contracts(tmp_path, where, line, contract):
    root = _copy(tmp_path)
    _inject(root, where, line)
    broken = _broken(root)
    assert any(b.startswith(contract) for b in broken), broken


@needs_lint
def test_a_root_module_no_layer_places_breaks_the_layers_contract(tmp_path):
    root = _copy(tmp_path)
    (root / "multiticket" / "unplaced.py").write_text('"""A new root module."""\n')
    assert any(b.startswith("layers:") for b in _broken(root))


def test_the_console_entry_point_is_the_cli_and_interrupts_imports_nothing_of_multiticket():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = scripts["multiticket"].partition(":")
    assert module == "multiticket.cli" and callable(getattr(importlib.import_module(module), name))
    tree = ast.parse((ROOT / "multiticket" / "interrupts.py").read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m.split(".")[0] == "multiticket"]
