"""TD3's mechanics (Fujimoto et al. 2018), once, for the agents built on it (TD3+BC, Q_sarsa-
regularised TD3): a deterministic tanh actor with twin ReLU critics and an optional observation
normaliser in front, target policy smoothing, Polyak targets, and the delayed-actor SGD step.

The delayed step: the critic moves every step; the actor and all targets move every
`policy_delay`-th step, on the critic just updated in this step. The step counter is incremented
before the test (the authors' code), so with policy_delay = 2 the actor and targets move on SGD
steps 2, 4, 6, ... The delay is a `lax.cond` inside the jitted step, so a K-step `lax.scan` keeps
one fixed shape; on the steps without an actor update the actor's metrics are NaN ("not
computed"), which the learner's mean over a call leaves out (`offline.make_multi_step_update`).

The normaliser computes (s - mean) / std with `mean` and `std` stored as haiku parameters of a
module named `observation_normalizer` (initialised to 0 and 1). They are not trained: the module
stop-gradients them, the optimiser masks them (`make_optimizer`) and the learner writes the
dataset's statistics into them once (`with_observation_statistics`). Keeping them inside the params
means the evaluation actor, which builds the networks from the environment spec alone and receives
its params from the learner, normalises exactly as the learner does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax

from antiphon.agents import actor_critic, optimizers
from antiphon.agents import networks as shared
from antiphon.agents.actor_critic import optimizer_step
from antiphon.core.types import EnvironmentSpec

NORMALIZER = "observation_normalizer"


# ------------------------------------------------------------------------------------------------
# Hyperparameters


@dataclasses.dataclass(frozen=True)
class TD3Config:
    """TD3's hyperparameters, the base of every TD3 agent's config. Defaults: the TD3+BC authors'
    code (Adam 3e-4 for both networks, batch 256, tau = 0.005, policy noise 0.2 clipped to 0.5,
    actor and targets every 2nd step) with d3rlpy's (256, 256) ReLU MLPs (the same sizes)."""

    policy_delay: int = 2  # actor and target updates every `policy_delay` critic steps
    # Critic target: a' = clip(pi_target(s') + clip(N(0, policy_noise), +-noise_clip), -1, 1).
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    tau: float = 0.005  # Polyak averaging of the targets: t <- tau * online + (1 - tau) * t
    # Optimisation.
    discount: float = 0.99  # device_transitions stores gamma * (1 - terminal) in the batch
    batch_size: int = 256
    policy_learning_rate: float = 3e-4
    critic_learning_rate: float = 3e-4
    sgd_steps_per_call: int = 8  # SGD steps per jitted call (batches drawn on the device)
    # Networks.
    policy_layer_sizes: tuple[int, ...] = (256, 256)
    critic_layer_sizes: tuple[int, ...] = (256, 256)
    # The TD3+BC paper's state normalisation s <- (s - mean) / (std + eps) with the dataset's
    # statistics (eps = 1e-3 in the authors' code), held in the params (module docstring).
    normalize_observations: bool = False
    normalization_epsilon: float = 1e-3
    # Behaviour policy (evaluation=False): clip(pi(s) + N(0, exploration_sigma), -1, 1).
    exploration_sigma: float = 0.1

    def validate(self) -> None:
        """Relations between fields (each field's range: `config_checks`)."""


# ------------------------------------------------------------------------------------------------
# Networks


class ObservationNormalizer(hk.Module):
    """(s - mean) / std with non-trained parameters `mean` (init 0) and `std` (init 1)."""

    def __init__(self, name: str = NORMALIZER):
        super().__init__(name=name)

    def __call__(self, observation: jax.Array) -> jax.Array:
        shape = observation.shape[-1:]
        mean = hk.get_parameter("mean", shape, jnp.float32, init=jnp.zeros)
        std = hk.get_parameter("std", shape, jnp.float32, init=jnp.ones)
        return (observation - jax.lax.stop_gradient(mean)) / jax.lax.stop_gradient(std)


class QNetwork(hk.Module):
    """(s, a) -> MLP(concat(s, a)) -> scalar Q [B]."""

    def __init__(self, layer_sizes, name: str | None = None):
        super().__init__(name=name)
        self._layer_sizes = tuple(layer_sizes)

    def __call__(self, observation: jax.Array, action: jax.Array) -> jax.Array:
        x = shared.MLP(self._layer_sizes)(jnp.concatenate([observation, action], axis=-1))
        return shared.linear_head(x, 1)[..., 0]


