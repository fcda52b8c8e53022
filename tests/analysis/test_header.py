"""The report header says what ran (multiticket/analysis/header.py): algorithm or model, environment
or dataset, model class, resolved hyperparameters, steps, library versions and the command line,
from config.yaml and provenance.json; "not recorded" for a run made before that record; transfer
runs titled source -> target with both algorithms."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from multiticket.analysis.header import NOT_RECORDED, header
from multiticket.analysis.report import write_report
from multiticket.analysis.rundata import load_run
from multiticket.cli import main
from multiticket.errors import UserError
from multiticket.provenance import PROVENANCE
from tests.analysis.synthetic import make_run


def _rows(run_dir: Path) -> dict[str, str]:
    return dict(header(load_run(run_dir))["rows"])


def _only_run(out: Path) -> Path:
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def test_a_toy_run_records_and_shows_what_ran(tmp_path):
    out = tmp_path / "runs"
    first = ["run", "toy-mlp", "--out", str(out), "--levels", "1", "--set", "train.steps=100", "--quiet",
             "--workers", "1"]
    assert main(first) == 0
    run = _only_run(out)
    record = json.loads((run / PROVENANCE).read_text())
    assert record["commands"] == ["multiticket run toy-mlp --out " + str(out) + " --levels 1 --set train.steps=100 "
                                  "--quiet --workers 1"]
    assert record["model_class"] == "torch.nn.modules.container.Sequential"
    assert record["hyperparameters"]["lr"] == 0.05 and record["hyperparameters"]["hidden"] == [128, 64]
    assert main([*first, "--seeds", "0,1"]) == 0  # resumed and extended: both command lines, same directory
    assert _only_run(out) == run
    rows = _rows(run)
    assert rows["domain"] == "toy"
    assert rows["model class"] == "torch.nn.modules.container.Sequential"
    assert "lr=0.05" in rows["hyperparameters"] and "hidden=[128, 64]" in rows["hyperparameters"]
    assert rows["train steps / rewind step"] == "100 / 2 (2%) (rewind mode weights)"
    assert "torch " in rows["library versions"] and "python " in rows["library versions"]
    assert rows["command line"] == f"{record['commands'][0]} ; {record['commands'][0]} --seeds 0,1"


def test_an_rl_run_shows_the_real_env_and_the_agents_entry_it_used(tmp_path, capsys):
    pytest.importorskip("stable_baselines3")
    out = tmp_path / "runs"
    assert main(["run", "cartpole-dqn", "--out", str(out), "--levels", "0", "--quiet", "--workers", "1",
                 "--set", "train.steps=200", "--set", "rewind.step=0", "--set", "rl.n_eval_episodes=1",
                 "--set", "rl.env=Acrobot-v1", "--set", "rl.overrides.learning_rate=0.001"]) == 0
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if "warning" in ln]
    assert warnings == ["multiticket: warning: the run name 'cartpole-dqn' no longer describes the run "
                        "(rl.env=Acrobot-v1); it stays, so that existing run directories keep their names: the "
                        "report header shows what ran"]
    run = _only_run(out)
    assert run.name.startswith("cartpole-dqn-")
    rows = _rows(run)
    assert rows["algorithm"] == "DQN" and rows["environment"] == "Acrobot-v1"
    assert rows["model class"] == "stable_baselines3.dqn.dqn.DQN"
    hyper = rows["hyperparameters"]
    assert "learning_rate=0.001" in hyper and "policy=MlpPolicy" in hyper and "n_timesteps" not in hyper
    assert hyper.endswith("[agents/dqn.yaml entry 'Acrobot-v1' + rl.overrides; SB3's defaults for the rest]")
    assert "stable-baselines3 " in rows["library versions"] and "gymnasium " in rows["library versions"]


def test_a_run_made_before_the_record_shows_not_recorded(tmp_path):
    run = make_run(tmp_path, domain="rl")
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["rl"] = {"env": "CartPole-v1", "algo": "ppo", "hyperparams": None, "overrides": {"gamma": 0.9}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    rows = _rows(run)
    assert rows["algorithm"] == "PPO" and rows["environment"] == "CartPole-v1"
    for key in ("model class", "library versions", "command line"):
        assert rows[key] == NOT_RECORDED
    assert rows["hyperparameters"] == (f"{NOT_RECORDED}; config: agents/ppo.yaml entry 'CartPole-v1' "
                                       '+ rl.overrides {"gamma": 0.9}')
    html = write_report(run).read_text()
    assert html.count("not recorded (the run predates this record)") >= 4


def test_a_malformed_record_is_one_error_naming_the_file(tmp_path):
    run = make_run(tmp_path, domain="nlp")
    (run / PROVENANCE).write_text(json.dumps({"commands": "multiticket run x"}))
    with pytest.raises(UserError, match=rf"^{run / PROVENANCE}: commands: Input should be a valid list"):
        write_report(run)
    (run / PROVENANCE).write_text(json.dumps({"commands": ["<script>x</script>"], "hyperparameters": {"a": 1}}))
    html = write_report(run).read_text()
    assert "<script>x" not in html and "&lt;script&gt;x&lt;/script&gt;" in html


def _transfer_of(source: Path, tmp_path: Path) -> Path:
    """A synthetic transfer run of ``source``'s tickets to A2C."""
    target = make_run(tmp_path / "target", domain="rl")
    config = yaml.safe_load((target / "config.yaml").read_text())
    config.update(name=f"cartpole-a2c-from-{source.name}", rl={"env": "CartPole-v1", "algo": "a2c"},
                  transfer={"source": source.name, "source_dir": str(source)})
    (target / "config.yaml").write_text(yaml.safe_dump(config))
    return target


