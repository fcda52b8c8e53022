"""Registries: the single, open source of the domains, pruning criteria, budget allocators and
controls a task may name.

Each registry maps a name to an entry: a domain to its adapter class (which declares its task-file
section as ``Section``), a criterion to a :class:`~multiticket.core.criteria.base.Criterion`, an
allocator to a :class:`~multiticket.core.criteria.allocators.Allocator`, a control to a
:class:`~multiticket.core.controls.ControlSpec`. The config validates ``domain``, ``prune.criterion``,
``prune.allocator`` and ``controls`` against them, so a name exists exactly when it is registered.

An entry may be registered *lazily* as ``"module:attribute"``: the module is imported on first use
(the SB3 and Hugging Face adapters load their libraries only when a task of their domain runs).

Other packages register through entry points, read once per process on first use (so pool, Ray
and Slurm workers, which validate their task again, load them too)::

    [project.entry-points."multiticket.adapters"]
    vision = "mypkg.adapter:VisionAdapter"        # the task-file key "vision" and its section
    [project.entry-points."multiticket.criteria"]
    snip_like = "mypkg.criteria:CRITERION"
    [project.entry-points."multiticket.allocators"]
    my_budget = "mypkg.allocators:ALLOCATOR"
    [project.entry-points."multiticket.controls"]
    my_control = "mypkg.controls:SPEC"

The entry point's name is the registered name; the object it points to is loaded on first use.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from multiticket.errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class Lazy:
    """An entry not imported yet: ``target`` is ``"module:attribute"``; ``extra`` the pip extra
    whose packages the module needs (named in the error when one is missing)."""

    target: str
    extra: str = ""

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    def load(self, kind: str, name: str) -> Any:
        module_name, _, attr = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and (exc.name == module_name or module_name.startswith(exc.name + ".")):
                raise UserError(f"{kind} '{name}': its module '{module_name}' cannot be imported") from exc
            if exc.name and exc.name.startswith("multiticket"):
                raise
            hint = f" (pip install 'multiticket[{self.extra}]')" if self.extra else ""
            raise UserError(f"{kind}: '{name}' needs the package '{exc.name}'{hint}") from exc
        try:
            return getattr(module, attr) if attr else module
        except AttributeError:
            raise UserError(f"{kind} '{name}': '{self.target}' does not exist") from None


class Registry(Mapping[str, T], Generic[T]):
    """Name -> entry, read-only as a mapping; :meth:`register` adds, :meth:`lookup` explains.

    ``builtins`` is a module imported before the first lookup (it registers the package's own
    entries); ``group`` the entry-point group read once, after it."""

    def __init__(self, kind: str, field: str, group: str, builtins: str | None = None) -> None:
        self.kind = kind
        self.field = field
        self.group = group
        self._builtins = builtins
        self._entries: dict[str, T | Lazy] = {}
        #: the module a lazy entry was registered with, kept once it is loaded
        self._modules: dict[str, str] = {}
        self._loaded = False

    def register(self, name: str, entry: T | Lazy) -> None:
        """Add ``entry`` under ``name``; registering a different entry under a taken name is an error."""
        old = self._entries.get(name)
        if old is not None and old is not entry and old != entry:
            raise ValueError(f"{self.kind} '{name}' is registered already")
        self._entries[name] = entry

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self._builtins is not None:
            importlib.import_module(self._builtins)
        for ep in importlib.metadata.entry_points(group=self.group):
            if ep.name not in self._entries:
                self._entries[ep.name] = Lazy(ep.value)

    def __getitem__(self, name: str) -> T:
        self._load()
        entry = self._entries[name]
        if isinstance(entry, Lazy):
            self._modules[name] = entry.module
            entry = entry.load(self.kind, name)
            self._entries[name] = entry
        return entry

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def module_of(self, name: str) -> str | None:
        """The module an entry was registered from (``"module:attr"``'s module), without importing
        it; for an entry registered as an object, the module that defines it (None when unknown)."""
        self._load()
        entry = self._entries.get(name)
        if entry is None:
            return None
        if isinstance(entry, Lazy):
            return entry.module
        return self._modules.get(name) or getattr(entry, "__module__", None)

    def unknown(self, name: object, names: list[str] | None = None) -> str:
        """``unknown <kind> 'x' (did you mean 'y'?; known: a, b)``: the message of a bad name."""
        known = list(self) if names is None else names
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f"did you mean '{close[0]}'?; " if close else ""
        return f"unknown {self.kind} '{name}' ({hint}known: {', '.join(known)})"

    def lookup(self, name: str) -> T:
        """The entry of ``name``; a UserError naming the task-file field for an unknown name."""
        if name not in self:
            raise UserError(f"{self.field}: {self.unknown(name)}")
        return self[name]


#: domain -> adapter class (:class:`multiticket.core.adapter.DomainAdapter`; its ``Section`` validates
#: the task file's section of the same name). The built-ins are registered by :mod:`multiticket.domains`.
domains: Registry[Any] = Registry("domain", "domain", "multiticket.adapters")
#: criterion -> :class:`multiticket.core.criteria.base.Criterion` (Zhou et al. 2019 mask criteria)
criteria: Registry[Any] = Registry("criterion", "prune.criterion", "multiticket.criteria",
                                   builtins="multiticket.core.criteria")
#: allocator -> :class:`multiticket.core.criteria.allocators.Allocator` (how a level's budget splits over layers)
allocators: Registry[Any] = Registry("allocator", "prune.allocator", "multiticket.allocators",
                                     builtins="multiticket.core.criteria.allocators")
#: control -> :class:`multiticket.core.controls.ControlSpec`
controls: Registry[Any] = Registry("control", "controls", "multiticket.controls", builtins="multiticket.core.controls")
