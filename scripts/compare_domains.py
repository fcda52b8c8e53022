"""The cross-domain comparison of issue #21: tickets in RL agents and in language models on common axes.

Builds ``multiticket compare``'s page (``comparison.html``: performance normalised to dense
against sparsity, the winning margin over the best random control, layer-role profiles at
matched sparsity) from finished study runs, and writes the numbers behind it as ``domains.md`` /
``domains.json``, plus ``readme-block.md``: the block for the top of the README's Results
section (figures, the table, and the two questions it answers with the computed answers).

    .venv/bin/python scripts/compare_domains.py --studies runs/yu2019 runs/chen2020 --out runs/domains \
        --publish docs/img      # copies the three figures to docs/img/domains-*.png for the README
    .venv/bin/python scripts/compare_domains.py RUN_DIR RUN_DIR ... --out runs/domains --sparsity 0.6

``--studies`` takes the output folders of ``scripts/reproduce_yu2019.py`` and
``scripts/reproduce_chen2020.py`` and picks, from their ``results.json``, the runs of the
cross-domain figure: CartPole and Acrobot A2C, LunarLander PPO, the Austen LSTM LM and MiniLM
(whichever exist). What it answers, per run:

- *what is pruned first*: the remaining fraction per layer role at the first pruning level; the
  role furthest below the overall fraction is pruned hardest (roles:
  :mod:`multiticket.analysis.layers`; input / hidden / output in RL by position, attention
  query / key / value / output, feed-forward intermediate / output and pooler in transformers,
  LSTM input-to-hidden and hidden-to-hidden);
- *does the ticket's advantage grow with sparsity*: the winning margin (normalised ticket − best
  random control) at the shallowest and the deepest level with a random control, and its
  least-squares slope per 10 % of sparsity.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: study parts of the cross-domain figure (part keys of studies/yu2019.yaml and studies/chen2020.yaml), in figure order
FIGURE_PARTS = ("cartpole", "acrobot", "lunarlander-ppo", "lstm", "minilm")


def study_runs(folders: Sequence[Path]) -> list[Path]:
    """The run directories of the figure's parts in study output folders (their ``results.json``)."""
    from multiticket.errors import UserError

    found: list[Path] = []
    for folder in folders:
        path = Path(folder) / "results.json"
        try:
            res = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"--studies: cannot read {path}: {exc}") from None
        if not isinstance(res, dict):
            raise UserError(f"--studies: {path} is not a results file")
        rels: list[str] = []
        if isinstance(res.get("parts"), dict):  # a study's results (both scripts)
            for key in FIGURE_PARTS:
                runs = (res["parts"].get(key) or {}).get("runs") or []
                rels += [r["run_dir"] for r in runs[:1] if isinstance(r, dict) and isinstance(r.get("run_dir"), str)]
        elif isinstance(res.get("run_dir"), str):  # reproduce_chen2020's results before studies/
            rels.append(res["run_dir"])
        found += [Path(folder) / rel for rel in rels if (Path(folder) / rel / "config.yaml").is_file()]
    return found


def _slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys against xs (NaN with fewer than two points)."""
    pts = [(x, y) for x, y in zip(xs, ys) if not math.isnan(y)]
    if len(pts) < 2:
        return math.nan
    mx, my = sum(x for x, _ in pts) / len(pts), sum(y for _, y in pts) / len(pts)
    var = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / var if var else math.nan


def run_numbers(series: Any, target: float) -> dict[str, Any]:
    """One run's row of the comparison: dense, per-level normalised values, margin trend, roles."""
    from multiticket.analysis import layers as L
    from multiticket.analysis.compare import role_profile

    run = series.run
    sparsity = [1.0 - r for r in series.remaining]
    levels = [{"level": lv, "sparsity": sp, "ticket": t, "ticket_sd": sd, "best_random": b,
               "best_random_control": name or None, "margin": t - b, "flagged": flag or None,
               "control_flagged": cflag or None, "anchored_ticket": at, "anchored_margin": am}
              for lv, sp, t, sd, b, name, flag, cflag, at, am in zip(
                  series.levels, sparsity, series.ticket, series.ticket_sd, series.best_random,
                  series.best_random_name, series.flagged, series.control_flagged, series.anchored,
                  series.anchored_margin)]
    # a degenerate level (a collapsed ticket, controls identical to it) says nothing about the mask
    with_random = [row for row in levels if row["level"] > 0 and not math.isnan(row["margin"]) and not row["flagged"]]
    out: dict[str, Any] = {
        "label": series.label, "run_dir": str(run.root), "domain": run.domain, "metric": run.metric,
        "higher_is_better": run.higher_is_better, "dense": run.dense, "seeds": run.seeds, "levels": levels,
        "flagged_levels": [row["level"] for row in levels if row["flagged"]],
        # judged levels whose best random control is itself at a trivial baseline: control -> levels
        "degenerate_controls": {c: [row["level"] for row in with_random if row["control_flagged"]
                                    and row["best_random_control"] == c]
                                for c in sorted({row["best_random_control"] for row in with_random
                                                 if row["control_flagged"]})},
        "margin_first": with_random[0]["margin"] if with_random else None,
        "margin_deepest": with_random[-1]["margin"] if with_random else None,
        "margin_slope_per_10pct": 0.1 * _slope([r["sparsity"] for r in with_random], [r["margin"] for r in with_random]),
        "baseline": series.baseline or None,
        "anchored_margin_first": with_random[0]["anchored_margin"] if with_random else None,
        "anchored_margin_deepest": with_random[-1]["anchored_margin"] if with_random else None,
        "anchored_slope_per_10pct": 0.1 * _slope([r["sparsity"] for r in with_random],
                                                 [r["anchored_margin"] for r in with_random]),
    }
    masks = run.ticket_masks()
    first = min((lv for lv in masks if lv > 0), default=None)
    if first is not None:
        profiles = [L.remaining_per_role(m, run.layer_roles(m)) for m in masks[first].values()]
        first_roles = {r: sum(p[r] for p in profiles if r in p) / len(profiles) for r in profiles[0]}
        out["first_level"] = {"level": first, "sparsity": run.sparsity[first], "roles": first_roles,
                              "pruned_hardest": min(first_roles, key=lambda r: first_roles[r])}
    matched = role_profile(run, target)
    if matched is not None:
        level, roles = matched
        grouped = [L.remaining_per_role(m, run.layer_roles(m), grouped=True) for m in masks[level].values()]
        out["matched"] = {"level": level, "sparsity": run.sparsity[level], "roles": roles,
                          "families": {r: sum(g[r] for g in grouped) / len(grouped) for r in grouped[0]}}
    return out


