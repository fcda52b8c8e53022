import pytest

from multiticket.cli import main
from multiticket.config import config_hash, load_task
from multiticket.errors import UserError
from multiticket.paths import TASKS_DIR

TOY = TASKS_DIR / "toy-mlp.yaml"


def test_hash_is_pinned():
    """If this changes, every existing run directory name changes: bump deliberately."""
    resolved = load_task(TOY).resolved
    assert config_hash(resolved) == load_task(TOY).hash
    fixed = {"name": "x", "domain": "toy", "train": {"steps": 10}, "prune": {"rate": 0.2, "levels": 3},
             "seeds": [0], "controls": []}
    assert config_hash(fixed) == "4e8cc43a"


def test_hash_ignores_work_extending_keys_but_not_hyperparameters():
    base = load_task(TOY).hash
    assert load_task(TOY, seeds=[0, 1, 2], levels=9).hash == base
    assert load_task(TOY, ["controls=[one_shot]"]).hash == base
    assert load_task(TOY, ["toy.lr=0.01"]).hash != base
    assert load_task(TOY, ["prune.rate=0.3"]).hash != base
    assert load_task(TOY, ["rewind.step=0"]).hash != base


def test_overrides_and_percentage_rewind():
    task = load_task(TOY, ["train.steps=1000", "rewind.step=5%", "toy.hidden=[8,8]"])
    assert task.config.rewind_step() == 50
    assert task.section.hidden == [8, 8]


BAD = {
    "yaml": ("name: [oops\n", "YAML error"),
    "unknown key": ("name: t\ndomain: toy\ntrain: {steps: 10}\nprune: {rte: 0.2}\n", "prune.rte: unknown key (did you mean 'rate'?)"),
    "wrong type": ("name: t\ndomain: toy\ntrain: {steps: many}\n", "train.steps"),
    "rate range": ("name: t\ndomain: toy\ntrain: {steps: 10}\nprune: {rate: 1.5}\n", "prune.rate"),
    "rate zero": ("name: t\ndomain: toy\ntrain: {steps: 10}\nprune: {rate: 0}\n", "prune.rate"),
    "scope": ("name: t\ndomain: toy\ntrain: {steps: 10}\nprune: {include: ['nothing.*']}\n", "prune.include"),
    "domain section": ("name: t\ndomain: toy\ntrain: {steps: 10}\ntoy: {hiden: [3]}\n", "toy.hiden: unknown key (did you mean 'hidden'?)"),
    "missing": ("name: t\ndomain: toy\n", "train: required key is missing"),
    "rewind": ("name: t\ndomain: toy\ntrain: {steps: 10}\nrewind: {step: 10}\n", "rewind.step"),
    "other domain": ("name: t\ndomain: toy\ntrain: {steps: 10}\nrl: {env: x}\n", "rl: section does not belong"),
    "not a mapping": ("- 1\n- 2\n", "expected a mapping"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_one_line_exit_2_nothing_written(case, tmp_path, capsys):
    text, expected = BAD[case]
    task = tmp_path / "bad.yaml"
    task.write_text(text)
    out = tmp_path / "runs"
    code = main(["run", str(task), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert str(task) in err and expected in err, err
    assert not out.exists()


def test_missing_task_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "none.yaml"), "--out", str(tmp_path)]) == 2
    assert "no such task file" in capsys.readouterr().err


def test_bad_override_syntax(capsys):
    with pytest.raises(UserError):
        load_task(TOY, ["noequals"])


@pytest.mark.parametrize(
    ("task", "sets", "expected"),
    [
        ("cartpole-ppo", [], 2000),  # rl: 5 % of 40000 env steps
        ("toy-mlp", [], 30),  # elsewhere: 2 % of 1500 steps
        ("cartpole-ppo", ["early_bird.interval=2%"], 800),
        ("cartpole-ppo", ["early_bird.window=3"], 2000),
        ("toy-mlp", ["early_bird.interval=7"], 7),
    ],
)
def test_early_bird_interval_defaults_per_domain(task, sets, expected):
    cfg = load_task(TASKS_DIR / f"{task}.yaml", ["controls=[early_bird]", *sets]).config
    assert cfg.early_bird_interval() == expected


def test_unset_early_bird_interval_is_not_in_the_resolved_config():
    task = load_task(TASKS_DIR / "toy-mlp.yaml", ["early_bird.window=4"])
    assert task.resolved["early_bird"] == {"window": 4, "threshold": 0.1}
