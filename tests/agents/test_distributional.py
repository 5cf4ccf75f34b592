"""C51 projection/loss and MoG log-prob/loss against hand-computed values."""

import math

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from antiphon.agents import distributional as dist
from antiphon.agents.networks import GaussianMixtureHead

SUPPORT = jnp.array([0.0, 1.0, 2.0])
PROBS = jnp.array([0.2, 0.3, 0.5])


@pytest.mark.parametrize(
    "reward, discount, expected",
    [
        # terminal (discount 0): every atom lands on r = 0.5, split evenly between 0 and 1
        (0.5, 0.0, [0.5, 0.5, 0.0]),
        # atoms 0.5, 1.5, 2.5 (the last clipped to 2): 0.2 -> .1/.1, 0.3 -> .15/.15, 0.5 -> 2
        (0.5, 1.0, [0.1, 0.25, 0.65]),
        # everything below the support collapses onto its lowest atom
        (-1.0, 0.5, [1.0, 0.0, 0.0]),
        # identity: no shift, no scaling
        (0.0, 1.0, [0.2, 0.3, 0.5]),
    ],
)
def test_categorical_projection_hand_values(reward, discount, expected):
    atoms = reward + discount * SUPPORT
    projected = dist.categorical_l2_project(atoms[None], PROBS[None], SUPPORT)[0]
    np.testing.assert_allclose(projected, expected, atol=1e-6)
    assert float(jnp.sum(projected)) == pytest.approx(1.0, abs=1e-6)


def test_categorical_td_loss_hand_value():
    target_logits = jnp.log(PROBS)[None]
    online_logits = jnp.array([[0.0, math.log(2.0), 0.0]])  # softmax = [1/4, 1/2, 1/4]
    loss = dist.categorical_td_loss(
        online_logits, SUPPORT, jnp.array([0.5]), jnp.array([1.0]), target_logits
    )
    # target after projection [0.1, 0.25, 0.65] (case above)
    expected = -(0.1 * math.log(0.25) + 0.25 * math.log(0.5) + 0.65 * math.log(0.25))
    np.testing.assert_allclose(loss, [expected], rtol=1e-5)


def test_categorical_loss_does_not_differentiate_the_target():
    target_logits = jnp.zeros((1, 3))
    grad = jax.grad(
        lambda t: dist.categorical_td_loss(
            jnp.zeros((1, 3)), SUPPORT, jnp.array([0.3]), jnp.array([0.9]), t
        ).sum()
    )(target_logits)
    np.testing.assert_array_equal(grad, 0.0)


# Mixture: w = [0.25, 0.75], mu = [0, 2], sigma = [1, 0.5]
MIX = dist.MixtureParams(
    logits=jnp.array([[0.0, math.log(3.0)]]),
    locs=jnp.array([[0.0, 2.0]]),
    scales=jnp.array([[1.0, 0.5]]),
)


