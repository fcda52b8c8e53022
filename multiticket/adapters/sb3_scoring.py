"""What SNIP, GraSP and SynFlow score an SB3 policy on: a fixed buffer of rollouts and its losses.

**The buffer** (:func:`collect`). One fresh copy of the task's environment (same wrappers, frame
stacking and physics as training), seeded with the scoring seed, is stepped for ``n · B`` env steps
by a *uniformly random policy* whose actions come from a copy of the action space seeded with that
seed; batch i is the i-th block of ``B`` consecutive transitions, ``B`` the algorithm's minibatch
(``batch_size``; A2C: ``n_steps · n_envs``). Random actions, not the built policy's: the buffer is
then a function of the seed alone, the same whatever weights the module holds when it is drawn
(an IMP level's, a rewind point's), on every machine and in every adapter instance, and no global
RNG is read (the environments and the action space have their own generators). At initialization,
where the pruning-at-init baselines score, it is close to the built policy's own behaviour anyway:
SB3 initialises the action head with gain 0.01, so a fresh PPO/A2C policy is near uniform. Each
transition holds the observation, the action, the reward, the next observation (the terminal one
at an episode's end), whether the episode *terminated* (not truncated: a time limit bootstraps, as
SB3's ``handle_timeout_termination``), and the discounted Monte-Carlo return from that step to the
episode's end (an episode the buffer cuts off is summed to the cut, not bootstrapped). With
``normalize`` (VecNormalize) the observations and rewards are normalised as VecNormalize would after
seeing the whole buffer: its own statistics, its clip and epsilon.

**The loss** (:func:`scoring_loss`), one per family, each the loss the algorithm itself minimises,
made deterministic:

- PPO, A2C: the actor-critic loss ``-mean(Â · log π(a|s)) - ent_coef · mean(H[π(·|s)]) + vf_coef ·
  mean((V(s) - G)²)`` with the Monte-Carlo return G and Â = G - V(s) (V detached; normalised over
  the batch where the algorithm normalises advantages). PPO's clipped surrogate has this gradient at
  the start of an update (ratio 1), and A2C's loss is this with n-step returns; Monte-Carlo returns
  of the buffer's own rollouts need no bootstrap from the network being scored. The value term keeps
  the critic's weights in the ranking (a policy-only loss would score them all 0).
- DQN: the TD loss ``smooth_l1(Q(s, a), r + γ (1 - terminated) max_a' Q(s', a'))``, the target
  from the online network, detached (the target network equals it right after the core's hard copy
  at a level's start, and the probe loads only the scored weights).
- SAC, TD3: the critic's TD loss ``Σ_j ½ mean((Q_j(s, a) - y)²)``, y = r + γ (1 - terminated) min_j
  Q_j(s', μ(s')) from the online networks, detached, with μ the actor's deterministic action (SAC:
  its squashed mean, no entropy bonus; TD3: no target smoothing noise), *plus* the actor's loss
  ``-mean(Q(s, μ(s)))`` (SAC: min over the critics; TD3: the first, as TD3 does), taken through a
  detached copy of the critic so that each network's weights get the gradient of its own loss (a
  critic-only loss would score every actor weight 0).

**The all-ones output** (:func:`ones_output`) for SynFlow: the policy's outputs on one all-ones
observation (and, for a Q(s, a) critic, an all-ones action in the policy's [-1, 1] action scale):
PPO/A2C the action logits or mean and the value, DQN the Q-values, SAC the actor's pre-squash mean
and every critic's Q, TD3 the actor's action and every critic's Q, side by side in one row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy, ContinuousCritic
from stable_baselines3.common.vec_env import VecEnv, VecNormalize
from stable_baselines3.dqn.policies import DQNPolicy
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import TD3Policy
from torch import nn
from torch.func import functional_call

from multiticket.adapters.sb3_envs import vec_normalize
from multiticket.adapters.sb3_random import RandomPolicy
from multiticket.errors import UserError

#: an observation or a stack of them: an array, or a dict of arrays for Dict observation spaces
Obs = np.ndarray | dict[str, np.ndarray]
#: the fields of a transition, in :class:`ScoringBatch`'s order
FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated", "returns")


@dataclass
class ScoringBatch:
    """``B`` transitions of the scoring buffer (arrays with the transition first)."""

    obs: Obs
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: Obs
    terminated: np.ndarray
    returns: np.ndarray

    def same_as(self, other: ScoringBatch) -> bool:
        """Whether ``other`` holds the same transitions, value for value (arrays have no ``==``)."""
        return all(_equal(getattr(self, f), getattr(other, f)) for f in FIELDS)


def _equal(a: Obs, b: Obs) -> bool:
    if isinstance(a, dict) or isinstance(b, dict):
        return isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys() and all(
            np.array_equal(a[k], b[k]) for k in a)
    return bool(np.array_equal(a, b))


def gamma(model: BaseAlgorithm) -> float:
    """The algorithm's discount (every SB3 algorithm has one; ``BaseAlgorithm`` does not declare it)."""
    return float(cast(Any, model).gamma)


