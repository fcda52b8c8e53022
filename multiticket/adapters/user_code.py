"""User code named in a task file: modules to import, and classes by import path.

A task may name code of its own (``rl.imports``, ``rl.env: module:EnvId``, wrappers, policy
classes, feature extractors). Importing runs that code, so only the commands that train
(``run``, ``sweep``, ``transfer``, ``instability``) do it; ``status`` validates with
``context={"user_code": False}`` (:func:`user_code_allowed`) and checks the names' form only.
Every failure is a ``ValueError`` with one line, which the config turns into an error naming the key.
"""

from __future__ import annotations

import importlib
import re
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
