"""Configuration in one place: every cross-field rule is a TaskConfig model validator (so a worker's
``model_validate`` refuses what ``load_task`` refuses), and the hash rule is declared per field."""

from __future__ import annotations

from typing import Annotated

import pytest
import yaml
from pydantic import Field, ValidationError

from multiticket.config import TaskConfig, config_hash, load_task
from multiticket.errors import UserError
from multiticket.launch.jobs import task_from_resolved
from multiticket.paths import TASKS_DIR
from multiticket.schema import AlwaysHashed, NotHashed, Since, Strict, not_hashed_paths, recorded, with_legacy

TOY = TASKS_DIR / "toy-mlp.yaml"
BASE = yaml.safe_load(TOY.read_text())

RULES = {
    "rewind above steps": ({"rewind": {"step": 5000}}, "rewind.step: must be below train.steps"),
    "finetune without lr": ({"rewind": {"mode": "finetune"}}, "rewind.finetune_lr: required"),
    "lr without finetune": ({"rewind": {"finetune_lr": 0.1}}, "rewind.finetune_lr: only used with"),
    "early bird random": ({"controls": ["early_bird"], "prune": {"strategy": "random"}}, "early_bird: needs a magnitude"),
    "early bird interval": ({"early_bird": {"interval": 5000}}, "early_bird.interval: must be 1 to"),
    "td control": ({"controls": ["prune_dense_td"]}, "controls: 'prune_dense_td' needs a targeted_dropout"),
    "td unused": ({"targeted_dropout": {"gamma": 0.5}}, "targeted_dropout.apply_to: 'experiment'"),
    "transfer mask": ({"controls": ["transfer_mask"]}, "controls: transfer_mask exists only"),
    "other section": ({"rl": {"env": "CartPole-v1"}}, "rl: section does not belong to domain 'toy'"),
    "unknown control": ({"controls": ["random_mask_globl"]}, "controls: unknown control 'random_mask_globl' "
                        "(did you mean 'random_mask_global'?"),
    "unknown domain": ({"domain": "tyo"}, "domain: unknown domain 'tyo' (did you mean 'toy'?"),
}


def _with(change: dict) -> dict:
    data = yaml.safe_load(TOY.read_text())
    for key, value in change.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    return data


@pytest.mark.parametrize("case", list(RULES))
def test_model_validate_and_load_task_refuse_alike(case, tmp_path):
    change, message = RULES[case]
    data = _with(change)
    with pytest.raises(ValidationError, match=message.split(": ", 1)[1][:30].replace("(", r"\(")):
        TaskConfig.model_validate(data)
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError) as exc:
        load_task(path)
    assert str(exc.value).startswith(f"{path}: {message}")


def test_a_worker_rebuilding_a_bad_config_is_refused_with_one_line():
    resolved = load_task(TOY).resolved
    resolved["rewind"]["step"] = resolved["train"]["steps"]
    with pytest.raises(UserError, match=r"^runs/x/config.yaml: rewind.step: must be below train.steps"):
        task_from_resolved(resolved, "runs/x/config.yaml")


def test_a_worker_rebuilds_the_same_task():
    task = load_task(TOY, ["early_bird.window=3", "controls=[early_bird]"])
    again = task_from_resolved(task.resolved, task.source)
    assert again.run_name == task.run_name and again.resolved == task.resolved


def test_not_hashed_keys_are_declared_on_the_fields():
    assert set(not_hashed_paths(TaskConfig)) == {
        ("description",), ("seeds",), ("prune", "levels"), ("controls",), ("checkpoint",), ("transfer", "source_dir"),
        ("report", "metric"), ("report", "correction"), ("tracking",),
    }


class _Section(Strict):
    old: AlwaysHashed[int] = 1
    note: NotHashed[str | None] = None
    added: int = 3  # a key added after runs existed: no mark


def test_recorded_leaves_new_keys_at_their_default_out():
    assert recorded(_Section()) == {"old": 1}
    assert recorded(_Section(added=4, note="x")) == {"old": 1, "note": "x", "added": 4}


def test_a_key_added_later_never_renames_old_runs():
    class Train(Strict):
        steps: AlwaysHashed[int] = Field(gt=0)
        warmup: int = 0  # new: hashed only when set

    before = {"name": "x", "domain": "toy", "train": {"steps": 10}}
    assert config_hash({**before, "train": recorded(Train(steps=10))}) == config_hash(before)
    assert config_hash({**before, "train": recorded(Train(steps=10, warmup=2))}) != config_hash(before)
    assert config_hash({**before, "seeds": [3, 4]}) == config_hash(before)  # NotHashed


class _Fused(Strict):
    lr: AlwaysHashed[float] = 0.1
    fused: Annotated[bool, Since(False)] = True  # new, and its default changes results


def test_a_since_key_renames_new_runs_and_keeps_old_ones():
    """Hashed unless at its legacy value: a run at the new default gets a new name; the legacy
    value keeps the old one; an old recorded section (no key) reads as the legacy value."""
    old = {"name": "x", "domain": "nlp", "nlp": {"lr": 0.1}}
    assert recorded(_Fused()) == {"lr": 0.1, "fused": True}
    new = {**old, "nlp": recorded(_Fused())}
    assert config_hash(new, _Fused) != config_hash(old, _Fused)
    assert config_hash({**old, "nlp": recorded(_Fused(fused=False))}, _Fused) == config_hash(old, _Fused)
    assert _Fused.model_validate(with_legacy({"lr": 0.1}, _Fused)).fused is False
    assert _Fused.model_validate(with_legacy({"lr": 0.1, "fused": True}, _Fused)).fused is True


def test_nlp_runs_made_before_the_fused_kernel_keep_their_names():
    """rotten-tomatoes-bert-e0af8d28 was the shipped task's run before ``nlp.adamw_fused``."""
    assert load_task(TASKS_DIR / "rotten-tomatoes-bert.yaml", ["nlp.adamw_fused=false"]).run_name == "rotten-tomatoes-bert-e0af8d28"
    assert load_task(TASKS_DIR / "rotten-tomatoes-bert.yaml").section.adamw_fused is True