def batch_size(model: BaseAlgorithm) -> int:
    """The algorithm's minibatch: ``batch_size`` (PPO, DQN, SAC, TD3), else one update's rollout (A2C)."""
    size = getattr(model, "batch_size", None)
    if isinstance(size, int) and size > 0:
        return size
    return int(getattr(model, "n_steps", 1)) * int(model.n_envs)


def _stack(items: list[Obs]) -> Obs:
    first = items[0]
    if isinstance(first, dict):
        return {k: np.stack([cast(dict[str, np.ndarray], it)[k] for it in items]) for k in first}
    return np.stack(cast(list[np.ndarray], items))


def _row(obs: Obs, i: int) -> Obs:
    return {k: v[i] for k, v in obs.items()} if isinstance(obs, dict) else obs[i]


def _step_rows(venv: VecEnv, policy: RandomPolicy, obs: Obs) -> tuple[Obs, dict[str, Any]]:
    """One env step of the random policy: the next observation and the transition's row."""
    action, _ = policy.predict(obs)
    stepped, rewards, dones, infos = venv.step(action)
    new_obs = cast(Obs, stepped)  # a Tuple observation space would give a tuple: SB3 supports none
    info = infos[0]
    done = bool(dones[0])
    nxt = info.get("terminal_observation", _row(new_obs, 0)) if done else _row(new_obs, 0)
    truncated = bool(info.get("TimeLimit.truncated", False))
    row = {"obs": _row(obs, 0), "actions": np.asarray(action[0]), "rewards": float(rewards[0]), "next_obs": nxt,
           "terminated": done and not truncated, "done": done}
    return new_obs, row


def _returns(rewards: np.ndarray, dones: np.ndarray, gamma: float) -> np.ndarray:
    """Discounted return from each step to its episode's end (or the buffer's)."""
    out = np.zeros(len(rewards), dtype=np.float64)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + (0.0 if dones[t] else gamma * running)
        out[t] = running
    return out


def _normalise(norm: VecNormalize, rows: dict[str, Any], dones: np.ndarray) -> None:
    """Observations and rewards as ``norm`` (fresh, not stepped) would give them after the buffer:
    its statistics updated with the whole buffer (the reward's with its running discounted return)."""
    if norm.norm_obs:
        rms = norm.obs_rms
        if isinstance(rms, dict):
            for key, stat in rms.items():
                stat.update(rows["obs"][key])
        else:
            rms.update(rows["obs"])
    running, seen = 0.0, []
    for r, done in zip(rows["rewards"], dones, strict=True):
        running = running * norm.gamma + r
        seen.append(running)
        running = 0.0 if done else running
    if norm.norm_reward:
        norm.ret_rms.update(np.asarray(seen))
    rows["obs"], rows["next_obs"] = norm.normalize_obs(rows["obs"]), norm.normalize_obs(rows["next_obs"])
    rows["rewards"] = np.asarray(norm.normalize_reward(rows["rewards"]), dtype=np.float64)


