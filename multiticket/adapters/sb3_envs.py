"""Training and evaluation environments for the SB3 adapter.

Every env is a seeded ``DummyVecEnv`` of ``Monitor``-wrapped Gymnasium envs (sequential, so runs
are reproducible and cheap on small machines). The ``env_wrapper`` wrappers sit over ``Monitor``
(as in ``make_vec_env`` and RL-Zoo), so recorded returns and episode lengths are the environment's
own, before any reward-shaping wrapper; Atari games get SB3's ``AtariWrapper`` first, as
``make_atari_env`` applies it, then ``VecFrameStack``; ``normalize`` adds ``VecNormalize``. ``rl.env_attrs``
changes an environment's physics after ``gymnasium.make`` (most classic-control environments take
no physics arguments), on training and evaluation environments alike.

Creating environments repeats itself (two per unit, in every worker), and so would Gymnasium's
warnings about them (a custom environment's ``render_mode``, its metadata): each is shown once per
process (:func:`warnings_once`), and an environment whose metadata does not list ``rgb_array`` is
not asked for it (:func:`make_one`), so it gets no ``render_mode`` warning at all.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib.util
import re
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import gymnasium as gym
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecFrameStack, VecNormalize

from multiticket.adapters.sb3_env_spec import env_creator, env_kwargs_problem, is_atari, register_atari
from multiticket.adapters.sb3_hyper import Hyper
from multiticket.errors import UserError


def _missing_dependency(env_id: str, exc: BaseException) -> UserError:
    text = str(getattr(exc, "name", None) or exc).strip().splitlines()[0]
    if "pip install" not in text:
        text += " (pip install it, e.g. 'gymnasium[box2d]' or 'gymnasium[mujoco]')"
    return UserError(f"rl.env: '{env_id}' needs a package that is not installed: {text}")


def _cartpole_derived(env: Any) -> None:
    env.total_mass = env.masspole + env.masscart
    env.polemass_length = env.masspole * env.length


#: environments that derive constants from others in ``__init__``: class name -> (derived names,
#: recompute); the derived ones are recomputed after ``env_attrs`` and cannot be set directly
DERIVED: dict[str, tuple[tuple[str, ...], Callable[[Any], None]]] = {
    "CartPoleEnv": (("total_mass", "polemass_length"), _cartpole_derived),
}


def set_env_attrs(env_id: str, env: gym.Env, attrs: dict[str, Any]) -> None:
    """Set physics constants on the unwrapped ``env`` (``rl.env_attrs``), checking each name and type."""
    base = env.unwrapped
    derived, recompute = DERIVED.get(type(base).__name__, ((), None))
    for name, value in attrs.items():
        if name in derived:
            raise UserError(f"rl.env_attrs.{name}: {env_id} derives it from other constants; set those instead")
        current = getattr(base, name, None)
        if name.startswith("_") or current is None or callable(current):
            constants = {**vars(type(base)), **vars(base)}  # Acrobot keeps its physics on the class
            known = sorted(k for k, v in constants.items() if not k.startswith("_") and k not in derived
                           and isinstance(v, int | float) and not isinstance(v, bool))
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise UserError(f"rl.env_attrs.{name}: {env_id} has no such constant ({hint}numeric ones: {', '.join(known)})")
        if isinstance(current, bool) != isinstance(value, bool) or not isinstance(current, int | float):
            raise UserError(f"rl.env_attrs.{name}: {env_id} holds {current!r} there; got {value!r}")
        setattr(base, name, type(current)(value) if isinstance(current, float) else value)
    if recompute is not None:
        recompute(base)


def apply_wrappers(env: gym.Env, wrappers: list[tuple[type[gym.Wrapper], dict[str, Any]]]) -> gym.Env:
    """Wrap ``env`` (already in ``Monitor``) in the ``env_wrapper`` classes, innermost first."""
    for cls, kwargs in wrappers:
        try:
            env = cls(env, **kwargs)
        except TypeError as exc:
            raise UserError(f"rl.overrides: env_wrapper: {cls.__module__}.{cls.__qualname__} rejected its "
                            f"arguments: {exc}") from None
    return env


#: warnings creating environments has shown in this process: (text, category)
_SHOWN: set[tuple[str, type[Warning]]] = set()


@contextlib.contextmanager
def warnings_once() -> Iterator[None]:
    """Show each warning raised inside at most once per process. The filters stay as they are (an
    ignored warning stays ignored, an error one raises); only a repeat that reaches the display is
    dropped, which Python's own once-per-location rule misses whenever any code resets the warning
    filters (``catch_warnings``), as libraries do between units."""
    show = warnings.showwarning

    def once(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
        key = (str(message), category)
        if key not in _SHOWN:
            _SHOWN.add(key)
            show(message, category, filename, lineno, file, line)

    warnings.showwarning = once
    try:
        yield
    finally:
        warnings.showwarning = show


def lists_rgb_array(env_id: str) -> bool:
    """Whether the environment's metadata lists ``rgb_array`` among its ``render_modes`` (True when
    it has no metadata to read: SB3's default then applies)."""
    try:
        metadata = getattr(env_creator(env_id), "metadata", None)
    except ValueError:
        return True
    if not isinstance(metadata, dict):
        return True
    return "rgb_array" in (metadata.get("render_modes") or ())


