"""``prune.structure: units`` on the LSTM language model and its compact export (issue #34): a tiny
2-layer LSTM LM run loses whole hidden units by the counting rule, keeps them at zero through
training, draws whole units in its random controls, and exports to a narrower LSTM folder that
the project's ``LSTMForCausalLM`` and a plain-torch script (no multiticket, no transformers) load
with the masked ticket's logits. The decoder side's three cases (a projection, a tied embedding in
the scope, neither) are checked without training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml

pytest.importorskip("transformers")

from safetensors.torch import load_file  # noqa: E402

from multiticket.adapters.hf.compact import export_folder, logits, probe_inputs  # noqa: E402
from multiticket.adapters.hf.lstm import LSTMForCausalLM, LSTMLMConfig  # noqa: E402
from multiticket.adapters.hf.lstm_compact import units  # noqa: E402
from multiticket.cli import main as cli_main  # noqa: E402
from multiticket.core.mask import Mask  # noqa: E402
from multiticket.core.prune import PruneSpec, prune  # noqa: E402
from multiticket.core.structure import resolve  # noqa: E402
from tests.runsnap import only_run, refusing, unit_mask  # noqa: E402

H = 32
NLP = {"task": "causal_lm", "dataset": "austen", "model": "lstm",
       "model_args": {"embedding_size": H, "hidden_size": H, "num_layers": 2}, "max_train_examples": 160,
       "max_eval_examples": 16, "max_length": 24, "vocab_size": 300, "batch_size": 8, "logging_steps": 4}

#: plain torch and safetensors: builds the LM from config.json and prints its logits on argv[2]'s ids
PLAIN = refusing("multiticket", "transformers") + r"""
import torch
from safetensors.torch import load_file
folder = sys.argv[1]
cfg = json.load(open(folder + "/config.json"))
w = load_file(folder + "/model.safetensors")
embed = w["lstm_model.embed.weight"]
lstm = torch.nn.LSTM(cfg["embedding_size"], cfg["hidden_size"], num_layers=cfg["num_layers"], batch_first=True)
lstm.load_state_dict({k.split(".", 2)[2]: v for k, v in w.items() if k.startswith("lstm_model.lstm.")})
ids = torch.tensor(json.loads(sys.argv[2]))
with torch.no_grad():
    h = lstm(embed[ids])[0]
    if "lstm_model.proj.weight" in w:
        h = h @ w["lstm_model.proj.weight"].T + w["lstm_model.proj.bias"]
    out = h @ w.get("lm_head.weight", embed).T + w["lm_head.bias"]
print(json.dumps(out.tolist()))
"""


@pytest.fixture(scope="module")
def units_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two global levels at rate 0.5 of 64 LSTM units (-> 32 -> 16), biases in the scope (the tied
    decoder is not), random controls per layer and over both layers."""
    tmp = tmp_path_factory.mktemp("units")
    task = {"name": "tiny-lstm-units", "domain": "nlp", "seeds": [0], "train": {"steps": 8},
            "prune": {"rate": 0.5, "levels": 2, "structure": "units", "biases": True}, "rewind": {"step": 2},
            "controls": ["random_mask", "random_mask_global"], "nlp": NLP}
    (tmp / "t.yaml").write_text(yaml.safe_dump(task))
    assert cli_main(["run", str(tmp / "t.yaml"), "--out", str(tmp / "out"), "--quiet"]) == 0
    return only_run(tmp / "out")


def _live(mask: Mask, layer: int) -> torch.Tensor:
    return mask[f"lstm_model.lstm.weight_hh_l{layer}"][:H].any(1)


def test_units_go_whole_by_the_counting_rule_and_stay_zero(units_run: Path) -> None:
    for control in ("ticket", "random_mask", "random_mask_global"):
        for level, alive in ((1, 32), (2, 16)):
            mask = unit_mask(units_run, control, level)
            assert sum(int(_live(mask, i).sum()) for i in (0, 1)) == alive
            for i in (0, 1):
                live = _live(mask, i)
                for part in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    rows = mask[f"lstm_model.lstm.{part}_l{i}"].reshape(4, H, -1).any(2)
                    assert all(torch.equal(rows[g], live) for g in range(4))
                assert torch.equal(mask[f"lstm_model.lstm.weight_hh_l{i}"].any(0), live)
            assert torch.equal(mask["lstm_model.lstm.weight_ih_l1"].any(0), _live(mask, 0))
            final = load_file(str(units_run / f"seed_0/{control}/level_{level}/final.safetensors"))
            assert all(bool((final[n][~m] == 0).all()) for n, m in mask.items())
    ticket, drawn = unit_mask(units_run, "ticket", 2), unit_mask(units_run, "random_mask", 2)
    assert [int(_live(drawn, i).sum()) for i in (0, 1)] == [int(_live(ticket, i).sum()) for i in (0, 1)]
    assert drawn != ticket


