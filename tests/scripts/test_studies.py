"""The study files (studies/*.yaml) and their loader (multiticket.study): what the shipped
studies say, the task files they make, and one line naming the field for every bad input."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from multiticket.errors import UserError
from multiticket.study import build_tasks, load_study, merge, parts_arg, study_parser, task_data

ROOT = Path(__file__).resolve().parents[2]
YU, CHEN = ROOT / "studies" / "yu2019.yaml", ROOT / "studies" / "chen2020.yaml"


def test_yu2019_parts_budgets_and_claims() -> None:
    study = load_study(YU)
    assert list(study.spec.parts) == ["cartpole", "acrobot", "lunarlander", "lunarlander-ppo", "lstm", "transformer"]
    assert study.default_parts == ["cartpole", "acrobot", "lunarlander", "lstm", "transformer"]
    assert list(study.spec.claims)[:3] == ["dense-lands", "ticket-beats-random", "atari"]
    assert [c.id for c in study.unjudged] == ["atari"] and study.unjudged[0].judge == "not-attempted"
    rl = study.claims["cartpole"]
    assert [c.id for c in rl] == ["ticket-beats-random", "one-shot-below-random", "late-rewinding-helps", "iterative-helps"]
    beats = rl[0]
    assert (beats.judge, beats.from_sparsity, beats.widening) == ("beats-random", 0.8, True)  # type: ignore[attr-defined]
    # the transformer's ablations fall back to eval_loss while dense BLEU is below 1
    shot = next(c for c in study.claims["transformer"] if c.id == "one-shot-below-random")
    assert (shot.metric, shot.min_dense, shot.fallback_metric, shot.control) == ("bleu", 1.0, "eval_loss", "one_shot")  # type: ignore[attr-defined]
    assert next(c for c in study.claims["cartpole"] if c.id == "one-shot-below-random").metric is None
    lstm = study.claims["lstm"][0]
    assert (lstm.judge, lstm.metric, lstm.tolerance) == ("matches-dense-at", "perplexity", 0.0513)  # type: ignore[attr-defined]


def test_yu2019_task_files(tmp_path: Path) -> None:
    """Late rewinding at 2 % of training in whole A2C updates, output layers at half rate, PPO's k
    after its first update, the Marian's bf16 only on the paper budget with CUDA."""
    study = load_study(YU)
    part = study.spec.parts["cartpole"]
    cpu = task_data(study, "cartpole", part.tasks[0], "cpu", "cpu", [0, 1, 2])
    assert (cpu["train"]["steps"], cpu["rewind"]["step"], cpu["prune"]["levels"]) == (100_000, 2048, 10)
    assert cpu["rewind"]["step"] % 128 == 0 and cpu["prune"]["rates"] == {"action_net.weight": 0.1, "value_net.weight": 0.1}
    assert cpu["rl"] == {"env": "CartPole-v1", "algo": "a2c", "n_eval_episodes": 10, "hyperparams": "CartPole-v1-yu2019"}
    assert cpu["description"] == ("Yu et al. 2019 reproduction (cpu budget): CartPole-v1, A2C. Written by "
                                  "scripts/reproduce_yu2019.py.")
    ppo = study.spec.parts["lunarlander-ppo"]
    data = task_data(study, "lunarlander-ppo", ppo.tasks[0], "cpu", "cpu", [0, 1])
    assert data["rewind"]["step"] == 2 * 16 * 1024 and "overrides" not in data["rl"]  # RL-Zoo settings as shipped
    assert (data["rl"]["algo"], data["controls"], data["prune"]["levels"]) == ("ppo", ["random_reinit", "random_mask"], 10)
    marian = study.spec.parts["transformer"].tasks[0]
    for budget, device, bf16 in (("paper", "cuda", True), ("paper", "cpu", None), ("cpu", "cuda", None)):
        assert task_data(study, "transformer", marian, budget, device, [0])["nlp"].get("bf16") == bf16
    paper = task_data(study, "transformer", marian, "paper", "cpu", [0])["nlp"]["model_args"]
    assert paper["d_model"] == 512 and "encoder_ffn_dim" in paper  # model_args replaced whole, not merged
    pt = build_tasks(study, "cartpole", "tiny", tmp_path, None, 3, "cpu")
    assert pt.files == [tmp_path / "tasks" / "yu2019-cartpole-a2c.tiny.yaml"] and pt.tasks[0].config.prune.levels == 3
    assert yaml.safe_load(pt.files[0].read_text())["seeds"] == [0, 1, 2]
    assert pt.run_dirs == [tmp_path / pt.tasks[0].run_name]


def test_chen2020_budgets_and_claims() -> None:
    study = load_study(CHEN)
    (key,) = study.spec.parts
    part = study.spec.parts[key]
    assert {b: (part.budgets[b].seeds, part.budgets[b].workers) for b in study.spec.budgets} == {
        "tiny": ([0], 1), "cpu": ([0, 1], "auto"), "gpu": ([0, 1, 2], 8)}
    assert [c.id for c in study.claims[key]] == ["dense-learns", "matching", "beats-random-pruning",
                                                 "beats-random-reinit", "vs-one-shot"]
    tiny = task_data(study, key, part.tasks[0], "tiny", "cpu", [0])
    assert tiny["controls"] == ["random_prune", "random_reinit", "one_shot", "prune_dense"]
    assert (tiny["rewind"]["step"], tiny["nlp"]["pretrained"], tiny["train"]["steps"]) == (0, "minilm", 4)
    assert tiny["prune"]["exclude"] == ["*pooler*"]  # the shipped task's own scope survives the merge


