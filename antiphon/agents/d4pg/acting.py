"""D4PG policies: the deterministic actor plus Gaussian exploration noise (behaviour) or none
(evaluation). Pure functions of (params, observation, state, key)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from antiphon.agents.d4pg.networks import D4PGNetworks


def make_policy(networks: D4PGNetworks, sigma: float):
    """a = clip(pi(o) + sigma * eps, -1, 1), eps ~ N(0, I); sigma = 0 gives the greedy policy.

    Clipping keeps the stored actions inside the canonical action box."""

    def policy(params, observation, state, key):
        action = networks.policy_apply(params, observation[None])[0]
        if sigma > 0:
            action = action + sigma * jax.random.normal(key, action.shape, action.dtype)
        return jnp.clip(action, -1.0, 1.0), state

    return policy
