"""Every string that reaches report.html or comparison.html is escaped: a run directory full of
<script> / onerror= strings (task name and description, metric and control names, parameter
names, metric values stored as strings, observation names, run directory names) yields pages
with no script, no event handler and no image but the embedded plots."""

from __future__ import annotations

import dataclasses
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import yaml

from multiticket.analysis.compare import write_comparison
from multiticket.analysis.report import build_report, write_report
from multiticket.analysis.rundata import load_run
from multiticket.core.mask import Mask
from multiticket.core.store import RunStore
from tests.analysis.synthetic import make_run

HOSTILE = "\"'><script>alert(1)</script><img src=x onerror=alert(1)>"
DIRNAME = "run-<img src=x onerror=alert(1)>-'\"&"  # no '/' in a file name, so no closing tag


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text of <style> blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def assert_inert(html: str) -> None:
    """No script, no on* handler, no javascript: URL, images only as embedded PNG plots."""
    parser = Tags()
    parser.feed(html)
    assert parser.tags, "no HTML parsed"
    for tag, attrs in parser.tags:
        assert tag not in ("script", "iframe", "object", "embed", "svg"), tag
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name, value)
            assert "javascript:" not in (value or "").lower(), (tag, name, value)
        if tag == "img":
            assert (attrs.get("src") or "").startswith("data:image/png;base64,"), attrs
    assert "<script" not in html.lower() and "<img src=x" not in html
    assert html.count("&lt;script&gt;") >= 1  # the strings are there, as text


def hostile_run(out: Path) -> Path:
    """A synthetic rl run whose every free-text field holds HOSTILE, with DONE checksums valid."""
    root = make_run(out, "rl", levels=2)
    config = yaml.safe_load((root / "config.yaml").read_text())
    config["description"] = HOSTILE
    config["rl"] = {"obs_names": [HOSTILE, "b", "c", "d"]}
    config["transfer"] = {"source": HOSTILE, "source_dir": HOSTILE}
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    store = RunStore(root)
    for metrics_file in root.glob("seed_*/*/level_*/metrics.json"):
        d = metrics_file.parent
        record = json.loads(metrics_file.read_text())
        value = record["metrics"].pop(record["metric"])
        record.update(metric=HOSTILE, task=HOSTILE, metrics={HOSTILE: value, "note": HOSTILE,
                                                             f"test_{HOSTILE}/../x": value})
        metrics_file.write_text(json.dumps(record))
        mask = Mask.load(d / "mask.safetensors")
        Mask({f"{HOSTILE}.{n}": t for n, t in mask.items()}).save(d / "mask.safetensors")
        store.finish(d, ["mask.safetensors", "metrics.json"])
    inst = root / "seed_0/instability/ticket/level_1"
    inst.mkdir(parents=True)
    (inst / "instability.json").write_text(json.dumps({
        "task": HOSTILE, "seed": 0, "control": "ticket", "level": 1, "sparsity": 0.2, "metric": HOSTILE,
        "higher_is_better": True, "points": 3, "alphas": [0.0, 0.5, 1.0], "values": [1.0, 0.5, 1.0],
        "barrier": 0.5, "barrier_linear": 0.5}))
    store.finish(inst, ["instability.json"])
    return root.rename(root.parent / DIRNAME)


def test_report_escapes_every_string_from_the_run_directory(tmp_path: Path):
    run = hostile_run(tmp_path)
    html = write_report(run).read_text()
    assert_inert(html)
    for shown in ("description", "transferred from", "Instability", "Input layer(s)", "Other metrics", "Compute"):
        assert shown in html, shown
    # another metric's plot file is named from the metric, but stays inside plots/
    (plot,) = (run / "plots").glob("metric_00_*")
    assert re.fullmatch(r"metric_00_test_[A-Za-z0-9_-]+\.png", plot.name)
    # names the schema refuses on disk (task name, control names) are escaped all the same
    data = load_run(run)
    records = [{**r, "control": HOSTILE} if r["control"] == "random_mask" else r for r in data.records]
    forged = dataclasses.replace(data, config={**data.config, "name": HOSTILE}, records=records)
    html = build_report(forged)
    assert_inert(html)
    assert "<title>&#34;&#39;&gt;&lt;script&gt;" in html


def test_comparison_escapes_run_names_and_metrics(tmp_path: Path):
    run = hostile_run(tmp_path / "a")
    other = make_run(tmp_path / "b", "nlp", levels=2)
    html = write_comparison([run, other], tmp_path / "cmp").read_text()
    assert_inert(html)
    assert "run-&lt;img src=x onerror=alert(1)&gt;" in html
