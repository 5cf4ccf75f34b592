"""MPO E-step / M-step losses against hand-solved cases (antiphon.agents.mpo_losses)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from antiphon.agents import mpo_losses as mpo

# jitted once per shape: eager op-by-op dispatch would dominate the file's run time
E_STEP = jax.jit(mpo.e_step)
M_STEP = jax.jit(
    mpo.m_step, static_argnames=("epsilon_mean", "epsilon_stddev", "per_dim_constraining")
)
MPO_LOSS = jax.jit(
    mpo.mpo_loss,
    static_argnames=(
        "epsilon_mean",
        "epsilon_stddev",
        "epsilon_penalty",
        "per_dim_constraining",
        "action_penalization",
        "objective_names",
    ),
)


# --------------------------------------------------------------------------------------------
# Dual variables


def test_init_dual_params_gives_acme_initial_values():
    params = mpo.init_dual_params(action_dim=3, num_objectives=2)
    assert params.log_temperature.shape == (2,)
    assert params.log_alpha_mean.shape == (3,)
    assert params.log_alpha_stddev.shape == (3,)
    assert params.log_penalty_temperature.shape == (1,)
    # softplus(10) = 10 + log(1 + e^-10) = 10.0000454; softplus(1000) = 1000 (no overflow)
    expected_10 = 10.0 + math.log1p(math.exp(-10.0))
    np.testing.assert_allclose(mpo.dual_value(params.log_temperature), expected_10, rtol=1e-7)
    np.testing.assert_allclose(mpo.dual_value(params.log_alpha_mean), expected_10, rtol=1e-7)
    np.testing.assert_allclose(mpo.dual_value(params.log_alpha_stddev), 1000.0, rtol=1e-7)
    np.testing.assert_allclose(
        mpo.dual_value(params.log_penalty_temperature), expected_10, rtol=1e-7
    )
    # the +1e-8 floor: a very negative raw value still gives a positive dual
    assert float(mpo.dual_value(jnp.float32(-100.0))) == pytest.approx(1e-8, rel=1e-3)

    single = mpo.init_dual_params(
        action_dim=3, per_dim_constraining=False, action_penalization=False
    )
    assert single.log_alpha_mean.shape == (1,) and single.log_alpha_stddev.shape == (1,)
    assert single.log_temperature.shape == (1,)
    assert single.log_penalty_temperature is None


def test_clip_dual_params_clips_every_dual_at_minus_18():
    params = mpo.DualParams(
        log_temperature=jnp.array([-30.0, 2.0]),
        log_alpha_mean=jnp.array([-18.5, -17.0, 5.0]),
        log_alpha_stddev=jnp.array([-1e6, 0.0, 1000.0]),
        log_penalty_temperature=jnp.array([-19.0]),
    )
    clipped = mpo.clip_dual_params(params)
    np.testing.assert_array_equal(clipped.log_temperature, [-18.0, 2.0])
    np.testing.assert_array_equal(clipped.log_alpha_mean, [-18.0, -17.0, 5.0])
    np.testing.assert_array_equal(clipped.log_alpha_stddev, [-18.0, 0.0, 1000.0])
    np.testing.assert_array_equal(clipped.log_penalty_temperature, [-18.0])
    no_penalty = mpo.clip_dual_params(params._replace(log_penalty_temperature=None))
    assert no_penalty.log_penalty_temperature is None


# --------------------------------------------------------------------------------------------
# E-step: the two-action case solved by hand


Q1, Q2, EPS = 1.0, 0.0, 0.1


def _g(eta):
    """Hand dual for N=2, B=1: g(eta) = eta eps + eta log((e^{q1/eta} + e^{q2/eta}) / 2)."""
    return eta * EPS + eta * np.log((np.exp(Q1 / eta) + np.exp(Q2 / eta)) / 2.0)


def _g_prime(eta):
    """g'(eta) = eps + log((e^a + e^b)/2) - (q1 e^a + q2 e^b) / (eta (e^a + e^b)), a = q1/eta."""
    ea, eb = np.exp(Q1 / eta), np.exp(Q2 / eta)
    return EPS + np.log((ea + eb) / 2.0) - (Q1 * ea + Q2 * eb) / (eta * (ea + eb))


