"""Claims of a paper and their verdicts, judged on finished runs.

A claim is data (:mod:`.spec`: its id and text, a judge, the metric, the controls and the levels
it speaks of); a judge (:mod:`.judges`) reads a part's loaded runs and the run's level verdicts
(:func:`multiticket.analysis.verdicts.run_verdict`, whose exact sign-flip test decides every
"beats") and returns *reproduced*, *partly reproduced*, *not reproduced* or *untested at this
budget* with the evidence in words and numbers. :mod:`.results` assembles a study's
``results.json`` / ``results.md`` from its run directories. The studies themselves are data too
(``studies/*.yaml``, loaded by :mod:`multiticket.study`).

    from multiticket.analysis.claims import claim_spec, judge_claim
    spec = claim_spec({"id": "beats", "text": "...", "judge": "beats-random", "from_sparsity": 0.8}, "claim", "-")
    result = judge_claim(spec, "cartpole", {"yu2019-cartpole-a2c": load_run(run_dir)})
    result.verdict, result.detail
"""

from multiticket.analysis.claims.judges import judge_claim
from multiticket.analysis.claims.spec import (
    COMPARISON,
    JUDGES,
    NOT_ATTEMPTED,
    NOT_REPRODUCED,
    NOT_RUN,
    PARTLY,
    REPRODUCED,
    UNTESTED,
    VERDICTS,
    ClaimBase,
    ClaimResult,
    claim_spec,
)

__all__ = ["COMPARISON", "JUDGES", "NOT_ATTEMPTED", "NOT_REPRODUCED", "NOT_RUN", "PARTLY", "REPRODUCED", "UNTESTED",
           "VERDICTS", "ClaimBase", "ClaimResult", "claim_spec", "judge_claim"]
