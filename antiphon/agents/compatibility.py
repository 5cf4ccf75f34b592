"""Which observation and action spaces an agent can work in, and the check every launcher runs
before it writes anything.

Each builder declares `observation_kinds` and `action_kinds` (tuples of the names below). The
kinds of an environment are read from its spec after antiphon's default wrappers (so a
gymnasium Dict observation has already been flattened to a vector):

    observations: vector (one numeric array of rank <= 1), image (rank >= 2, e.g. H x W x C),
                  discrete (one integer index, gymnasium's Discrete), dict (nested)
    actions:      continuous (a bounded float box), discrete (Discrete(n)), multi_discrete
                  (integer boxes: MultiDiscrete, MultiBinary), unbounded (a float array without
                  finite bounds), dict (nested)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from dm_env import specs

VECTOR_OBSERVATIONS = "vector"
IMAGE_OBSERVATIONS = "image"
DISCRETE_OBSERVATIONS = "discrete"
DICT_OBSERVATIONS = "dict"

CONTINUOUS_ACTIONS = "continuous"
DISCRETE_ACTIONS = "discrete"
MULTI_DISCRETE_ACTIONS = "multi_discrete"
UNBOUNDED_ACTIONS = "unbounded"
DICT_ACTIONS = "dict"

_ACTION_WORDS = {
    CONTINUOUS_ACTIONS: "continuous",
    DISCRETE_ACTIONS: "discrete",
    MULTI_DISCRETE_ACTIONS: "multi-discrete",
    UNBOUNDED_ACTIONS: "unbounded",
    DICT_ACTIONS: "dict",
}


class IncompatibleEnvironmentError(ValueError):
    """An agent asked to act in a space it does not support. The message is one line."""


def _shape(spec: specs.Array) -> str:
    return "(" + ", ".join(str(d) for d in spec.shape) + ("," if len(spec.shape) == 1 else "") + ")"


def _bounds(spec: specs.BoundedArray) -> str:
    low, high = np.min(spec.minimum), np.max(spec.maximum)
    return f"[{low:.3g}, {high:.3g}]"


def observation_kind(spec: Any) -> str:
    if not isinstance(spec, specs.Array):
        return DICT_OBSERVATIONS
    if isinstance(spec, specs.DiscreteArray):
        return DISCRETE_OBSERVATIONS
    if len(spec.shape) >= 2:
        return IMAGE_OBSERVATIONS
    return VECTOR_OBSERVATIONS


def action_kind(spec: Any) -> str:
    if not isinstance(spec, specs.Array):
        return DICT_ACTIONS
    if isinstance(spec, specs.DiscreteArray):
        return DISCRETE_ACTIONS
    if not np.issubdtype(spec.dtype, np.floating):
        return MULTI_DISCRETE_ACTIONS
    if (
        isinstance(spec, specs.BoundedArray)
        and np.all(np.isfinite(spec.minimum))
        and np.all(np.isfinite(spec.maximum))
    ):
        return CONTINUOUS_ACTIONS
    return UNBOUNDED_ACTIONS


def describe_observations(spec: Any) -> str:
    kind = observation_kind(spec)
    if kind == DICT_OBSERVATIONS:
        keys = list(spec) if isinstance(spec, dict) else [str(i) for i in range(len(spec))]
        return f"Dict({', '.join(map(str, keys))})"
    if kind == DISCRETE_OBSERVATIONS:
        return f"Discrete({spec.num_values})"
    word = "Image" if kind == IMAGE_OBSERVATIONS else "Box"
    return f"{word}{_shape(spec)} {np.dtype(spec.dtype).name}"


def describe_actions(spec: Any) -> str:
    kind = action_kind(spec)
    if kind == DICT_ACTIONS:
        keys = list(spec) if isinstance(spec, dict) else [str(i) for i in range(len(spec))]
        return f"Dict({', '.join(map(str, keys))})"
    if kind == DISCRETE_ACTIONS:
        return f"Discrete({spec.num_values})"
    if kind == MULTI_DISCRETE_ACTIONS:
        return f"MultiDiscrete{_shape(spec)} {_bounds(spec)}"
    if kind == UNBOUNDED_ACTIONS:
        return f"unbounded Box{_shape(spec)}"
    return f"Box{_shape(spec)} {_bounds(spec)}"


def _words(kinds: Iterable[str], table: dict[str, str] | None = None) -> str:
    names = [(table or {}).get(k, k) for k in kinds]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def check_compatible(
    agent: str,
    observation_kinds: Iterable[str],
    action_kinds: Iterable[str],
    env_spec: Any,
    env_name: str,
    supporting: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] | None = None,
) -> None:
    """Raises IncompatibleEnvironmentError (one line naming both sides) when the environment's
    observation or action space is not one the agent declares.

    `supporting`: every agent's (observation_kinds, action_kinds), to name the agents that
    would fit (`registry.declared_spaces()`).
    """
    supporting = supporting or {}
    action = action_kind(env_spec.actions)
    if action not in tuple(action_kinds):
        fits = sorted(a for a, (_, acts) in supporting.items() if action in acts)
        word = _ACTION_WORDS.get(action, action)
        raise IncompatibleEnvironmentError(
            f"{agent} acts in {_words(action_kinds, _ACTION_WORDS)} action spaces; {env_name} "
            f"has {describe_actions(env_spec.actions)} actions; agents for {word} actions: "
            f"{', '.join(fits) if fits else 'none yet'}"
        )
    observation = observation_kind(env_spec.observations)
    if observation not in tuple(observation_kinds):
        fits = sorted(
            a for a, (obs, acts) in supporting.items() if observation in obs and action in acts
        )
        raise IncompatibleEnvironmentError(
            f"{agent} reads {_words(observation_kinds)} observations; {env_name} has "
            f"{describe_observations(env_spec.observations)} observations; agents for "
            f"{observation} observations and {_ACTION_WORDS[action]} actions: "
            f"{', '.join(fits) if fits else 'none yet'}"
        )