def _bisect(fn, lo, hi, iters=200, shape=()):
    """Root of an increasing function on [lo, hi] (bisection in log space, elementwise)."""
    lo, hi = np.full(shape, np.log(lo)), np.full(shape, np.log(hi))
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        below = fn(np.exp(mid)) < 0
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return np.exp(0.5 * (lo + hi))


Q_TWO = jnp.array([[[Q1], [Q2]]])  # [K=1, N=2, B=1]


@pytest.mark.parametrize("eta", [0.2, 0.5, 1.0, 3.0])
def test_temperature_dual_value_and_gradient_two_actions(eta):
    loss_fn = jax.jit(lambda t: E_STEP(Q_TWO, t, EPS).loss_temperature)
    value, grad = jax.value_and_grad(loss_fn)(jnp.array([eta]))
    assert float(value) == pytest.approx(_g(eta), rel=1e-5)
    assert float(grad[0]) == pytest.approx(_g_prime(eta), rel=1e-4, abs=1e-6)
    # and through the softplus parameterisation: dL/dlog_eta = g'(eta) sigmoid(log_eta)
    log_eta = math.log(math.expm1(eta))  # softplus^-1 (ignoring the 1e-8 floor)
    grad_raw = jax.grad(lambda le: loss_fn(mpo.dual_value(le)))(jnp.array([log_eta]))
    sigmoid = 1.0 / (1.0 + math.exp(-log_eta))
    assert float(grad_raw[0]) == pytest.approx(_g_prime(eta) * sigmoid, rel=1e-4, abs=1e-6)


def test_temperature_optimum_puts_kl_on_the_constraint():
    eta_star = float(_bisect(_g_prime, 1e-2, 1e2))
    # g is minimised there: g' changes sign
    assert _g_prime(0.9 * eta_star) < 0 < _g_prime(1.1 * eta_star)
    out = E_STEP(Q_TWO, jnp.array([eta_star]), EPS)
    w1 = 1.0 / (1.0 + math.exp((Q2 - Q1) / eta_star))
    np.testing.assert_allclose(out.weights[0, :, 0], [w1, 1 - w1], rtol=1e-5)
    hand_kl = w1 * math.log(2 * w1) + (1 - w1) * math.log(2 * (1 - w1))
    assert hand_kl == pytest.approx(EPS, abs=1e-9)
    assert float(out.kl_q[0]) == pytest.approx(EPS, abs=1e-4)
    assert float(out.kl_q_rel[0]) == pytest.approx(1.0, abs=1e-3)
    # our gradient vanishes at the hand-solved optimum
    grad = jax.grad(lambda t: E_STEP(Q_TWO, t, EPS).loss_temperature)(jnp.array([eta_star]))
    assert abs(float(grad[0])) < 1e-5


def test_temperature_gradient_sign_follows_the_constraint():
    grad_fn = jax.grad(lambda t: E_STEP(Q_TWO, t, EPS).loss_temperature)
    # too cold (KL > eps): descent raises eta; too hot (KL < eps): descent lowers it
    assert float(E_STEP(Q_TWO, jnp.array([0.05]), EPS).kl_q[0]) > EPS
    assert float(grad_fn(jnp.array([0.05]))[0]) < 0
    assert float(E_STEP(Q_TWO, jnp.array([20.0]), EPS).kl_q[0]) < EPS
    assert float(grad_fn(jnp.array([20.0]))[0]) > 0


# --------------------------------------------------------------------------------------------
# E-step: K objectives


