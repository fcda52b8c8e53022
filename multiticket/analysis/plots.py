"""Matplotlib figures of one run: metric vs sparsity, per-layer heatmaps, stability, inputs.

Conventions shared by every chart (and by :mod:`multiticket.analysis.compare`): the x axis is the
remaining fraction of prunable weights on a log scale, decreasing to the right (sparser to the
right), with the pruning level on the top axis; each control keeps one colour everywhere;
legends sit outside the data. Figures are rendered with the Agg backend (no display needed).
"""

from __future__ import annotations

import functools
import io
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FixedLocator, NullLocator  # noqa: E402

from multiticket.analysis.layers import random_jaccard  # noqa: E402
from multiticket.analysis.rundata import RunData  # noqa: E402
from multiticket.analysis.stats import fmt, mean_std  # noqa: E402
from multiticket.core.store import atomic_write  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType  # in newer matplotlib only: annotations, never imported at run time

#: one colour per control, the same in every chart (ticket: the strongest)
CONTROL_COLORS = {
    "ticket": "#1f4e9c",
    "random_reinit": "#e07b00",
    "random_mask": "#2e9e44",
    "random_mask_global": "#8fb935",
    "permuted_init": "#8e44ad",
    "permuted_mask": "#d0508f",
    "one_shot": "#17a2b8",
    "rewind_init": "#7f7f7f",
    "early_bird": "#b8860b",
    "transfer_mask": "#c0392b",
    "prune_dense": "#6c757d",
    "prune_dense_td": "#d35400",
    "dense_td": "#d35400",
}
#: one colour per run in comparisons
RUN_COLORS = ("#1f4e9c", "#c0392b", "#2e9e44", "#8e44ad", "#e07b00", "#17a2b8", "#7f7f7f", "#b8860b")
DENSE_COLOR = "#222222"

STYLE: dict[RcKeyType, Any] = {
    "font.size": 10,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e3e3e3",
    "grid.linewidth": 0.8,
    "legend.frameon": False,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "text.parse_math": False,  # names from a run directory are text, never mathtext ('$' is a dollar)
}


