"""``report.html``: one self-contained page per run directory (plots embedded, CSS inline).

Sections: header (what ran, what is missing), headline (largest sparsity at which the ticket
still matches dense), metric vs sparsity, ticket vs each control per level with bootstrap
intervals and winning/matching verdicts, per-layer remaining fractions, mask stability across
seeds, and for RL the observation dimensions the input layer has cut off. Works on a partial
run: everything is computed from finished units only. See docs/report.md for how to read it.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

from multiticket.analysis import layers as L
from multiticket.analysis import plots
from multiticket.analysis.early_bird import early_bird_section
from multiticket.analysis.htmlpage import CSS, img, num_cell, page
from multiticket.analysis.instability import instability_section
from multiticket.analysis.rundata import RANDOM_CONTROLS, RunData, load_run
from multiticket.analysis.stats import better, bootstrap_diff, fmt, matches
from multiticket.analysis.targeted import td_section
from multiticket.core.store import atomic_write_text

esc = html.escape


def mean_text(m: float, s: float, n: int) -> str:
    return fmt(m) if n == 1 else f"{fmt(m)} ± {fmt(s, 2)}"


# -- verdicts ------------------------------------------------------------------------------------


def level_verdict(run: RunData, level: int) -> tuple[bool | None, bool | None]:
    """(winning, matching) of the ticket at ``level`` from seed means; None when undecidable."""
    t, _, n = run.stat("ticket", level)
    if n == 0:
        return None, None
    randoms = [c for c in run.seen_controls if c in RANDOM_CONTROLS and run.stat(c, level)[2] > 0]
    winning = all(better(t, run.stat(c, level)[0], run.higher_is_better) for c in randoms) if randoms else None
    dense = run.dense
    matching = None if math.isnan(dense) else matches(t, dense, run.tolerance, run.higher_is_better)
    return winning, matching


def largest_matching_level(run: RunData) -> int | None:
    found = [lv for lv in run.levels if lv > 0 and level_verdict(run, lv)[1]]
    return max(found, key=lambda lv: run.sparsity[lv]) if found else None


def mark(flag: bool | None) -> str:
    return {True: '<span class="yes">✓ yes</span>', False: '<span class="no">✗ no</span>', None: "n/a"}[flag]


# -- sections ------------------------------------------------------------------------------------


def header(run: RunData) -> str:
    finished_seeds = sorted({r["seed"] for r in run.records})
    planned = run.planned_units()
    done_levels = [
        lv for lv in range(1, run.planned_levels + 1)
        if not any(u.level == lv for u in run.missing)
    ]
    rows = [
        ("task", run.task), ("domain", run.domain), ("run directory", str(run.root)),
        ("config hash", run.config_hash),
        ("seeds", f"{', '.join(map(str, run.seeds))} (finished units from {len(finished_seeds)})"),
        ("controls", ", ".join(["ticket", *run.controls])),
        ("levels finished / planned", f"{len(done_levels)} / {run.planned_levels}"),
        ("units finished / planned", f"{len(planned) - len(run.missing)} / {len(planned)}"),
        ("primary metric", f"{run.metric or '–'} ({run.direction})" if run.records else "–"),
        ("matching tolerance", f"{run.tolerance:g} × |dense metric| (report.tolerance)"),
    ]
    transfer = run.config.get("transfer")
    if isinstance(transfer, dict):  # a run made by 'multiticket transfer' (docs/transfer-and-stability.md)
        rows.insert(1, ("transferred from", f"{transfer.get('source')}: 'ticket' = source mask + source rewind "
                        "weights, 'transfer_mask' = source mask + this task's init, level 0 = this task's dense"))
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    out = f'<table class="meta">{body}</table>'
    if run.missing:
        items = "".join(f"<li>{esc(line)}</li>" for line in run.missing_lines())
        out += (f'<div class="warn"><b>Run in progress or incomplete — missing: {len(run.missing)} unit(s).</b> '
                f"Everything below uses finished units only.<ul>{items}</ul></div>")
    return out


def headline(run: RunData) -> str:
    if not run.records:
        return '<p class="headline">No unit of this run has finished yet.</p>'
    dense, _, n = run.stat("ticket", 0)
    if n == 0:
        return '<p class="headline">The dense network (ticket level 0) has not finished yet: no verdicts.</p>'
    best = largest_matching_level(run)
    if best is None:
        text = (f"The ticket matches the dense network ({run.metric} {fmt(dense)}) at <b>no</b> pruned level "
                f"finished so far (tolerance {run.tolerance:g} × |dense|).")
    else:
        text = (f"The ticket still matches dense up to <b class='big'>{plots.pct(run.sparsity[best])} sparsity</b> "
                f"(level {best}, {plots.pct(run.remaining(best))} of prunable weights remaining; "
                f"{run.metric} {fmt(run.stat('ticket', best)[0])} vs dense {fmt(dense)}, "
                f"tolerance {run.tolerance:g} × |dense|).")
    winning = [lv for lv in run.levels if lv > 0 and level_verdict(run, lv)[0]]
    judged = [lv for lv in run.levels if lv > 0 and level_verdict(run, lv)[0] is not None]
    if judged:
        text += f" It beats every random control at {len(winning)} of {len(judged)} pruned level(s)"
        text += f" ({', '.join(f'L{lv}' for lv in winning)})." if winning else "."
    return f'<p class="headline">{text}</p>'


def level_tables(run: RunData) -> str:
    parts = []
    dense, dense_sd, dense_n = run.stat("ticket", 0)
    for level in run.levels:
        ticket = run.values("ticket", level)
        t_mean, t_sd, t_n = run.stat("ticket", level)
        winning, matching = level_verdict(run, level)
        title = (f"Level {level} · sparsity {plots.pct(run.sparsity[level])} · "
                 f"remaining {plots.pct(run.remaining(level))}")
        if level == 0:
            title += " · dense network"
        else:
            title += f" · winning {mark(winning)} · matching {mark(matching)}"
        rows = []
        if t_n:
            vs_dense = "" if level == 0 or not dense_n else f"vs dense {fmt(dense)}: {fmt(t_mean - dense)}"
            rows.append(
                f'<tr class="ticket"><td>ticket</td><td>{t_n}</td>'
                + num_cell(t_mean, mean_text(t_mean, t_sd, t_n), control="ticket", level=level, kind="mean")
                + f'<td colspan="3" class="note">{esc(vs_dense)}</td></tr>'
            )
        for control in run.seen_controls:
            if control == "ticket":
                continue
            vals = run.values(control, level)
            if not vals:
                continue
            c_mean, c_sd, c_n = run.stat(control, level)
            d = bootstrap_diff(ticket, vals)
            kind = "random control" if control in RANDOM_CONTROLS else "ablation"
            cells = (f'<tr><td><span class="swatch" style="background:{plots.control_color(control)}"></span>'
                     f'{esc(control)} <span class="kind">{kind}</span></td><td>{c_n}</td>'
                     + num_cell(c_mean, mean_text(c_mean, c_sd, c_n), control=control, level=level, kind="mean"))
            if d is None:
                cells += '<td colspan="3" class="note">no ticket unit at this level yet</td>'
            else:
                ci = (f"[{fmt(d.low)}, {fmt(d.high)}]" if d.has_interval
                      else f"n={min(d.n_ticket, d.n_control)}: no interval")
                t_better = better(d.ticket, d.control, run.higher_is_better)
                verdict = ("ticket better" if t_better else "ticket not better") + (
                    " (CI excludes 0)" if d.excludes_zero() else "")
                cells += (num_cell(d.diff, fmt(d.diff), control=control, level=level, kind="diff")
                          + f'<td class="num">{esc(ci)}</td>'
                          + f'<td class="{"yes" if t_better else "no"}">{esc(verdict)}</td>')
            rows.append(cells + "</tr>")
        head = ("<tr><th>control</th><th>seeds</th><th>mean ± std</th><th>ticket − control</th>"
                "<th>bootstrap 95% CI</th><th>verdict</th></tr>")
        parts.append(f'<h3>{title}</h3><table class="levels">{head}{"".join(rows)}</table>')
    return "".join(parts)


def layer_sections(run: RunData, plot_dir: Path) -> str:
    masks = run.ticket_masks()
    if not masks:
        return "<p>No finished ticket mask yet.</p>"
    first = next(iter(next(iter(masks.values())).values()))
    layers = L.ordered_layers(first, run.domain)
    sizes = {n: first[n].numel() for n in first}
    out = ["<h2>Where the ticket keeps its weights</h2>",
           "<p>Each cell is the fraction of a layer's weights the ticket keeps at a level (mean over seeds); "
           "layers are grouped by role (input = first prunable layer, output = last; NLP roles from the "
           "parameter names). Numbers in brackets are parameter counts.</p>"]
    per_layer = L.remaining_per_layer(masks)
    out.append(img(plots.save_png(plots.layer_heatmap(run, layers, per_layer, sizes), plot_dir / "layers.png"),
                   "remaining fraction per layer"))
    role_rows = []
    for level, by_seed in masks.items():
        profile = L.remaining_per_role(next(iter(by_seed.values())), run.domain)
        role_rows.append((level, profile))
    all_roles = [r for r in L.ROLE_ORDER if any(r in p for _, p in role_rows)]
    head = "".join(f"<th>{esc(r)}</th>" for r in all_roles)
    body = "".join(
        f"<tr><td>L{lv}</td><td>{plots.pct(run.remaining(lv))}</td>"
        + "".join(f'<td class="num">{100 * p[r]:.1f}%</td>' if r in p else "<td>–</td>" for r in all_roles)
        + "</tr>"
        for lv, p in role_rows
    )
    out.append(f'<table class="levels"><tr><th>level</th><th>overall</th>{head}</tr>{body}</table>'
               f'<p class="note">Remaining fraction per role, all parameters of a role pooled (first finished '
               f'seed).</p>')
    out.append("<h2>Mask stability across seeds</h2>")
    jac = L.jaccard_across_seeds(masks)
    if not jac:
        out.append("<p>Needs finished ticket masks from at least two seeds at some level; this run has fewer.</p>")
    else:
        out.append("<p>Jaccard index |A ∩ B| / |A ∪ B| of the alive weights of two seeds' tickets, averaged over "
                   "seed pairs. 1 = the same weights survive in every seed; the dashed line is what two "
                   "independent random masks of the same density would share, d / (2 − d).</p>")
        out.append(img(plots.save_png(plots.jaccard_figure(run, layers, jac), plot_dir / "stability.png"),
                       "mask stability across seeds"))
    if run.domain == "rl":
        out.append(input_section(run, masks, plot_dir))
    return "".join(out)


def input_section(run: RunData, masks: dict, plot_dir: Path) -> str:
    out = ["<h2>Observation dimensions cut off by the input layer</h2>"]
    names, dead = L.pruned_inputs(masks)
    if not names:
        return out[0] + ("<p>The network reads its input with a convolution (image observations), so no "
                         "weight column corresponds to one observation dimension.</p>")
    first = next(iter(next(iter(masks.values())).values()))
    n_obs = first[names[0]].shape[1]
    section = run.config.get(run.domain) or {}
    given = section.get("obs_names") if isinstance(section, dict) else None
    obs = [str(x) for x in given] if isinstance(given, list) and len(given) == n_obs else [
        f"obs[{i}]" for i in range(n_obs)]
    layer_list = ", ".join(f"<code>{esc(n)}</code>" for n in names)
    out.append(f"<p>Input layer(s): {layer_list} ({n_obs} observation dimensions). A dimension whose whole "
               "column of weights is pruned in every input layer no longer reaches the network: the ticket has "
               "learnt to ignore it (Vischer et al., minimal task representations).</p>")
    alive = {lv: [sum(L.input_columns_alive(m, names)[d] for m in by.values()) / len(by) for d in range(n_obs)]
             for lv, by in masks.items()}
    label = names[0] if len(names) == 1 else f"{len(names)} input layers"
    out.append(img(plots.save_png(plots.input_dims_figure(run, label, alive, obs), plot_dir / "inputs.png"),
                   "input columns alive"))
    rows = "".join(
        f"<tr><td>L{lv}</td><td>{plots.pct(run.remaining(lv))}</td><td>"
        + "; ".join(f"seed {s}: {', '.join(obs[d] for d in ds) or 'none'}" for s, ds in sorted(by.items()))
        + "</td></tr>"
        for lv, by in sorted(dead.items())
    )
    out.append(f'<table class="levels"><tr><th>level</th><th>remaining</th><th>dimensions fully pruned</th></tr>'
               f"{rows}</table>")
    return "".join(out)


# -- entry point ---------------------------------------------------------------------------------


def build_report(run: RunData) -> str:
    plot_dir = run.root / "plots"
    body = [f"<h1>{esc(run.task)} <span class='sub'>lottery-ticket report</span></h1>", header(run),
            headline(run)]
    if run.records:
        fig = plots.metric_vs_sparsity(run)
        body += ["<h2>Metric vs sparsity</h2>",
                 img(plots.save_png(fig, plot_dir / "metric_vs_sparsity.png"), "metric vs sparsity"),
                 f"<p class='note'>Lines: mean over seeds; bands: ± one standard deviation; dashed: the dense "
                 f"network; grey band: within the matching tolerance. {esc(run.metric)}: {run.direction}.</p>",
                 "<h2>Ticket vs controls, level by level</h2>",
                 "<p>Winning: the ticket's mean beats every random control (random_reinit, random_mask, "
                 "random_mask_global, permuted_*) at that level. Matching: the ticket is no worse than dense by more "
                 f"than {run.tolerance:g} × |dense|. Differences are ticket − control with a bootstrap 95% interval "
                 "over seeds (paired by seed, 5000 resamples, fixed RNG seed); with one seed no interval is "
                 "given.</p>",
                 level_tables(run),
                 early_bird_section(run),
                 td_section(run, plot_dir),
                 layer_sections(run, plot_dir)]
    body.append(instability_section(run.root, plot_dir))
    body.append(f"<p class='foot'>Numbers: <code>{esc(str(run.summary_path.name))}</code> next to this file "
                "(one row per seed, control, level and metric). Plots also in <code>plots/</code>.</p>")
    return page(f"{run.task} — multiticket report", "".join(body), CSS)


def write_report(run_dir: Path) -> Path:
    """Write ``report.html``, ``summary.csv`` and ``plots/*.png`` into ``run_dir``; return the HTML path.

    Raises UserError when ``run_dir`` is not a run directory.
    """
    run = load_run(run_dir)
    text = build_report(run)
    path = Path(run_dir) / "report.html"
    atomic_write_text(path, text)
    return path
