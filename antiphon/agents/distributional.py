"""Distributional critic mechanics shared by every agent: C51 projection/loss, MoG head/loss.

Pure functions of arrays; the TD losses return one loss per example ([B]).

Categorical (C51, Bellemare et al. 2017), discount = gamma^n * prod d (see Transition):
    target atoms      z'_l = r + discount * z_l
    target probs      p'   = Proj_z(softmax(target_logits) at z')      (L2 projection)
    loss              L    = -sum_l sg(p'_l) * log softmax(online_logits)_l

Mixture of Gaussians (Shahriari et al. 2022, sample-based cross-entropy):
    Z(s,a) = sum_k w_k N(mu_k, sigma_k^2),  w = softmax(logits)
    y_j    = r + discount * z_j,  z_j ~ Z_target(s', a'),  j = 1..M       (stop-gradient)
    loss   = -(1/M) sum_j log p_{Z_online(s,a)}(y_j)

A stochastic target policy (MPO) bootstraps from N actions a'_i ~ pi_target(s'): the scalar
target averages Q over them, the C51 target is the mixture of their projected distributions, the
MoG target pools M samples from each action's mixture (`expected_*`, `pooled_mixture_samples`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import rlax

# --------------------------------------------------------------------------------------------
# Categorical (C51)


def categorical_l2_project(
    target_atoms: jax.Array, target_probs: jax.Array, support: jax.Array
) -> jax.Array:
    """Project a batch of categorical distributions on `target_atoms` [B, L] onto `support` [L'].

    The L2 (Cramér) projection of Bellemare et al.: each atom's mass is split between its two
    neighbouring support points in proportion to proximity; atoms outside the support are
    clipped to its ends. Returns probabilities [B, L'].
    """
    return jax.vmap(rlax.categorical_l2_project, in_axes=(0, 0, None))(
        target_atoms, target_probs, support
    )


def categorical_target(
    support: jax.Array, reward: jax.Array, discount: jax.Array, target_probs: jax.Array
) -> jax.Array:
    """The n-step C51 target: `target_probs` [B, L] on the atoms r + discount * z, projected
    back onto `support` [L] (stop-gradient). reward and discount [B]. Returns [B, L]."""
    target_atoms = reward[:, None] + discount[:, None] * support[None, :]
    return jax.lax.stop_gradient(categorical_l2_project(target_atoms, target_probs, support))


def categorical_cross_entropy(online_logits: jax.Array, target_probs: jax.Array) -> jax.Array:
    """-sum_l target_l log softmax(online_logits)_l: [B, L], [B, L] -> [B]."""
    return -jnp.sum(target_probs * jax.nn.log_softmax(online_logits), axis=-1)


def categorical_td_loss(
    online_logits: jax.Array,
    support: jax.Array,
    reward: jax.Array,
    discount: jax.Array,
    target_logits: jax.Array,
) -> jax.Array:
    """Per-example C51 cross-entropy between the projected n-step target and the online critic.

    Shapes: logits [B, L], support [L], reward and discount [B]. Returns [B].
    """
    projected = categorical_target(support, reward, discount, jax.nn.softmax(target_logits))
    return categorical_cross_entropy(online_logits, projected)


def categorical_mean(logits: jax.Array, support: jax.Array) -> jax.Array:
    """E[Z] of categorical critics: [..., L] -> [...]."""
    return jnp.sum(jax.nn.softmax(logits) * support, axis=-1)


# --------------------------------------------------------------------------------------------
# Mixture of Gaussians


class MixtureParams(NamedTuple):
    """A batch of 1-D Gaussian mixtures; each field [..., K]. Scales are already positive."""

    logits: jax.Array
    locs: jax.Array
    scales: jax.Array


def mixture_mean(mixture: MixtureParams) -> jax.Array:
    """E[Z] = sum_k w_k mu_k (the scalar Q used for policy improvement): [..., K] -> [...]."""
    return jnp.sum(jax.nn.softmax(mixture.logits) * mixture.locs, axis=-1)


def mixture_log_prob(mixture: MixtureParams, values: jax.Array) -> jax.Array:
    """log p(values) under each mixture: `values` [S, ...] against mixtures [...] -> [S, ...].

    log p(y) = logsumexp_k( log w_k + log N(y; mu_k, sigma_k) ).
    """
    y = values[..., None]
    log_weights = jax.nn.log_softmax(mixture.logits)
    z = (y - mixture.locs) / mixture.scales
    log_normal = -0.5 * z**2 - jnp.log(mixture.scales) - 0.5 * jnp.log(2.0 * jnp.pi)
    return jax.nn.logsumexp(log_weights + log_normal, axis=-1)


def mixture_sample(mixture: MixtureParams, key: jax.Array, num_samples: int) -> jax.Array:
    """Draw `num_samples` returns from each mixture: -> [num_samples, ...]."""
    component_key, normal_key = jax.random.split(key)
    batch_shape = mixture.logits.shape[:-1]
    component = jax.random.categorical(
        component_key, mixture.logits, shape=(num_samples, *batch_shape)
    )
    loc = jnp.take_along_axis(
        jnp.broadcast_to(mixture.locs, (num_samples, *mixture.locs.shape)), component[..., None], -1
    )[..., 0]
    scale = jnp.take_along_axis(
        jnp.broadcast_to(mixture.scales, (num_samples, *mixture.scales.shape)),
        component[..., None],
        -1,
    )[..., 0]
    return loc + scale * jax.random.normal(normal_key, loc.shape)


def mog_td_loss_from_samples(
    online: MixtureParams, reward: jax.Array, discount: jax.Array, target_samples: jax.Array
) -> jax.Array:
    """Per-example sample-based cross-entropy: -(1/M) sum_j log p_online(r + discount * z_j).

    `target_samples` [M, B] are returns drawn from the target critic at the bootstrap
    state-action; reward and discount [B]. Returns [B].
    """
    targets = jax.lax.stop_gradient(reward[None, :] + discount[None, :] * target_samples)
    return -jnp.mean(mixture_log_prob(online, targets), axis=0)


def mog_td_loss(
    online: MixtureParams,
    reward: jax.Array,
    discount: jax.Array,
    target: MixtureParams,
    key: jax.Array,
    num_samples: int,
) -> jax.Array:
    """Per-example MoG TD loss with `num_samples` (M) draws from the target mixture. Returns [B]."""
    samples = mixture_sample(
        jax.tree_util.tree_map(jax.lax.stop_gradient, target), key, num_samples
    )
    return mog_td_loss_from_samples(online, reward, discount, samples)


# --------------------------------------------------------------------------------------------
# Targets of a stochastic policy: N bootstrap actions a'_i ~ pi_target(s') (MPO's evaluation)


def expected_scalar_target(reward: jax.Array, discount: jax.Array, next_q: jax.Array) -> jax.Array:
    """y = r + discount * (1/N) sum_i Q_target(s', a'_i): next_q [N, B] -> [B] (stop-gradient)."""
    return jax.lax.stop_gradient(reward + discount * jnp.mean(next_q, axis=0))


def expected_categorical_target(
    support: jax.Array, reward: jax.Array, discount: jax.Array, next_logits: jax.Array
) -> jax.Array:
    """The mixture over the N bootstrap actions of the projected C51 targets: next_logits
    [N, B, L] -> [B, L].

    (1/N) sum_i Proj_z[r + discount z ; softmax(next_logits_i)]. Every action's target sits on
    the same atoms r + discount z and the L2 projection is linear in the probabilities, so this
    is the projection of the averaged probabilities, computed once.
    """
    mean_probs = jnp.mean(jax.nn.softmax(next_logits), axis=0)
    return categorical_target(support, reward, discount, mean_probs)


def pooled_mixture_samples(next_mixture: MixtureParams, key: jax.Array, num_samples: int):
    """`num_samples` (M) returns drawn from each of the N bootstrap actions' target mixtures
    (fields [N, B, K]), pooled: -> [M * N, B] (stop-gradient). The MoG target of a stochastic
    policy: `mog_td_loss_from_samples(online, r, discount, pooled)` fits the online mixture to
    the N * M samples r + discount * z."""
    mixture = jax.tree_util.tree_map(jax.lax.stop_gradient, next_mixture)
    samples = mixture_sample(mixture, key, num_samples)  # [M, N, B]
    return samples.reshape((-1, samples.shape[-1]))