def test_weights_are_a_softmax_over_samples_for_every_objective_and_state():
    q = (
        jax.random.normal(jax.random.PRNGKey(0), (3, 7, 4))
        * jnp.array([1.0, 10.0, 0.1])[:, None, None]
    )
    temperature = jnp.array([0.5, 1.0, 2.0])
    out = E_STEP(q, temperature, jnp.array([0.1, 0.2, 0.3]))
    assert out.weights.shape == (3, 7, 4)
    np.testing.assert_allclose(jnp.sum(out.weights, axis=1), np.ones((3, 4)), atol=1e-6)
    qn = np.asarray(q, np.float64) / np.asarray(temperature)[:, None, None]
    expected = np.exp(qn - qn.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out.weights, expected, rtol=1e-5, atol=1e-7)
    # KL(q_k || uniform over the samples), per objective, by hand
    kl = np.mean(np.sum(expected * np.log(7 * expected), axis=1), axis=-1)
    np.testing.assert_allclose(out.kl_q, kl, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out.kl_q_rel, kl / np.array([0.1, 0.2, 0.3]), rtol=1e-4)
    assert float(out.loss_temperature) == pytest.approx(
        float(jnp.sum(out.loss_temperature_per_objective)), rel=1e-6
    )


def test_e_step_gradient_reaches_only_the_temperatures():
    q = jax.random.normal(jax.random.PRNGKey(1), (2, 5, 3))

    def f(q, t):
        out = E_STEP(q, t, 0.1)
        return out.loss_temperature + jnp.sum(out.weights * jnp.arange(5.0)[None, :, None])

    grad_q, grad_t = jax.grad(f, argnums=(0, 1))(q, jnp.array([0.7, 1.3]))
    np.testing.assert_array_equal(grad_q, np.zeros_like(q))
    assert np.all(np.abs(np.asarray(grad_t)) > 0)
    # each temperature sees only its own objective's term
    q_moved = q.at[1].multiply(3.0)
    grad_t_moved = jax.grad(f, argnums=1)(q_moved, jnp.array([0.7, 1.3]))
    assert float(grad_t_moved[0]) == pytest.approx(float(grad_t[0]), rel=1e-6)
    assert float(grad_t_moved[1]) != pytest.approx(float(grad_t[1]), rel=1e-3)


def test_scale_invariance_at_the_dual_optimum():
    c = 7.5
    q = jax.random.normal(jax.random.PRNGKey(2), (6, 3))  # N=6, B=3
    q_both = jnp.stack([q, c * q])  # objective 0: Q, objective 1: c Q, solved in one call
    grad_fn = jax.jit(jax.grad(lambda t: E_STEP(q_both, t, 0.1).loss_temperature))
    # dg/deta is increasing in eta (g convex): bisect both temperatures at once
    eta = _bisect(
        lambda t: np.asarray(grad_fn(jnp.asarray(t, jnp.float32))), 1e-3, 1e3, 80, shape=(2,)
    )
    eta = jnp.asarray(eta, jnp.float32)
    assert float(eta[1] / eta[0]) == pytest.approx(c, rel=1e-4)
    out = E_STEP(q_both, eta, 0.1)
    np.testing.assert_allclose(out.weights[0], out.weights[1], atol=1e-4)
    np.testing.assert_allclose(out.kl_q, [0.1, 0.1], atol=1e-4)
    # and the weights do depend on the temperature (the comparison above is not vacuous)
    hotter = E_STEP(q_both, eta * 2.0, 0.1)
    assert float(jnp.max(jnp.abs(hotter.weights[0] - out.weights[0]))) > 1e-2


def test_e_step_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="K, N, B"):
        mpo.e_step(jnp.zeros((5, 3)), jnp.ones(1), 0.1)
    with pytest.raises(ValueError, match="epsilon"):
        mpo.e_step(jnp.zeros((2, 5, 3)), jnp.ones(2), jnp.array([0.1, 0.2, 0.3]))


# --------------------------------------------------------------------------------------------
# Action penalty