def styled(fn: Callable[..., Figure]) -> Callable[..., Figure]:
    """Build the figure inside the house style (rc_context must be active while axes are made)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Figure:
        with plt.rc_context(STYLE):
            return fn(*args, **kwargs)

    return wrapper


def control_color(control: str) -> str:
    return CONTROL_COLORS.get(control, "#555555")


def new_figure(width: float, height: float) -> Figure:
    return plt.figure(figsize=(width, height), layout="constrained")


def save_png(fig: Figure, path: Path) -> bytes:
    """Write ``fig`` to ``path`` and return the PNG bytes (for embedding); closes the figure."""
    buf = io.BytesIO()
    with plt.rc_context(STYLE), warnings.catch_warnings():
        # a name from the run directory may hold characters no font has; matplotlib's warning
        # would print the raw character (an escape sequence, say) to the terminal
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    data = buf.getvalue()
    # atomically: a planted link at ``path`` is replaced, never written through (the page's entry
    # point has refused links on the way to the plot folder: store.refuse_links_below)
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
    return data


def pct(x: float) -> str:
    """0.512 -> '51.2%', 0.0134 -> '1.34%'."""
    v = 100 * x
    return f"{v:.0f}%" if v >= 99.95 or abs(v - round(v)) < 0.05 else (f"{v:.1f}%" if v >= 10 else f"{v:.2g}%")


def spread_ticks(xs: list[float], most: int = 9) -> list[float]:
    """Of descending positive ``xs``, the ticks a log axis can label without overlap: the largest,
    then each next value at least 1/``most`` of the log range below the last kept one. Evenly
    spaced levels keep every ``ceil(n / most)``-th; near-equal sparsities of several runs
    (35.9 % and 36.0 %) keep one label."""
    if len(xs) <= 1:
        return list(xs)
    gap = 0.95 * math.log(xs[0] / xs[-1]) / most
    ticks = [xs[0]]
    for x in xs[1:]:
        if math.log(ticks[-1] / x) >= gap:
            ticks.append(x)
    return ticks


def remaining_axis(ax: Axes, remaining: list[float], levels: list[int] | None = None) -> None:
    """Log-scaled, inverted x axis of remaining fractions with ticks at the levels present."""
    xs = sorted(set(remaining), reverse=True)
    if not xs:
        return
    ax.set_xscale("log")
    lo, hi = min(xs), max(xs)
    pad = (hi / lo) ** 0.04 if hi > lo else 1.15
    ax.set_xlim(hi * pad, lo / pad)
    ticks = spread_ticks(xs)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([pct(t) for t in ticks])
    ax.set_xlabel("remaining fraction of prunable weights (log scale; sparser →)")
    if levels is not None and len(levels) == len(remaining):
        top = ax.secondary_xaxis("top")
        pairs = [p for p in sorted(dict(zip(remaining, levels)).items(), reverse=True) if p[0] in ticks]
        top.xaxis.set_major_locator(FixedLocator([p[0] for p in pairs]))
        top.xaxis.set_minor_locator(NullLocator())
        top.set_xticklabels([f"L{p[1]}" for p in pairs], fontsize=8, color="#666666")
        top.tick_params(length=2)


@styled
def metric_vs_sparsity(run: RunData, compact: bool = False) -> Figure:
    """The run view's metric vs remaining fraction: one line per control, mean ± std band over
    seeds (``compact``: a smaller figure, for the other-metrics sections)."""
    fig = new_figure(7.5, 3.6) if compact else new_figure(9.5, 4.8)
    ax = fig.add_subplot()
    levels = [lv for lv in run.levels if lv in run.sparsity]
    for control in run.seen_controls:
        pts = [(run.remaining(lv), *run.stat(control, lv)) for lv in levels]
        pts = [p for p in pts if p[3] > 0]
        if not pts:
            continue
        x, m, s, _ = (np.array(v) for v in zip(*pts))
        is_ticket = control == "ticket"
        ax.plot(x, m, marker="o" if is_ticket else "s", ms=5 if is_ticket else 3.5, lw=2.4 if is_ticket else 1.5,
                color=control_color(control), label=control, zorder=3 if is_ticket else 2)
        if (s > 0).any():
            ax.fill_between(x, m - s, m + s, color=control_color(control), alpha=0.15, lw=0)
    dense, dense_sd, n = run.stat("ticket", 0)
    if n:
        ax.axhline(dense, color=DENSE_COLOR, ls="--", lw=1.2, label=f"dense (level 0): {fmt(dense)}", zorder=1)
        slack = run.tolerance * abs(dense)
        lo, hi = (dense - slack, dense) if run.higher_is_better else (dense, dense + slack)
        if run.judged:
            ax.axhspan(lo, hi, color="#999999", alpha=0.12, lw=0, label=f"matching band (±{run.tolerance:g}·dense)")
    remaining_axis(ax, [run.remaining(lv) for lv in levels], levels)
    arrow = ("↑" if run.higher_is_better else "↓") if run.judged else ""
    ax.set_ylabel(f"{run.metric} ({run.direction} {arrow})")
    seeds = sorted({r["seed"] for r in run.records})
    ax.set_title(f"{run.task}: {run.metric} vs sparsity (mean ± std over {len(seeds)} seed{'s' * (len(seeds) != 1)})",
                 loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="control")
    return fig


def _heat(ax: Axes, data: np.ndarray, rows: list[str], cols: list[str], cmap: str, vmin: float, vmax: float,
          annotate: bool, fmt: str = "{:.0%}") -> matplotlib.image.AxesImage:
    im = ax.imshow(data, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks(range(len(cols)), cols, fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if annotate:
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                v = data[i, j]
                if not np.isnan(v):
                    light = (v - vmin) / (vmax - vmin or 1) < 0.55
                    ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=7,
                            color="white" if light else "#111111")
    return im


def _role_separators(ax: Axes, row_roles: list[str], width: int) -> None:
    """Horizontal lines between role groups, and the role name on the right."""
    start = 0
    for i in range(1, len(row_roles) + 1):
        if i == len(row_roles) or row_roles[i] != row_roles[start]:
            if i < len(row_roles):
                ax.axhline(i - 0.5, color="white", lw=2.5)
            ax.text(width - 0.4, (start + i - 1) / 2, f" {row_roles[start]}", va="center", ha="left",
                    fontsize=9, fontweight="bold", color="#333333", clip_on=False)
            start = i


@styled
def layer_heatmap(run: RunData, layers: list[tuple[str, str]], per_layer: dict[int, dict[str, float]],
                  sizes: dict[str, int]) -> Figure:
    """Layers (grouped by role) × levels: fraction of each layer's weights the ticket keeps."""
    levels = sorted(per_layer)
    data = np.array([[per_layer[lv].get(name, np.nan) for lv in levels] for _, name in layers])
    rows = [f"{name} ({sizes.get(name, 0):,})" for _, name in layers]
    cols = [f"L{lv}\n{pct(run.remaining(lv))}" for lv in levels]
    fig = new_figure(min(4.0 + 0.62 * len(levels) + 0.065 * max(map(len, rows)), 18), min(1.6 + 0.3 * len(rows), 22))
    ax = fig.add_subplot()
    im = _heat(ax, data, rows, cols, "viridis", 0.0, 1.0, annotate=len(rows) * len(levels) <= 400)
    _role_separators(ax, [r for r, _ in layers], len(levels))
    ax.set_xlabel("level (overall remaining fraction)")
    ax.set_title("Remaining fraction per layer (ticket, mean over seeds)", loc="left")
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.12, label="remaining fraction")
    return fig


