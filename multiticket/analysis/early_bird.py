"""The report's early-bird section: the ``early_bird`` chain against the IMP ticket, level by level.

Both chains live in the same run directory, so at each level they share seed, sparsity, rewind
point and training budget; the table sets their metrics side by side with the compute each search
needed to *find* that level's mask (steps trained, as recorded by :mod:`multiticket.core.imp`):
IMP needs the dense run plus L-1 full levels, T + (L-1)(T-k); the early-bird chain needs the
dense run up to its stop e_0 plus e_i - k per earlier level. Training the found ticket (T - k)
costs the same in both, so the fraction including it is shown as well.
"""

from __future__ import annotations

import math
from typing import Any

from markupsafe import Markup

from multiticket.analysis import plots
from multiticket.analysis.htmlpage import render
from multiticket.analysis.paired import paired
from multiticket.analysis.rundata import RunData
from multiticket.analysis.stats import fmt, mean_std

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
        retrain = float(recs[0]["stop_step"] - recs[0]["start_step"])
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
            "diff": paired(run.values("ticket", level), run.values(CONTROL, level), run.higher_is_better),
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


def _mean(stat: tuple[float, float, int]) -> str:
    m, s, n = stat
    if n == 0:
        return "–"
    return fmt(m) if n == 1 else f"{fmt(m)} ± {fmt(s, 2)} (n={n})"


def _view(r: dict[str, Any]) -> dict[str, Any]:
    """The table cells of one level row, as text and exact values."""
    d = r["diff"]
    return {
        **r, "sparsity": plots.pct(r["sparsity"]), "ticket_text": _mean(r["ticket"]), "eb_text": _mean(r["early_bird"]),
        "diff_value": d.diff if d else math.nan,
        "diff_text": "–" if d is None else fmt(d.diff) + (f" {d.interval_text(fmt)}" if d.has_interval else "")
        + ("" if d is None or d.p_better is None else f" (p better = {d.p_better:.3g}, p worse = {d.p_worse:.3g})"),
        "stops": ("dense run: " if r["level"] == 1 else f"L{r['level'] - 1}: ") + _stops(r["found_at"]),
        "search_text": f"{r['search']:.0f} / {r['imp']:.0f}",
    }


def early_bird_section(run: RunData) -> Markup:
    """HTML of the section (rendered from ``templates/early_bird.html.j2``), or "" when the run
    has no finished early-bird unit."""
    rows = early_bird_rows(run)
    if not rows:
        return Markup("")
    return render("early_bird.html.j2", first=rows[0], rows=[_view(r) for r in rows], run=run, control=CONTROL)
