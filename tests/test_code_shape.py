"""The developers' guide's shape rule, checked: no function in ``multiticket/`` is longer than 60
lines (signature and docstring included, decorators not), so every unit of control flow can be
read on one screen. The failure lists every offender, longest first."""

from __future__ import annotations

import ast
from pathlib import Path

import multiticket

MAX_LINES = 60
PACKAGE = Path(multiticket.__file__).parent


def function_lengths(root: Path) -> list[tuple[int, str]]:
    """``(lines, "path:line name")`` of every function and method under ``root``."""
    out = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                out.append((lines, f"{path.relative_to(root.parent)}:{node.lineno} {node.name}"))
    return sorted(out, reverse=True)


def test_function_lengths_are_measured_from_def_to_last_line(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(61))
    (pkg / "m.py").write_text(f"@staticmethod\ndef long():\n{body}\n\n\ndef short():\n    return 1\n")
    assert function_lengths(pkg) == [(62, "pkg/m.py:2 long"), (2, "pkg/m.py:66 short")]


def test_no_function_in_multiticket_is_longer_than_60_lines():
    offenders = [f"{name} ({n} lines)" for n, name in function_lengths(PACKAGE) if n > MAX_LINES]
    assert not offenders, f"functions over {MAX_LINES} lines:\n" + "\n".join(offenders)