@styled
def jaccard_figure(run: RunData, layers: list[tuple[str, str]], jac: dict[int, dict[str, float]]) -> Figure:
    """Left: per-layer Jaccard across seeds (heatmap). Right: whole mask vs random-mask chance."""
    levels = sorted(jac)
    data = np.array([[jac[lv].get(name, np.nan) for lv in levels] for _, name in layers])
    label_w = 0.065 * max(len(n) for _, n in layers)
    fig = new_figure(min(8.0 + 0.62 * len(levels) + label_w, 20), min(2.2 + 0.3 * len(layers), 22))
    gs = fig.add_gridspec(1, 2, width_ratios=[max(len(levels), 2) * 0.62 + 1.5 + label_w, 4])
    ax = fig.add_subplot(gs[0])
    im = _heat(ax, data, [n for _, n in layers], [f"L{lv}" for lv in levels], "magma", 0.0, 1.0,
               annotate=len(layers) * len(levels) <= 400, fmt="{:.2f}")
    _role_separators(ax, [r for r, _ in layers], len(levels))
    ax.set_title("Jaccard of alive weights across seeds", loc="left")
    fig.colorbar(im, ax=ax, fraction=0.05, pad=0.14)
    ax2 = fig.add_subplot(gs[1])
    x = [run.remaining(lv) for lv in levels]
    ax2.plot(x, [jac[lv]["(all)"] for lv in levels], marker="o", color=control_color("ticket"), lw=2,
             label="ticket masks")
    ax2.plot(x, [random_jaccard(v) for v in x], ls="--", color="#888888", lw=1.5, label="two random masks")
    remaining_axis(ax2, x)
    ax2.set_xlabel("remaining fraction (log)")
    ax2.tick_params(axis="x", labelsize=7.5, labelrotation=30)
    ax2.set_ylim(0, 1.02)
    ax2.set_ylabel("Jaccard (whole mask)")
    ax2.set_title("Whole mask vs chance", loc="left")
    ax2.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=1)
    return fig


