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
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax
import rlax

from antiphon.agents import learners
from antiphon.core.types import zeros_like_spec


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
    valid: jax.Array | None = None,
) -> jax.Array:
    """delta_t [T - 1] on the trace of one sequence (module docstring).

    online_q, target_q [burn_in + T, A]: the networks' Q values along the sequence; actions,
    rewards [burn_in + T]: a_t and the reward after it; discounts [burn_in + T]: d_t, the
    discount after a_t (gamma, or 0 at a true terminal); valid [burn_in + T]: 1 where a_t is a
    real action (0 on the episode's final observation and the zero padding after it; default
    all 1).

    Step t bootstraps from s_{t + n'} with n' = min(n, T - 1 - t, the valid steps from t on):
    at the trace's end and at the episode's end the return is cut short and bootstraps from the
    last real observation, so a time-limit cut (d = gamma there) still bootstraps from the
    final observation and a true terminal (d = 0) does not. With every step valid this is
    rlax's `transformed_n_step_q_learning` exactly.
    """
    q, target = online_q[burn_in:], target_q[burn_in:]
    a, r, d = actions[burn_in:], rewards[burn_in:], discounts[burn_in:]
    length = q.shape[0]
    if valid is None:
        v = jnp.ones((length,), q.dtype)
    else:
        v = valid[burn_in:].astype(q.dtype)

    # run_t: how many consecutive valid steps start at t (0 on the final observation, padding).
    def count(run, v_t):
        run = v_t * (run + 1.0)
        return run, run

    _, runs = jax.lax.scan(count, jnp.zeros((), q.dtype), v, reverse=True)
    t = jnp.arange(length - 1)
    steps = jnp.minimum(jnp.minimum(n_step, length - 1 - t), runs[:-1].astype(jnp.int32))
    # h^-1(Q_target(s, argmax_a Q_online(s, a))) at every step, picked at t + n'.
    bootstrap = tx_pair.apply_inv(
        jnp.take_along_axis(target, jnp.argmax(q, axis=-1)[:, None], axis=-1)[:, 0]
    )
    r_padded = jnp.concatenate([r, jnp.zeros((n_step,), r.dtype)])
    d_padded = jnp.concatenate([d, jnp.ones((n_step,), d.dtype)])
    returns = jnp.zeros((length - 1,), q.dtype)
    scale = jnp.ones((length - 1,), q.dtype)  # prod_{j<k} d_{t+j}
    for k in range(n_step):
        active = k < steps
        returns = returns + jnp.where(active, scale * r_padded[t + k], 0.0)
        scale = jnp.where(active, scale * d_padded[t + k], scale)
    targets = tx_pair.apply(returns + scale * bootstrap[t + steps])
    chosen = jnp.take_along_axis(q[:-1], a[:-1, None].astype(jnp.int32), axis=-1)[:, 0]
    return jax.lax.stop_gradient(targets) - chosen


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


# ------------------------------------------------------------------------------------------------
# The learner


class R2D2Batch(NamedTuple):
    """B stored sequences of L = burn_in + trace + 1 steps, batch-major as Reverb gives them.

    observations [B, L, ...] (the environment's observation structure), actions, rewards,
    discounts, valid [B, L] (`discounts` is the environment's, 0 at a true terminal; `valid` 1
    on real actions), hidden / cell [B, H]: the actor's LSTM state at the sequence's first step
    (zeros for demonstrations), probabilities / table_sizes [B]: each sequence's sampling
    probability in, and the size of, the table it came from (the importance weights).
    """

    observations: Any
    actions: jax.Array
    rewards: jax.Array
    discounts: jax.Array
    valid: jax.Array
    hidden: jax.Array
    cell: jax.Array
    probabilities: jax.Array
    table_sizes: jax.Array


class TrainingState(NamedTuple):
    params: Any
    target_params: Any
    opt_state: Any
    steps: jax.Array


