"""``report.html``: one self-contained page per run directory (plots embedded, CSS inline).

Sections: header (what ran, what is missing), headline (largest sparsity at which the ticket
still matches dense), metric vs sparsity, ticket vs each control per level with bootstrap
intervals and winning/matching verdicts, per-layer remaining fractions, mask stability across
seeds, and for RL the observation dimensions the input layer has cut off. Works on a partial
run: everything is computed from finished units only. See docs/report.md for how to read it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from multiticket.analysis import layers as L
from multiticket.analysis import plots
from multiticket.analysis.compute import compute_section
from multiticket.analysis.curves import curves_section
from multiticket.analysis.degenerate import degenerate_section, guard_verdict
from multiticket.analysis.early_bird import early_bird_section
from multiticket.analysis.header import header
from multiticket.analysis.htmlpage import png_src, render
from multiticket.analysis.instability import instability_section
from multiticket.analysis.other_metrics import other_metrics_section
from multiticket.analysis.paired import INTERVAL_LABEL, paired
from multiticket.analysis.rundata import RunData, load_run
from multiticket.analysis.stats import fmt, matches
from multiticket.analysis.targeted import td_section
from multiticket.analysis.verdicts import row_verdict, run_verdict, win_note, win_summary
from multiticket.core.store import refuse_links_below, write_inside


def mean_text(m: float, s: float, n: int) -> str:
    return fmt(m) if n == 1 else f"{fmt(m)} ± {fmt(s, 2)}"


# -- verdicts ------------------------------------------------------------------------------------


def level_verdict(run: RunData, level: int) -> tuple[bool | None, bool | None]:
    """(winning, matching) of the ticket at ``level``; None when undecidable. Winning: the level is
    won under the run's test and correction (:mod:`verdicts`; None with too few seeds); matching:
    the ticket's mean is within the tolerance of dense's."""
    t, _, n = run.stat("ticket", level)
    if n == 0 or not run.judged:
        return None, None
    winning = run_verdict(run).winning(level)
    dense = run.dense
    matching = None if math.isnan(dense) else matches(t, dense, run.tolerance, run.higher_is_better)
    return guard_verdict(run, level, winning, matching)  # a degenerate level is neither


def largest_matching_level(run: RunData) -> int | None:
    found = [lv for lv in run.levels if lv > 0 and level_verdict(run, lv)[1]]
    return max(found, key=lambda lv: run.sparsity[lv]) if found else None



# -- sections: plain data for templates/report.html.j2 (which escapes every string) -------------


def headline(run: RunData) -> dict[str, Any]:
    """What the headline says: the state (no units / no dense / verdicts) and its numbers."""
    if not run.records:
        return {"state": "empty"}
    dense, _, n = run.stat("ticket", 0)
    if n == 0:
        return {"state": "no_dense"}
    best = largest_matching_level(run)
    out: dict[str, Any] = {"state": "verdicts", "metric": run.metric, "dense": fmt(dense), "best": best,
                           "tolerance": f"{run.tolerance:g}"}
    if best is not None:
        out.update(sparsity=plots.pct(run.sparsity[best]), remaining=plots.pct(run.remaining(best)),
                   value=fmt(run.stat("ticket", best)[0]))
    out["wins"] = win_summary(run, run_verdict(run))
    return out


def control_row(run: RunData, control: str, level: int, ticket: dict[int, float]) -> dict[str, Any] | None:
    """One control's row of a level table (None when it has no finished unit there)."""
    vals = run.values(control, level)
    if not vals:
        return None
    c_mean, c_sd, c_n = run.stat(control, level)
    d = paired(ticket, vals, run.higher_is_better)
    role = run.role(control)
    row: dict[str, Any] = {"control": control, "color": plots.control_color(control), "n": c_n, "mean": c_mean,
                           "mean_text": mean_text(c_mean, c_sd, c_n), "diff": d,
                           "kind": "random control" if role == "random" else role}
    if d is not None:
        row["ci"] = d.interval_text(fmt)
        row["per_seed"] = ", ".join(f"{s}: {fmt(x)}" for s, x in zip(d.seeds, d.diffs))
        if run.judged:
            row["verdict"], row["better"] = row_verdict(d, run.higher_is_better, run_verdict(run).needed)
        else:
            row["verdict"], row["better"] = "no better direction", False
    return row


def level_tables(run: RunData) -> list[dict[str, Any]]:
    dense, _, dense_n = run.stat("ticket", 0)
    out = []
    for level in run.levels:
        t_mean, t_sd, t_n = run.stat("ticket", level)
        winning, matching = level_verdict(run, level)
        ticket = run.values("ticket", level)
        rows = [control_row(run, c, level, ticket) for c in run.seen_controls if c != "ticket"]
        out.append({
            "level": level, "sparsity": plots.pct(run.sparsity[level]), "remaining": plots.pct(run.remaining(level)),
            "winning": winning, "matching": matching, "ticket_n": t_n, "ticket_mean": t_mean,
            "win_note": win_note(run_verdict(run), level) if level else "",
            "ticket_text": mean_text(t_mean, t_sd, t_n),
            "vs_dense": "" if level == 0 or not dense_n else f"vs dense {fmt(dense)}: {fmt(t_mean - dense)}",
            "rows": [r for r in rows if r is not None],
        })
    return out


