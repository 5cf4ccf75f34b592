"""TD3+BC learner: TD3 with a behaviour-cloning term in the actor loss (Fujimoto & Gu 2021,
"A Minimalist Approach to Offline Reinforcement Learning").

One SGD step on a batch of dataset transitions (s, a, r, d, s'), with d = gamma * (1 - terminal),
a deterministic actor pi(s) = tanh(MLP(s)), twin critics Q1, Q2 and target copies pi', Q1', Q2':

  critic (every step; target policy smoothing and clipped double-Q):
      eps ~ clip(N(0, policy_noise^2), -noise_clip, noise_clip)
      a'  = clip(pi'(s') + eps, -1, 1)
      y   = r + d * min(Q1'(s', a'), Q2'(s', a'))
      L_c = mean_batch (Q1(s, a) - sg(y))^2 + mean_batch (Q2(s, a) - sg(y))^2
  actor (every `policy_delay`-th step, on the critic just updated in this step):
      lambda = alpha / sg(mean_batch |Q1(s, pi(s))|)
      L_pi   = -lambda * mean_batch Q1(s, pi(s)) + mean_{batch, action dims} (pi(s) - a)^2
  targets (on the same steps as the actor, after its update):
      theta' <- tau * theta + (1 - tau) * theta'       for pi, Q1 and Q2

Details as in the authors' code (github.com/sfujim/TD3_BC): the critic loss is the SUM over the
two critics of each one's batch-mean squared error (no 1/2, no mean over critics; d3rlpy sums too);
the step counter is incremented before the test, so with policy_delay = 2 the actor and targets
move on SGD steps 2, 4, 6, ... and stay bit-identical on steps 1, 3, 5, ...; Adam 3e-4 for both
networks, no gradient clipping. The delay is a `lax.cond` inside the jitted step, so the K-step
`lax.scan` keeps one fixed shape. On the steps without an actor update the actor's metrics
(policy_loss, bc_mse, lambda) are NaN, "not computed": the learner's mean over a call leaves them
out (`offline.make_multi_step_update`). Evaluating the actor loss there only for its metrics cost
about 6 % of the step.

With `normalize_observations` the networks normalise s (and s') by the dataset's mean and
std + 1e-3, stored in the params as entries that are stop-gradiented, masked out of the optimiser
(set to zero updates) and copied, not averaged, into the targets (see networks.py).
"""

from __future__ import annotations

import haiku as hk
import jax
import jax.numpy as jnp
import optax

from antiphon.agents import actor_critic, offline, optimizers
from antiphon.agents.actor_critic import optimizer_step
from antiphon.agents.td3_bc import networks as td3_bc_networks
from antiphon.agents.td3_bc.config import TD3BCConfig
from antiphon.agents.td3_bc.networks import TD3BCNetworks
from antiphon.core.types import EnvironmentSpec, Transition

TrainingState = actor_critic.ActorCriticState


def target_actions(
    networks: TD3BCNetworks,
    target_policy_params,
    next_observation: jax.Array,
    key: jax.Array,
    policy_noise: float,
    noise_clip: float,
) -> jax.Array:
    """Target policy smoothing: a' = clip(pi'(s') + clip(N(0, sigma^2), -c, c), -1, 1)."""
    action = networks.policy_apply(target_policy_params, next_observation)
    noise = policy_noise * jax.random.normal(key, action.shape, action.dtype)
    return jnp.clip(action + jnp.clip(noise, -noise_clip, noise_clip), -1.0, 1.0)


def make_losses(
    networks: TD3BCNetworks, config: TD3BCConfig, value_bounds: tuple[float, float] | None = None
):
    """The two TD3+BC losses as pure functions (the math in the module docstring):

    critic_loss(critic_params, target_policy_params, target_critic_params, batch, key)
        -> (loss, metrics)
    policy_loss(policy_params, critic_params, batch) -> (loss, metrics)
    """

    def critic_loss(critic_params, target_policy_params, target_critic_params, batch, key):
        next_action = target_actions(
            networks,
            target_policy_params,
            batch.next_observation,
            key,
            config.policy_noise,
            config.noise_clip,
        )
        target_q1, target_q2 = networks.critic_apply(
            target_critic_params, batch.next_observation, next_action
        )
        target = batch.reward + batch.discount * jnp.minimum(target_q1, target_q2)
        target = jax.lax.stop_gradient(target)
        q1, q2 = networks.critic_apply(critic_params, batch.observation, batch.action)
        loss = jnp.mean(jnp.square(q1 - target)) + jnp.mean(jnp.square(q2 - target))
        return loss, {"q_mean": jnp.mean(q1), **actor_critic.value_range_metrics(q1, value_bounds)}

    def policy_loss(policy_params, critic_params, batch: Transition):
        action = networks.policy_apply(policy_params, batch.observation)
        q = networks.q1(critic_params, batch.observation, action)
        lmbda = jax.lax.stop_gradient(config.alpha / jnp.mean(jnp.abs(q)))
        bc_mse = jnp.mean(jnp.square(action - batch.action))
        loss = -lmbda * jnp.mean(q) + bc_mse
        return loss, {"bc_mse": bc_mse, "lambda": lmbda}

    return critic_loss, policy_loss