def _normal_pdf(y, mu, sigma):
    return math.exp(-0.5 * ((y - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))


def test_mixture_log_prob_and_mean_hand_values():
    for y in (1.0, 2.0, -0.7):
        p = 0.25 * _normal_pdf(y, 0, 1) + 0.75 * _normal_pdf(y, 2, 0.5)
        got = dist.mixture_log_prob(MIX, jnp.array([[y]]))
        np.testing.assert_allclose(got, [[math.log(p)]], rtol=1e-5)
    np.testing.assert_allclose(dist.mixture_mean(MIX), [1.5], rtol=1e-6)


def test_mog_td_loss_from_samples_hand_value():
    # targets y = r + discount * z = 1 + 0.5 * {0, 2} = {1, 2}
    samples = jnp.array([[0.0], [2.0]])
    loss = dist.mog_td_loss_from_samples(MIX, jnp.array([1.0]), jnp.array([0.5]), samples)
    p1 = 0.25 * _normal_pdf(1, 0, 1) + 0.75 * _normal_pdf(1, 2, 0.5)
    p2 = 0.25 * _normal_pdf(2, 0, 1) + 0.75 * _normal_pdf(2, 2, 0.5)
    np.testing.assert_allclose(loss, [-(math.log(p1) + math.log(p2)) / 2], rtol=1e-5)


def test_mog_terminal_transition_targets_only_the_reward():
    # discount 0: the target samples are irrelevant, every target equals the reward
    a = dist.mog_td_loss_from_samples(MIX, jnp.array([1.0]), jnp.array([0.0]), jnp.zeros((4, 1)))
    b = dist.mog_td_loss_from_samples(MIX, jnp.array([1.0]), jnp.array([0.0]), 9 * jnp.ones((4, 1)))
    np.testing.assert_allclose(a, b)


def test_mixture_sample_statistics():
    samples = dist.mixture_sample(MIX, jax.random.PRNGKey(0), 20000)
    assert samples.shape == (20000, 1)
    assert float(jnp.mean(samples)) == pytest.approx(1.5, abs=0.03)
    assert float(jnp.mean(jnp.abs(samples - 2.0) < 0.5 * 3)) > 0.74  # ~75 % near the mu=2 mode


def test_mog_head_initialisation_and_finite_loss():
    head = hk.without_apply_rng(hk.transform(lambda x: GaussianMixtureHead(5, 1e-3, 1e-4)(x)))
    x = jax.random.normal(jax.random.PRNGKey(1), (8, 16))
    params = head.init(jax.random.PRNGKey(2), x)
    mix = head.apply(params, x)
    np.testing.assert_allclose(mix.scales, 1e-3 + 1e-4, rtol=1e-2)  # sigma ~ init_scale
    np.testing.assert_allclose(jax.nn.softmax(mix.logits), 0.2, atol=5e-3)  # ~uniform weights
    loss = dist.mog_td_loss(
        mix, jnp.full((8,), 0.01), jnp.full((8,), 0.99), mix, jax.random.PRNGKey(3), 16
    )
    assert bool(jnp.all(jnp.isfinite(loss)))


def test_mog_loss_recovers_both_modes_of_a_bimodal_return():
    """ALGORITHMS.md §2.6: K >= 2 components fit a bimodal target (returns -1 or +3).

    The head sees varied features (as behind a critic torso); with one constant input the two
    near-identical initial components receive identical gradients and never separate."""
    head = hk.without_apply_rng(hk.transform(lambda x: GaussianMixtureHead(2, 1.0, 1e-4)(x)))
    x = jax.random.normal(jax.random.PRNGKey(5), (256, 8))
    params = head.init(jax.random.PRNGKey(0), x)
    opt = optax.adam(3e-2)
    opt_state = opt.init(params)

    def loss_fn(params, key):
        returns = jnp.where(jax.random.bernoulli(key, 0.5, (256,)), 3.0, -1.0)
        returns = returns + 0.1 * jax.random.normal(jax.random.fold_in(key, 1), (256,))
        # discount 0: the target is exactly the sampled return
        return jnp.mean(
            dist.mog_td_loss_from_samples(
                head.apply(params, x), returns, jnp.zeros(256), jnp.zeros((1, 256))
            )
        )

    @jax.jit
    def step(params, opt_state, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, key)
        updates, opt_state = opt.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    key = jax.random.PRNGKey(1)
    for _ in range(1500):
        key, sub = jax.random.split(key)
        params, opt_state, loss = step(params, opt_state, sub)
    mix = jax.tree_util.tree_map(lambda a: jnp.mean(a, axis=0), head.apply(params, x))
    order = jnp.argsort(mix.locs)
    np.testing.assert_allclose(mix.locs[order], [-1.0, 3.0], atol=0.15)
    np.testing.assert_allclose(jax.nn.softmax(mix.logits)[order], [0.5, 0.5], atol=0.1)
