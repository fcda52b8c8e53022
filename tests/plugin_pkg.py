"""Write a plugin package outside multiticket as pip would install it: one module and a
``*.dist-info`` whose ``entry_points.txt`` registers its parts (tests of the entry-point groups)."""

from __future__ import annotations

import textwrap
from pathlib import Path


def write_plugin(root: Path, module: str, source: str, entry_points: dict[str, dict[str, str]]) -> Path:
    """``root`` holding ``module``.py (``source`` dedented) and its dist-info; ``entry_points`` maps
    a group (``multiticket.adapters``) to name -> attribute of the module. Returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    dist = module.replace("_", "-")
    info = root / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    groups = [f"[{group}]\n" + "".join(f"{name} = {module}:{attr}\n" for name, attr in names.items())
              for group, names in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(groups))
    return root