@styled
def input_dims_figure(run: RunData, layer: str, alive: dict[int, list[float]], names: list[str]) -> Figure:
    """Observation dimensions × levels: fraction of the input layer's column still alive."""
    levels = sorted(alive)
    data = np.array([[alive[lv][d] for lv in levels] for d in range(len(names))])
    fig = new_figure(min(max(7.0, 3.5 + 0.62 * len(levels)), 16), min(1.8 + 0.28 * len(names), 20))
    ax = fig.add_subplot()
    im = _heat(ax, data, names, [f"L{lv}\n{pct(run.remaining(lv))}" for lv in levels], "cividis", 0.0, 1.0,
               annotate=len(names) * len(levels) <= 400)
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            if data[i, j] == 0:
                ax.add_patch(matplotlib.patches.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="#e74c3c", lw=2))
    ax.set_xlabel(f"level (overall remaining fraction)\n{layer}; mean over seeds")
    ax.set_title("Input columns still connected (red: cut off)", loc="left")
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.04, label="alive fraction of column")
    return fig


def _band_lines(ax: Axes, bands: dict[str, Any]) -> None:
    """One line per control (mean over seeds) with a ± std band; the ticket drawn strongest."""
    for control, b in bands.items():
        keep = b.n > 0
        if not keep.any():
            continue
        is_ticket = control == "ticket"
        x, m, s = b.x[keep], b.mean[keep], b.std[keep]
        ax.plot(x, m, lw=2.2 if is_ticket else 1.3, color=control_color(control), label=control,
                zorder=3 if is_ticket else 2)
        if (s > 0).any():
            ax.fill_between(x, m - s, m + s, color=control_color(control), alpha=0.13, lw=0)


@styled
def curves_figure(run: RunData, level: int, panels: list[tuple[str, dict[str, Any]]], x_label: str) -> Figure:
    """One level's learning curves: a panel per series (training return or loss, evaluated metric),
    each control's mean over seeds on the common step grid with a ± std band."""
    fig = new_figure(4.6 * len(panels) + 1.6, 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, bands) in zip(axes, panels):
        _band_lines(ax, bands)
        ax.locator_params(axis="x", nbins=5)  # step numbers are long: few ticks, no overlap
        ax.set_xlabel(x_label)
        ax.set_ylabel(name)
        ax.set_title(name, loc="left", fontsize=10)
    remaining = f" · {pct(run.remaining(level))} remaining" if level in run.sparsity else ""
    fig.suptitle(f"Level {level}{remaining}", x=0.01, ha="left", fontweight="bold")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right upper", title="control")
    return fig


@styled
def reward_figure(run: RunData) -> Figure:
    """RL: the final deterministic evaluation beside Yu et al.'s ticket reward (the mean return of
    the last training episodes), per control against the remaining fraction, mean ± std over seeds."""
    fig = new_figure(11.0, 4.0)
    axes = fig.subplots(1, 2)
    levels = [lv for lv in run.levels if lv in run.sparsity]
    for ax, metric in zip(axes, (run.metric, "ticket_reward")):
        for control in run.seen_controls:
            pts = [(run.remaining(lv), *mean_std(list(run.values(control, lv, metric).values()))) for lv in levels]
            pts = [p for p in pts if p[3] > 0]
            if not pts:
                continue
            x, m, s, _ = (np.array(v) for v in zip(*pts))
            is_ticket = control == "ticket"
            ax.plot(x, m, marker="o" if is_ticket else "s", ms=4, lw=2.2 if is_ticket else 1.3,
                    color=control_color(control), label=control)
            if (s > 0).any():
                ax.fill_between(x, m - s, m + s, color=control_color(control), alpha=0.13, lw=0)
        remaining_axis(ax, [run.remaining(lv) for lv in levels], levels)
        ax.set_title(f"{metric} ({'final evaluation' if metric == run.metric else 'last training episodes'})",
                     loc="left", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right upper", title="control")
    return fig

