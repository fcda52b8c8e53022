#!/usr/bin/env python3
"""Screenshot an HTML report with headless Chromium, to check that plots and tables render.

    python scripts/screenshot_report.py RUN_DIR/report.html [--out shot.png] [--height 3000]

Needs the ``chromium`` binary (Debian: ``apt-get install -y chromium``). Chromium runs with no
network, no sync and a throw-away profile, so the page must be self-contained to render fully.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("screenshot_report: no chromium found (apt-get install -y chromium)")


def screenshot(html: Path, out: Path, width: int = 1400, height: int = 3000, timeout: float = 120) -> Path:
    html = html.resolve()
    out = out.resolve()
    with tempfile.TemporaryDirectory(prefix="mt-chromium-") as profile:
        cmd = [
            find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync", "--hide-scrollbars",
            f"--user-data-dir={profile}", f"--screenshot={out}", f"--window-size={width},{height}",
            html.as_uri(),
        ]
        subprocess.run(cmd, check=True, timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not out.is_file():
        sys.exit(f"screenshot_report: chromium wrote no {out}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("--out", type=Path, help="PNG path (default: next to the HTML, <name>.png)")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=3000)
    args = parser.parse_args()
    if not args.html.is_file():
        sys.exit(f"screenshot_report: {args.html}: no such file")
    out = args.out or args.html.with_suffix(".png")
    print(screenshot(args.html, out, args.width, args.height))


if __name__ == "__main__":
    main()
