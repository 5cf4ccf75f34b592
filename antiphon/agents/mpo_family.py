"""What the learners built on MPO's policy improvement share besides the losses (MPO, DMPO,
MoG-DMPO, DiME): the training state with the dual variables, its initialisation, the SGD step,
and the Q of N actions sampled from the old policy.

One SGD step, given the algorithm's two losses

    critic_loss(critic_params, target_policy_params, target_critic_params, batch, key)
    policy_loss(policy_params, dual_params, target_policy_params, target_critic_params, batch, key)

is: both gradients at the state before the step; Adam on the duals (their raw values then
clipped from below, `mpo_losses.clip_dual_params`); Adam on policy and critic; hard copy of
online -> target every `target_update_period` SGD steps (`actor_critic.apply_gradients`). One
`jax.grad` of the policy loss gives both the policy's and the duals' gradients: the losses keep
them apart with stop-gradients (`mpo_losses` module docstring).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from antiphon.agents import actor_critic, mpo_losses, optimizers, policy_evaluation
from antiphon.agents import networks as shared
from antiphon.core.types import EnvironmentSpec, Transition


class TrainingState(NamedTuple):
    """actor_critic.ActorCriticState's fields, then the dual variables and their Adam."""

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


def sampled_q(
    networks: shared.ActorCriticNetworks,
    target_policy_params,
    target_critic_params,
    observation: jax.Array,
    key: jax.Array,
    num_samples: int,
    stacked_critics: bool = False,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(actions [N, B, A], target mean [B, A], target std [B, A], Q [N, B]), all
    stop-gradient: N actions of the old (target) policy at each state and the target critic's
    expected value of each, what the E-step weighs. With `stacked_critics` the critic params
    carry a leading axis of K critics (one per objective) and Q is [K, N, B]."""
    actions, mean, std = policy_evaluation.sample_policy_actions(
        networks, target_policy_params, observation, key, num_samples
    )

    def q_of(critic_params):
        return networks.critic_mean(
            policy_evaluation.critic_per_action(networks, critic_params, observation, actions)
        )

    q = jax.vmap(q_of)(target_critic_params) if stacked_critics else q_of(target_critic_params)
    stop = jax.lax.stop_gradient
    return actions, stop(mean), stop(std), stop(q)


def make_policy_loss(
    networks: shared.ActorCriticNetworks,
    num_samples: int,
    improvement_loss,
    stacked_critics: bool = False,
):
    """policy_loss(policy_params, dual_params, target_policy_params, target_critic_params, batch,
    key) -> (loss, metrics) for `make_sgd_step`, from the algorithm's part:

        improvement_loss(dual_params, online_mean, online_std, target_mean, target_std,
                         actions, q, batch, key) -> (loss, metrics)

    which gets N actions of the target policy at the batch's states, the target critic's Q of
    each (`sampled_q`, all stop-gradient; [K, N, B] with `stacked_critics`) and the online
    policy's (mean, std) there."""

    def policy_loss(
        policy_params,
        dual_params,
        target_policy_params,
        target_critic_params,
        batch: Transition,
        key,
    ):
        sample_key, improvement_key = jax.random.split(key)
        actions, target_mean, target_std, q = sampled_q(
            networks,
            target_policy_params,
            target_critic_params,
            batch.observation,
            sample_key,
            num_samples,
            stacked_critics,
        )
        online_mean, online_std = networks.policy_apply(policy_params, batch.observation)
        return improvement_loss(
            dual_params,
            online_mean,
            online_std,
            target_mean,
            target_std,
            actions,
            q,
            batch,
            improvement_key,
        )

    return policy_loss


def make_sgd_step(critic_loss, policy_loss, optimizers_: tuple, target_update_period: int):
    """The pure `sgd_step(state, batch) -> (state, metrics)` (module docstring); `optimizers_`
    is (policy, critic, dual) as `init_training_state` returns them. Metrics: critic_loss,
    policy_loss and every metric of the two losses."""
    policy_optimizer, critic_optimizer, dual_optimizer = optimizers_
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
            state, p_grads, c_grads, policy_optimizer, critic_optimizer, target_update_period
        )
        return state, {"critic_loss": c_loss, "policy_loss": p_loss, **c_metrics, **p_metrics}

    return sgd_step


def init_training_state(
    networks: shared.ActorCriticNetworks,
    config,
    env_spec: EnvironmentSpec,
    key: jax.Array,
    num_objectives: int = 1,
) -> tuple[TrainingState, tuple]:
    """(state at step 0, (policy, critic, dual) optimisers): Adam after a global-norm clip of
    `config.max_gradient_norm` each; the duals at acme's initial values
    (`mpo_losses.init_dual_params`), one temperature per objective."""
    clip = config.max_gradient_norm
    optimizers_ = (
        optimizers.clipped_adam(config.policy_learning_rate, clip),
        optimizers.clipped_adam(config.critic_learning_rate, clip),
        optimizers.clipped_adam(config.dual_learning_rate, clip),
    )
    networks_state = actor_critic.init_networks_state(networks, env_spec, key, *optimizers_[:2])
    dual_params = mpo_losses.init_dual_params(
        int(np.prod(env_spec.actions.shape)),
        num_objectives=num_objectives,
        per_dim_constraining=config.per_dim_constraining,
        action_penalization=config.action_penalization,
    )
    state = TrainingState(
        *networks_state, dual_params=dual_params, dual_opt_state=optimizers_[2].init(dual_params)
    )
    return state, optimizers_


def make_update(
    networks: shared.ActorCriticNetworks,
    config,
    env_spec: EnvironmentSpec,
    key: jax.Array,
    losses: tuple,
    num_objectives: int = 1,
):
    """(sgd_step, state at step 0) from an algorithm's (critic_loss, policy_loss): the state
    and optimisers of `init_training_state`, the step of `make_sgd_step`."""
    state, optimizers_ = init_training_state(networks, config, env_spec, key, num_objectives)
    critic_loss, policy_loss = losses
    return make_sgd_step(critic_loss, policy_loss, optimizers_, config.target_update_period), state
