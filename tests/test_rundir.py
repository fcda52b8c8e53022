"""A run directory is input: malformed files give one line and exit 2 in report, status and run,
corrupt units are named as corrupt, config.yaml records every seed, and a hypothesis search over
mutated run-directory files never finds a traceback or a runaway (docs/report.md)."""

from __future__ import annotations

import contextlib
import json
import resource
import shutil
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multiticket.cli import main
from multiticket.core.store import RunStore
from multiticket.launch.status import run_status
from multiticket.rundir import read_run_config

TINY = ["--quiet", "--levels", "1", "--set", "train.steps=60", "--set", "toy.n_train=128", "--set", "toy.n_test=64",
        "--set", "toy.hidden=[8]", "--set", "controls=[random_mask]"]
UNIT = "seed_0/ticket/level_1"


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rundir")
    assert main(["run", "toy-mlp", "--out", str(out), "--seeds", "0", *TINY]) == 0
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def copy_run(run: Path, where: Path) -> Path:
    dest = where / run.name
    shutil.copytree(run, dest, symlinks=True)
    return dest


def redo_done(unit_dir: Path) -> None:
    """Recompute DONE's checksums, as anyone handing over a doctored directory can (a DONE that
    is itself garbage, or lists files that are gone, stays as it is)."""
    with contextlib.suppress(ValueError, KeyError, TypeError, OSError):
        files = json.loads((unit_dir / "DONE").read_bytes())["files"]
        RunStore(unit_dir).finish(unit_dir, list(files))


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("multiticket: error: "), err
    return err


# -- each malformed case: one line naming the file and the field, exit 2 ------------------------


