"""Tickets in a pretrained transformer: Chen et al. 2020 ("The Lottery Ticket Hypothesis for
Pre-trained BERT Networks") at CPU scale, on pretrained MiniLM-L6 fine-tuned for Rotten Tomatoes.

Issue #21. The study is data, ``studies/chen2020.yaml``: one shipped task,
``rotten-tomatoes-minilm-tickets`` (IMP from the pretrained weights, k = 0, 20 % of the encoder's
Linear weights per level; controls ``random_prune``, ``random_reinit``, ``one_shot`` and
``prune_dense``), its budgets (tiny: seconds, for the tests; cpu: 2 seeds, 8 levels, about 2 h on
2 idle cores; gpu: 3 seeds, 10 levels, one GPU shared by 8 workers, under 10 minutes), how each
was sized, and the claims with how each is judged. This script runs the task through the library
(:mod:`multiticket.study`), then writes the run's ``report.html`` and ``results.md`` /
``results.json``: the accuracy and macro-F1 tables, the ticket against each control per level,
the verdicts (:mod:`multiticket.analysis.claims`), and the majority rate of the evaluated
validation examples, which a classifier that learnt nothing scores (counted here from the
dataset the run cached; the dense-learns claim reads it).

    .venv/bin/python scripts/reproduce_chen2020.py                          # --budget cpu: 2 seeds, 8 levels
    .venv/bin/python scripts/reproduce_chen2020.py --budget tiny --out /tmp/chen   # seconds (tests)
    .venv/bin/python scripts/reproduce_chen2020.py --budget gpu --device cuda     # a GPU machine
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

STUDY = Path(__file__).resolve().parents[1] / "studies" / "chen2020.yaml"


def majority(labels: Sequence[int]) -> dict[str, Any]:
    """The majority class's share, and the accuracy and macro-F1 of always predicting it."""
    counts = {c: labels.count(c) for c in sorted(set(labels))}
    top = max(counts, key=lambda c: counts[c])
    rate = counts[top] / len(labels)
    classes = max(len(counts), 2)
    # F1 of the majority class: precision = rate, recall = 1; every other class scores 0
    return {"n": len(labels), "majority_class": top, "majority_count": counts[top], "majority_rate": rate,
            "constant_f1_macro": 2 * rate / (1 + rate) / classes}


def data_facts(task: Any, run_dir: Path) -> dict[str, Any]:
    """Majority rates of the evaluated validation / test examples and of the whole validation split,
    from the dataset the run cached (the HF adapter's workdir is RUN/cache)."""
    from multiticket.adapters.hf.data import load_splits

    cache = run_dir / "cache" / "datasets"
    try:
        evaluated = load_splits(task.section, cache)
        full = load_splits(task.section.model_copy(update={"max_eval_examples": None}), cache)
    except Exception as exc:  # noqa: BLE001 - the tables and the other claims do not need these numbers
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"validation": majority(list(evaluated.validation["label"])), "test": majority(list(evaluated.test["label"])),
            "validation_full": majority(list(full.validation["label"]))}


def data_md(data: dict[str, Any]) -> list[str]:
    """The majority rates in words, for results.md."""
    from multiticket.analysis.stats import fmt

    if "error" in data:
        return [f"Majority rates: not computed ({data['error']}).", ""]
    v, f = data["validation"], data["validation_full"]
    return [f"Validation majority rate: {v['majority_count']} of {v['n']} evaluated examples are class "
            f"{v['majority_class']} ({fmt(v['majority_rate'])}; the whole split: {f['majority_count']} of "
            f"{f['n']}, {fmt(f['majority_rate'])}). Always predicting it scores macro-F1 "
            f"{fmt(v['constant_f1_macro'])}. Test majority rate {fmt(data['test']['majority_rate'])}.", ""]


def extras(part_tasks: dict[str, Any]) -> Any:
    """The data facts of the study's one task, once its run has cached the dataset."""
    from multiticket.study import Extras

    pt = next(iter(part_tasks.values()))
    if not (pt.run_dirs[0] / "cache" / "datasets").is_dir():
        return Extras()
    data = data_facts(pt.tasks[0], pt.run_dirs[0])
    facts = {} if "error" in data else {k: data["validation"][k] for k in ("majority_rate", "constant_f1_macro")}
    return Extras({pt.specs[0].name: facts}, data, data_md(data))


def main(argv: Sequence[str] | None = None, clock: Callable[[], float] = time.monotonic, study: Path = STUDY) -> int:
    """Run (or resume) the study, then write the report and the results files; 2 on bad input."""
    from multiticket.cli import _seeds
    from multiticket.errors import UserError
    from multiticket.study import load_study, run_study, study_parser

    try:
        loaded = load_study(study)
    except UserError as exc:
        print(f"reproduce_chen2020: error: {exc}", file=sys.stderr)
        return 2
    args = study_parser(loaded, "reproduce_chen2020.py", __doc__ or "", _seeds).parse_args(argv)
    command = shlex.join(["python", "scripts/reproduce_chen2020.py", *(sys.argv[1:] if argv is None else argv)])
    return run_study(loaded, args, command, "reproduce_chen2020", extras, clock)


if __name__ == "__main__":
    raise SystemExit(main())