def collect(venv: VecEnv, seed: int, steps: int, gamma: float) -> dict[str, Any]:
    """``steps`` transitions of a uniformly random policy (see the module docstring) on ``venv``
    (one env; any VecNormalize layer is bypassed while stepping and applied at the end)."""
    if venv.num_envs != 1:
        raise ValueError("the scoring buffer is collected on one environment")
    norm = vec_normalize(venv)
    inner = norm.venv if norm is not None else venv
    policy = RandomPolicy(inner.action_space, 1, seed)
    inner.seed(seed)
    obs = cast(Obs, inner.reset())
    raw: list[dict[str, Any]] = []
    for _ in range(steps):
        obs, row = _step_rows(inner, policy, obs)
        raw.append(row)
    dones = np.array([r["done"] for r in raw])
    rows: dict[str, Any] = {k: _stack([r[k] for r in raw]) for k in ("obs", "next_obs", "actions")}
    rows["rewards"] = np.array([r["rewards"] for r in raw], dtype=np.float64)
    rows["terminated"] = np.array([r["terminated"] for r in raw], dtype=np.float32)
    if norm is not None:
        _normalise(norm, rows, dones)
    rows["returns"] = _returns(rows["rewards"], dones, gamma)
    return rows


def split(rows: dict[str, Any], n: int, size: int) -> list[ScoringBatch]:
    """The buffer cut into ``n`` consecutive blocks of ``size`` transitions."""
    def part(value: Any, i: int) -> Any:
        if isinstance(value, dict):
            return {k: v[i * size:(i + 1) * size] for k, v in value.items()}
        return value[i * size:(i + 1) * size]

    return [ScoringBatch(**{k: part(rows[k], i) for k in FIELDS}) for i in range(n)]


# -- losses ---------------------------------------------------------------------------------------
def _obs(policy: BasePolicy, obs: Obs) -> Any:
    tensor, _ = policy.obs_to_tensor(obs)
    return tensor


def _floats(policy: BasePolicy, values: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values), dtype=torch.float32, device=policy.device)


def _actor_critic_loss(model: BaseAlgorithm, policy: ActorCriticPolicy, batch: ScoringBatch) -> torch.Tensor:
    """PPO/A2C: policy gradient with Monte-Carlo advantages, entropy and value terms."""
    actions = torch.as_tensor(batch.actions, device=policy.device)
    if isinstance(policy.action_space, spaces.Discrete):
        actions = actions.long().flatten()
    values, log_prob, entropy = policy.evaluate_actions(_obs(policy, batch.obs), actions)
    values = values.flatten()
    returns = _floats(policy, batch.returns)
    advantages = returns - values.detach()
    if getattr(model, "normalize_advantage", False) and len(advantages) > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    entropy_loss = -torch.mean(-log_prob) if entropy is None else -torch.mean(entropy)
    ent_coef, vf_coef = float(getattr(model, "ent_coef", 0.0)), float(getattr(model, "vf_coef", 0.5))
    value_loss = nn.functional.mse_loss(returns, values)
    return -(advantages * log_prob).mean() + ent_coef * entropy_loss + vf_coef * value_loss


def _dqn_loss(model: BaseAlgorithm, policy: DQNPolicy, batch: ScoringBatch) -> torch.Tensor:
    """DQN: the Huber TD loss, the target from the online network, detached."""
    with torch.no_grad():
        next_q = policy.q_net(_obs(policy, batch.next_obs)).max(dim=1).values
        target = _floats(policy, batch.rewards) + gamma(model) * (1 - _floats(policy, batch.terminated)) * next_q
    actions = torch.as_tensor(batch.actions, device=policy.device).long().reshape(-1, 1)
    current = policy.q_net(_obs(policy, batch.obs)).gather(1, actions).flatten()
    return nn.functional.smooth_l1_loss(current, target)


