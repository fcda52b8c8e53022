"""Reproduce Yu et al. 2019 ("Playing the lottery with rewards and multiple languages") at small scale.

Issue #10. The study is data, ``studies/yu2019.yaml``: its parts (CartPole, Acrobot and
LunarLander with A2C; LunarLander with PPO, not in the default parts; the Austen LSTM language
model; the Marian Transformer with all weights pruned and with the transformer layers only), each
part's shipped tasks and the settings merged into them, its budgets, seeds and controls, how each
budget was sized, and the paper's claims with how each is judged. This script runs the selected
parts through the library (:mod:`multiticket.study`: task files in ``OUT/tasks/``, the run
store's resume, ``OUT/timings.json``), then writes each run's ``report.html``, a cross-domain
``OUT/comparison/`` and ``results.md`` / ``results.json`` with a verdict per claim
(:mod:`multiticket.analysis.claims`), computed from the finished units on disk: a rerun skips
finished units and rewrites them.

    .venv/bin/python scripts/reproduce_yu2019.py                      # the default parts, --budget cpu
    .venv/bin/python scripts/reproduce_yu2019.py --parts cartpole --budget tiny --seeds 0
    .venv/bin/python scripts/reproduce_yu2019.py --parts lstm --seeds 0,1,2,3,4 --workers 2 --out runs/yu2019-5seeds
    .venv/bin/python scripts/reproduce_yu2019.py --parts lunarlander-ppo --levels 2   # the PPO part, first 2 levels
    .venv/bin/python scripts/reproduce_yu2019.py --budget paper --device cuda   # Yu's scale, a GPU machine
    .venv/bin/python scripts/reproduce_yu2019.py --results-only --out runs/yu2019   # rewrite results, train nothing
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

STUDY = Path(__file__).resolve().parents[1] / "studies" / "yu2019.yaml"


def main(argv: Sequence[str] | None = None, clock: Callable[[], float] = time.monotonic, study: Path = STUDY) -> int:
    """Run the selected parts, then write reports, the comparison and the results files; 2 on bad input."""
    from multiticket.cli import _seeds
    from multiticket.errors import UserError
    from multiticket.study import load_study, run_study, study_parser

    try:
        loaded = load_study(study)
    except UserError as exc:
        print(f"reproduce_yu2019: error: {exc}", file=sys.stderr)
        return 2
    args = study_parser(loaded, "reproduce_yu2019.py", __doc__ or "", _seeds).parse_args(argv)
    command = shlex.join(["python", "scripts/reproduce_yu2019.py", *(sys.argv[1:] if argv is None else argv)])
    return run_study(loaded, args, command, "reproduce_yu2019", clock=clock)


if __name__ == "__main__":
    raise SystemExit(main())
