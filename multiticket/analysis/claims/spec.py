"""A paper's claim as data: its text, the judge that tests it, the metric, controls and levels.

A study file (``studies/*.yaml``, read by :mod:`multiticket.study`) names each claim once
with its text and judge, and each part lists the claims it can speak to, optionally overriding
the judge's parameters (another metric, another task of the part). The judges themselves are in
:mod:`multiticket.analysis.claims.judges`; this module only says what a claim is, so that a bad
study file is refused before anything trains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError

from multiticket.errors import UserError
from multiticket.schema import Strict

#: the verdicts of a claim: the four a judge returns, then the two a study gives a claim it did not
#: judge (its part has not run; its part does not run a control it needs), then a finding's
REPRODUCED, PARTLY, NOT_REPRODUCED, UNTESTED = "reproduced", "partly reproduced", "not reproduced", \
    "untested at this budget"
NOT_RUN, NOT_ATTEMPTED, COMPARISON = "not run", "not attempted", "comparison"
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED, UNTESTED, NOT_RUN, NOT_ATTEMPTED, COMPARISON)


class ClaimBase(Strict):
    """What every claim says: its id and text, and which run and metric it is judged on."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9-]*$")
    #: which judge tests it (each subclass fixes its own)
    judge: str
    text: str = Field(min_length=1, max_length=2000, description="the claim as the paper makes it")
    #: the task of the part it is judged on (None: the part's first task)
    task: str | None = None
    #: None: the run's own metric (the task's report.metric, else the adapter's primary metric)
    metric: str | None = Field(None, min_length=1, max_length=200)
    #: below this dense value of ``metric`` the claim is not judged on it (a model that has not
    #: learnt to translate has no BLEU to compare)
    min_dense: float | None = None
    #: judged on this metric instead when the dense ``metric`` is below ``min_dense``
    fallback_metric: str | None = Field(None, min_length=1, max_length=200)

    def controls_needed(self) -> tuple[str, ...]:
        """The controls the part must run for the claim to be judged at all."""
        return ()


class FromSparsity(ClaimBase):
    #: the claim speaks of the levels from this sparsity on (Yu et al.: "beyond 80 % pruned")
    from_sparsity: float = Field(0.0, ge=0.0, lt=1.0)


class BeatsRandom(FromSparsity):
    """The ticket beats every random control: the levels the run's verdict wins
    (:func:`multiticket.analysis.verdicts.run_verdict`)."""

    judge: Literal["beats-random"]
    #: the claim also says the ticket's mean margin over the best random control is larger past
    #: ``from_sparsity`` than below (a trend of means, shown beside the test)
    widening: bool = False


class BeatsControl(FromSparsity):
    """The ticket beats one random control: the verdict's procedure on that control alone."""

    judge: Literal["beats-control"]
    control: str = Field(min_length=1, max_length=100)

    def controls_needed(self) -> tuple[str, ...]:
        return (self.control,)


class BelowRandom(FromSparsity):
    """A control (one-shot pruning) falls below every random control: the verdict's procedure with
    each random control in the ticket's seat."""

    judge: Literal["below-random"]
    control: str = Field(min_length=1, max_length=100)

    def controls_needed(self) -> tuple[str, ...]:
        return (self.control,)


class Ablation(ClaimBase):
    """The ticket beats an ablation of the procedure (rewinding to 0, one-shot pruning) at most
    levels, and by a positive mean gain normalised to dense."""

    judge: Literal["ablation"]
    control: str = Field(min_length=1, max_length=100)
    #: the first level compared (2 for one_shot: at level 1 one-shot and iterative pruning coincide)
    from_level: int = Field(1, ge=1, le=100)

    def controls_needed(self) -> tuple[str, ...]:
        return (self.control,)


class MatchesDenseAt(ClaimBase):
    """The ticket matches dense at the level nearest ``sparsity`` (within ``window``)."""

    judge: Literal["matches-dense-at"]
    sparsity: float = Field(gt=0.0, lt=1.0)
    window: float = Field(0.05, ge=0.0, lt=1.0)
    #: matching: within this fraction of |dense| (None: the task's ``report.tolerance``)
    tolerance: float | None = Field(None, ge=0.0)
    #: why the claim sets its own tolerance (shown in the evidence)
    tolerance_source: str | None = Field(None, max_length=300)


