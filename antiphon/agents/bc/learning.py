"""Behaviour cloning: L = -mean_batch log pi(a | s) over dataset (s, a), Adam with the gradient's
global norm clipped. CRR with the `bc` filter (f = 1) computes exactly this loss."""

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


def make_loss(networks: BCNetworks):
    """bc_loss(policy_params, batch) -> (loss, metrics): the negative log-likelihood."""

    def bc_loss(policy_params, batch: Transition):
        log_prob = networks.log_prob(policy_params, batch.observation, batch.action)
        return -jnp.mean(log_prob), {"log_prob_mean": jnp.mean(log_prob)}

    return bc_loss


def make_sgd_step(networks: BCNetworks, optimizer: optax.GradientTransformation):
    bc_loss = make_loss(networks)

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


def make_learner(
    networks: BCNetworks,
    config: BCConfig,
    env_spec: EnvironmentSpec,
    data: Transition,
    key: jax.Array,
    counter=None,
    logger=None,
    value_bounds: tuple[float, float] | None = None,
) -> offline.OfflineLearner:
    del value_bounds  # no critic
    init_key, sample_key = jax.random.split(key)
    optimizer = optimizers.clipped_adam(config.learning_rate, config.max_gradient_norm)
    params = networks.init(init_key, env_spec)
    state = TrainingState(params, optimizer.init(params), jnp.zeros((), jnp.int32))
    return offline.make_learner(
        make_sgd_step(networks, optimizer),
        state,
        data,
        config,
        sample_key,
        lambda s: {"policy": s.policy_params},
        counter,
        logger,
    )
