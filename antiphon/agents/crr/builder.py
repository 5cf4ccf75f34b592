"""CRR builder (offline): networks, learner on a dataset in device memory, evaluation policy."""

from __future__ import annotations

import jax

from antiphon.agents.actors import GenericActor
from antiphon.agents.crr import acting, learning
from antiphon.agents.crr import networks as crr_networks
from antiphon.agents.crr.config import CRRConfig
from antiphon.core.types import EnvironmentSpec, Transition
from antiphon.core.variables import VariableClient


class CRRBuilder:
    name = "crr"
    config_class = CRRConfig
    offline = True  # trains from a dataset (antiphon train --dataset), no replay or actors

    def __init__(self, config: CRRConfig):
        config.validate()
        self.config = config

    def make_networks(self, env_spec: EnvironmentSpec) -> crr_networks.CRRNetworks:
        return crr_networks.make_networks(env_spec, self.config)

    def make_learner(
        self, networks, data: Transition, env_spec: EnvironmentSpec, key, counter=None, logger=None
    ):
        return learning.make_learner(
            networks, self.config, env_spec, data, key, counter=counter, logger=logger
        )

    def make_policy(self, networks, evaluation: bool = True):
        return acting.make_policy(networks, self.config, evaluation=evaluation)

    def variable_names(self, evaluation: bool = True) -> list[str] | str:
        """What the policy reads: "policy", or ["policy", "critic"] for the critic-weighted
        policy (its snapshots hold that list; `antiphon collect` restores by these names)."""
        return acting.variable_names(self.config, evaluation)

    def make_actor(
        self, policy, key: jax.Array, variable_source, adder=None, evaluation: bool = True
    ) -> GenericActor:
        names = self.variable_names(evaluation)
        client = VariableClient(variable_source, names, update_period=1)
        client.update(wait=True)
        return GenericActor(policy, key, client, adder=adder)
