"""The public ticket callbacks in plain user scripts: ``model.learn(callback=TicketCallback(ticket))``
(PPO, SAC) and ``Trainer(callbacks=[TicketCallback(ticket)])`` train a ticket read from a run with
every pruned entry exactly 0 after every optimizer step (checked from a per-step hook of the
script's own, target networks included), the start weights loaded; the built-in adapters train
their units through the same callbacks; SB3's private fields sit behind a version-checked shim;
and the examples of docs/usage.md run as written (CPU, tiny budgets)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import multiticket
from multiticket.cli import main
from multiticket.core.enforce import MaskEnforcer
from multiticket.core.ticket_binding import TicketBinding, ticket_spec
from multiticket.errors import UserError
from tests.runsnap import only_run

ROOT = Path(__file__).resolve().parents[2]
USAGE = ROOT / "docs" / "usage.md"
RL_QUIET = ["--quiet", "--levels", "1", "--set", "controls=[]", "--set", "rl.tensorboard=false",
            "--set", "rl.n_eval_episodes=2"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _run_recording_bindings(args: list[str]) -> tuple[Path, list[TicketBinding]]:
    """Run ``multiticket run ARGS`` in this process; returns the run and every binding the built-in
    adapter began (one per unit: the proof that it trains through the public callback's mechanism)."""
    begun: list[TicketBinding] = []
    begin = TicketBinding.begin

    def recording(self: TicketBinding, *a: Any, **kw: Any) -> None:
        begun.append(self)
        begin(self, *a, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(TicketBinding, "begin", recording)
        assert main(args) == 0
    return only_run(Path(args[args.index("--out") + 1])), begun


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[TicketBinding]]:
    pytest.importorskip("stable_baselines3")
    out = tmp_path_factory.mktemp("ppo")
    return _run_recording_bindings(["run", "cartpole-ppo", "--out", str(out), *RL_QUIET,
                                    "--set", "train.steps=512", "--set", "rewind.step=128"])


@pytest.fixture(scope="module")
def sac_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[TicketBinding]]:
    pytest.importorskip("stable_baselines3")
    out = tmp_path_factory.mktemp("sac")
    return _run_recording_bindings(["run", "pendulum-sac", "--out", str(out), *RL_QUIET, "--set", "train.steps=300",
                                    "--set", "rewind.step=150", "--set",
                                    "rl.overrides={learning_starts: 100, policy_kwargs: {net_arch: [32, 32]}}"])


#: the shipped rotten-tomatoes-bert task at a tiny budget (as tests/adapters/hf size their models)
BERT_TINY = ["train.steps=8", "rewind.step=2", "controls=[]", "nlp.max_train_examples=160", "nlp.max_eval_examples=16",
             "nlp.max_length=24", "nlp.vocab_size=300", "nlp.batch_size=8", "nlp.warmup_steps=0", "nlp.logging_steps=4",
             "nlp.model_args={hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64}"]


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[TicketBinding]]:
    pytest.importorskip("transformers")
    out = tmp_path_factory.mktemp("bert")
    return _run_recording_bindings(["run", "rotten-tomatoes-bert", "--out", str(out), "--quiet", "--levels", "1",
                                    *[x for s in BERT_TINY for x in ("--set", s)]])


def _pruned_nonzero(params: dict[str, torch.Tensor], mask: dict[str, torch.Tensor]) -> list[str]:
    return [n for n, m in mask.items() if bool((params[n].detach().cpu()[~m] != 0).any())]


# -- the built-in adapters go through the same mechanism ----------------------------------------

@pytest.mark.parametrize("which", ["ppo_run", "sac_run", "bert_run"])
def test_builtin_adapters_train_every_unit_through_the_callbacks_binding(which: str, request: Any) -> None:
    run, begun = request.getfixturevalue(which)
    assert len(begun) == 2, "one binding per unit: the dense level 0 and the pruned level 1"
    dense, pruned = begun
    assert dense.mask is None  # level 0: nothing to enforce (SB3: target networks copied still)
    assert pruned.enforcer is not None and pruned.spec is None  # the core's enforcer, no weights loaded
    assert pruned.mask == multiticket.load_run(run).mask(seed=0, level=1)


