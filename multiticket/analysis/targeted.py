"""The targeted-dropout section of ``report.html``: at each sparsity, one-shot pruning (no
retraining) of a dense network trained with targeted dropout (``prune_dense_td``) and of the
normally trained one (``prune_dense``), next to the IMP ticket, which retrains every level.

Gomez et al. 2019 claim a network trained with targeted dropout loses little when its targeted
weights are pruned afterwards; this puts that claim beside the lottery ticket on the same
sparsities (same counting rule), from finished units only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import Markup
from matplotlib.figure import Figure

from multiticket.analysis import plots
from multiticket.analysis.htmlpage import png_src, render
from multiticket.analysis.rundata import RunData
from multiticket.analysis.stats import fmt

#: (control, label) of the three curves, in table order
CURVES = (
    ("ticket", "IMP ticket (retrained each level)"),
    ("prune_dense", "one-shot, normal training (not retrained)"),
    ("prune_dense_td", "one-shot, targeted dropout (not retrained)"),
)


def has_section(run: RunData) -> bool:
    return any(r["control"] in ("prune_dense", "prune_dense_td", "dense_td") for r in run.records)


def settings_text(run: RunData) -> str:
    td = run.task_config.targeted_dropout
    if td is None:
        return "no targeted_dropout section in config.yaml"
    ramp = td.ramp
    gamma = (f"γ ramped {ramp.gamma_start:g} → {ramp.gamma_end:g} over {ramp.start:.0%}–{ramp.end:.0%} "
             "of training" if ramp is not None else f"γ = {td.gamma:g}")
    return f"{td.variant} variant, {gamma}, α = {td.alpha:g}, applied to: {td.apply_to}"


@plots.styled
def td_figure(run: RunData) -> Figure:
    """The three curves against the remaining fraction, with both dense networks as lines."""
    fig = plots.new_figure(9.5, 4.6)
    ax = fig.add_subplot()
    levels = [lv for lv in run.levels if lv > 0 and lv in run.sparsity]
    for control, label in CURVES:
        pts = [(run.remaining(lv), *run.stat(control, lv)) for lv in levels]
        pts = [p for p in pts if p[3] > 0]
        if not pts:
            continue
        x, m, s, _ = (np.array(v) for v in zip(*pts))
        ax.plot(x, m, marker="o", ms=4.5, lw=2.2 if control == "ticket" else 1.7,
                color=plots.control_color(control), label=label)
        if (s > 0).any():
            ax.fill_between(x, m - s, m + s, color=plots.control_color(control), alpha=0.15, lw=0)
    for control, label, style in (("ticket", "dense, normal training", "--"), ("dense_td", "dense, targeted dropout", ":")):
        mean, _, n = run.stat(control, 0)
        if n:
            ax.axhline(mean, color=plots.DENSE_COLOR, ls=style, lw=1.2, label=f"{label}: {fmt(mean)}")
    plots.remaining_axis(ax, [run.remaining(lv) for lv in levels], levels)
    ax.set_ylabel(f"{run.metric} ({run.direction})")
    ax.set_title(f"{run.task}: pruning without retraining, with and without targeted dropout", loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def td_section(run: RunData, plot_dir: Path) -> Markup:
    """HTML of the section (from ``templates/targeted.html.j2``; '' when the run has none of its units)."""
    if not has_section(run):
        return Markup("")
    figure = None
    if any(run.stat(c, lv)[2] for c, _ in CURVES[1:] for lv in run.levels if lv > 0):
        figure = png_src(plots.save_png(td_figure(run), plot_dir / "targeted_dropout.png"))
    dense = [_cell(*run.stat("dense_td" if c == "prune_dense_td" else "ticket", 0), c, 0) for c, _ in CURVES]
    rows: list[dict[str, Any]] = [{"level": "0 (dense)", "sparsity": "0%", "cells": dense}]
    for lv in run.levels:
        if lv > 0:
            rows.append({"level": lv, "sparsity": plots.pct(run.sparsity[lv]),
                         "cells": [_cell(*run.stat(c, lv), c, lv) for c, _ in CURVES]})
    return render("targeted.html.j2", settings=settings_text(run), figure=figure, labels=[lab for _, lab in CURVES],
                  rows=rows, run=run)


def _cell(mean: float, sd: float, n: int, control: str, level: int) -> dict[str, Any] | None:
    if not n:
        return None
    text = fmt(mean) if n == 1 else f"{fmt(mean)} ± {fmt(sd, 2)}"
    return {"value": mean, "text": text, "control": control, "level": level}
