"""What ran: the record beside ``config.yaml`` that the report header shows, and the run-name warning.

``provenance.json`` holds what the hashed ``config.yaml`` cannot: the command lines that made and
resumed the run, the algorithm or model class, and the resolved hyperparameters (for SB3 the
agents-file entry with ``rl.overrides`` over it, what the algorithm was constructed with; for HF
the ``nlp:`` settings with what the data decided, such as the number of labels), and the domain's
facts that the report shows or needs (:mod:`multiticket.core.facts`: its step unit, header rows,
layer roles, ...), so that the report reads them here instead of knowing domains. It is a file of
its own so that ``config.yaml``, whose keys name the run directory through its hash, and every
reader of it stay as they were; runs made before it show "not recorded". It is read as untrusted
input (bounded, validated).

Run names stay as they are (renaming would orphan existing run directories), so a ``--set`` that
changes what a name describes (:data:`NAMING_KEYS`) gets a one-line warning, and the header
shows the real values.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from multiticket.core.facts import FACTS_KEY, DomainFacts

PROVENANCE = "provenance.json"
#: largest provenance.json read (a record is a few KB)
MAX_PROVENANCE_BYTES = 1 << 20
#: keys of a domain section that a shipped run name describes (cartpole-dqn, rotten-tomatoes-minilm)
NAMING_KEYS = ("rl.env", "rl.algo", "nlp.model", "nlp.pretrained", "nlp.dataset")

Text = Annotated[str, Field(max_length=10_000)]


class Provenance(BaseModel):
    """``provenance.json``, as the report reads it."""

    model_config = ConfigDict(extra="allow", strict=True)

    commands: Annotated[list[Text], Field(max_length=1000)] = Field(default_factory=list)
    model_class: Annotated[str, Field(max_length=300)] | None = None
    hyperparameters: Annotated[dict[Annotated[str, Field(max_length=200)], Any], Field(max_length=1000)] | None = None
    hyperparameters_from: Text | None = None
    #: the domain's facts (the key is :data:`multiticket.core.facts.FACTS_KEY`); None: recorded before them
    domain_facts: DomainFacts | None = None


def read_provenance(run_dir: Path | str) -> dict[str, Any] | None:
    """The validated ``provenance.json`` of ``run_dir``, or None for a run made before it existed."""
    from multiticket.rundir import read_json, validated  # (torch) not when the CLI starts

    path = Path(run_dir) / PROVENANCE
    if not path.exists():
        return None
    return validated(Provenance, read_json(path, MAX_PROVENANCE_BYTES), path)


def provenance_record(previous: Mapping[str, Any] | None, facts: Mapping[str, Any], command: str | None) -> str:
    """The text of ``provenance.json`` after this invocation: the adapter's ``facts``
    (:meth:`~multiticket.core.adapter.DomainAdapter.provenance`, and its
    :meth:`~multiticket.core.adapter.DomainAdapter.domain_facts` under ``domain_facts``, made JSON
    by :func:`adapter_facts`) and every distinct command line
    that ran on the directory, oldest first (``previous``: its :func:`read_provenance`)."""
    commands = list((previous or {}).get("commands") or [])
    if command and command not in commands:
        commands.append(command)
    record = {"commands": commands, **facts}
    return json.dumps(record, indent=1, sort_keys=False, default=str) + "\n"


def adapter_facts(adapter: Any, layers: Sequence[str]) -> dict[str, Any]:
    """What a built adapter records in ``provenance.json``: its provenance and its domain's facts
    over the masked ``layers`` (the prunable scope)."""
    facts = adapter.domain_facts(layers).model_dump(mode="json")
    return {**adapter.provenance(), FACTS_KEY: facts}


#: longest command line recorded (the rest is cut, marked " …"): a record stays within its schema
MAX_COMMAND = 4000


def command_line(argv: Sequence[str], program: str | None = None) -> str:
    """The command as a shell would take it back: ``multiticket run cartpole-ppo --set ...``;
    ``program``: a whole call of another kind (the Python API's) instead."""
    text = program if program is not None else shlex.join(["multiticket", *argv])
    return text if len(text) <= MAX_COMMAND else text[:MAX_COMMAND] + " …"


def _at(data: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        data = data.get(key) if isinstance(data, dict) else None
    return data


def name_warning(name: str, resolved: Mapping[str, Any], source: Path) -> str | None:
    """One line when the run's :data:`NAMING_KEYS` differ from those of its task file ``source``
    (a ``--set rl.env=Acrobot-v1`` on cartpole-dqn), else None."""
    try:
        shipped = yaml.safe_load(Path(source).read_text()) if Path(source).is_file() else {}
    except (OSError, yaml.YAMLError):
        shipped = {}
    same = lambda a, b: str(a).casefold() == str(b).casefold() if a is not None and b is not None else a == b  # noqa: E731
    changed = [f"{key}={_at(resolved, key)}" for key in NAMING_KEYS
               if _at(resolved, key.split(".")[0]) is not None and not same(_at(resolved, key), _at(shipped, key))]
    if not changed:
        return None
    return (f"the run name '{name}' no longer describes the run ({', '.join(changed)}); it stays, so that "
            "existing run directories keep their names: the report header shows what ran")