def test_action_penalty_hand_values():
    actions = jnp.array(
        [
            [[0.5, -0.5], [1.5, 0.0]],
            [[1.0, -1.0], [2.0, -3.0]],
            [[-1.25, 0.0], [0.0, 0.0]],
        ]
    )  # [N=3, B=2, A=2]
    q = mpo.action_penalty_q(actions)
    assert q.shape == (1, 3, 2)
    expected = [
        [0.0, -0.5],  # inside; 0.5 beyond +1
        [0.0, -math.sqrt(1.0**2 + 2.0**2)],  # on the boundary; (1, -2) beyond the box
        [-0.25, 0.0],
    ]
    np.testing.assert_allclose(q[0], expected, rtol=1e-6)
    grad = jax.grad(lambda a: jnp.sum(mpo.action_penalty_q(a)))(actions)
    assert np.all(np.isfinite(np.asarray(grad)))


def test_action_penalty_weights_are_uniform_inside_the_box_and_avoid_outside():
    inside = jnp.full((4, 2, 3), 0.3)
    out = E_STEP(mpo.action_penalty_q(inside), jnp.array([1.0]), 1e-3)
    np.testing.assert_allclose(out.weights, np.full((1, 4, 2), 0.25), rtol=1e-6)
    assert float(out.kl_q[0]) == pytest.approx(0.0, abs=1e-7)
    mixed = inside.at[0].set(3.0)  # sample 0 far outside
    out = E_STEP(mpo.action_penalty_q(mixed), jnp.array([0.5]), 1e-3)
    w_out = 1.0 / (1.0 + 3.0 * math.exp(math.sqrt(3 * 2.0**2) / 0.5))
    np.testing.assert_allclose(out.weights[0, 0], [w_out, w_out], rtol=1e-5)


# --------------------------------------------------------------------------------------------
# Gaussians and the decoupled KLs


def test_gaussian_log_prob_matches_scipy():
    rng = np.random.default_rng(0)
    x, mean = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    std = rng.uniform(0.2, 2.0, size=(5, 3))
    expected = stats.norm.logpdf(x, mean, std).sum(axis=-1)
    np.testing.assert_allclose(mpo.gaussian_log_prob(x, mean, std), expected, rtol=1e-5)


@pytest.mark.parametrize("mp, sp, mq, sq", [(0.0, 1.0, 1.0, 2.0), (-0.5, 0.3, 0.4, 0.9)])
def test_gaussian_kl_matches_numerical_integration(mp, sp, mq, sq):
    def integrand(x):
        return stats.norm.pdf(x, mp, sp) * (
            stats.norm.logpdf(x, mp, sp) - stats.norm.logpdf(x, mq, sq)
        )

    expected, _ = integrate.quad(integrand, -30, 30)
    assert float(mpo.gaussian_kl(mp, sp, mq, sq)) == pytest.approx(expected, rel=1e-5)


# A 2-D case: old N([0, 1], diag([1, 2]^2)), online N([0.5, 0], diag([2, 1]^2)).
OLD_MEAN, OLD_STD = jnp.array([[0.0, 1.0]]), jnp.array([[1.0, 2.0]])
NEW_MEAN, NEW_STD = jnp.array([[0.5, 0.0]]), jnp.array([[2.0, 1.0]])
# KL_mu,d = (mu - mu_old)^2 / (2 s_old^2):  0.25/2 = 0.125,  1/8 = 0.125
KL_MU = [0.125, 0.125]
# KL_sigma,d = log(s/s_old) + s_old^2/(2 s^2) - 1/2:  log 2 + 1/8 - 1/2,  -log 2 + 4/2 - 1/2
KL_SIGMA = [math.log(2.0) - 0.375, 1.5 - math.log(2.0)]


