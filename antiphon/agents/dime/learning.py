"""DiME learner, offline (RL + BC): Distillation of a Mixture of Experts (Abdolmaleki et al.
2021; ALGORITHMS.md §3.2-3.4). Reuses MPO's E-step and M-step (`mpo_losses`) and MPO's critic
(`policy_evaluation`); what is DiME's is which experts there are and how they are mixed.

One SGD step on a batch of dataset transitions (s, a, r, d, s'), d = gamma * (1 - terminal),
with N = `num_samples` and the objectives' mixture weights alpha_k (`preferences`, sum 1):

  critic (policy evaluation of pi on the data, as MPO's):
      a'_i ~ pi_target(s');  y = r + d (1/N) sum_i Q_target(s', a'_i)    (C51 / MoG likewise)
  experts (each a weighting of candidate actions at s, stop-gradient):
      rl:  a_i ~ pi_target(s), i = 1..N;  w_i = softmax_i(Q_target(s, a_i) / eta)
           eta learned from the dual of KL(q_rl || pi_old) <= eps (temperature_mode "learned"),
           or fixed (temperature_mode "fixed": the KL-regularised reading, not scale-invariant);
           plus MPO's action-penalty expert over the same samples (its own eta, eps_penalty)
      bc:  the dataset action a with weight 1 (the behaviour policy's sample)
  distillation (MPO's decoupled M-step over the mixture of experts):
      L_pi = -mean_s [ alpha_rl sum_i (w_i + w_pen_i) log pi(a_i|s) + alpha_bc log pi(a|s) ]
             (with pi's mean and std decoupled, `mpo_losses.m_step`)
           + trust regions KL_mu <= eps_mu, KL_sigma <= eps_sigma (shared by all experts)
      loss = L_pi + trust-region and temperature dual losses

The bc expert is the offline RL "plus a behavioural cloning term" of the paper's abstract; with
objectives ("rl",) the loss is exactly MPO's (`mpo_losses.mpo_loss`), with ("bc",) it is
behaviour cloning inside MPO's trust region. The action penalty (acme's default, on) adds
alpha_rl of mass to the rl side (as it adds weight 1 in MPO): with it on, the rl : bc ratio of
the weights is 2 alpha_rl : alpha_bc while the rl samples stay in the box.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

from antiphon.agents import (
    actor_critic,
    mpo_family,
    mpo_losses,
    offline,
    policy_evaluation,
    snapshots,
)
from antiphon.agents.dime.config import DiMEOfflineConfig
from antiphon.agents.dime.networks import DiMENetworks
from antiphon.agents.learners import ConfiguredOnlineLearner
from antiphon.core.types import EnvironmentSpec, Transition

TrainingState = mpo_family.TrainingState
Combination = Literal["dime", "mompo", "linear"]


class Improvement(NamedTuple):
    """One E-step over K reward objectives: weights [N, B] (combined), loss_temperature
    (scalar, 0 when nothing is learned), per-objective weights [K, N, B] and kl_q_rel [K]."""

    weights: jax.Array
    loss_temperature: jax.Array
    per_objective_weights: jax.Array
    kl_q_rel: jax.Array


def improve(
    q_values: jax.Array,
    temperature: jax.Array,
    epsilon: float | jax.Array,
    preferences: jax.Array,
    combination: Combination = "dime",
    learned_temperature: bool = True,
) -> Improvement:
    """The family of ALGORITHMS.md §3.3 for K reward objectives with Q values [K, N, B]:

      dime:   w = sum_k alpha_k softmax_i(Q_k / eta_k)     one temperature and eps_k each
      mompo:  w = sum_k         softmax_i(Q_k / eta_k)     preferences only through eps_k
      linear: w = softmax_i( sum_k lambda_k Q_k / eta )    one temperature (temperature[0])

    preferences [K]: alpha_k (dime; the caller normalises) or lambda_k (linear). temperature:
    positive values ([K]; linear reads the first). With `learned_temperature` each eta takes
    the dual loss of its KL(q || pi_old) <= eps (`mpo_losses.e_step`), so Q_k -> c Q_k leaves
    dime's and mompo's weights unchanged at the optimum; fixed temperatures do not.
    """
    q_values = jax.lax.stop_gradient(q_values)
    if combination == "linear":
        q_values = jnp.einsum("k,knb->nb", preferences, q_values)[None]
        temperature, epsilon = temperature[:1], jnp.asarray(epsilon).reshape(-1)[:1]
    elif combination not in ("dime", "mompo"):
        raise ValueError(f"unknown combination {combination!r} (dime | mompo | linear)")
    if not learned_temperature:
        temperature = jax.lax.stop_gradient(temperature)
    out = mpo_losses.e_step(q_values, temperature, epsilon)
    if combination == "dime":
        weights = jnp.einsum("k,knb->nb", preferences, out.weights)
    else:
        weights = jnp.sum(out.weights, axis=0)
    loss_temperature = out.loss_temperature if learned_temperature else jnp.zeros(())
    return Improvement(weights, loss_temperature, out.weights, out.kl_q_rel)


def teacher_weighting(teacher_actions: jax.Array | None, alpha: float):
    """(actions [M, B, A], weights [M, B] = alpha / M): the teacher expert, its M action
    samples per state equally weighted (stop-gradient)."""
    if teacher_actions is None:
        raise ValueError("the teacher objective needs teacher actions (--teacher RUN_DIR@WHICH)")
    m, b = teacher_actions.shape[:2]
    weights = jnp.full((m, b), alpha / m, teacher_actions.dtype)
    return jax.lax.stop_gradient(teacher_actions), weights


class Experts(NamedTuple):
    """The mixture to distil: candidate actions [M, B, A] and their weights [M, B] (the rl
    expert's N samples, then the dataset action when bc is an objective)."""

    actions: jax.Array
    weights: jax.Array
    loss_temperature: jax.Array
    metrics: dict[str, jax.Array]


def experts(
    config: DiMEOfflineConfig,
    dual_params: mpo_losses.DualParams,
    sampled_actions: jax.Array,
    q_values: jax.Array,
    dataset_action: jax.Array,
    teacher_actions: jax.Array | None = None,
) -> Experts:
    """The experts of `config.objectives` (module docstring), weighted by their alpha_k.

    sampled_actions [N, B, A] from the target policy, q_values [N, B] the target critic's Q of
    them, dataset_action [B, A], teacher_actions [M, B, A] (the teacher objective: each of the
    M samples weighs alpha_teacher / M)."""
    alphas = config.mixture_weights()
    actions, weights, metrics = [], [], {}
    loss_temperature = jnp.zeros(())
    if "rl" in alphas:
        if config.temperature_mode == "learned":
            temperature = mpo_losses.dual_value(dual_params.log_temperature)
        else:
            temperature = jnp.full((1,), config.fixed_temperature, jnp.float32)
        rl = improve(
            q_values[None],
            temperature,
            config.epsilon,
            jnp.ones((1,)),
            learned_temperature=config.temperature_mode == "learned",
        )
        rl_weights = rl.weights
        loss_temperature = loss_temperature + rl.loss_temperature
        metrics.update(temperature=temperature[0], kl_q_rel=rl.kl_q_rel[0])
        if config.action_penalization:
            penalty = mpo_losses.e_step(
                mpo_losses.action_penalty_q(sampled_actions),
                mpo_losses.dual_value(dual_params.log_penalty_temperature),
                config.epsilon_penalty,
            )
            rl_weights = rl_weights + penalty.weights[0]
            loss_temperature = loss_temperature + penalty.loss_temperature
            metrics.update(
                penalty_temperature=mpo_losses.dual_value(dual_params.log_penalty_temperature)[0],
                penalty_kl_q_rel=penalty.kl_q_rel[0],
            )
        actions.append(sampled_actions)
        weights.append(alphas["rl"] * rl_weights)
        q = jax.lax.stop_gradient(q_values)
        metrics.update(
            sampled_q_mean=jnp.mean(q),
            sampled_q_min=jnp.mean(jnp.min(q, axis=0)),
            sampled_q_max=jnp.mean(jnp.max(q, axis=0)),
        )
    if "bc" in alphas:
        actions.append(dataset_action[None])
        weights.append(jnp.full((1, dataset_action.shape[0]), alphas["bc"], dataset_action.dtype))
    if "teacher" in alphas:
        teacher_expert, teacher_weights = teacher_weighting(teacher_actions, alphas["teacher"])
        actions.append(teacher_expert)
        weights.append(teacher_weights)
    return Experts(
        jnp.concatenate(actions, axis=0),
        jnp.concatenate(weights, axis=0),
        loss_temperature,
        metrics,
    )


def make_losses(
    networks: DiMENetworks,
    config: DiMEOfflineConfig,
    value_bounds: tuple[float, float] | None = None,
    teacher=None,
):
    """critic_loss (MPO's, `policy_evaluation.make_critic_loss`) and
    policy_loss(policy_params, dual_params, target_policy_params, target_critic_params, batch,
    key) -> (loss, metrics): the experts distilled by MPO's M-step (module docstring)."""
    critic_loss = policy_evaluation.make_critic_loss(networks, config, value_bounds)

    def improvement_loss(
        dual_params, online_mean, online_std, target_mean, target_std, actions, q, batch, key
    ):
        teacher_actions = None if teacher is None else teacher(batch.observation, key)
        mixture = experts(config, dual_params, actions, q, batch.action, teacher_actions)
        loss_m, metrics = mpo_losses.m_step(
            online_mean,
            online_std,
            target_mean,
            target_std,
            mixture.actions,
            mixture.weights,
            mpo_losses.dual_value(dual_params.log_alpha_mean),
            mpo_losses.dual_value(dual_params.log_alpha_stddev),
            epsilon_mean=config.epsilon_mean,
            epsilon_stddev=config.epsilon_stddev,
            per_dim_constraining=config.per_dim_constraining,
        )
        # How likely the online policy finds the data's actions: BC's own progress measure.
        stop = jax.lax.stop_gradient
        data_log_prob = mpo_losses.gaussian_log_prob(
            batch.action, stop(online_mean), stop(online_std)
        )
        metrics = {
            **metrics,
            **mixture.metrics,
            "loss_temperature": stop(mixture.loss_temperature),
            "data_log_prob": jnp.mean(data_log_prob),
        }
        return loss_m + mixture.loss_temperature, metrics

    policy_loss = mpo_family.make_policy_loss(networks, config.num_samples, improvement_loss)
    return critic_loss, policy_loss


def make_update(
    networks: DiMENetworks,
    config: DiMEOfflineConfig,
    env_spec: EnvironmentSpec,
    data: Transition,
    key,
    value_bounds: tuple[float, float] | None = None,
) -> tuple[offline.SgdStep, TrainingState]:
    """(sgd_step, initial state) for `builders.OfflineBuilder`: MPO's step and state
    (`mpo_family`) with DiME's policy loss."""
    del data  # nothing in the networks depends on the dataset
    losses = make_losses(networks, config, value_bounds, teacher=make_teacher(config, env_spec))
    return mpo_family.make_update(networks, config, env_spec, key, losses)


variables = actor_critic.variables


def make_teacher(config: DiMEOfflineConfig, env_spec: EnvironmentSpec):
    """The teacher objective's `sample(observation [B, D], key) -> actions [M, B, A]`, or None
    without a teacher (`snapshots.snapshot_action_sampler`: its behaviour policy)."""
    if not config.teacher:
        return None
    return snapshots.snapshot_action_sampler(config.teacher, env_spec, config.teacher_samples)


# ------------------------------------------------------------------------------------------------
# Online: K reward objectives, one critic each


def make_stacked_critic_loss(
    networks: DiMENetworks,
    config,
    names: tuple[str, ...],
    reward_scales: tuple[float, ...] | None = None,
):
    """critic_loss over K critics stacked on the params' leading axis, critic k trained on
    c_k times reward column k of the n-step transitions (reward [B, K], one shared discount;
    c_k = `reward_scales`, 1 each by default) with the same sampled next actions' key:
    sum_k L_c(k) (`policy_evaluation.make_critic_loss`).
    Metrics: q_mean (the first objective's) and q_mean/<name> for each."""
    single = policy_evaluation.make_critic_loss(networks, config)
    reward_column = Transition(None, None, 1, None, None)
    per_critic = jax.vmap(single, in_axes=(0, None, 0, reward_column, None))
    scales = jnp.asarray(reward_scales or (1.0,) * len(names), jnp.float32)

    def critic_loss(critic_params, target_policy_params, target_critic_params, batch, key):
        batch = batch._replace(reward=batch.reward * scales)
        losses, metrics = per_critic(
            critic_params, target_policy_params, target_critic_params, batch, key
        )
        out = {"q_mean": metrics["q_mean"][0]}
        out.update({f"q_mean/{name}": metrics["q_mean"][k] for k, name in enumerate(names)})
        out.update({f"critic_loss/{name}": losses[k] for k, name in enumerate(names)})
        return jnp.sum(losses), out

    return critic_loss


def make_online_losses(networks: DiMENetworks, config, teacher=None):
    """(critic_loss, policy_loss) of online DiME with `config.objectives` reward objectives:

    E-step: `improve(Q [K, N, B], eta [K], eps_k, alpha, combination)`, plus MPO's action
            penalty expert over the same samples (weight 1, so K = 1 is exactly MPO)
    M-step: MPO's decoupled trust-region M-step on the combined weights
    """
    names = config.reward_objectives()
    critic_loss = make_stacked_critic_loss(
        networks, config, names, config.objective_reward_scales()
    )
    alphas = config.mixture_weights()
    preferences = jnp.asarray([alphas[name] for name in names], jnp.float32)
    # The sampled actions' experts carry the reward objectives' share of the mixture (all of it
    # without a teacher); the action penalty gets the same share (1 alone: exactly MPO).
    sampled_share = float(sum(alphas[name] for name in names))
    epsilons = jnp.asarray(config.objective_epsilons(), jnp.float32)
    learned = config.temperature_mode == "learned"

    def improvement_loss(
        dual_params, online_mean, online_std, target_mean, target_std, actions, q, batch, key
    ):
        if learned:
            temperature = mpo_losses.dual_value(dual_params.log_temperature)
        else:
            temperature = jnp.full((len(names),), config.fixed_temperature, jnp.float32)
        improved = improve(q, temperature, epsilons, preferences, config.combination, learned)
        weights, loss_temperature = improved.weights, improved.loss_temperature
        if config.combination == "linear":  # softmax over the scalarised Q: mass 1
            weights = sampled_share * weights
        metrics = {}
        if config.action_penalization:
            penalty_temperature = mpo_losses.dual_value(dual_params.log_penalty_temperature)
            penalty = mpo_losses.e_step(
                mpo_losses.action_penalty_q(actions), penalty_temperature, config.epsilon_penalty
            )
            weights = weights + sampled_share * penalty.weights[0]
            loss_temperature = loss_temperature + penalty.loss_temperature
            metrics.update(
                penalty_temperature=penalty_temperature[0], penalty_kl_q_rel=penalty.kl_q_rel[0]
            )
        expert_actions = actions
        if teacher is not None:
            teacher_actions, teacher_weights = teacher_weighting(
                teacher(batch.observation, key), alphas["teacher"]
            )
            expert_actions = jnp.concatenate([actions, teacher_actions], axis=0)
            weights = jnp.concatenate([weights, teacher_weights], axis=0)
        loss_m, m_metrics = mpo_losses.m_step(
            online_mean,
            online_std,
            target_mean,
            target_std,
            expert_actions,
            weights,
            mpo_losses.dual_value(dual_params.log_alpha_mean),
            mpo_losses.dual_value(dual_params.log_alpha_stddev),
            epsilon_mean=config.epsilon_mean,
            epsilon_stddev=config.epsilon_stddev,
            per_dim_constraining=config.per_dim_constraining,
        )
        metrics.update(m_metrics)
        kl_names = names if config.combination != "linear" else ("linear",)
        for k, name in enumerate(kl_names):
            metrics[f"kl_q_rel/{name}"] = improved.kl_q_rel[k]
            metrics[f"temperature/{name}"] = temperature[k]
        metrics["kl_q_rel"] = improved.kl_q_rel[0]
        metrics["temperature"] = temperature[0]
        for k, name in enumerate(names):
            metrics[f"sampled_q_mean/{name}"] = jnp.mean(q[k])
        metrics["loss_temperature"] = jax.lax.stop_gradient(loss_temperature)
        return loss_m + loss_temperature, metrics

    policy_loss = mpo_family.make_policy_loss(
        networks, config.num_samples, improvement_loss, stacked_critics=True
    )
    return critic_loss, policy_loss


class DiMELearner(ConfiguredOnlineLearner):
    """Online DiME: [K, B, ...] batches of n-step transitions with vector rewards, K SGD steps
    per call (`learners.ConfiguredOnlineLearner`, with the divergence guard)."""

    @staticmethod
    def make_update(networks, config, env_spec, key, value_bounds=None):
        del value_bounds  # the reward range of a vector reward is per objective: not reported
        losses = make_online_losses(networks, config, teacher=make_teacher(config, env_spec))
        return mpo_family.make_update(
            networks, config, env_spec, key, losses, len(config.reward_objectives())
        )
