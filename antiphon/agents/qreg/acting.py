"""Q_sarsa-regularised TD3 policies: TD3's (`agents/td3.make_policy`). Evaluation: the
deterministic pi(s); behaviour: clip(pi(s) + N(0, exploration_sigma^2), -1, 1)."""

from __future__ import annotations

from antiphon.agents import td3
from antiphon.agents.qreg.config import QRegConfig
from antiphon.agents.qreg.networks import QRegNetworks


def make_policy(networks: QRegNetworks, config: QRegConfig, evaluation: bool = True):
    return td3.make_policy(networks, config.exploration_sigma, evaluation)
