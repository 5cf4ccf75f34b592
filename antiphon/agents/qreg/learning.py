"""Q_sarsa-regularised offline TD3 (ALGORITHMS.md §5; the forms are a reconstruction, see
config.py). One SGD step on dataset rows (s, a, r, d, s', a'), d = gamma (1 - terminal), a' the
logged next action (`extras["next_action"]`), with TD3's actor pi, twin critics Q1, Q2, their
targets, and Q_sarsa with its target:

  Q_sarsa (SARSA: on-policy evaluation of the behaviour policy, only logged actions queried):
      L_sarsa = mean_batch (Q_sarsa(s, a) - sg(r + d Q_sarsa'(s', a')))^2
      pretrain: the first `sarsa_steps` SGD steps train only this, then it is frozen;
      cotrain:  every step trains it, before the TD3 step.
  critic, every step (a'_pi = clip(pi'(s') + clip(N(0, sigma^2), -c, c), -1, 1), TD3's):
      none / critic / critic_actor:  y = r + d min_i Q'_i(s', a'_pi)
      target:                        y = r + d ((1 - lambda) min_i Q'_i(s', a'_pi)
                                                 + lambda Q_sarsa(s', a'_pi))
      L_c = sum_i mean_batch (Q_i(s, a) - sg(y))^2
            + [critic, critic_actor] lambda sum_i mean_batch (Q_i(s, b) - sg(Q_sarsa(s, b)))^2,
        b = sg(pi(s))
  actor, every `policy_delay`-th step, on the critic just updated (q = Q1(s, pi(s))):
      L_pi = -mean q                                                    (TD3)
             or -alpha / sg(mean |q|) mean q + mean (pi(s) - a)^2       (use_bc: TD3+BC's)
             + [critic_actor] lambda_pi mean (q - Q_sarsa(s, pi(s)))^2 / sg(mean |q|)

Why these forms: the actions a TD target queries (pi(s')) are where a critic trained on data
extrapolates; anchoring Q at the policy's actions to a value estimate that never queried
anything but logged actions limits over-estimation without pulling pi towards the data's actions.
Every term is in the units of the one it sits beside (squared Q errors in L_c; Q in L_pi), so
lambda does not depend on the reward scale. With lambda = lambda_pi = 0 (and no BC term) each
variant is offline TD3 exactly; `reg="none"` is offline TD3 without a Q_sarsa at all.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from antiphon.agents import actor_critic, offline, td3
from antiphon.agents.actor_critic import optimizer_step
from antiphon.agents.qreg.config import QRegConfig
from antiphon.agents.qreg.networks import QRegNetworks
from antiphon.core.types import EnvironmentSpec, Transition


class TrainingState(NamedTuple):
    policy_params: Any
    critic_params: Any
    target_policy_params: Any
    target_critic_params: Any
    policy_opt_state: Any
    critic_opt_state: Any
    steps: jax.Array  # SGD steps taken (int32), Q_sarsa's pre-training included
    key: jax.Array
    sarsa_params: Any = ()
    target_sarsa_params: Any = ()
    sarsa_opt_state: Any = ()


def make_sarsa_loss(networks: QRegNetworks):
    """sarsa_loss(sarsa_params, target_sarsa_params, batch) -> (loss, metrics): the SARSA
    regression onto r + d Q_sarsa'(s', a'), a' the logged next action."""

    def sarsa_loss(sarsa_params, target_sarsa_params, batch: Transition):
        next_q = networks.sarsa_apply(
            target_sarsa_params, batch.next_observation, batch.extras["next_action"]
        )
        target = jax.lax.stop_gradient(batch.reward + batch.discount * next_q)
        q = networks.sarsa_apply(sarsa_params, batch.observation, batch.action)
        return jnp.mean(jnp.square(q - target)), {"sarsa_q_mean": jnp.mean(q)}

    return sarsa_loss


def make_losses(
    networks: QRegNetworks, config: QRegConfig, value_bounds: tuple[float, float] | None = None
):
    """The TD3 losses with the regulariser of `config.reg` (module docstring), in the form
    `td3.make_delayed_sgd_step` takes:

    critic_loss(critic_params, state, batch, key) -> (loss, metrics)
    policy_loss(policy_params, critic_params, state, batch) -> (loss, metrics)
    (`state` gives the targets, the current actor and Q_sarsa's params.)
    """
    reg, weight = config.reg, config.reg_weight

    def critic_loss(critic_params, state: TrainingState, batch: Transition, key):
        next_action, bootstrap = td3.smoothed_target_q(networks, config, state, batch, key)
        if reg == "target":
            sarsa_next = networks.sarsa_apply(
                state.sarsa_params, batch.next_observation, next_action
            )
            bootstrap = (1.0 - weight) * bootstrap + weight * sarsa_next
        target = jax.lax.stop_gradient(batch.reward + batch.discount * bootstrap)
        q1, q2 = networks.critic_apply(critic_params, batch.observation, batch.action)
        td_loss = jnp.mean(jnp.square(q1 - target)) + jnp.mean(jnp.square(q2 - target))
        metrics = {
            "td_loss": td_loss,
            "q_mean": jnp.mean(q1),
            **actor_critic.value_range_metrics(q1, value_bounds),
        }
        loss = td_loss
        if reg in ("critic", "critic_actor"):
            policy_action = jax.lax.stop_gradient(
                networks.policy_apply(state.policy_params, batch.observation)
            )
            anchor = jax.lax.stop_gradient(
                networks.sarsa_apply(state.sarsa_params, batch.observation, policy_action)
            )
            p1, p2 = networks.critic_apply(critic_params, batch.observation, policy_action)
            penalty = jnp.mean(jnp.square(p1 - anchor)) + jnp.mean(jnp.square(p2 - anchor))
            loss = loss + weight * penalty
            metrics.update(
                critic_reg=penalty,
                q_policy_mean=jnp.mean(p1),
                sarsa_policy_mean=jnp.mean(anchor),
            )
        return loss, metrics

    def policy_loss(policy_params, critic_params, state: TrainingState, batch: Transition):
        action = networks.policy_apply(policy_params, batch.observation)
        q = networks.q1(critic_params, batch.observation, action)
        q_scale = jax.lax.stop_gradient(jnp.mean(jnp.abs(q)))
        metrics = {}
        if config.use_bc:
            bc_mse = jnp.mean(jnp.square(action - batch.action))
            loss = -config.alpha / q_scale * jnp.mean(q) + bc_mse
            metrics["bc_mse"] = bc_mse
        else:
            loss = -jnp.mean(q)
        if reg == "critic_actor":
            anchor = networks.sarsa_apply(state.sarsa_params, batch.observation, action)
            actor_reg = jnp.mean(jnp.square(q - anchor)) / q_scale
            loss = loss + config.actor_reg_weight * actor_reg
            metrics["actor_reg"] = actor_reg
        return loss, metrics

    return critic_loss, policy_loss


def make_sgd_step(
    networks: QRegNetworks,
    config: QRegConfig,
    policy_optimizer,
    critic_optimizer,
    sarsa_optimizer,
    value_bounds: tuple[float, float] | None = None,
):
    """Returns the pure function `sgd_step(state, batch) -> (state, metrics)`: Q_sarsa's step
    and/or TD3's (module docstring). Metrics of the part a step did not run are NaN."""
    critic_loss, policy_loss = make_losses(networks, config, value_bounds)
    td3_step = td3.make_delayed_sgd_step(
        critic_loss, policy_loss, (policy_optimizer, critic_optimizer), config
    )
    if not config.uses_sarsa():
        return td3_step
    sarsa_loss = make_sarsa_loss(networks)

    def sarsa_step(state: TrainingState, batch: Transition):
        (loss, metrics), grads = jax.value_and_grad(sarsa_loss, has_aux=True)(
            state.sarsa_params, state.target_sarsa_params, batch
        )
        params, opt_state = optimizer_step(
            sarsa_optimizer, grads, state.sarsa_opt_state, state.sarsa_params
        )
        state = state._replace(
            sarsa_params=params,
            target_sarsa_params=td3.polyak_update(params, state.target_sarsa_params, config.tau),
            sarsa_opt_state=opt_state,
        )
        return state, {"sarsa_loss": loss, **metrics}

    if config.sarsa_mode == "cotrain":

        def sgd_step(state, batch):
            state, sarsa_metrics = sarsa_step(state, batch)
            state, metrics = td3_step(state, batch)
            return state, {**sarsa_metrics, **metrics}

        return sgd_step

    def td3_metrics(state, batch):
        return td3_step(state, batch)[1]

    def sarsa_metrics(state, batch):
        return sarsa_step(state, batch)[1]

    def sgd_step(state, batch):
        def pretrain(_):
            new_state, sarsa_metrics = sarsa_step(state, batch)
            new_state = new_state._replace(steps=state.steps + 1)
            return new_state, {**sarsa_metrics, **td3.not_computed(td3_metrics, state, batch)}

        def learn(_):
            new_state, metrics = td3_step(state, batch)
            return new_state, {**td3.not_computed(sarsa_metrics, state, batch), **metrics}

        return jax.lax.cond(state.steps < config.sarsa_steps, pretrain, learn, None)

    return sgd_step


def init_training_state(
    networks: QRegNetworks,
    config: QRegConfig,
    env_spec: EnvironmentSpec,
    key: jax.Array,
    observations: jax.Array | None = None,
):
    """(initial state, policy optimiser, critic optimiser, Q_sarsa's optimiser): TD3's state
    (`td3.init_training_state`) with Q_sarsa's params (target = online) when `reg` uses it."""
    td3_key, sarsa_key = jax.random.split(key)
    base, policy_opt, critic_opt = td3.init_training_state(
        networks, config, env_spec, td3_key, observations
    )
    state = TrainingState(*base)
    sarsa_opt = td3.make_optimizer(config.sarsa_learning_rate)
    if config.uses_sarsa():
        sarsa_params = networks.init_sarsa(sarsa_key, env_spec)
        if config.normalize_observations:
            mean, std = td3.observation_statistics(observations, config.normalization_epsilon)
            sarsa_params = td3.with_observation_statistics(sarsa_params, mean, std)
        state = state._replace(
            sarsa_params=sarsa_params,
            target_sarsa_params=sarsa_params,
            sarsa_opt_state=sarsa_opt.init(sarsa_params),
        )
    return state, policy_opt, critic_opt, sarsa_opt


def make_update(
    networks: QRegNetworks,
    config: QRegConfig,
    env_spec: EnvironmentSpec,
    data: Transition,
    key,
    value_bounds: tuple[float, float] | None = None,
) -> tuple[offline.SgdStep, TrainingState]:
    """(sgd_step, initial state) for `builders.OfflineBuilder`."""
    state, policy_opt, critic_opt, sarsa_opt = init_training_state(
        networks, config, env_spec, key, observations=data.observation
    )
    sgd_step = make_sgd_step(networks, config, policy_opt, critic_opt, sarsa_opt, value_bounds)
    return sgd_step, state


def variables(state: TrainingState) -> dict[str, Any]:
    """What the learner serves: the actor (evaluation), the critic, and Q_sarsa."""
    served = actor_critic.variables(state)
    if state.sarsa_params != ():
        served = {**served, "q_sarsa": state.sarsa_params}
    return served
