"""BC policies: the greedy action (tanh(mean); the heaviest component's mean for a mixture) for
evaluation, a sample of pi otherwise."""

from __future__ import annotations

from antiphon.agents import networks as shared
from antiphon.agents.bc.config import BCConfig
from antiphon.agents.bc.networks import BCNetworks


def make_policy(networks: BCNetworks, config: BCConfig, evaluation: bool = True):
    del config  # the head (in `networks`) is all the policy needs
    return shared.make_head_policy(networks.policy_apply, networks.head, evaluation)
