"""Behaviour cloning over dataset (s, a), Adam with the gradient's global norm clipped:

likelihood (default):  L = -mean_batch log pi(a | s)
                       (CRR with the `bc` filter, f = 1, computes exactly this loss)
mse (deterministic):   L = mean_batch sum_d (mode(pi(. | s))_d - a_d)^2
                       (the greedy action regressed onto the dataset action, as d3rlpy's BC)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from antiphon.agents import offline, optimizers
from antiphon.agents.bc.config import BCConfig
from antiphon.agents.bc.networks import BCNetworks
from antiphon.core.types import EnvironmentSpec, Transition


class TrainingState(NamedTuple):
    policy_params: Any
    policy_opt_state: Any
    steps: jax.Array


def make_loss(networks: BCNetworks, loss: str = "likelihood"):
    """bc_loss(policy_params, batch) -> (loss, metrics) for `loss` (module docstring)."""

    def likelihood_loss(policy_params, batch: Transition):
        log_prob = networks.log_prob(policy_params, batch.observation, batch.action)
        return -jnp.mean(log_prob), {"log_prob_mean": jnp.mean(log_prob)}

    def mse_loss(policy_params, batch: Transition):
        greedy = networks.head.mode(networks.policy_apply(policy_params, batch.observation))
        squared_error = jnp.sum(jnp.square(greedy - batch.action), axis=-1)
        return jnp.mean(squared_error), {"action_mse": jnp.mean(squared_error)}

    if loss == "likelihood":
        return likelihood_loss
    if loss == "mse":
        return mse_loss
    raise ValueError(f"unknown BC loss {loss!r} (likelihood | mse)")


def make_sgd_step(
    networks: BCNetworks, optimizer: optax.GradientTransformation, loss: str = "likelihood"
):
    bc_loss = make_loss(networks, loss)

    def sgd_step(state: TrainingState, batch: Transition):
        (loss, metrics), grads = jax.value_and_grad(bc_loss, has_aux=True)(
            state.policy_params, batch
        )
        updates, opt_state = optimizer.update(grads, state.policy_opt_state, state.policy_params)
        new_state = TrainingState(
            policy_params=optax.apply_updates(state.policy_params, updates),
            policy_opt_state=opt_state,
            steps=state.steps + 1,
        )
        return new_state, {"policy_loss": loss, **metrics}

    return sgd_step


def make_update(
    networks: BCNetworks,
    config: BCConfig,
    env_spec: EnvironmentSpec,
    data: Transition,
    key,
    value_bounds: tuple[float, float] | None = None,
) -> tuple[offline.SgdStep, TrainingState]:
    """(sgd_step, initial state) for `builders.OfflineBuilder`."""
    del data, value_bounds  # no critic, nothing taken from the dataset
    optimizer = optimizers.clipped_adam(config.learning_rate, config.max_gradient_norm)
    params = networks.init(key, env_spec)
    state = TrainingState(params, optimizer.init(params), jnp.zeros((), jnp.int32))
    return make_sgd_step(networks, optimizer, config.loss), state


def variables(state: TrainingState) -> dict:
    """What the learner serves: the policy only."""
    return {"policy": state.policy_params}
