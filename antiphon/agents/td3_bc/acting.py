"""TD3+BC policies, pure functions of (params, observation, state, key): TD3's
(`agents/td3.make_policy`). Evaluation: the deterministic action pi(s). Behaviour:
clip(pi(s) + N(0, sigma^2), -1, 1) with sigma = `exploration_sigma`.
"""

from __future__ import annotations

from antiphon.agents import td3
from antiphon.agents.td3_bc.config import TD3BCConfig
from antiphon.agents.td3_bc.networks import TD3BCNetworks


def make_policy(networks: TD3BCNetworks, config: TD3BCConfig, evaluation: bool = True):
    return td3.make_policy(networks, config.exploration_sigma, evaluation)
