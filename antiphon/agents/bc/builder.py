"""BC builder (offline)."""

from __future__ import annotations

import jax

from antiphon.agents.actors import GenericActor
from antiphon.agents.bc import acting, learning
from antiphon.agents.bc import networks as bc_networks
from antiphon.agents.bc.config import BCConfig
from antiphon.core.types import EnvironmentSpec, Transition
from antiphon.core.variables import VariableClient


class BCBuilder:
    name = "bc"
    config_class = BCConfig
    offline = True

    def __init__(self, config: BCConfig):
        config.validate()
        self.config = config

    def make_networks(self, env_spec: EnvironmentSpec) -> bc_networks.BCNetworks:
        return bc_networks.make_networks(env_spec, self.config)

    def make_learner(
        self, networks, data: Transition, env_spec: EnvironmentSpec, key, counter=None, logger=None
    ):
        return learning.make_learner(
            networks, self.config, env_spec, data, key, counter=counter, logger=logger
        )

    def make_policy(self, networks, evaluation: bool = True):
        return acting.make_policy(networks, evaluation=evaluation)

    def make_actor(
        self, policy, key: jax.Array, variable_source, adder=None, evaluation: bool = True
    ) -> GenericActor:
        client = VariableClient(variable_source, "policy", update_period=1)
        client.update(wait=True)
        return GenericActor(policy, key, client, adder=adder)
