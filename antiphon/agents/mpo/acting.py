"""MPO policies, pure functions of (params, observation, state, key): the behaviour policy
samples the Gaussian and clips to the action box; evaluation acts with its mean (clipped)."""

from __future__ import annotations

from antiphon.agents import networks as shared
from antiphon.agents.mpo.config import MPOConfig
from antiphon.agents.mpo.networks import MPONetworks


def make_policy(networks: MPONetworks, config: MPOConfig, evaluation: bool):
    """a = clip(mean + std * eps, -1, 1) (behaviour) or clip(mean, -1, 1) (evaluation)."""
    del config  # nothing in the policy is configured beyond its network
    return shared.make_gaussian_policy(networks.policy_apply, evaluation)
