"""R2D2's loss functions (issue 23, work in progress): value rescaling and its inverse, the
n-step double-Q target on a hand-built sequence with an episode end inside it, burn-in steps
without a loss, the sequence priority, and the actors' epsilon ladder."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rlax

from antiphon.agents.r2d2 import learning
from antiphon.agents.r2d2.config import R2D2Config

EPS = 1e-3
TX = learning.value_rescaling_pair(EPS)


def h(x):
    return np.sign(x) * (np.sqrt(np.abs(x) + 1.0) - 1.0) + EPS * x


def h_inv(x):
    return np.sign(x) * (
        ((np.sqrt(1.0 + 4.0 * EPS * (np.abs(x) + 1.0 + EPS)) - 1.0) / (2.0 * EPS)) ** 2 - 1.0
    )


def test_value_rescaling_inverts_to_1e_4_relative_up_to_1e4():
    x = np.concatenate([np.linspace(-1e4, 1e4, 20001), np.geomspace(1e-3, 1e4, 200)])
    x = jnp.asarray(x, jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    back = np.asarray(TX.apply_inv(TX.apply(x)))
    np.testing.assert_allclose(back, np.asarray(x), rtol=1e-4, atol=0)
    np.testing.assert_allclose(np.asarray(TX.apply(x)), h(np.asarray(x)), rtol=1e-5, atol=1e-6)
    # rlax's textbook forms of the same functions, where their float32 precision allows.
    large = x[np.abs(np.asarray(x)) > 1.0]
    np.testing.assert_allclose(
        np.asarray(TX.apply_inv(large)),
        np.asarray(rlax.signed_parabolic(large, EPS)),
        rtol=1e-4,
    )
    np.testing.assert_allclose(
        np.asarray(TX.apply(large)), np.asarray(rlax.signed_hyperbolic(large, EPS)), rtol=1e-5
    )
    assert float(TX.apply(jnp.float32(100.0))) == pytest.approx(h(100.0), rel=1e-6)


def _sequence():
    """burn-in 2 + trace 5 steps, 2 actions; a true terminal after trace step 2."""
    online = np.array(
        [[9.0, 9.0], [9.0, 9.0], [1.0, 2.0], [3.0, 0.5], [0.2, 0.1], [4.0, 5.0], [6.0, 1.0]],
        np.float32,
    )
    target = np.array(
        [[7.0, 7.0], [7.0, 7.0], [0.5, 1.5], [2.5, 3.0], [1.0, 2.0], [0.0, 8.0], [3.0, 4.0]],
        np.float32,
    )
    actions = np.array([0, 1, 1, 0, 1, 0, 1], np.int32)
    rewards = np.array([5.0, 5.0, 1.0, 2.0, 3.0, 0.0, 0.0], np.float32)
    gamma = 0.9
    discounts = np.array([gamma, gamma, gamma, gamma, 0.0, gamma, gamma], np.float32)
    return online, target, actions, rewards, discounts, gamma


def test_n_step_double_q_target_on_a_hand_built_sequence_with_an_episode_end():
    online, target, actions, rewards, discounts, gamma = _sequence()
    td = np.asarray(
        learning.sequence_td_errors(
            jnp.asarray(online),
            jnp.asarray(target),
            jnp.asarray(actions),
            jnp.asarray(rewards),
            jnp.asarray(discounts),
            burn_in=2,
            n_step=2,
            tx_pair=TX,
        )
    )
    # Trace steps 0..4 (sequence rows 2..6); deltas for t = 0..3. The terminal is after t = 2.
    q, tq = online[2:], target[2:]
    a, r, d = actions[2:], rewards[2:], discounts[2:]

    def bootstrap(step):  # h^-1(Q_target(s, argmax_a Q_online(s, a)))
        return h_inv(tq[step, np.argmax(q[step])])

    expected = [
        # t = 0: two rewards, then the bootstrap from step 2
        h(r[0] + d[0] * r[1] + d[0] * d[1] * bootstrap(2)) - q[0, a[0]],
        # t = 1: r1 + d1 r2, and d2 = 0 (terminal): no bootstrap
        h(r[1] + d[1] * r[2] + d[1] * d[2] * bootstrap(3)) - q[1, a[1]],
        # t = 2: the terminal step: its reward only
        h(r[2] + d[2] * (r[3] + d[3] * bootstrap(4))) - q[2, a[2]],
        # t = 3: the trace ends after one more step: truncated to one step
        h(r[3] + d[3] * bootstrap(4)) - q[3, a[3]],
    ]
    np.testing.assert_allclose(td, expected, rtol=1e-4, atol=1e-5)  # float32 against float64
    assert expected[1] == pytest.approx(h(r[1] + gamma * r[2]) - q[1, a[1]])
    assert expected[2] == pytest.approx(h(3.0) - q[2, a[2]])


def test_burn_in_steps_carry_no_loss():
    online, target, actions, rewards, discounts, _ = _sequence()

    def loss(online_q, burn_in_rewards):
        r = jnp.concatenate([burn_in_rewards, jnp.asarray(rewards[2:])])
        td = learning.sequence_td_errors(
            online_q, jnp.asarray(target), jnp.asarray(actions), r, jnp.asarray(discounts), 2, 2, TX
        )
        return learning.sequence_loss_and_priority(td, jnp.ones_like(td), 0.9)[0]

    grad_q, grad_r = jax.grad(loss, argnums=(0, 1))(jnp.asarray(online), jnp.asarray(rewards[:2]))
    assert not np.any(np.asarray(grad_q)[:2]) and not np.any(np.asarray(grad_r))
    assert np.any(np.asarray(grad_q)[2:])  # the trace does get gradients


def test_sequence_loss_and_priority_over_unmasked_steps():
    td = jnp.asarray([1.0, -3.0, 2.0, 100.0])
    mask = jnp.asarray([1, 1, 1, 0])  # the last step is padding after the episode's end
    loss, priority = learning.sequence_loss_and_priority(td, mask, eta=0.9)
    assert float(loss) == pytest.approx(0.5 * (1 + 9 + 4))
    assert float(priority) == pytest.approx(0.9 * 3.0 + 0.1 * 2.0)


def test_epsilon_ladder():
    assert learning.epsilon_ladder(1) == [0.4]
    ladder = learning.epsilon_ladder(8)
    assert ladder[0] == pytest.approx(0.4) and ladder[-1] == pytest.approx(0.4**8)
    assert all(a > b for a, b in zip(ladder, ladder[1:], strict=False))
    with pytest.raises(ValueError, match="num_actors"):
        learning.epsilon_ladder(0)


def test_config_refusals():
    with pytest.raises(ValueError, match="demo_ratio"):
        R2D2Config(demo_ratio=1.5).validate()
    with pytest.raises(ValueError, match="sequence_period"):
        R2D2Config(sequence_period=100).validate()
