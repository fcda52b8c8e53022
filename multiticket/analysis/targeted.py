"""The targeted-dropout section of ``report.html``: at each sparsity, one-shot pruning (no
retraining) of a dense network trained with targeted dropout (``prune_dense_td``) and of the
normally trained one (``prune_dense``), next to the IMP ticket, which retrains every level.

Gomez et al. 2019 claim a network trained with targeted dropout loses little when its targeted
weights are pruned afterwards; this puts that claim beside the lottery ticket on the same
sparsities (same counting rule), from finished units only.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from multiticket.analysis import plots
from multiticket.analysis.rundata import RunData
from multiticket.analysis.stats import fmt

esc = html.escape

#: (control, label) of the three curves, in table order
CURVES = (
    ("ticket", "IMP ticket (retrained each level)"),
    ("prune_dense", "one-shot, normal training (not retrained)"),
    ("prune_dense_td", "one-shot, targeted dropout (not retrained)"),
)


def has_section(run: RunData) -> bool:
    return any(r["control"] in ("prune_dense", "prune_dense_td", "dense_td") for r in run.records)


def settings_text(run: RunData) -> str:
    td = run.config.get("targeted_dropout")
    if not isinstance(td, dict):
        return "no targeted_dropout section in config.yaml"
    ramp = td.get("ramp")
    gamma = (f"γ ramped {ramp['gamma_start']:g} → {ramp['gamma_end']:g} over {ramp['start']:.0%}–{ramp['end']:.0%} "
             "of training" if isinstance(ramp, dict) else f"γ = {td.get('gamma'):g}")
    return f"{td.get('variant')} variant, {gamma}, α = {td.get('alpha'):g}, applied to: {td.get('apply_to')}"


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
            ax.axhline(mean, color=plots.DENSE_COLOR, ls=style, lw=1.2, label=f"{label}: {mean:.4g}")
    plots.remaining_axis(ax, [run.remaining(lv) for lv in levels], levels)
    ax.set_ylabel(f"{run.metric} ({run.direction})")
    ax.set_title(f"{run.task}: pruning without retraining, with and without targeted dropout", loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def td_section(run: RunData, plot_dir: Path) -> str:
    """HTML of the section ('' when the run has none of its units)."""
    if not has_section(run):
        return ""
    out = ["<h2>Targeted dropout: pruning without retraining vs the ticket</h2>",
           f"<p>Targeted dropout ({esc(settings_text(run))}). <b>prune_dense_td</b>: the dense network "
           "trained with targeted dropout (unit <code>dense_td/level_0</code>), pruned one-shot by magnitude "
           "to each level's sparsity and evaluated <i>without retraining</i>; <b>prune_dense</b>: the same "
           "for the normally trained dense network; the IMP ticket retrains at every level. All three use "
           "the ticket's counting rule, so sparsities are identical.</p>"]
    if any(run.stat(c, lv)[2] for c, _ in CURVES[1:] for lv in run.levels if lv > 0):
        out.append(plots_img(td_figure(run), plot_dir / "targeted_dropout.png"))
    head = "<tr><th>level</th><th>sparsity</th>" + "".join(f"<th>{esc(label)}</th>" for _, label in CURVES) + "</tr>"
    rows = []
    dense_cells = []
    for control in ("ticket", "prune_dense", "prune_dense_td"):
        source = "dense_td" if control == "prune_dense_td" else "ticket"
        m, s, n = run.stat(source, 0)
        dense_cells.append(_cell(m, s, n, source, 0))
    rows.append("<tr><td>0 (dense)</td><td>0%</td>" + "".join(dense_cells) + "</tr>")
    for lv in run.levels:
        if lv == 0:
            continue
        cells = "".join(_cell(*run.stat(c, lv), c, lv) for c, _ in CURVES)
        rows.append(f"<tr><td>{lv}</td><td>{plots.pct(run.sparsity[lv])}</td>{cells}</tr>")
    out.append(f'<table class="levels">{head}{"".join(rows)}</table>')
    out.append(f"<p class='note'>{esc(run.metric)}, mean ± std over seeds ({esc(run.direction)}). Level 0 row: "
               "the dense network each column starts from (normal training for the ticket and prune_dense, "
               "targeted dropout for prune_dense_td).</p>")
    return "".join(out)


def plots_img(fig: Figure, path: Path) -> str:
    png = base64.b64encode(plots.save_png(fig, path)).decode()
    return f'<img alt="targeted dropout: metric vs sparsity" src="data:image/png;base64,{png}">'


def _cell(mean: float, sd: float, n: int, control: str, level: int) -> str:
    if not n:
        return "<td>–</td>"
    text = fmt(mean) if n == 1 else f"{fmt(mean)} ± {fmt(sd, 2)}"
    return (f'<td class="num" data-control="{esc(control)}" data-level="{level}" data-value="{mean!r}">'
            f"{esc(text)}</td>")
