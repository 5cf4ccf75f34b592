"""MPO policy improvement as pure functions: E-step (temperature duals, K objectives), action
penalty (MO-MPO's extra objective), M-step with decoupled mean / covariance trust regions.

ALGORITHMS.md §6.1 (MPO) and §3 (DiME). Reference read: acme `jax/losses/mpo.py`,
`tf/losses/mompo.py`. Shapes: K objectives, N actions sampled from the old (target) policy per
state, B states, A action dimensions.

E-step, objective k (non-parametric improvement, q_k(a|s) ∝ pi_old(a|s) exp(Q_k(s,a)/eta_k)):
    w_k[i, b]  = softmax_i( Q_k[i, b] / eta_k )                                  (stop-gradient)
    L_eta_k    = eta_k * ( eps_k + mean_b[ logsumexp_i(Q_k[i, b] / eta_k) - log N ] )
    KL_k       = mean_b sum_i w_k[i, b] log(N w_k[i, b])          ≈ E_s KL(q_k || pi_old)
  L_eta_k is the sample estimate of the convex dual g_k(eta) = eta eps_k + eta E_s log E_pi_old
  exp(Q_k/eta); its derivative is dg_k/deta = eps_k - KL_k, so at the minimiser the trust region
  KL_k = eps_k is active. Multiplying Q_k by c > 0 multiplies the minimising eta_k by c and
  leaves w_k unchanged (scale invariance, what DiME relies on).

Action penalty (MO-MPO special case, on by default in acme): one extra objective whose "Q" is
    Q_pen[i, b] = -|| a[i, b] - clip(a[i, b], -1, 1) ||_2
with its own temperature and eps_penalty = 1e-3; its weights join the task objectives' weights.

M-step (diagonal Gaussian policy; online (mu, sigma), old/target (mu_old, sigma_old) [B, A]):
    pi_mu    = N(mu, sigma_old)        (online mean, old std)
    pi_sigma = N(mu_old, sigma)        (old mean, online std)
    L_pi     = -mean_b sum_i w[i, b] [ log pi_mu(a[i, b]) + log pi_sigma(a[i, b]) ]
    KL_mu    = mean_b KL(pi_old || pi_mu)    = mean_b sum_d (mu_d - mu_old_d)^2 / (2 sigma_old_d^2)
    KL_sigma = mean_b KL(pi_old || pi_sigma) = mean_b sum_d [ log(sigma_d / sigma_old_d)
                                                     + sigma_old_d^2 / (2 sigma_d^2) - 1/2 ]
    L        = L_pi + sum sg(alpha_mu) KL_mu + sum sg(alpha_sigma) KL_sigma          (policy)
             + sum alpha_mu (eps_mu - sg(KL_mu))
             + sum alpha_sigma (eps_sigma - sg(KL_sigma))                             (duals)
  With per-dimension constraining (acme's default) KL_mu, KL_sigma, alpha_mu, alpha_sigma are
  [A] vectors (the "sum_d" moves outside, one trust region per action dimension); otherwise the
  KLs are summed over dimensions and each alpha is a single number.

Dual variables are positive through a softplus: x = softplus(log_x) + 1e-8, and after each
optimiser step their raw values are clipped from below at -18 (`clip_dual_params`).

Gradients: every loss here is one scalar whose gradient w.r.t. the policy's (mu, sigma) comes
only from L_pi and the alpha-weighted KLs, and w.r.t. the dual variables only from the dual
losses (stop-gradients separate them), so a learner can take one `jax.grad` of `mpo_loss` and
hand the two halves to two optimisers, as acme does.

Weights across objectives (`combine`): the M-step's cross-entropy is linear in the weights, so
    sum_k c_k CE(w_k) = CE(sum_k c_k w_k)
and combining the weights first is exact. `combine="sum"` (c_k = 1) is acme's MPO (task +
penalty) and MO-MPO (every expert equally, preferences only through eps_k); a [K] array of
coefficients is DiME's distillation of a mixture of experts with preference weights alpha_k
(caller normalises them to sum 1). DiME's behaviour-cloning expert uses dataset actions, not
the sampled ones: it calls `decoupled_cross_entropy` with actions [1, B, A] and weights
ones [1, B] and adds that term with its own coefficient; trust-region terms are shared.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

# acme `jax/losses/mpo.py` and `agents/jax/mpo/types.py` (GaussianPolicyLossConfig).
FLOAT_EPSILON = 1e-8
MIN_LOG_DUAL = -18.0
DEFAULT_EPSILON = 0.1
DEFAULT_EPSILON_MEAN = 2.5e-3
DEFAULT_EPSILON_STDDEV = 1e-6
DEFAULT_EPSILON_PENALTY = 1e-3
INIT_LOG_TEMPERATURE = 10.0
INIT_LOG_ALPHA_MEAN = 10.0
INIT_LOG_ALPHA_STDDEV = 1000.0

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

Combine = str | Sequence[float] | jax.Array

# --------------------------------------------------------------------------------------------
# Dual variables


class DualParams(NamedTuple):
    """Raw (pre-softplus) dual variables; a pytree for optax.

    log_temperature [K]: one temperature per task objective.
    log_alpha_mean, log_alpha_stddev [A] (per-dimension constraining) or [1].
    log_penalty_temperature [1], or None without action penalisation.
    """

    log_temperature: jax.Array
    log_alpha_mean: jax.Array
    log_alpha_stddev: jax.Array
    log_penalty_temperature: jax.Array | None = None


def dual_value(log_value: jax.Array) -> jax.Array:
    """Positive dual variable from its raw parameter: softplus(log_value) + 1e-8."""
    return jax.nn.softplus(log_value) + FLOAT_EPSILON


def init_dual_params(
    action_dim: int,
    num_objectives: int = 1,
    per_dim_constraining: bool = True,
    action_penalization: bool = True,
    init_log_temperature: float = INIT_LOG_TEMPERATURE,
    init_log_alpha_mean: float = INIT_LOG_ALPHA_MEAN,
    init_log_alpha_stddev: float = INIT_LOG_ALPHA_STDDEV,
    init_log_penalty_temperature: float | None = None,
    dtype: jnp.dtype = jnp.float32,
) -> DualParams:
    """acme's initial duals: eta = alpha_mu ≈ softplus(10) ≈ 10, alpha_sigma ≈ 1000.

    Temperatures [num_objectives]; alphas [action_dim] if `per_dim_constraining` else [1];
    the penalty temperature [1] starts at `init_log_temperature` unless given.
    """
    if action_dim < 1 or num_objectives < 1:
        raise ValueError(
            f"need action_dim >= 1 and num_objectives >= 1, got {action_dim}, {num_objectives}"
        )
    alpha_shape = (action_dim,) if per_dim_constraining else (1,)
    if init_log_penalty_temperature is None:
        init_log_penalty_temperature = init_log_temperature
    return DualParams(
        log_temperature=jnp.full((num_objectives,), init_log_temperature, dtype),
        log_alpha_mean=jnp.full(alpha_shape, init_log_alpha_mean, dtype),
        log_alpha_stddev=jnp.full(alpha_shape, init_log_alpha_stddev, dtype),
        log_penalty_temperature=(
            jnp.full((1,), init_log_penalty_temperature, dtype) if action_penalization else None
        ),
    )


def clip_dual_params(params: DualParams, min_log_value: float = MIN_LOG_DUAL) -> DualParams:
    """max(log_x, -18) for every raw dual (acme clips after each dual optimiser step).

    Unlike acme's `clip_mpo_params`, the penalty temperature is clipped whether or not the
    constraints are per-dimension (acme drops it from the result when they are not).
    """
    return jax.tree.map(lambda x: jnp.maximum(x, min_log_value), params)


# --------------------------------------------------------------------------------------------
# E-step


def _as_objective_vector(value: float | Sequence[float] | jax.Array, k: int, name: str):
    value = jnp.asarray(value, dtype=jnp.float32) if not isinstance(value, jax.Array) else value
    if value.ndim == 0:
        return jnp.broadcast_to(value, (k,))
    if value.shape != (k,):
        raise ValueError(f"{name} must be a scalar or have shape [{k}], got {value.shape}")
    return value


def temperature_loss(
    q_values: jax.Array,
    temperature: jax.Array,
    epsilon: float | Sequence[float] | jax.Array,
) -> jax.Array:
    """Sample dual of each objective's E-step, [K]:

        L_k = eta_k * ( eps_k + mean_b[ logsumexp_i(sg(Q_k[i, b]) / eta_k) - log N ] )

    q_values [K, N, B]; temperature [K] (positive values, not raw); epsilon scalar or [K].
    dL_k/deta_k = eps_k - KL(q_k || pi_old) (sample estimate): a gradient step raises eta_k when
    the improved policy strays too far, lowers it otherwise. No gradient reaches Q.
    """
    if q_values.ndim != 3:
        raise ValueError(f"q_values must be [K, N, B], got shape {q_values.shape}")
    k, n, _ = q_values.shape
    temperature = _as_objective_vector(temperature, k, "temperature")
    epsilon = _as_objective_vector(epsilon, k, "epsilon")
    tempered = jax.lax.stop_gradient(q_values) / temperature[:, None, None]
    log_mean_exp = jax.scipy.special.logsumexp(tempered, axis=1) - math.log(n)  # [K, B]
    return temperature * (epsilon + jnp.mean(log_mean_exp, axis=-1))


def nonparametric_kl(weights: jax.Array) -> jax.Array:
    """Per-state KL(q || pi_old) from weights [..., N, B]: sum_i w_i log(N w_i) -> [..., B].

    q puts mass w_i on the i-th of N samples of pi_old, each of which pi_old weighs 1/N. Uses
    xlogy, so w_i = 0 contributes exactly 0 (acme adds 1e-8 inside the log instead).
    """
    n = weights.shape[-2]
    return jnp.sum(jax.scipy.special.xlogy(weights, n * weights), axis=-2)


class EStepOutput(NamedTuple):
    """weights [K, N, B] (sum 1 over N, stop-gradient); loss_temperature: sum_k L_k (scalar);
    loss_temperature_per_objective [K]; kl_q [K]: mean_b KL(q_k || pi_old); kl_q_rel [K]:
    kl_q / eps_k (≈ 1 when the temperature tracks its constraint)."""

    weights: jax.Array
    loss_temperature: jax.Array
    loss_temperature_per_objective: jax.Array
    kl_q: jax.Array
    kl_q_rel: jax.Array


def e_step(
    q_values: jax.Array,
    temperature: jax.Array,
    epsilon: float | Sequence[float] | jax.Array = DEFAULT_EPSILON,
) -> EStepOutput:
    """E-step for K objectives at once (MPO: K = 1; MO-MPO / DiME: one per objective).

        w_k[i, b] = softmax_i( sg(Q_k[i, b]) / eta_k ),     loss = sum_k L_k (`temperature_loss`)

    q_values [K, N, B] (stop-gradiented here); temperature [K] positive (use `dual_value` on the
    raw parameters so the gradient reaches them); epsilon scalar or [K]. Objectives interact
    nowhere: each eta_k sees only its own term.
    """
    if q_values.ndim != 3:
        raise ValueError(f"q_values must be [K, N, B], got shape {q_values.shape}")
    k = q_values.shape[0]
    temperature = _as_objective_vector(temperature, k, "temperature")
    eps = _as_objective_vector(epsilon, k, "epsilon")
    losses = temperature_loss(q_values, temperature, eps)
    tempered = jax.lax.stop_gradient(q_values) / jax.lax.stop_gradient(temperature)[:, None, None]
    weights = jax.lax.stop_gradient(jax.nn.softmax(tempered, axis=1))
    kl_q = jnp.mean(nonparametric_kl(weights), axis=-1)
    return EStepOutput(
        weights=weights,
        loss_temperature=jnp.sum(losses),
        loss_temperature_per_objective=losses,
        kl_q=kl_q,
        kl_q_rel=kl_q / eps,
    )


def action_penalty_q(actions: jax.Array, low: float = -1.0, high: float = 1.0) -> jax.Array:
    """MO-MPO's out-of-bounds cost as the "Q" of one extra objective: [N, B, A] -> [1, N, B].

        Q_pen[i, b] = -|| a[i, b] - clip(a[i, b], low, high) ||_2

    Zero inside the box, minus the Euclidean length of the excess outside. Concatenate it after
    the K task objectives' Q (objective K + 1), with its own temperature and eps_penalty.
    Stop-gradient (its norm has no gradient at 0, and Q never carries one here).
    """
    actions = jax.lax.stop_gradient(actions)
    excess = actions - jnp.clip(actions, low, high)
    squared = jnp.sum(jnp.square(excess), axis=-1)
    safe = jnp.where(squared > 0.0, squared, 1.0)
    norm = jnp.where(squared > 0.0, jnp.sqrt(safe), 0.0)
    return -norm[None]


# --------------------------------------------------------------------------------------------
# Diagonal Gaussians


def gaussian_log_prob(x: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """log N(x; mean, diag(std^2)) summed over the last axis (broadcasting):

    sum_d [ -(x_d - mean_d)^2 / (2 std_d^2) - log std_d - log(2 pi) / 2 ].
    """
    z = (x - mean) / std
    return jnp.sum(-0.5 * jnp.square(z) - jnp.log(std) - _HALF_LOG_2PI, axis=-1)


def gaussian_kl(
    mean_p: jax.Array, std_p: jax.Array, mean_q: jax.Array, std_q: jax.Array
) -> jax.Array:
    """Per-dimension KL(N(mean_p, std_p^2) || N(mean_q, std_q^2)), same shape as the inputs:

    log(std_q / std_p) + (std_p^2 + (mean_p - mean_q)^2) / (2 std_q^2) - 1/2.
    Sum over the last axis for the KL of the diagonal Gaussians.
    """
    var_ratio = jnp.square(std_p / std_q)
    mahalanobis = jnp.square((mean_p - mean_q) / std_q)
    return 0.5 * (var_ratio + mahalanobis - 1.0) - 0.5 * jnp.log(var_ratio)


def decoupled_kl(
    online_mean: jax.Array,
    online_std: jax.Array,
    target_mean: jax.Array,
    target_std: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Per-state, per-dimension (KL_mu, KL_sigma), each [B, A] (target = the old policy):

        KL_mu    = KL(N(mu_old, s_old) || N(mu, s_old))    = (mu - mu_old)^2 / (2 s_old^2)
        KL_sigma = KL(N(mu_old, s_old) || N(mu_old, s))    = log(s / s_old) + s_old^2/(2 s^2) - 1/2

    KL_mu depends on the mean change only (in units of the old std), KL_sigma on the std ratio
    only. The old policy is stop-gradiented.
    """
    target_mean = jax.lax.stop_gradient(target_mean)
    target_std = jax.lax.stop_gradient(target_std)
    kl_mean = gaussian_kl(target_mean, target_std, online_mean, target_std)
    kl_std = gaussian_kl(target_mean, target_std, target_mean, online_std)
    return kl_mean, kl_std