def test_decoupled_kl_hand_values():
    kl_mu, kl_sigma = mpo.decoupled_kl(NEW_MEAN, NEW_STD, OLD_MEAN, OLD_STD)
    np.testing.assert_allclose(kl_mu[0], KL_MU, rtol=1e-6)
    np.testing.assert_allclose(kl_sigma[0], KL_SIGMA, rtol=1e-6)
    # KL_mu ignores the online std, KL_sigma ignores the online mean
    kl_mu_wide, _ = mpo.decoupled_kl(NEW_MEAN, NEW_STD * 5.0, OLD_MEAN, OLD_STD)
    np.testing.assert_allclose(kl_mu_wide, kl_mu, rtol=1e-6)
    _, kl_sigma_moved = mpo.decoupled_kl(NEW_MEAN + 3.0, NEW_STD, OLD_MEAN, OLD_STD)
    np.testing.assert_allclose(kl_sigma_moved, kl_sigma, rtol=1e-6)
    # and each follows its own argument: mean shift 3.5 in old-std units 1 and 1/2;
    # std ratio 10 and 2.5: log r + 1/(2 r^2) - 1/2
    kl_mu_moved, kl_sigma_wide = mpo.decoupled_kl(NEW_MEAN + 3.0, NEW_STD * 5.0, OLD_MEAN, OLD_STD)
    np.testing.assert_allclose(kl_mu_moved[0], [3.5**2 / 2.0, 2.0**2 / 8.0], rtol=1e-6)
    expected = [math.log(r) + 0.5 / r**2 - 0.5 for r in (10.0, 2.5)]
    np.testing.assert_allclose(kl_sigma_wide[0], expected, rtol=1e-6)


@pytest.mark.parametrize("per_dim", [True, False])
def test_m_step_kl_metrics_hand_values(per_dim):
    actions = jnp.zeros((2, 1, 2))
    weights = jnp.full((2, 1), 0.5)
    alpha = jnp.ones(2) if per_dim else jnp.ones(1)
    eps_mu, eps_sigma = 0.01, 0.02
    loss, metrics = M_STEP(
        NEW_MEAN, NEW_STD, OLD_MEAN, OLD_STD, actions, weights, alpha, alpha,
        epsilon_mean=eps_mu, epsilon_stddev=eps_sigma, per_dim_constraining=per_dim,
    )  # fmt: skip
    if per_dim:
        assert float(metrics["kl_mean_rel"]) == pytest.approx(0.125 / eps_mu, rel=1e-5)
        assert float(metrics["kl_mean_rel_max"]) == pytest.approx(0.125 / eps_mu, rel=1e-5)
        assert float(metrics["kl_stddev_rel"]) == pytest.approx(
            np.mean(KL_SIGMA) / eps_sigma, rel=1e-5
        )
        assert float(metrics["kl_stddev_rel_max"]) == pytest.approx(
            max(KL_SIGMA) / eps_sigma, rel=1e-5
        )
    else:
        assert float(metrics["kl_mean_rel"]) == pytest.approx(0.25 / eps_mu, rel=1e-5)
        assert float(metrics["kl_stddev_rel"]) == pytest.approx(sum(KL_SIGMA) / eps_sigma, rel=1e-5)
    # the KL penalty (alpha = 1) is the summed KLs either way
    assert float(metrics["loss_kl_penalty"]) == pytest.approx(0.25 + sum(KL_SIGMA), rel=1e-5)
    # dual losses: sum alpha (eps - KL) over the constrained entries
    n_entries = 2 if per_dim else 1
    expected_alpha = n_entries * (eps_mu + eps_sigma) - (0.25 + sum(KL_SIGMA))
    assert float(metrics["loss_alpha"]) == pytest.approx(expected_alpha, rel=1e-5)


# --------------------------------------------------------------------------------------------
# M-step


