"""Adders against a real Reverb server, with hand-computed expected items."""

from __future__ import annotations

import numpy as np
import pytest
import reverb
import tensorflow as tf

from antiphon.core.types import Transition
from antiphon.replay import adders as adders_lib
from antiphon.replay import tables
from tests.replay import ENV_SPEC, act, drain, episode, feed, obs

G = 0.9
EXTRAS_SPEC = {"logp": tf.TensorSpec((), tf.float32)}


@pytest.fixture
def make_client():
    servers = []

    def make(*tables_: reverb.Table) -> reverb.Client:
        server = tables.start_server(list(tables_))
        servers.append(server)
        return reverb.Client(f"localhost:{server.port}")

    yield make
    for server in servers:
        server.stop()


def transition_client(make_client, extras_spec=()):
    sig = adders_lib.NStepTransitionAdder.signature(ENV_SPEC, extras_spec)
    return make_client(tables.queue_table("q", 1000, sig))


def check_transitions(items, expected, episode_id=0):
    """expected: list of (t, reward, discount, next_t)."""
    assert len(items) == len(expected)
    for item, (t, reward, discount, next_t) in zip(items, expected, strict=True):
        tr = Transition(*item)
        np.testing.assert_array_equal(tr.observation, obs(t, episode_id))
        np.testing.assert_array_equal(tr.action, act(t))
        np.testing.assert_allclose(tr.reward, reward, rtol=1e-6)
        np.testing.assert_allclose(tr.discount, discount, rtol=1e-6)
        np.testing.assert_array_equal(tr.next_observation, obs(next_t, episode_id))
        assert tr.reward.dtype == np.float32 and tr.discount.dtype == np.float32


# Rewards 1, 2, 3, 4; gamma 0.9.  Per t: (t, R, D, index of next observation).
TERMINATED = {
    1: [(0, 1, 0.9, 1), (1, 2, 0.9, 2), (2, 3, 0.9, 3), (3, 4, 0.0, 4)],
    2: [(0, 2.8, 0.81, 2), (1, 4.7, 0.81, 3), (2, 6.6, 0.0, 4), (3, 4, 0.0, 4)],
    3: [(0, 5.23, 0.729, 3), (1, 7.94, 0.0, 4), (2, 6.6, 0.0, 4), (3, 4, 0.0, 4)],
}
TRUNCATED = {
    1: [(0, 1, 0.9, 1), (1, 2, 0.9, 2), (2, 3, 0.9, 3), (3, 4, 0.9, 4)],
    2: [(0, 2.8, 0.81, 2), (1, 4.7, 0.81, 3), (2, 6.6, 0.81, 4), (3, 4, 0.9, 4)],
    3: [(0, 5.23, 0.729, 3), (1, 7.94, 0.729, 4), (2, 6.6, 0.81, 4), (3, 4, 0.9, 4)],
}


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("truncated", [False, True])
def test_n_step_transitions(make_client, n, truncated):
    client = transition_client(make_client)
    adder = adders_lib.NStepTransitionAdder(client, n_step=n, discount=G, priority_fns="q")
    feed(adder, episode([1, 2, 3, 4], truncated=truncated))
    expected = (TRUNCATED if truncated else TERMINATED)[n]
    check_transitions(drain(client, "q"), expected)


def test_n_step_mid_episode_discount_and_short_episode(make_client):
    client = transition_client(make_client)
    adder = adders_lib.NStepTransitionAdder(client, n_step=3, discount=G, priority_fns="q")
    # d_1 = 0.5: R_0 = 1 + .9*2 + .81*.5*3 = 4.015, D_0 = .729*.5; R_1 = 2 + .45*3 + .405*4.
    feed(adder, episode([1, 2, 3, 4], discounts=[1, 0.5, 1, 1], truncated=True))
    check_transitions(
        drain(client, "q"),
        [(0, 4.015, 0.3645, 3), (1, 4.97, 0.3645, 4), (2, 6.6, 0.81, 4), (3, 4, 0.9, 4)],
    )
    # An episode shorter than n: every transition is cut by the episode end.
    feed(adder, episode([1, 2]))
    check_transitions(drain(client, "q"), [(0, 2.8, 0.0, 2), (1, 2, 0.0, 2)])


def test_n_step_consecutive_episodes_do_not_leak(make_client):
    client = transition_client(make_client)
    adder = adders_lib.NStepTransitionAdder(client, n_step=3, discount=G, priority_fns="q")
    feed(adder, episode([1, 2, 3, 4], episode_id=0))
    feed(adder, episode([1, 2, 3, 4], truncated=True, episode_id=1))
    items = drain(client, "q")
    check_transitions(items[:4], TERMINATED[3], episode_id=0)
    check_transitions(items[4:], TRUNCATED[3], episode_id=1)


