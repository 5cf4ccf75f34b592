"""R2D3 on a real Reverb server with BabyAI bot demonstrations: the demo table is filled once
(zero recurrent state, the actors' sequence cutting) and never evicts; each batch element comes
from it with probability rho (a chi-square test over many batches); priorities go back to the
table each sequence came from; demonstrations that do not fit the environment are refused in
one line with exit 2."""

from __future__ import annotations

import collections

import jax
import numpy as np
import pytest
import reverb
from scipy import stats

from antiphon.agents.r2d2 import learning
from antiphon.agents.r2d2.builder import AGENT_TABLE, DEMO_TABLE, R2D2Builder
from antiphon.agents.r2d2.config import R2D2Config
from antiphon.core.types import make_environment_spec
from antiphon.environments import make_environment
from antiphon.environments.datasets import load_dataset
from antiphon.environments.minigrid import flatten_observation
from antiphon.launch import cli
from antiphon.replay import priorities, tables

ENV = "babyai:KeyCorridorS3R3"


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("demos") / "kc.npz")
    argv = ["collect", "--env", ENV, "--policy", "babyai-bot", "--episodes", "4"]
    assert cli.main([*argv, "--seed", "3", "--out", path, "--no-progress"]) == 0
    return path


def config(demos: str, **overrides) -> R2D2Config:
    values = dict(
        burn_in_length=2,
        trace_length=6,
        sequence_period=4,
        lstm_size=8,
        torso_size=8,
        batch_size=32,
        min_replay_size=1,
        max_replay_size=10_000,
        demos=demos,
        demo_ratio=0.25,
    )
    values.update(overrides)
    return R2D2Config(**values)


def expected_sequences(episode_lengths, length: int, period: int) -> int:
    """The sequence adder's cutting (its docstring): starts every `period` steps while a
    sequence fits in the T + 1 steps, and one more zero-padded one if they miss the last."""
    count = 0
    for actions in episode_lengths:
        steps = actions + 1
        full = 0 if steps < length else (steps - length) // period + 1
        count += full
        if full == 0 or (full - 1) * period + length < steps:
            count += 1
    return count


@pytest.fixture(scope="module")
def replay(demos):
    """Agent table (random-policy episodes, no rate limiter) and the builder's demo table."""
    env = make_environment(ENV, seed=0)
    spec = make_environment_spec(env)
    builder = R2D2Builder(config(demos))
    agent_table = tables.prioritized_table(
        AGENT_TABLE, 10_000, builder.signature(spec), 0.9, None, 1
    )
    demo_table = builder.make_replay_tables(spec)[1]
    server = tables.start_server([agent_table, demo_table])
    address = f"localhost:{server.port}"
    client = reverb.Client(address)
    adder = builder.make_adder(client)
    rng = np.random.default_rng(0)
    zero = {
        "hidden": np.zeros(8, np.float32),
        "cell": np.zeros(8, np.float32),
        "valid": np.float32(1),
    }
    for _ in range(3):
        timestep = env.reset()
        adder.add_first(timestep)
        while not timestep.last():
            action = np.int32(rng.integers(7))
            timestep = env.step(action)
            extras = dict(zero, hidden=rng.normal(size=8).astype(np.float32))
            adder.add(action, timestep, extras=extras)
    filled = builder.fill_demonstrations(client, spec)
    yield builder, spec, address, client, filled
    server.stop()


def _table_keys(address: str, table: str, count: int) -> dict[int, float]:
    """key -> priority of `table`'s items, from `count` samples (enough to see them all)."""
    dataset = reverb.TrajectoryDataset.from_table_signature(
        server_address=address, table=table, max_in_flight_samples_per_worker=32
    )
    return {
        int(s.info.key): float(s.info.priority) for s in dataset.take(count).as_numpy_iterator()
    }


def test_demo_table_is_filled_once_from_the_demonstrations_and_never_evicts(demos, replay):
    builder, spec, address, client, filled = replay
    dataset = load_dataset(demos)
    lengths = [s.stop - s.start for s in dataset.episode_slices()]
    c = builder.config
    assert filled == expected_sequences(lengths, c.sequence_length, c.sequence_period)
    info = client.server_info()[DEMO_TABLE]
    assert info.max_size >= filled  # the table can hold every demonstration sequence
    assert builder.fill_demonstrations(client, spec) == filled  # a second fill writes nothing
    assert client.server_info()[DEMO_TABLE].current_size == filled
    samples = reverb.TrajectoryDataset.from_table_signature(
        server_address=address, table=DEMO_TABLE, max_in_flight_samples_per_worker=32
    )
    firsts = {
        tuple(o)
        for o in np.asarray(dataset.observations)[[s.start for s in dataset.episode_slices()]]
    }
    seen_episode_starts = set()
    for sample in samples.take(200).as_numpy_iterator():
        extras = sample.data.extras
        assert not np.any(extras["hidden"]) and not np.any(extras["cell"])  # zero state
        if sample.data.start_of_episode[0]:
            first = jax.tree_util.tree_map(lambda x: x[0], sample.data.observation)
            seen_episode_starts.add(tuple(flatten_observation(first)))
    assert seen_episode_starts and seen_episode_starts <= firsts