def test_merge_replaces_the_listed_mappings() -> None:
    base = {"a": {"x": 1, "y": 2}, "model_args": {"d": 1, "e": 2}, "k": [1]}
    assert merge(base, {"a": {"y": 3}, "model_args": {"d": 5}, "k": [2]}) == {
        "a": {"x": 1, "y": 3}, "model_args": {"d": 5}, "k": [2]}
    assert base["a"] == {"x": 1, "y": 2}  # the base is not modified


def test_the_command_lines_the_docs_use() -> None:
    from multiticket.cli import _seeds

    study = load_study(YU)
    parser = study_parser(study, "reproduce_yu2019.py", "doc", _seeds)
    args = parser.parse_args(["--parts", "lstm", "--seeds", "0,1,2,3,4", "--workers", "2", "--out", "runs/x"])
    assert (args.parts, args.seeds, args.workers, args.out, args.budget) == (["lstm"], [0, 1, 2, 3, 4], 2, "runs/x", "cpu")
    args = parser.parse_args(["--parts", "lunarlander-ppo", "--levels", "9", "--budget", "paper", "--device", "cuda"])
    assert (args.levels, args.budget, args.device, args.out) == (9, "paper", "cuda", "runs/yu2019")
    assert parts_arg(study, "transformer,cartpole") == ["cartpole", "transformer"]  # the study's order
    with pytest.raises(SystemExit):
        parser.parse_args(["--parts", "cartpol"])
    assert "lstm ~17 min" in parser.epilog  # type: ignore[operator]
    chen = study_parser(load_study(CHEN), "reproduce_chen2020.py", "doc", _seeds)
    with pytest.raises(SystemExit):  # one part: no --parts
        chen.parse_args(["--parts", "minilm"])


def test_set_overrides_every_task_as_run_does(tmp_path: Path) -> None:
    """`--set` reaches the task a study runs (and so its run directory's name, for a hashed key:
    `nlp.adamw_fused=false` names the run a study made before the fused default); a bad key is
    one line naming it."""
    from multiticket.cli import _seeds

    study = load_study(CHEN)
    args = study_parser(study, "reproduce_chen2020.py", "doc", _seeds).parse_args(
        ["--set", "nlp.adamw_fused=false", "--set", "train.steps=7"])
    assert args.set == ["nlp.adamw_fused=false", "train.steps=7"]
    plain = build_tasks(study, "minilm", "tiny", tmp_path, None, None, "cpu")
    legacy = build_tasks(study, "minilm", "tiny", tmp_path, None, None, "cpu", args.set)
    task = legacy.tasks[0]
    assert (task.config.train.steps, task.section.adamw_fused) == (7, False)  # type: ignore[attr-defined]
    assert legacy.run_dirs[0] != plain.run_dirs[0] and legacy.files == plain.files  # the file stays the study's
    with pytest.raises(UserError, match="nlp.adamw_fusd"):
        build_tasks(study, "minilm", "tiny", tmp_path, None, None, "cpu", ["nlp.adamw_fusd=false"])

def write_study(tmp_path: Path, edit: Any) -> Path:
    data = yaml.safe_load(CHEN.read_text())
    edit(data)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


PART = "parts.minilm"


def _set(path: str, value: Any) -> Any:
    def edit(data: dict[str, Any]) -> None:
        *head, last = path.split(".")
        node = data
        for key in head:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return edit


@pytest.mark.parametrize(("edit", "message"), [
    (_set("parts.minilm.titel", "x"), f"{PART}.titel: unknown key"),
    (_set("parts.minilm.budgets.cpu.levels", "8"), f"{PART}.budgets.cpu.levels: Input should be a valid integer"),
    (_set("parts.minilm.seeds", [0.5]), f"{PART}.seeds.0: Input should be a valid integer"),
    (_set("default_budget", "gpus"), "default_budget: not one of tiny, cpu, gpu"),
    (lambda d: d["parts"]["minilm"]["budgets"].pop("gpu"), f"{PART}.budgets: missing budget 'gpu'"),
    (_set("parts.minilm.tasks.0.base", "rotten-tomatoes"), f"{PART}.tasks.0.base: unknown shipped task 'rotten-tomatoes'"),
    (_set("parts.minilm.tasks.0.controls", ["random_prun"]), f"{PART}.tasks.0.controls: unknown control 'random_prun'"),
    (_set("parts.minilm.claims.1", "matchin"), f"{PART}.claims.1.id: unknown claim 'matchin'"),
    (_set("parts.minilm.claims.2", {"id": "beats-random-pruning", "control": "one_shot"}),
     f"{PART}.claims.2.control: 'one_shot' is not a random control"),
    (_set("parts.minilm.claims.1", {"id": "matching", "from_sparsity": 2}),
     f"{PART}.claims.1.from_sparsity: Input should be less than 1"),
    (_set("claims.matching.judge", "matches"), "claims.matching.judge: unknown judge 'matches'"),
    (lambda d: d["parts"]["minilm"]["claims"].pop(0), "claims.dense-learns: no part judges it"),
])
def test_a_bad_study_file_is_one_line_naming_the_field(tmp_path: Path, edit: Any, message: str) -> None:
    path = write_study(tmp_path, edit)
    with pytest.raises(UserError) as err:
        load_study(path)
    assert str(err.value).startswith(f"{path}: {message}") and "\n" not in str(err.value)


def test_the_scripts_exit_2_on_a_bad_study_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_study(tmp_path, _set("budgets", "cpu"))
    for name in ("reproduce_yu2019", "reproduce_chen2020"):
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        assert module.main(["--out", str(tmp_path / "out")], study=path) == 2
        err = capsys.readouterr().err
        assert err == f"{name}: error: {path}: budgets: Input should be a valid list\n"
    assert not (tmp_path / "out").exists()
