"""A run directory names code, and no command that opens it imports that code (issue 29): a torch
run directory whose ``config.yaml`` points ``torch.module_dir`` at itself and carries the module,
and an RL one whose ``rl.imports`` names a module it carries (importable when the command runs
from inside it). ``status``, ``report``, ``compare``, ``transfer`` (as the source) and
``instability`` never import it: each exits 0 or with one line and code 2, and the marker the
module would write never appears. ``instability --trust-code`` imports what the user trusts, and
still never a module from inside the run directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.analysis.synthetic import make_run

ROOT = Path(__file__).resolve().parents[1]
EVIL = "import pathlib\npathlib.Path(__file__).with_name('MARKER').write_text('ran')\n"


def _plant(tmp_path: Path, domain: str, section: dict, module: str) -> Path:
    run = make_run(tmp_path / domain, "rl" if domain == "rl" else "nlp", seeds=(0,), levels=1)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config.pop("nlp", None)
    config.pop("rl", None)
    config.update(domain=domain, **{domain: section})
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / f"{module}.py").write_text(EVIL)
    return run


@pytest.fixture
def planted(tmp_path: Path) -> list[Path]:
    return [
        _plant(tmp_path, "torch", {"module": "tinymod", "module_dir": "."}, "tinymod"),
        _plant(tmp_path, "rl", {"env": "CartPole-v1", "algo": "ppo", "imports": ["evilmod"]}, "evilmod"),
    ]


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "multiticket", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_no_command_that_opens_a_run_directory_imports_the_code_it_names(planted: list[Path], tmp_path: Path):
    for run in planted:
        commands = [["status", "."], ["report", "."], ["compare", ".", "--out", str(tmp_path / "cmp")],
                    ["transfer", ".", "--to", "toy-mlp", "--out", str(tmp_path / "tr"), "--quiet"],
                    ["instability", ".", "--quiet"]]
        for args in commands:
            done = _cli(run, *args)  # from inside the run directory: its modules are importable by name
            assert not (run / "MARKER").exists(), (run.name, args, done.stdout, done.stderr)
            assert "Traceback" not in done.stderr, (args, done.stderr)
            assert done.returncode in (0, 2), (args, done.returncode, done.stderr)
            if done.returncode == 2:
                assert len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
        refused = _cli(run, "instability", ".", "--quiet")
        assert refused.returncode == 2
        assert ("--trust-code" in refused.stderr) or ("module_dir" in refused.stderr), refused.stderr


def test_trust_code_never_reaches_inside_the_run_directory(planted: list[Path]):
    torch_run = planted[0]
    done = _cli(torch_run, "instability", ".", "--quiet", "--trust-code")
    assert done.returncode == 2 and not (torch_run / "MARKER").exists()
    assert "torch.module_dir" in done.stderr and "relative" in done.stderr, done.stderr
    config = yaml.safe_load((torch_run / "config.yaml").read_text())
    config["torch"]["module_dir"] = str(torch_run.resolve())  # absolute, but inside the run directory
    (torch_run / "config.yaml").write_text(yaml.safe_dump(config))
    done = _cli(torch_run.parent, "instability", str(torch_run), "--quiet", "--trust-code")
    assert done.returncode == 2 and not (torch_run / "MARKER").exists()
    assert "inside the run directory" in done.stderr, done.stderr
    rl_run = planted[1]
    done = _cli(rl_run, "instability", ".", "--quiet")
    assert done.returncode == 2 and "names user code (evilmod)" in done.stderr and "--trust-code" in done.stderr


def test_terminal_escapes_from_a_run_directory_are_shown_not_obeyed(tmp_path: Path):
    """A metric name holding a screen clear, a window title and an OSC 52 clipboard write, and a
    bidirectional override: ``report`` prints each as a visible escape."""
    hostile = "acc\x1b[2J\x1b]0;pwned\x07\x1b]52;c;ZXZpbA==\x07\u202e"

    def values(seed: int, control: str, level: int) -> dict[str, float]:
        return {hostile: 0.9 if control == "ticket" else 0.5}

    run = make_run(tmp_path, "nlp", seeds=(0, 1), levels=1, values=values)
    done = _cli(tmp_path, "report", str(run))
    assert done.returncode == 0, done.stderr
    shown = done.stdout + done.stderr
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown
    assert "acc\\x1b[2J\\x1b]0;pwned\\x07" in shown.replace("\n", "").replace(" ", "")  # visible, not obeyed