def test_m_step_loss_and_mean_gradient_hand_values():
    # B=1, A=1, N=2; online == old = N(0, 1), so both KLs vanish
    mean, std = jnp.zeros((1, 1)), jnp.ones((1, 1))
    actions = jnp.array([[[1.0]], [[-1.0]]])
    weights = jnp.array([[0.75], [0.25]])

    def loss_fn(m, s):
        return M_STEP(
            m, s, mean, std, actions, weights, jnp.array([2.0]), jnp.array([3.0]),
            epsilon_mean=0.1, epsilon_stddev=0.2,
        )  # fmt: skip

    loss, metrics = loss_fn(mean, std)
    log_p = -0.5 - 0.5 * math.log(2 * math.pi)  # log N(+-1; 0, 1)
    assert float(metrics["loss_policy_mean"]) == pytest.approx(-log_p, rel=1e-6)
    assert float(metrics["loss_policy_stddev"]) == pytest.approx(-log_p, rel=1e-6)
    assert float(metrics["loss_kl_penalty"]) == pytest.approx(0.0, abs=1e-7)
    assert float(metrics["loss_alpha"]) == pytest.approx(2 * 0.1 + 3 * 0.2, rel=1e-6)
    assert float(loss) == pytest.approx(-2 * log_p + 0.8, rel=1e-6)
    # d/dmu = -sum_i w_i (a_i - mu) / s_old^2 = -(0.75 - 0.25);
    # d/ds  = -sum_i w_i ((a_i - mu_old)^2 / s^3 - 1 / s) = 0 at s = 1 (unit second moment)
    grad_m, grad_s = jax.grad(lambda m, s: loss_fn(m, s)[0], argnums=(0, 1))(mean, std)
    assert float(grad_m[0, 0]) == pytest.approx(-0.5, rel=1e-6)
    assert float(grad_s[0, 0]) == pytest.approx(0.0, abs=1e-6)
    # the mean's loss has no std gradient and vice versa (decoupling): move only the std
    _, m2 = loss_fn(mean, 2.0 * std)
    assert float(m2["loss_policy_mean"]) == pytest.approx(float(metrics["loss_policy_mean"]))


def _mean_fitting_problem():
    key_a, key_m = jax.random.split(jax.random.PRNGKey(3))
    b, a, n = 4, 2, 16
    old_mean = jax.random.normal(key_m, (b, a)) * 0.1
    old_std = jnp.full((b, a), 0.5)
    actions = old_mean + old_std * jax.random.normal(key_a, (n, b, a))
    weights = jax.nn.softmax(5.0 * actions[..., 0], axis=0)  # favour large first coordinate
    return old_mean, old_std, actions, weights


@pytest.mark.parametrize("alpha_mu", [1e6, 1e-6])
def test_m_step_mean_stays_put_only_when_its_trust_region_is_tight(alpha_mu):
    old_mean, old_std, actions, weights = _mean_fitting_problem()
    alpha = jnp.full((2,), alpha_mu)

    def loss_of_mean(flat_mean):
        mean = flat_mean.reshape(old_mean.shape)
        return M_STEP(mean, old_std, old_mean, old_std, actions, weights, alpha, alpha)[0]

    @jax.jit
    def newton_step(flat_mean):
        # the loss is quadratic in the mean: one step with its own Hessian reaches the minimiser
        grad, hess = jax.grad(loss_of_mean)(flat_mean), jax.hessian(loss_of_mean)(flat_mean)
        return flat_mean - jnp.linalg.solve(hess, grad)

    target = jnp.sum(weights[..., None] * actions, axis=0)  # the weighted maximum-likelihood mean
    assert float(jnp.max(jnp.abs(target - old_mean))) > 0.1  # there is somewhere to go
    # start from the old mean and from a point well outside the trust region
    for start in (old_mean, old_mean + 0.3):
        flat = start.reshape(-1)
        for _ in range(3):
            flat = newton_step(flat)
        mean = flat.reshape(old_mean.shape)
        if alpha_mu > 1.0:
            # alpha -> infinity is eps_mu -> 0: the minimiser is (sum_i w_i a_i + alpha mu_old) /
            # (1 + alpha), i.e. the old mean, and a moved mean is pulled back to it
            np.testing.assert_allclose(mean, old_mean, atol=1e-5)
        else:
            np.testing.assert_allclose(mean, target, atol=1e-4)
            assert bool(jnp.all(mean[:, 0] > old_mean[:, 0] + 0.1))  # toward the high weights