def importance_weights(
    probabilities: jax.Array, table_sizes: jax.Array, exponent: float
) -> jax.Array:
    """w_i = (1 / (N P(i)))^beta / max_j w_j (prioritised replay's correction, normalised so
    the largest weight is 1)."""
    weights = (1.0 / (table_sizes.astype(jnp.float32) * probabilities)) ** exponent
    return weights / jnp.max(weights)


def make_loss(networks, config):
    """loss(params, target_params, batch) -> (loss, (priorities [B], metrics)).

    Both networks unroll the burn-in from the stored state without gradients; the trace is
    unrolled from the state the burn-in ends in, so the burn-in steps carry no loss and no
    gradient."""
    burn_in = config.burn_in_length
    tx_pair = value_rescaling_pair(config.value_rescaling_epsilon)

    def unroll(params, observations, state):
        if burn_in > 0:
            warm = jax.tree_util.tree_map(lambda x: x[:burn_in], observations)
            _, state = networks.unroll(params, warm, state)
            state = jax.lax.stop_gradient(state)
        trace = jax.tree_util.tree_map(lambda x: x[burn_in:], observations)
        q, _ = networks.unroll(params, trace, state)
        return q  # [T, B, A]

    def loss(params, target_params, batch: R2D2Batch):
        time_major = jax.tree_util.tree_map(lambda x: jnp.swapaxes(x, 0, 1), batch.observations)
        state = hk.LSTMState(hidden=batch.hidden, cell=batch.cell)
        q = unroll(params, time_major, state)
        target_q = unroll(target_params, time_major, state)
        # Only the trace goes into the TD errors (burn_in = 0 below: q already starts there).
        discounts = config.discount * batch.discounts
        td = jax.vmap(
            lambda q_b, tq_b, a_b, r_b, d_b, v_b: sequence_td_errors(
                q_b, tq_b, a_b, r_b, d_b, 0, config.n_step, tx_pair, v_b
            ),
            in_axes=(1, 1, 0, 0, 0, 0),
        )(
            q,
            target_q,
            batch.actions[:, burn_in:],
            batch.rewards[:, burn_in:],
            discounts[:, burn_in:],
            batch.valid[:, burn_in:],
        )  # [B, T - 1]
        mask = batch.valid[:, burn_in:-1]
        sequence_losses, priorities = jax.vmap(
            functools.partial(sequence_loss_and_priority, eta=config.priority_eta)
        )(td, mask)
        weights = importance_weights(
            batch.probabilities, batch.table_sizes, config.importance_sampling_exponent
        )
        total = jnp.mean(weights * sequence_losses)
        real = mask.astype(jnp.float32)
        q_values = jnp.swapaxes(tx_pair.apply_inv(jnp.max(q[:-1], axis=-1)), 0, 1)  # [B, T - 1]
        metrics = {
            "loss": total,
            "td_error_abs": jnp.sum(jnp.abs(td) * real) / jnp.maximum(jnp.sum(real), 1.0),
            "q_mean": jnp.sum(q_values * real) / jnp.maximum(jnp.sum(real), 1.0),
            "priority_mean": jnp.mean(priorities),
        }
        return total, (priorities, metrics)

    return loss


def make_optimizer(config) -> optax.GradientTransformation:
    adam = optax.adam(config.learning_rate, eps=config.adam_epsilon)
    if config.max_gradient_norm > 0:
        return optax.chain(optax.clip_by_global_norm(config.max_gradient_norm), adam)
    return adam