def test_n_step_reset_mid_episode_drops_unfinished(make_client):
    client = transition_client(make_client)
    adder = adders_lib.NStepTransitionAdder(client, n_step=2, discount=G, priority_fns="q")
    steps = episode([1, 2, 3, 4], episode_id=0)
    adder.add_first(steps[0])
    for t in range(3):
        adder.add(act(t), steps[t + 1])
    adder.reset()  # t=0 and t=1 were complete; t=2 is dropped
    feed(adder, episode([1, 2, 3, 4], episode_id=1))
    items = drain(client, "q")
    check_transitions(items[:2], TERMINATED[2][:2], episode_id=0)
    check_transitions(items[2:], TERMINATED[2], episode_id=1)


def test_n_step_extras_priorities_and_several_tables(make_client):
    sig = adders_lib.NStepTransitionAdder.signature(ENV_SPEC, EXTRAS_SPEC)
    client = make_client(tables.queue_table("a", 100, sig), tables.queue_table("b", 100, sig))
    adder = adders_lib.NStepTransitionAdder(
        client, n_step=2, discount=G, priority_fns={"a": None, "b": lambda tr: 10 * tr.reward}
    )
    feed(adder, episode([1, 2, 3]), extras_fn=lambda t: {"logp": np.float32(-t)})
    size = client.server_info()["a"].current_size
    a = list(client.sample("a", size, emit_timesteps=False, unpack_as_table_signature=True))
    b = list(client.sample("b", 3, emit_timesteps=False, unpack_as_table_signature=True))
    assert [s.info.priority for s in a] == [1.0, 1.0, 1.0]
    np.testing.assert_allclose([s.info.priority for s in b], [28.0, 47.0, 30.0], rtol=1e-6)
    assert [float(s.data.extras["logp"]) for s in a] == [0.0, -1.0, -2.0]


def test_n_step_rejects_bad_use(make_client):
    client = transition_client(make_client)
    with pytest.raises(ValueError, match="n_step"):
        adders_lib.NStepTransitionAdder(client, n_step=0, discount=G, priority_fns="q")
    adder = adders_lib.NStepTransitionAdder(client, n_step=1, discount=G, priority_fns="q")
    steps = episode([1, 2])
    with pytest.raises(ValueError, match="before add_first"):
        adder.add(act(0), steps[1])
    with pytest.raises(ValueError, match="FIRST"):
        adder.add_first(steps[1])


# ------------------------------------------------------------------------------------------
# Sequences: episode with 5 actions, rewards 1..5 -> 6 steps (step 5 = final observation).


def seq_client(make_client, length, name="s"):
    sig = adders_lib.SequenceAdder.signature(ENV_SPEC, length, EXTRAS_SPEC)
    return make_client(tables.queue_table(name, 100, sig))


def expected_step(t, num_actions, episode_id=0):
    """(observation, action, reward, discount, start, logp) of step t; beyond the end: zeros."""
    if t < num_actions:
        discount = 0.0 if t == num_actions - 1 else 1.0
        return obs(t, episode_id), act(t), t + 1.0, discount, t == 0, -float(t)
    zeros = np.zeros(1, np.float32)
    observation = obs(t, episode_id) if t == num_actions else np.zeros(2, np.float32)
    return observation, zeros, 0.0, 0.0, False, 0.0


def check_sequence(item, steps, num_actions, episode_id=0):
    assert item.reward.shape == (len(steps),)
    for i, t in enumerate(steps):
        o, a, r, d, start, logp = expected_step(t, num_actions, episode_id)
        np.testing.assert_array_equal(item.observation[i], o)
        np.testing.assert_array_equal(item.action[i], a)
        assert item.reward[i] == r and item.discount[i] == d
        assert bool(item.start_of_episode[i]) is start
        assert item.extras["logp"][i] == logp
    assert item.start_of_episode.dtype == np.bool_ and item.reward.dtype == np.float32


def logp(t):
    return {"logp": np.float32(-t)}


def test_sequence_overlap_and_zero_padding(make_client):
    client = seq_client(make_client, 3)
    adder = adders_lib.SequenceAdder(client, sequence_length=3, period=2, priority_fns="s")
    feed(adder, episode([1, 2, 3, 4, 5]), extras_fn=logp)
    items = drain(client, "s")
    # Starts 0, 2 (full), then 4: steps 4, 5 and one padding step (index 6 = zeros).
    assert len(items) == 3
    for item, steps in zip(items, [[0, 1, 2], [2, 3, 4], [4, 5, 6]], strict=True):
        check_sequence(item, steps, 5)


def test_sequence_truncate(make_client):
    client = seq_client(make_client, None)
    adder = adders_lib.SequenceAdder(
        client, 3, 2, priority_fns="s", end_of_episode_behavior="truncate"
    )
    feed(adder, episode([1, 2, 3, 4, 5]), extras_fn=logp)
    items = drain(client, "s")
    assert len(items) == 3
    for item, steps in zip(items, [[0, 1, 2], [2, 3, 4], [4, 5]], strict=True):
        check_sequence(item, steps, 5)


