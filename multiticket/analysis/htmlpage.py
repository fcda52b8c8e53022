"""The page shell shared by ``report.html`` and ``comparison.html``: inline CSS, no external
resources (no fonts, scripts or images fetched), so a page opens offline and can be mailed."""

from __future__ import annotations

import base64
import html

from multiticket import __version__ as VERSION

esc = html.escape

CSS = """
:root { --ink:#1d2430; --muted:#5b6472; --line:#dde2ea; --bg:#f6f7f9; --accent:#1f4e9c; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 15px/1.5 -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 28px 36px 60px; background: white;
  box-shadow: 0 0 0 1px var(--line); min-height: 100vh; }
h1 { font-size: 28px; margin: 0 0 14px; }
h1 .sub { font-weight: 400; color: var(--muted); font-size: 18px; margin-left: 8px; }
h2 { font-size: 20px; margin: 38px 0 10px; padding-top: 14px; border-top: 2px solid var(--line); }
h3 { font-size: 15px; margin: 22px 0 6px; font-weight: 600; }
p { max-width: 980px; }
code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 13px;
  background: #eef1f5; padding: 1px 4px; border-radius: 3px; }
img { max-width: 100%; height: auto; display: block; margin: 8px 0; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13.5px; }
th, td { padding: 5px 12px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: #f0f3f7; font-weight: 600; }
table.meta th { width: 220px; background: none; color: var(--muted); font-weight: 500; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.ticket td { background: #eef3fb; font-weight: 600; }
.note, .foot { color: var(--muted); font-size: 13px; }
.kind { color: var(--muted); font-size: 11.5px; margin-left: 4px; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
.yes { color: #1e7d32; font-weight: 600; }
.no { color: #b03a2e; font-weight: 600; }
.headline { font-size: 17px; background: #eef3fb; border-left: 5px solid var(--accent);
  padding: 12px 16px; border-radius: 3px; }
.headline .big { font-size: 21px; color: var(--accent); }
.warn { background: #fff6e0; border-left: 5px solid #e0a100; padding: 10px 16px; margin: 12px 0;
  border-radius: 3px; }
.warn ul { margin: 6px 0 0; columns: 2; }
"""


def page(title: str, body: str, css: str = CSS) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"generator\" content=\"multiticket {VERSION}\">"
        f"<title>{html.escape(title)}</title><style>{css}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def img(png: bytes, alt: str) -> str:
    """An embedded PNG (a data URI: the page fetches nothing)."""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def num_cell(value: float, text: str, **data: object) -> str:
    """A table cell that carries its exact value, so tests and scripts can read it back."""
    attrs = "".join(f' data-{k}="{esc(str(v))}"' for k, v in data.items())
    return f'<td class="num"{attrs} data-value="{value!r}">{esc(text)}</td>'
