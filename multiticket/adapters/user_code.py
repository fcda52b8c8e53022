"""User code named in a task file: modules to import, and classes by import path.

A task may name code of its own (``rl.imports``, ``rl.env: module:EnvId``, wrappers, policy
classes, feature extractors). Importing runs that code, so only the commands that train
(``run``, ``sweep``, ``transfer``, ``instability``) do it; ``status`` validates with
``context={"user_code": False}`` (:func:`user_code_allowed`) and checks the names' form only.
Every failure is a ``ValueError`` with one line, which the config turns into an error naming the key.

Where user code is found (``torch.module_dir``, ``rl.module_dir``): the task file's folder first,
then ``sys.path`` (:func:`search_folder`); ``config.yaml`` records the folder a module really came
from (:func:`imported_from`), absolute and never inside the run directory (:func:`recorded_module_dir`),
so pool workers and an extended run import the same code, and a run directory never supplies its own.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import ValidationInfo

#: a dotted module name, e.g. ``mypkg.envs``
MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
#: a class by import path: ``mypkg.mod.Name`` or ``mypkg.mod:Name``
OBJECT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*[.:][A-Za-z_]\w*")


def user_code_allowed(info: ValidationInfo | None) -> bool:
    """False when the caller validates without running user code (``context={"user_code": False}``)."""
    context = info.context if info is not None else None
    return not (isinstance(context, dict) and context.get("user_code") is False)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def check_module_name(name: Any) -> str:
    if not isinstance(name, str) or not MODULE_NAME.fullmatch(name):
        raise ValueError(f"'{name}' is not a module name (expected e.g. mypkg.envs)")
    return name


def import_module(name: str) -> ModuleType:
    """Import a user module; any failure (missing, syntax error, error on import) is one line."""
    check_module_name(name)
    try:
        return importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - user code may raise anything while it imports
        raise ValueError(f"cannot import '{name}': {_first_line(exc)}") from None


def is_import_path(value: Any) -> bool:
    return isinstance(value, str) and OBJECT_PATH.fullmatch(value) is not None


def import_object(path: str, base: type | None = None, what: str = "class") -> Any:
    """The object at ``mypkg.mod.Name`` (or ``mypkg.mod:Name``); with ``base``, a subclass of it."""
    if not is_import_path(path):
        raise ValueError(f"'{path}' is not an import path (expected e.g. mypkg.module.Name)")
    module_name, _, attr = path.replace(":", ".").rpartition(".")
    obj = getattr(import_module(module_name), attr, None)
    if obj is None:
        raise ValueError(f"'{module_name}' has no '{attr}'")
    if base is not None and not (isinstance(obj, type) and issubclass(obj, base)):
        raise ValueError(f"'{path}' is not a {what} ({base.__module__}.{base.__qualname__} subclass)")
    return obj


def task_folder(value: str | None, base: Any) -> str | None:
    """``module_dir`` as written (``value``, relative to the task file's folder ``base``), or that
    folder itself when unset; None when neither is known (a section validated on its own)."""
    if value is None:
        return str(Path(base).resolve()) if base is not None else None
    path = Path(value).expanduser()
    return str((Path(base) / path).resolve() if base is not None and not path.is_absolute() else path)


def holds(folder: str | Path, module: str) -> bool:
    """Whether ``folder`` has the top-level module of ``module`` (``top.py`` or a ``top/`` package)."""
    top = module.split(".")[0]
    return (Path(folder) / f"{top}.py").is_file() or (Path(folder) / top).is_dir()


def imported_from(module: str, folder: str | None) -> str | None:
    """The folder :func:`search_folder` makes ``module`` import from, found without running it:
    ``folder`` when it holds the module, else the folder of a copy imported earlier in this process
    (a notebook's), else the first ``sys.path`` entry that holds it; None when none does (importing
    then says so). Recorded as ``module_dir``, so pool workers and a run extended from its own
    ``config.yaml`` import the module from where it really came from."""
    top = module.split(".")[0]
    if folder is not None and holds(folder, module):
        return folder
    loaded = getattr(sys.modules.get(top), "__file__", None)
    if loaded is not None:
        return _folder_of(Path(loaded), top)
    spec = importlib.machinery.PathFinder.find_spec(top, sys.path)  # finds, runs nothing
    if spec is None or spec.origin is None or not Path(spec.origin).is_file():
        return None
    return _folder_of(Path(spec.origin), top)


def _folder_of(origin: Path, top: str) -> str:
    """The ``sys.path`` folder of a top-level module's file (``pkg/__init__.py`` or ``mod.py``)."""
    path = origin.resolve()
    return str(path.parent.parent if path.name == "__init__.py" and path.parent.name == top else path.parent)


def recorded_module_dir(v: str | None, run_dir: Path) -> str | None:
    """A run directory's recorded ``module_dir``: absolute (as recorded at run time) and outside it,
    so reading someone else's run directory never imports code it carries."""
    if v is None:
        return None
    path = Path(v)
    if not path.is_absolute():
        raise ValueError(f"'{v}' is relative; a run directory records module_dir as an absolute path (a relative "
                         "one would resolve inside the run directory)")
    root = run_dir.resolve()
    if path.resolve() == root or root in path.resolve().parents:
        raise ValueError(f"'{v}' is inside the run directory; multiticket never imports code a run directory carries")
    return str(path)


def search_folder(folder: str, modules: Iterable[str] = ()) -> None:
    """Put ``folder`` first on ``sys.path`` (it wins over a module of the same name elsewhere) and
    drop from ``sys.modules`` any of ``modules`` imported earlier from another folder (another
    task's module of the same name, in one process) when ``folder`` has its own."""
    if folder in sys.path:
        sys.path.remove(folder)
    sys.path.insert(0, folder)
    for name in modules:
        forget_if_elsewhere(name, Path(folder))


def forget_if_elsewhere(name: str, folder: Path) -> None:
    """Drop ``name``'s top-level package from ``sys.modules`` when ``folder`` holds its own copy and
    the one imported came from elsewhere, so the next import takes ``folder``'s."""
    top = name.split(".")[0]
    if not holds(folder, name) or top not in sys.modules:
        return
    where = getattr(sys.modules[top], "__file__", None)
    if where is None or not Path(where).resolve().is_relative_to(folder.resolve()):
        for cached in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            del sys.modules[cached]
