"""Print the verdicts' null and power tables (docs/report.md, "How a level is judged").

    .venv/bin/python scripts/calibrate_verdicts.py [--runs 2000]

Simulated runs of 8 levels (:mod:`multiticket.analysis.calibration`): under the null the ticket
and each random control draw from N(0, 1); with a planted effect the ticket's values are shifted
by one standard deviation. Rates through the functions the report itself uses.
"""

from __future__ import annotations

import argparse
import time

from multiticket.analysis.calibration import simulate


def table(runs: int, effect: float, seeds: tuple[int, ...]) -> list[str]:
    lines = ["| seeds | random controls | correction | levels won | runs with any level won | runs with every level won |",
             "|---|---|---|---|---|---|"]
    for n in seeds:
        for controls in (1, 2):
            for correction in ("sequence", "holm"):
                r = simulate(runs, n, controls, 8, effect, correction, seed=1000 * n + controls)
                lines.append(f"| {n} | {controls} | {correction} | {100 * r.per_level:.2f} % | "
                             f"{100 * r.any_level:.2f} % | {100 * r.all_levels:.2f} % |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    start = time.time()
    print(f"Under the null ({args.runs} runs of 8 levels each):\n")
    print("\n".join(table(args.runs, 0.0, (2, 3, 5, 10))))
    print(f"\nWith the ticket one standard deviation better at every level ({args.runs} runs):\n")
    print("\n".join(table(args.runs, 1.0, (5, 8, 10))))
    print(f"\n({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
