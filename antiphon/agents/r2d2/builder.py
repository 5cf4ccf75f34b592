"""R2D2 / R2D3 builder: prioritised sequence replay (one table for the actors' experience and,
for R2D3, a second one filled once with the demonstrations), the sequence adder with the
actors' stored LSTM state, the per-actor epsilon ladder, and the learner that writes
priorities back to the table each sequence came from.

`demo_ratio` = 0 (R2D2) creates no demonstration table and samples the agent table alone, so
its batches, loss and updates are R2D2's exactly; `demo_ratio` = rho > 0 draws each batch
element from the demonstrations with probability rho (`replay.datasets.make_mixed_dataset`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import dm_env
import jax
import numpy as np

from antiphon.agents.builders import Builder, NStepTransitionBuilder
from antiphon.agents.compatibility import DICT_OBSERVATIONS, DISCRETE_ACTIONS
from antiphon.agents.r2d2 import acting, learning
from antiphon.agents.r2d2 import networks as r2d2_networks
from antiphon.agents.r2d2.config import R2D2Config
from antiphon.core.types import EnvironmentSpec

AGENT_TABLE = "r2d2_replay"
DEMO_TABLE = "r2d2_demonstrations"
TABLES = (AGENT_TABLE, DEMO_TABLE)  # a sample's table index is its position here


def demonstration_timesteps(dataset, to_observation: Callable[[np.ndarray], Any]):
    """Each episode of `dataset` as (first timestep, [(action, next timestep), ...]): the
    environment's view of a recorded episode (a true terminal ends with discount 0, a time-limit
    cut with discount 1), for the sequence adder."""
    for part in dataset.episode_slices():
        observations = dataset.observations[part]
        actions = dataset.actions[part]
        rewards = dataset.rewards[part]
        next_observations = dataset.next_observations[part]
        terminal = bool(dataset.terminals[part][-1])
        first = dm_env.restart(to_observation(observations[0]))
        steps = []
        for i in range(len(rewards)):
            observation = to_observation(next_observations[i])
            reward = np.float32(rewards[i])
            if i < len(rewards) - 1:
                timestep = dm_env.transition(reward, observation)
            elif terminal:
                timestep = dm_env.termination(reward, observation)
            else:
                timestep = dm_env.truncation(reward, observation)
            steps.append((np.int32(np.rint(actions[i]).reshape(-1)[0]), timestep))
        yield first, steps


def max_demonstration_sequences(dataset, period: int) -> int:
    """An upper bound on the sequences the adder cuts from `dataset` (a sequence starts every
    `period` steps of an episode of T + 1 steps, and one more may close it): the demo table's
    size, so it can never evict."""
    lengths = [s.stop - s.start + 1 for s in dataset.episode_slices()]
    return int(sum(math.ceil(n / period) + 1 for n in lengths))


class PrioritisedSequences(Iterator[Any]):
    """The learner's data: prefetched `ReplaySample(info={"key", "table"}, data=R2D2Batch)`
    batches [K, B, ...], and one `PriorityUpdater` per table sampled from."""

    def __init__(self, prefetcher, priority_updaters: dict[int, Any]):
        self._prefetcher = prefetcher
        self.priority_updaters = priority_updaters

    def __next__(self) -> Any:
        return next(self._prefetcher)

    def wait_fraction(self) -> float:
        return self._prefetcher.wait_fraction()

    def close(self) -> None:
        self._prefetcher.close()
        for updater in self.priority_updaters.values():
            updater.close()


def check_environment_fit(config: R2D2Config, env_spec: EnvironmentSpec) -> None:
    """Before anything is written: R2D3's demonstrations must load and fit the environment's
    observations and actions (DatasetError, one line, otherwise); so must a file named with
    rho = 0, which R2D2 does not sample from."""
    if config.demos:
        R2D2Builder(config).load_demonstrations(env_spec)


class R2D2Builder(Builder):
    name = "r2d2"
    config_class = R2D2Config
    networks_module = r2d2_networks
    learning_module = learning
    acting_module = acting
    observation_kinds = (DICT_OBSERVATIONS,)
    action_kinds = (DISCRETE_ACTIONS,)
    check_environment_fit = staticmethod(check_environment_fit)

    # ---- data
    def signature(self, env_spec: EnvironmentSpec):
        from antiphon.replay import adders

        return adders.SequenceAdder.signature(
            env_spec, self.config.sequence_length, acting.extras_spec(self.config.lstm_size)
        )

    def load_demonstrations(self, env_spec: EnvironmentSpec):
        """(dataset, rows -> observation) of `config.demos`, checked against the environment;
        raises DatasetError (one line) for a file that does not fit it."""
        from antiphon.environments.datasets import load_dataset
        from antiphon.environments.datasets.core import DatasetError
        from antiphon.environments.minigrid import unflatten_observations

        dataset = load_dataset(self.config.demos)
        if dataset.num_episodes == 0:
            raise DatasetError(f"{self.config.demos}: no complete episode to learn from")
        expected = jax.tree_util.tree_map(
            lambda s: (tuple(s.shape), np.dtype(s.dtype)), env_spec.observations
        )

        layout = dataset.metadata.get("observation_layout")  # None: the default 7x7 view

        def to_observation(row: np.ndarray):
            return unflatten_observations(row, layout)

        try:
            got = jax.tree_util.tree_map(
                lambda x: (tuple(np.shape(x)), np.asarray(x).dtype),
                to_observation(dataset.observations[0]),
            )
            if got != expected:
                raise ValueError(f"they unflatten to {got}, the environment has {expected}")
        except (ValueError, KeyError, TypeError) as error:
            raise DatasetError(
                f"{self.config.demos}: its observations do not fit the environment's ({error})"
            ) from None
        num_actions = int(env_spec.actions.num_values)
        actions = dataset.actions.reshape(len(dataset), -1)
        if actions.shape[1] != 1 or np.any(actions < 0) or np.any(actions >= num_actions):
            raise DatasetError(
                f"{self.config.demos}: actions must be one index in [0, {num_actions}) per step "
                f"(got shape {dataset.actions.shape[1:]}, range "
                f"[{actions.min():.3g}, {actions.max():.3g}])"
            )
        return dataset, to_observation

    def make_replay_tables(self, env_spec: EnvironmentSpec):
        import reverb

        from antiphon.replay import tables

        c = self.config
        signature = self.signature(env_spec)
        result = [
            tables.prioritized_table(
                AGENT_TABLE,
                max_size=c.max_replay_size,
                signature=signature,
                priority_exponent=c.priority_exponent,
                samples_per_insert=c.samples_per_insert,
                min_replay_size=c.min_replay_size,
            )
        ]
        if c.demo_ratio > 0:
            dataset, _ = self.load_demonstrations(env_spec)
            result.append(
                reverb.Table(
                    name=DEMO_TABLE,
                    sampler=reverb.selectors.Prioritized(c.priority_exponent),
                    remover=reverb.selectors.Fifo(),  # never used: the table holds them all
                    max_size=max_demonstration_sequences(dataset, c.sequence_period),
                    rate_limiter=reverb.rate_limiters.MinSize(1),
                    signature=signature,
                )
            )
        return result

    def make_adder(self, client, table: str = AGENT_TABLE):
        from antiphon.replay import adders

        return adders.SequenceAdder(
            client,
            sequence_length=self.config.sequence_length,
            period=self.config.sequence_period,
            priority_fns={table: None},  # new sequences start at priority 1
            end_of_episode_behavior="zero_pad",
        )

    def fill_demonstrations(self, client, env_spec: EnvironmentSpec) -> int:
        """Writes the demonstrations into the demo table once (zero LSTM state, the actors'
        sequence cutting); a table that already holds them (a restored replay checkpoint, a
        learner that restarted) is left as it is. Returns the sequences in the table."""
        info = client.server_info()[DEMO_TABLE]
        if info.current_size > 0:
            return int(info.current_size)
        dataset, to_observation = self.load_demonstrations(env_spec)
        zero = acting.core_state_extras(r2d2_networks.zero_state(self.config.lstm_size))
        adder = self.make_adder(client, table=DEMO_TABLE)
        for first, steps in demonstration_timesteps(dataset, to_observation):
            adder.add_first(first)
            for action, timestep in steps:
                adder.add(action, timestep, extras=zero)
        adder.close()
        return int(client.server_info()[DEMO_TABLE].current_size)

    def make_dataset_iterator(self, server_address: str, env_spec: EnvironmentSpec | None = None):
        import reverb
        import tensorflow as tf

        from antiphon.replay import clients, datasets, priorities

        c = self.config

        @tf.autograph.experimental.do_not_convert
        def to_batch(table_index, sample):
            data, info = sample.data, sample.info
            extras = data.extras
            batch = learning.R2D2Batch(
                observations=data.observation,
                actions=data.action,
                rewards=data.reward,
                discounts=data.discount,
                valid=extras["valid"],
                hidden=extras["hidden"][:, 0],
                cell=extras["cell"][:, 0],
                probabilities=tf.cast(info.probability, tf.float32),
                table_sizes=tf.cast(info.table_size, tf.float32),
            )
            return reverb.ReplaySample(info={"key": info.key, "table": table_index}, data=batch)

        def make_dataset():
            address = clients.resolve_address(server_address)
            if c.demo_ratio > 0:
                if env_spec is None:
                    raise ValueError("R2D3 needs the environment spec to fill the demo table")
                self.fill_demonstrations(reverb.Client(address), env_spec)
                dataset = datasets.make_mixed_dataset(
                    address,
                    [(AGENT_TABLE, 1.0 - c.demo_ratio), (DEMO_TABLE, c.demo_ratio)],
                    batch_size=c.batch_size,
                    num_batches_per_call=None,
                    prefetch_size=0,
                    with_table_index=True,
                )
            else:
                dataset = datasets.make_reverb_dataset(
                    address, AGENT_TABLE, batch_size=c.batch_size, prefetch_size=0
                ).map(lambda sample: (tf.zeros_like(sample.info.key, tf.int32), sample))
            dataset = dataset.map(to_batch)
            return dataset.batch(c.sgd_steps_per_call, drop_remainder=True).prefetch(2)

        prefetcher = datasets.DevicePrefetcher(
            datasets.reconnecting_numpy_iterator(make_dataset), size=c.prefetch_size
        )
        client = reverb.Client(clients.resolve_address(server_address))
        updaters = {0: priorities.PriorityUpdater(client, AGENT_TABLE)}
        if c.demo_ratio > 0:
            updaters[1] = priorities.PriorityUpdater(client, DEMO_TABLE)
        return PrioritisedSequences(prefetcher, updaters)

    def make_learner(
        self, networks, iterator, env_spec, key, counter=None, logger=None, value_bounds=None
    ):
        del value_bounds
        return learning.R2D2Learner(
            networks,
            self.config,
            env_spec,
            iterator,
            key,
            priority_updaters=iterator.priority_updaters,
            counter=counter,
            logger=logger,
        )

    # ---- acting
    def make_policy(self, networks, evaluation: bool = True):
        return acting.make_policy(networks, epsilon=self.config.evaluation_epsilon)

    def make_actor_policy(self, networks, actor_id: int, num_actors: int):
        epsilon = learning.epsilon_ladder(
            num_actors, self.config.epsilon_base, self.config.epsilon_exponent
        )[actor_id]
        return acting.make_policy(networks, epsilon=epsilon)

    # Actors pull every `variable_update_period` steps, evaluators every step (as D4PG, MPO).
    variable_update_period = NStepTransitionBuilder.variable_update_period

    def make_vector_actor_policy(self, networks, stream_ids: list[int], num_streams: int):
        ladder = learning.epsilon_ladder(
            num_streams, self.config.epsilon_base, self.config.epsilon_exponent
        )
        return acting.make_vector_policy(networks, [ladder[i] for i in stream_ids])

    def actor_options(self, with_adder: bool):
        lstm_size = self.config.lstm_size
        return {
            "initial_state": lambda: r2d2_networks.zero_state(lstm_size),
            "state_extras": acting.core_state_extras if with_adder else None,
        }
