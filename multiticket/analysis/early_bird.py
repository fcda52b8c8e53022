"""The report's early-bird section: the ``early_bird`` chain against the IMP ticket, level by level.

Both chains live in the same run directory, so at each level they share seed, sparsity, rewind
point and training budget; the table sets their metrics side by side with the compute each search
needed to *find* that level's mask (steps trained, as recorded by :mod:`multiticket.core.imp`):
IMP needs the dense run plus L-1 full levels, T + (L-1)(T-k); the early-bird chain needs the
dense run up to its stop e_0 plus e_i - k per earlier level. Training the found ticket (T - k)
costs the same in both, so the fraction including it is shown as well.
"""

from __future__ import annotations

import html
import math
from typing import Any

from multiticket.analysis import plots
from multiticket.analysis.rundata import RunData
from multiticket.analysis.stats import bootstrap_diff, fmt, mean_std

esc = html.escape
CONTROL = "early_bird"


def early_bird_rows(run: RunData) -> list[dict[str, Any]]:
    """One dict per level with an early-bird unit: metrics of both chains (mean, std, n), the
    early-bird stop steps, search compute of both and their ratio, and the masks' overlap."""
    by_level: dict[int, list[dict[str, Any]]] = {}
    info_of: dict[tuple[int, int], dict[str, Any]] = {}
    for r in run.records:
        if r["control"] == CONTROL and isinstance(r.get("early_bird"), dict):
            by_level.setdefault(int(r["level"]), []).append(r)
            info_of[(int(r["seed"]), int(r["level"]))] = r["early_bird"]
    rows = []
    for level, recs in sorted(by_level.items()):
        infos = [r["early_bird"] for r in recs]
        search = mean_std([float(i["search_steps"]) for i in infos])[0]
        imp = float(infos[0]["imp_search_steps"])
        retrain = float(recs[0]["stop_step"]) - float(recs[0]["start_step"])
        # the step at which this level's mask stabilised: the dense search's stop for level 1,
        # the previous early-bird level's stop otherwise (None: it never did, T was used)
        found = []
        for r in recs:
            prev = info_of.get((int(r["seed"]), level - 1), {}) if level > 1 else r["early_bird"]
            found.append(prev.get("dense_stopped_at" if level == 1 else "stopped_at"))
        overlaps = []
        for r in recs:
            eb_mask, ticket_mask = run.mask(r["seed"], level, CONTROL), run.mask(r["seed"], level)
            if eb_mask is not None and ticket_mask is not None:
                overlaps.append(eb_mask.jaccard(ticket_mask))
        rows.append({
            "level": level,
            "sparsity": float(recs[0]["sparsity"]),
            "ticket": run.stat("ticket", level),
            "early_bird": run.stat(CONTROL, level),
            "diff": bootstrap_diff(run.values("ticket", level), run.values(CONTROL, level)),
            "found_at": found,
            "search": search,
            "imp": imp,
            "fraction": search / imp if imp else math.nan,
            "fraction_with_training": (search + retrain) / (imp + retrain) if imp + retrain else math.nan,
            "jaccard": mean_std(overlaps)[0] if overlaps else math.nan,
            "interval": infos[0].get("interval"), "window": infos[0].get("window"),
            "threshold": infos[0].get("threshold"),
        })
    return rows


def _stops(values: list[int | None]) -> str:
    return ", ".join("never" if v is None else str(v) for v in values) or "–"


def _cell(value: float, text: str, **data: object) -> str:
    attrs = "".join(f' data-{k}="{esc(str(v))}"' for k, v in data.items())
    return f'<td class="num"{attrs} data-value="{value!r}">{esc(text)}</td>'


def _mean(stat: tuple[float, float, int]) -> str:
    m, s, n = stat
    if n == 0:
        return "–"
    return fmt(m) if n == 1 else f"{fmt(m)} ± {fmt(s, 2)} (n={n})"


def early_bird_section(run: RunData) -> str:
    """HTML of the section, or "" when the run has no finished early-bird unit."""
    rows = early_bird_rows(run)
    if not rows:
        return ""
    first = rows[0]
    out = ["<h2>Early-bird tickets vs full IMP</h2>",
           f"<p>The <code>early_bird</code> chain draws each level's mask as soon as it has stabilised "
           f"(You et al. 2020): every {first['interval']} steps it computes the mask the next pruning step "
           f"would produce, and once the newest differs from each of the previous {first['window'] - 1} by "
           f"less than {first['threshold']:g} (Hamming distance over the weights alive) it keeps the weights "
           "of that step for the next level. Level 1 stops its dense search there; every level is then "
           "trained to T like the IMP ticket, so the two columns of metrics compare tickets at the same "
           "sparsity under the same budget. <i>Search compute</i> is the number of steps trained to find "
           "the level's mask: IMP needs T + (L−1)(T−k); the early-bird chain e₀ + Σ(eᵢ − k) over the "
           "earlier levels' stop steps eᵢ.</p>"]
    head = ("<tr><th>level</th><th>sparsity</th><th>ticket (IMP)</th><th>early-bird ticket</th>"
            "<th>ticket − early-bird</th><th>mask Jaccard</th><th>mask stable at step</th>"
            "<th>search steps: early-bird / IMP</th><th>compute fraction</th>"
            "<th>incl. training the ticket</th></tr>")
    body = []
    for r in rows:
        d = r["diff"]
        diff = "–" if d is None else fmt(d.diff) + (
            f" [{fmt(d.low)}, {fmt(d.high)}]" if d.has_interval else "")
        stops = ("dense run: " if r["level"] == 1 else f"L{r['level'] - 1}: ") + _stops(r["found_at"])
        body.append(
            f"<tr><td>L{r['level']}</td><td>{plots.pct(r['sparsity'])}</td>"
            + _cell(r["ticket"][0], _mean(r["ticket"]), control="ticket", level=r["level"], kind="mean")
            + _cell(r["early_bird"][0], _mean(r["early_bird"]), control=CONTROL, level=r["level"], kind="mean")
            + _cell(d.diff if d else math.nan, diff, level=r["level"], kind="diff")
            + _cell(r["jaccard"], fmt(r["jaccard"], 3), level=r["level"], kind="jaccard")
            + f"<td>{esc(stops)}</td>"
            + f'<td class="num">{r["search"]:.0f} / {r["imp"]:.0f}</td>'
            + _cell(r["fraction"], f"{r['fraction']:.3f}×", level=r["level"], kind="compute_fraction")
            + _cell(r["fraction_with_training"], f"{r['fraction_with_training']:.3f}×", level=r["level"],
                    kind="compute_fraction_with_training")
            + "</tr>"
        )
    out.append(f'<table class="levels">{head}{"".join(body)}</table>')
    out.append(f"<p class='note'>{esc(run.metric)}: {run.direction}; mean over seeds (± std when n &gt; 1); "
               "ticket − early-bird with a bootstrap 95% interval when both have two or more seeds. Mask stable at: "
               "the step of the run this level's mask was drawn from at which it stabilised (one per seed; "
               "“never”: not before T, so that run saved nothing). Mask Jaccard: "
               "overlap of the alive weights of the two tickets at that level (same seed).</p>")
    return "".join(out)
