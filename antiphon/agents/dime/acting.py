"""DiME policies: the Gaussian's mean, clipped to the box, at evaluation; a clipped sample of it
for behaviour (what `antiphon collect --behaviour-policy` records)."""

from __future__ import annotations

from antiphon.agents import networks as shared
from antiphon.agents.dime.config import DiMEConfig
from antiphon.agents.dime.networks import DiMENetworks


def make_policy(networks: DiMENetworks, config: DiMEConfig, evaluation: bool):
    del config  # nothing in the policy is configured beyond its network
    return shared.make_gaussian_policy(networks.policy_apply, evaluation)
