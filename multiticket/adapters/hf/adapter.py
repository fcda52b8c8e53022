"""``HFAdapter``: IMP through the Hugging Face ``Trainer``, without forking its training loop.

Per ``train(start, stop, hooks)`` call a fresh ``Trainer`` runs ``stop - start`` optimizer steps:
- the optimizer and LR scheduler are built here (:mod:`.optimization`) and handed to the Trainer
  (``optimizers=``); the scheduler is built for ``stop`` total steps and advanced ``start`` steps
  first, so a level that starts at the rewind step k continues the dense run's schedule exactly;
- the training examples follow a fixed order per seed (:mod:`.ordering`: epoch permutations of
  the training split), and a level starting at k reads from batch k on, as the dense run did;
- two trainer callbacks, composed: :class:`~.trainer_hooks.HooksCallback` reports to the core (it
  calls ``hooks.on_optimizers`` at ``on_train_begin``, after ``accelerate`` has wrapped the
  optimizer and before any update, and ``hooks.on_step`` after every optimizer step, with the
  logged loss on logging steps: the learning curve's training loss, the mean over the steps since
  the previous log, as the Trainer logs it); then the public ``TicketCallback``
  (``multiticket.hf.TicketCallback``) binds the mask enforcer the core attached to the Trainer's
  optimizer, exactly as in a user's script. Checkpoints are offered at logging steps only, where
  such a window has just closed, so a resumed unit logs the same means.
The Trainer reseeds the global RNGs in its constructor and the DataLoader draws from them; the
adapter puts back the state ``train`` was entered with right before the first forward pass, so a
level resumed at step k with the rewind point's RNG replays the dense run bit for bit (CPU).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import (
    DataCollatorForSeq2Seq,
    DataCollatorWithPadding,
    PreTrainedModel,
    PrinterCallback,
    Trainer,
    TrainingArguments,
    default_data_collator,
)

from multiticket.adapters.hf import baselines as B
from multiticket.adapters.hf import metrics as M
from multiticket.adapters.hf import optimization
from multiticket.adapters.hf.callback import TicketCallback
from multiticket.adapters.hf.compact import units as encoder_units
from multiticket.adapters.hf.data import Splits, load_splits
from multiticket.adapters.hf.export import export_folder
from multiticket.adapters.hf.lstm_compact import units as lstm_units
from multiticket.adapters.hf.models import AUTO_CLASSES, NewHead, build_model, default_prunable, resolve_pretrained
from multiticket.adapters.hf.ordering import Ordered, train_order
from multiticket.adapters.hf.section import NLPSection
from multiticket.adapters.hf.tokenization import encode, load_tokenizer
from multiticket.adapters.hf.trainer_hooks import HooksCallback, rng_state, set_rng_state
from multiticket.core.adapter import GIB, DomainAdapter, TrainHooks
from multiticket.core.name_roles import name_role
from multiticket.core.seeding import derive_seed
from multiticket.core.structure_units import Family
from multiticket.core.ticket_binding import TicketBinding
from multiticket.errors import UserError

#: the length of the all-ones input sequence of :meth:`HFAdapter.scoring_ones_output`
ONES_LENGTH = 8


def _quiet() -> None:
    """Progress bars and load reports would flood the run log of every level."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


#: ``prune.structure`` -> the function finding its units in a model: ``heads``, the attention heads
#: and FFN neurons of a BERT-like encoder; ``units``, the LSTM LM's hidden units
UNIT_FINDERS: dict[str, Callable[[torch.nn.Module], list[Family]]] = {"heads": encoder_units, "units": lstm_units}


@contextlib.contextmanager
def _scoring_kernels() -> Iterator[None]:
    """Kernels a criterion can differentiate through, in eval mode and twice: attention on torch's
    math kernel (GraSP's double backward is not implemented for the fused flash and memory-efficient
    ones) and no cuDNN (its RNN backward refuses eval mode, where the probe scores)."""
    with sdpa_kernel(SDPBackend.MATH), torch.backends.cudnn.flags(enabled=False):
        yield


