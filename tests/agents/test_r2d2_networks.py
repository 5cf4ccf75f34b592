"""R2D2's recurrent Q-network: one set of params serves the actor's step and the learner's unroll
(the unroll equals stepping), the stored state matters, and batch elements stay apart."""

from __future__ import annotations

import jax
import numpy as np

from antiphon.agents.r2d2.networks import make_recurrent_q_network
from antiphon.environments import registry


def _episode(steps: int = 6):
    env = registry.make_environment("babyai:GoToRedBallNoDists", seed=0)
    timestep = env.reset()
    observations = [timestep.observation]
    rng = np.random.default_rng(0)
    for _ in range(steps - 1):
        timestep = env.step(int(rng.integers(0, 3)))
        observations.append(timestep.observation)
    # [T, B=1, ...]
    return jax.tree_util.tree_map(lambda *x: np.stack(x)[:, None], *observations)


def test_unroll_equals_stepping_and_the_state_matters():
    networks = make_recurrent_q_network(num_actions=7, lstm_size=32, torso_size=32)
    observations = _episode()
    first = jax.tree_util.tree_map(lambda x: x[0], observations)
    params = networks.init(jax.random.PRNGKey(0), first, networks.initial_state(1))
    q_unrolled, final = networks.unroll(params, observations, networks.initial_state(1))
    assert q_unrolled.shape == (6, 1, 7)
    state, stepped = networks.initial_state(1), []
    for t in range(6):
        q, state = networks.step(
            params, jax.tree_util.tree_map(lambda x, t=t: x[t], observations), state
        )
        stepped.append(q)
    np.testing.assert_allclose(np.stack(stepped), q_unrolled, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.hidden, final.hidden, rtol=1e-5, atol=1e-6)
    other = jax.tree_util.tree_map(lambda x: x + 0.5, networks.initial_state(1))
    q_other, _ = networks.unroll(params, observations, other)
    assert not np.allclose(q_other, q_unrolled)  # the stored state changes the values


def test_batch_elements_do_not_mix():
    networks = make_recurrent_q_network(num_actions=7, lstm_size=16, torso_size=16)
    a, b = _episode(4), jax.tree_util.tree_map(lambda x: x[::-1], _episode(4))
    pair = jax.tree_util.tree_map(lambda x, y: np.concatenate([x, y], axis=1), a, b)
    first = jax.tree_util.tree_map(lambda x: x[0], a)
    params = networks.init(jax.random.PRNGKey(1), first, networks.initial_state(1))
    q_pair, _ = networks.unroll(params, pair, networks.initial_state(2))
    q_a, _ = networks.unroll(params, a, networks.initial_state(1))
    q_b, _ = networks.unroll(params, b, networks.initial_state(1))
    np.testing.assert_allclose(q_pair[:, :1], q_a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(q_pair[:, 1:], q_b, rtol=1e-5, atol=1e-6)
