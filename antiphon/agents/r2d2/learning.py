"""R2D2's loss (ALGORITHMS.md §4.3-4.5), as pure functions over one stored sequence.

A sequence is burn_in + trace steps, time-major, unrolled by the online and the target networks
from the same stored recurrent state. The first `burn_in` steps only warm the LSTM up; on the
trace, for t = 0 .. T - 2 (the last step is only bootstrapped from):

    a*_{t+n}  = argmax_a Q_online(s_{t+n}, a)                         (double Q)
    y_t       = h( sum_{k<n} (prod_{j<k} d_{t+j}) r_{t+k}
                   + (prod_{k<n} d_{t+k}) h^-1(Q_target(s_{t+n}, a*_{t+n})) )
    delta_t   = y_t - Q_online(s_t, a_t)          (y stop-gradiented; n truncated at the trace end)
    L         = 1/2 sum_t mask_t delta_t^2      (mask: 0 on the zero-padding after an episode end)

with d_t = gamma (1 - terminal_t) and h the invertible value rescaling
h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps x (rlax's signed hyperbolic / parabolic pair). A
terminal inside the sequence zeroes every later reward and bootstrap of the steps before it.
The sequence's replay priority is eta max_t |delta_t| + (1 - eta) mean_t |delta_t| over its
unmasked steps.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import rlax


def value_rescaling(x: jax.Array, epsilon: float) -> jax.Array:
    """h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps x, with sqrt(|x| + 1) - 1 written as
    |x| / (sqrt(|x| + 1) + 1) (no cancellation near 0)."""
    magnitude = jnp.abs(x)
    return jnp.sign(x) * magnitude / (jnp.sqrt(magnitude + 1.0) + 1.0) + epsilon * x


def inverse_value_rescaling(y: jax.Array, epsilon: float) -> jax.Array:
    """h^-1(y) = sign(y)(((sqrt(1 + 4 eps (|y| + 1 + eps)) - 1) / (2 eps))^2 - 1).

    Rewritten as sign(y) (u - 1)(u + 1) with u - 1 = 2|y| (1 - 2 eps / (1 + 2 eps + s)) / (s + 1)
    and s = sqrt(1 + 4 eps (|y| + 1 + eps)): the same value without the two cancellations of the
    textbook form (rlax.signed_parabolic's), which in float32 lose 10 % of the value at
    |x| = 1e-3 (h^-1(h(x)) = 0.00098 for x = 0.00108).
    """
    magnitude = jnp.abs(y)
    s = jnp.sqrt(1.0 + 4.0 * epsilon * (magnitude + 1.0 + epsilon))
    u_minus_1 = 2.0 * magnitude * (1.0 - 2.0 * epsilon / (1.0 + 2.0 * epsilon + s)) / (s + 1.0)
    return jnp.sign(y) * u_minus_1 * (u_minus_1 + 2.0)


def value_rescaling_pair(epsilon: float) -> rlax.TxPair:
    """(h, h^-1) for rlax's transformed returns (`value_rescaling`, `inverse_value_rescaling`)."""
    return rlax.TxPair(
        functools.partial(value_rescaling, epsilon=epsilon),
        functools.partial(inverse_value_rescaling, epsilon=epsilon),
    )


def sequence_td_errors(
    online_q: jax.Array,
    target_q: jax.Array,
    actions: jax.Array,
    rewards: jax.Array,
    discounts: jax.Array,
    burn_in: int,
    n_step: int,
    tx_pair: rlax.TxPair,
) -> jax.Array:
    """delta_t [T - 1] on the trace of one sequence (module docstring).

    online_q, target_q [burn_in + T, A]: the networks' Q values along the sequence; actions,
    rewards [burn_in + T]: a_t and the reward after it; discounts [burn_in + T]: d_t, the
    discount after a_t (gamma, or 0 at a true terminal).
    """
    q, target = online_q[burn_in:], target_q[burn_in:]
    a, r, d = actions[burn_in:], rewards[burn_in:], discounts[burn_in:]
    return rlax.transformed_n_step_q_learning(
        q_tm1=q[:-1],
        a_tm1=a[:-1],
        target_q_t=target[1:],
        a_t=jnp.argmax(q[1:], axis=-1),
        r_t=r[:-1],
        discount_t=d[:-1],
        n=n_step,
        tx_pair=tx_pair,
    )


def sequence_loss_and_priority(
    td_errors: jax.Array, mask: jax.Array, eta: float
) -> tuple[jax.Array, jax.Array]:
    """(1/2 sum_t mask_t delta_t^2, eta max |delta| + (1 - eta) mean |delta|) over the unmasked
    steps (mask [T - 1], 1 for real steps)."""
    mask = mask.astype(td_errors.dtype)
    loss = 0.5 * jnp.sum(mask * jnp.square(td_errors))
    absolute = jnp.abs(td_errors) * mask
    mean = jnp.sum(absolute) / jnp.maximum(jnp.sum(mask), 1.0)
    return loss, eta * jnp.max(absolute) + (1.0 - eta) * mean


def epsilon_ladder(num_actors: int, base: float = 0.4, exponent: float = 7.0) -> list[float]:
    """Ape-X / R2D2's per-actor exploration: eps_i = base^(1 + exponent i / (N - 1)); one actor
    gets `base`."""
    if num_actors < 1:
        raise ValueError(f"num_actors must be >= 1 (got {num_actors})")
    if num_actors == 1:
        return [base]
    return [base ** (1.0 + exponent * i / (num_actors - 1)) for i in range(num_actors)]