def make_update(networks, config, env_spec, key, value_bounds=None):
    """(step_with_priorities, initial TrainingState): `step(state, batch) -> (state, metrics,
    priorities [B])`, one SGD step and the sequences' new priorities. The target network is the
    online one copied every `target_update_period` steps."""
    del value_bounds  # the rescaled Q of a sparse-reward gridworld has no useful bound check
    observation = zeros_like_spec(env_spec.observations, batch_shape=(1,))
    params = networks.init(key, observation, networks.initial_state(1))
    optimizer = make_optimizer(config)
    state = TrainingState(params, params, optimizer.init(params), jnp.zeros((), jnp.int32))
    loss_fn = make_loss(networks, config)

    def step(state: TrainingState, batch: R2D2Batch):
        (_, (priorities, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.target_params, batch
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        steps = state.steps + 1
        target_params = optax.periodic_update(
            params, state.target_params, steps, config.target_update_period
        )
        metrics["grad_norm"] = optax.global_norm(grads)
        return TrainingState(params, target_params, opt_state, steps), metrics, priorities

    return step, state


def variables(state: TrainingState) -> dict[str, Any]:
    return {"policy": state.params}


class R2D2Learner(learners.OnlineLearner):
    """The online learner (divergence guard, K SGD steps per call) that also writes each
    sampled sequence's new priority back to the table it came from.

    `iterator` yields `reverb.ReplaySample(info={"key": [K, B] uint64, "table": [K, B] int},
    data=R2D2Batch [K, B, ...])`; `priority_updaters[i]` takes table i's updates
    (`replay.priorities.PriorityUpdater`, asynchronous). A call's priorities are sent when the
    next call is dispatched (they are computed by then), and only if they are finite: a call
    the divergence guard rejects never reaches the tables.
    """

    def __init__(
        self,
        networks,
        config,
        env_spec,
        iterator: Iterator[Any],
        key: jax.Array,
        priority_updaters: Mapping[int, Any],
        counter=None,
        logger=None,
        log_every_seconds: float = 5.0,
    ):
        step, state = make_update(networks, config, env_spec, key)

        def sgd_step(state, batch):
            state, metrics, _ = step(state, batch)
            return state, metrics

        super().__init__(
            sgd_step,
            state,
            iterator,
            variables,
            config.sgd_steps_per_call,
            counter=counter,
            logger=logger,
            log_every_seconds=log_every_seconds,
        )

        def update(state, batches):
            # The K steps are unrolled, not scanned: XLA:CPU runs the LSTM unroll ~10x slower
            # inside an outer while loop (393 ms against 35 ms a step, gridworld preset).
            num_steps = jax.tree_util.tree_leaves(batches)[0].shape[0]
            all_metrics, all_priorities = [], []
            for k in range(num_steps):
                batch = jax.tree_util.tree_map(lambda x, k=k: x[k], batches)
                state, metrics, priorities = step(state, batch)
                all_metrics.append(metrics)
                all_priorities.append(priorities)
            metrics = jax.tree_util.tree_map(
                lambda *values: jnp.nanmean(jnp.stack(values)), *all_metrics
            )
            finite = learners.update_is_finite(state, metrics)
            return state, metrics, finite, jnp.stack(all_priorities)

        self._update_with_priorities = jax.jit(update)
        self._priority_updaters = dict(priority_updaters)
        self._unsent: tuple[np.ndarray, np.ndarray, jax.Array] | None = None
        self.priority_updates_sent = 0

    def _dispatch(self, state, sample):
        self._send_priorities()
        state, metrics, finite, priorities = self._update_with_priorities(state, sample.data)
        self._unsent = (sample.info["key"], sample.info["table"], priorities)
        return state, metrics, finite

    def _call_batches(self, sample):
        return sample.data

    def _send_priorities(self) -> None:
        if self._unsent is None:
            return
        keys, tables, priorities = self._unsent
        self._unsent = None
        keys = np.asarray(keys).reshape(-1)
        tables = np.asarray(tables).reshape(-1)
        priorities = np.asarray(jax.device_get(priorities), np.float64).reshape(-1)
        finite = np.isfinite(priorities)
        for table, updater in self._priority_updaters.items():
            chosen = finite & (tables == table)
            if np.any(chosen):
                updater.update(keys[chosen], priorities[chosen])
                self.priority_updates_sent += int(np.sum(chosen))

    def flush(self) -> None:
        super().flush()
        self._send_priorities()
        for updater in self._priority_updaters.values():
            updater.flush()


__all__ = [
    "R2D2Batch",
    "R2D2Learner",
    "TrainingState",
    "epsilon_ladder",
    "importance_weights",
    "inverse_value_rescaling",
    "make_loss",
    "make_update",
    "sequence_loss_and_priority",
    "sequence_td_errors",
    "value_rescaling",
    "value_rescaling_pair",
    "variables",
]
