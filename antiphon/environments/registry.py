"""Environment names -> dm_env environments.

A name is `<prefix>:<rest>`: `dmc:cartpole-swingup` (every task in dm_control.suite.ALL_TASKS,
domain and task joined by the first '-'), `gym:Pendulum-v1` (any gymnasium id),
`minigrid:MiniGrid-MemoryS7-v0` and `babyai:KeyCorridorS3R3` (environments/minigrid.py). Other
packages add prefixes with `register`. Every environment comes out with antiphon's default
wrappers, so agents see one flat float32 observation vector (state tasks), continuous actions in
[-1, 1], and float32 rewards and discounts; MiniGrid keeps its dict of integer arrays (image,
direction, mission) and discrete actions.

Nothing heavy is imported here: dm_control and gymnasium load on first use, so the CLI can
validate a name cheaply before it creates a run directory.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from typing import Any

import dm_env
from dm_env import specs

from antiphon.environments import wrappers

__all__ = [
    "EnvironmentFactory",
    "UnknownEnvironmentError",
    "environment_factory",
    "list_environments",
    "make_environment",
    "register",
    "reward_range",
    "registered_prefixes",
    "validate_environment_name",
]

_MAX_SUGGESTIONS = 5


class UnknownEnvironmentError(ValueError):
    """An environment name that no registered prefix knows. The message is one line."""

    def __init__(self, name: str, suggestions: list[str], known_prefixes: list[str]):
        self.name = name
        self.suggestions = list(suggestions)
        if suggestions:
            hint = "did you mean: " + ", ".join(suggestions) + "?"
        else:
            prefixes = ", ".join(f"{p}:" for p in known_prefixes) or "none registered"
            hint = f"no close matches (known prefixes: {prefixes}; see list_environments())"
        super().__init__(f"unknown environment {name!r}; {hint}")


@dataclasses.dataclass(frozen=True)
class _Entry:
    factory: Callable[..., dm_env.Environment]
    list_fn: Callable[[], list[str]] | None


_REGISTRY: dict[str, _Entry] = {}


def register(
    prefix: str,
    factory: Callable[..., dm_env.Environment],
    list_fn: Callable[[], list[str]] | None = None,
    *,
    overwrite: bool = False,
) -> None:
    """Adds a name prefix (without the ':').

    `factory(rest, seed=seed, **kwargs)` receives the part after `prefix:` and returns a fully
    wrapped dm_env (make_environment adds only action repeat on top). `list_fn()` returns the
    known names, with or without the `prefix:` part; when given, names outside it are rejected
    before anything is built and it feeds the suggestions. Without it any `prefix:<rest>` passes
    validation and the factory itself must reject bad names.
    """
    if not prefix or ":" in prefix:
        raise ValueError(f"environment prefix must be non-empty and contain no ':', got {prefix!r}")
    if prefix in _REGISTRY and not overwrite:
        raise ValueError(f"environment prefix {prefix!r} is already registered")
    _REGISTRY[prefix] = _Entry(factory=factory, list_fn=list_fn)


def registered_prefixes() -> list[str]:
    return sorted(_REGISTRY)


def _names_for(prefix: str) -> list[str] | None:
    entry = _REGISTRY[prefix]
    if entry.list_fn is None:
        return None
    full = f"{prefix}:"
    return [n if n.startswith(full) else full + n for n in entry.list_fn()]


def list_environments(prefix: str | None = None) -> list[str]:
    """Known full names (`prefix:rest`), for one prefix or all; prefixes without a list add none."""
    if prefix is not None:
        prefix = prefix.rstrip(":")
        if prefix not in _REGISTRY:
            raise UnknownEnvironmentError(
                f"{prefix}:", _suggest(f"{prefix}:", list(_REGISTRY)), registered_prefixes()
            )
        return _names_for(prefix) or []
    return [name for p in registered_prefixes() for name in (_names_for(p) or [])]


def _suggest(name: str, candidates: list[str]) -> list[str]:
    matches = difflib.get_close_matches(name, candidates, n=_MAX_SUGGESTIONS, cutoff=0.6)
    if ":" not in name:
        # A bare name ("cartpole-swingup") is probably some prefix's name without the prefix:
        # compare it with the part after ':' too, best ratio first.
        by_rest = {c.split(":", 1)[1]: c for c in candidates if ":" in c}
        rest_matches = difflib.get_close_matches(
            name, list(by_rest), n=_MAX_SUGGESTIONS, cutoff=0.6
        )
        matches = list(dict.fromkeys([by_rest[m] for m in rest_matches] + matches))
    return matches[:_MAX_SUGGESTIONS]


def _split(name: str) -> tuple[str, str]:
    """(prefix, rest), raising UnknownEnvironmentError for anything not known."""
    prefix, sep, rest = name.partition(":")
    if sep and rest and prefix in _REGISTRY:
        known = _names_for(prefix)
        if known is None or name in known:
            return prefix, rest
    raise UnknownEnvironmentError(name, _suggest(name, list_environments()), registered_prefixes())


def validate_environment_name(name: str) -> None:
    """Raises UnknownEnvironmentError for an unknown name, without building anything."""
    if not isinstance(name, str):
        raise UnknownEnvironmentError(repr(name), [], registered_prefixes())
    _split(name)


def make_environment(
    name: str,
    seed: int | None = None,
    action_repeat: int = 1,
    objectives: tuple[str, ...] | None = None,
    **kwargs: Any,
) -> dm_env.Environment:
    """Builds environment `name` with the default wrappers; kwargs go to the prefix's factory.

    `seed` makes the environment deterministic (dmc: task_kwargs random=seed; gym: the first
    reset's seed). `action_repeat` > 1 repeats each action (see wrappers.ActionRepeatWrapper for
    how rewards and discounts combine). `objectives` (e.g. ("task", "action_cost")) makes the
    reward a vector of those objectives (wrappers.MultiObjectiveRewardWrapper), computed per
    environment step on the canonical [-1, 1] actions, then summed over the repeat.
    """
    if int(action_repeat) != action_repeat or action_repeat < 1:
        raise ValueError(f"action_repeat must be an integer >= 1, got {action_repeat!r}")
    prefix, rest = _split(name)
    environment = _REGISTRY[prefix].factory(rest, seed=seed, **kwargs)
    if objectives is not None:
        environment = wrappers.MultiObjectiveRewardWrapper(environment, tuple(objectives))
    if action_repeat > 1:
        environment = wrappers.ActionRepeatWrapper(environment, int(action_repeat))
    return environment


@dataclasses.dataclass(frozen=True)
class EnvironmentFactory:
    """seed -> environment. A plain picklable object, so it can travel to Ray actors."""

    name: str
    action_repeat: int = 1
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    objectives: tuple[str, ...] | None = None  # make_environment's: a vector reward

    def __call__(self, seed: int | None) -> dm_env.Environment:
        return make_environment(
            self.name,
            seed=seed,
            action_repeat=self.action_repeat,
            objectives=self.objectives,
            **self.kwargs,
        )


def environment_factory(
    name: str, action_repeat: int = 1, objectives: tuple[str, ...] | None = None, **kwargs: Any
) -> Callable[[int | None], dm_env.Environment]:
    """A seed -> environment callable for actors and evaluators (each builds its own copy).

    The name is validated now, so a typo fails in the launching process, not in every actor.
    """
    validate_environment_name(name)
    if int(action_repeat) != action_repeat or action_repeat < 1:
        raise ValueError(f"action_repeat must be an integer >= 1, got {action_repeat!r}")
    return EnvironmentFactory(
        name=name,
        action_repeat=int(action_repeat),
        kwargs=dict(kwargs),
        objectives=None if objectives is None else tuple(objectives),
    )


# ----------------------------------------------------------------------------------------------
# Built-in prefixes


def _is_nested(spec: Any) -> bool:
    return not isinstance(spec, specs.Array)


def default_wrappers(environment: dm_env.Environment, flatten: bool = True) -> dm_env.Environment:
    """antiphon's standard stack: flatten (nested observations only), canonical actions, float32."""
    if flatten and _is_nested(environment.observation_spec()):
        environment = wrappers.ObservationFlattenWrapper(environment)
    environment = wrappers.CanonicalActionWrapper(environment)
    return wrappers.SinglePrecisionWrapper(environment)


