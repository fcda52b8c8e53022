"""Tokenizers: a pretrained one, or one trained from scratch on the task's training split.

A trained tokenizer is cached in ``<workdir>/tokenizers/<key>/`` (``key`` hashes everything that
changes it), so every level, control and seed of a run tokenizes identically and trains it once.
Writes go to a temporary folder renamed into place, so parallel workers never read half a file.
The folder holds a ``DONE`` with the checksums of its files, like every unit of a run directory:
a cached tokenizer that fails them (modified, planted, or cached before checksums were kept) is
reported in one line and trained again, never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from multiticket.adapters.hf.data import Splits
from multiticket.adapters.hf.section import NLPSection
from multiticket.core.store import RunStore
from multiticket.errors import UserError

#: ids of the special tokens of a from-scratch byte-level BPE tokenizer
BPE_SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
WORDPIECE_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tokenizer_kind(section: NLPSection) -> str:
    """``bpe`` (byte-level, the default for every architecture) or ``wordpiece`` (BERT-style).

    Byte-level BPE training is deterministic. The ``tokenizers`` WordPiece trainer numbers its
    ``##`` pieces in hash-map order, so count ties can resolve differently in two processes: two
    separate runs may then differ in a few tokens (a run shares one cached tokenizer, so its own
    levels and seeds never do)."""
    return section.tokenizer_type


def lowercase_of(section: NLPSection) -> bool:
    """Lowercasing defaults on for WordPiece (uncased BERT) and off for byte-level BPE."""
    return section.lowercase if section.lowercase is not None else tokenizer_kind(section) == "wordpiece"


def training_texts(section: NLPSection, splits: Splits) -> list[str]:
    """The texts a from-scratch tokenizer learns from: training split only (no test leakage)."""
    t = splits.train
    if section.task == "translation":
        return t["source"] + t["target"]
    return t["text"] + t.get("text_pair", [])


def cache_key(section: NLPSection) -> str:
    """Hash of every setting that changes the trained vocabulary."""
    keys = (
        "task", "dataset", "dataset_config", "data_files", "train_split", "text_column", "text_pair_column",
        "translation_column", "source_lang", "target_lang", "max_train_examples", "vocab_size", "model",
    )  # fmt: skip
    data: dict[str, Any] = {k: getattr(section, k) for k in keys}
    data["kind"] = tokenizer_kind(section)
    data["lowercase"] = lowercase_of(section)
    data["format"] = 1
    if section.drop_missing_labels:  # fewer training texts; keys of existing runs stay as they were
        data["drop_missing_labels"] = True
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def _train(section: NLPSection, texts: list[str]) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    lower = lowercase_of(section)
    if tokenizer_kind(section) == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=lower, strip_accents=None)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=section.vocab_size, special_tokens=WORDPIECE_SPECIALS)
        tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
        # the trainer learns a deterministic token set but numbers it in hash-map order, which
        # differs between processes; renumber canonically so same-seed runs embed identically
        learned = tok.get_vocab()
        rest = sorted(t for t in learned if t not in WORDPIECE_SPECIALS)
        vocab = {t: i for i, t in enumerate([*WORDPIECE_SPECIALS, *rest])}
        tok.model = models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100)
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
            sep_token="[SEP]", mask_token="[MASK]", model_max_length=section.max_length,
        )  # fmt: skip
    tok = Tokenizer(models.BPE())
    if lower:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    bpe_trainer = trainers.BpeTrainer(
        vocab_size=section.vocab_size,
        special_tokens=BPE_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=bpe_trainer, length=len(texts))
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    if section.task == "classification":
        # <s> first for BERT's pooler (RoBERTa style), </s> last for GPT-2's last-token head
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", pair="<s> $A </s> $B:1 </s>:1", special_tokens=[("<s>", bos), ("</s>", eos)]
        )
    elif section.task == "translation":  # seq2seq sources and targets end with </s>
        tok.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B:1 </s>:1", special_tokens=[("</s>", eos)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        model_max_length=section.max_length,
    )  # fmt: skip


def trained_tokenizer(section: NLPSection, splits: Splits, workdir: Path) -> PreTrainedTokenizerFast:
    """Load the run's cached tokenizer, training and caching it first if needed."""
    root = workdir / "tokenizers"
    folder = root / cache_key(section)
    store = RunStore(root)
    if (folder.exists() or folder.is_symlink()) and not store.is_done(folder):
        print(f"multiticket: warning: {folder}: cached tokenizer fails its checksums (modified, or cached "
              "before they were kept); training it again", file=sys.stderr)
        _remove(folder)
    if not folder.exists():
        root.mkdir(parents=True, exist_ok=True)
        tok = _train(section, training_texts(section, splits))
        tmp = root / f".{folder.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tok.save_pretrained(str(tmp))
        store.finish(tmp, sorted(p.name for p in tmp.iterdir() if p.is_file()))
        try:
            os.replace(tmp, folder)
        except OSError:  # another worker won the race: use its (identical) copy
            shutil.rmtree(tmp, ignore_errors=True)
    try:
        return PreTrainedTokenizerFast.from_pretrained(str(folder))
    except Exception as exc:  # noqa: BLE001 - tokenizers and transformers raise many types
        raise UserError(f"{folder}: cached tokenizer cannot be read ({type(exc).__name__}); delete it to train "
                        "it again") from None


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def pretrained_tokenizer(source: str, field_name: str) -> PreTrainedTokenizerBase:
    """A tokenizer from a folder or Hub id; failures name the field."""
    if source.startswith((".", "/", "~")) and not Path(source).expanduser().exists():
        raise UserError(f"{field_name}: no such folder '{source}'")
    try:
        return AutoTokenizer.from_pretrained(str(Path(source).expanduser()) if Path(source).exists() else source)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{field_name}: cannot load a tokenizer from '{source}': {first}") from exc


