"""MPO learner: MPO (scalar critic), DMPO (C51 critic) and MoG-DMPO (mixture-of-Gaussians
critic), by `critic_type` (ALGORITHMS.md §6.1, §6.2, §2; acme `agents/jax/mpo/learning.py`).

One SGD step, for a batch of n-step transitions (o, a, R, D, o'), where D already holds
gamma^n * prod d (see `antiphon.core.types.Transition`), with N = `num_samples`:

  critic:  a'_i ~ pi_target(o'), i = 1..N                  (the stochastic policy's evaluation)
           scalar: y   = R + D (1/N) sum_i Q_target(o', a'_i);   L_c = 1/2 (Q(o, a) - y)^2
           C51:    p'  = (1/N) sum_i Proj_z[R + D z ; softmax(Z_target(o', a'_i))]
                   L_c = CE(p', Z(o, a))
           MoG:    y_ij = R + D z_ij,  z_ij ~ Z_target(o', a'_i), j = 1..M (N * M pooled)
                   L_c = -(1/(N M)) sum_ij log p_{Z(o,a)}(y_ij)
  policy:  a_i ~ pi_target(o), Q_i = E[Z_target(o, a_i)]  ->  `mpo_losses.mpo_loss` with the
           online and target (mean, std) at o: E-step temperature, action penalty, decoupled
           M-step with per-dimension trust regions; its gradient trains the policy and the
           duals (stop-gradients keep the two apart).
  updates: Adam on policy, critic (each gradient's global norm clipped to `max_gradient_norm`)
           and on the duals (`dual_learning_rate`, same clip), the raw duals then clipped at
           -18 (`clip_dual_params`); hard copy online -> target every `target_update_period`.

Both losses are evaluated at the state before the step. `sgd_steps_per_call` steps run inside
one jitted call (lax.scan over K batches).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from antiphon.agents import actor_critic, distributional, mpo_losses, optimizers
from antiphon.agents import networks as shared
from antiphon.agents.learners import ConfiguredOnlineLearner
from antiphon.agents.mpo.config import MPOConfig
from antiphon.agents.mpo.networks import MPONetworks
from antiphon.core.types import EnvironmentSpec, Transition


class TrainingState(NamedTuple):
    """actor_critic.ActorCriticState's fields, then the MPO dual variables and their Adam."""

    policy_params: Any
    critic_params: Any
    target_policy_params: Any
    target_critic_params: Any
    policy_opt_state: Any
    critic_opt_state: Any
    steps: jax.Array
    key: jax.Array
    dual_params: mpo_losses.DualParams
    dual_opt_state: Any


