"""What a domain tells the report about its runs, recorded in each run directory.

An adapter declares its domain's facts on its class (:class:`~multiticket.core.adapter.DomainAdapter`:
the step unit, the evaluation-interval key, the layer-role function, the header facts, the memory
of a worker, the early-bird interval). The launch driver records those the report needs in
``provenance.json`` under :data:`FACTS_KEY`, as one :class:`DomainFacts` (a function cannot be
stored, so the layer-role function is stored as its result over the masked layers). Analysis, which
imports no adapter, reads them from there instead of knowing any domain by name; a run recorded
before these facts existed has none, and :func:`multiticket.core.legacy.legacy_facts` says what the
report showed for it then.

A run directory is untrusted input: every field is bounded, and a role is a short plain word
(it is drawn into figures as well as written into the page).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

#: the key of ``provenance.json`` that holds a run's :class:`DomainFacts`
FACTS_KEY = "domain_facts"
#: longest text of one header fact, and most facts a header shows
MAX_FACT = 1000
MAX_FACTS = 32
#: most layers (and input names) recorded: far more than any prunable scope holds
MAX_LAYERS = 100_000

Role = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
LayerName = Annotated[str, Field(min_length=1, max_length=1000)]
Label = Annotated[str, Field(min_length=1, max_length=100)]
FactText = Annotated[str, Field(max_length=MAX_FACT)]


class DomainFacts(BaseModel):
    """The facts of one run's domain that the report shows or needs (see the module docstring)."""

    model_config = ConfigDict(frozen=True, strict=True, extra="ignore")

    #: what one step of ``train.steps`` counts ("env steps", "optimizer steps"): compute table, curve axis
    step_unit: Annotated[str, Field(min_length=1, max_length=64)] = "steps"
    #: the task-file key that turns on evaluations during training (``rl.eval_every``); None: none
    eval_every_key: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    #: what the run trained in a few words (``PPO, CartPole-v1``): a transfer run's title; None: the domain
    identity: FactText | None = None
    #: label -> text rows of the report header (``algorithm: PPO``, ``environment: CartPole-v1``)
    header: Annotated[dict[Label, FactText], Field(max_length=MAX_FACTS)] = Field(default_factory=dict)
    #: masked layer -> role, where the domain's layer-role function knows one (the rest: by position);
    #: None: not recorded (a run made before these facts: :func:`multiticket.core.legacy.legacy_layer_roles`)
    layer_roles: Annotated[dict[LayerName, Role], Field(max_length=MAX_LAYERS)] | None = None
    #: names of the input layers' columns (observation dimensions) for the report's input section, in
    #: order ([]: unnamed, shown as ``obs[i]``); None: the domain's inputs are no named features
    input_names: Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=MAX_LAYERS)] | None = None
