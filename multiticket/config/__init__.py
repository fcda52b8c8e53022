"""Task files: loading, ``--set`` overrides, validation with one-line errors, and hashing.

A task file is YAML with the common keys plus one domain section (``toy:``, ``rl:``, ``nlp:``, or
the key of a registered third-party domain) validated by that domain's section model. Unknown keys
are errors. ``domain``, ``prune.criterion`` and ``controls`` are checked against the registries
(:mod:`multiticket.core.registry`). The modules, each importing only those listed before it:

- :mod:`.sections`: the common sections and :class:`TaskFields` (each key checked on its own), and
  :func:`section_model`, a domain's own section model (without importing its adapter's libraries);
- :mod:`.rules`: the cross-field rules and :class:`TaskConfig`, which enforces them;
- :mod:`.messages`: a pydantic error as one line naming its field, with a spelling hint;
- :mod:`.hashing`: the run hash over the keys that count (:mod:`multiticket.schema`);
- :mod:`.overrides`: ``--set key.path=value`` (no other module of the package needed);
- :mod:`.collect`: the collecting pass, every error at once, each naming its ``--set``;
- :mod:`.loading`: task file -> :class:`ResolvedTask` (the collecting pass on the first error).

Every name is re-exported here, so ``from multiticket.config import load_task`` is the way in.
"""

from __future__ import annotations

from multiticket.config.collect import collected_errors, override_labels
from multiticket.config.hashing import config_hash
from multiticket.config.loading import (
    ResolvedTask,
    load_task,
    read_yaml_file,
    resolve_task,
    task_from_data,
    validate_section,
    validate_task,
)
from multiticket.config.messages import error_field, field_error, named_field
from multiticket.config.overrides import MAX_OVERRIDE, apply_overrides
from multiticket.config.rules import CROSS_FIELD_RULES, MAX_UNITS, TaskConfig
from multiticket.config.sections import (
    DEFAULTS_KEY,
    MAX_CONTROLS,
    MAX_NAME,
    MAX_SEEDS,
    CheckpointSection,
    EarlyBirdSection,
    PruneSection,
    ReportSection,
    RewindSection,
    TargetedDropoutSection,
    TaskFields,
    TDRampSection,
    TrainSection,
    TransferSection,
    section_model,
    steps_of,
)

#: the name :mod:`multiticket.rundir` imports (a run directory's ``config.yaml`` is checked with it)
_field_error = field_error

__all__ = [
    "CROSS_FIELD_RULES", "DEFAULTS_KEY", "MAX_CONTROLS", "MAX_NAME",
    "MAX_OVERRIDE", "MAX_SEEDS", "MAX_UNITS", "CheckpointSection", "EarlyBirdSection", "PruneSection",
    "ReportSection", "ResolvedTask", "RewindSection", "TDRampSection", "TargetedDropoutSection", "TaskConfig",
    "TaskFields", "TrainSection", "TransferSection", "apply_overrides", "collected_errors", "config_hash",
    "error_field", "field_error", "load_task", "named_field", "override_labels", "read_yaml_file", "resolve_task",
    "section_model", "steps_of", "task_from_data", "validate_section", "validate_task",
]
