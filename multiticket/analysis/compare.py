"""``comparison.html``: several runs (e.g. an RL agent and a language model) on common axes.

Metrics differ across domains (return, accuracy, perplexity), so every run's metric is
normalised to its own dense network: 1.0 = dense, higher = better (see
:func:`multiticket.analysis.stats.normalise`). Three views: the normalised ticket vs remaining
fraction; the "winning margin" (normalised ticket minus the best random control at the same
level); and where each ticket keeps its weights, per layer role, at matched sparsity.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from multiticket.analysis import degenerate as D
from multiticket.analysis import layers as L
from multiticket.analysis.aggregate import MIN_INTERVAL_SEEDS, band_aggregates
from multiticket.analysis.htmlpage import png_src, render
from multiticket.analysis.plots import RUN_COLORS, new_figure, pct, remaining_axis, save_png, styled
from multiticket.analysis.rundata import RunData, load_run
from multiticket.analysis.stats import anchor, better, fmt, normalise
from multiticket.analysis.verdicts import run_verdict, win_note
from multiticket.core.store import refuse_links_below, write_inside
from multiticket.errors import UserError
from multiticket.rundir import differing, setting_text, settings, tell_apart, telling


@dataclass
class Series:
    """One run, normalised: per level its remaining fraction, ticket mean/std, best random control."""

    label: str
    run: RunData
    color: str
    levels: list[int]
    remaining: list[float]
    ticket: list[float]
    ticket_sd: list[float]
    best_random: list[float]
    best_random_name: list[str]
    #: per level: why the level is degenerate (its ticket units; ``degenerate.level_flags``), "" if not
    flagged: list[str] = field(default_factory=list)
    #: per level: why the best random control's units are degenerate, "" if not
    control_flagged: list[str] = field(default_factory=list)
    #: what anchors 0 on the baseline-anchored scale (``degenerate.anchor_baseline``), "" if unmeasured
    baseline: str = ""
    #: per level, on that scale (0 = the trivial baseline, 1 = dense; NaN without a baseline)
    anchored: list[float] = field(default_factory=list)
    anchored_best: list[float] = field(default_factory=list)

    @property
    def margin(self) -> list[float]:
        return [t - b for t, b in zip(self.ticket, self.best_random)]

    @property
    def anchored_margin(self) -> list[float]:
        return [t - b for t, b in zip(self.anchored, self.anchored_best)]

    @property
    def clean(self) -> list[bool]:
        """Per level: not flagged, so its margin says something about the mask."""
        return [not f for f in self.flagged] if self.flagged else [True] * len(self.levels)


def normalised_series(run: RunData, label: str, color: str) -> Series:
    """Per level: the ticket's mean relative to dense (and its spread over seeds), the best random
    control, both also on the baseline-anchored scale, and the degenerate flags."""
    dense, hib = run.dense, run.higher_is_better
    anchor_to = D.anchor_baseline(run)
    levels = [lv for lv in run.levels if run.values("ticket", lv)]
    s = Series(label, run, color, levels, [run.remaining(lv) for lv in levels], [], [], [], [],
               baseline="" if anchor_to is None else f"{anchor_to[1]} {fmt(anchor_to[0])}")

    def anchored(value: float) -> float:
        return math.nan if anchor_to is None else anchor(value, dense, anchor_to[0], hib, anchor_to[2])

    for lv in levels:
        raw = list(run.values("ticket", lv).values())
        vals = [normalise(v, dense, hib) for v in raw]
        s.ticket.append(normalise(float(np.mean(raw)), dense, hib))
        s.anchored.append(anchored(float(np.mean(raw))))
        s.ticket_sd.append(float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)
        best_raw, best_name = _best_random(run, lv)
        s.best_random.append(normalise(best_raw, dense, hib))
        s.anchored_best.append(anchored(best_raw))
        s.best_random_name.append(best_name)
        s.flagged.append("; ".join(f.reason for f in D.level_flags(run, lv)))
        s.control_flagged.append("; ".join(f.reason for f in D.control_flags(run, best_name, lv)) if best_name else "")
    return s


def _best_random(run: RunData, level: int) -> tuple[float, str]:
    """The random control with the best mean over seeds at ``level``: (its raw mean, its name); (NaN, "")."""
    best, best_name = math.nan, ""
    for c in run.random_controls:
        vals = list(run.values(c, level).values())
        if vals:
            v = float(np.mean(vals))
            if math.isnan(best) or better(v, best, run.higher_is_better):
                best, best_name = v, c
    return best, best_name


def role_profile(run: RunData, target: float) -> tuple[int, dict[str, float]] | None:
    """(level closest to ``target`` sparsity, role -> remaining fraction averaged over seeds)."""
    masks = run.ticket_masks()
    if not masks:
        return None
    level = min(masks, key=lambda lv: (abs(run.sparsity[lv] - target), -lv))
    profiles = [L.remaining_per_role(m, run.layer_roles(m)) for m in masks[level].values()]
    roles = {r for p in profiles for r in p}
    return level, {r: float(np.mean([p[r] for p in profiles if r in p])) for r in roles}


# -- figures -------------------------------------------------------------------------------------


def _mark_flagged(ax: Any, series: list[Series], ys: Callable[[Series], list[float]]) -> None:
    """Cross out degenerate levels (``Series.flagged``): their numbers say nothing about the ticket."""
    labelled = False
    for s in series:
        pts = [(x, y) for x, y, ok in zip(s.remaining, ys(s), s.clean) if not ok and not math.isnan(y)]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker="x", s=70, color="#222222", zorder=5,
                       label=None if labelled else "degenerate level (flagged, not judged)")
            labelled = True


def _ticket_and_random(ax: Any, series: list[Series], ticket: Callable[[Series], list[float]],
                       best: Callable[[Series], list[float]], band: bool) -> None:
    """Each run's ticket (solid, ± std over seeds when ``band``) and best random control (dotted)."""
    for s in series:
        x, m = np.array(s.remaining), np.array(ticket(s))
        ax.plot(x, m, marker="o", lw=2.2, color=s.color, label=f"{s.label}: ticket")
        sd = np.array(s.ticket_sd)
        if band and (sd > 0).any():
            ax.fill_between(x, m - sd, m + sd, color=s.color, alpha=0.14, lw=0)
        b = np.array(best(s))
        ok = ~np.isnan(b)
        if ok.any():
            ax.plot(x[ok], b[ok], ls=":", marker="s", ms=3, lw=1.5, color=s.color, label=f"{s.label}: best random control")
    _mark_flagged(ax, series, ticket)
    remaining_axis(ax, sorted({x for s in series for x in s.remaining}, reverse=True))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _footnote(fig: Any, text: str) -> None:
    """A small note under the figure, inside the canvas (the constrained layout makes room for it)."""
    fig.supxlabel(text, x=0.01, ha="left", fontsize=8, color="#555555")