def test_a_transfer_run_is_titled_source_to_target_with_both_algorithms(tmp_path):
    source = make_run(tmp_path / "source", domain="rl")
    config = yaml.safe_load((source / "config.yaml").read_text())
    (source / "config.yaml").write_text(yaml.safe_dump({**config, "rl": {"env": "CartPole-v1", "algo": "ppo"}}))
    target = _transfer_of(source, tmp_path)
    title = "synthetic-rl (PPO, CartPole-v1) → cartpole-a2c (A2C, CartPole-v1)"
    assert header(load_run(target))["title"] == title
    html = write_report(target).read_text()
    assert f"<title>{title} — multiticket report</title>" in html and f"<h1>{title} <span" in html
    shutil.rmtree(source)  # moved away: its directory name is what is left
    assert header(load_run(target))["title"] == f"{source.name} → cartpole-a2c (A2C, CartPole-v1)"


@pytest.mark.parametrize("kind", ["disjoint", "overlapping", "unrecorded", "fixed set"])
def test_the_header_says_whether_seeds_shared_evaluation_episodes(tmp_path: Path, kind: str):
    def extra(seed: int, control: str, level: int) -> dict:
        if kind == "disjoint":
            return {"eval_method": "disjoint", "eval_seeds": [10_000 + 3 * seed + i for i in range(3)]}
        if kind == "overlapping":
            return {"eval_method": "batched", "eval_seeds": [10_000 + seed + i for i in range(3)]}
        return {"eval_method": "batched"} if kind == "unrecorded" else {}

    run = make_run(tmp_path, "rl", seeds=(0, 1), levels=1, extra=extra)
    facts = header(load_run(run))
    rows = dict(facts["rows"])
    page = write_report(run).read_text()
    if kind == "fixed set":
        assert "evaluation episodes" not in rows and facts["overlap"] is None
    elif kind == "disjoint":
        assert rows["evaluation episodes"] == "disjoint across training seeds (2 seeds, recorded per unit)"
        assert facts["overlap"] is None and "Evaluation episodes shared across seeds" not in page
    else:
        expected = "seeds 0 and 1 share 2 episode seed(s)" if kind == "overlapping" else "not recorded"
        assert expected in rows["evaluation episodes"] and "not independent samples" in facts["overlap"]
        assert "Evaluation episodes shared across seeds" in page
