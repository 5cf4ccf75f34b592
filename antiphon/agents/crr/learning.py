"""CRR learner: Critic Regularized Regression (Wang et al. 2020; ALGORITHMS.md §1).

One SGD step on a batch of dataset transitions (s, a, r, d, s'), with d = gamma * (1 - terminal):

  critic (policy evaluation of the learned policy, not max-Q):
      a'_j ~ pi_target(s'),  j = 1..N_td
      scalar: L_c = 1/2 (Q(s,a) - sg(mean_j [r + d Q_target(s', a'_j)]))^2
      c51:    L_c = CE( Proj_z[r + d z ; mean_j softmax Z_target(s', a'_j)],  Z(s, a) )
      mog:    L_c = -(1/M) sum_i log p_{Z(s,a)}(r + d z_i),  z_i ~ Z_target(s', a'_j)
  actor (weighted maximum likelihood of the DATASET action):
      a_j ~ pi(s), j = 1..m;  V(s) = mean_j Q(s, a_j)  or  max_j Q(s, a_j)
      A(s, a) = Q(s, a) - V(s)
      f = sg(min(exp(A / beta), c))  |  sg(1[A > 0])  |  1          (exp | binary | bc)
      L_pi = -mean_batch[ f * log pi(a | s) ]
  Adam on each network with its gradient's global norm clipped to 40; hard target copy every
  `target_update_period` steps. No normalisation of f across the batch (both reference
  implementations).

The `bc` filter makes L_pi exactly the behaviour-cloning loss of `antiphon.agents.bc`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from antiphon.agents import actor_critic, distributional, offline, optimizers
from antiphon.agents.crr.config import CRRConfig
from antiphon.agents.crr.networks import CRRNetworks
from antiphon.core.types import EnvironmentSpec, Transition

TrainingState = actor_critic.ActorCriticState


def advantage(q_data: jax.Array, q_samples: jax.Array, baseline: str) -> jax.Array:
    """A(s, a) = Q(s, a) - V(s), V(s) = mean_j Q(s, a_j) ("mean") or max_j Q(s, a_j) ("max").

    q_data [B]: Q of the dataset actions; q_samples [m, B]: Q of m policy samples.
    """
    if baseline == "mean":
        value = jnp.mean(q_samples, axis=0)
    elif baseline == "max":
        value = jnp.max(q_samples, axis=0)
    else:
        raise ValueError(f"unknown baseline {baseline!r} (mean | max)")
    return q_data - value


def crr_weights(adv: jax.Array, filter_type: str, beta: float, clip: float) -> jax.Array:
    """The filter f(A), stop-gradiented: exp: min(exp(A / beta), clip); binary: 1[A > 0]
    (Heaviside with value 0 at 0); bc: 1."""
    if filter_type == "exp":
        # exp of the clipped exponent: the same value as min(exp(A/beta), clip), never inf.
        weights = jnp.exp(jnp.minimum(adv / beta, jnp.log(clip)))
    elif filter_type == "binary":
        weights = (adv > 0).astype(adv.dtype)
    elif filter_type == "bc":
        weights = jnp.ones_like(adv)
    else:
        raise ValueError(f"unknown filter {filter_type!r} (exp | binary | bc)")
    return jax.lax.stop_gradient(weights)


def make_losses(
    networks: CRRNetworks, config: CRRConfig, value_bounds: tuple[float, float] | None = None
):
    """The two CRR losses as pure functions (the math in the module docstring):

    critic_loss(critic_params, target_policy_params, target_critic_params, batch, key)
        -> (loss, metrics)
    policy_loss(policy_params, critic_params, batch, key) -> (loss, metrics)
    """

    def critic_loss(critic_params, target_policy_params, target_critic_params, batch, key):
        action_key, sample_key = jax.random.split(key)
        next_dist = networks.policy_apply(target_policy_params, batch.next_observation)
        # [N_td, B, A]
        next_actions = networks.head.sample(next_dist, action_key, config.num_td_samples)
        targets = jax.vmap(
            lambda a: networks.critic_apply(target_critic_params, batch.next_observation, a)
        )(next_actions)
        online = networks.critic_apply(critic_params, batch.observation, batch.action)
        if networks.critic_type == "scalar":
            target_q = jnp.mean(batch.reward + batch.discount * targets, axis=0)
            per_example = 0.5 * jnp.square(online - jax.lax.stop_gradient(target_q))
        elif networks.critic_type == "c51":
            # The projection is linear in the probabilities: project the uniform mixture.
            mixture_probs = jnp.mean(jax.nn.softmax(targets), axis=0)
            per_example = distributional.categorical_td_loss(
                online, networks.support, batch.reward, batch.discount, jnp.log(mixture_probs)
            )
        else:
            per_action = max(config.num_target_samples // config.num_td_samples, 1)
            keys = jax.random.split(sample_key, config.num_td_samples)
            samples = jax.vmap(
                lambda mixture, k: distributional.mixture_sample(
                    jax.tree_util.tree_map(jax.lax.stop_gradient, mixture), k, per_action
                )
            )(targets, keys)  # [N_td, M', B]
            samples = samples.reshape((-1, samples.shape[-1]))
            per_example = distributional.mog_td_loss_from_samples(
                online, batch.reward, batch.discount, samples
            )
        q = networks.critic_mean(online)
        metrics = {"q_mean": jnp.mean(q), **actor_critic.value_range_metrics(q, value_bounds)}
        return jnp.mean(per_example), metrics

    def policy_loss(policy_params, critic_params, batch: Transition, key):
        dist = networks.policy_apply(policy_params, batch.observation)
        if config.filter == "bc":
            weights = jnp.ones(batch.reward.shape, batch.reward.dtype)
            adv = jnp.zeros_like(weights)
        else:
            # Advantage of the dataset action under the ONLINE policy and critic.
            samples = networks.head.sample(
                jax.lax.stop_gradient(dist), key, config.num_advantage_samples
            )  # [m, B, A]
            q_samples = jax.vmap(lambda a: networks.q_value(critic_params, batch.observation, a))(
                samples
            )
            q_data = networks.q_value(critic_params, batch.observation, batch.action)
            adv = jax.lax.stop_gradient(advantage(q_data, q_samples, config.baseline))
            weights = crr_weights(adv, config.filter, config.beta, config.weight_clip)
        log_prob = networks.head.log_prob(dist, batch.action)
        loss = -jnp.mean(weights * log_prob)
        metrics = {
            "advantage_mean": jnp.mean(adv),
            "weight_mean": jnp.mean(weights),
            "weight_max": jnp.max(weights),
            "log_prob_mean": jnp.mean(log_prob),
        }
        return loss, metrics

    return critic_loss, policy_loss


def make_sgd_step(
    networks: CRRNetworks,
    config: CRRConfig,
    policy_optimizer,
    critic_optimizer,
    value_bounds: tuple[float, float] | None = None,
):
    """Returns the pure function `sgd_step(state, batch) -> (state, metrics)`: the two losses,
    Adam on each network, hard target copies (`actor_critic.make_sgd_step`). With
    `value_bounds` it also reports `q_out_of_range` (`actor_critic.value_range_metrics`)."""
    critic_loss, policy_loss = make_losses(networks, config, value_bounds)
    return actor_critic.make_sgd_step(
        critic_loss, policy_loss, policy_optimizer, critic_optimizer, config.target_update_period
    )


def init_training_state(
    networks: CRRNetworks, config: CRRConfig, env_spec: EnvironmentSpec, key: jax.Array
):
    """(state, policy optimiser, critic optimiser); Adam after the global-norm clip."""
    policy_optimizer = optimizers.clipped_adam(
        config.policy_learning_rate, config.max_gradient_norm
    )
    critic_optimizer = optimizers.clipped_adam(
        config.critic_learning_rate, config.max_gradient_norm
    )
    state = actor_critic.init_networks_state(
        networks, env_spec, key, policy_optimizer, critic_optimizer
    )
    return state, policy_optimizer, critic_optimizer


def make_update(
    networks: CRRNetworks,
    config: CRRConfig,
    env_spec: EnvironmentSpec,
    data: Transition,
    key,
    value_bounds: tuple[float, float] | None = None,
) -> tuple[offline.SgdStep, actor_critic.ActorCriticState]:
    """(sgd_step, initial state) for `builders.OfflineBuilder` (which makes the learner)."""
    del data  # CRR's networks need nothing from the dataset to start
    state, policy_opt, critic_opt = init_training_state(networks, config, env_spec, key)
    return make_sgd_step(networks, config, policy_opt, critic_opt, value_bounds), state
