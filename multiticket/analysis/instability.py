"""The instability section of ``report.html``: the metric along the linear path between two copies
trained from the same start (Frankle et al. 2020), and the error barrier vs sparsity, ticket vs
controls. Reads the finished ``seed_<s>/instability/<control>/level_<L>/`` units written by
``multiticket instability`` (:mod:`multiticket.core.instability`); empty when there are none.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import Markup
from matplotlib.figure import Figure

from multiticket.analysis import plots
from multiticket.analysis.htmlpage import png_src, render
from multiticket.analysis.stats import fmt, mean_std
from multiticket.core.instability import RESULT
from multiticket.core.store import RunStore
from multiticket.rundir import read_instability_record


def load_instability(run_dir: Path | str) -> list[dict[str, Any]]:
    """Every finished instability record of a run directory (DONE checksums valid, validated
    by :class:`~multiticket.rundir.InstabilityRecord`), sorted."""
    root = Path(run_dir)
    store = RunStore(root)
    found = []
    for path in sorted(root.glob(f"seed_*/instability/*/level_*/{RESULT}")):
        if store.is_done(path.parent):
            record = read_instability_record(path, root)
            if record is not None:
                found.append(record)
    return sorted(found, key=lambda r: (r["level"], r["control"] != "ticket", r["control"], r["seed"]))


def _groups(records: list[dict[str, Any]]) -> dict[tuple[int, str], list[dict[str, Any]]]:
    by: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by[(r["level"], r["control"])].append(r)
    return dict(by)


def barrier_parts(record: dict[str, Any]) -> tuple[float, float]:
    """(gap, bump) of one path's barrier, in metric units, gap + bump = barrier: ``gap`` is half
    the difference between the two endpoints (what the barrier is for any path that never gets
    worse than its worse endpoint, a straight line included); ``bump`` is how far the path gets
    worse than its worse endpoint (0 when the barrier comes from the endpoints' gap alone)."""
    v0, v1 = float(record["values"][0]), float(record["values"][-1])
    gap = abs(v0 - v1) / 2
    return gap, max(float(record["barrier"]) - gap, 0.0)


def _source(gap: float, bump: float, barrier: float) -> str:
    """Where a (mean) barrier comes from, in words."""
    eps = 1e-9 * max(1.0, abs(barrier))
    if barrier <= eps:
        return "none (flat path)"
    if bump <= eps:
        return "endpoints' gap only"
    if gap <= eps:
        return "bump along the path"
    return f"gap {fmt(gap, 3)} + bump {fmt(bump, 3)}"


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
            linear = float(np.mean([r["barrier_linear"] for r in recs]))
            ax.plot(same[0]["alphas"], mean, color=color, lw=2.2 if control == "ticket" else 1.6, marker="o", ms=3,
                    label=f"{_label(level, control)} (barrier {fmt(barrier, 3)}, vs line {fmt(linear, 3)})")
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
        dense_m, dense_s, _ = mean_std([r["barrier"] for r in groups[(0, "ticket")]])
        ax.errorbar([1.0], [dense_m], yerr=[dense_s], color=plots.DENSE_COLOR, marker="*", ms=11, ls="none", label="dense")
        xs.append(1.0)
    ax.axhline(0, color="#999999", lw=1)
    plots.remaining_axis(ax, xs)
    better = "higher" if records[0]["higher_is_better"] else "lower"
    ax.set_ylabel(f"error barrier ({records[0]['metric']} units)")
    ax.set_title(f"Instability: barrier vs sparsity ({records[0]['metric']}, {better} is better)", loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="control")
    return fig


def instability_section(run_dir: Path, plot_dir: Path) -> Markup:
    """The HTML section (from ``templates/instability.html.j2``, plots embedded), or "" when the
    run has no instability result."""
    records = load_instability(run_dir)
    if not records:
        return Markup("")
    hib = records[0]["higher_is_better"]
    rows = []
    for (level, control), recs in _groups(records).items():
        b_mean, b_sd, n = mean_std([r["barrier"] for r in recs])
        parts = [barrier_parts(r) for r in recs]
        gap, bump = float(np.mean([p[0] for p in parts])), float(np.mean([p[1] for p in parts]))
        rows.append({
            "level": level, "control": control, "label": _label(level, control), "n": n,
            "remaining": plots.pct(1 - recs[0]["sparsity"]), "points": recs[0]["points"],
            "e1": fmt(float(np.mean([r["values"][0] for r in recs]))),
            "e2": fmt(float(np.mean([r["values"][-1] for r in recs]))),
            "worst": fmt(float(np.mean([(min if hib else max)(r["values"]) for r in recs]))),
            "barrier": b_mean, "barrier_text": fmt(b_mean) if n == 1 else f"{fmt(b_mean)} ± {fmt(b_sd, 2)}",
            "linear": fmt(float(np.mean([r["barrier_linear"] for r in recs]))),
            "gap": gap, "bump": bump, "source": _source(gap, bump, b_mean),
        })
    gap_only = [r for r in rows if r["source"] == "endpoints' gap only"]
    return render(
        "instability.html.j2", metric=records[0]["metric"], hib=hib, rows=rows, gap_only=gap_only,
        path_plot=png_src(plots.save_png(path_figure(records), plot_dir / "instability_path.png")),
        barrier_plot=png_src(plots.save_png(barrier_figure(records), plot_dir / "instability_barrier.png")),
    )