@styled
def normalised_figure(series: list[Series]):  # noqa: ANN201 - a matplotlib Figure
    fig = new_figure(10, 5)
    ax = fig.add_subplot()
    ax.axhline(1.0, color="#222222", ls="--", lw=1.1, label="dense = 1.0")
    _ticket_and_random(ax, series, lambda s: s.ticket, lambda s: s.best_random, band=True)
    ax.set_ylabel("metric relative to dense (higher = better)")
    ax.set_title("Ticket performance relative to each run's dense network", loc="left")
    _footnote(fig, "higher-is-better: 1 + (value − dense)/|dense|;  lower-is-better (loss, perplexity): "
              "dense / value.  Band: ± std over seeds.")
    return fig


@styled
def anchored_figure(series: list[Series]):  # noqa: ANN201
    """Runs with a measured trivial baseline, on the scale 0 = that baseline, 1 = dense."""
    fig = new_figure(10, 5)
    ax = fig.add_subplot()
    ax.axhline(1.0, color="#222222", ls="--", lw=1.1, label="dense = 1")
    ax.axhline(0.0, color="#c0392b", ls="--", lw=1.1, label="trivial baseline = 0")
    _ticket_and_random(ax, series, lambda s: s.anchored, lambda s: s.anchored_best, band=False)
    ax.set_ylabel("share of the gap from the trivial\nbaseline to dense (1 = dense)")
    ax.set_title("Ticket and best random control between each run's trivial baseline and its dense network",
                 loc="left")
    _footnote(fig, "(value − baseline) / (dense − baseline); perplexity on logs.  Baselines:\n"
              + "\n".join(f"{s.label}: {s.baseline}" for s in series))
    return fig