def test_sequence_episode_boundaries_and_short_episodes(make_client):
    client = seq_client(make_client, 2)
    adder = adders_lib.SequenceAdder(client, sequence_length=2, period=1, priority_fns="s")
    feed(adder, episode([1, 2], episode_id=0), extras_fn=logp)
    feed(adder, episode([1, 2], episode_id=1), extras_fn=logp)
    items = drain(client, "s")
    # Each 2-action episode has 3 steps -> sequences [0, 1] and [1, 2]; none crosses episodes.
    assert len(items) == 4
    for k, item in enumerate(items):
        check_sequence(item, [k % 2, k % 2 + 1], 2, episode_id=k // 2)

    # Sequence longer than the episode: one item, zero-padded.
    client = seq_client(make_client, 5, name="long")
    adder = adders_lib.SequenceAdder(client, sequence_length=5, period=5, priority_fns="long")
    feed(adder, episode([1, 2]), extras_fn=logp)
    (item,) = drain(client, "long")
    check_sequence(item, [0, 1, 2, 3, 4], 2)


def test_sequence_period_equal_length_no_padding_needed(make_client):
    client = seq_client(make_client, 3)
    adder = adders_lib.SequenceAdder(client, sequence_length=3, period=3, priority_fns="s")
    feed(adder, episode([1, 2, 3, 4, 5]), extras_fn=logp)  # 6 steps = two full sequences
    items = drain(client, "s")
    assert len(items) == 2
    check_sequence(items[0], [0, 1, 2], 5)
    check_sequence(items[1], [3, 4, 5], 5)


# ------------------------------------------------------------------------------------------
# Episodes.


@pytest.mark.parametrize("padding", [True, False])
def test_episode_adder(make_client, padding):
    sig = adders_lib.EpisodeAdder.signature(ENV_SPEC, 6 if padding else None, EXTRAS_SPEC)
    client = make_client(tables.queue_table("e", 10, sig))
    adder = adders_lib.EpisodeAdder(
        client, max_sequence_length=6, priority_fns="e", padding=padding
    )
    feed(adder, episode([1, 2, 3], episode_id=0), extras_fn=logp)
    feed(adder, episode([1, 2, 3, 4, 5], episode_id=1), extras_fn=logp)
    first, second = drain(client, "e")
    check_sequence(first, list(range(6 if padding else 4)), 3, episode_id=0)
    check_sequence(second, list(range(6)), 5, episode_id=1)


def test_episode_adder_rejects_long_episodes(make_client):
    sig = adders_lib.EpisodeAdder.signature(ENV_SPEC, 3)
    client = make_client(tables.queue_table("e", 10, sig))
    adder = adders_lib.EpisodeAdder(client, max_sequence_length=3, priority_fns="e")
    feed(adder, episode([1, 2]))  # 2 actions + final observation = 3 steps: fits
    assert len(drain(client, "e")) == 1
    steps = episode([1, 2, 3])
    adder.add_first(steps[0])
    adder.add(act(0), steps[1])
    adder.add(act(1), steps[2])
    with pytest.raises(ValueError, match="max_sequence_length=3"):
        adder.add(act(2), steps[3])
    adder.reset()
    feed(adder, episode([1, 2]))  # usable again after reset
    assert len(drain(client, "e")) == 1


def test_n_step_returns_per_objective_with_vector_rewards(make_client):
    """Rewards [r, -r/10] per step: each objective's n-step return is computed on its own, with
    the one shared discount (gamma 0.9, n = 3, termination at step 4)."""
    from dm_env import specs

    from antiphon.core.types import EnvironmentSpec
    from tests.replay import episode as scalar_episode

    spec = EnvironmentSpec(
        observations=ENV_SPEC.observations,
        actions=ENV_SPEC.actions,
        rewards=specs.Array((2,), np.float32, name="reward"),
        discounts=ENV_SPEC.discounts,
    )
    sig = adders_lib.NStepTransitionAdder.signature(spec)
    client = make_client(tables.queue_table("q", 1000, sig))
    adder = adders_lib.NStepTransitionAdder(client, n_step=3, discount=G, priority_fns="q")
    steps = scalar_episode([1, 2, 3, 4])
    steps = [steps[0]] + [
        ts._replace(reward=np.array([ts.reward, -ts.reward / 10], np.float32)) for ts in steps[1:]
    ]
    feed(adder, steps)
    items = [Transition(*item) for item in drain(client, "q")]
    # objective 0 is TERMINATED[3]; objective 1 is -1/10 of it; discounts as for a scalar reward
    for item, (t, reward, discount, next_t) in zip(items, TERMINATED[3], strict=True):
        assert item.reward.shape == (2,) and item.reward.dtype == np.float32
        np.testing.assert_allclose(item.reward, [reward, -reward / 10], rtol=1e-6)
        np.testing.assert_allclose(item.discount, discount, rtol=1e-6)
        np.testing.assert_array_equal(item.observation, obs(t))
        np.testing.assert_array_equal(item.next_observation, obs(next_t))
