"""BC policies: the greedy action (tanh(mean); the heaviest component's mean for a mixture) for
evaluation, a sample of pi otherwise."""

from __future__ import annotations

import jax

from antiphon.agents.bc.networks import BCNetworks


def make_policy(networks: BCNetworks, evaluation: bool = True):
    def policy(params, observation, state, key):
        batch_of_one = networks.policy_apply(params, observation[None])
        dist = jax.tree_util.tree_map(lambda x: x[0], batch_of_one)
        if evaluation:
            return networks.head.mode(dist), state
        return networks.head.sample(dist, key), state

    return policy