# -- SB3: plain scripts ---------------------------------------------------------------------------

class StepCheck:
    """A user's own per-step check: after every optimizer step (a post-step hook on each of the
    algorithm's optimizers) and after every env step, pruned entries of ``named`` are exactly 0."""

    def __init__(self, named: dict[str, torch.Tensor], mask: dict[str, torch.Tensor]) -> None:
        self.named, self.mask, self.steps = named, mask, 0

    def check(self) -> None:
        bad = _pruned_nonzero(self.named, self.mask)
        assert not bad, f"pruned entries revived in {bad[:3]} after {self.steps} optimizer steps"

    def after_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.steps += 1
        self.check()


def _sb3_check_callback(checker: StepCheck, optimizers: Any, on_start: Any = None) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback

    class Check(BaseCallback):
        def _on_training_start(self) -> None:
            if on_start is not None:
                on_start(self.model)
            for opt in optimizers(self.model):
                opt.register_step_post_hook(checker.after_step)
            checker.check()

        def _on_step(self) -> bool:
            checker.check()
            return True

    return Check()


def test_plain_ppo_script_trains_the_ticket_exactly(ppo_run: tuple[Path, list[TicketBinding]]) -> None:
    from stable_baselines3 import PPO

    from multiticket.sb3 import TicketCallback

    ticket = multiticket.load_run(ppo_run[0]).ticket(seed=0, level=1)
    assert ticket.start is not None
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, n_epochs=2, seed=3)
    named = dict(model.policy.named_parameters())
    checker = StepCheck(named, dict(ticket.mask))

    def loaded(model: Any) -> None:  # the ticket's start weights θ_k, pruned entries zeroed
        state = model.policy.state_dict()
        for n, w in ticket.start.items():
            expected = w * ticket.mask[n] if n in ticket.mask else w
            assert torch.equal(state[n], expected), n

    check = _sb3_check_callback(checker, lambda m: [m.policy.optimizer], loaded)
    model.learn(256, callback=[TicketCallback(ticket), check])
    assert checker.steps >= 8  # 4 rollouts x 2 epochs x 1 batch
    checker.check()
    changed = [n for n, m in ticket.mask.items() if not torch.equal(named[n].detach()[m], ticket.start[n][m])]
    assert changed, "training moved the live weights"


def test_plain_sac_script_keeps_targets_exact(sac_run: tuple[Path, list[TicketBinding]]) -> None:
    from stable_baselines3 import SAC

    from multiticket.sb3 import TicketCallback

    ticket = multiticket.load_run(sac_run[0]).ticket(seed=0, level=1)
    model = SAC("MlpPolicy", "Pendulum-v1", learning_starts=50, batch_size=32, seed=1,
                policy_kwargs={"net_arch": [32, 32]})
    mask = dict(ticket.mask)
    target_mask = {n.replace("critic.", "critic_target.", 1): m for n, m in mask.items() if n.startswith("critic.")}
    assert target_mask and any(n.startswith("actor.") for n in mask)
    named = dict(model.policy.named_parameters())
    checker = StepCheck(named, {**mask, **target_mask})

    def copied(model: Any) -> None:  # the target starts as the masked online critic
        online, target = model.critic.state_dict(), model.critic_target.state_dict()
        assert all(torch.equal(online[k], target[k]) for k in online)

    check = _sb3_check_callback(checker, lambda m: [m.actor.optimizer, m.critic.optimizer], copied)
    model.learn(150, callback=[TicketCallback(ticket), check])
    assert checker.steps >= 150  # actor and critic: one gradient step each per env step after learning_starts
    checker.check()  # the last Polyak update too
    moved = [n for n in target_mask if not torch.equal(named[n].detach(), model.critic.state_dict()[n[len("critic_target."):]])]
    assert moved, "the target follows the critic by Polyak averaging, not by copies"


