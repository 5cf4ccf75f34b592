"""What every agent's Builder does the same way: validate the config, make the networks, make
the learner and policies from the agent's own modules, and build the actor around a variable
client.

An agent's `builder.py` names its modules and says what differs (Acme's one-builder-per-agent,
with the shared body here):

    class CRRBuilder(OfflineBuilder):
        name = "crr"
        config_class = CRRConfig
        networks_module, learning_module, acting_module = crr_networks, learning, acting

Online agents add their replay tables, adder and dataset iterator (`d4pg/builder.py`).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, ClassVar

import jax

from antiphon.agents import config_checks
from antiphon.agents.actors import GenericActor
from antiphon.agents.compatibility import CONTINUOUS_ACTIONS, VECTOR_OBSERVATIONS
from antiphon.core.types import EnvironmentSpec, Transition
from antiphon.core.variables import VariableClient


def make_actor(
    policy,
    key: jax.Array,
    variable_source,
    names: str | list[str],
    update_period: int = 1,
    adder=None,
) -> GenericActor:
    """A GenericActor whose variable client reads `names` from `variable_source`, with one
    blocking pull first (so the first action already uses the learner's parameters)."""
    client = VariableClient(variable_source, names, update_period=update_period)
    client.update(wait=True)
    return GenericActor(policy, key, client, adder=adder)


class Builder:
    """The shared body. Subclasses set `name`, `config_class` and the three modules; each module
    has the agent's `make_networks(env_spec, config)`, `make_learner(...)` and
    `make_policy(networks, config, evaluation)`.

    `observation_kinds` / `action_kinds` declare the spaces the agent can act in
    (`antiphon.agents.compatibility`); launchers check them before anything is written.
    """

    name: ClassVar[str]
    config_class: ClassVar[type]
    offline: ClassVar[bool] = False
    networks_module: ClassVar[ModuleType]
    learning_module: ClassVar[ModuleType]
    acting_module: ClassVar[ModuleType]
    observation_kinds: ClassVar[tuple[str, ...]] = (VECTOR_OBSERVATIONS,)
    action_kinds: ClassVar[tuple[str, ...]] = (CONTINUOUS_ACTIONS,)

    def __init__(self, config: Any):
        config_checks.validate(config)
        self.config = config

    def make_networks(self, env_spec: EnvironmentSpec):
        return self.networks_module.make_networks(env_spec, self.config)

    def make_policy(self, networks, evaluation: bool = True):
        return self.acting_module.make_policy(networks, self.config, evaluation=evaluation)

    def variable_names(self, evaluation: bool = True) -> list[str] | str:
        """What the policy reads from the learner (snapshots hold this; `antiphon collect`
        restores by these names)."""
        return "policy"

    def variable_update_period(self, evaluation: bool) -> int:
        """Actor steps between parameter pulls."""
        return 1

    def make_actor(
        self, policy, key: jax.Array, variable_source, adder=None, evaluation: bool = True
    ) -> GenericActor:
        return make_actor(
            policy,
            key,
            variable_source,
            self.variable_names(evaluation),
            update_period=self.variable_update_period(evaluation),
            adder=adder,
        )


class OfflineBuilder(Builder):
    """An agent that trains from a dataset (`antiphon train --dataset`): no replay, no actors;
    the learner gets the whole dataset as device-resident `Transition`s."""

    offline = True

    def make_learner(
        self,
        networks,
        data: Transition,
        env_spec: EnvironmentSpec,
        key,
        counter=None,
        logger=None,
        value_bounds: tuple[float, float] | None = None,
    ):
        """`value_bounds`: the range a discounted return can take on this data
        (`actor_critic.return_bounds`); critics report the fraction of Q estimates outside."""
        return self.learning_module.make_learner(
            networks,
            self.config,
            env_spec,
            data,
            key,
            counter=counter,
            logger=logger,
            value_bounds=value_bounds,
        )
