"""The report's "other metrics" section: every metric the units recorded besides the headline one.

The headline metric gets the full treatment (plot, level tables with intervals); each other
metric (validation ``f1_macro``, ``eval_loss``, every ``test_*``, RL's ``ticket_reward``) gets a
folded section with the same metric-vs-sparsity plot and one compact table: per level the mean ±
std of every control and the winning / matching verdicts under the same rules, so any of them
can be read without rerunning the report (``--metric NAME`` makes one the headline).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from markupsafe import Markup

from multiticket.analysis import plots
from multiticket.analysis.htmlpage import png_src, render
from multiticket.analysis.rundata import RunData
from multiticket.analysis.stats import fmt
from multiticket.analysis.verdicts import run_verdict, win_note, win_summary

#: (winning, matching) of the ticket at a level of a run view (report.level_verdict)
Verdict = Callable[[RunData, int], tuple[bool | None, bool | None]]


def plot_name(index: int, metric: str) -> str:
    """A file name for a metric's plot: metric names come from the run directory (any text)."""
    return f"metric_{index:02d}_{re.sub(r'[^A-Za-z0-9_-]', '_', metric)[:60]}.png"


def _cell(run: RunData, control: str, level: int) -> str:
    m, s, n = run.stat(control, level)
    if n == 0:
        return ""
    return fmt(m) if n == 1 else f"{fmt(m)} ± {fmt(s, 2)}"


def metric_view(run: RunData, verdict: Verdict, plot: str) -> dict[str, Any]:
    """Plain data of one metric's folded section (``run`` already reads that metric)."""
    controls = run.seen_controls
    rows = []
    for level in run.levels:
        winning, matching = verdict(run, level) if level else (None, None)
        rows.append({"level": level, "remaining": plots.pct(run.remaining(level)),
                     "cells": [(c, run.stat(c, level)[0], _cell(run, c, level)) for c in controls],
                     "winning": winning, "matching": matching,
                     "note": win_note(run_verdict(run), level) if level else ""})
    pruned = [lv for lv in run.levels if lv > 0]
    matched = [lv for lv in pruned if verdict(run, lv)[1]]
    best = max(matched, key=lambda lv: run.sparsity[lv]) if matched else None
    return {"metric": run.metric, "direction": run.direction, "judged": run.judged, "controls": controls,
            "rows": rows, "plot": plot, "dense": fmt(run.dense),
            "best": None if best is None else {"level": best, "sparsity": plots.pct(run.sparsity[best])},
            "wins": win_summary(run, run_verdict(run)) if run.judged else None}


def other_metrics_section(run: RunData, plot_dir: Path, verdict: Verdict) -> Markup:
    """HTML of the folded per-metric sections (``templates/other_metrics.html.j2``), or "" when
    the units record only the headline metric."""
    others = [m for m in run.metric_names if m != run.metric]
    if not others:
        return Markup("")
    views = []
    for i, name in enumerate(others):
        view = run.with_metric(name)
        png = plots.save_png(plots.metric_vs_sparsity(view, compact=True), plot_dir / plot_name(i, name))
        views.append(metric_view(view, verdict, png_src(png)))
    return render("other_metrics.html.j2", headline=run.metric, views=views)