@pytest.mark.parametrize("algo", ["dqn", "td3"])
def test_plain_mask_on_dqn_and_td3_keeps_online_and_target_networks_exact(algo: str) -> None:
    """A mask of one's own (half of each prunable layer) on the other two target-network algorithms."""
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import DQN, TD3

    from multiticket.adapters.sb3_algos import ALGOS, prunable_names
    from multiticket.sb3 import TicketCallback

    small = {"learning_starts": 30, "batch_size": 16, "policy_kwargs": {"net_arch": [16, 16]}, "seed": 0}
    if algo == "dqn":
        model: Any = DQN("MlpPolicy", "CartPole-v1", target_update_interval=20, train_freq=2, **small)
        renames, opts = {"q_net.": "q_net_target."}, lambda m: [m.policy.optimizer]
    else:
        model = TD3("MlpPolicy", "Pendulum-v1", **small)
        renames, opts = {"actor.": "actor_target.", "critic.": "critic_target."}, \
            lambda m: [m.actor.optimizer, m.critic.optimizer]
    gen = torch.Generator().manual_seed(0)
    named = dict(model.policy.named_parameters())
    names = prunable_names(model.policy, ALGOS[algo], ["actor", "critic", "shared"], True)
    mask = {n: torch.rand(named[n].shape, generator=gen) < 0.5 for n in names}
    targets = {new + n[len(old):]: m for n, m in mask.items() for old, new in renames.items() if n.startswith(old)}
    assert targets
    checker = StepCheck(named, {**mask, **targets})
    model.learn(120, callback=[TicketCallback(mask), _sb3_check_callback(checker, opts)])
    assert checker.steps >= 40
    checker.check()


def test_plain_mask_without_start_keeps_the_models_weights(ppo_run: tuple[Path, list[TicketBinding]]) -> None:
    from stable_baselines3 import A2C

    from multiticket.sb3 import TicketCallback

    mask = {n: m.clone() for n, m in multiticket.load_run(ppo_run[0]).mask(seed=0, level=1).items()}
    model = A2C("MlpPolicy", "CartPole-v1", n_steps=8, seed=0)
    before = {n: p.detach().clone() for n, p in model.policy.named_parameters()}
    named = dict(model.policy.named_parameters())
    checker = StepCheck(named, mask)
    callback = TicketCallback(mask)

    def own_weights(model: Any) -> None:
        for n, p in model.policy.named_parameters():
            assert torch.equal(p.detach(), before[n] * mask[n] if n in mask else before[n]), n

    model.learn(64, callback=[callback, _sb3_check_callback(checker, lambda m: [m.policy.optimizer], own_weights)])
    assert checker.steps == 8
    assert callback.binding.enforcer is not None and not callback.binding.enforcer.attached  # detached at the end


def test_a_model_of_another_architecture_is_one_line_naming_the_parameters(
    ppo_run: tuple[Path, list[TicketBinding]],
) -> None:
    from stable_baselines3 import PPO

    from multiticket.sb3 import TicketCallback

    ticket = multiticket.load_run(ppo_run[0]).ticket(seed=0, level=1)
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=16, policy_kwargs={"net_arch": [8]})
    with pytest.raises(UserError) as err:
        model.learn(16, callback=TicketCallback(ticket))
    message = str(err.value)
    assert "\n" not in message and "start weights" in message and "mis-shaped" in message
    assert "mlp_extractor.policy_net.2.weight" in message  # missing from the smaller model
    with pytest.raises(UserError, match="not a mask"):
        TicketCallback({"w": torch.rand(3)})


def test_the_sb3_shim_refuses_versions_it_was_not_written_for() -> None:
    pytest.importorskip("stable_baselines3")
    import stable_baselines3

    from multiticket.adapters import sb3_shim

    sb3_shim.check_version(stable_baselines3.__version__)
    for version in ("2.2.1", "3.0.0", "nightly"):
        with pytest.raises(UserError) as err:
            sb3_shim.check_version(version)
        assert "\n" not in str(err.value) and version in str(err.value)