def test_the_compact_folder_loads_narrower_with_the_tickets_logits(units_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "compact"
    assert cli_main(["export", str(units_run), "--seed", "0", "--level", "2", "--compact", "--out", str(out)]) == 0
    mask = unit_mask(units_run, "ticket", 2)
    width = max(int(_live(mask, i).sum()) for i in (0, 1))
    masked = LSTMForCausalLM.from_pretrained(str(units_run / "seed_0/ticket/level_2/hf_model"))
    small = LSTMForCausalLM.from_pretrained(str(out))
    assert small.config.hidden_size == width < H and small.lstm_model.proj is not None  # the tied decoder keeps 32
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in masked.parameters())
    inputs = probe_inputs(masked)
    expected = logits(masked, inputs)
    assert torch.allclose(logits(small, inputs), expected, atol=1e-5, rtol=0)
    done = subprocess.run([sys.executable, "-I", "-c", PLAIN, str(out), json.dumps(inputs["input_ids"].tolist())],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert torch.allclose(torch.tensor(json.loads(done.stdout)), expected, atol=1e-5, rtol=0)


def _ticket(embedding: int, names_of: Any, biases: bool, **kw: Any) -> tuple[LSTMForCausalLM, Mask]:
    """A random-init LSTM LM (16 units per layer) pruned at one level of ``units``, mask applied."""
    torch.manual_seed(0)
    model = LSTMForCausalLM(LSTMLMConfig(vocab_size=40, embedding_size=embedding, hidden_size=16, num_layers=2))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.startswith("lstm_model.lstm.bias"):
                p.uniform_(-0.5, 0.5)
    names = [n for n, _ in model.named_parameters() if names_of(n) and (biases or "bias" not in n)]
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters() if n in names}
    keep, layout = resolve("units", SimpleNamespace(domain="nlp", structure_units=lambda s: units(model)), names,
                           shapes)
    spec = PruneSpec(structure="units", keep=keep, layout=layout, **kw)
    params = {n: p.detach() for n, p in model.named_parameters() if n in names}
    mask = prune(params, Mask.ones(model, names), spec, torch.Generator().manual_seed(0))
    mask.apply_(model)
    return model, mask


CASES = {  # decoder side -> (embedding size, scope, biases in scope, expected compact embedding / projection)
    "projection": (12, lambda n: n.startswith("lstm_model.lstm.weight") or n == "lstm_model.proj.weight", False),
    "tied embedding": (16, lambda n: n.startswith("lstm_model.lstm") or n == "lstm_model.embed.weight", False),
    "placing projection": (16, lambda n: n.startswith("lstm_model.lstm"), True),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("allocator", ["global", "layerwise"])
def test_each_decoder_side_exports_exactly(case: str, allocator: str, tmp_path: Path) -> None:
    embedding, names_of, biases = CASES[case]
    model, mask = _ticket(embedding, names_of, biases, rate=0.6, allocator=allocator)
    alive = [int(mask[f"lstm_model.lstm.weight_hh_l{i}"][:16].any(1).sum()) for i in (0, 1)]
    inputs = probe_inputs(model)
    expected = logits(model, inputs)
    summary = export_folder(model, None, mask, tmp_path / "c", True, SimpleNamespace(
        from_pretrained=LSTMForCausalLM.from_pretrained))
    small = LSTMForCausalLM.from_pretrained(str(tmp_path / "c"))
    assert summary["hidden_size"] == small.config.hidden_size == max(alive) < 16
    assert summary["neurons_removed"] == 2 * (16 - max(alive)) and summary["max_abs_diff"] <= 1e-5
    assert torch.allclose(logits(small, inputs), expected, atol=1e-5, rtol=0)
    if case == "tied embedding":
        assert small.config.embedding_size == max(alive) and small.lstm_model.proj is None
    else:
        assert small.config.embedding_size == embedding and small.lstm_model.proj is not None
    if allocator == "layerwise":
        assert alive[0] == alive[1] and summary["dead_units_kept"] == 0


def test_the_default_scope_without_biases_is_refused_in_one_line() -> None:
    """The default scope holds the LSTM's weights only: the last layer's units would feed the tied
    decoder with their bias-driven state, so the structure asks for the biases (or the decoder)."""
    from multiticket.errors import UserError

    with pytest.raises(UserError, match=r"^prune.structure: units: the units of 'lstm_model.lstm.weight_ih_l1' feed "
                                        r"'lstm_model.embed.weight', which is not in the scope: include it, or set "
                                        r"prune.biases: true"):
        _ticket(16, lambda n: n.startswith("lstm_model.lstm.weight"), False)
    model, mask = _ticket(16, lambda n: n.startswith("lstm_model.lstm"), True)  # with the biases: accepted
    assert [f.kind for f in units(model)] == ["lstm", "lstm"] and "lstm_model.lstm.bias_hh_l1" in mask
