"""The plumbing every actor-critic learner repeats: a training state with target networks and
two optimisers, the optimiser step, target copies, and the SGD step of the common form.

An algorithm's `learning.py` keeps what makes it that algorithm (its losses, and any step that
departs from the common form, such as TD3's delayed actor) and builds the rest from here:

    state = init_state(policy_params, critic_params, policy_optimizer, critic_optimizer, key)
    sgd_step = make_sgd_step(critic_loss, policy_loss, policy_optimizer, critic_optimizer,
                             target_update_period)

The common form (acme's D4PG, CRR and MPO learners): both losses are evaluated at the state
before the step (the policy loss sees the critic before its update), each network takes one
optimiser step on its own gradient, and the targets are hard copies of the online networks every
`target_update_period` SGD steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

# critic_loss(critic_params, target_policy_params, target_critic_params, batch, key)
#     -> (loss, metrics)
CriticLoss = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
# policy_loss(policy_params, critic_params, batch, key) -> (loss, metrics)
PolicyLoss = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


class ActorCriticState(NamedTuple):
    policy_params: Any
    critic_params: Any
    target_policy_params: Any
    target_critic_params: Any
    policy_opt_state: Any
    critic_opt_state: Any
    steps: jax.Array  # SGD steps taken (int32 scalar)
    key: jax.Array  # the step's PRNG key, split every step


def init_state(
    policy_params,
    critic_params,
    policy_optimizer: optax.GradientTransformation,
    critic_optimizer: optax.GradientTransformation,
    key: jax.Array,
) -> ActorCriticState:
    """Step 0: the targets equal the online networks, fresh optimiser states."""
    return ActorCriticState(
        policy_params=policy_params,
        critic_params=critic_params,
        target_policy_params=policy_params,
        target_critic_params=critic_params,
        policy_opt_state=policy_optimizer.init(policy_params),
        critic_opt_state=critic_optimizer.init(critic_params),
        steps=jax.numpy.zeros((), jax.numpy.int32),
        key=key,
    )


def init_networks_state(
    networks,
    env_spec,
    key: jax.Array,
    policy_optimizer: optax.GradientTransformation,
    critic_optimizer: optax.GradientTransformation,
) -> ActorCriticState:
    """`init_state` for networks with `init(key, env_spec) -> (policy_params, critic_params)`
    (`networks.ActorCriticNetworks`): one half of `key` initialises them, the other seeds the
    state's step key."""
    init_key, state_key = jax.random.split(key)
    policy_params, critic_params = networks.init(init_key, env_spec)
    return init_state(policy_params, critic_params, policy_optimizer, critic_optimizer, state_key)


def optimizer_step(
    optimizer: optax.GradientTransformation, grads, opt_state, params
) -> tuple[Any, Any]:
    """(params + update, new optimiser state) for one gradient."""
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def make_sgd_step(
    critic_loss: CriticLoss,
    policy_loss: PolicyLoss,
    policy_optimizer: optax.GradientTransformation,
    critic_optimizer: optax.GradientTransformation,
    target_update_period: int,
):
    """`sgd_step(state, batch) -> (state, metrics)` of the common form (module docstring).

    Metrics: `critic_loss`, `policy_loss` and every metric the two losses return.
    """

    def sgd_step(state: ActorCriticState, batch):
        key, critic_key, policy_key = jax.random.split(state.key, 3)
        (c_loss, c_metrics), c_grads = jax.value_and_grad(critic_loss, has_aux=True)(
            state.critic_params,
            state.target_policy_params,
            state.target_critic_params,
            batch,
            critic_key,
        )
        (p_loss, p_metrics), p_grads = jax.value_and_grad(policy_loss, has_aux=True)(
            state.policy_params, state.critic_params, batch, policy_key
        )
        new_state = apply_gradients(
            state._replace(key=key),
            p_grads,
            c_grads,
            policy_optimizer,
            critic_optimizer,
            target_update_period,
        )
        return new_state, {"critic_loss": c_loss, "policy_loss": p_loss, **c_metrics, **p_metrics}

    return sgd_step


