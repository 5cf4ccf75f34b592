"""D4PG learner: distributional critic (C51 or MoG) + deterministic policy gradient.

One SGD step, for a batch of n-step transitions (o, a, R, D, o'), where D already holds
gamma^n * prod d (see `antiphon.core.types.Transition`):

  critic:  a'  = pi_target(o')
           C51: L_c = CE( Proj_z[R + D z ; softmax(Z_target(o', a'))],  Z(o, a) )
           MoG: L_c = -(1/M) sum_j log p_{Z(o,a)}(R + D z_j),  z_j ~ Z_target(o', a')
  policy:  a_pi = pi(o);  Q = E[Z(o, a_pi)];  g = dQ/da at a_pi, its L2 norm clipped to 1
           L_pi = mean over batch and action dims of 1/2 (a_pi - sg(a_pi + g))^2
           (the deterministic policy gradient written as a regression; rlax.dpg_loss, batched)
  targets: hard copy online -> target every `target_update_period` steps.

`sgd_steps_per_call` steps run inside one jitted call (lax.scan over K batches).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from antiphon.agents import actor_critic, distributional, optimizers
from antiphon.agents.d4pg.config import D4PGConfig
from antiphon.agents.d4pg.networks import D4PGNetworks
from antiphon.agents.learners import ConfiguredOnlineLearner
from antiphon.core.types import EnvironmentSpec, Transition

TrainingState = actor_critic.ActorCriticState


def dpg_loss(action: jax.Array, dqda: jax.Array, clip_norm: float | None) -> jax.Array:
    """Elementwise deterministic policy gradient loss, batched ([B, A] -> [B, A]).

    L = 1/2 (a - sg(a + g))^2 with g = dQ/da rescaled per example to L2 norm <= clip_norm; its
    gradient w.r.t. the policy parameters is -g da/dtheta. Equals `rlax.dpg_loss` vmapped over
    the batch (Acme's D4PG then averages over batch and action dimensions).
    """
    if clip_norm is not None:
        norm = jnp.sqrt(jnp.sum(jnp.square(dqda), axis=-1, keepdims=True))
        dqda = dqda * (clip_norm / jnp.maximum(norm, clip_norm))
    target = jax.lax.stop_gradient(action + dqda)
    return 0.5 * jnp.square(target - action)


def make_losses(
    networks: D4PGNetworks, config: D4PGConfig, value_bounds: tuple[float, float] | None = None
):
    """The two D4PG losses as pure functions (the math in the module docstring):

    critic_loss(critic_params, target_policy_params, target_critic_params, batch, key)
        -> (loss, {"q_mean": ...})
    policy_loss(policy_params, critic_params, batch, key) -> (loss, {})
    """

    def critic_loss(
        critic_params, target_policy_params, target_critic_params, batch: Transition, key
    ):
        next_action = networks.policy_apply(target_policy_params, batch.next_observation)
        target = networks.critic_apply(target_critic_params, batch.next_observation, next_action)
        online = networks.critic_apply(critic_params, batch.observation, batch.action)
        if networks.critic_type == "c51":
            per_example = distributional.categorical_td_loss(
                online, networks.support, batch.reward, batch.discount, target
            )
        else:
            per_example = distributional.mog_td_loss(
                online, batch.reward, batch.discount, target, key, config.num_target_samples
            )
        q = networks.critic_mean(online)
        metrics = {"q_mean": jnp.mean(q), **actor_critic.value_range_metrics(q, value_bounds)}
        return jnp.mean(per_example), metrics

    def policy_loss(policy_params, critic_params, batch: Transition, key):
        del key  # deterministic
        observation = batch.observation
        action = networks.policy_apply(policy_params, observation)

        def total_q(a):  # each Q(o_i, a_i) depends only on a_i, so grad of the sum is per-row dQ/da
            return jnp.sum(
                networks.critic_mean(networks.critic_apply(critic_params, observation, a))
            )

        dqda = jax.grad(total_q)(action)
        loss = jnp.mean(dpg_loss(action, dqda, clip_norm=1.0 if config.clip_dqda else None))
        return loss, {}

    return critic_loss, policy_loss


def make_sgd_step(
    networks: D4PGNetworks,
    config: D4PGConfig,
    policy_optimizer,
    critic_optimizer,
    value_bounds: tuple[float, float] | None = None,
):
    """Returns the pure function `sgd_step(state, transitions) -> (state, metrics)`
    (`actor_critic.make_sgd_step`: both losses at the pre-step state, hard target copies)."""
    critic_loss, policy_loss = make_losses(networks, config, value_bounds)
    return actor_critic.make_sgd_step(
        critic_loss, policy_loss, policy_optimizer, critic_optimizer, config.target_update_period
    )


def init_training_state(
    networks: D4PGNetworks, config: D4PGConfig, env_spec: EnvironmentSpec, key: jax.Array
):
    """(state, policy optimiser, critic optimiser): Adam on each network, no gradient clip."""
    policy_optimizer = optimizers.clipped_adam(config.policy_learning_rate, 0.0)
    critic_optimizer = optimizers.clipped_adam(config.critic_learning_rate, 0.0)
    state = actor_critic.init_networks_state(
        networks, env_spec, key, policy_optimizer, critic_optimizer
    )
    return state, policy_optimizer, critic_optimizer


class D4PGLearner(ConfiguredOnlineLearner):
    """Pulls [K, B, ...] batches of transitions from `iterator` and runs K SGD steps per call
    (`learners.OnlineLearner`, with its divergence guard). Also the variable source of the
    program: `get_variables(["policy"])`, `variables_version()`."""

    @staticmethod
    def make_update(
        networks: D4PGNetworks,
        config: D4PGConfig,
        env_spec: EnvironmentSpec,
        key: jax.Array,
        value_bounds: tuple[float, float] | None = None,
    ):
        state, policy_opt, critic_opt = init_training_state(networks, config, env_spec, key)
        return make_sgd_step(networks, config, policy_opt, critic_opt, value_bounds), state
