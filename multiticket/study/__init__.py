"""A study as data (``studies/*.yaml``): its parts, each part's tasks, budgets, seeds, controls and
the claims it speaks to; loaded, turned into ordinary task files and run.

A study file names, per part, shipped tasks (``multiticket tasks``) and the settings the study
merges into each (nested mappings merge key by key; ``rates``, ``model_args`` and ``overrides``
are replaced whole), per budget the training length, levels, rewind point and more settings, and
the claims of the paper the part can test (:mod:`multiticket.analysis.claims`). Every key is
validated (pydantic, unknown keys refused) and a bad file is one line naming the file and the
field. The task files are written to ``OUT/tasks/`` and run through
:func:`multiticket.launch.driver.run_tasks`, so IMP, the controls, the run store and resume are
the library's own; ``OUT/timings.json`` records every invocation (command, date, wall time per
part), and :mod:`multiticket.analysis.claims.results` writes ``results.json`` / ``results.md``.

.. code-block:: yaml

    title: Reproducing Yu et al. 2019          # the results page's title
    paper: "Yu, Edunov, Tian, Morcos (2019): ..."
    description: Yu et al. 2019 reproduction   # starts each task file's description
    script: reproduce_yu2019.py                # the script that runs it
    out: runs/yu2019                           # default output directory
    budgets: [tiny, cpu, paper]
    default_budget: cpu
    comparison: true                           # write OUT/comparison/ over every run
    claims:                                    # id -> text, judge and the judge's parameters
      ticket-beats-random: {text: "...", judge: beats-random, from_sparsity: 0.8}
      atari: {text: "...", judge: not-attempted, reason: "..."}
    parts:
      cartpole:
        title: CartPole-v1, A2C
        default: true                          # run without --parts
        seeds: [0, 1, 2]
        secondary: [ticket_reward]             # metrics tabulated after the run's own
        tasks:
          - {name: yu2019-cartpole-a2c, base: acrobot-a2c, controls: [random_reinit, ...],
             settings: {rl: {env: CartPole-v1}}, budgets: {paper: {...}}}
        budgets:
          tiny: {steps: 1024, levels: 2, rewind: 128, workers: 1, settings: {...}}
          cpu: {steps: 100000, levels: 10, rewind: 2048, minutes: 13}
          paper: {steps: 1000000, levels: 20, rewind: 19968, cuda: {...}, seeds: [0, 1, 2]}
        claims: [ticket-beats-random, {id: one-shot-below-random, metric: eval_loss}]

The modules, each importing only those listed before it:

- :mod:`.file`: the schema above (:class:`StudyFile` and its parts) and :func:`load_study`;
- :mod:`.tasks`: a part's tasks as task files in ``OUT/tasks/`` (:func:`build_tasks`) and what the
  results cover (:func:`plan`);
- :mod:`.ledger`: ``OUT/timings.json``, each invocation's parts and wall times, and the machine;
- :mod:`.run`: running the parts, and the command line every study script shares (:func:`run_study`).

Every name is re-exported here, so ``from multiticket.study import load_study`` is the way in.
"""

from __future__ import annotations

from multiticket.study.file import (
    NAME,
    BudgetSpec,
    PartSpec,
    Study,
    StudyFile,
    StudyModel,
    TaskSpec,
    load_study,
)
from multiticket.study.ledger import Invocation, load_ledger, machine_info
from multiticket.study.run import Extras, parts_arg, run_part, run_parts, run_study, study_parser
from multiticket.study.tasks import REPLACED, PartTasks, build_tasks, merge, part_seeds, plan, task_data

__all__ = [
    "NAME", "REPLACED", "BudgetSpec", "Extras", "Invocation", "PartSpec", "PartTasks", "Study", "StudyFile",
    "StudyModel", "TaskSpec", "build_tasks", "load_ledger", "load_study", "machine_info", "merge", "part_seeds",
    "parts_arg", "plan", "run_part", "run_parts", "run_study", "study_parser", "task_data",
]
