"""TD3+BC networks: a deterministic tanh policy and twin scalar critics Q1, Q2, all plain ReLU
MLPs (the authors' and d3rlpy's architecture), with an optional observation normaliser in front.

The normaliser computes (s - mean) / std with `mean` and `std` stored as haiku parameters of a
module named `observation_normalizer` (initialised to 0 and 1). They are not trained: the module
stop-gradients them, the learner's optimiser masks them (`frozen_mask`) and the learner writes the
dataset's statistics into them once (`with_observation_statistics`). Keeping them inside the params
means the evaluation actor, which builds the networks from the environment spec alone and receives
its params from the learner, normalises exactly as the learner does.
"""

from __future__ import annotations

import dataclasses

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from antiphon.agents import networks as shared
from antiphon.agents.td3_bc.config import TD3BCConfig
from antiphon.core.types import EnvironmentSpec

NORMALIZER = "observation_normalizer"


class ObservationNormalizer(hk.Module):
    """(s - mean) / std with non-trained parameters `mean` (init 0) and `std` (init 1)."""

    def __init__(self, name: str = NORMALIZER):
        super().__init__(name=name)

    def __call__(self, observation: jax.Array) -> jax.Array:
        shape = observation.shape[-1:]
        mean = hk.get_parameter("mean", shape, jnp.float32, init=jnp.zeros)
        std = hk.get_parameter("std", shape, jnp.float32, init=jnp.ones)
        return (observation - jax.lax.stop_gradient(mean)) / jax.lax.stop_gradient(std)


class QNetwork(hk.Module):
    """(s, a) -> MLP(concat(s, a)) -> scalar Q [B]."""

    def __init__(self, layer_sizes, name: str | None = None):
        super().__init__(name=name)
        self._layer_sizes = tuple(layer_sizes)

    def __call__(self, observation: jax.Array, action: jax.Array) -> jax.Array:
        x = shared.MLP(self._layer_sizes)(jnp.concatenate([observation, action], axis=-1))
        return shared.linear_head(x, 1)[..., 0]


def is_normalizer(module_name: str) -> bool:
    return module_name.split("/")[-1] == NORMALIZER


def frozen_mask(params) -> dict:
    """True for the normaliser's leaves (never trained), False for every other parameter."""
    return hk.data_structures.map(lambda module, name, value: is_normalizer(module), params)


def with_observation_statistics(params, mean: jax.Array, std: jax.Array):
    """`params` with the normaliser's mean and std replaced (unchanged if it has no normaliser)."""
    stats = {"mean": jnp.asarray(mean, jnp.float32), "std": jnp.asarray(std, jnp.float32)}

    def replace(module, name, value):
        if is_normalizer(module):
            return jnp.broadcast_to(stats[name], value.shape).astype(value.dtype)
        return value

    return hk.data_structures.map(replace, params)


def observation_statistics(observations: jax.Array, epsilon: float) -> tuple[jax.Array, jax.Array]:
    """The authors' statistics: mean and std + eps over the dataset's observations [N, D]."""
    return jnp.mean(observations, axis=0), jnp.std(observations, axis=0) + epsilon


@dataclasses.dataclass(frozen=True)
class TD3BCNetworks(shared.PolicyCriticNetworks):
    """Pure functions (`init` from `networks.PolicyCriticNetworks`).

    policy_apply(params, obs [B, D]) -> action [B, A] in [-1, 1].
    critic_apply(params, obs [B, D], action [B, A]) -> (Q1 [B], Q2 [B]).
    """

    def q1(self, critic_params, observation, action) -> jax.Array:
        return self.critic_apply(critic_params, observation, action)[0]


def make_networks(env_spec: EnvironmentSpec, config: TD3BCConfig) -> TD3BCNetworks:
    action_dim = int(np.prod(env_spec.actions.shape))
    normalize = config.normalize_observations

    def policy(observation):
        if normalize:
            observation = ObservationNormalizer()(observation)
        x = shared.MLP(config.policy_layer_sizes)(observation)
        return jnp.tanh(shared.linear_head(x, action_dim))

    def critic(observation, action):
        if normalize:
            observation = ObservationNormalizer()(observation)
        q1 = QNetwork(config.critic_layer_sizes, name="q1")(observation, action)
        q2 = QNetwork(config.critic_layer_sizes, name="q2")(observation, action)
        return q1, q2

    return TD3BCNetworks(**shared.transform_policy_and_critic(policy, critic))