def load_tokenizer(
    section: NLPSection, splits: Splits, workdir: Path, pretrained_path: str | None
) -> PreTrainedTokenizerBase:
    """The configured tokenizer: ``train``, an explicit source, or the pretrained model's own."""
    choice = section.tokenizer
    if choice is None:
        choice = pretrained_path if pretrained_path else "train"
    if choice == "train":
        tok: PreTrainedTokenizerBase = trained_tokenizer(section, splits, workdir)
    else:
        field_name = "nlp.tokenizer" if section.tokenizer else "nlp.pretrained"
        tok = pretrained_tokenizer(choice, field_name)
    if tok.pad_token is None:
        # GPT-2 style tokenizers ship without padding: pad with EOS (labels ignore padding anyway)
        if tok.eos_token is None:
            raise UserError("nlp.tokenizer: the tokenizer has neither a pad nor an eos token")
        tok.pad_token = tok.eos_token
    return tok


def encode(section: NLPSection, tok: PreTrainedTokenizerBase, cols: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """One split's columns -> model inputs (lists of ids; the collator pads and batches).

    Causal LM: every non-empty line gets an EOS, lines are concatenated and cut into blocks of
    ``max_length`` tokens (the remainder is dropped), as in the HF ``run_clm`` example.
    """
    n = section.max_length
    if section.task == "classification":
        enc = tok(cols["text"], cols.get("text_pair"), truncation=True, max_length=n)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        return [{**{k: enc[k][i] for k in keys}, "labels": int(cols["label"][i])} for i in range(len(cols["text"]))]
    if section.task == "causal_lm":
        ids = tok(cols["text"], add_special_tokens=False)["input_ids"]
        sep = [tok.eos_token_id] if tok.eos_token_id is not None else [tok.sep_token_id]
        stream = [t for line in ids for t in [*line, *sep]]
        blocks = [stream[i : i + n] for i in range(0, len(stream) - n + 1, n)]
        if not blocks:
            raise UserError(f"nlp.max_length: the split has {len(stream)} tokens, fewer than one block of {n}")
        return [{"input_ids": b, "labels": b} for b in blocks]
    enc = tok(cols["source"], text_target=cols["target"], truncation=True, max_length=n)
    return [
        {
            "input_ids": enc["input_ids"][i],
            "attention_mask": enc["attention_mask"][i],
            "labels": enc["labels"][i],
        }
        for i in range(len(cols["source"]))
    ]
