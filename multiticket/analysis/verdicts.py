"""When the report may say the ticket *wins* at a level, and what the headline says about it.

A level is won only where the ticket beats every random control (random_reinit, random_mask,
random_mask_global, permuted_*) with a bootstrap 95 % interval of ticket − control, paired by
seed (:func:`multiticket.analysis.stats.bootstrap_diff`), that excludes 0 on the ticket's side.
A level where the ticket's mean is better than every random control's but some interval
includes 0 is "won by the mean only"; the headline counts both, separately. With one seed there
is no interval: nothing can be concluded, and the report says so instead of counting means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from multiticket.analysis.rundata import RANDOM_CONTROLS, RunData
from multiticket.analysis.stats import Diff, better, bootstrap_diff


def favours_ticket(d: Diff, higher_is_better: bool) -> bool:
    """The interval of ticket − control lies entirely on the ticket's better side of 0."""
    if not d.has_interval:
        return False
    return d.low > 0 if higher_is_better else d.high < 0  # type: ignore[operator]


def favours_control(d: Diff, higher_is_better: bool) -> bool:
    """The interval lies entirely on the control's better side of 0 (the ticket is worse)."""
    if not d.has_interval:
        return False
    return d.high < 0 if higher_is_better else d.low > 0  # type: ignore[operator]


def diff_verdict(d: Diff, higher_is_better: bool) -> tuple[str, bool]:
    """(text, counts-for-the-ticket) of one control's row: better only when the interval says so."""
    by_mean = better(d.ticket, d.control, higher_is_better)
    if favours_ticket(d, higher_is_better):
        return "ticket better (CI excludes 0)", True
    if favours_control(d, higher_is_better):
        return "ticket worse (CI excludes 0)", False
    if not d.has_interval:
        return ("ticket better by the mean; one seed: no interval" if by_mean
                else "ticket not better; one seed: no interval"), False
    return ("ticket better by the mean only (CI includes 0)" if by_mean else "ticket not better"), False


@dataclass(frozen=True)
class LevelWin:
    """The ticket against the random controls at one level.

    ``by_mean``: its mean beats every random control's; ``by_interval``: every interval excludes
    0 on its side (None when some control has no interval: fewer than two seeds); both None when
    no random control (or no ticket) finished there, or the metric has no better direction."""

    by_mean: bool | None
    by_interval: bool | None
    controls: tuple[str, ...] = ()


def level_win(run: RunData, level: int) -> LevelWin:
    ticket = run.values("ticket", level)
    randoms = [c for c in run.seen_controls if c in RANDOM_CONTROLS and run.values(c, level)]
    if not ticket or not randoms or not run.judged:
        return LevelWin(None, None)
    hib = run.higher_is_better
    diffs = [bootstrap_diff(ticket, run.values(c, level)) for c in randoms]
    by_mean = all(better(d.ticket, d.control, hib) for d in diffs if d is not None)
    if any(d is None or not d.has_interval for d in diffs):
        return LevelWin(by_mean, None, tuple(randoms))
    return LevelWin(by_mean, all(favours_ticket(d, hib) for d in diffs if d is not None), tuple(randoms))


def win_note(win: LevelWin) -> str:
    """A short qualifier of a level's winning mark ('' when the mark says it all)."""
    if win.by_mean is None:
        return ""
    if win.by_interval is None:
        return "one seed: no interval" + ("; better by the mean" if win.by_mean else "")
    if win.by_mean and not win.by_interval:
        return "better by the mean only"
    return ""


def win_summary(run: RunData, winning: dict[int, bool | None]) -> dict[str, Any]:
    """The headline's counts over the pruned levels: ``winning`` maps each level to its verdict
    (:func:`multiticket.analysis.report.level_verdict`, where a level may also be ruled out for
    other reasons); ``won`` are the levels won by the interval rule, ``mean_only`` those whose
    mean beats every random control without being won, ``undecided`` those with no interval.
    ``state``: ``none`` (no random control to judge by), ``one_seed`` (no interval anywhere:
    nothing can be concluded) or ``judged``."""
    wins = {lv: level_win(run, lv) for lv in winning}
    judged = [lv for lv, w in wins.items() if w.by_mean is not None]
    out: dict[str, Any] = {
        "judged": judged,
        "won": [lv for lv in judged if winning[lv]],
        "mean_only": [lv for lv in judged if wins[lv].by_mean and not winning[lv]],
        "undecided": [lv for lv in judged if wins[lv].by_interval is None],
    }
    if not judged:
        out["state"] = "none"
    elif len(out["undecided"]) == len(judged):
        out["state"] = "one_seed"
    else:
        out["state"] = "judged"
    return out