def is_normalizer(module_name: str) -> bool:
    return module_name.split("/")[-1] == NORMALIZER


def frozen_mask(params) -> dict:
    """True for the normaliser's leaves (never trained), False for every other parameter."""
    return hk.data_structures.map(lambda module, name, value: is_normalizer(module), params)


def with_observation_statistics(params, mean: jax.Array, std: jax.Array):
    """`params` with the normaliser's mean and std replaced (unchanged if it has no normaliser)."""
    stats = {"mean": jnp.asarray(mean, jnp.float32), "std": jnp.asarray(std, jnp.float32)}

    def replace(module, name, value):
        if is_normalizer(module):
            return jnp.broadcast_to(stats[name], value.shape).astype(value.dtype)
        return value

    return hk.data_structures.map(replace, params)


def observation_statistics(observations: jax.Array, epsilon: float) -> tuple[jax.Array, jax.Array]:
    """The TD3+BC authors' statistics: mean and std + eps over the dataset's observations."""
    return jnp.mean(observations, axis=0), jnp.std(observations, axis=0) + epsilon


@dataclasses.dataclass(frozen=True)
class TwinCriticNetworks(shared.PolicyCriticNetworks):
    """Pure functions (`init` from `networks.PolicyCriticNetworks`).

    policy_apply(params, obs [B, D]) -> action [B, A] in [-1, 1].
    critic_apply(params, obs [B, D], action [B, A]) -> (Q1 [B], Q2 [B]).
    """

    def q1(self, critic_params, observation, action) -> jax.Array:
        return self.critic_apply(critic_params, observation, action)[0]


def make_networks(env_spec: EnvironmentSpec, config) -> TwinCriticNetworks:
    """The actor tanh(MLP(s)) and critics Q1, Q2 = MLP(concat(s, a)), plain ReLU MLPs of
    `config.policy_layer_sizes` / `critic_layer_sizes`; the normaliser in front of each with
    `config.normalize_observations`."""
    action_dim = int(np.prod(env_spec.actions.shape))
    normalize = config.normalize_observations

    def policy(observation):
        if normalize:
            observation = ObservationNormalizer()(observation)
        x = shared.MLP(config.policy_layer_sizes)(observation)
        return jnp.tanh(shared.linear_head(x, action_dim))

    def critic(observation, action):
        if normalize:
            observation = ObservationNormalizer()(observation)
        q1 = QNetwork(config.critic_layer_sizes, name="q1")(observation, action)
        q2 = QNetwork(config.critic_layer_sizes, name="q2")(observation, action)
        return q1, q2

    return TwinCriticNetworks(**shared.transform_policy_and_critic(policy, critic))


# ------------------------------------------------------------------------------------------------
# Learning