def decoupled_cross_entropy(
    online_mean: jax.Array,
    online_std: jax.Array,
    target_mean: jax.Array,
    target_std: jax.Array,
    actions: jax.Array,
    weights: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Weighted negative log-likelihoods of the decoupled policies (loss_mean, loss_stddev):

        loss_mean   = -mean_b sum_i w[i, b] log N(a[i, b]; mu[b], s_old[b])
        loss_stddev = -mean_b sum_i w[i, b] log N(a[i, b]; mu_old[b], s[b])

    means and stds [B, A], actions [N, B, A], weights [N, B] (actions, weights and the old
    policy stop-gradiented). The first trains only the mean, the second only the std.
    """
    actions = jax.lax.stop_gradient(actions)
    weights = jax.lax.stop_gradient(weights)
    target_mean = jax.lax.stop_gradient(target_mean)
    target_std = jax.lax.stop_gradient(target_std)
    log_prob_mean = gaussian_log_prob(actions, online_mean, target_std)  # [N, B]
    log_prob_std = gaussian_log_prob(actions, target_mean, online_std)
    loss_mean = -jnp.mean(jnp.sum(weights * log_prob_mean, axis=0))
    loss_std = -jnp.mean(jnp.sum(weights * log_prob_std, axis=0))
    return loss_mean, loss_std


def kl_penalty_and_dual_loss(
    kl: jax.Array, alpha: jax.Array, epsilon: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Trust-region terms from per-state KLs [B, ...] and a positive multiplier alpha [...]:

        mean_kl     = mean_b kl
        loss_kl     = sum sg(alpha) * mean_kl                 (the policy's penalty)
        loss_alpha  = sum alpha * (eps - sg(mean_kl))         (the multiplier's dual loss)

    d loss_alpha / d alpha = eps - mean_kl: gradient descent raises alpha while the constraint is
    violated (KL > eps) and lowers it otherwise. Returns (loss_kl, loss_alpha, mean_kl).
    """
    mean_kl = jnp.mean(kl, axis=0)
    loss_kl = jnp.sum(jax.lax.stop_gradient(alpha) * mean_kl)
    loss_alpha = jnp.sum(alpha * (epsilon - jax.lax.stop_gradient(mean_kl)))
    return loss_kl, loss_alpha, mean_kl


# --------------------------------------------------------------------------------------------
# M-step


def combine_weights(weights: jax.Array, combine: Combine = "sum") -> jax.Array:
    """Per-objective weights [K, N, B] -> one weighting [N, B]: sum_k c_k w_k.

    "sum": c_k = 1 (acme MPO's task + penalty, MO-MPO's equal experts). A [K] array: the
    coefficients themselves (DiME's preference weights alpha_k; not renormalised here).
    """
    if weights.ndim != 3:
        raise ValueError(f"weights must be [K, N, B] to combine, got shape {weights.shape}")
    if isinstance(combine, str):
        if combine != "sum":
            raise ValueError(f'unknown combine {combine!r} ("sum" or a [K] array)')
        return jnp.sum(weights, axis=0)
    coefficients = _as_objective_vector(combine, weights.shape[0], "combine")
    return jnp.einsum("k,knb->nb", coefficients, weights)


def _check_alpha(alpha: jax.Array, action_dim: int, per_dim: bool, name: str) -> jax.Array:
    alpha = jnp.asarray(alpha)
    if per_dim and alpha.shape != (action_dim,):
        raise ValueError(
            f"per-dimension constraining needs {name} of shape [{action_dim}], got {alpha.shape}"
        )
    if not per_dim and alpha.size != 1:
        raise ValueError(f"a single trust region needs one {name}, got shape {alpha.shape}")
    return alpha if per_dim else jnp.reshape(alpha, ())


def m_step(
    online_mean: jax.Array,
    online_std: jax.Array,
    target_mean: jax.Array,
    target_std: jax.Array,
    actions: jax.Array,
    weights: jax.Array,
    alpha_mean: jax.Array,
    alpha_stddev: jax.Array,
    *,
    epsilon_mean: float = DEFAULT_EPSILON_MEAN,
    epsilon_stddev: float = DEFAULT_EPSILON_STDDEV,
    per_dim_constraining: bool = True,
    combine: Combine = "sum",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Decoupled M-step loss (module docstring): L_pi + alpha-weighted KLs + alpha dual losses.

    online/target mean, std [B, A]; actions [N, B, A] sampled from the target policy; weights
    [N, B] (already combined) or [K, N, B] (combined here with `combine`, see `combine_weights`);
    alpha_mean, alpha_stddev: positive multipliers (`dual_value` of the raw duals), [A] with
    `per_dim_constraining` (one trust region per action dimension, acme's default), else one
    number (KLs summed over dimensions). eps_mu, eps_sigma: acme JAX defaults 2.5e-3, 1e-6
    (acme's README suggests dividing eps_mu by A when per-dimension; not done by default).

    Returns (loss, metrics) with scalar metrics: loss_policy (L_pi), loss_policy_mean,
    loss_policy_stddev, loss_kl_penalty, loss_alpha, kl_mean_rel / kl_stddev_rel (mean_b KL / eps,
    averaged over dimensions when per-dimension), kl_mean_rel_max / kl_stddev_rel_max (the worst
    dimension), alpha_mean, alpha_stddev (averaged over dimensions), pi_stddev_min / _max / _cond
    (batch mean of the online std's min, max and max/min over dimensions).
    """
    action_dim = online_mean.shape[-1]
    if actions.ndim != 3 or actions.shape[1:] != online_mean.shape:
        raise ValueError(
            f"actions must be [N, B, A] with [B, A] = {online_mean.shape}, got {actions.shape}"
        )
    if weights.ndim == 3:
        weights = combine_weights(weights, combine)
    elif not (isinstance(combine, str) and combine == "sum"):
        raise ValueError("combine applies to per-objective weights [K, N, B] only")
    if weights.shape != actions.shape[:2]:
        raise ValueError(f"weights must be [N, B] = {actions.shape[:2]}, got {weights.shape}")
    alpha_mean = _check_alpha(alpha_mean, action_dim, per_dim_constraining, "alpha_mean")
    alpha_stddev = _check_alpha(alpha_stddev, action_dim, per_dim_constraining, "alpha_stddev")

    loss_mean, loss_std = decoupled_cross_entropy(
        online_mean, online_std, target_mean, target_std, actions, weights
    )
    kl_mean, kl_std = decoupled_kl(online_mean, online_std, target_mean, target_std)  # [B, A]
    if not per_dim_constraining:
        kl_mean, kl_std = jnp.sum(kl_mean, axis=-1), jnp.sum(kl_std, axis=-1)  # [B]
    loss_kl_mean, loss_alpha_mean, mean_kl_mean = kl_penalty_and_dual_loss(
        kl_mean, alpha_mean, epsilon_mean
    )
    loss_kl_std, loss_alpha_std, mean_kl_std = kl_penalty_and_dual_loss(
        kl_std, alpha_stddev, epsilon_stddev
    )
    loss_policy = loss_mean + loss_std
    loss_kl_penalty = loss_kl_mean + loss_kl_std
    loss_alpha = loss_alpha_mean + loss_alpha_std
    loss = loss_policy + loss_kl_penalty + loss_alpha

    kl_mean_rel = mean_kl_mean / epsilon_mean
    kl_std_rel = mean_kl_std / epsilon_stddev
    std = jax.lax.stop_gradient(online_std)
    std_min, std_max = jnp.min(std, axis=-1), jnp.max(std, axis=-1)
    metrics = {
        "loss_policy": loss_policy,
        "loss_policy_mean": loss_mean,
        "loss_policy_stddev": loss_std,
        "loss_kl_penalty": loss_kl_penalty,
        "loss_alpha": loss_alpha,
        "kl_mean_rel": jnp.mean(kl_mean_rel),
        "kl_stddev_rel": jnp.mean(kl_std_rel),
        "kl_mean_rel_max": jnp.max(kl_mean_rel),
        "kl_stddev_rel_max": jnp.max(kl_std_rel),
        "alpha_mean": jnp.mean(alpha_mean),
        "alpha_stddev": jnp.mean(alpha_stddev),
        "pi_stddev_min": jnp.mean(std_min),
        "pi_stddev_max": jnp.mean(std_max),
        "pi_stddev_cond": jnp.mean(std_max / std_min),
    }
    metrics = {key: jax.lax.stop_gradient(value) for key, value in metrics.items()}
    return loss, metrics


# --------------------------------------------------------------------------------------------
# Everything together


def mpo_loss(
    dual_params: DualParams,
    online_mean: jax.Array,
    online_std: jax.Array,
    target_mean: jax.Array,
    target_std: jax.Array,
    actions: jax.Array,
    q_values: jax.Array,
    *,
    epsilon: float | Sequence[float] | jax.Array = DEFAULT_EPSILON,
    epsilon_mean: float = DEFAULT_EPSILON_MEAN,
    epsilon_stddev: float = DEFAULT_EPSILON_STDDEV,
    epsilon_penalty: float = DEFAULT_EPSILON_PENALTY,
    per_dim_constraining: bool = True,
    action_penalization: bool = True,
    combine: Combine = "sum",
    objective_names: Sequence[str] | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """One scalar for an MPO learner: E-step (+ action penalty) + M-step + all dual losses.

        loss = L_pi + sg(alpha) KL terms + alpha dual losses + sum_k L_eta_k (+ L_eta_pen)

    dual_params: raw duals (`init_dual_params`), K temperatures; online/target mean, std [B, A];
    actions [N, B, A] sampled from the target policy; q_values [N, B] (one objective, acme's
    layout) or [K, N, B], from the target critic. epsilon: scalar or [K].
    With `action_penalization` the penalty's Q (`action_penalty_q`) is objective K + 1 with its
    own temperature and eps_penalty; its weights are added with coefficient 1 to the task
    weights combined by `combine` ("sum", acme; or [K] coefficients for the task objectives).

    Metrics (scalars): the M-step's (`m_step`); loss (the total); loss_temperature (the task
    objectives' temperature losses, summed) and loss_temperature_total (with the penalty's); per
    task objective: temperature, kl_q_rel (KL(q_k || pi_old) / eps_k), loss_temperature, q_min,
    q_max, q_mean (batch means of min / max / mean over the N samples), named plainly for K = 1
    and with a "/<name>" suffix (default the index) for K > 1; with the penalty:
    penalty_temperature, penalty_kl_q_rel.
    """
    if q_values.ndim == 2:
        q_values = q_values[None]
    k = q_values.shape[0]
    if dual_params.log_temperature.shape != (k,):
        raise ValueError(
            f"{k} objectives need log_temperature of shape [{k}], "
            f"got {dual_params.log_temperature.shape}"
        )
    if action_penalization and dual_params.log_penalty_temperature is None:
        raise ValueError("action_penalization needs dual_params.log_penalty_temperature")
    if objective_names is None:
        objective_names = [str(i) for i in range(k)]
    if len(objective_names) != k:
        raise ValueError(f"{k} objectives but {len(objective_names)} objective_names")

    task = e_step(q_values, dual_value(dual_params.log_temperature), epsilon)
    weights = combine_weights(task.weights, combine)
    loss_temperature = task.loss_temperature
    if action_penalization:
        penalty = e_step(
            action_penalty_q(actions),
            dual_value(dual_params.log_penalty_temperature),
            epsilon_penalty,
        )
        weights = weights + penalty.weights[0]
        loss_temperature = loss_temperature + penalty.loss_temperature

    loss_m, metrics = m_step(
        online_mean,
        online_std,
        target_mean,
        target_std,
        actions,
        weights,
        dual_value(dual_params.log_alpha_mean),
        dual_value(dual_params.log_alpha_stddev),
        epsilon_mean=epsilon_mean,
        epsilon_stddev=epsilon_stddev,
        per_dim_constraining=per_dim_constraining,
    )
    loss = loss_m + loss_temperature

    q = jax.lax.stop_gradient(q_values)
    per_objective = {
        "temperature": dual_value(dual_params.log_temperature),
        "kl_q_rel": task.kl_q_rel,
        "loss_temperature": task.loss_temperature_per_objective,
        "q_min": jnp.mean(jnp.min(q, axis=1), axis=-1),
        "q_max": jnp.mean(jnp.max(q, axis=1), axis=-1),
        "q_mean": jnp.mean(q, axis=(1, 2)),
    }
    for key, values in per_objective.items():
        if k == 1:
            metrics[key] = values[0]
        else:
            for name, value in zip(objective_names, values, strict=True):
                metrics[f"{key}/{name}"] = value
    if k > 1:
        metrics["loss_temperature"] = task.loss_temperature
    if action_penalization:
        metrics["penalty_temperature"] = dual_value(dual_params.log_penalty_temperature)[0]
        metrics["penalty_kl_q_rel"] = penalty.kl_q_rel[0]
    metrics["loss_temperature_total"] = loss_temperature
    metrics["loss"] = loss
    metrics = {key: jax.lax.stop_gradient(value) for key, value in metrics.items()}
    return loss, metrics