def make_one(env_id: str, rgb_array: bool, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` as SB3's ``make_vec_env`` calls it (``render_mode='rgb_array'`` unless the
    task sets one, retried without it when the constructor takes none), but asking for
    ``rgb_array`` only where the environment lists it: a custom environment that does not would
    get Gymnasium's "not in the possible render_modes" warning on every make."""
    if rgb_array and "render_mode" not in kwargs:
        try:
            return gym.make(env_id, render_mode="rgb_array", **kwargs)
        except TypeError:
            pass
    return gym.make(env_id, **kwargs)


def _rejected(env_id: str, kwargs: dict[str, Any], exc: TypeError) -> UserError:
    """``env_kwargs`` the environment refused: the key it does not take, with the closest one it
    does (``rl.env_kwargs.<key>``, so the ``--set`` that gave it is named), else Gymnasium's words."""
    problem = env_kwargs_problem(env_id, kwargs) if re.search(r"unexpected keyword", str(exc)) else None
    if problem is not None:
        return UserError(f"rl.env_kwargs.{problem[0]}: {problem[1]}")
    return UserError(f"rl.env_kwargs: {env_id} rejected them: {exc}")


def make_env(
    env_id: str, hyper: Hyper, seed: int, n_envs: int, training: bool, env_attrs: dict[str, Any] | None = None
) -> VecEnv:
    """A seeded VecEnv; evaluation envs never update normalisation statistics; ``env_attrs`` (the
    task's ``rl.env_attrs``) change the physics of every env in it."""
    kwargs: dict[str, Any] = dict(hyper.env_kwargs)
    if is_atari(env_id) and importlib.util.find_spec("cv2") is None:
        raise UserError(
            f"rl.env: '{env_id}' needs OpenCV for SB3's AtariWrapper (pip install opencv-python-headless)"
        )
    wrap = functools.partial(apply_wrappers, wrappers=hyper.wrappers) if hyper.wrappers else None
    try:
        if is_atari(env_id):
            register_atari()
        make = functools.partial(make_one, env_id, lists_rgb_array(env_id))
        with warnings_once():
            venv: VecEnv = make_vec_env(make, n_envs=n_envs, seed=seed, env_kwargs=kwargs, wrapper_class=wrap)
    except (ImportError, gym.error.DependencyNotInstalled) as exc:
        raise _missing_dependency(env_id, exc) from None
    except TypeError as exc:
        raise _rejected(env_id, kwargs, exc) from None
    if env_attrs:
        assert isinstance(venv, DummyVecEnv), "env_attrs need the envs in this process"
        try:
            for env in venv.envs:
                set_env_attrs(env_id, env, env_attrs)
        except UserError:
            venv.close()
            raise
    if hyper.frame_stack:
        venv = VecFrameStack(venv, n_stack=hyper.frame_stack)
    if hyper.normalize is not None:
        norm = dict(hyper.normalize)
        if not training:
            norm.update(training=False, norm_reward=False)
        try:
            venv = VecNormalize(venv, **norm)
        except TypeError as exc:
            raise UserError(f"rl.overrides: normalize: {exc}") from None
    return venv


def vec_normalize(venv: VecEnv) -> VecNormalize | None:
    """The ``VecNormalize`` layer of ``venv``, if any."""
    while True:
        if isinstance(venv, VecNormalize):
            return venv
        inner = getattr(venv, "venv", None)
        if inner is None:
            return None
        venv = inner
