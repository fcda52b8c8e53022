"""Raw text data for the three task kinds: load, check columns, cap, and hand out plain strings.

Sources, in order of precedence (``nlp.dataset``):
1. a built-in corpus shipped in ``multiticket/resources/data`` (``rotten_tomatoes`` or
   ``builtin:rotten_tomatoes``): works offline;
2. ``data_files`` (split -> file): ``datasets.load_dataset(dataset, data_files=...)`` where
   ``dataset`` is a loader name (csv, json, text, parquet);
3. a local file or folder;
4. anything else is a Hub dataset id (needs internet, or a warm cache with HF_DATASETS_OFFLINE=1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from multiticket.adapters.hf.section import NLPSection
from multiticket.errors import UserError
from multiticket.paths import DATA_DIR

#: loader name of each file extension (compressed files keep their inner extension)
LOADERS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".txt": "text",
    ".parquet": "parquet",
}
SPLITS = ("train", "validation", "test")


def builtin_datasets() -> dict[str, Path]:
    """Name -> folder of every corpus shipped with the package."""
    if not DATA_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(DATA_DIR.iterdir()) if p.is_dir() and any(p.glob("train.*"))}


def _loader_of(path: Path) -> str | None:
    suffixes = [s for s in path.suffixes if s not in (".gz", ".bz2", ".xz", ".zst")]
    return LOADERS.get(suffixes[-1]) if suffixes else None


@dataclass
class Splits:
    """Plain-Python columns per split: what the tokenization step needs, nothing else."""

    train: dict[str, list[Any]]
    validation: dict[str, list[Any]]
    test: dict[str, list[Any]]
    label_names: list[str] = field(default_factory=list)

    def split(self, name: str) -> dict[str, list[Any]]:
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]


def _load_raw(section: NLPSection, cache_dir: Path) -> Any:
    """A ``DatasetDict`` from the configured source, or a UserError naming the field."""
    import datasets

    name = section.dataset
    builtins = builtin_datasets()
    kwargs: dict[str, Any] = {"cache_dir": str(cache_dir)}
    bare = name.removeprefix("builtin:")
    if section.data_files is None and (name.startswith("builtin:") or bare in builtins):
        if bare not in builtins:
            known = ", ".join(builtins) or "none"
            raise UserError(f"nlp.dataset: no built-in dataset '{bare}' (built-in: {known})")
        folder = builtins[bare]
        files = {s: str(f) for s in SPLITS for f in sorted(folder.glob(f"{s}.*"))[:1]}
        loader = _loader_of(Path(files["train"]))
        return _call(datasets.load_dataset, "nlp.dataset", name, loader, data_files=files, **kwargs)
    if section.data_files is not None:
        data_files = section.data_files
        for split, paths in data_files.items():
            for p in [paths] if isinstance(paths, str) else paths:
                if "://" not in p and not Path(p).exists():
                    raise UserError(f"nlp.data_files.{split}: no such file '{p}'")
        return _call(datasets.load_dataset, "nlp.dataset", name, name, data_files=data_files, **kwargs)
    path = Path(name)
    if path.is_file():
        loader = _loader_of(path)
        if loader is None:
            raise UserError(f"nlp.dataset: cannot tell the format of '{name}' (use .csv, .json(l), .txt, .parquet)")
        return _call(datasets.load_dataset, "nlp.dataset", name, loader, data_files={"train": name}, **kwargs)
    if path.is_dir():
        return _call(datasets.load_dataset, "nlp.dataset", name, name, **kwargs)
    if name.startswith((".", "/", "~")) or _loader_of(path) is not None:
        raise UserError(f"nlp.dataset: no such file or folder '{name}'")
    return _call(datasets.load_dataset, "nlp.dataset", name, name, section.dataset_config, **kwargs)


def _call(fn: Any, field_name: str, shown: str, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{field_name}: cannot load '{shown}': {first}") from exc


def _subset(n: int, cap: int | None, seed: int) -> list[int]:
    """A seeded random subset of ``cap`` indices kept in their original order (so text stays in
    reading order and capped runs are reproducible)."""
    if cap is None or cap >= n:
        return list(range(n))
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(n, size=cap, replace=False).tolist())


def _columns_needed(section: NLPSection) -> list[tuple[str, str]]:
    """(section field, column name) pairs that must exist in every split."""
    if section.task == "classification":
        cols = [("text_column", section.text_column), ("label_column", section.label_column)]
        if section.text_pair_column:
            cols.append(("text_pair_column", section.text_pair_column))
        return cols
    if section.task == "causal_lm":
        return [("text_column", section.text_column)]
    if section.translation_column:
        return [("translation_column", section.translation_column)]
    return [("source_lang", section.source_lang), ("target_lang", section.target_lang)]


def load_splits(section: NLPSection, cache_dir: Path) -> Splits:
    """Load, check and cap the data; split off validation/test from train when a source lacks them.
    Empty files, empty splits and missing labels stop here, naming the field, file and row."""
    for field_name, path in _local_files(section):
        _check_not_empty(field_name, path)
    raw = _load_raw(section, cache_dir)
    wanted = {
        "train": section.train_split,
        "validation": section.validation_split,
        "test": section.test_split,
    }
    if wanted["train"] not in raw:
        have = ", ".join(raw)
        raise UserError(f"nlp.train_split: split '{wanted['train']}' not in dataset (splits: {have})")
    columns = raw[wanted["train"]].column_names
    for field_name, col in _columns_needed(section):
        if col not in columns:
            raise UserError(f"nlp.{field_name}: column '{col}' not in dataset (columns: {', '.join(columns)})")
    used = {s: raw[name] for s, name in wanted.items() if name in raw}
    for s, ds in used.items():
        if len(ds) == 0:
            raise UserError(f"{_split_field(section, s, wanted[s])}: split '{wanted[s]}' has no rows")
        if section.task == "classification":
            used[s] = _checked_labels(section, ds, s, wanted[s])
    parts = _with_held_out(used)
    label_names: list[str] = []
    if section.task == "classification":
        feature = parts["train"].features[section.label_column]
        label_names = _given_labels(section) or list(getattr(feature, "names", []) or [])
    out: dict[str, dict[str, list[Any]]] = {}
    for s, ds in parts.items():
        cap = section.max_train_examples if s == "train" else section.max_eval_examples
        idx = _subset(len(ds), cap, seed=0)
        if len(idx) != len(ds):
            ds = ds.select(idx)
        out[s] = _columns_of(section, ds)
        if not out[s]["n"][0]:
            raise UserError(f"{_split_field(section, s, wanted[s])}: split '{wanted[s]}' has no usable examples")
    if section.task == "classification":
        label_names = _encode_labels(out, label_names)
    return Splits(out["train"], out["validation"], out["test"], label_names)


def _with_held_out(used: dict[str, Any]) -> dict[str, Any]:
    """The three splits; those the source lacks are held out of train (seed 0, 10 % each)."""
    missing = [s for s in ("validation", "test") if s not in used]
    if not missing:
        return dict(used)
    parts: dict[str, Any] = dict(used)
    held = used["train"].train_test_split(test_size=0.1 * len(missing), seed=0, shuffle=True)
    parts["train"] = held["train"]
    if len(missing) == 2:
        halves = held["test"].train_test_split(test_size=0.5, seed=0, shuffle=True)
        parts["validation"], parts["test"] = halves["train"], halves["test"]
    else:
        parts[missing[0]] = held["test"]
    return parts


def _local_files(section: NLPSection) -> list[tuple[str, Path]]:
    """(field, path) of every local data file the task names (not built-ins, not the Hub)."""
    if section.data_files is not None:
        return [
            (f"nlp.data_files.{split}", Path(p))
            for split, paths in section.data_files.items()
            for p in ([paths] if isinstance(paths, str) else paths)
            if "://" not in p and Path(p).is_file()
        ]
    path = Path(section.dataset)
    return [("nlp.dataset", path)] if path.is_file() else []


def _check_not_empty(field_name: str, path: Path) -> None:
    """A 0-byte file, or a text file with nothing below its header, is a UserError naming the
    field (datasets would fail later with a long traceback or blame the wrong key)."""
    if path.stat().st_size == 0:
        raise UserError(f"{field_name}: '{path}' is empty (0 bytes)")
    loader = _loader_of(path)
    if loader not in ("csv", "json", "text") or path.suffixes[-1] in (".gz", ".bz2", ".xz", ".zst"):
        return
    lines = 0
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            lines += bool(line.strip())
            if lines > 1:
                return
    if loader == "csv" and lines == 1:
        raise UserError(f"{field_name}: '{path}' has a header but no rows")
    if lines == 0:
        raise UserError(f"{field_name}: '{path}' has no rows (only blank lines)")


def _split_field(section: NLPSection, split: str, name: str) -> str:
    """The task-file key to blame for a split's content: its data_files entry when there is one."""
    if section.data_files is not None and name in section.data_files:
        return f"nlp.data_files.{name}"
    return "nlp.dataset" if split == "train" else f"nlp.{split}_split"