def _continuous_loss(model: BaseAlgorithm, policy: SACPolicy | TD3Policy, batch: ScoringBatch) -> torch.Tensor:
    """SAC/TD3: the critics' TD loss plus the actor's loss through a detached critic."""
    actor, critic, sac = policy.actor, policy.critic, isinstance(policy, SACPolicy)

    def act(obs: Any) -> torch.Tensor:
        return actor(obs, deterministic=True) if sac else actor(obs)

    obs, next_obs = _obs(policy, batch.obs), _obs(policy, batch.next_obs)
    with torch.no_grad():
        next_q = torch.cat(critic(next_obs, act(next_obs)), dim=1).min(dim=1).values
        target = _floats(policy, batch.rewards) + gamma(model) * (1 - _floats(policy, batch.terminated)) * next_q
    actions = _floats(policy, policy.scale_action(np.asarray(batch.actions))).reshape(len(target), -1)
    critic_loss = 0.5 * sum(nn.functional.mse_loss(q.flatten(), target) for q in critic(obs, actions))
    frozen = {n: p.detach() for n, p in critic.named_parameters()}
    q_pi = functional_call(critic, frozen, (obs, act(obs)))
    actor_q = torch.cat(q_pi, dim=1).min(dim=1).values if sac else q_pi[0].flatten()
    return cast(torch.Tensor, critic_loss) - actor_q.mean()


def scoring_loss(model: BaseAlgorithm, batch: ScoringBatch) -> torch.Tensor:
    """The family's loss of ``model.policy`` on ``batch`` (see the module docstring)."""
    policy = model.policy
    if isinstance(model, (PPO, A2C)):
        return _actor_critic_loss(model, cast(ActorCriticPolicy, policy), batch)
    if isinstance(model, DQN):
        return _dqn_loss(model, cast(DQNPolicy, policy), batch)
    if isinstance(model, (SAC, TD3)):
        return _continuous_loss(model, cast(SACPolicy | TD3Policy, policy), batch)
    raise UserError(f"rl.algo: no scoring loss for {type(model).__name__}")


# -- the all-ones forward -------------------------------------------------------------------------
def _ones_obs(policy: BasePolicy) -> Any:
    space = policy.observation_space
    if isinstance(space, spaces.Dict):
        ones: Obs = {k: np.ones((1, *(s.shape or ())), dtype=s.dtype) for k, s in space.spaces.items()}
    else:
        ones = np.ones((1, *(space.shape or ())), dtype=space.dtype)
    return _obs(policy, ones)


def _actor_critic_ones(policy: ActorCriticPolicy, obs: Any) -> torch.Tensor:
    features = policy.extract_features(obs)
    if policy.share_features_extractor:
        latent_pi, latent_vf = policy.mlp_extractor(features)
    else:
        pi_features, vf_features = features
        latent_pi = policy.mlp_extractor.forward_actor(pi_features)
        latent_vf = policy.mlp_extractor.forward_critic(vf_features)
    return torch.cat([policy.action_net(latent_pi).flatten(1), policy.value_net(latent_vf).flatten(1)], dim=1)


def _critic_ones(critic: ContinuousCritic, obs: Any, action_dim: int, device: torch.device) -> list[torch.Tensor]:
    return [q.flatten(1) for q in critic(obs, torch.ones(1, action_dim, device=device))]


def _actor_head(policy: SACPolicy | TD3Policy, obs: Any) -> torch.Tensor:
    """SAC: the actor's mean before the tanh squashing; TD3: its (squashed) action."""
    if isinstance(policy, SACPolicy):
        return policy.actor.get_action_dist_params(obs)[0]
    return cast(torch.Tensor, policy.actor(obs))


def ones_output(model: BaseAlgorithm) -> torch.Tensor:
    """``model.policy``'s outputs on one all-ones observation, in one row (see the module docstring)."""
    policy = model.policy
    obs = _ones_obs(policy)
    if isinstance(policy, ActorCriticPolicy):
        return _actor_critic_ones(policy, obs)
    if isinstance(policy, DQNPolicy):
        return cast(torch.Tensor, policy.q_net(obs)).flatten(1)
    if isinstance(policy, (SACPolicy, TD3Policy)):
        shape = policy.action_space.shape
        dim = int(np.prod(shape)) if shape else 1
        return torch.cat([_actor_head(policy, obs).flatten(1), *_critic_ones(policy.critic, obs, dim, policy.device)],
                         dim=1)
    raise UserError(f"rl: no all-ones forward for the policy {type(policy).__name__}")