def sample_policy_actions(
    networks: MPONetworks, policy_params, observation: jax.Array, key: jax.Array, num: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(actions [N, B, A], mean [B, A], std [B, A]): N unclipped samples of the policy at each
    observation, stop-gradient (the critic clips what it is fed)."""
    mean, std = networks.policy_apply(policy_params, observation)
    actions = shared.diagonal_gaussian_sample(mean, std, key, num)
    return jax.lax.stop_gradient(actions), mean, std


def critic_per_action(networks: MPONetworks, critic_params, observation, actions):
    """The critic's output at each of N actions per observation: actions [N, B, A] -> outputs
    with a leading N axis (Q [N, B], logits [N, B, L] or MixtureParams of [N, B, K])."""
    return jax.vmap(lambda a: networks.critic_apply(critic_params, observation, a))(actions)


def critic_target(
    networks: MPONetworks,
    config: MPOConfig,
    target_critic_params,
    next_observation: jax.Array,
    next_actions: jax.Array,
    reward: jax.Array,
    discount: jax.Array,
    key: jax.Array,
) -> jax.Array:
    """The bootstrapped target over the N next actions [N, B, A] (stop-gradient):

    scalar: y [B];  c51: projected probabilities [B, L];  mog: pooled return samples z
    [N * M, B] from the target mixtures (the loss turns them into R + D z).
    """
    next_out = critic_per_action(networks, target_critic_params, next_observation, next_actions)
    if networks.critic_type == "scalar":
        return distributional.expected_scalar_target(reward, discount, next_out)
    if networks.critic_type == "c51":
        return distributional.expected_categorical_target(
            networks.support, reward, discount, next_out
        )
    return distributional.pooled_mixture_samples(next_out, key, config.num_target_samples)


def critic_td_loss(
    networks: MPONetworks, online, reward: jax.Array, discount: jax.Array, target: jax.Array
) -> jax.Array:
    """Per-example critic loss [B] of the online output at (o, a) against `critic_target`."""
    if networks.critic_type == "scalar":
        return 0.5 * jnp.square(online - target)
    if networks.critic_type == "c51":
        return distributional.categorical_cross_entropy(online, target)
    return distributional.mog_td_loss_from_samples(online, reward, discount, target)


def make_losses(
    networks: MPONetworks, config: MPOConfig, value_bounds: tuple[float, float] | None = None
):
    """The two MPO losses as pure functions (the math in the module docstring):

    critic_loss(critic_params, target_policy_params, target_critic_params, batch, key)
        -> (loss, {"q_mean", "q_out_of_range" (with value_bounds)})
    policy_loss(policy_params, dual_params, target_policy_params, target_critic_params, batch,
        key) -> (loss, mpo_loss's metrics; its Q statistics renamed sampled_q_*)
    """

    def critic_loss(
        critic_params, target_policy_params, target_critic_params, batch: Transition, key
    ):
        action_key, sample_key = jax.random.split(key)
        next_actions, _, _ = sample_policy_actions(
            networks, target_policy_params, batch.next_observation, action_key, config.num_samples
        )
        target = critic_target(
            networks,
            config,
            target_critic_params,
            batch.next_observation,
            next_actions,
            batch.reward,
            batch.discount,
            sample_key,
        )
        online = networks.critic_apply(critic_params, batch.observation, batch.action)
        per_example = critic_td_loss(networks, online, batch.reward, batch.discount, target)
        q = networks.critic_mean(online)
        metrics = {"q_mean": jnp.mean(q), **actor_critic.value_range_metrics(q, value_bounds)}
        return jnp.mean(per_example), metrics

    def policy_loss(
        policy_params,
        dual_params,
        target_policy_params,
        target_critic_params,
        batch: Transition,
        key,
    ):
        observation = batch.observation
        actions, target_mean, target_std = sample_policy_actions(
            networks, target_policy_params, observation, key, config.num_samples
        )
        q = networks.critic_mean(
            critic_per_action(networks, target_critic_params, observation, actions)
        )
        online_mean, online_std = networks.policy_apply(policy_params, observation)
        loss, metrics = mpo_losses.mpo_loss(
            dual_params,
            online_mean,
            online_std,
            jax.lax.stop_gradient(target_mean),
            jax.lax.stop_gradient(target_std),
            actions,
            jax.lax.stop_gradient(q),
            epsilon=config.epsilon,
            epsilon_mean=config.epsilon_mean,
            epsilon_stddev=config.epsilon_stddev,
            epsilon_penalty=config.epsilon_penalty,
            per_dim_constraining=config.per_dim_constraining,
            action_penalization=config.action_penalization,
        )
        # The critic's q_mean is Q at the replayed (o, a); these are of the sampled actions.
        metrics = {
            ("sampled_" + name if name.startswith("q_") else name): value
            for name, value in metrics.items()
            if name != "loss"  # the same number as policy_loss
        }
        return loss, metrics

    return critic_loss, policy_loss


def make_sgd_step(
    networks: MPONetworks,
    config: MPOConfig,
    optimizers_: tuple,
    value_bounds: tuple[float, float] | None = None,
):
    """The pure `sgd_step(state, transitions) -> (state, metrics)`; `optimizers_` is (policy,
    critic, dual) as `init_training_state` returns them."""
    policy_optimizer, critic_optimizer, dual_optimizer = optimizers_
    critic_loss, policy_loss = make_losses(networks, config, value_bounds)
    critic_grad = jax.value_and_grad(critic_loss, has_aux=True)
    policy_and_dual_grad = jax.value_and_grad(policy_loss, argnums=(0, 1), has_aux=True)

    def sgd_step(state: TrainingState, batch: Transition):
        key, critic_key, policy_key = jax.random.split(state.key, 3)
        targets = (state.target_policy_params, state.target_critic_params)
        (c_loss, c_metrics), c_grads = critic_grad(state.critic_params, *targets, batch, critic_key)
        (p_loss, p_metrics), (p_grads, d_grads) = policy_and_dual_grad(
            state.policy_params, state.dual_params, *targets, batch, policy_key
        )
        dual_params, dual_opt_state = actor_critic.optimizer_step(
            dual_optimizer, d_grads, state.dual_opt_state, state.dual_params
        )
        state = state._replace(
            key=key,
            dual_params=mpo_losses.clip_dual_params(dual_params),
            dual_opt_state=dual_opt_state,
        )
        state = actor_critic.apply_gradients(
            state, p_grads, c_grads, policy_optimizer, critic_optimizer, config.target_update_period
        )
        return state, {"critic_loss": c_loss, "policy_loss": p_loss, **c_metrics, **p_metrics}

    return sgd_step


def init_training_state(
    networks: MPONetworks, config: MPOConfig, env_spec: EnvironmentSpec, key: jax.Array
) -> tuple[TrainingState, tuple]:
    """(state at step 0, (policy, critic, dual) optimisers): clipped Adam each; the duals at
    acme's initial values (`mpo_losses.init_dual_params`)."""
    clip = config.max_gradient_norm
    optimizers_ = (
        optimizers.clipped_adam(config.policy_learning_rate, clip),
        optimizers.clipped_adam(config.critic_learning_rate, clip),
        optimizers.clipped_adam(config.dual_learning_rate, clip),
    )
    networks_state = actor_critic.init_networks_state(networks, env_spec, key, *optimizers_[:2])
    dual_params = mpo_losses.init_dual_params(
        int(np.prod(env_spec.actions.shape)),
        per_dim_constraining=config.per_dim_constraining,
        action_penalization=config.action_penalization,
    )
    state = TrainingState(
        *networks_state, dual_params=dual_params, dual_opt_state=optimizers_[2].init(dual_params)
    )
    return state, optimizers_


class MPOLearner(ConfiguredOnlineLearner):
    """Pulls [K, B, ...] batches of transitions and runs K SGD steps per call
    (`learners.ConfiguredOnlineLearner`, with the divergence guard). Also the program's
    variable source: `get_variables(["policy"])`."""

    @staticmethod
    def make_update(networks, config, env_spec, key, value_bounds=None):
        state, optimizers_ = init_training_state(networks, config, env_spec, key)
        return make_sgd_step(networks, config, optimizers_, value_bounds), state