def _where(section: NLPSection, name: str) -> str:
    """The file a split came from (quoted), or the split's name when it has several or none."""
    if section.data_files is not None and isinstance(section.data_files.get(name), str):
        return f"'{section.data_files[name]}'"
    if section.data_files is None and Path(section.dataset).is_file():
        return f"'{section.dataset}'"
    return f"split '{name}' of '{section.dataset}'"


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and not value.strip()
    )


def _checked_labels(section: NLPSection, ds: Any, split: str, name: str) -> Any:
    """The split without rows whose label is missing (with ``drop_missing_labels``), else a
    UserError naming the file and the row (1 = the first data row); with ``labels`` given,
    every label must be one of them."""
    values = ds[section.label_column]
    missing = [i for i, v in enumerate(values) if _is_missing(v)]
    if missing and not section.drop_missing_labels:
        raise UserError(
            f"nlp.label_column: {_where(section, name)} data row "
            f"{missing[0] + 1} has no label in column '{section.label_column}' ({len(missing)} such row(s); "
            "fill them in or set nlp.drop_missing_labels: true)"
        )
    names, drop = _given_labels(section), set(missing)
    if names:
        for i, v in enumerate(values):
            if i not in drop and _label_index(v, names) is None:
                raise UserError(
                    f"nlp.labels: {_where(section, name)} data row {i + 1} has label '{v}', "
                    f"which is not one of the {len(names)} labels given"
                )
    if missing:
        ds = ds.select([i for i in range(len(values)) if i not in drop])
        if len(ds) == 0:
            raise UserError(f"{_split_field(section, split, name)}: split '{name}' has no labelled rows")
    return ds