def test_only_the_shim_touches_sb3s_private_fields() -> None:
    """``model._x`` reads and writes, and ``num_timesteps`` or ``lr_schedule`` writes, appear only in
    sb3_shim.py among the SB3 adapter's modules."""
    private = re.compile(r"\bmodel\._[a-z]\w*|\.(num_timesteps|lr_schedule)\s*=[^=]|_current_progress_remaining")
    adapters = ROOT / "multiticket" / "adapters"
    offenders = [f"{p.name}:{i}" for p in sorted(adapters.glob("sb3*.py")) if p.name != "sb3_shim.py"
                 for i, line in enumerate(p.read_text().splitlines(), 1) if private.search(line)]
    assert not offenders, offenders


# -- HF: a plain Trainer script -------------------------------------------------------------------

def _bf16_on_cpu() -> bool:
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.nn.Linear(2, 2)(torch.ones(1, 2))
    except RuntimeError:
        return False
    return True


def _trainer_check(mask: dict[str, torch.Tensor], start: dict[str, torch.Tensor]) -> Any:
    from transformers import TrainerCallback

    class Check(TrainerCallback):
        """The user's per-step check: start weights in at train begin; pruned gradients already 0
        when the optimizer is about to step (so clipping saw none); weights exact after each step."""

        def __init__(self) -> None:
            self.steps, self.named = 0, {}

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            self.named = dict(model.named_parameters())
            own = model.state_dict()
            for n, w in start.items():
                assert torch.equal(own[n], w * mask[n] if n in mask else w), n

        def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            grads = {n: self.named[n].grad for n in mask}
            assert all(g is not None and bool((g[~mask[n]] == 0).all()) for n, g in grads.items())

        def on_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.steps += 1
            assert not _pruned_nonzero(self.named, mask), f"after optimizer step {self.steps}"

    return Check()


def test_plain_trainer_script_trains_the_ticket_exactly(bert_run: tuple[Path, list[TicketBinding]],
                                                        tmp_path: Path) -> None:
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from multiticket.hf import TicketCallback

    run = multiticket.load_run(bert_run[0])
    ticket = run.ticket(seed=0, level=1)
    assert ticket.start is not None
    folder = run.path / "seed_0" / "ticket" / "level_1" / "hf_model"
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    texts = ["a gem of a film", "flat , dull and far too long", "warm and funny", "a mess"] * 8
    data = Dataset.from_dict({"text": texts, "label": [1, 0, 1, 0] * 8})
    data = data.map(lambda b: tokenizer(b["text"], truncation=True), batched=True, remove_columns=["text"])
    bf16 = _bf16_on_cpu()
    args = TrainingArguments(
        str(tmp_path / "out"), max_steps=6, per_device_train_batch_size=4, gradient_accumulation_steps=2,
        max_grad_norm=0.05, learning_rate=5e-3, lr_scheduler_type="linear", warmup_steps=2, bf16=bf16,
        use_cpu=True, report_to="none", save_strategy="no", logging_steps=2, disable_tqdm=True,
    )  # fmt: skip
    check = _trainer_check(dict(ticket.mask), dict(ticket.start))
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tokenizer),
                      callbacks=[TicketCallback(ticket), check])
    trainer.train()
    assert check.steps == 6
    named = dict(model.named_parameters())
    assert not _pruned_nonzero(named, dict(ticket.mask))
    assert any(not torch.equal(named[n].detach()[m], ticket.start[n][m]) for n, m in ticket.mask.items())


