"""What instability's copy 1 is: above level 0 it replays its unit, so its final weights equal the
unit's bit for bit, for every control; at level 0 it starts at θ_k and is not the dense unit."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from multiticket.cli import main
from tests.runsnap import only_run

CONTROLS = ["random_reinit", "random_mask", "permuted_init", "one_shot", "rewind_init"]
TOY = ["--quiet", "--set", "train.steps=120", "--set", "toy.n_train=512", "--set", "toy.n_test=256",
       "--set", "toy.hidden=[32,16]", "--set", "rewind.step=6"]  # fmt: skip


def _same(a: Path, b: Path) -> bool:
    ta, tb = load_file(str(a)), load_file(str(b))
    return ta.keys() == tb.keys() and all(ta[n].dtype == tb[n].dtype and torch.equal(ta[n], tb[n]) for n in ta)


def test_copy_1_replays_every_unit_it_claims_to_replay(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    controls = "[" + ",".join(CONTROLS) + "]"
    assert main(["run", "toy-mlp", "--levels", "2", "--out", str(out), "--set", f"controls={controls}", *TOY]) == 0
    run = only_run(out)
    assert main(["instability", str(run), "--controls", ",".join(["ticket", *CONTROLS]), "--points", "2",
                 "--quiet"]) == 0
    claimed, checked = set(), 0
    for result in sorted(run.glob("seed_0/instability/*/level_*/instability.json")):
        record = json.loads(result.read_text())
        unit = f"{record['control']}/level_{record['level']}"
        replayed = _same(result.parent / "endpoint_1.safetensors", run / "seed_0" / unit / "final.safetensors")
        assert record["copy_1_equals_unit"] == replayed, unit  # the record says what is true
        assert record["copies"][1]["replays_unit"] is False
        if record["copies"][0]["replays_unit"]:
            claimed.add(unit)
            assert replayed, f"copy 1 claims to replay {unit} but ends elsewhere"
        checked += 1
    assert checked == 1 + 2 * (1 + len(CONTROLS))
    # every unit above level 0 is claimed; the dense unit (trained 0 -> T in one go) is not, and
    # with SGD momentum reset at k its copy 1 indeed ends elsewhere
    assert claimed == {f"{c}/level_{lv}" for c in ["ticket", *CONTROLS] for lv in (1, 2)}
    dense = json.loads((run / "seed_0/instability/ticket/level_0/instability.json").read_text())
    assert dense["copies"][0]["replays_unit"] is False and dense["copy_1_equals_unit"] is False