def _dmc_names() -> list[str]:
    from antiphon.environments import dm_control

    return [f"{domain}-{task}" for domain, task in dm_control.all_tasks()]


def _dmc_factory(rest: str, seed: int | None = None, **kwargs: Any) -> dm_env.Environment:
    from antiphon.environments import dm_control

    # Domains contain '_' but never '-', so the first '-' separates domain from task.
    domain, _, task = rest.partition("-")
    return default_wrappers(dm_control.load(domain, task, seed=seed, **kwargs))


def _gym_names() -> list[str]:
    from antiphon.environments import gym

    return gym.env_ids()


def _gym_factory(rest: str, seed: int | None = None, **kwargs: Any) -> dm_env.Environment:
    from antiphon.environments import gym

    # Box observations stay as they are (images keep their shape); Dict observations are
    # flattened like dm_control's.
    return default_wrappers(gym.load(rest, seed=seed, **kwargs))


def _minigrid_names() -> list[str]:
    from antiphon.environments import minigrid

    return minigrid.minigrid_names()


def _minigrid_factory(rest: str, seed: int | None = None, **kwargs: Any) -> dm_env.Environment:
    from antiphon.environments import minigrid

    return minigrid.load(rest, seed=seed, **kwargs)


def _babyai_names() -> list[str]:
    from antiphon.environments import minigrid

    return minigrid.babyai_names()


def _babyai_factory(rest: str, seed: int | None = None, **kwargs: Any) -> dm_env.Environment:
    from antiphon.environments import minigrid

    return minigrid.load(minigrid.babyai_id(rest), seed=seed, **kwargs)


register("dmc", _dmc_factory, _dmc_names)
register("gym", _gym_factory, _gym_names)
register("minigrid", _minigrid_factory, _minigrid_names)
register("babyai", _babyai_factory, _babyai_names)


def reward_range(name: str, action_repeat: int = 1) -> tuple[float, float] | None:
    """[min, max] of one agent step's reward where the environment family declares it, else
    None. DM Control's rewards are in [0, 1] per physics step by design (every task's reward is
    a product of `tolerance` terms), so [0, action_repeat] per agent step. Gymnasium 1.x
    environments declare no range."""
    prefix, _ = _split(name)
    if prefix == "dmc":
        return 0.0, float(action_repeat)
    return None
