"""Shared set-up of the learner benchmarks: a pre-filled replay table and the D4PG learner.

The table is what `D4PGBuilder.make_replay_tables` builds (uniform, FIFO, the n-step adder's
signature, named `priority_table`) except for the rate limiter: MinSize(1) instead of the
samples-per-insert limiter, so sampling never blocks ("replay ready"). It is pre-filled with
cheetah-run-shaped transitions (17 observations, 6 actions) through a bare TrajectoryWriter
(the same items the n-step adder writes, see `adder_efficiency.write_bare`), and the learner
reads it through the real data path: `D4PGBuilder.make_dataset_iterator` (Reverb
TrajectoryDataset -> tf.data batch [K, B] -> DevicePrefetcher) and `make_learner`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import reverb

from antiphon.agents.d4pg.builder import REPLAY_TABLE, D4PGBuilder
from antiphon.agents.d4pg.config import D4PGConfig
from antiphon.replay import adders, tables
from benchmarks import adder_efficiency

ENV_SPEC = adder_efficiency.ENV_SPEC
EPISODE_LENGTH = adder_efficiency.EPISODE_LENGTH


@dataclasses.dataclass
class Replay:
    server: reverb.Server
    client: reverb.Client
    address: str
    num_items: int

    def stop(self) -> None:
        self.server.stop()


def start_filled_replay(num_items: int = 20_000, seed: int = 0) -> Replay:
    table = tables.uniform_table(
        REPLAY_TABLE,
        max_size=1_000_000,
        signature=adders.NStepTransitionAdder.signature(ENV_SPEC),
        samples_per_insert=None,  # no rate limiter: the replay is always ready
        min_replay_size=1,
    )
    server = tables.start_server([table])
    address = f"localhost:{server.port}"
    client = reverb.Client(address)
    writer = client.trajectory_writer(num_keep_alive_refs=2 * adder_efficiency.N_STEP + 1)
    for i in range(-(-num_items // EPISODE_LENGTH)):
        adder_efficiency.write_bare(writer, adder_efficiency.SyntheticEpisode(seed + i))
    writer.flush()
    writer.close()
    size = client.server_info()[REPLAY_TABLE].current_size
    return Replay(server, client, address, int(size))


@dataclasses.dataclass
class Learner:
    config: D4PGConfig
    builder: D4PGBuilder
    networks: Any
    prefetcher: Any  # the DevicePrefetcher feeding the learner (its wait_seconds is public)
    learner: Any

    def close(self) -> None:
        self.prefetcher.close()


def make_learner(replay: Replay, critic_type: str, seed: int = 0, **overrides: Any) -> Learner:
    config = D4PGConfig(critic_type=critic_type, **overrides)
    builder = D4PGBuilder(config)
    networks = builder.make_networks(ENV_SPEC)
    prefetcher = builder.make_dataset_iterator(replay.address)
    learner = builder.make_learner(networks, prefetcher, ENV_SPEC, jax.random.PRNGKey(seed))
    return Learner(config, builder, networks, prefetcher, learner)


def block_until_ready(learner: Any) -> None:
    """Wait for the learner's last (asynchronously dispatched) update to finish."""
    jax.block_until_ready(learner._state)  # noqa: SLF001 - timing needs the real finish time
