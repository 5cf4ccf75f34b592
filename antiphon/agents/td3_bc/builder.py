"""TD3+BC builder (offline): networks, learner on a dataset in device memory, policies."""

from __future__ import annotations

import jax

from antiphon.agents.actors import GenericActor
from antiphon.agents.td3_bc import acting, learning
from antiphon.agents.td3_bc import networks as td3_bc_networks
from antiphon.agents.td3_bc.config import TD3BCConfig
from antiphon.core.types import EnvironmentSpec, Transition
from antiphon.core.variables import VariableClient


class TD3BCBuilder:
    name = "td3_bc"
    config_class = TD3BCConfig
    offline = True  # trains from a dataset (antiphon train --dataset), no replay or actors

    def __init__(self, config: TD3BCConfig):
        config.validate()
        self.config = config

    def make_networks(self, env_spec: EnvironmentSpec) -> td3_bc_networks.TD3BCNetworks:
        return td3_bc_networks.make_networks(env_spec, self.config)

    def make_learner(
        self, networks, data: Transition, env_spec: EnvironmentSpec, key, counter=None, logger=None
    ):
        return learning.make_learner(
            networks, self.config, env_spec, data, key, counter=counter, logger=logger
        )

    def make_policy(self, networks, evaluation: bool = True):
        return acting.make_policy(networks, self.config, evaluation=evaluation)

    def make_actor(
        self, policy, key: jax.Array, variable_source, adder=None, evaluation: bool = True
    ) -> GenericActor:
        # The policy's params carry the observation normaliser's statistics, if any.
        client = VariableClient(variable_source, "policy", update_period=1)
        client.update(wait=True)
        return GenericActor(policy, key, client, adder=adder)
