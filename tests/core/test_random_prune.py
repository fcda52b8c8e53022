"""Random pruning with the rewind weights kept (Chen et al. 2020; open_lth's ``randomly_prune``),
checked from the files of a toy run: the ticket's per-layer (or total) counts at other positions,
and the rewind weights under the new mask as the start."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from multiticket.cli import main
from tests.runsnap import only_run


def _run(tmp_path: Path, lr: str) -> Path:
    out = tmp_path / lr
    assert main(["run", "toy-mlp", "--out", str(out), "--quiet", "--workers", "1", "--seeds", "0", "--levels", "2",
                 "--set", "train.steps=60", "--set", "rewind.step=10", "--set", "toy.n_train=128",
                 "--set", "toy.n_test=64", "--set", "toy.hidden=[16,8]", "--set", "toy.n_features=8",
                 "--set", f"toy.lr={lr}", "--set", "controls=[random_prune,random_prune_global,random_mask]"]) == 0
    return only_run(out)


def test_random_prune_keeps_the_tickets_counts_at_other_positions_from_the_rewind_weights(tmp_path: Path):
    # a learning rate too small to move any float32 weight: each unit's final weights are its start
    run = _run(tmp_path, "1e-30")
    rewind = load_file(str(run / "seed_0" / "rewind" / "step_10" / "weights.safetensors"))
    for level in (1, 2):
        ticket = load_file(str(run / f"seed_0/ticket/level_{level}/mask.safetensors"))
        layer = load_file(str(run / f"seed_0/random_prune/level_{level}/mask.safetensors"))
        glob = load_file(str(run / f"seed_0/random_prune_global/level_{level}/mask.safetensors"))
        assert set(layer) == set(ticket) == set(glob)
        for name in ticket:
            assert int(layer[name].sum()) == int(ticket[name].sum()), name  # per-layer counts
        assert sum(int(m.sum()) for m in glob.values()) == sum(int(m.sum()) for m in ticket.values())
        assert any(not torch.equal(layer[n], ticket[n]) for n in ticket)  # other positions
        for control, mask in (("random_prune", layer), ("random_prune_global", glob)):
            final = load_file(str(run / f"seed_0/{control}/level_{level}/final.safetensors"))
            for name, m in mask.items():
                assert torch.equal(final[name], rewind[name] * m.to(rewind[name].dtype)), (control, level, name)
        # a fresh-init control under the same mask rule starts elsewhere: the check can fail
        fresh = load_file(str(run / f"seed_0/random_mask/level_{level}/final.safetensors"))
        fresh_mask = load_file(str(run / f"seed_0/random_mask/level_{level}/mask.safetensors"))
        name = next(iter(ticket))
        assert not torch.equal(fresh[name], rewind[name] * fresh_mask[name].to(rewind[name].dtype))