def make_optimizer(learning_rate: float) -> optax.GradientTransformation:
    """Adam on the trained parameters (as one flat vector, `optimizers.flatten`); zero updates
    for the normaliser's statistics."""

    def labels(params):
        return hk.data_structures.map(
            lambda module, name, value: (
                "frozen" if td3_bc_networks.is_normalizer(module) else "trained"
            ),
            params,
        )

    return optax.multi_transform(
        {"trained": optimizers.flatten(optax.adam(learning_rate)), "frozen": optax.set_to_zero()},
        labels,
    )


def polyak_update(online, target, tau: float):
    """theta' <- tau * theta + (1 - tau) * theta', except that the normaliser's statistics are
    copied (averaging equal values would let them drift by rounding)."""
    averaged = optax.incremental_update(online, target, tau)
    return jax.tree_util.tree_map(
        lambda frozen, o, a: o if frozen else a,
        td3_bc_networks.frozen_mask(online),
        online,
        averaged,
    )


def make_sgd_step(
    networks: TD3BCNetworks,
    config: TD3BCConfig,
    policy_optimizer,
    critic_optimizer,
    value_bounds: tuple[float, float] | None = None,
):
    """Returns the pure function `sgd_step(state, batch) -> (state, metrics)`."""
    critic_loss, policy_loss = make_losses(networks, config, value_bounds)

    def sgd_step(state: TrainingState, batch: Transition):
        key, critic_key = jax.random.split(state.key)
        (c_loss, c_metrics), c_grads = jax.value_and_grad(critic_loss, has_aux=True)(
            state.critic_params,
            state.target_policy_params,
            state.target_critic_params,
            batch,
            critic_key,
        )
        critic_params, critic_opt_state = optimizer_step(
            critic_optimizer, c_grads, state.critic_opt_state, state.critic_params
        )
        steps = state.steps + 1

        def update_actor_and_targets(_):
            (p_loss, p_metrics), p_grads = jax.value_and_grad(policy_loss, has_aux=True)(
                state.policy_params, critic_params, batch
            )
            policy_params, policy_opt_state = optimizer_step(
                policy_optimizer, p_grads, state.policy_opt_state, state.policy_params
            )
            updated = (
                policy_params,
                policy_opt_state,
                polyak_update(policy_params, state.target_policy_params, config.tau),
                polyak_update(critic_params, state.target_critic_params, config.tau),
            )
            return updated, (p_loss, p_metrics)

        def keep_actor_and_targets(_):
            # The shapes of update_actor_and_targets' metrics, as NaN: not computed this step.
            p_loss, p_metrics = jax.tree_util.tree_map(
                lambda x: jnp.full(x.shape, jnp.nan, x.dtype),
                jax.eval_shape(policy_loss, state.policy_params, critic_params, batch),
            )
            kept = (
                state.policy_params,
                state.policy_opt_state,
                state.target_policy_params,
                state.target_critic_params,
            )
            return kept, (p_loss, p_metrics)

        (policy_params, policy_opt_state, target_policy, target_critic), (p_loss, p_metrics) = (
            jax.lax.cond(
                steps % config.policy_delay == 0,
                update_actor_and_targets,
                keep_actor_and_targets,
                None,
            )
        )
        new_state = TrainingState(
            policy_params=policy_params,
            critic_params=critic_params,
            target_policy_params=target_policy,
            target_critic_params=target_critic,
            policy_opt_state=policy_opt_state,
            critic_opt_state=critic_opt_state,
            steps=steps,
            key=key,
        )
        return new_state, {"critic_loss": c_loss, "policy_loss": p_loss, **c_metrics, **p_metrics}

    return sgd_step


def init_training_state(
    networks: TD3BCNetworks,
    config: TD3BCConfig,
    env_spec: EnvironmentSpec,
    key: jax.Array,
    observations: jax.Array | None = None,
):
    """The initial state (targets = online networks) and the two optimisers. With
    `normalize_observations`, `observations` [N, D] (the dataset's) give the normaliser's
    statistics."""
    policy_optimizer = make_optimizer(config.policy_learning_rate)
    critic_optimizer = make_optimizer(config.critic_learning_rate)
    init_key, state_key = jax.random.split(key)
    policy_params, critic_params = networks.init(init_key, env_spec)
    if config.normalize_observations:
        if observations is None:
            raise ValueError("normalize_observations needs the dataset's observations")
        mean, std = td3_bc_networks.observation_statistics(
            observations, config.normalization_epsilon
        )
        policy_params = td3_bc_networks.with_observation_statistics(policy_params, mean, std)
        critic_params = td3_bc_networks.with_observation_statistics(critic_params, mean, std)
    state = actor_critic.init_state(
        policy_params, critic_params, policy_optimizer, critic_optimizer, state_key
    )
    return state, policy_optimizer, critic_optimizer


def make_update(
    networks: TD3BCNetworks,
    config: TD3BCConfig,
    env_spec: EnvironmentSpec,
    data: Transition,
    key,
    value_bounds: tuple[float, float] | None = None,
) -> tuple[offline.SgdStep, actor_critic.ActorCriticState]:
    """(sgd_step, initial state) for `builders.OfflineBuilder`; the observation statistics
    (with `normalize_observations`) come from `data`."""
    state, policy_opt, critic_opt = init_training_state(
        networks, config, env_spec, key, observations=data.observation
    )
    return make_sgd_step(networks, config, policy_opt, critic_opt, value_bounds), state
