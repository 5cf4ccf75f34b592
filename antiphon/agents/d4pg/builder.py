"""D4PG builder: replay table, n-step adder, dataset, learner, policies and actor."""

from __future__ import annotations

import reverb

from antiphon.agents.builders import Builder
from antiphon.agents.d4pg import acting, learning
from antiphon.agents.d4pg import networks as d4pg_networks
from antiphon.agents.d4pg.config import D4PGConfig
from antiphon.core.types import EnvironmentSpec, Transition
from antiphon.replay import adders, clients, datasets, tables

REPLAY_TABLE = "priority_table"


class D4PGBuilder(Builder):
    name = "d4pg"
    config_class = D4PGConfig
    networks_module = d4pg_networks
    learning_module = learning
    acting_module = acting

    def make_replay_tables(self, env_spec: EnvironmentSpec) -> list[reverb.Table]:
        c = self.config
        signature = adders.NStepTransitionAdder.signature(env_spec)
        return [
            tables.uniform_table(
                REPLAY_TABLE,
                max_size=c.max_replay_size,
                signature=signature,
                samples_per_insert=c.samples_per_insert,
                min_replay_size=c.min_replay_size,
            )
        ]

    def make_adder(self, client: reverb.Client) -> adders.NStepTransitionAdder:
        return adders.NStepTransitionAdder(
            client,
            n_step=self.config.n_step,
            discount=self.config.discount,
            priority_fns={REPLAY_TABLE: None},
        )

    def make_dataset_iterator(self, server_address: str) -> datasets.DevicePrefetcher:
        c = self.config

        def make_dataset():
            dataset = datasets.make_reverb_dataset(
                clients.resolve_address(server_address),  # a restarted replay may have moved
                REPLAY_TABLE,
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
    ) -> learning.D4PGLearner:
        # Reverb rebuilds the signature's namedtuple as its own class; restore ours.
        iterator = (Transition(*batch) for batch in iterator)
        return learning.D4PGLearner(
            networks,
            self.config,
            env_spec,
            iterator,
            key,
            counter=counter,
            logger=logger,
            value_bounds=value_bounds,
        )

    def make_policy(self, networks, evaluation: bool = False):
        return acting.make_policy(networks, sigma=0.0 if evaluation else self.config.sigma)

    def variable_update_period(self, evaluation: bool) -> int:
        return 1 if evaluation else self.config.variable_update_period
