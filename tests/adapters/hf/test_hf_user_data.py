"""A user's own pretrained folder and CSV files: a head with another number of labels gets a
seeded new head (one line, and a note in metrics.json); blank labels, 0-byte and header-only
files stop before training with one line naming the field, file and row, exit 2, and nothing
is created under --out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from transformers import BertConfig, BertForSequenceClassification

from multiticket.adapters.hf import HFAdapter, NLPSection
from multiticket.adapters.hf.data import load_splits
from multiticket.cli import main
from multiticket.errors import UserError

from hf_testlib import fake_task  # isort: skip

WORDS = ["good", "bad", "fine", "great", "awful", "okay", "nice", "poor", "dull", "bright"]
SMALL = dict(max_length=16, vocab_size=200, batch_size=8, tokenizer="train", tokenizer_type="wordpiece")


def _csv(path: Path, n: int, classes: int, blank_row: int | None = None) -> Path:
    """``n`` rows of text and a string label out of ``classes``; ``blank_row`` (1 = first data row)
    has no label."""
    rows = ["text,label"]
    for i in range(n):
        label = "" if blank_row == i + 1 else f"c{i % classes}"
        rows.append(f"{' '.join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(4))},{label}")
    path.write_text("\n".join(rows) + "\n")
    return path


def _data(folder: Path, classes: int) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    return {s: str(_csv(folder / f"{s}.csv", n, classes)) for s, n in (("train", 48), ("validation", 16), ("test", 16))}


def _two_label_folder(folder: Path) -> Path:
    """A tiny BERT saved with a 2-label head (embeds more tokens than the trained tokenizer has)."""
    cfg = BertConfig(vocab_size=256, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=32, num_labels=2)  # fmt: skip
    torch.manual_seed(0)
    BertForSequenceClassification(cfg).save_pretrained(str(folder))
    return folder


def _task(tmp_path: Path, nlp: dict) -> Path:
    task = {
        "name": "mine", "domain": "nlp", "seeds": [0], "train": {"steps": 2},
        "prune": {"rate": 0.5, "levels": 1}, "rewind": {"step": 0}, "controls": [],
        "nlp": {"task": "classification", "dataset": "csv", **SMALL, **nlp},
    }  # fmt: skip
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


@pytest.mark.parametrize(("classes", "extra", "labels"), [(3, [], 3), (3, ["--set", "nlp.num_labels=16"], 16)])
def test_pretrained_head_of_another_size_gets_a_new_head(tmp_path, capsys, classes, extra, labels):
    folder = _two_label_folder(tmp_path / "two")
    task = _task(tmp_path, {"pretrained": str(folder), "data_files": _data(tmp_path / "data", classes)})
    assert main(["run", str(task), "--out", str(tmp_path / "out"), "--quiet", *extra]) == 0
    line = (
        f"multiticket: warning: nlp.pretrained: '{folder}' has a 2-label head; the task has {labels} labels: "
        "new head classifier.weight, classifier.bias initialised from seed 0"
    )
    assert capsys.readouterr().err.splitlines().count(line) == 1
    (run,) = (tmp_path / "out").iterdir()
    for level in (0, 1):
        note = json.loads((run / f"seed_0/ticket/level_{level}/metrics.json").read_text())["notes"]["new_head"]
        assert note["parameters"] == ["classifier.weight", "classifier.bias"]
        assert (note["pretrained_num_labels"], note["num_labels"], note["init_seed"]) == (2, labels, 0)
    config = json.loads((run / "seed_0/ticket/level_1/hf_model/config.json").read_text())
    # named by the data's strings; ids the data never uses (num_labels above its labels) get LABEL_<id>
    assert config["id2label"] == {str(i): f"c{i}" if i < 3 else f"LABEL_{i}" for i in range(labels)}
    loaded = BertForSequenceClassification.from_pretrained(str(run / "seed_0/ticket/level_1/hf_model"))
    assert loaded.classifier.weight.shape == (labels, 16)
    assert not list((tmp_path / "out").glob(".multiticket-prepare-*"))


def _adapter(tmp_path: Path, **nlp) -> HFAdapter:
    section = NLPSection(task="classification", dataset="csv", data_files=_data(tmp_path / "data", 3), **SMALL, **nlp)
    return HFAdapter(fake_task(), section, tmp_path / "work")


def test_new_head_is_drawn_from_the_init_seed_and_the_backbone_is_loaded(tmp_path):
    folder = _two_label_folder(tmp_path / "two")
    saved = BertForSequenceClassification.from_pretrained(str(folder)).state_dict()
    adapter = _adapter(tmp_path, pretrained=str(folder), reinit_pretrained=False)  # controls keep the backbone
    heads = {}
    for seed, init_seed in ((0, None), (1, 0), (0, 5)):
        adapter.build(seed, init_seed)
        heads[(seed, init_seed)] = adapter.module.classifier.weight.detach().clone()
        assert adapter.module.classifier.weight.shape == (3, 16)
        assert adapter.notes()["new_head"]["init_seed"] == (seed if init_seed is None else init_seed)
        state = adapter.module.state_dict()
        assert all(torch.equal(state[k], v) for k, v in saved.items() if not k.startswith("classifier."))
    assert torch.equal(heads[(0, None)], heads[(1, 0)])  # the init seed alone decides the head
    assert not torch.equal(heads[(0, None)], heads[(0, 5)])


def test_a_shape_mismatch_outside_the_head_is_an_error(tmp_path):
    folder = _two_label_folder(tmp_path / "two")
    adapter = _adapter(tmp_path, pretrained=str(folder), model_args={"intermediate_size": 48})
    with pytest.raises(
        UserError,
        match=r"^nlp.pretrained: '.*two': bert\.encoder\.layer\.0\.intermediate\.dense"
        r"\.(weight|bias) has shape \[32.*\] in the folder but \[48.*\] in the model "
        r"\(check nlp.model_args\)$",
    ):
        adapter.build(0)


def test_a_matching_head_is_loaded_and_noted_nowhere(tmp_path):
    folder = _two_label_folder(tmp_path / "two")
    section = NLPSection(task="classification", dataset="csv", data_files=_data(tmp_path / "data", 2), **SMALL,
                         pretrained=str(folder))  # fmt: skip
    adapter = HFAdapter(fake_task(), section, tmp_path / "work")
    adapter.build(0)
    saved = BertForSequenceClassification.from_pretrained(str(folder)).classifier.weight
    assert adapter.notes() == {} and torch.equal(adapter.module.classifier.weight, saved)


def _bad_run(tmp_path: Path, capsys, data_files: dict, **nlp) -> str:
    task = _task(tmp_path, {"data_files": data_files, **nlp})
    out = tmp_path / "out"
    assert main(["run", str(task), "--out", str(out), "--quiet"]) == 2
    assert not out.exists()
    assert not [p for p in Path(tmp_path).glob("**/.multiticket-prepare-*")]
    (line,) = capsys.readouterr().err.strip().splitlines()
    return line


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "is empty (0 bytes)"), ("text,label\n", "has a header but no rows"), ("text,label\n\n\n", "has a header")],
)
def test_an_empty_or_header_only_split_names_its_data_files_key(tmp_path, capsys, content, message):
    files = _data(tmp_path / "data", 2)
    Path(files["validation"]).write_text(content)
    line = _bad_run(tmp_path, capsys, files)
    assert line.startswith(
        f"multiticket: error: {tmp_path / 'mine.yaml'}: nlp.data_files.validation: '{files['validation']}' {message}"
    )


def test_a_blank_label_names_the_file_and_row(tmp_path, capsys):
    files = _data(tmp_path / "data", 2)
    _csv(Path(files["train"]), 48, 2, blank_row=5)
    line = _bad_run(tmp_path, capsys, files)
    assert line == (
        f"multiticket: error: {tmp_path / 'mine.yaml'}: nlp.label_column: '{files['train']}' data row 5 has no "
        "label in column 'label' (1 such row(s); fill them in or set nlp.drop_missing_labels: true)"
    )


def test_dropping_missing_labels_keeps_the_label_type(tmp_path):
    path = tmp_path / "ints.csv"
    path.write_text("text,label\n" + "".join(f"t {i},{'' if i in (3, 9) else i % 3}\n" for i in range(40)))
    section = NLPSection(task="classification", dataset=str(path), drop_missing_labels=True)
    splits = load_splits(section, tmp_path / "c")
    assert splits.label_names == ["0", "1", "2"]
    assert sum(splits.split(s)["n"][0] for s in ("train", "validation", "test")) == 38
    assert all(type(v) is int for s in ("train", "validation", "test") for v in splits.split(s)["label"])


def test_label_names_from_a_labels_file(tmp_path):
    names = tmp_path / "labels.txt"
    names.write_text("negative\npositive\nneutral\n\n")
    path = tmp_path / "ids.csv"
    path.write_text("text,label\n" + "".join(f"t {i},{i % 2}\n" for i in range(30)))  # ids; 'neutral' never occurs
    splits = load_splits(NLPSection(task="classification", dataset=str(path), labels=str(names)), tmp_path / "c")
    assert splits.label_names == ["negative", "positive", "neutral"]
    assert set(splits.train["label"]) == {0, 1}
    by_name = tmp_path / "names.csv"
    by_name.write_text("text,label\n" + "".join(f"t {i},{['neutral', 'positive'][i % 2]}\n" for i in range(30)))
    splits = load_splits(NLPSection(task="classification", dataset=str(by_name), labels=str(names)), tmp_path / "d")
    assert set(splits.train["label"]) == {1, 2}
    with pytest.raises(
        UserError,
        match=rf"^nlp.labels: '{by_name}' data row 2 has label 'positive', which is not "
        r"one of the 2 labels given$",
    ):
        load_splits(NLPSection(task="classification", dataset=str(by_name), labels=["neutral", "x"]), tmp_path / "e")


def test_units_note_their_training_tokens_and_the_report_shows_tokens_per_second(tmp_path):
    from multiticket.analysis.report import write_report

    folder = _two_label_folder(tmp_path / "two")
    task = _task(tmp_path, {"pretrained": str(folder), "data_files": _data(tmp_path / "data", 2)})
    assert main(["run", str(task), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    (run,) = (tmp_path / "out").iterdir()
    for level in (0, 1):
        record = json.loads((run / f"seed_0/ticket/level_{level}/metrics.json").read_text())
        per_step = record["notes"]["train_tokens"]["tokens_per_step"]
        # 8 rows of four known words each: [CLS] + 4 + [SEP] input ids per row, no padding counted
        assert per_step == 8 * 6, record["notes"]
    html = write_report(run).read_text()
    assert "<th>tokens / s</th>" in html and "optimizer steps / s" in html