class HFAdapter(DomainAdapter):
    """Classification, causal LM and translation with HF models (see the module docstring)."""

    domain: ClassVar[str] = "nlp"
    Section: ClassVar[type[NLPSection]] = NLPSection
    curve_logs: ClassVar[tuple[str, ...]] = ("loss",)
    step_unit: ClassVar[str] = "optimizer steps"
    eval_every_key: ClassVar[str | None] = "nlp.eval_every"
    #: transformers, datasets and a tokenizer, with room for the data
    worker_base_bytes: ClassVar[int] = int(1.5 * GIB)
    #: roles by the names of transformers' and torch RNNs' parameters (attention.query, ffn.output, ...)
    layer_role = staticmethod(name_role)

    def __init__(self, task: Any, section: NLPSection, workdir: Path, device: str = "cpu") -> None:
        super().__init__(task, section, workdir, device)
        _quiet()
        self.section: NLPSection = section
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pretrained = resolve_pretrained(section.pretrained)
        self._model: PreTrainedModel | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self._splits: Splits | None = None
        self._features: dict[str, list[dict[str, Any]]] = {}
        self.tokenizer: Any = None
        self.seed = 0
        self.constant_lr: float | None = None
        self.new_head: NewHead | None = None
        #: mean input tokens per optimizer step of the last ``train`` (the report's tokens per second)
        self.tokens_per_step: float | None = None

    # -- identity ----------------------------------------------------------------------------
    @property
    def metric(self) -> str:
        return M.PRIMARY[self.section.task][0]

    @property
    def higher_is_better(self) -> bool:
        return M.PRIMARY[self.section.task][1]

    # -- data and model ------------------------------------------------------------------------
    def _prepare(self) -> None:
        """Data, tokenizer and features: once per adapter (the tokenizer is cached on disk)."""
        if self._splits is not None:
            return
        s = self.section
        self._splits = load_splits(s, self.workdir / "datasets")
        self.tokenizer = load_tokenizer(s, self._splits, self.workdir, self.pretrained)
        self._features = {
            name: encode(s, self.tokenizer, self._splits.split(name)) for name in ("train", "validation", "test")
        }

    @property
    def num_labels(self) -> int:
        assert self._splits is not None
        found = len(self._splits.label_names)
        if self.section.num_labels is not None and self.section.num_labels < found:
            raise UserError(f"nlp.num_labels: {self.section.num_labels} is fewer than the {found} labels in the data")
        return self.section.num_labels or max(found, 2)

    def build(self, seed: int, init_seed: int | None = None) -> None:
        self._prepare()
        fresh = (
            self.pretrained is not None
            and self.section.reinit_pretrained
            and init_seed is not None
            and init_seed != seed
        )
        model, self.new_head = build_model(
            self.section, self.tokenizer, self.num_labels, self.pretrained,
            seed if init_seed is None else init_seed, fresh,
        )  # fmt: skip
        if self.section.task == "classification" and self._splits and self._splits.label_names:
            names = self._splits.label_names  # ids beyond the data's (a larger nlp.num_labels): LABEL_<id>
            names = names + [f"LABEL_{i}" for i in range(len(names), self.num_labels)]
            model.config.id2label = dict(enumerate(names))
            model.config.label2id = {v: k for k, v in model.config.id2label.items()}
        # transformers wraps to() with functools.wraps(nn.Module.to), which mypy reads as unbound (self first)
        self._model = model.to(self.device)  # type: ignore[arg-type]
        self._optimizer = None
        self.seed = seed
        self.tokens_per_step = None
        torch.manual_seed(seed)  # dropout etc. follow the run seed, not the init seed

    def provenance(self) -> dict[str, Any]:
        """The model class, the ``nlp:`` settings, and what the data decided (the number of labels)."""
        out = super().provenance()
        if self.section.task == "classification":
            out["hyperparameters"]["num_labels"] = self.num_labels
        if self.pretrained is None:
            out["hyperparameters"]["model"] = self.section.model_type
        return out

    def header_facts(self) -> dict[str, str]:
        s = self.section
        model = f"{s.pretrained or s.model_type} ({'pretrained' if s.pretrained else 'random init'})"
        return {"model": model, "dataset": s.dataset + (f" ({s.dataset_config})" if s.dataset_config else "")}

    def identity(self) -> str:
        return f"{self.section.pretrained or self.section.model_type}, {self.section.dataset}"

    def notes(self) -> dict[str, Any]:
        notes: dict[str, Any] = {"new_head": self.new_head.record()} if self.new_head is not None else {}
        if self.tokens_per_step is not None:
            notes["train_tokens"] = {"tokens_per_step": self.tokens_per_step,
                                     "counted": "input_ids per optimizer step, mean over the seed's batches 0..stop"}
        return notes

    def count_tokens(self, order: np.ndarray, steps: int) -> float:
        """Mean input tokens per optimizer step over the first ``steps`` batches of ``order``: the
        same for a unit trained in one go and one resumed from a checkpoint (both end at ``stop``)."""
        feats = self._features["train"]
        return round(sum(len(feats[int(i)]["input_ids"]) for i in order) / steps, 3) if steps else 0.0

    @property
    def module(self) -> PreTrainedModel:
        if self._model is None:
            raise RuntimeError("build() first")
        return self._model

    def default_prunable(self) -> list[str]:
        return default_prunable(self.module, self.section, biases=bool(self.task.prune.biases))

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self._optimizer] if self._optimizer is not None else []

    # -- training ------------------------------------------------------------------------------
    def _make_optimizer(self) -> torch.optim.Optimizer:
        """AdamW or SGD as the Trainer would build them (:func:`.optimization.make_optimizer`)."""
        return optimization.make_optimizer(self.module, self.section, self.device)

    def set_constant_lr(self, lr: float | None) -> None:
        self.constant_lr = lr

    def make_scheduler(
        self, optimizer: torch.optim.Optimizer, start: int, total: int
    ) -> torch.optim.lr_scheduler.LRScheduler:
        """The dense run's schedule over ``total`` steps, advanced to ``start``; with
        :meth:`set_constant_lr`, a constant schedule at that rate (fine-tuning)."""
        return optimization.make_scheduler(optimizer, self.section, start, total, self.constant_lr)

    def collator(self) -> Any:
        if self.section.task == "classification":
            return DataCollatorWithPadding(self.tokenizer, return_tensors="pt")
        if self.section.task == "translation":
            return DataCollatorForSeq2Seq(self.tokenizer, model=self.module, label_pad_token_id=-100)
        return default_data_collator

    def training_args(self, steps: int) -> TrainingArguments:
        s = self.section
        return TrainingArguments(
            output_dir=str(self.workdir / "trainer"),
            max_steps=steps,
            per_device_train_batch_size=s.batch_size,
            learning_rate=s.learning_rate,
            max_grad_norm=s.max_grad_norm,
            bf16=s.bf16,
            torch_compile=s.torch_compile,
            torch_compile_backend=s.torch_compile_backend if s.torch_compile else None,
            use_cpu=not self.device.startswith("cuda"),
            logging_strategy="steps",
            logging_steps=s.logging_steps,
            logging_nan_inf_filter=False,
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            dataloader_pin_memory=False,
            remove_unused_columns=False,
            train_sampling_strategy="sequential",
            seed=self.seed,
            skip_memory_metrics=True,
        )

    def train(self, start: int, stop: int, hooks: TrainHooks) -> None:
        if stop <= start:
            return
        s = self.section
        order = train_order(len(self._features["train"]), s.batch_size, stop, self.seed)
        self.tokens_per_step = self.count_tokens(order, stop)
        data = Ordered(self._features["train"], order[start * s.batch_size : stop * s.batch_size])
        rng = rng_state()  # the Trainer reseeds every RNG in __init__: keep the core's state
        self._optimizer = self._make_optimizer()
        scheduler = self.make_scheduler(self._optimizer, start, stop)
        # reporting first: its on_train_begin restores the optimizer state from the rewind point
        # (hooks.on_optimizers), which the ticket's binding must find already masked by the core
        binding = TicketBinding(enforcer=getattr(hooks, "enforcer", None))
        trainer = Trainer(
            model=self.module, args=self.training_args(stop - start), train_dataset=data,
            data_collator=self.collator(), processing_class=self.tokenizer,
            # Trainer annotates the scheduler as LambdaLR (what it builds itself); it steps any LRScheduler
            optimizers=(self._optimizer, scheduler),  # type: ignore[arg-type]
            callbacks=[HooksCallback(hooks, self._optimizer, start, rng), TicketCallback(binding)],
        )  # fmt: skip
        trainer.remove_callback(PrinterCallback)  # logs go to the core, not to stdout
        set_rng_state(rng)
        trainer.train()
        self.module.eval()

    # -- scoring for data- and gradient-reading criteria (SNIP, GraSP, SynFlow) -----------------
    def scoring_batches(self, seed: int, n: int) -> list[dict[str, torch.Tensor]]:
        """``n`` training batches of ``batch_size`` examples drawn without replacement by a generator
        of ``seed`` alone (not the training order's, so every unit of a seed scores on the same
        examples, whatever step it starts at), collated and on the device as the Trainer feeds them."""
        self._prepare()
        feats, size = self._features["train"], self.section.batch_size
        order = np.random.default_rng(derive_seed(seed, "hf-scoring")).permutation(len(feats))
        collate = self.collator()
        out = []
        for i in range(n):
            rows = [feats[int(j)] for j in np.resize(order, (i + 1) * size)[i * size:]]
            out.append({k: v.to(self.device) for k, v in collate(rows).items()})
        return out

    def scoring_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's own training loss (its ``loss`` output) on one scoring batch (on
        :func:`_scoring_kernels`)."""
        with _scoring_kernels():
            loss = self.module(**batch).loss
        assert loss is not None, "the scoring batches hold labels"
        return cast(torch.Tensor, loss)

    def scoring_ones_output(self) -> torch.Tensor:
        """The logits of one all-ones sequence of :data:`ONES_LENGTH` input embeddings (and, for a
        translation model, as many all-ones decoder input embeddings): the network past its input
        embedding, so the word embeddings themselves get no synaptic flow (docs/nlp.md)."""
        model = self.module
        hidden = int(cast(torch.nn.Embedding, model.get_input_embeddings()).embedding_dim)
        ones = torch.ones(1, ONES_LENGTH, hidden, device=self.device)
        extra = {"decoder_inputs_embeds": ones} if self.section.task == "translation" else {}
        with _scoring_kernels():
            return cast(torch.Tensor, model(inputs_embeds=ones, **extra).logits)

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        return {**self._split_metrics("validation"), **self._split_metrics("test")}

    def curve_metrics(self) -> dict[str, float]:
        """The validation metrics only (a learning curve's evaluation; test data stays unseen)."""
        return self._split_metrics("validation")

    def _split_metrics(self, split: str) -> dict[str, float]:
        """Metrics of one split: validation as ``eval_loss`` and plain names, test as ``test_*``."""
        s, model = self.section, self.module
        model.eval()
        prefix = "test_" if split == "test" else ""
        feats = self._features[split]
        collate = self.collator()
        args = (model, feats, collate, s.eval_batch_size, self.device, s.bf16)
        if s.task == "classification":
            res = M.classification_metrics(*args)
        elif s.task == "causal_lm":
            res = M.lm_metrics(*args)
        else:
            assert self._splits is not None
            refs = self._splits.split(split)["target"]
            res = M.translation_metrics(
                model, self.tokenizer, feats, refs, collate, s.eval_batch_size, self.device, s.bf16,
                s.generation_max_length, s.num_beams,
            )  # fmt: skip
        res[f"{'test' if prefix else 'eval'}_loss"] = res.pop("loss")
        return {k if k.endswith("_loss") else f"{prefix}{k}": float(v) for k, v in res.items()}

    def baselines(self) -> dict[str, float]:
        """Classification: the majority-class rate of the validation and test splits. Causal LM
        (GPT-2, LSTM): the perplexity of the training text's add-one-smoothed unigram model on
        the validation and test tokens the model's perplexity is taken over. Translation: none
        (a trivial translator's BLEU is not cheap to define)."""
        self._prepare()
        s, feats = self.section, self._features
        if s.task == "classification":
            return {"majority_rate": B.majority_rate(feats["validation"]),
                    "test_majority_rate": B.majority_rate(feats["test"])}
        if s.task == "causal_lm":
            vocab = int(self._model.config.vocab_size) if self._model is not None else len(self.tokenizer)
            counts = B.unigram_counts(feats["train"], vocab)
            return {"unigram_perplexity": B.unigram_perplexity(counts, feats["validation"]),
                    "test_unigram_perplexity": B.unigram_perplexity(counts, feats["test"])}
        return {}

    # -- outputs -------------------------------------------------------------------------------
    def export(self, level_dir: Path) -> None:
        """The ticket as a transformers folder (safetensors + config + tokenizer): loads back
        with ``from_pretrained`` with no missing keys; pruned entries are exact zeros. Its weights
        file shares the disk blocks of ``final.safetensors`` when identical (``hf.export``)."""
        export_folder(self.module, self.tokenizer, Path(level_dir))

    def export_model(self, path: Path, mask: Mapping[str, torch.Tensor], compact: bool,
                     unit_dir: Path | None = None) -> dict[str, Any]:
        """``multiticket export``: a transformers folder (config, safetensors, tokenizer) that plain
        ``from_pretrained`` reads; ``compact``: pruned FFN neurons (:mod:`.compact`) or the LSTM LM's
        pruned hidden units (:mod:`.lstm_compact`) removed."""
        from multiticket.adapters.hf.compact import export_folder as write_folder

        return write_folder(self.module, self.tokenizer, mask, Path(path), compact, AUTO_CLASSES[self.section.task])

    def structure_units(self, structure: str) -> list[Family]:
        """The units a structure of :data:`UNIT_FINDERS` names in this model ([] for another)."""
        find = UNIT_FINDERS.get(structure)
        return find(self.module) if find is not None else []

    def close(self) -> None:
        self._model = None
        self._optimizer = None