class MatchingRange(ClaimBase):
    """Matching subnetworks exist at ``from_sparsity`` or beyond (Chen et al.: 40 % to 90 %)."""

    judge: Literal["matching-range"]
    from_sparsity: float = Field(gt=0.0, lt=1.0)
    tolerance: float | None = Field(None, ge=0.0)
    tolerance_source: str | None = Field(None, max_length=300)


class DenseAtLeast(ClaimBase):
    """A precondition: the dense network learns (its mean at least ``at_least``, and each named
    metric above a measured baseline of the run: ``baselines.json``, or facts the study gives)."""

    judge: Literal["dense-at-least"]
    at_least: float | None = None
    #: metric -> the name of the baseline it must beat (``majority_rate``, ...)
    above: dict[str, str] = Field(default_factory=dict)


class WiderMargin(ClaimBase):
    """The ticket of ``task`` beats the random controls at every level and by a wider normalised
    margin than the ticket of ``against`` at their deepest common level (Yu et al.: with the
    embeddings kept dense, random tickets degrade faster)."""

    judge: Literal["wider-margin"]
    against: str = Field(min_length=1, max_length=200)


class CompareControls(ClaimBase):
    """Not a claim: the ticket against other controls, reported without a verdict."""

    judge: Literal["compare-controls"]
    #: control -> the first level it is compared at (one_shot coincides with the ticket at level 1)
    controls: dict[str, int] = Field(min_length=1)

    def controls_needed(self) -> tuple[str, ...]:
        return ()


class NotAttempted(ClaimBase):
    """A claim of the paper this study does not test, and why."""

    judge: Literal["not-attempted"]
    reason: str = Field(min_length=1, max_length=1000)


ClaimSpec = (BeatsRandom | BeatsControl | BelowRandom | Ablation | MatchesDenseAt | MatchingRange | DenseAtLeast
             | WiderMargin | CompareControls | NotAttempted)
#: judge name -> its parameters
JUDGES: dict[str, type[ClaimBase]] = {
    "beats-random": BeatsRandom, "beats-control": BeatsControl, "below-random": BelowRandom, "ablation": Ablation,
    "matches-dense-at": MatchesDenseAt, "matching-range": MatchingRange, "dense-at-least": DenseAtLeast,
    "wider-margin": WiderMargin, "compare-controls": CompareControls, "not-attempted": NotAttempted,
}


def claim_spec(data: Any, where: str, source: Path | str) -> ClaimBase:
    """Validate one claim (a mapping with ``judge``); a one-line UserError naming ``where.field``."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: {where}: expected a mapping, got {type(data).__name__}")
    judge = data.get("judge")
    model = JUDGES.get(judge) if isinstance(judge, str) else None
    if model is None:
        raise UserError(f"{source}: {where}.judge: unknown judge {judge!r} (judges: {', '.join(JUDGES)})")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else (
            "required key is missing" if err["type"] == "missing" else err["msg"])
        raise UserError(f"{source}: {where}.{loc}: {msg}") from None


@dataclass
class ClaimResult:
    """A judged claim: the verdict, the evidence in words (``detail``) and as numbers, and which
    tables belong under it in ``results.md``."""

    id: str
    part: str
    #: how the claim is tested here, in words
    test: str
    verdict: str
    detail: str
    evidence: list[dict[str, Any]] = field(default_factory=list)
    #: (task, controls) whose metric tables belong under the claim
    tables: list[tuple[str, list[str]]] = field(default_factory=list)
    #: the metric the verdict rests on
    metric: str = ""
    #: the claim's text
    text: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The ``results.json`` entry (``claim``: the paper's text)."""
        return {"claim": self.text, "id": self.id, "part": self.part, "test": self.test, "verdict": self.verdict,
                "detail": self.detail, "evidence": self.evidence, "tables": self.tables, "metric": self.metric}
