"""The one interface every simulated task offers, and the registry that builds tasks by name.

A task is an episode-level wrapper around a simulator:

- ``reset(seed) -> obs`` and ``step(action) -> (obs, success, info)``;
- ``obs`` is a dict of canonical names (the names the ROS topics carry, docs/interfaces.md):
  camera images ``uint8 (H, W, 3)`` under ``image_keys`` and proprio vectors ``float32 (k,)``
  under ``proprio_keys``;
- ``success`` is the simulator's own success test after this step; ``info`` carries at least
  ``step`` (steps taken so far) and ``truncated`` (the step limit is reached).

Tasks register with ``register_task``; ``make_task`` imports the module that defines a task only
when it is first asked for, so building a Push-T task never imports robosuite or MuJoCo.
A new simulator module adds its name to ``_TASK_MODULES`` and calls ``register_task`` at import.

Scripted demonstrators register beside the tasks, with ``register_expert(task, kind, factory)``,
in their own modules: a task module never imports its experts (as environments never import
policies). ``Task.make_expert`` imports the modules named in ``_EXPERT_MODULES`` for the task on
first use, then builds ``factory(task, seed=seed, **kwargs)``.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

Obs = dict[str, np.ndarray]


@runtime_checkable
class PolicyLike(Protocol):
    """What rollouts need from a policy (class_core.policy satisfies it, so do scripted experts)."""

    def reset(self) -> None: ...

    def select_action(self, obs: Mapping[str, np.ndarray]) -> np.ndarray: ...


class Task(ABC):
    """A simulated task. Subclasses set the class attributes and implement ``_reset``/``_step``."""

    name: str = ""
    #: variant chosen at construction (e.g. ``fixed-color``)
    variant: str = ""
    action_dim: int = 0
    max_steps: int = 0
    control_hz: float = 0.0
    image_keys: tuple[str, ...] = ()
    proprio_keys: tuple[str, ...] = ()
    #: numeric ``info`` key that grades partial progress (Push-T: ``coverage``); rollouts report
    #: its episode maximum and final value beside success
    progress_key: str | None = None

    def __init__(self) -> None:
        self._steps = 0
        self._needs_reset = True
        #: set by ``step(observe=...)`` for ``_step``: False lets a task skip rendering (``skip_obs``)
        self._want_obs = True

    # --- the public interface ---------------------------------------------------------------
    def reset(self, seed: int | None = None) -> Obs:
        """Start an episode. The same seed gives the same initial state (and, for randomised
        visual variants, the same appearance)."""
        if seed is not None and (not isinstance(seed, int | np.integer) or seed < 0):
            raise ValueError(f"{self.name}: seed must be a non-negative int, got {seed!r}")
        obs = self._reset(None if seed is None else int(seed))
        self._steps = 0
        self._needs_reset = False
        return obs

    def step(self, action: np.ndarray, observe: bool = True) -> tuple[Obs, bool, dict[str, Any]]:
        """Apply one action; return (obs, success, info).

        ``observe=False``: the caller will not read this observation (a policy between two
        predictions, ``Policy.reads_observation``), so a task whose rendering is a separate cost
        (Push-T) returns an empty dict instead; the others return it anyway. Success and info do
        not depend on it."""
        if self._needs_reset:
            raise RuntimeError(f"{self.name}: step() called before reset()")
        if self._steps >= self.max_steps:
            raise RuntimeError(
                f"{self.name}: step() called after the step limit max_steps={self.max_steps}; call reset()"
            )
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (self.action_dim,):
            raise ValueError(f"{self.name}: action must have shape ({self.action_dim},), got {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"{self.name}: action has a non-finite value: {a.tolist()}")
        self._want_obs = bool(observe)
        try:
            obs, success, info = self._step(a)
        finally:
            self._want_obs = True
        self._steps += 1
        info["step"] = self._steps
        info["truncated"] = self._steps >= self.max_steps
        return obs, bool(success), info

    @property
    def steps(self) -> int:
        """Steps taken in the current episode."""
        return self._steps

    def render(self) -> np.ndarray:
        """A frame for videos, uint8 (H, W, 3); by default the first camera's observation."""
        return self.observe()[self.image_keys[0]]

    def observe(self) -> Obs:
        """The current observation without stepping."""
        raise NotImplementedError(f"{self.name}: observe() is not implemented")

    def skip_obs(self) -> bool:
        """For ``_step``: True when the caller of ``step`` declined this step's observation."""
        return not self._want_obs

    def privileged_state(self) -> np.ndarray:
        """Simulator state a policy never sees (stored as ``state`` by class-collect)."""
        raise NotImplementedError(f"{self.name}: no privileged state")

    def make_expert(self, seed: int | None = None, kind: str | None = None, **kwargs: Any) -> PolicyLike:
        """A scripted demonstrator bound to this task (reads privileged simulator state).

        ``kind`` picks one of the task's registered demonstrators (``expert_kinds(name)``; its
        default when None); ``kwargs`` go to that demonstrator."""
        spec = _expert_spec(self.name, kind)
        return spec.factory(self, seed=seed, **kwargs)

    def episode_info(self) -> dict[str, Any]:
        """JSON-safe per-episode facts worth recording (e.g. sampled colours)."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self) -> Task:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- for subclasses ---------------------------------------------------------------------
    @abstractmethod
    def _reset(self, seed: int | None) -> Obs: ...

    @abstractmethod
    def _step(self, action: np.ndarray) -> tuple[Obs, bool, dict[str, Any]]: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, variant={self.variant!r})"


# --- registry ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskSpec:
    name: str
    variants: tuple[str, ...]
    factory: Callable[..., Task]
    description: str = ""
    default_variant: str = field(default="")


_REGISTRY: dict[str, TaskSpec] = {}

# Task name -> module that registers it on import (imported lazily by make_task).
_TASK_MODULES: dict[str, str] = {
    "pusht": "sim_bridge.pusht",
    "lift": "sim_bridge.robosuite_tasks",
    "stack": "sim_bridge.robosuite_tasks",
    "square": "sim_bridge.robosuite_tasks",
    "aloha-transfer": "sim_bridge.aloha",
}


def register_task(
    name: str,
    variants: tuple[str, ...],
    factory: Callable[..., Task],
    description: str = "",
    default_variant: str | None = None,
) -> None:
    """Register ``factory(variant, **kwargs) -> Task`` under ``name``."""
    if not variants:
        raise ValueError(f"task {name!r}: at least one variant is needed")
    default = default_variant or variants[0]
    if default not in variants:
        raise ValueError(f"task {name!r}: default variant {default!r} not in {variants}")
    _REGISTRY[name] = TaskSpec(name, tuple(variants), factory, description, default)


def _load(name: str) -> TaskSpec:
    if name not in _REGISTRY and name in _TASK_MODULES:
        importlib.import_module(_TASK_MODULES[name])
    if name not in _REGISTRY:
        known = sorted(set(_REGISTRY) | set(_TASK_MODULES))
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(known)}")
    return _REGISTRY[name]


# --- expert registry --------------------------------------------------------------------------
@dataclass(frozen=True)
class ExpertSpec:
    task: str
    kind: str
    #: ``factory(task, seed=None, **kwargs) -> PolicyLike``
    factory: Callable[..., PolicyLike]
    description: str = ""


# task name -> kind -> spec; a task's first registered kind is its default unless one says otherwise
_EXPERTS: dict[str, dict[str, ExpertSpec]] = {}
_DEFAULT_EXPERT: dict[str, str] = {}

# Task name -> modules that register its demonstrators on import (imported lazily by make_expert).
_EXPERT_MODULES: dict[str, tuple[str, ...]] = {
    "pusht": ("sim_bridge.pusht_expert", "sim_bridge.pusht_servo"),
    "lift": ("sim_bridge.robosuite_experts",),
    "stack": ("sim_bridge.robosuite_experts",),
    "square": ("sim_bridge.robosuite_experts",),
    "aloha-transfer": ("sim_bridge.aloha",),
}


def register_expert(
    task: str,
    kind: str,
    factory: Callable[..., PolicyLike],
    description: str = "",
    default: bool = False,
) -> None:
    """Register ``factory(task, seed=None, **kwargs) -> PolicyLike`` as demonstrator ``kind`` of
    task ``task`` (a task name). ``default``: make it the kind ``make_expert`` picks when none is
    asked for (else the task's first registered kind is)."""
    _EXPERTS.setdefault(task, {})[kind] = ExpertSpec(task, kind, factory, description)
    if default or task not in _DEFAULT_EXPERT:
        _DEFAULT_EXPERT[task] = kind


def _load_experts(task: str) -> dict[str, ExpertSpec]:
    for module in _EXPERT_MODULES.get(task, ()):
        importlib.import_module(module)  # a dict lookup once imported
    return _EXPERTS.get(task, {})


def expert_kinds(task: str) -> tuple[str, ...]:
    """The demonstrator kinds registered for task ``task``, its default first."""
    kinds = _load_experts(task)
    default = _DEFAULT_EXPERT.get(task)
    return tuple(sorted(kinds, key=lambda k: (k != default, k)))


def _expert_spec(task: str, kind: str | None) -> ExpertSpec:
    kinds = _load_experts(task)
    if not kinds:
        have = sorted(set(_EXPERTS) | set(_EXPERT_MODULES))
        raise NotImplementedError(
            f"task {task!r} has no scripted demonstrator; tasks with one: {', '.join(have)}"
        )
    kind = _DEFAULT_EXPERT[task] if kind is None else kind
    if kind not in kinds:
        raise ValueError(
            f"task {task!r}: unknown expert kind {kind!r}; kinds: {', '.join(expert_kinds(task))}"
        )
    return kinds[kind]


def task_names() -> list[str]:
    return sorted(set(_REGISTRY) | set(_TASK_MODULES))


def task_variants(name: str) -> tuple[str, ...]:
    return _load(name).variants


def make_task(name: str, variant: str | None = None, **kwargs: Any) -> Task:
    """Build task ``name`` in ``variant`` (its default variant when None)."""
    spec = _load(name)
    variant = variant or spec.default_variant
    if variant not in spec.variants:
        raise ValueError(f"task {name!r} has no variant {variant!r}; variants: {', '.join(spec.variants)}")
    return spec.factory(variant, **kwargs)