def _pct(x: float | None) -> str:
    return "–" if x is None or math.isnan(x) else f"{100 * x:.1f} %"


def _num(x: float | None) -> str:
    from multiticket.analysis.stats import fmt

    return fmt(x, 3) if x is not None else "–"


def domains_md(rows: list[dict[str, Any]], target: float, html: str) -> str:
    """The numbers behind the figure, and the README block's answers."""
    lines = ["| run | domain | metric (dense) | levels | margin at the first level | at the deepest judged | "
             "slope per 10 % sparsity | degenerate levels (not judged) | pruned hardest first (remaining at level 1 "
             "vs overall) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        first = r.get("first_level")
        hardest = (f"{first['pruned_hardest']} ({_pct(first['roles'][first['pruned_hardest']])} vs "
                   f"{_pct(1 - first['sparsity'])})" if first else "–")
        deepest = r["levels"][-1]["sparsity"] if r["levels"] else None
        lines.append(f"| {r['label']} | {r['domain']} | {r['metric']} ({_num(r['dense'])}) | up to {_pct(deepest)} | "
                     f"{_num(r['margin_first'])} | {_num(r['margin_deepest'])} | {_num(r['margin_slope_per_10pct'])} "
                     f"| {_flagged(r)} | {hardest} |")
    lines += ["", "On the baseline-anchored scale (0 = the run's trivial baseline, 1 = dense; perplexity on logs):", "",
              "| run | trivial baseline | ticket at the deepest judged level | margin at the first level | at the deepest "
              "judged | slope per 10 % sparsity |", "|---|---|---|---|---|---|"]
    for r in rows:
        judged = [lv for lv in r["levels"] if lv["level"] > 0 and not lv["flagged"]]
        lines.append(f"| {r['label']} | {r['baseline'] or 'not measured'} | "
                     f"{_num(judged[-1]['anchored_ticket']) if judged else '–'} | {_num(r['anchored_margin_first'])} | "
                     f"{_num(r['anchored_margin_deepest'])} | {_num(r['anchored_slope_per_10pct'])} |")
    roles = [role for role in _role_order() if any(role in r.get("matched", {}).get("roles", {}) for r in rows)]
    lines += ["", f"Remaining fraction per layer role at the level nearest {_pct(target)} sparsity:", "",
              "| run | level (sparsity) | " + " | ".join(roles) + " |", "|---|---|" + "---|" * len(roles)]
    for r in rows:
        m = r.get("matched")
        if m:
            cells = [_pct(m["roles"][role]) if role in m["roles"] else "" for role in roles]
            lines.append(f"| {r['label']} | L{m['level']} ({_pct(m['sparsity'])}) | " + " | ".join(cells) + " |")
    lines += ["", f"Margin: normalised ticket − the best random control at the same level (1.0 = dense; > 0: the "
              f"ticket wins), over the levels that are not degenerate (a ticket at a trivial baseline, or every "
              f"control equal to it). Page: `{html}`."]
    degenerate = [f"{r['label']}: " + ", ".join(f"{c} at {_levels(lvs)}" for c, lvs in r["degenerate_controls"].items())
                  for r in rows if r.get("degenerate_controls")]
    if degenerate:
        lines.append(f"Where the best random control itself is at a trivial baseline ({'; '.join(degenerate)}), "
                     f"the margin says the ticket learns where a random network does not.")
    return "\n".join(lines)


def _nan(row: dict[str, Any]) -> bool:
    return math.isnan(row["margin_slope_per_10pct"])


def _levels(levels: list[int]) -> str:
    return "L" + ", L".join(map(str, levels))


def _flagged(row: dict[str, Any]) -> str:
    by_level = {lv["level"]: lv["sparsity"] for lv in row["levels"]}
    return ", ".join(f"L{lv} ({_pct(by_level[lv])})" for lv in row["flagged_levels"]) or "none"


def _role_order() -> tuple[str, ...]:
    from multiticket.analysis.layers import ROLE_ORDER

    return ROLE_ORDER


FIGURES = ("normalised", "margin", "anchored", "roles")


def publish(out: Path, folder: Path) -> dict[str, str]:
    """Copy the figures to ``folder/domains-<name>.png``; figure name -> its path."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in FIGURES:
        src = out / "plots" / f"{name}.png"
        if src.is_file():
            shutil.copyfile(src, folder / f"domains-{name}.png")
            paths[name] = str(folder / f"domains-{name}.png")
    return paths


def readme_block(rows: list[dict[str, Any]], target: float, table: str, figures: dict[str, str], command: str) -> str:
    """The block for the top of README Results; the sentences are computed, the reading is left to the author."""
    grows = _grows(rows, "margin_slope_per_10pct")
    first = "; ".join(f"{r['label']}: {r['first_level']['pruned_hardest']}" for r in rows if r.get("first_level"))
    return "\n".join([
        "### Tickets across domains", "",
        f"![ticket vs sparsity, normalised to dense]({figures.get('normalised', '')})", "",
        f"![winning margin over the best random control]({figures.get('margin', '')})", "",
        f"![ticket and best random control between the trivial baseline and dense]({figures.get('anchored', '')})", "",
        f"![layer-role profiles at ≈{_pct(target)} sparsity]({figures.get('roles', '')})", "",
        table, "",
        f"- **Pruned first** (the role furthest below the overall remaining fraction at level 1): {first or '–'}.",
        f"- **The ticket's advantage over random grows with sparsity** (positive margin slope over the levels not flagged degenerate) in: "
        f"{', '.join(grows) or 'none'}; not in: "
        f"{', '.join(r['label'] for r in rows if r['label'] not in grows and not _nan(r)) or 'none'}"
        f"{'; too few judged levels to tell: ' + ', '.join(r['label'] for r in rows if _nan(r)) if any(map(_nan, rows)) else ''}.",
        f"- **On the baseline-anchored scale** (0 = trivial baseline, 1 = dense) the margin grows with sparsity in: "
        f"{', '.join(_grows(rows, 'anchored_slope_per_10pct')) or 'none'}.",
        f"- Command: `{command}` (seconds; reads the finished runs).", ""])


def _grows(rows: list[dict[str, Any]], key: str) -> list[str]:
    """Runs whose margin slope under ``key`` is positive (a NaN slope: too few judged levels)."""
    return [r["label"] for r in rows if r.get(key) is not None and not math.isnan(r[key]) and r[key] > 0]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="compare_domains.py", description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="*", type=Path, help="run directories")
    p.add_argument("--studies", nargs="+", type=Path, default=[],
                   help="output folders of reproduce_yu2019.py / reproduce_chen2020.py (their results.json)")
    p.add_argument("--out", type=Path, default=Path("runs/domains"), help="output folder (default runs/domains)")
    p.add_argument("--sparsity", type=float, help="where to compare layer roles (default: the largest every run reached)")
    p.add_argument("--publish", type=Path, help="copy the figures here as domains-*.png (e.g. docs/img)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from multiticket.analysis.compare import comparison_series, render_comparison
    from multiticket.core.store import atomic_write_text
    from multiticket.errors import UserError

    args = build_parser().parse_args(argv)
    try:
        dirs = [*args.runs, *study_runs(args.studies)]
        if not dirs:
            raise UserError("compare_domains: no run directory given or found (give RUN_DIRs or --studies)")
        all_series = comparison_series(dirs)
        html = render_comparison(all_series, args.out, args.sparsity)
    except UserError as exc:
        print(f"compare_domains: error: {exc}", file=sys.stderr)
        return 2
    series = [s for s in all_series if s.run.records and s.levels]
    reached = [max(s.run.sparsity[lv] for lv in s.levels) for s in series]
    target = args.sparsity if args.sparsity is not None else min(reached, default=0.0)
    rows = [run_numbers(s, target) for s in series]
    table = domains_md(rows, target, str(html))
    atomic_write_text(args.out / "domains.json", json.dumps({"sparsity": target, "runs": rows}, indent=1,
                                                            default=str) + "\n")
    atomic_write_text(args.out / "domains.md", f"# Tickets across domains\n\n{table}\n")
    figures = publish(args.out, args.publish) if args.publish else {
        n: str(args.out / "plots" / f"{n}.png") for n in FIGURES if (args.out / "plots" / f"{n}.png").is_file()}
    command = shlex.join([".venv/bin/python", "scripts/compare_domains.py", *(sys.argv[1:] if argv is None else argv)])
    atomic_write_text(args.out / "readme-block.md", readme_block(rows, target, table, figures, command))
    print(args.out / "domains.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
