"""D4PG networks: a deterministic tanh policy and a distributional critic (C51 or MoG)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from antiphon.agents import distributional
from antiphon.agents import networks as shared
from antiphon.agents.d4pg.config import D4PGConfig
from antiphon.core.types import EnvironmentSpec, zeros_like_spec


@dataclasses.dataclass(frozen=True)
class D4PGNetworks:
    """Pure functions. `critic_apply(params, obs, action)` returns C51 logits [B, L] or
    `MixtureParams`; `critic_mean` turns either into Q [B]."""

    policy_init: Callable
    policy_apply: Callable  # (params, obs) -> action in [-1, 1]
    critic_init: Callable
    critic_apply: Callable  # (params, obs, action) -> logits | MixtureParams
    critic_mean: Callable  # (critic output) -> Q
    support: jax.Array | None  # C51 atoms, None for MoG
    critic_type: str

    def init(self, key: jax.Array, env_spec: EnvironmentSpec) -> tuple:
        obs = zeros_like_spec(env_spec.observations, (1,))
        action = zeros_like_spec(env_spec.actions, (1,))
        policy_key, critic_key = jax.random.split(key)
        return self.policy_init(policy_key, obs), self.critic_init(critic_key, obs, action)


def make_networks(env_spec: EnvironmentSpec, config: D4PGConfig) -> D4PGNetworks:
    action_dim = int(np.prod(env_spec.actions.shape))

    def policy(observation):
        return shared.DeterministicPolicy(config.policy_layer_sizes, action_dim)(observation)

    if config.critic_type == "c51":
        support = jnp.linspace(config.v_min, config.v_max, config.num_atoms)

        def critic(observation, action):
            x = shared.critic_inputs(observation, action, clip_action=False)
            x = shared.LayerNormMLP(config.critic_layer_sizes, activate_final=True)(x)
            return shared.CategoricalHead(config.num_atoms)(x)

        def critic_mean(logits):
            return distributional.categorical_mean(logits, support)

    else:
        support = None

        def critic(observation, action):
            # The MoG critic sees actions clipped to the spec (ALGORITHMS.md §2.1).
            x = shared.critic_inputs(observation, action, clip_action=True)
            x = shared.LayerNormMLP(config.critic_layer_sizes, activate_final=True)(x)
            return shared.GaussianMixtureHead(
                config.num_components, config.init_scale, config.min_scale
            )(x)

        critic_mean = distributional.mixture_mean

    policy_t = hk.without_apply_rng(hk.transform(policy))
    critic_t = hk.without_apply_rng(hk.transform(critic))
    return D4PGNetworks(
        policy_init=policy_t.init,
        policy_apply=policy_t.apply,
        critic_init=critic_t.init,
        critic_apply=critic_t.apply,
        critic_mean=critic_mean,
        support=support,
        critic_type=config.critic_type,
    )
