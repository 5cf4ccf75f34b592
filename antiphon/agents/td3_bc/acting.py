"""TD3+BC policies, pure functions of (params, observation, state, key).

Evaluation: the deterministic action pi(s). Behaviour: clip(pi(s) + N(0, sigma^2), -1, 1) with
sigma = `exploration_sigma` (the clip keeps the action inside the canonical box).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from antiphon.agents.td3_bc.config import TD3BCConfig
from antiphon.agents.td3_bc.networks import TD3BCNetworks


def make_policy(networks: TD3BCNetworks, config: TD3BCConfig, evaluation: bool = True):
    sigma = 0.0 if evaluation else config.exploration_sigma

    def policy(params, observation, state, key):
        action = networks.policy_apply(params, observation[None])[0]
        if sigma > 0:
            action = jnp.clip(
                action + sigma * jax.random.normal(key, action.shape, action.dtype), -1.0, 1.0
            )
        return action, state

    return policy