def layer_sections(run: RunData, plot_dir: Path) -> dict[str, Any] | None:
    masks = run.ticket_masks()
    if not masks:
        return None
    first = next(iter(next(iter(masks.values())).values()))
    named = run.layer_roles(first)
    layers = L.ordered_layers(first, named)
    sizes = {n: first[n].numel() for n in first}
    per_layer = L.remaining_per_layer(masks)
    heatmap = png_src(plots.save_png(plots.layer_heatmap(run, layers, per_layer, sizes), plot_dir / "layers.png"))
    profiles = [(lv, L.remaining_per_role(next(iter(by.values())), named)) for lv, by in masks.items()]
    roles = L.in_role_order({r for _, p in profiles for r in p})
    role_rows = [{"level": lv, "remaining": plots.pct(run.remaining(lv)),
                  "cells": [f"{100 * p[r]:.1f}%" if r in p else None for r in roles]} for lv, p in profiles]
    jac = L.jaccard_across_seeds(masks)
    stability = (png_src(plots.save_png(plots.jaccard_figure(run, layers, jac), plot_dir / "stability.png"))
                 if jac else None)
    inputs = input_section(run, masks, plot_dir) if run.facts.input_names is not None else None
    return {"heatmap": heatmap, "roles": roles, "role_rows": role_rows, "stability": stability, "inputs": inputs}


def input_section(run: RunData, masks: dict, plot_dir: Path) -> dict[str, Any]:
    names, dead = L.pruned_inputs(masks)
    if not names:
        return {"names": []}
    first = next(iter(next(iter(masks.values())).values()))
    n_obs = first[names[0]].shape[1]
    given = run.facts.input_names or []
    obs = list(given) if len(given) == n_obs else [f"obs[{i}]" for i in range(n_obs)]
    alive = {lv: [sum(L.input_columns_alive(m, names)[d] for m in by.values()) / len(by) for d in range(n_obs)]
             for lv, by in masks.items()}
    label = names[0] if len(names) == 1 else f"{len(names)} input layers"
    figure = png_src(plots.save_png(plots.input_dims_figure(run, label, alive, obs), plot_dir / "inputs.png"))
    rows = [{"level": lv, "remaining": plots.pct(run.remaining(lv)),
             "dead": "; ".join(f"seed {s}: {', '.join(obs[d] for d in ds) or 'none'}" for s, ds in sorted(by.items()))}
            for lv, by in sorted(dead.items())]
    return {"names": names, "n_obs": n_obs, "figure": figure, "rows": rows}


# -- entry point ---------------------------------------------------------------------------------


def build_report(run: RunData) -> str:
    plot_dir = run.root / "plots"
    refuse_links_below(run.root, plot_dir)  # someone else's run directory: plots/ may be a planted link
    context: dict[str, Any] = {"run": run, "header": header(run), "headline": headline(run), "sections": [],
                               "interval_label": INTERVAL_LABEL}
    context["degenerate"] = degenerate_section(run)
    if run.records:
        context["metric_plot"] = png_src(plots.save_png(plots.metric_vs_sparsity(run),
                                                        plot_dir / "metric_vs_sparsity.png"))
        context["levels"] = level_tables(run)
        context["curves"] = curves_section(run, plot_dir)
        context["sections"] = [other_metrics_section(run, plot_dir, level_verdict), early_bird_section(run),
                               td_section(run, plot_dir), compute_section(run)]
        context["layers"] = layer_sections(run, plot_dir)
    context["instability"] = instability_section(run.root, plot_dir)
    return str(render("report.html.j2", title=f"{context['header']['title']} — multiticket report", **context))


def write_report(run_dir: Path, metric: str | None = None) -> Path:
    """Write ``report.html``, ``summary.csv`` and ``plots/*.png`` into ``run_dir``; return the HTML path.
    ``metric`` heads the report (default: the task's ``report.metric``, else the primary metric).

    Raises UserError when ``run_dir`` is not a run directory, a file in it is malformed, or
    ``metric`` is not one the units recorded.
    """
    return save_report(load_run(run_dir, metric))


def save_report(run: RunData) -> Path:
    """Write the report of a loaded run view (its metric heads it) into its run directory."""
    text = build_report(run)
    path = run.root / "report.html"
    write_inside(run.root, path, lambda tmp: tmp.write_text(text))
    return path