def test_hf_adapter_hands_its_optimizer_and_schedule_to_the_trainer(tmp_path: Path) -> None:
    """Through ``Trainer(optimizers=(optimizer, scheduler))``: nothing overwrites them afterwards."""
    pytest.importorskip("transformers")
    import transformers

    sys.path.insert(0, str(ROOT / "tests" / "adapters" / "hf"))
    from hf_testlib import FakeHooks, make_adapter

    seen: list[Any] = []
    init = transformers.Trainer.__init__

    def spying(self: Any, *a: Any, **kw: Any) -> None:
        init(self, *a, **kw)
        seen.append((self, kw.get("optimizers")))

    adapter = make_adapter(tmp_path)
    adapter.build(0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(transformers.Trainer, "__init__", spying)
        adapter.train(0, 3, FakeHooks())
    ((trainer, optimizers),) = seen
    assert optimizers is not None and optimizers[0] is adapter.optimizers()[0]
    assert trainer.lr_scheduler is optimizers[1]


# -- the binding itself ---------------------------------------------------------------------------

def test_binding_zeroes_gradients_before_any_clipping_and_loads_start_once() -> None:
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    mask = {"0.weight": torch.rand(8, 4, generator=torch.Generator().manual_seed(0)) < 0.5}
    start = {k: torch.full_like(v, 0.5) for k, v in module.state_dict().items()}
    binding = TicketBinding(ticket_spec(mask, start))
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    binding.begin(module, [opt])
    assert torch.equal(module[0].weight.detach(), 0.5 * mask["0.weight"])
    module(torch.ones(3, 4)).sum().backward()
    assert bool((module[0].weight.grad[~mask["0.weight"]] == 0).all())  # before clip_grad_norm_ could read it
    opt.step()
    binding.end()
    binding.begin(module, [opt])  # a second training start: no reload
    assert not torch.equal(module[2].weight.detach(), start["2.weight"])
    binding.end()
    with pytest.raises(ValueError):
        TicketBinding(ticket_spec(mask), enforcer=MaskEnforcer(module, ticket_spec(mask).mask))


# -- docs/usage.md, "Tickets in your own scripts", run as written -------------------------------

def _doc_examples() -> dict[str, str]:
    """The section's python blocks, keyed by the callback module they import."""
    text = USAGE.read_text()
    section = text[text.index("## Tickets in your own scripts"):]
    nxt = section.find("\n## ", 3)
    blocks = re.findall(r"```python\n(.*?)```", section if nxt < 0 else section[:nxt], re.S)
    return {("sb3" if "multiticket.sb3" in b else "hf"): b for b in blocks}


def _body_lines(code: str) -> int:
    """Lines of an example after its imports (blank lines aside): about ten, as the issue asks."""
    return len([ln for ln in code.splitlines() if ln.strip() and not re.match(r"(import|from) ", ln)])


def _tiny(code: str, run: Path, budget: dict[str, int]) -> str:
    """The example with the test's run directory and a tiny budget (the only changes)."""
    code, n = re.subn(r'load_run\("[^"]+"\)', f"load_run({str(run)!r})", code)
    assert n == 1, code
    code = re.sub(r"level=\d+", "level=1", code)
    for key, value in budget.items():
        code, n = re.subn(rf"{key}=[\d_]+", f"{key}={value}", code)
        assert n == 1, (key, code)
    return code


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def test_usage_sb3_example_runs_as_written(ppo_run: tuple[Path, list[TicketBinding]], in_tmp: Path) -> None:
    examples = _doc_examples()
    code = examples["sb3"]
    assert _body_lines(code) <= 10
    scope: dict[str, Any] = {}
    exec(compile(_tiny(code, ppo_run[0], {"total_timesteps": 64}), "usage.md (sb3)", "exec"), scope)
    mask = scope["ticket"].mask
    assert not _pruned_nonzero(dict(scope["model"].policy.named_parameters()), dict(mask))


def test_usage_hf_example_runs_as_written(bert_run: tuple[Path, list[TicketBinding]], in_tmp: Path) -> None:
    code = _doc_examples()["hf"]
    assert _body_lines(code) <= 11  # the Trainer call on two lines
    scope: dict[str, Any] = {}
    exec(compile(_tiny(code, bert_run[0], {"max_steps": 2}), "usage.md (hf)", "exec"), scope)
    mask = scope["ticket"].mask
    assert not _pruned_nonzero(dict(scope["model"].named_parameters()), dict(mask))
    assert scope["trainer"].state.global_step == 2