def _given_labels(section: NLPSection) -> list[str]:
    """``nlp.labels``: a list of names, or a file with one name per line (blank lines ignored)."""
    if section.labels is None:
        return []
    if isinstance(section.labels, list):
        return [str(v) for v in section.labels]
    path = Path(section.labels).expanduser()
    if not path.is_file():
        raise UserError(f"nlp.labels: no such file '{section.labels}'")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(names) < 2 or len(set(names)) != len(names):
        raise UserError(f"nlp.labels: '{section.labels}' must list at least 2 distinct label names, one per line")
    return names


def _label_index(value: Any, names: list[str]) -> int | None:
    """A label's id among given names: by name, or an integer id below their number."""
    value = _plain(value)
    if isinstance(value, str):
        return names.index(value) if value in names else None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= value < len(names):
        return int(value)
    return None


def _plain(value: Any) -> Any:
    """A float label that is a whole number is an int (a CSV column with a blank cell is read as
    floats: once that row is dropped, its labels are the ints the file holds)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _columns_of(section: NLPSection, ds: Any) -> dict[str, list[Any]]:
    """The columns a task needs, as lists; empty text lines are dropped for LM."""
    if section.task == "classification":
        cols = {"text": [str(t) for t in ds[section.text_column]], "label": list(ds[section.label_column])}
        if section.text_pair_column:
            cols["text_pair"] = [str(t) for t in ds[section.text_pair_column]]
        cols["n"] = [len(cols["text"])]
        return cols
    if section.task == "causal_lm":
        lines = [str(t) for t in ds[section.text_column] if t is not None and str(t).strip()]
        return {"text": lines, "n": [len(lines)]}
    if section.translation_column:
        pairs = ds[section.translation_column]
        for lang, name in ((section.source_lang, "source_lang"), (section.target_lang, "target_lang")):
            if pairs and lang not in pairs[0]:
                have = ", ".join(pairs[0])
                raise UserError(f"nlp.{name}: language '{lang}' not in '{section.translation_column}' ({have})")
        src = [str(p[section.source_lang]) for p in pairs]
        tgt = [str(p[section.target_lang]) for p in pairs]
    else:
        src = [str(t) for t in ds[section.source_lang]]
        tgt = [str(t) for t in ds[section.target_lang]]
    return {"source": src, "target": tgt, "n": [len(src)]}


def _encode_labels(out: dict[str, dict[str, list[Any]]], names: list[str]) -> list[str]:
    """Map labels to 0..C-1: given names (``nlp.labels``, a ClassLabel's names) map names and ids;
    otherwise the sorted set of training values, whose string forms name the classes."""
    for cols in out.values():
        cols["label"] = [_plain(v) for v in cols["label"]]
    if names:
        for cols in out.values():
            cols["label"] = [_label_index(v, names) for v in cols["label"]]
        return names
    values = sorted(set(out["train"]["label"]), key=lambda v: (str(type(v)), v))
    if all(isinstance(v, (int, np.integer)) for v in values) and values == list(range(len(values))):
        return [str(v) for v in values]
    index = {v: i for i, v in enumerate(values)}
    for s, cols in out.items():
        unknown = [v for v in cols["label"] if v not in index]
        if unknown:
            raise UserError(f"nlp.label_column: label '{unknown[0]}' in split '{s}' never occurs in train")
        cols["label"] = [index[v] for v in cols["label"]]
    return [str(v) for v in values]