def target_actions(
    networks: TwinCriticNetworks,
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


def smoothed_target_q(
    networks: TwinCriticNetworks, config: TD3Config, state, batch, key
) -> tuple[jax.Array, jax.Array]:
    """(a', min(Q1'(s', a'), Q2'(s', a'))) with the smoothed target action a'
    (`target_actions`) and the target critics of `state`."""
    next_action = target_actions(
        networks,
        state.target_policy_params,
        batch.next_observation,
        key,
        config.policy_noise,
        config.noise_clip,
    )
    target_q1, target_q2 = networks.critic_apply(
        state.target_critic_params, batch.next_observation, next_action
    )
    return next_action, jnp.minimum(target_q1, target_q2)


def clipped_double_q_target(
    networks: TwinCriticNetworks, config: TD3Config, state, batch, key
) -> jax.Array:
    """y = r + d * min(Q1'(s', a'), Q2'(s', a')), stop-gradiented (`smoothed_target_q`)."""
    _, bootstrap = smoothed_target_q(networks, config, state, batch, key)
    return jax.lax.stop_gradient(batch.reward + batch.discount * bootstrap)


def make_optimizer(learning_rate: float) -> optax.GradientTransformation:
    """Adam on the trained parameters (as one flat vector, `optimizers.flatten`); zero updates
    for the normaliser's statistics."""

    def labels(params):
        return hk.data_structures.map(
            lambda module, name, value: "frozen" if is_normalizer(module) else "trained", params
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
        lambda frozen, o, a: o if frozen else a, frozen_mask(online), online, averaged
    )


def not_computed(function: Callable, *args) -> Any:
    """`function(*args)`'s output structure filled with NaN: a metric a step did not compute."""
    return jax.tree_util.tree_map(
        lambda x: jnp.full(x.shape, jnp.nan, x.dtype), jax.eval_shape(function, *args)
    )


def make_delayed_sgd_step(
    critic_loss: Callable,
    policy_loss: Callable,
    optimizers: tuple[optax.GradientTransformation, optax.GradientTransformation],
    config: TD3Config,
):
    """`sgd_step(state, batch) -> (state, metrics)`: TD3's delayed step (module docstring).

    critic_loss(critic_params, state, batch, key) -> (loss, metrics), with `state` the step's
        input state (its targets, and whatever else an algorithm keeps in it);
    policy_loss(policy_params, critic_params, state, batch) -> (loss, metrics), on the critic
        updated in this step.
    `state`: an `actor_critic.ActorCriticState` or any NamedTuple with its fields; the others
    pass through. `optimizers`: (policy's, critic's). `config`: its policy_delay and tau.
    Metrics: critic_loss, policy_loss and the losses' own.
    """
    policy_optimizer, critic_optimizer = optimizers
    policy_delay, tau = config.policy_delay, config.tau

    def sgd_step(state, batch):
        key, critic_key = jax.random.split(state.key)
        (c_loss, c_metrics), c_grads = jax.value_and_grad(critic_loss, has_aux=True)(
            state.critic_params, state, batch, critic_key
        )
        critic_params, critic_opt_state = optimizer_step(
            critic_optimizer, c_grads, state.critic_opt_state, state.critic_params
        )
        steps = state.steps + 1

        def update_actor_and_targets(_):
            (p_loss, p_metrics), p_grads = jax.value_and_grad(policy_loss, has_aux=True)(
                state.policy_params, critic_params, state, batch
            )
            policy_params, policy_opt_state = optimizer_step(
                policy_optimizer, p_grads, state.policy_opt_state, state.policy_params
            )
            updated = (
                policy_params,
                policy_opt_state,
                polyak_update(policy_params, state.target_policy_params, tau),
                polyak_update(critic_params, state.target_critic_params, tau),
            )
            return updated, (p_loss, p_metrics)

        def keep_actor_and_targets(_):
            kept = (
                state.policy_params,
                state.policy_opt_state,
                state.target_policy_params,
                state.target_critic_params,
            )
            return kept, not_computed(policy_loss, state.policy_params, critic_params, state, batch)

        (policy_params, policy_opt_state, target_policy, target_critic), (p_loss, p_metrics) = (
            jax.lax.cond(
                steps % policy_delay == 0, update_actor_and_targets, keep_actor_and_targets, None
            )
        )
        new_state = state._replace(
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
    networks: TwinCriticNetworks,
    config,
    env_spec: EnvironmentSpec,
    key: jax.Array,
    observations: jax.Array | None = None,
):
    """(initial ActorCriticState with targets = online networks, policy optimiser, critic
    optimiser). With `config.normalize_observations`, `observations` [N, D] (the dataset's) give
    the normaliser's statistics."""
    policy_optimizer = make_optimizer(config.policy_learning_rate)
    critic_optimizer = make_optimizer(config.critic_learning_rate)
    init_key, state_key = jax.random.split(key)
    policy_params, critic_params = networks.init(init_key, env_spec)
    if config.normalize_observations:
        if observations is None:
            raise ValueError("normalize_observations needs the dataset's observations")
        mean, std = observation_statistics(observations, config.normalization_epsilon)
        policy_params = with_observation_statistics(policy_params, mean, std)
        critic_params = with_observation_statistics(critic_params, mean, std)
    state = actor_critic.init_state(
        policy_params, critic_params, policy_optimizer, critic_optimizer, state_key
    )
    return state, policy_optimizer, critic_optimizer


# ------------------------------------------------------------------------------------------------
# Acting


def make_policy(networks: TwinCriticNetworks, exploration_sigma: float, evaluation: bool = True):
    """policy(params, observation, state, key): evaluation the deterministic pi(s); behaviour
    clip(pi(s) + N(0, sigma^2), -1, 1) (the clip keeps the action inside the canonical box)."""
    sigma = 0.0 if evaluation else exploration_sigma

    def policy(params, observation, state, key):
        action = networks.policy_apply(params, observation[None])[0]
        if sigma > 0:
            action = jnp.clip(
                action + sigma * jax.random.normal(key, action.shape, action.dtype), -1.0, 1.0
            )
        return action, state

    return policy