def _metrics(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def apply(run: Path) -> None:
        d = run / UNIT
        record = json.loads((d / "metrics.json").read_text())
        (d / "metrics.json").write_text(json.dumps(change(record)))
        redo_done(d)
    return apply


def _header(change: Callable[[dict], dict] | None = None, length: int | None = None) -> Callable[[Path], None]:
    def apply(run: Path) -> None:
        d = run / UNIT
        raw = (d / "mask.safetensors").read_bytes()
        n = struct.unpack("<Q", raw[:8])[0]
        head = json.dumps(change(json.loads(raw[8:8 + n]))).encode() if change else raw[8:8 + n]
        (d / "mask.safetensors").write_bytes(struct.pack("<Q", length or len(head)) + head + raw[8 + n:])
        redo_done(d)
    return apply


def _tensors(h: dict, **entry: object) -> dict:
    return {k: v if k == "__metadata__" else {**v, **entry} for k, v in h.items()}


def _order(h: dict) -> dict:
    return {**h, "__metadata__": {"order": json.dumps(["no.such.weight", *[k for k in h if k != "__metadata__"]])}}


MALFORMED = {
    "metrics without seed": (_metrics(lambda r: {k: v for k, v in r.items() if k != "seed"}),
                             f"{UNIT}/metrics.json: seed: required key is missing"),
    "string level": (_metrics(lambda r: {**r, "level": "1"}), f"{UNIT}/metrics.json: level: "),
    "metrics a list": (_metrics(lambda r: [r]), f"{UNIT}/metrics.json: (top level): expected a JSON object"),
    "NaN metric": (_metrics(lambda r: {**r, "metrics": {**r["metrics"], "accuracy": float("nan")}}),
                   f"{UNIT}/metrics.json: metrics: 'accuracy' must be a finite number"),
    "1e308 metric": (_metrics(lambda r: {**r, "metrics": {**r["metrics"], "accuracy": 1e308}}),
                     f"{UNIT}/metrics.json: metrics: 'accuracy' must be a finite number"),
    "1e308 sparsity": (_metrics(lambda r: {**r, "sparsity": 1e308}), f"{UNIT}/metrics.json: sparsity: "),
    "metrics of another unit": (_metrics(lambda r: {**r, "seed": 7}), f"{UNIT}/metrics.json: seed: 7 is not that of"),
    "header claims 2^62 bytes": (_header(length=2**62), f"{UNIT}/mask.safetensors: not a valid safetensors file"),
    "tensor claims 2^62 bytes": (_header(lambda h: _tensors(h, shape=[2**31, 2**31])),
                                 f"{UNIT}/mask.safetensors: not a valid safetensors file"),
    "offsets past the end": (_header(lambda h: _tensors(h, data_offsets=[0, 2**40])),
                             f"{UNIT}/mask.safetensors: not a valid safetensors file"),
    "order names a missing tensor": (_header(_order), f"{UNIT}/mask.safetensors: metadata 'order'"),
    "dtype a list (found by the mutation test)": (_header(lambda h: _tensors(h, dtype=[])),
                                                  f"{UNIT}/mask.safetensors: not a valid safetensors file"),
    "config not UTF-8": (lambda run: (run / "config.yaml").write_bytes(b"name: \xff\xfe\n"), "config.yaml: not UTF-8"),
    "config levels 99999999999": (
        lambda run: (run / "config.yaml").write_text(
            "name: toy-mlp\ndomain: toy\ntrain: {steps: 60}\nprune: {levels: 99999999999}\ntoy: {}\n"),
        "config.yaml: prune.levels: "),
    "config 10^6 seeds": (lambda run: (run / "config.yaml").write_text(
        "name: toy-mlp\ndomain: toy\ntrain: {steps: 60}\nseeds: [" + ", ".join(map(str, range(10**4))) + "]\n"),
        "config.yaml: seeds: "),
    "config a billion laughs": (lambda run: (run / "config.yaml").write_text(
        "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"), "config.yaml: more than"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_run_directory_is_one_line_and_exit_2(toy_run, tmp_path, capsys, case):
    mutate, expected = MALFORMED[case]
    run = copy_run(toy_run, tmp_path)
    mutate(run)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    assert main(["report", str(run)]) == 2
    assert expected in one_error_line(capsys)
    assert not (run / "report.html").exists()
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before  # nothing written
    if case.startswith("config"):
        assert main(["status", str(run)]) == 2
        assert expected in one_error_line(capsys)
    else:  # status names the unit corrupt, with the same reason
        assert main(["status", str(run)]) == 0
        out = capsys.readouterr().out
        assert "1 corrupt" in out and f"corrupt: {UNIT}: " in out


@pytest.mark.parametrize("case", ["config not UTF-8", "NaN metric", "metrics without seed"])
def test_resumed_run_refuses_a_malformed_run_directory(toy_run, tmp_path, capsys, case):
    mutate, expected = MALFORMED[case]
    run = copy_run(toy_run, tmp_path)
    mutate(run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["run", "toy-mlp", "--out", str(tmp_path), "--seeds", "0,1", *TINY]) == 2
    assert expected in one_error_line(capsys)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # nothing trained or written


# -- corrupt vs missing ---------------------------------------------------------------------------


def test_report_and_status_name_corrupt_units_apart_from_missing(toy_run, tmp_path, capsys):
    run = copy_run(toy_run, tmp_path)
    (run / UNIT / "final.safetensors").write_bytes(b"flipped")  # DONE's checksum no longer holds
    shutil.rmtree(run / "seed_0/random_mask/level_1")  # never written
    states = run_status(run)
    assert sorted((u.control, u.level, s) for u, s in states.items()) == [
        ("random_mask", 1, "missing"), ("ticket", 0, "done"), ("ticket", 1, "corrupt")]
    assert main(["report", str(run)]) == 0
    html = (run / "report.html").read_text()
    assert "Corrupt: 1 unit(s)" in html and f"{UNIT}: " in html and "checksum mismatch" in html
    assert "missing: 1 unit(s)" in html and "seed 0 random_mask: levels 1" in html
    assert "seed 0 ticket: levels 1" not in html  # the corrupt unit is not called missing
    assert main(["status", str(run)]) == 0
    out = capsys.readouterr().out
    assert "1 done · 0 running · 0 failed · 1 corrupt · 1 missing" in out and f"corrupt: {UNIT}: " in out
    assert main(["status", str(run), "--json"]) == 0
    total = json.loads(capsys.readouterr().out)[str(run)]["total"]
    assert total == {"done": 1, "running": 0, "failed": 0, "corrupt": 1, "missing": 1}


# -- config.yaml records every seed -----------------------------------------------------------------


def test_config_records_the_union_of_seeds(toy_run, tmp_path):
    run = copy_run(toy_run, tmp_path)
    assert main(["run", "toy-mlp", "--out", str(tmp_path), "--seeds", "-1", *TINY]) == 0
    assert read_run_config(run).config.seeds == [0, -1]
    assert yaml.safe_load((run / "config.yaml").read_text())["seeds"] == [0, -1]
    assert main(["report", str(run)]) == 0
    html = (run / "report.html").read_text()
    assert "<th>seeds</th><td>0, -1 (finished units from 2)</td>" in html
    assert main(["run", "toy-mlp", "--out", str(tmp_path), "--seeds", "0", *TINY]) == 0  # nothing new to run
    assert read_run_config(run).config.seeds == [0, -1]


# -- hypothesis: mutated run directories ------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FILES = ["config.yaml", f"{UNIT}/metrics.json", f"{UNIT}/DONE", f"{UNIT}/mask.safetensors",
         "seed_0/ticket/level_0/metrics.json", "seed_0/ticket/level_0/mask.safetensors", "seed_0/random_mask/level_1/DONE",
         "baselines.json", "provenance.json", "summary.csv", f"{UNIT}/curve.csv", f"{UNIT}/final.safetensors"]
KEYS = ["seed", "level", "control", "sparsity", "metric", "metrics", "task", "domain", "higher_is_better",
        "early_bird", "start_step", "name", "seeds", "prune", "controls", "train", "report", "rewind", "files"]


@st.composite
def mutations(draw) -> list[tuple]:
    kinds = st.sampled_from(["set_key", "replace_bytes", "truncate", "header_u64", "header_entry", "symlink"])
    return [(draw(kinds), draw(st.sampled_from(FILES)), draw(st.sampled_from(KEYS)), draw(JSON),
             draw(st.binary(max_size=64)), draw(st.integers(0, 2**64 - 1)), draw(st.booleans()))
            for _ in range(draw(st.integers(1, 3)))]


def _set_key(path: Path, key: str, value: object) -> None:
    text = path.read_text(errors="replace")
    try:
        data = yaml.safe_load(text) if path.suffix == ".yaml" else json.loads(text)
    except (yaml.YAMLError, ValueError):
        return
    if isinstance(data, dict):
        data[key] = value
    path.write_text(yaml.safe_dump(data) if path.suffix == ".yaml" else json.dumps(data))


def _symlink(run: Path, path: Path, choice: int) -> None:
    targets = ["/dev/zero", str(path), str(run), str(run / "nowhere"), str(run / "seed_0/ticket/level_0" / path.name)]
    victim = path if choice % 2 else path.parent  # the file, or its whole unit directory
    if victim == run:
        victim = path
    shutil.rmtree(victim) if victim.is_dir() and not victim.is_symlink() else victim.unlink(missing_ok=True)
    victim.symlink_to(targets[choice % len(targets)])


def mutate(run: Path, kind: str, rel: str, key: str, value: object, raw: bytes, number: int, redo: bool) -> None:
    path = run / rel
    if not path.is_file() or path.is_symlink():
        return
    if kind == "set_key" and (path.suffix in (".json", ".yaml") or path.name == "DONE"):
        _set_key(path, key, value)
    elif kind == "replace_bytes":
        path.write_bytes(raw)
    elif kind == "truncate":
        path.write_bytes(path.read_bytes()[: number % (path.stat().st_size + 1)])
    elif kind == "header_u64" and path.suffix == ".safetensors":
        path.write_bytes(struct.pack("<Q", number) + path.read_bytes()[8:])
    elif kind == "header_entry" and path.suffix == ".safetensors":
        _header(lambda h: _tensors(h, **{["shape", "data_offsets", "dtype"][number % 3]: value}))(run)
    elif kind == "symlink":
        _symlink(run, path, number)
        return
    if redo and (path.parent / "DONE").is_file() and path.name != "DONE" and path.parent != run:
        redo_done(path.parent)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=mutations())
def test_mutated_run_directory_never_gives_a_traceback(toy_run, capsys, changes):
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory(prefix="rundir-hyp-") as tmp:
        run = copy_run(toy_run, Path(tmp))
        for change in changes:
            mutate(run, *change)
        for command in (["status", str(run)], ["report", str(run)], ["compare", str(run), "--out", f"{tmp}/cmp"]):
            capsys.readouterr()
            start = time.perf_counter()
            rc = main(command)  # any exception but UserError escapes: a failure here
            elapsed = time.perf_counter() - start
            err = capsys.readouterr().err.strip()
            assert rc in (0, 2), (command, rc, err)
            if rc == 2:
                assert "\n" not in err and err.startswith("multiticket: error: "), err
            assert elapsed < 20, (command, elapsed, changes)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mb < 300, (grown_mb, changes)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=mutations())
def test_mutated_run_directory_as_a_transfer_source_or_for_instability(toy_run, capsys, changes):
    """The commands that train from a run directory: one line and exit 2 (or 1 for a unit that
    fails), never a traceback, on the same mutations."""
    with tempfile.TemporaryDirectory(prefix="rundir-hyp-") as tmp:
        run = copy_run(toy_run, Path(tmp))
        for change in changes:
            mutate(run, *change)
        for command in (["transfer", str(run), "--to", "toy-mlp", "--out", f"{tmp}/tr", "--levels", "1",
                         *TINY[3:]], ["instability", str(run), "--levels", "1", "--points", "2", "--quiet"]):
            capsys.readouterr()
            rc = main(command)
            err = capsys.readouterr().err.strip()
            assert rc in (0, 1, 2), (command[0], rc, err)
            if rc:
                assert "\n" not in err and err.startswith("multiticket: error: "), err