def test_alpha_dual_gradient_sign():
    # dim 0 moved a lot (KL > eps), dim 1 not at all (KL = 0 < eps)
    old_mean, old_std = jnp.zeros((3, 2)), jnp.ones((3, 2))
    new_mean = jnp.array([[1.0, 0.0]] * 3)
    actions, weights = jnp.zeros((2, 3, 2)), jnp.full((2, 3), 0.5)

    def loss_fn(log_alpha_mean, log_alpha_std):
        return M_STEP(
            new_mean, old_std * 1.1, old_mean, old_std, actions, weights,
            mpo.dual_value(log_alpha_mean), mpo.dual_value(log_alpha_std),
            epsilon_mean=0.01, epsilon_stddev=1.0,
        )[0]  # fmt: skip

    g_mean, g_std = jax.grad(loss_fn, argnums=(0, 1))(jnp.zeros(2), jnp.zeros(2))
    assert float(g_mean[0]) < 0  # descent raises alpha_mu,0: constraint violated
    assert float(g_mean[1]) > 0  # descent lowers alpha_mu,1: constraint slack
    assert bool(jnp.all(g_std > 0))  # KL_sigma(1.1) ≈ 0.008 < 1: both slack
    # magnitude: (eps - KL) sigmoid(0) = (0.01 - 0.5) / 2
    assert float(g_mean[0]) == pytest.approx((0.01 - 0.5) / 2, rel=1e-5)


def test_combine_weights_sum_and_preferences():
    w = jnp.array([[[0.2], [0.8]], [[0.6], [0.4]]])  # [K=2, N=2, B=1]
    np.testing.assert_allclose(mpo.combine_weights(w, "sum")[:, 0], [0.8, 1.2], rtol=1e-6)
    np.testing.assert_allclose(
        mpo.combine_weights(w, jnp.array([0.25, 0.75]))[:, 0], [0.5, 0.5], rtol=1e-6
    )
    with pytest.raises(ValueError, match="combine"):
        mpo.combine_weights(w, "mean")
    # the M-step with per-objective weights equals the M-step with the combined ones
    old_mean, old_std, actions, _ = _mean_fitting_problem()
    wk = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(4), (2, 16, 4)), axis=1)
    pref = jnp.array([0.3, 0.7])
    args = (old_mean + 0.1, old_std * 0.9, old_mean, old_std, actions)
    alphas = (jnp.ones(2), jnp.ones(2))
    loss_k, _ = M_STEP(*args, wk, *alphas, combine=pref)
    loss_1, _ = M_STEP(*args, 0.3 * wk[0] + 0.7 * wk[1], *alphas)
    assert float(loss_k) == pytest.approx(float(loss_1), rel=1e-6)
    with pytest.raises(ValueError, match="combine"):
        mpo.m_step(*args, wk[0], *alphas, combine=pref)


def test_m_step_checks_alpha_shapes():
    old_mean, old_std, actions, weights = _mean_fitting_problem()
    args = (old_mean, old_std, old_mean, old_std, actions, weights)
    with pytest.raises(ValueError, match="per-dimension"):
        mpo.m_step(*args, jnp.ones(1), jnp.ones(1), per_dim_constraining=True)
    with pytest.raises(ValueError, match="single"):
        mpo.m_step(*args, jnp.ones(2), jnp.ones(2), per_dim_constraining=False)


# --------------------------------------------------------------------------------------------
# mpo_loss: the pieces together


def _policy_batch():
    old_mean, old_std, actions, _ = _mean_fitting_problem()
    actions = actions.at[0].set(2.0)  # some samples outside [-1, 1]
    q = -jnp.sum(jnp.square(actions - 0.3), axis=-1)  # [N, B]
    return old_mean + 0.05, old_std * 1.01, old_mean, old_std, actions, q


