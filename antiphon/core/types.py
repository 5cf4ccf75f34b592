"""Shared types: transitions, environment specs and the aliases every module uses."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import dm_env
import jax
import numpy as np
from dm_env import specs

Params = Any  # a pytree of arrays (haiku params, optax state, ...)
PRNGKey = jax.Array
NestedArray = Any
NestedSpec = Any


class Transition(NamedTuple):
    """An n-step transition as sampled from replay.

    With n' = min(n, steps left in the episode) and d_k the environment's per-step discounts:
      reward   = sum_{k<n'} gamma^k (prod_{j<k} d_{t+j}) r_{t+k}    (discounted n-step return)
      discount = gamma^{n'} prod_{k<n'} d_{t+k}                     (full bootstrap multiplier)
    so the learner's target is simply `reward + discount * V(next_observation)`, and
    `discount == 0` exactly when the episode terminated within the n' steps.
    """

    observation: NestedArray
    action: NestedArray
    reward: NestedArray
    discount: NestedArray
    next_observation: NestedArray
    extras: NestedArray = ()


@dataclasses.dataclass(frozen=True)
class EnvironmentSpec:
    """The specs of an environment, as seen by agents (observations after wrappers)."""

    observations: NestedSpec
    actions: NestedSpec
    rewards: NestedSpec
    discounts: NestedSpec


def make_environment_spec(environment: dm_env.Environment) -> EnvironmentSpec:
    return EnvironmentSpec(
        observations=environment.observation_spec(),
        actions=environment.action_spec(),
        rewards=environment.reward_spec(),
        discounts=environment.discount_spec(),
    )


def zeros_like_spec(spec: NestedSpec, batch_shape: tuple[int, ...] = ()) -> NestedArray:
    """Zero arrays matching a (nested) spec, with optional leading batch dimensions."""
    return jax.tree_util.tree_map(
        lambda s: np.zeros(batch_shape + tuple(s.shape), s.dtype),
        spec,
        is_leaf=lambda x: isinstance(x, specs.Array),
    )