def test_each_batch_element_comes_from_the_demos_with_probability_rho(replay):
    builder, spec, address, _, _ = replay
    iterator = builder.make_dataset_iterator(address, env_spec=spec)
    counts = []
    try:
        for _ in range(300):
            sample = next(iterator)
            counts.append(int(np.sum(sample.info["table"] == 1)))
    finally:
        iterator.close()
    batch, rho = builder.config.batch_size, builder.config.demo_ratio
    # Chi-square goodness of fit of the per-batch demo counts to Binomial(B, rho), with the
    # tails pooled so every bin expects at least 5 batches.
    pmf = stats.binom.pmf(np.arange(batch + 1), batch, rho) * len(counts)
    observed = np.bincount(counts, minlength=batch + 1).astype(float)
    low, high = 0, batch
    while pmf[: low + 1].sum() < 5:
        low += 1
    while pmf[high:].sum() < 5:
        high -= 1
    expected_bins = [pmf[: low + 1].sum(), *pmf[low + 1 : high], pmf[high:].sum()]
    observed_bins = [observed[: low + 1].sum(), *observed[low + 1 : high], observed[high:].sum()]
    _, p_value = stats.chisquare(observed_bins, expected_bins)
    assert p_value > 1e-3, (np.mean(counts) / batch, p_value)
    assert abs(np.mean(counts) / batch - rho) < 0.03


def test_priorities_go_back_to_the_table_each_sequence_came_from(replay):
    builder, spec, address, client, _ = replay
    networks = builder.make_networks(spec)
    sent = collections.defaultdict(dict)

    class Recording(priorities.PriorityUpdater):
        def __init__(self, table_index, table):
            super().__init__(client, table)
            self._index = table_index

        def update(self, keys, values):
            sent[self._index].update(
                zip(np.asarray(keys).tolist(), np.asarray(values).tolist(), strict=True)
            )
            super().update(keys, values)

    # Every item still has priority 1 here, so sampling sees them all.
    agent_keys = set(_table_keys(address, AGENT_TABLE, 4000))
    demo_keys = set(_table_keys(address, DEMO_TABLE, 2000))
    assert len(demo_keys) == client.server_info()[DEMO_TABLE].current_size
    assert len(agent_keys) == client.server_info()[AGENT_TABLE].current_size
    assert not agent_keys & demo_keys  # so routing a key to the wrong table would show
    iterator = builder.make_dataset_iterator(address, env_spec=spec)
    learner = learning.R2D2Learner(
        networks,
        builder.config,
        spec,
        iterator,
        jax.random.PRNGKey(0),
        {0: Recording(0, AGENT_TABLE), 1: Recording(1, DEMO_TABLE)},
    )
    try:
        for _ in range(6):
            learner.step()
        learner.flush()
    finally:
        iterator.close()
    assert sent[0] and sent[1]
    assert set(sent[0]) <= agent_keys and set(sent[1]) <= demo_keys
    # The tables hold the written priorities (of the items sampled again here).
    for table, index in ((AGENT_TABLE, 0), (DEMO_TABLE, 1)):
        now = _table_keys(address, table, 1000)
        updated = [key for key in sent[index] if key in now]
        assert updated
        for key in updated:
            assert now[key] == pytest.approx(sent[index][key], rel=1e-6)


def test_demonstrations_that_do_not_fit_are_refused_in_one_line(demos, tmp_path, capsys):
    argv = ["train", "--agent", "r2d2", "--steps", "10", "--run-dir", str(tmp_path / "r")]
    code = cli.main(
        [*argv, "--env", ENV, "--demos", str(tmp_path / "missing.npz"), "--demo-ratio", "0.1"]
    )
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "--demos" in error
    # A MiniGrid level whose view is not BabyAI's 7x7? All share it; a vector environment
    # is refused by the agent's declared spaces instead.
    code = cli.main([*argv, "--env", "gym:CartPole-v1", "--demos", demos, "--demo-ratio", "0.1"])
    assert code == 2
    assert not (tmp_path / "r").exists()


def test_a_resumed_replay_keeps_the_demonstrations_and_is_not_filled_again(demos, tmp_path):
    spec = make_environment_spec(make_environment(ENV, seed=0))
    builder = R2D2Builder(config(demos))
    checkpoints = str(tmp_path / "replay")
    server = tables.start_server(builder.make_replay_tables(spec), checkpoint_dir=checkpoints)
    client = reverb.Client(f"localhost:{server.port}")
    filled = builder.fill_demonstrations(client, spec)
    keys = set(_table_keys(f"localhost:{server.port}", DEMO_TABLE, 2000))
    tables.checkpoint(client)
    server.stop()
    # The run comes back (same command, same run_dir): the replay loads its checkpoint.
    server = tables.start_server(builder.make_replay_tables(spec), checkpoint_dir=checkpoints)
    try:
        client = reverb.Client(f"localhost:{server.port}")
        assert client.server_info()[DEMO_TABLE].current_size == filled
        assert builder.fill_demonstrations(client, spec) == filled
        assert set(_table_keys(f"localhost:{server.port}", DEMO_TABLE, 2000)) == keys
    finally:
        server.stop()
