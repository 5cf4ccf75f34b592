"""R2D2 end to end on a real Reverb server and a real MiniGrid environment: the state each
sequence stores is the one the actor had at its first step, the learner's batches carry it,
and demo_ratio = 0 is R2D2's learner on the agent table alone (no demonstration table)."""

from __future__ import annotations

import haiku as hk
import jax
import numpy as np
import pytest
import reverb

from antiphon.agents.r2d2 import learning
from antiphon.agents.r2d2.builder import AGENT_TABLE, R2D2Builder
from antiphon.agents.r2d2.config import R2D2Config
from antiphon.core.logging import NoOpLogger
from antiphon.core.loop import EnvironmentLoop
from antiphon.core.types import make_environment_spec, zeros_like_spec
from antiphon.environments import make_environment
from antiphon.replay import tables

ENV = "minigrid:MiniGrid-Empty-5x5-v0"  # 100-step time limit


def small_config(**overrides) -> R2D2Config:
    values = dict(
        burn_in_length=2,
        trace_length=4,
        sequence_period=3,
        lstm_size=8,
        torso_size=8,
        batch_size=4,
        min_replay_size=1,
        max_replay_size=1000,
        n_step=2,
        discount=0.9,
    )
    values.update(overrides)
    return R2D2Config(**values)


class FixedParams:
    """A variable source serving one parameter set (the learner's role, without a learner)."""

    def __init__(self, params):
        self._params = params

    def get_variables(self, names):
        return [self._params for _ in names]


@pytest.fixture(scope="module")
def recorded():
    """Two episodes acted by the builder's actor (epsilon 0.4) into the agent table."""
    env = make_environment(ENV, seed=0)
    spec = make_environment_spec(env)
    builder = R2D2Builder(small_config())
    networks = builder.make_networks(spec)
    observation = zeros_like_spec(spec.observations, batch_shape=(1,))
    params = networks.init(jax.random.PRNGKey(1), observation, networks.initial_state(1))
    # The builder's table without its rate limiter (which would hold back a lone writer).
    table = tables.prioritized_table(
        AGENT_TABLE,
        10_000,
        builder.signature(spec),
        0.9,
        samples_per_insert=None,
        min_replay_size=1,
    )
    server = tables.start_server([table])
    address = f"localhost:{server.port}"
    adder = builder.make_adder(reverb.Client(address))
    actor = builder.make_actor(
        builder.make_actor_policy(networks, 0, 1),
        jax.random.PRNGKey(2),
        FixedParams(params),
        adder=adder,
        evaluation=False,
    )
    loop = EnvironmentLoop(env, actor, should_update=False, logger=NoOpLogger())
    lengths = [int(loop.run_episode()["episode_length"]) for _ in range(2)]
    yield builder, spec, networks, params, address, lengths
    server.stop()


def _raw_sequences(address: str, count: int):
    dataset = reverb.TrajectoryDataset.from_table_signature(
        server_address=address, table=AGENT_TABLE, max_in_flight_samples_per_worker=16
    )
    return [sample for sample in dataset.take(count).as_numpy_iterator()]


def test_stored_state_is_the_actors_state_at_the_sequence_start(recorded):
    builder, spec, networks, params, address, lengths = recorded
    config = builder.config
    samples = _raw_sequences(address, 60)
    assert all(s.data.observation["image"].shape[0] == config.sequence_length for s in samples)
    checked_steps = 0
    for sample in samples:
        data = sample.data
        extras = data.extras
        valid = extras["valid"]
        if data.start_of_episode[0]:
            assert not np.any(extras["hidden"][0]) and not np.any(extras["cell"][0])
        # The actor's state after step k is LSTM(o_k, state before k): recompute it from the
        # stored first state and compare with what was stored at step k + 1.
        state = (extras["hidden"][0][None], extras["cell"][0][None])
        state = hk.LSTMState(*state)
        for k in range(config.sequence_length - 1):
            if not (valid[k] and valid[k + 1]):
                break
            observation = jax.tree_util.tree_map(lambda x, k=k: x[k][None], data.observation)
            _, state = networks.step(params, observation, state)
            np.testing.assert_allclose(state.hidden[0], extras["hidden"][k + 1], atol=1e-5)
            np.testing.assert_allclose(state.cell[0], extras["cell"][k + 1], atol=1e-5)
            checked_steps += 1
    assert checked_steps > 100
    # Some sequences start mid-episode, with a non-zero stored state.
    assert any(
        not s.data.start_of_episode[0] and np.any(s.data.extras["hidden"][0]) for s in samples
    )


def test_the_learners_batch_carries_each_sequences_first_state(recorded):
    builder, spec, networks, params, address, _ = recorded
    firsts = {
        s.data.extras["hidden"][0].tobytes(): s.data.extras["cell"][0]
        for s in _raw_sequences(address, 400)
    }
    iterator = builder.make_dataset_iterator(address, env_spec=spec)
    try:
        sample = jax.device_get(next(iterator))
    finally:
        iterator.close()
    batch = sample.data
    assert batch.hidden.shape == (1, 4, 8) and batch.valid.shape == (1, 4, 7)
    assert np.all(sample.info["table"] == 0)  # R2D2: the agent table only
    for b in range(4):
        hidden = np.asarray(batch.hidden[0, b])
        assert hidden.tobytes() in firsts
        np.testing.assert_array_equal(batch.cell[0, b], firsts[hidden.tobytes()])
    assert np.all((batch.probabilities > 0) & (batch.probabilities <= 1))


def test_demo_ratio_zero_is_r2d2_one_table_and_the_same_update(recorded):
    builder, spec, networks, params, address, _ = recorded
    assert [t.name for t in builder.make_replay_tables(spec)] == [AGENT_TABLE]
    iterator = builder.make_dataset_iterator(address, env_spec=spec)
    sample = next(iterator)
    iterator.close()

    class Recording:
        def __init__(self):
            self.sent = []

        def update(self, keys, priorities):
            self.sent.append((np.asarray(keys), np.asarray(priorities)))

        def flush(self):
            pass

    def one_step(config):
        recording = Recording()
        learner = learning.R2D2Learner(
            networks, config, spec, iter([sample]), jax.random.PRNGKey(0), {0: recording}
        )
        learner.step()
        learner.flush()
        return learner.state, recording.sent

    r2d2_state, r2d2_sent = one_step(builder.config)
    r2d3_state, r2d3_sent = one_step(small_config(demo_ratio=1 / 16, demos="demos.npz"))
    # The same batch gives bitwise the same update and priorities whatever rho is: rho only
    # changes where the batch's sequences come from.
    for a, b in zip(
        jax.tree_util.tree_leaves(r2d2_state), jax.tree_util.tree_leaves(r2d3_state), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    ((keys, priorities),) = r2d2_sent
    np.testing.assert_array_equal(keys, sample.info["key"][0])
    np.testing.assert_array_equal(priorities, r2d3_sent[0][1])
    # ... and it is the plain (unscanned) SGD step on that batch, up to float32 reassociation.
    step, state = learning.make_update(networks, builder.config, spec, jax.random.PRNGKey(0))
    batch = jax.tree_util.tree_map(lambda x: x[0], sample.data)
    expected_state, _, expected_priorities = jax.jit(step)(state, batch)
    for got, want in zip(
        jax.tree_util.tree_leaves(r2d2_state.params),
        jax.tree_util.tree_leaves(expected_state.params),
        strict=True,
    ):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-7)
    np.testing.assert_allclose(priorities, np.asarray(expected_priorities), rtol=1e-6)
    assert int(r2d2_state.steps) == 1
