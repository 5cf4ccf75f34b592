"""What every agent's Builder does the same way: validate the config, make the networks, make
the learner and policies from the agent's own modules, and build the actor around a variable
client.

An agent's `builder.py` names its modules and says what differs (Acme's one-builder-per-agent,
with the shared body here):

    class CRRBuilder(OfflineBuilder):
        name = "crr"
        config_class = CRRConfig
        networks_module, learning_module, acting_module = crr_networks, learning, acting

Online agents that learn from n-step transitions (D4PG, MPO) subclass `NStepTransitionBuilder`,
which holds their replay table, adder, dataset iterator and learner construction.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

import jax

from antiphon.agents import actor_critic, config_checks, offline
from antiphon.agents.actors import GenericActor, VectorActor, vectorise_policy
from antiphon.agents.compatibility import CONTINUOUS_ACTIONS, VECTOR_OBSERVATIONS
from antiphon.core.types import EnvironmentSpec, Transition
from antiphon.core.variables import VariableClient

if TYPE_CHECKING:
    import reverb

    from antiphon.replay import adders, datasets

# The table n-step transition agents write to and sample from.
TRANSITION_TABLE = "priority_table"


def make_actor(
    policy,
    key: jax.Array,
    variable_source,
    names: str | list[str],
    update_period: int = 1,
    adder=None,
    **actor_options: Any,
) -> GenericActor:
    """A GenericActor whose variable client reads `names` from `variable_source`, with one
    blocking pull first (so the first action already uses the learner's parameters).
    `actor_options`: GenericActor's (a recurrent agent's `initial_state`, `state_extras`)."""
    client = VariableClient(variable_source, names, update_period=update_period)
    client.update(wait=True)
    return GenericActor(policy, key, client, adder=adder, **actor_options)


class Builder:
    """The shared body. Subclasses set `name`, `config_class` and the three modules; each module
    has the agent's `make_networks(env_spec, config)`, its learner (online: a `learner_class`;
    offline: `make_update(networks, config, env_spec, data, key, value_bounds)` -> (sgd_step,
    state) and optionally `variables(state)`) and
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

    def make_actor_policy(self, networks, actor_id: int, num_actors: int):
        """Actor `actor_id` of `num_actors`'s behaviour policy (the same for every actor unless
        an agent gives each its own exploration, as R2D2's epsilon ladder does)."""
        return self.make_policy(networks, evaluation=False)

    def variable_names(self, evaluation: bool = True) -> list[str] | str:
        """What the policy reads from the learner (snapshots hold this; `antiphon collect`
        restores by these names)."""
        return "policy"

    def variable_update_period(self, evaluation: bool) -> int:
        """Actor steps between parameter pulls."""
        return 1

    def actor_options(self, with_adder: bool) -> dict[str, Any]:
        """GenericActor / VectorActor options an agent's actor needs beyond the policy (R2D2's
        `initial_state` and, when it writes experience, `state_extras`)."""
        return {}

    def make_actor(
        self,
        policy,
        key: jax.Array,
        variable_source,
        adder=None,
        evaluation: bool = True,
    ) -> GenericActor:
        return make_actor(
            policy,
            key,
            variable_source,
            self.variable_names(evaluation),
            update_period=self.variable_update_period(evaluation),
            adder=adder,
            **self.actor_options(with_adder=adder is not None),
        )

    def make_vector_actor_policy(self, networks, stream_ids: list[int], num_streams: int):
        """The batched behaviour policy of the streams `stream_ids` (one per environment) out of
        `num_streams` in the program. The same policy for each unless an agent's exploration
        differs per stream (R2D2's epsilon ladder overrides this)."""
        return vectorise_policy(self.make_actor_policy(networks, stream_ids[0], num_streams))

    def make_vector_actor(
        self,
        batched_policy,
        keys: list[jax.Array],
        variable_source,
        adders: list | None = None,
        evaluation: bool = True,
    ) -> VectorActor:
        """A VectorActor over len(keys) environments, pulling as `make_actor` does."""
        client = VariableClient(
            variable_source,
            self.variable_names(evaluation),
            update_period=self.variable_update_period(evaluation),
        )
        client.update(wait=True)
        return VectorActor(
            batched_policy,
            keys,
            client,
            adders=adders,
            **self.actor_options(with_adder=adders is not None),
        )