def apply_gradients(
    state,
    policy_grads,
    critic_grads,
    policy_optimizer: optax.GradientTransformation,
    critic_optimizer: optax.GradientTransformation,
    target_update_period: int,
):
    """One optimiser step on each network, `steps + 1`, and the hard target copies when the new
    step count is a multiple of `target_update_period`.

    `state` is an ActorCriticState or any NamedTuple with its fields (an algorithm's state that
    adds its own, such as MPO's dual variables); the other fields pass through unchanged.
    """
    critic_params, critic_opt_state = optimizer_step(
        critic_optimizer, critic_grads, state.critic_opt_state, state.critic_params
    )
    policy_params, policy_opt_state = optimizer_step(
        policy_optimizer, policy_grads, state.policy_opt_state, state.policy_params
    )
    steps = state.steps + 1
    return state._replace(
        policy_params=policy_params,
        critic_params=critic_params,
        target_policy_params=optax.periodic_update(
            policy_params, state.target_policy_params, steps, target_update_period
        ),
        target_critic_params=optax.periodic_update(
            critic_params, state.target_critic_params, steps, target_update_period
        ),
        policy_opt_state=policy_opt_state,
        critic_opt_state=critic_opt_state,
        steps=steps,
    )


def variables(state: ActorCriticState) -> dict[str, Any]:
    """What an actor-critic learner serves: {"policy": ..., "critic": ...}."""
    return {"policy": state.policy_params, "critic": state.critic_params}


# ------------------------------------------------------------------------------------------------
# Value sanity: the range a discounted return can take


def return_bounds(reward_min: float, reward_max: float, discount: float) -> tuple[float, float]:
    """[low, high] of any discounted return sum_t gamma^t r_t with r_t in [reward_min,
    reward_max], over any horizon from one step to infinity (bootstrapped targets assume the
    episode goes on past a time limit):

        low  = min(reward_min, reward_min / (1 - gamma))
        high = max(reward_max, reward_max / (1 - gamma))

    (each the one-step or the infinite-horizon extreme, whichever is further out). With
    gamma = 1 the infinite sums are unbounded unless the rewards are zero on that side.
    """
    if not reward_min <= reward_max:
        raise ValueError(f"reward_min must be <= reward_max (got {reward_min}, {reward_max})")
    if discount >= 1.0:
        low = -float("inf") if reward_min < 0 else reward_min
        high = float("inf") if reward_max > 0 else reward_max
        return low, high
    scale = 1.0 / (1.0 - discount)
    return min(reward_min, reward_min * scale), max(reward_max, reward_max * scale)


def value_range_metrics(q: jax.Array, bounds: tuple[float, float] | None) -> dict[str, jax.Array]:
    """{"q_out_of_range": the fraction of Q estimates outside `bounds`, "q_beyond_range": how
    far the furthest one lies outside, as a fraction of the range's width} (nothing without
    bounds). A tolerance of 1 % of the width absorbs rounding at the edge. The two tell a
    critic that overshoots a bound a little where the true values sit on it (q_beyond_range of
    a few %) from one that diverges (many times the width)."""
    if bounds is None:
        return {}
    low, high = bounds
    width = high - low
    finite_width = bool(np.isfinite(width)) and width > 0
    tolerance = 0.01 * width if finite_width else 0.0
    outside = (q < low - tolerance) | (q > high + tolerance)
    metrics = {"q_out_of_range": jax.numpy.mean(outside.astype(jax.numpy.float32))}
    if finite_width:
        excess = jax.numpy.maximum(jax.numpy.max(q) - high, low - jax.numpy.min(q))
        metrics["q_beyond_range"] = jax.numpy.maximum(excess, 0.0) / width
    return metrics
