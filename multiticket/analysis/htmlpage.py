"""The HTML pages (``report.html``, ``comparison.html``) are rendered from Jinja2 templates in
``templates/`` with autoescaping on, so every string that comes from a run directory, a task file
or a parameter name is escaped by construction: Python code builds plain data, never HTML. The
page shell inlines its CSS and embeds plots as data URIs: no external resources (no fonts,
scripts or images fetched), so a page opens offline and can be mailed."""

from __future__ import annotations

import base64
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from multiticket import __version__ as VERSION
from multiticket.analysis.plots import control_color, pct
from multiticket.analysis.stats import fmt

ENV = Environment(
    loader=PackageLoader("multiticket.analysis", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
ENV.filters.update(fmt=fmt, pct=pct, repr=repr)
ENV.globals.update(control_color=control_color, version=VERSION)


def png_src(png: bytes) -> str:
    """A data URI of PNG bytes, for ``<img src>``."""
    return "data:image/png;base64," + base64.b64encode(png).decode()


def render(template: str, **context: Any) -> Markup:
    """Render a template (autoescaped); the result may be placed into another template as is."""
    return Markup(ENV.get_template(template).render(**context))
