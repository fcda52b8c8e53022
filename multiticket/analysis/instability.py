"""The instability section of ``report.html``: the metric along the linear path between two copies
trained from the same start (Frankle et al. 2020), and the error barrier vs sparsity, ticket vs
controls. Reads the finished ``seed_<s>/instability/<control>/level_<L>/`` units written by
``multiticket instability`` (:mod:`multiticket.core.instability`); empty when there are none.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from multiticket.analysis import plots
from multiticket.analysis.htmlpage import img, num_cell
from multiticket.analysis.stats import fmt, mean_std
from multiticket.core.instability import RESULT
from multiticket.core.store import RunStore

esc = html.escape


def load_instability(run_dir: Path | str) -> list[dict[str, Any]]:
    """Every finished instability record of a run directory (DONE checksums valid), sorted."""
    store = RunStore(Path(run_dir))
    found = []
    for path in Path(run_dir).glob(f"seed_*/instability/*/level_*/{RESULT}"):
        if store.is_done(path.parent):
            found.append(json.loads(path.read_text()))
    return sorted(found, key=lambda r: (r["level"], r["control"] != "ticket", r["control"], r["seed"]))


def _groups(records: list[dict[str, Any]]) -> dict[tuple[int, str], list[dict[str, Any]]]:
    by: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by[(r["level"], r["control"])].append(r)
    return dict(by)


def _label(level: int, control: str) -> str:
    return "dense" if level == 0 else control


@plots.styled
def path_figure(records: list[dict[str, Any]]) -> Figure:
    """One panel per level: the metric along α (mean over seeds; thin lines: single seeds)."""
    groups = _groups(records)
    levels = sorted({lv for lv, _ in groups})
    cols = min(len(levels), 3)
    rows = -(-len(levels) // cols)
    fig = plots.new_figure(3.6 * cols + 1.8, 3.0 * rows)
    metric = records[0]["metric"]
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
    for ax in axes.flat[len(levels):]:
        ax.set_visible(False)
    for ax, level in zip(axes.flat, levels):
        for (lv, control), recs in groups.items():
            if lv != level:
                continue
            color = plots.DENSE_COLOR if level == 0 else plots.control_color(control)
            for r in recs:
                ax.plot(r["alphas"], r["values"], color=color, lw=0.7, alpha=0.35)
            same = [r for r in recs if len(r["values"]) == len(recs[0]["values"])]
            mean = np.mean([r["values"] for r in same], axis=0)
            barrier = float(np.mean([r["barrier"] for r in recs]))
            ax.plot(same[0]["alphas"], mean, color=color, lw=2.2 if control == "ticket" else 1.6,
                    marker="o", ms=3, label=f"{_label(level, control)} (barrier {barrier:.3g})")
        sparsity = recs[0]["sparsity"]
        ax.set_title(f"L{level} · {plots.pct(1 - sparsity)} remaining" if level else "L0 · dense", loc="left")
        ax.set_xlabel("α  (θ = (1−α)·θ₁ + α·θ₂)")
        ax.legend(loc="best", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel(metric)
    fig.suptitle(f"{records[0]['task']}: {metric} along the linear path between two copies", x=0.01, ha="left",
                 fontweight="bold")
    return fig


@plots.styled
def barrier_figure(records: list[dict[str, Any]]) -> Figure:
    """Barrier vs remaining fraction: one line per control (mean ± std over seeds), dense as a star."""
    fig = plots.new_figure(8.5, 4.2)
    ax = fig.add_subplot()
    groups = _groups(records)
    xs: list[float] = []
    for control in dict.fromkeys(c for _, c in sorted(groups, key=lambda k: (k[1] != "ticket", k[1]))):
        pts = sorted(((1 - recs[0]["sparsity"], *mean_std([r["barrier"] for r in recs])[:2])
                      for (lv, c), recs in groups.items() if c == control and lv > 0), reverse=True)
        if not pts:
            continue
        x, m, s = (np.array(v) for v in zip(*pts))
        xs += list(x)
        ax.errorbar(x, m, yerr=s, color=plots.control_color(control), marker="o", ms=5, lw=2 if control == "ticket"
                    else 1.4, capsize=3, label=control)
    if (0, "ticket") in groups:
        m, s, _ = mean_std([r["barrier"] for r in groups[(0, "ticket")]])
        ax.errorbar([1.0], [m], yerr=[s], color=plots.DENSE_COLOR, marker="*", ms=11, ls="none", label="dense")
        xs.append(1.0)
    ax.axhline(0, color="#999999", lw=1)
    plots.remaining_axis(ax, xs)
    better = "higher" if records[0]["higher_is_better"] else "lower"
    ax.set_ylabel(f"error barrier ({records[0]['metric']} units)")
    ax.set_title(f"Instability: barrier vs sparsity ({records[0]['metric']}, {better} is better)", loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="control")
    return fig


def instability_section(run_dir: Path, plot_dir: Path) -> str:
    """The HTML section (plots embedded), or "" when the run has no instability result."""
    records = load_instability(run_dir)
    if not records:
        return ""
    metric = records[0]["metric"]
    hib = records[0]["higher_is_better"]
    out = [
        "<h2>Instability (linear mode connectivity)</h2>",
        "<p>From each unit's own starting point (the rewind point θ<sub>k</sub> ⊙ mask for the ticket and the "
        "dense network; the control's own start for a control), two copies were trained to the end, differing "
        "only in data order / environment seeds, and the metric was evaluated along the straight line "
        "θ(α) = (1−α)·θ₁ + α·θ₂ between them. The <b>error barrier</b> is the largest increase in error "
        "along the path over the mean of the two endpoints' errors (Frankle et al. 2020), in "
        f"{esc(metric)} units: {'mean(endpoints) − min along the path' if hib else 'max along the path − mean(endpoints)'}"
        ". ≈ 0: the copies sit in one linearly connected basin (stable); large: SGD noise sends them to "
        "different basins.</p>",
        img(plots.save_png(path_figure(records), plot_dir / "instability_path.png"), "metric along the path"),
        img(plots.save_png(barrier_figure(records), plot_dir / "instability_barrier.png"), "barrier vs sparsity"),
    ]
    rows = []
    for (level, control), recs in _groups(records).items():
        b_mean, b_sd, n = mean_std([r["barrier"] for r in recs])
        e1 = float(np.mean([r["values"][0] for r in recs]))
        e2 = float(np.mean([r["values"][-1] for r in recs]))
        worst = float(np.mean([(min if hib else max)(r["values"]) for r in recs]))
        lin = float(np.mean([r["barrier_linear"] for r in recs]))
        barrier_text = fmt(b_mean) if n == 1 else f"{fmt(b_mean)} ± {fmt(b_sd, 2)}"
        rows.append(
            f"<tr><td>L{level}</td><td>{plots.pct(1 - recs[0]['sparsity'])}</td><td>{esc(_label(level, control))}</td>"
            f"<td>{n}</td><td>{recs[0]['points']}</td><td class='num'>{fmt(e1)}</td><td class='num'>{fmt(e2)}</td>"
            f"<td class='num'>{fmt(worst)}</td>"
            + num_cell(b_mean, barrier_text, control=control, level=level, kind="barrier")
            + f"<td class='num'>{fmt(lin)}</td></tr>"
        )
    head = ("<tr><th>level</th><th>remaining</th><th>unit</th><th>seeds</th><th>points</th><th>θ₁ (α=0)</th>"
            f"<th>θ₂ (α=1)</th><th>{'min' if hib else 'max'} on path</th><th>barrier</th>"
            "<th>barrier vs line</th></tr>")
    out.append(f'<table class="levels">{head}{"".join(rows)}</table>')
    out.append("<p class='note'>Means over seeds. 'barrier vs line': the largest gap between the path and the "
               "straight line joining the endpoints' metrics. Raw numbers: <code>seed_*/instability/*/level_*/"
               "instability.json</code>.</p>")
    return "".join(out)