@styled
def margin_figure(series: list[Series]):  # noqa: ANN201
    fig = new_figure(10, 4.4)
    ax = fig.add_subplot()
    for s in series:
        x, m = np.array(s.remaining), np.array(s.margin)
        ok = ~np.isnan(m)
        if ok.any():
            ax.plot(x[ok], m[ok], marker="o", lw=2.2, color=s.color, label=s.label)
    _mark_flagged(ax, series, lambda s: s.margin)
    ax.axhline(0.0, color="#222222", lw=1.0)
    lo, hi = ax.get_ylim()
    ax.axhspan(0, max(hi, 0), color="#2e9e44", alpha=0.06, lw=0)
    ax.axhspan(min(lo, 0), 0, color="#c0392b", alpha=0.06, lw=0)
    ax.set_ylim(lo, hi)
    remaining_axis(ax, sorted({x for s in series for x in s.remaining}, reverse=True))
    ax.set_ylabel("ticket − best random control\n(normalised; > 0: ticket wins)")
    ax.set_title("Winning margin", loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="run")
    return fig


@styled
def roles_figure(profiles: list[tuple[Series, int, dict[str, float]]], target: float):  # noqa: ANN201
    roles = L.in_role_order(r for _, _, p in profiles for r in p)
    fig = new_figure(max(6.5, 1.5 + 1.1 * len(roles) * max(1, len(profiles)) / 2), 4.4)
    ax = fig.add_subplot()
    width = 0.8 / max(len(profiles), 1)
    for i, (s, level, prof) in enumerate(profiles):
        xs = np.arange(len(roles)) + (i - (len(profiles) - 1) / 2) * width
        vals = [prof.get(r, np.nan) for r in roles]
        ax.bar(xs, vals, width * 0.92, color=s.color,
               label=f"{s.label} (L{level}, {pct(s.run.remaining(level))} remaining)")
        ax.axhline(s.run.remaining(level), color=s.color, ls="--", lw=0.9, alpha=0.8)
    ax.set_xticks(range(len(roles)), roles)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("remaining fraction in role")
    ax.grid(axis="x", visible=False)
    ax.set_title(f"Where the tickets keep their weights, at ≈{pct(target)} sparsity (dashed: overall)", loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


# -- page ----------------------------------------------------------------------------------------


def _labels(runs: list[RunData], given: list[str | None] | None = None) -> list[str]:
    """Each run's name in titles and legends: the one given (``compare --label``); else its
    directory, or, where several runs share a task name, that name with the settings that tell
    them apart (``toy-mlp (prune.criterion=movement)``, :func:`multiticket.rundir.tell_apart`)."""
    tags = tell_apart([r.task for r in runs], [settings(r.config, r.task_config) for r in runs])
    names = [g if g else f"{r.task} ({_plain(tag)})" if tag else r.name
             for r, tag, g in zip(runs, tags, given or [None] * len(runs))]
    return [n if names.count(n) == 1 else f"{n} #{i + 1}" for i, n in enumerate(names)]


def _plain(text: str) -> str:
    """Text drawn into a figure as it reads: matplotlib's mathematics ('$') and odd characters go."""
    return re.sub(r"[^A-Za-z0-9 _.,:=+()/%#\[\]{}\"'-]", "?", text)


def write_comparison(run_dirs: list[Path], out_dir: Path, sparsity: float | None = None,
                     labels: list[str | None] | None = None) -> Path:
    """Write ``comparison.html`` and ``plots/*.png`` into ``out_dir``; return the HTML path.

    ``sparsity``: where to compare layer-role profiles (default: the largest sparsity every run
    has reached); ``labels``: a name per run (None: its own, see :func:`_labels`). Raises
    UserError for a directory that is not a run, or a malformed one.
    """
    return render_comparison(comparison_series(run_dirs, labels), out_dir, sparsity)


def comparison_series(run_dirs: list[Path], labels: list[str | None] | None = None) -> list[Series]:
    """Load each run once and normalise it to its dense unit: one series per run, in order.

    Callers that want both the page and the numbers behind it (``scripts/compare_domains.py``)
    load through this once, because loading re-reads every unit's mask.
    """
    if not run_dirs:
        raise UserError("compare: give at least one run directory")
    runs = [load_run(d, lenient=True) for d in run_dirs]
    return [normalised_series(r, lab, RUN_COLORS[i % len(RUN_COLORS)]) for i, (r, lab) in
            enumerate(zip(runs, _labels(runs, labels)))]


#: most rows of the "settings that differ" table (two domains differ in every key of their sections)
MAX_SETTING_ROWS = 60


def settings_table(series: list[Series]) -> dict[str, Any] | None:
    """The settings whose values differ between the compared runs (every resolved setting,
    defaults included: ``config.yaml``'s ``defaults:`` block), one row each, telling ones first;
    None for a single run or runs that differ in nothing."""
    if len(series) < 2:
        return None
    rows = differing([settings(s.run.config, s.run.task_config) for s in series])
    if not rows:
        return None
    rows.sort(key=lambda row: not telling(row[0]))
    shown = [{"key": key, "cells": [setting_text(v) for v in values], "telling": telling(key)}
             for key, values in rows[:MAX_SETTING_ROWS]]
    return {"labels": [s.label for s in series], "rows": shown, "more": max(0, len(rows) - MAX_SETTING_ROWS)}


def render_comparison(series: list[Series], out_dir: Path, sparsity: float | None = None) -> Path:
    """Write the comparison page and its figures for already-normalised series."""
    out_dir = Path(out_dir)
    plot_dir = out_dir / "plots"
    refuse_links_below(out_dir, plot_dir)
    metrics = {(s.run.metric, s.run.higher_is_better) for s in series if s.run.records}
    context: dict[str, Any] = {"series": series, "several_metrics": len(metrics) > 1, "plots": None,
                               "settings": settings_table(series)}
    with_data = [s for s in series if s.levels]
    if with_data:
        context["plots"] = {
            "normalised": png_src(save_png(normalised_figure(with_data), plot_dir / "normalised.png")),
            "margin": png_src(save_png(margin_figure(with_data), plot_dir / "margin.png")),
            "rows": _margin_rows(with_data), "roles": None, "anchored": None,
            "unanchored": [s.label for s in with_data if not s.baseline],
        }
        context["aggregates"] = _aggregates(with_data)
        anchored = [s for s in with_data if s.baseline]
        if anchored:
            context["plots"]["anchored"] = png_src(save_png(anchored_figure(anchored), plot_dir / "anchored.png"))
        reached = [max(s.run.sparsity[lv] for lv in s.levels) for s in with_data]
        target = sparsity if sparsity is not None else min(reached)
        profiles = [(s, *p) for s in with_data if (p := role_profile(s.run, target)) is not None]
        if profiles:
            context["plots"]["roles"] = png_src(save_png(roles_figure(profiles, target), plot_dir / "roles.png"))
            context["plots"]["target"] = pct(target)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "comparison.html"
    page = str(render("compare.html.j2", title="multiticket comparison", **context))
    write_inside(out_dir, path, lambda tmp: tmp.write_text(page))
    return path


def _aggregates(series: list[Series]) -> dict[str, Any]:
    """rliable's IQM and probability of improvement per sparsity band (:mod:`aggregate`)."""
    try:
        scale, bands = band_aggregates([s.run for s in series])
    except ModuleNotFoundError:
        return {"missing": "rliable is not installed (pip install 'multiticket[stats]')"}
    return {"scale": scale, "bands": bands, "min_seeds": MIN_INTERVAL_SEEDS}


def _margin_rows(series: list[Series]) -> list[dict[str, Any]]:
    return [{"label": s.label, "level": lv, "remaining": pct(s.remaining[i]), "ticket": s.ticket[i],
             "won": run_verdict(s.run).winning(lv), "won_note": win_note(run_verdict(s.run), lv),
             "best_name": s.best_random_name[i] or "–", "best": s.best_random[i], "margin": s.margin[i],
             "anchored_margin": s.anchored_margin[i],
             "flagged": s.flagged[i], "control_flagged": s.control_flagged[i]}
            for s in series for i, lv in enumerate(s.levels)]