class OfflineBuilder(Builder):
    """An agent that trains from a dataset (`antiphon train --dataset`): no replay, no actors;
    the learner gets the whole dataset as device-resident `Transition`s."""

    offline = True

    def make_device_data(self, dataset) -> Transition:
        """The dataset as the learner's device-resident transitions (s, a, r, d, s')."""
        return offline.device_transitions(dataset, self.config.discount)

    @staticmethod
    def check_dataset(config, dataset) -> None:
        """Raises `DatasetError` (one line) for data this agent cannot learn from (before the
        run starts; the loaders have checked the format)."""

    @staticmethod
    def pretraining_steps(config) -> int:
        """SGD steps the learner takes before the `--steps` of the algorithm proper (Q_sarsa's
        pre-training); the run's learner step count includes them."""
        return 0

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
        update_key, sample_key = jax.random.split(key)
        sgd_step, state = self.learning_module.make_update(
            networks, self.config, env_spec, data, update_key, value_bounds=value_bounds
        )
        variables = getattr(self.learning_module, "variables", actor_critic.variables)
        return offline.make_learner(
            sgd_step, state, data, self.config, sample_key, variables, counter, logger
        )


class NStepTransitionBuilder(Builder):
    """An online agent that learns from n-step transitions (`core.types.Transition`: reward the
    discounted n-step return, discount gamma^n * not-terminal): one uniform replay table with a
    samples-per-insert rate limiter, the n-step adder, a reconnecting dataset of
    [sgd_steps_per_call, batch_size, ...] batches prefetched to the learner's device, and the
    learner `learner_class(networks, config, env_spec, iterator, key, ...)`
    (`learners.ConfiguredOnlineLearner`).

    The config needs: discount, n_step, batch_size, sgd_steps_per_call, samples_per_insert,
    min_replay_size, max_replay_size, prefetch_size, variable_update_period.
    (Reverb is imported only here, so offline agents never load it.)
    """

    learner_class: ClassVar[type]

    def make_replay_tables(self, env_spec: EnvironmentSpec) -> list[reverb.Table]:
        from antiphon.replay import adders, tables

        c = self.config
        return [
            tables.uniform_table(
                TRANSITION_TABLE,
                max_size=c.max_replay_size,
                signature=adders.NStepTransitionAdder.signature(env_spec),
                samples_per_insert=c.samples_per_insert,
                min_replay_size=c.min_replay_size,
            )
        ]

    def make_adder(self, client: reverb.Client) -> adders.NStepTransitionAdder:
        from antiphon.replay import adders

        return adders.NStepTransitionAdder(
            client,
            n_step=self.config.n_step,
            discount=self.config.discount,
            priority_fns={TRANSITION_TABLE: None},
        )

    def make_dataset_iterator(
        self, server_address: str, env_spec: EnvironmentSpec | None = None
    ) -> datasets.DevicePrefetcher:
        from antiphon.replay import clients, datasets

        c = self.config

        def make_dataset():
            dataset = datasets.make_reverb_dataset(
                clients.resolve_address(server_address),  # a restarted replay may have moved
                TRANSITION_TABLE,
                batch_size=c.batch_size,
                num_batches_per_call=c.sgd_steps_per_call,
            )
            # The learner consumes Transition pytrees shaped [K, B, ...] on its device.
            return dataset.map(lambda sample: sample.data)

        return datasets.DevicePrefetcher(
            datasets.reconnecting_numpy_iterator(make_dataset), size=c.prefetch_size
        )

    def make_learner(
        self,
        networks,
        iterator,
        env_spec: EnvironmentSpec,
        key,
        counter=None,
        logger=None,
        value_bounds: tuple[float, float] | None = None,
    ):
        # Reverb rebuilds the signature's namedtuple as its own class; restore ours.
        iterator = (Transition(*batch) for batch in iterator)
        return self.learner_class(
            networks,
            self.config,
            env_spec,
            iterator,
            key,
            counter=counter,
            logger=logger,
            value_bounds=value_bounds,
        )

    def variable_update_period(self, evaluation: bool) -> int:
        return 1 if evaluation else self.config.variable_update_period
