"""BC policies: greedy tanh(mean) for evaluation, a sample of pi otherwise."""

from __future__ import annotations

from antiphon.agents import networks as shared
from antiphon.agents.bc.networks import BCNetworks


def make_policy(networks: BCNetworks, evaluation: bool = True):
    def policy(params, observation, state, key):
        mean, std = networks.policy_apply(params, observation[None])
        if evaluation:
            return shared.tanh_gaussian_mode(mean[0]), state
        return shared.tanh_gaussian_sample(mean[0], std[0], key), state

    return policy
