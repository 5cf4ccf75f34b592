"""Shared set-up of the learner benchmarks: a pre-filled replay table and an n-step transition
agent's learner (D4PG or MPO) on the real data path.

The table is what `NStepTransitionBuilder.make_replay_tables` builds for D4PG and MPO alike
(uniform, FIFO, the n-step adder's signature, named `priority_table`) except for the rate
limiter: MinSize(1) instead of the samples-per-insert limiter, so sampling never blocks ("replay
ready"). It is pre-filled with cheetah-run-shaped transitions (17 observations, 6 actions)
through a bare TrajectoryWriter (the same items the n-step adder writes, see
`adder_efficiency.write_bare`), and the learner reads it through the real data path: the agent
builder's `make_dataset_iterator` (Reverb TrajectoryDataset -> tf.data batch [K, B] ->
DevicePrefetcher) and `make_learner`.

    replay = start_filled_replay(20_000)
    setup = make_agent_learner(replay, "mpo", "c51")   # or make_learner(replay, "mog") (D4PG)
    ...
    setup.close(); replay.stop()

or, replay included (stopped by `close()`): `setup = start_agent_learner("mpo", "c51")`.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import jax
import reverb

from antiphon.agents import registry
from antiphon.agents.builders import TRANSITION_TABLE
from antiphon.replay import adders, tables
from benchmarks import adder_efficiency

ENV_SPEC = adder_efficiency.ENV_SPEC
EPISODE_LENGTH = adder_efficiency.EPISODE_LENGTH
REPLAY_TABLE = TRANSITION_TABLE

# The agents these benchmarks cover (n-step transition learners) and the critics each measures
# by default.
CRITIC_TYPES: dict[str, tuple[str, ...]] = {
    "d4pg": ("mog", "c51"),
    "mpo": ("scalar", "c51", "mog"),
}
AGENTS = tuple(CRITIC_TYPES)


@dataclasses.dataclass
class Replay:
    server: reverb.Server
    client: reverb.Client
    address: str
    num_items: int

    def stop(self) -> None:
        self.server.stop()


def start_filled_replay(
    num_items: int = 20_000, seed: int = 0, n_step: int = adder_efficiency.N_STEP
) -> Replay:
    """A live table holding at least `num_items` n-step transitions (whole 1000-step episodes)."""
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
    writer = client.trajectory_writer(num_keep_alive_refs=2 * n_step + 1)
    for i in range(-(-num_items // EPISODE_LENGTH)):
        adder_efficiency.write_bare(writer, adder_efficiency.SyntheticEpisode(seed + i), n=n_step)
    writer.flush()
    writer.close()
    size = client.server_info()[REPLAY_TABLE].current_size
    return Replay(server, client, address, int(size))


@dataclasses.dataclass
class Learner:
    config: Any  # D4PGConfig | MPOConfig
    builder: Any  # D4PGBuilder | MPOBuilder
    networks: Any
    prefetcher: Any  # the DevicePrefetcher feeding the learner (its wait_seconds is public)
    learner: Any  # builder.learner_class (D4PGLearner | MPOLearner)
    replay: Replay | None = None  # set (and stopped by close) only by start_agent_learner

    @property
    def agent(self) -> str:
        return self.builder.name

    def close(self) -> None:
        self.prefetcher.close()
        if self.replay is not None:
            self.replay.stop()


def make_config(agent: str, critic_type: str | None = None, config: Any = None, **overrides):
    """`agent`'s config (its defaults, or `config`) with `critic_type` and `overrides` set."""
    if agent not in CRITIC_TYPES:
        raise ValueError(f"agent must be one of {', '.join(AGENTS)}, not {agent!r}")
    if critic_type is not None:
        overrides["critic_type"] = critic_type
    if config is None:
        return registry.get_builder_class(agent).config_class(**overrides)
    return dataclasses.replace(config, **overrides)


def make_agent_learner(
    replay: Replay,
    agent: str = "d4pg",
    critic_type: str | None = None,
    config: Any = None,
    seed: int = 0,
    **overrides: Any,
) -> Learner:
    """`agent`'s builder (config as `make_config`), its networks for ENV_SPEC, and its learner
    reading `replay` through `builder.make_dataset_iterator` -> `builder.make_learner`."""
    config = make_config(agent, critic_type, config, **overrides)
    builder = registry.get_builder_class(agent)(config)
    networks = builder.make_networks(ENV_SPEC)
    prefetcher = builder.make_dataset_iterator(replay.address)
    learner = builder.make_learner(networks, prefetcher, ENV_SPEC, jax.random.PRNGKey(seed))
    return Learner(config, builder, networks, prefetcher, learner)


def start_agent_learner(
    agent: str = "d4pg",
    critic_type: str | None = None,
    config: Any = None,
    num_items: int = 20_000,
    seed: int = 0,
    **overrides: Any,
) -> Learner:
    """`make_agent_learner` on a replay of its own, filled with `num_items` transitions of the
    config's n-step length; `close()` also stops that replay."""
    config = make_config(agent, critic_type, config, **overrides)
    replay = start_filled_replay(num_items, seed, n_step=config.n_step)
    try:
        setup = make_agent_learner(replay, agent, config=config, seed=seed)
    except BaseException:
        replay.stop()
        raise
    setup.replay = replay
    return setup


def make_learner(replay: Replay, critic_type: str, seed: int = 0, **overrides: Any) -> Learner:
    """The D4PG learner (kept for existing callers): `make_agent_learner(replay, "d4pg", ...)`."""
    return make_agent_learner(replay, "d4pg", critic_type, seed=seed, **overrides)


def block_until_ready(learner: Any) -> None:
    """Wait for the learner's last (asynchronously dispatched) update to finish."""
    jax.block_until_ready(learner.state)  # the newest, possibly pending, state


# --------------------------------------------------------------------------------------------
# Command line of the learner benchmarks.


def result_name(benchmark: str, agent: str) -> str:
    """The JSON's name: `benchmark` for D4PG (as before) or `benchmark`_<agent>."""
    return benchmark if agent == "d4pg" else f"{benchmark}_{agent}"


def add_agent_arguments(parser: argparse.ArgumentParser) -> None:
    """--agent, --critic-types and the small-size options of the learner benchmarks."""
    parser.add_argument("--agent", choices=AGENTS, default="d4pg")
    parser.add_argument(
        "--critic-types",
        nargs="+",
        default=None,
        help="critics to measure (default: d4pg mog c51; mpo scalar c51 mog)",
    )
    parser.add_argument(
        "--num-items", type=int, default=20_000, help="transitions pre-filled into the replay"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="override the config's batch size (checks)"
    )
    parser.add_argument(
        "--json-name",
        default=None,
        help="results/<name>.json to write (default: the benchmark's name, with _<agent> for "
        "agents other than d4pg)",
    )


def agent_options(parser: argparse.ArgumentParser, args) -> tuple[tuple[str, ...], dict]:
    """(critic types, config overrides) from `add_agent_arguments`' options, checked."""
    allowed = CRITIC_TYPES[args.agent]
    critic_types = tuple(args.critic_types or allowed)
    bad = [c for c in critic_types if c not in allowed]
    if bad:
        parser.error(f"--critic-types for {args.agent}: choose from {', '.join(allowed)}")
    overrides = {} if args.batch_size is None else {"batch_size": args.batch_size}
    return critic_types, overrides
