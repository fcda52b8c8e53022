"""Data sources, caps, tokenizers, and one-line UserErrors naming the field for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hf_testlib import make_adapter

from multiticket.adapters.hf.data import builtin_datasets, load_splits
from multiticket.adapters.hf.section import NLPSection
from multiticket.config import load_task
from multiticket.errors import UserError


def _section(**kw) -> NLPSection:
    return NLPSection(**{"task": "classification", "dataset": "rotten_tomatoes", **kw})


def test_builtin_corpora_ship_with_the_package():
    assert set(builtin_datasets()) == {"rotten_tomatoes", "austen", "bible_en_es"}


@pytest.mark.parametrize("name", ["rotten_tomatoes", "builtin:rotten_tomatoes"])
def test_builtin_names_and_caps_are_deterministic(tmp_path, name):
    s = _section(dataset=name, max_train_examples=50, max_eval_examples=20)
    a, b = load_splits(s, tmp_path), load_splits(s, tmp_path / "other")
    assert a.train["n"] == [50] and a.validation["n"] == [20] and a.test["n"] == [20]
    assert a.train == b.train and set(a.train["label"]) <= {0, 1}


def test_local_csv_with_string_labels_and_missing_splits(tmp_path):
    csv = tmp_path / "reviews.csv"
    rows = ["txt,stars"] + [f"review number {i},{'good' if i % 3 else 'bad'}" for i in range(60)]
    csv.write_text("\n".join(rows) + "\n")
    splits = load_splits(_section(dataset=str(csv), text_column="txt", label_column="stars"), tmp_path / "c")
    assert splits.label_names == ["bad", "good"]
    sizes = [splits.train["n"][0], splits.validation["n"][0], splits.test["n"][0]]
    assert sum(sizes) == 60 and min(sizes) > 0  # validation and test held out of train
    assert set(splits.train["label"]) == {0, 1}


def test_translation_and_lm_columns(tmp_path):
    mt = load_splits(NLPSection(task="translation", dataset="bible_en_es", max_train_examples=10), tmp_path)
    assert len(mt.train["source"]) == len(mt.train["target"]) == 10
    with pytest.raises(UserError, match=r"^nlp.target_lang: language 'fr' not in 'translation' \(en, es\)$"):
        load_splits(NLPSection(task="translation", dataset="bible_en_es", target_lang="fr"), tmp_path)
    lm = load_splits(NLPSection(task="causal_lm", dataset="austen", max_eval_examples=5), tmp_path)
    assert lm.validation["n"] == [5] and all(t.strip() for t in lm.train["text"])


def test_missing_column_names_the_field(tmp_path):
    with pytest.raises(UserError) as err:
        load_splits(_section(text_column="txt"), tmp_path)
    assert str(err.value) == "nlp.text_column: column 'txt' not in dataset (columns: text, label)"


@pytest.mark.parametrize(
    ("kw", "pattern"),
    [
        ({"dataset": "csv", "data_files": {"train": "/no/such.csv"}}, r"^nlp.data_files.train: no such file"),
        ({"dataset": "./missing.csv"}, r"^nlp.dataset: no such file or folder './missing.csv'$"),
        ({"dataset": "builtin:imdb"}, r"^nlp.dataset: no built-in dataset 'imdb' \(built-in: "),
        ({"train_split": "training"}, r"^nlp.train_split: split 'training' not in dataset"),
    ],
)
def test_bad_data_sources(tmp_path, kw, pattern):
    with pytest.raises(UserError, match=pattern):
        load_splits(_section(**kw), tmp_path)


def _task_file(tmp_path: Path, nlp: dict) -> Path:
    task = {"name": "t", "domain": "nlp", "train": {"steps": 10}, "nlp": nlp}
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


def test_task_file_errors_name_the_nlp_field(tmp_path):
    base = {"task": "classification", "dataset": "rotten_tomatoes"}
    with pytest.raises(UserError, match=r"t.yaml: nlp.model: Input should be 'bert', 'gpt2'"):
        load_task(_task_file(tmp_path, {**base, "model": "roberta"}))
    with pytest.raises(UserError, match=r"t.yaml: nlp.max_lenght: unknown key \(did you mean 'max_length'\?\)"):
        load_task(_task_file(tmp_path, {**base, "max_lenght": 12}))
    with pytest.raises(UserError, match=r"t.yaml: nlp.model: 'lstm' does not fit task 'classification'"):
        load_task(_task_file(tmp_path, {**base, "model": "lstm"}))
    task = load_task(_task_file(tmp_path, base))
    assert task.section.model_type == "bert"


def test_tokenizer_model_vocabulary_mismatch(workdir, tmp_path):
    small = make_adapter(workdir, "bert", vocab_size=120)
    small.build(0)
    small.module.save_pretrained(str(tmp_path / "small"))  # embeds ~120 tokens, no tokenizer saved
    big = make_adapter(workdir, "bert", vocab_size=400, tokenizer="train", pretrained=str(tmp_path / "small"))
    with pytest.raises(UserError, match=r"^nlp.tokenizer: the tokenizer has \d+ tokens but the model .* embeds only"):
        big.build(0)


def test_unknown_model_arg_and_too_long_sequences(workdir):
    with pytest.raises(UserError, match=r"^nlp.model_args.hidden_sise: not an attribute of BertConfig$"):
        make_adapter(workdir, "bert", model_args={"hidden_sise": 8}).build(0)
    with pytest.raises(UserError, match=r"^nlp.max_length: 64 exceeds the model's 26 positions$"):
        make_adapter(workdir, "bert", pretrained=None, model_args={"max_position_embeddings": 26}, max_length=64).build(
            0
        )


def test_trained_tokenizer_is_cached_in_the_workdir(workdir):
    first = make_adapter(workdir, "bert")
    first.build(0)
    cached = list((workdir / "tokenizers").iterdir())
    assert len(cached) == 1 and (cached[0] / "tokenizer.json").is_file()
    stamp = (cached[0] / "tokenizer.json").stat().st_mtime_ns
    second = make_adapter(workdir, "bert")
    second.build(1)
    assert (cached[0] / "tokenizer.json").stat().st_mtime_ns == stamp
    assert second.tokenizer.get_vocab() == first.tokenizer.get_vocab()


def test_shipped_nlp_tasks_validate():
    from multiticket.paths import shipped_tasks

    nlp = {name: path for name, path in shipped_tasks().items() if name in SHIPPED}
    assert set(nlp) == SHIPPED
    for path in nlp.values():
        task = load_task(path)
        assert task.config.domain == "nlp" and task.config.prune.levels >= 4
        controls = set(task.config.controls)
        # random re-initialisation, and a random mask: drawn fresh, or (for a pretrained network,
        # which cannot learn from a fresh init in a short fine-tuning) over the pretrained weights
        assert "random_reinit" in controls
        assert ("random_prune" if task.section.pretrained else "random_mask") in controls, path.name


SHIPPED = {"rotten-tomatoes-bert", "rotten-tomatoes-minilm", "rotten-tomatoes-minilm-tickets", "austen-gpt2",
           "austen-lstm", "bible-en-es-marian"}


def test_too_few_num_labels(workdir):
    with pytest.raises(UserError, match=r"^nlp.num_labels: 2 is fewer than the 3 labels in the data$"):
        adapter = make_adapter(workdir, "bert", dataset=str(_three_labels(workdir)), num_labels=2)
        adapter.build(0)


def _three_labels(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "three.csv"
    path.write_text("text,label\n" + "".join(f"text {i},{['a', 'b', 'c'][i % 3]}\n" for i in range(60)))
    return path