def test_mpo_loss_is_e_step_plus_penalty_plus_m_step():
    online_mean, online_std, old_mean, old_std, actions, q = _policy_batch()
    duals = mpo.init_dual_params(action_dim=2)._replace(
        log_temperature=jnp.array([0.3]), log_penalty_temperature=jnp.array([-1.0])
    )
    loss, metrics = jax.jit(mpo.mpo_loss)(
        duals, online_mean, online_std, old_mean, old_std, actions, q
    )

    task = E_STEP(q[None], mpo.dual_value(duals.log_temperature), 0.1)
    pen = E_STEP(mpo.action_penalty_q(actions), mpo.dual_value(duals.log_penalty_temperature), 1e-3)
    loss_m, _ = M_STEP(
        online_mean, online_std, old_mean, old_std, actions, task.weights[0] + pen.weights[0],
        mpo.dual_value(duals.log_alpha_mean), mpo.dual_value(duals.log_alpha_stddev),
    )  # fmt: skip
    expected = loss_m + task.loss_temperature + pen.loss_temperature
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert float(metrics["kl_q_rel"]) == pytest.approx(float(task.kl_q_rel[0]), rel=1e-5)
    assert float(metrics["penalty_kl_q_rel"]) == pytest.approx(float(pen.kl_q_rel[0]), rel=1e-5)
    assert float(metrics["penalty_kl_q_rel"]) > 0  # the out-of-box samples are avoided
    assert float(metrics["temperature"]) == pytest.approx(float(jax.nn.softplus(0.3)), rel=1e-5)
    assert float(metrics["q_max"]) == pytest.approx(float(jnp.mean(jnp.max(q, axis=0))), rel=1e-6)
    for key in ["alpha_mean", "alpha_stddev", "kl_mean_rel", "kl_stddev_rel", "pi_stddev_cond"]:
        assert metrics[key].shape == ()
    # without the penalty, only the task weights train the policy
    loss_np, metrics_np = MPO_LOSS(
        duals, online_mean, online_std, old_mean, old_std, actions, q, action_penalization=False
    )
    loss_m_np, _ = M_STEP(
        online_mean, online_std, old_mean, old_std, actions, task.weights[0],
        mpo.dual_value(duals.log_alpha_mean), mpo.dual_value(duals.log_alpha_stddev),
    )  # fmt: skip
    assert float(loss_np) == pytest.approx(float(loss_m_np + task.loss_temperature), rel=1e-5)
    assert "penalty_temperature" not in metrics_np


def test_mpo_loss_gradients_reach_policy_and_every_dual():
    online_mean, online_std, old_mean, old_std, actions, q = _policy_batch()
    duals = mpo.init_dual_params(action_dim=2)

    def f(duals, m, s, q):
        return MPO_LOSS(duals, m, s, old_mean, old_std, actions, q)[0]

    g_duals, g_m, g_s, g_q = jax.grad(f, argnums=(0, 1, 2, 3))(duals, online_mean, online_std, q)
    for leaf in jax.tree.leaves(g_duals):
        assert bool(jnp.all(jnp.isfinite(leaf))) and bool(jnp.any(leaf != 0))
    assert bool(jnp.any(g_m != 0)) and bool(jnp.any(g_s != 0))
    np.testing.assert_array_equal(g_q, np.zeros_like(q))


def test_mpo_loss_multi_objective_metrics_and_checks():
    online_mean, online_std, old_mean, old_std, actions, q = _policy_batch()
    q2 = jnp.stack([q, -q])
    duals = mpo.init_dual_params(action_dim=2, num_objectives=2)
    _, metrics = MPO_LOSS(
        duals, online_mean, online_std, old_mean, old_std, actions, q2,
        epsilon=[0.1, 0.05], combine=jnp.array([0.5, 0.5]), objective_names=("task", "bc"),
    )  # fmt: skip
    assert "kl_q_rel/task" in metrics and "temperature/bc" in metrics
    assert float(metrics["q_min/bc"]) == pytest.approx(
        float(jnp.mean(jnp.min(-q, axis=0))), rel=1e-6
    )
    with pytest.raises(ValueError, match="log_temperature"):
        mpo.mpo_loss(
            mpo.init_dual_params(2), online_mean, online_std, old_mean, old_std, actions, q2
        )
    with pytest.raises(ValueError, match="penalty"):
        mpo.mpo_loss(
            mpo.init_dual_params(2, action_penalization=False),
            online_mean, online_std, old_mean, old_std, actions, q,
        )  # fmt: skip
