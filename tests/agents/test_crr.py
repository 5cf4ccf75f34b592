"""CRR: filters, advantages, stop-gradient, BC reduction, critic targets, and a learner that
prefers the better dataset action where BC cannot."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dm_env import specs

from antiphon.agents import networks as shared
from antiphon.agents import optimizers
from antiphon.agents.bc import learning as bc_learning
from antiphon.agents.bc.config import BCConfig
from antiphon.agents.bc.networks import make_networks as make_bc_networks
from antiphon.agents.crr import acting, learning
from antiphon.agents.crr.builder import CRRBuilder
from antiphon.agents.crr.config import CRRConfig
from antiphon.agents.crr.networks import make_networks
from antiphon.core.types import EnvironmentSpec, Transition

OBS_DIM, ACT_DIM, BATCH = 3, 2, 16
ENV_SPEC = EnvironmentSpec(
    observations=specs.Array((OBS_DIM,), np.float32),
    actions=specs.BoundedArray((ACT_DIM,), np.float32, -1.0, 1.0),
    rewards=specs.Array((), np.float32),
    discounts=specs.BoundedArray((), np.float32, 0.0, 1.0),
)
SMALL = dict(policy_layer_sizes=(16, 16), critic_layer_sizes=(16, 16), num_target_samples=8)


def _batch(key, discount: float = 0.99) -> Transition:
    keys = jax.random.split(key, 4)
    return Transition(
        observation=jax.random.normal(keys[0], (BATCH, OBS_DIM)),
        action=jax.random.uniform(keys[1], (BATCH, ACT_DIM), minval=-0.9, maxval=0.9),
        reward=jax.random.uniform(keys[2], (BATCH,)),
        discount=jnp.full((BATCH,), discount),
        next_observation=jax.random.normal(keys[3], (BATCH, OBS_DIM)),
    )


# ---- advantage and filters against hand-computed values


def test_advantage_mean_and_max_baselines():
    q_data = jnp.array([1.0, 0.0])
    q_samples = jnp.array([[0.0, 1.0], [2.0, -3.0], [1.0, 2.0]])  # [m=3, B=2]
    np.testing.assert_allclose(learning.advantage(q_data, q_samples, "mean"), [0.0, 0.0])
    np.testing.assert_allclose(learning.advantage(q_data, q_samples, "max"), [-1.0, -2.0])
    with pytest.raises(ValueError):
        learning.advantage(q_data, q_samples, "min")


def test_exp_binary_and_bc_filters():
    adv = jnp.array([-1.0, 0.0, 0.5, 3.0, 100.0])
    exp = learning.crr_weights(adv, "exp", beta=1.0, clip=20.0)
    np.testing.assert_allclose(exp, [np.exp(-1.0), 1.0, np.exp(0.5), 20.0, 20.0], rtol=1e-6)
    exp_beta = learning.crr_weights(adv, "exp", beta=2.0, clip=20.0)
    np.testing.assert_allclose(exp_beta[:4], np.exp(np.array([-1.0, 0.0, 0.5, 3.0]) / 2), 1e-6)
    assert float(jnp.max(learning.crr_weights(adv * 1e3, "exp", 1.0, 20.0))) <= 20.0
    assert np.isfinite(np.asarray(learning.crr_weights(jnp.array([1e30]), "exp", 1.0, 20.0))).all()
    np.testing.assert_array_equal(
        learning.crr_weights(adv, "binary", 1.0, 20.0), [0.0, 0.0, 1.0, 1.0, 1.0]
    )
    np.testing.assert_array_equal(learning.crr_weights(adv, "bc", 1.0, 20.0), np.ones(5))


@pytest.mark.parametrize("filter_type", ["exp", "binary", "bc"])
def test_weights_are_stop_gradiented(filter_type):
    grad = jax.grad(lambda a: jnp.sum(learning.crr_weights(a, filter_type, 1.0, 20.0)))(
        jnp.array([-0.3, 0.2, 1.5])
    )
    np.testing.assert_array_equal(grad, np.zeros(3))


# ---- the actor loss


def _params(config, seed=0):
    networks = make_networks(ENV_SPEC, config)
    policy_params, critic_params = networks.init(jax.random.PRNGKey(seed), ENV_SPEC)
    return networks, policy_params, critic_params


def test_actor_gradient_is_weighted_likelihood_gradient():
    """With a frozen critic, grad L_pi == -mean(f * grad log pi(a|s)), f held constant."""
    config = CRRConfig(**SMALL, filter="exp", beta=0.5)
    networks, policy_params, critic_params = _params(config)
    _, policy_loss = learning.make_losses(networks, config)
    batch, key = _batch(jax.random.PRNGKey(1)), jax.random.PRNGKey(2)
    (loss, metrics), grads = jax.value_and_grad(policy_loss, has_aux=True)(
        policy_params, critic_params, batch, key
    )
    # Recompute f exactly as the loss does, then differentiate the weighted log-likelihood alone.
    mean, std = networks.policy_apply(policy_params, batch.observation)
    samples = shared.tanh_gaussian_sample(mean, std, key, config.num_advantage_samples)
    q_samples = jax.vmap(lambda a: networks.q_value(critic_params, batch.observation, a))(samples)
    q_data = networks.q_value(critic_params, batch.observation, batch.action)
    weights = jnp.minimum(jnp.exp((q_data - q_samples.mean(0)) / 0.5), 20.0)

    def weighted_nll(p):
        return -jnp.mean(weights * networks.log_prob(p, batch.observation, batch.action))

    expected_loss, expected_grads = jax.value_and_grad(weighted_nll)(policy_params)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    for got, want in zip(
        jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(expected_grads), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    # And the critic gets no gradient through the actor loss.
    critic_grads = jax.grad(lambda c: policy_loss(policy_params, c, batch, key)[0])(critic_params)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree_util.tree_leaves(critic_grads))
    assert float(metrics["weight_max"]) <= 20.0


@pytest.mark.parametrize("head", ["tanh_gaussian", "gaussian", "gaussian_mixture"])
def test_bc_filter_is_exactly_behaviour_cloning(head):
    config = CRRConfig(**SMALL, filter="bc", policy_head=head)
    networks, policy_params, critic_params = _params(config)
    _, crr_policy_loss = learning.make_losses(networks, config)
    bc_networks = make_bc_networks(
        ENV_SPEC, BCConfig(policy_layer_sizes=(16, 16), policy_head=head)
    )
    bc_loss = bc_learning.make_loss(bc_networks)
    batch, key = _batch(jax.random.PRNGKey(3)), jax.random.PRNGKey(4)
    # The same policy network (same parameter tree), evaluated at the same parameters.
    bc_params = bc_networks.init(jax.random.PRNGKey(0), ENV_SPEC)
    assert jax.tree_util.tree_structure(bc_params) == jax.tree_util.tree_structure(policy_params)
    crr_value, crr_grads = jax.value_and_grad(
        lambda p: crr_policy_loss(p, critic_params, batch, key)[0]
    )(policy_params)
    bc_value, bc_grads = jax.value_and_grad(lambda p: bc_loss(p, batch)[0])(policy_params)
    assert float(crr_value) == float(bc_value)
    jax.tree_util.tree_map(np.testing.assert_array_equal, crr_grads, bc_grads)


def test_binary_filter_with_a_critic_preferring_dataset_actions_is_bc():
    """If Q(s, a_data) beats every sampled action, binary weights are all 1: the BC loss."""
    config = CRRConfig(**SMALL, filter="binary", baseline="max")
    networks, policy_params, _ = _params(config)
    batch = _batch(jax.random.PRNGKey(5))

    class PrefersData:  # Q = -|a - a_data|: the dataset action is the unique maximiser
        critic_type = "scalar"

        @staticmethod
        def q_value(critic_params, observation, action):
            return -jnp.sum(jnp.abs(action - batch.action), -1)

        policy_apply = staticmethod(networks.policy_apply)

    frozen = dataclasses.replace(
        networks, critic_apply=lambda p, o, a: -jnp.sum(jnp.abs(a - batch.action), -1)
    )
    _, policy_loss = learning.make_losses(frozen, config)
    loss, metrics = policy_loss(policy_params, None, batch, jax.random.PRNGKey(6))
    assert float(metrics["weight_mean"]) == 1.0
    bc = -jnp.mean(networks.log_prob(policy_params, batch.observation, batch.action))
    np.testing.assert_allclose(loss, bc, rtol=1e-6)
    del PrefersData


# ---- the critic


def test_scalar_critic_loss_matches_hand_computed_target():
    config = CRRConfig(**SMALL, critic_type="scalar")
    networks, policy_params, critic_params = _params(config)
    critic_loss, _ = learning.make_losses(networks, config)
    batch, key = _batch(jax.random.PRNGKey(7)), jax.random.PRNGKey(8)
    loss, _ = critic_loss(critic_params, policy_params, critic_params, batch, key)
    action_key, _ = jax.random.split(key)
    mean, std = networks.policy_apply(policy_params, batch.next_observation)
    next_action = shared.tanh_gaussian_sample(mean, std, action_key, 1)[0]
    target = batch.reward + batch.discount * networks.q_value(
        critic_params, batch.next_observation, next_action
    )
    q = networks.q_value(critic_params, batch.observation, batch.action)
    np.testing.assert_allclose(loss, np.mean(0.5 * (q - target) ** 2), rtol=1e-5)


def test_c51_critic_at_terminal_transitions_targets_the_reward_atom():
    """discount 0: the projected target is all mass on the atoms around r, whatever Z_target."""
    config = CRRConfig(**SMALL, critic_type="c51", v_min=0.0, v_max=10.0, num_atoms=11)
    networks, policy_params, critic_params = _params(config)
    critic_loss, _ = learning.make_losses(networks, config)
    batch = _batch(jax.random.PRNGKey(9), discount=0.0)._replace(reward=jnp.full((BATCH,), 3.0))
    loss, _ = critic_loss(critic_params, policy_params, critic_params, batch, jax.random.PRNGKey(0))
    logits = networks.critic_apply(critic_params, batch.observation, batch.action)
    expected = -jnp.mean(jax.nn.log_softmax(logits)[:, 3])  # atom 3 holds exactly 3.0
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


@pytest.mark.parametrize("critic_type", ["scalar", "c51", "mog"])
def test_every_critic_type_trains_through_the_builder(critic_type):
    config = CRRConfig(
        **SMALL, critic_type=critic_type, v_min=-5, v_max=5, sgd_steps_per_call=4, batch_size=8
    )
    builder = CRRBuilder(config)
    data = _batch(jax.random.PRNGKey(11))
    learner = builder.make_learner(
        builder.make_networks(ENV_SPEC), data, ENV_SPEC, jax.random.PRNGKey(0)
    )
    metrics = [learner.step() for _ in range(3)]
    assert learner.sgd_steps == 12
    del metrics
    [policy] = learner.get_variables(["policy"])
    assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(policy))


# ---- behaviour: CRR prefers the better action where BC averages


def _bandit_dataset(n: int = 512) -> Transition:
    """One state, two dataset actions: +0.5 pays 1, -0.5 pays 0; every step is terminal."""
    good = np.arange(n) % 2 == 0
    action = np.where(good[:, None], 0.5, -0.5).astype(np.float32) * np.ones(
        (n, ACT_DIM), np.float32
    )
    return jax.device_put(
        Transition(
            observation=np.ones((n, OBS_DIM), np.float32),
            action=action,
            reward=good.astype(np.float32),
            discount=np.zeros(n, np.float32),
            next_observation=np.ones((n, OBS_DIM), np.float32),
        )
    )


def _greedy_action(builder, learner):
    networks = builder.make_networks(ENV_SPEC)
    policy = builder.make_policy(networks, evaluation=True)
    params = learner.get_variables(["policy"])[0]
    return np.asarray(policy(params, jnp.ones(OBS_DIM), (), jax.random.PRNGKey(0))[0])


@pytest.mark.parametrize("filter_type", ["exp", pytest.param("binary", marks=pytest.mark.slow)])
def test_crr_copies_the_better_action_where_bc_averages(filter_type):
    common = dict(
        **SMALL,
        batch_size=64,
        sgd_steps_per_call=50,
        policy_learning_rate=3e-3,
        critic_learning_rate=3e-3,
    )
    data = _bandit_dataset()
    actions = {}
    for name in (filter_type, "bc"):
        builder = CRRBuilder(CRRConfig(**common, filter=name, beta=0.1))
        learner = builder.make_learner(
            builder.make_networks(ENV_SPEC), data, ENV_SPEC, jax.random.PRNGKey(0)
        )
        learner.run(1500)
        actions[name] = _greedy_action(builder, learner)
    assert np.all(actions[filter_type] > 0.3), actions  # the paying action (+0.5)
    assert np.all(np.abs(actions["bc"]) < 0.2), actions  # BC's mode sits between the two


def test_critic_weighted_policy_picks_the_higher_q_sample():
    config = CRRConfig(**SMALL, critic_weighted_policy=True, cwp_samples=64, cwp_temperature=1e-3)
    networks, policy_params, _ = _params(config)
    frozen = dataclasses.replace(networks, critic_apply=lambda p, o, a: a[..., 0])  # Q = a_0
    policy = acting.make_policy(frozen, config, evaluation=True)
    action, _ = policy([policy_params, None], jnp.zeros(OBS_DIM), (), jax.random.PRNGKey(0))
    mean, std = networks.policy_apply(policy_params, jnp.zeros((1, OBS_DIM)))
    samples = shared.tanh_gaussian_sample(
        mean[0], std[0], jax.random.split(jax.random.PRNGKey(0))[0], 64
    )
    np.testing.assert_allclose(action[0], samples[:, 0].max(), rtol=1e-6)
    assert acting.variable_names(config) == ["policy", "critic"]


def test_tanh_gaussian_log_prob_hand_values_inside_and_on_the_edges():
    from scipy.stats import norm

    mean = jnp.array([[0.3, -0.2, 2.0]])
    std = jnp.array([[0.5, 1.0, 0.7]])
    action = jnp.array([[0.5, -1.0, 1.0]])  # inside, lower edge, upper edge
    edge = np.arctanh(shared.TANH_EDGE_THRESHOLD)
    bin_width = 1.0 - shared.TANH_EDGE_THRESHOLD
    censored = (
        norm.logpdf(np.arctanh(0.5), 0.3, 0.5)
        - np.log(1.0 - 0.25)
        + norm.logcdf(-edge, -0.2, 1.0)
        - np.log(bin_width)
        + norm.logsf(edge, 2.0, 0.7)
        - np.log(bin_width)
    )
    got = shared.tanh_gaussian_log_prob(mean, std, action)
    np.testing.assert_allclose(got, [censored], rtol=1e-4)
    a_edge = float(np.float32(1.0 - shared.TANH_EPSILON))  # the float32 the clip produces
    clipped = (
        norm.logpdf(np.arctanh(0.5), 0.3, 0.5)
        - np.log(1.0 - 0.25)
        + norm.logpdf(-np.arctanh(a_edge), -0.2, 1.0)
        - np.log1p(-(a_edge**2))
        + norm.logpdf(np.arctanh(a_edge), 2.0, 0.7)
        - np.log1p(-(a_edge**2))
    )
    got = shared.tanh_gaussian_log_prob(mean, std, action, "clipped")
    np.testing.assert_allclose(got, [clipped], rtol=1e-4)
    with pytest.raises(ValueError, match="edge likelihood"):
        shared.tanh_gaussian_log_prob(mean, std, action, "nope")


def test_censored_edge_gradient_pushes_the_mean_out_without_chasing_atanh_of_one():
    # An upper-edge action: the censored likelihood keeps rising as the mean moves past the
    # threshold and its gradient vanishes once the mass is there; the clipped density pulls the
    # mean to atanh(1 - 1e-5) = 6.1 with a gradient that grows as std shrinks.
    std = jnp.array([[0.05]])
    action = jnp.array([[1.0]])

    def grad(mean, edge):
        return float(
            jax.grad(lambda m: shared.tanh_gaussian_log_prob(m, std, action, edge).sum())(
                jnp.array([[mean]])
            )[0, 0]
        )

    assert grad(2.0, "censored") > 0 and grad(2.0, "clipped") > 0
    assert grad(5.0, "censored") < 1e-3  # mass already beyond atanh(0.999) = 3.8
    assert grad(5.0, "clipped") > 100.0  # still pulled towards 6.1 with weight 1 / std^2
    assert np.isfinite(grad(-3.0, "censored"))


def test_censored_edge_gradients_are_those_of_both_edge_bins():
    # tanh_gaussian_log_prob evaluates one log Phi per component, on the side of its action;
    # values and gradients must be those of the two-sided formula (lower bin P(u <= -e), upper
    # bin P(u >= e)), on both edges and inside.
    from jax.scipy.stats import norm

    t = shared.TANH_EDGE_THRESHOLD
    edge, log_width = np.arctanh(t), np.log1p(-t)

    def two_sided(mean, std, action):
        inside = jnp.clip(action, -t, t)
        density = norm.logpdf(jnp.arctanh(inside), mean, std) - jnp.log1p(-jnp.square(inside))
        lower = norm.logcdf(-edge, mean, std) - log_width
        upper = norm.logsf(edge, mean, std) - log_width
        return jnp.sum(jnp.where(action <= -t, lower, jnp.where(action >= t, upper, density)), -1)

    key_mean, key_std = jax.random.split(jax.random.PRNGKey(3))
    mean = 3.0 * jax.random.normal(key_mean, (64, 3))
    std = jax.random.uniform(key_std, (64, 3), minval=0.05, maxval=2.0)
    action = jnp.tile(jnp.array([[-1.0, 0.3, 1.0], [0.9995, -0.9995, -0.2]]), (32, 1))
    got = shared.tanh_gaussian_log_prob(mean, std, action)
    np.testing.assert_allclose(got, two_sided(mean, std, action), rtol=1e-5, atol=1e-4)
    for argnum in (0, 1):
        got_grad = jax.grad(lambda *x: shared.tanh_gaussian_log_prob(*x).sum(), argnum)(
            mean, std, action
        )
        want_grad = jax.grad(lambda *x: two_sided(*x).sum(), argnum)(mean, std, action)
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("output_size", [1, 6])
def test_linear_head_is_the_hk_linear_it_replaces(output_size):
    # Output layers (critic values, TD3+BC's action) use shared.linear_head: same parameter
    # names, shapes and initial values as hk.Linear, same outputs and gradients.
    import haiku as hk

    def head(x):
        return shared.linear_head(x, output_size)

    def reference(x):
        return hk.Linear(output_size)(x)

    x = jax.random.normal(jax.random.PRNGKey(1), (BATCH, 7))
    head_t, reference_t = (
        hk.without_apply_rng(hk.transform(head)),
        hk.without_apply_rng(hk.transform(reference)),
    )
    params = head_t.init(jax.random.PRNGKey(0), x)
    jax.tree_util.tree_map(
        np.testing.assert_array_equal, params, reference_t.init(jax.random.PRNGKey(0), x)
    )
    params = jax.tree_util.tree_map(lambda p: p + 0.1, params)  # non-zero biases
    np.testing.assert_allclose(head_t.apply(params, x), reference_t.apply(params, x), rtol=1e-5)

    def loss(apply):
        return lambda p, x: jnp.sum(jnp.sin(apply(p, x)))

    got = jax.grad(loss(head_t.apply), (0, 1))(params, x)
    want = jax.grad(loss(reference_t.apply), (0, 1))(params, x)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("x_shape", [(5,), (16, 5), (4, 16, 5)])
def test_narrow_output_matmul_has_the_gradients_of_a_matmul(x_shape):
    # The policy heads' matmul computes its weight gradient as (g^T x)^T: it must equal x^T g
    # (summed over every leading dimension of x), and dx must be g w^T.
    key_x, key_w, key_c = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(key_x, x_shape)
    w = jax.random.normal(key_w, (5, 12))
    cotangent = jax.random.normal(key_c, (*x_shape[:-1], 12))

    def loss(matmul):
        return lambda x, w: jnp.sum(cotangent * jnp.sin(matmul(x, w)))

    got = jax.jit(jax.grad(loss(shared.narrow_output_matmul), (0, 1)))(x, w)
    want = jax.grad(loss(jnp.matmul), (0, 1))(x, w)
    np.testing.assert_allclose(shared.narrow_output_matmul(x, w), x @ w, rtol=1e-6)
    for got_grad, want_grad in zip(got, want, strict=True):
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(7,), (1, 7), (6, 7), (256, 7), (2, 96, 7), (40, 7)])
def test_column_sum_is_the_sum_over_leading_axes(shape):
    # Halving (256 -> 8 rows), odd row counts (left to jnp.sum once odd), one row, no batch.
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    want = np.sum(np.asarray(x, np.float64).reshape(-1, shape[-1]), axis=0)
    np.testing.assert_allclose(jax.jit(shared.column_sum)(x), want, rtol=1e-5, atol=1e-5)


def test_add_bias_has_the_value_and_gradients_of_plus():
    key_x, key_b, key_c = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(key_x, (4, 64, 5))
    b = jax.random.normal(key_b, (5,))
    cotangent = jax.random.normal(key_c, (4, 64, 5))

    def loss(add):
        return lambda x, b: jnp.sum(cotangent * jnp.sin(add(x, b)))

    np.testing.assert_array_equal(shared.add_bias(x, b), x + b)
    got = jax.jit(jax.grad(loss(shared.add_bias), (0, 1)))(x, b)
    want = jax.grad(loss(jnp.add), (0, 1))(x, b)
    for got_grad, want_grad in zip(got, want, strict=True):
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activate_final", [True, False])
def test_mlp_is_the_hk_nets_mlp_it_replaces(activate_final):
    # shared.MLP no longer wraps hk.nets.MLP (its bias gradients go through add_bias); its
    # parameter names, shapes and initial values, outputs and gradients must stay those of the
    # hk.nets.MLP it wrapped, so snapshots written before still restore and mean the same network.
    import haiku as hk

    def reference(x):
        with hk.experimental.name_scope("mlp"):
            return hk.nets.MLP(
                (32, 16),
                w_init=hk.initializers.VarianceScaling(1.0, "fan_avg", "uniform"),
                activation=jax.nn.relu,
                activate_final=activate_final,
            )(x)

    def mlp(x):
        return shared.MLP((32, 16), activate_final=activate_final)(x)

    x = jax.random.normal(jax.random.PRNGKey(1), (BATCH, OBS_DIM))
    mlp_t = hk.without_apply_rng(hk.transform(mlp))
    reference_t = hk.without_apply_rng(hk.transform(reference))
    params = mlp_t.init(jax.random.PRNGKey(0), x)
    reference_params = reference_t.init(jax.random.PRNGKey(0), x)
    assert sorted(params) == ["mlp/mlp/~/linear_0", "mlp/mlp/~/linear_1"]
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(reference_params)
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, reference_params)
    params = jax.tree_util.tree_map(lambda p: p + 0.1 * jnp.ones_like(p), params)

    def loss(apply):
        return lambda p, x: jnp.sum(jnp.sin(apply(p, x)))

    np.testing.assert_allclose(mlp_t.apply(params, x), reference_t.apply(params, x), rtol=1e-5)
    got = jax.jit(jax.grad(loss(mlp_t.apply), (0, 1)))(params, x)
    want = jax.grad(loss(reference_t.apply), (0, 1))(params, x)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_mlp_of_several_inputs_is_the_mlp_of_their_concatenation():
    # MLP(sizes)(obs, action) multiplies each input by its rows of the first weight; it must
    # keep the parameters of MLP(sizes)(concat) (old critic snapshots restore) and compute the
    # same values and gradients, also with the action batched by vmap and the observation not.
    import haiku as hk

    obs = jax.random.normal(jax.random.PRNGKey(1), (BATCH, OBS_DIM))
    actions = jax.random.uniform(jax.random.PRNGKey(2), (3, BATCH, ACT_DIM), minval=-1, maxval=1)
    split_t = hk.without_apply_rng(hk.transform(lambda o, a: shared.MLP((32, 16))(o, a)))
    joined_t = hk.without_apply_rng(
        hk.transform(lambda o, a: shared.MLP((32, 16))(jnp.concatenate([o, a], -1)))
    )
    params = split_t.init(jax.random.PRNGKey(0), obs, actions[0])
    joined_params = joined_t.init(jax.random.PRNGKey(0), obs, actions[0])
    assert params["mlp/mlp/~/linear_0"]["w"].shape == (OBS_DIM + ACT_DIM, 32)
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, joined_params)
    params = jax.tree_util.tree_map(lambda p: p + 0.1 * jnp.ones_like(p), params)

    def loss(apply):
        # vmapped over the 3 action samples, the observation shared: as CRR's critic is called.
        return lambda p, o, a: jnp.sum(jnp.sin(jax.vmap(lambda x: apply(p, o, x))(a)))

    got_value = jax.vmap(lambda a: split_t.apply(params, obs, a))(actions)
    want_value = jax.vmap(lambda a: joined_t.apply(params, obs, a))(actions)
    assert got_value.shape == (3, BATCH, 16)
    np.testing.assert_allclose(got_value, want_value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(  # broadcasting without vmap: [B, obs] with [3, B, act]
        split_t.apply(params, obs, actions), want_value, rtol=1e-5, atol=1e-6
    )
    got = jax.jit(jax.grad(loss(split_t.apply), (0, 1, 2)))(params, obs, actions)
    want = jax.grad(loss(joined_t.apply), (0, 1, 2))(params, obs, actions)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)

    no_layers = hk.without_apply_rng(hk.transform(lambda o, a: shared.MLP(())(o, a)))
    np.testing.assert_array_equal(
        no_layers.apply({}, obs, actions),
        jnp.concatenate([jnp.broadcast_to(obs, (3, BATCH, OBS_DIM)), actions], -1),
    )


def test_policy_heads_are_the_two_linear_layers_they_replace():
    # TanhGaussianPolicy runs its mean and scale heads as one matmul; its parameters (names,
    # shapes, initial values) and outputs must stay those of two hk.Linear heads, so snapshots
    # written before still restore and mean the same policy.
    import haiku as hk

    def reference(observation):
        with hk.experimental.name_scope("tanh_gaussian_policy"):
            x = shared.MLP((16, 16))(observation)
            mean = hk.Linear(ACT_DIM, name="mean")(x)
            raw_scale = hk.Linear(ACT_DIM, name="scale")(x)
        return mean, jax.nn.softplus(raw_scale) + 1e-3

    def policy(observation):
        return shared.TanhGaussianPolicy((16, 16), ACT_DIM)(observation)

    observation = jax.random.normal(jax.random.PRNGKey(1), (BATCH, OBS_DIM))
    reference_t = hk.without_apply_rng(hk.transform(reference))
    policy_t = hk.without_apply_rng(hk.transform(policy))
    params = policy_t.init(jax.random.PRNGKey(0), observation)
    reference_params = reference_t.init(jax.random.PRNGKey(0), observation)
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(reference_params)
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, reference_params)
    # Non-zero biases, so a swapped or misaligned head would show.
    params = jax.tree_util.tree_map(lambda p: p + 0.1 * jnp.ones_like(p), params)
    params["tanh_gaussian_policy/scale"]["b"] = jnp.array([0.3, -0.7])
    for got, want in zip(
        policy_t.apply(params, observation),
        reference_t.apply(params, observation),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_flattened_optimizer_is_clip_then_adam():
    # make_optimizer runs clip-by-global-norm and Adam on one flat vector; the updates must be
    # those of the per-array chain, on steps where the clip triggers and where it does not.
    import optax

    params = {"a": {"w": jnp.ones((3, 2)), "b": jnp.zeros((2,))}, "c": jnp.arange(4.0)}
    reference = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.1))
    flat = optimizers.clipped_adam(0.1, 1.0)
    reference_state, flat_state = reference.init(params), flat.init(params)
    for scale in (10.0, 0.01, 3.0):  # global norms above, below, above the clip
        grads = jax.tree_util.tree_map(lambda p, s=scale: s * (p + 1.0), params)
        want, reference_state = reference.update(grads, reference_state, params)
        got, flat_state = flat.update(grads, flat_state, params)
        jax.tree_util.tree_map(
            lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7), got, want
        )
        params = optax.apply_updates(params, got)


def test_ravel_and_unravel_round_trip():
    from antiphon.agents import optimizers

    tree = {"a": {"w": jnp.arange(6.0).reshape(3, 2), "b": jnp.zeros((2,))}, "c": jnp.ones(4)}
    flat = optimizers.ravel(tree)
    np.testing.assert_array_equal(
        flat, np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(tree)])
    )
    jax.tree_util.tree_map(np.testing.assert_array_equal, optimizers.unravel(tree, flat), tree)
    assert optimizers.ravel({}).shape == (0,)
    with pytest.raises(ValueError, match="one dtype"):
        optimizers.ravel({"a": jnp.zeros(2), "b": jnp.zeros(2, jnp.int32)})


# ---- the authors' policy head: a mixture of diagonal Gaussians


def test_gaussian_mixture_log_prob_hand_values():
    # Two components over a 2-d action; weights softmax([0, log 3]) = (1/4, 3/4).
    logits = jnp.array([0.0, np.log(3.0)])
    mean = jnp.array([[0.0, 0.5], [-0.5, 1.0]])
    std = jnp.array([[1.0, 0.5], [0.2, 0.1]])
    action = jnp.array([0.2, 1.0])  # on the box edge in dimension 2: an ordinary density here

    def normal(x, m, s):
        return np.exp(-0.5 * ((x - m) / s) ** 2) / (s * np.sqrt(2 * np.pi))

    first = normal(0.2, 0.0, 1.0) * normal(1.0, 0.5, 0.5)
    second = normal(0.2, -0.5, 0.2) * normal(1.0, 1.0, 0.1)
    expected = np.log(0.25 * first + 0.75 * second)
    got = shared.gaussian_mixture_log_prob(logits, mean, std, action)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # Batched: the same value for each row.
    batched = shared.gaussian_mixture_log_prob(
        jnp.stack([logits] * 3),
        jnp.stack([mean] * 3),
        jnp.stack([std] * 3),
        jnp.stack([action] * 3),
    )
    np.testing.assert_allclose(batched, [expected] * 3, rtol=1e-5)


def test_gaussian_head_is_a_normal_around_the_tanh_of_the_mean_with_clipped_samples():
    # d3rlpy's CRR policy: N(a; tanh(m), std) over the action itself, no squashing Jacobian.
    mean = jnp.array([0.3, 2.0])
    std = jnp.array([0.1, 0.2])
    action = jnp.array([0.1, 1.0])  # on the box edge in dimension 2: an ordinary density

    def log_normal(x, m, s):
        return -0.5 * ((x - m) / s) ** 2 - np.log(s * np.sqrt(2 * np.pi))

    expected = log_normal(0.1, np.tanh(0.3), 0.1) + log_normal(1.0, np.tanh(2.0), 0.2)
    got = shared.gaussian_log_prob(mean, std, action)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    head = shared.make_policy_head("gaussian", (8,), 2)
    np.testing.assert_allclose(head.log_prob((mean, std), action), expected, rtol=1e-5)
    np.testing.assert_allclose(head.mode((mean, std)), np.tanh(mean), rtol=1e-6)
    # Samples: tanh(m) + std * eps, clipped to the box (dimension 2: 43 % lie past 1).
    samples = np.asarray(head.sample((mean, std), jax.random.PRNGKey(0), 20_000))
    assert samples.shape == (20_000, 2) and np.abs(samples).max() <= 1.0
    np.testing.assert_allclose(samples[:, 0].mean(), np.tanh(0.3), atol=0.003)  # 7 std inside
    np.testing.assert_allclose(samples[:, 0].std(), 0.1, atol=0.003)
    assert 0.41 < (samples[:, 1] == 1.0).mean() < 0.45  # P(N(0.964, 0.2) >= 1) = 0.429


def test_gaussian_mixture_samples_follow_the_weights_and_mode_is_the_heaviest_mean():
    logits = jnp.log(jnp.array([[0.25, 0.75], [0.9, 0.1]]))  # two states
    mean = jnp.array([[[-0.5], [0.5]], [[0.8], [-0.8]]])  # [B=2, K=2, A=1]
    std = jnp.full((2, 2, 1), 0.05)
    samples = shared.gaussian_mixture_sample(logits, mean, std, jax.random.PRNGKey(0), 20000)
    assert samples.shape == (20000, 2, 1)
    samples = np.asarray(samples)[..., 0]
    np.testing.assert_allclose(np.mean(samples[:, 0] > 0), 0.75, atol=0.015)
    np.testing.assert_allclose(np.mean(samples[:, 1] > 0), 0.9, atol=0.015)
    np.testing.assert_allclose(samples[samples[:, 0] > 0, 0].std(), 0.05, rtol=0.05)
    # One sample per state without num_samples; samples are clipped to the box.
    wide = shared.gaussian_mixture_sample(logits, mean, std * 100, jax.random.PRNGKey(1))
    assert wide.shape == (2, 1) and float(jnp.max(jnp.abs(wide))) <= 1.0
    np.testing.assert_allclose(shared.gaussian_mixture_mode(logits, mean, std), [[0.5], [0.8]])
    np.testing.assert_allclose(
        shared.gaussian_mixture_mode(logits, mean * 3, std), [[1.0], [1.0]]
    )  # clipped


def test_gaussian_mixture_policy_starts_at_its_initial_scale():
    config = CRRConfig(**SMALL, policy_head="gaussian_mixture", num_policy_components=3)
    networks, policy_params, _ = _params(config)
    zeroed = jax.tree_util.tree_map(jnp.zeros_like, policy_params)
    logits, mean, std = networks.policy_apply(zeroed, jnp.ones((4, OBS_DIM)))
    assert logits.shape == (4, 3) and mean.shape == (4, 3, ACT_DIM) and std.shape == mean.shape
    np.testing.assert_allclose(std, 0.3, rtol=1e-6)
    np.testing.assert_array_equal(logits, 0.0)
    with pytest.raises(ValueError, match="policy_head"):
        CRRConfig(policy_head="beta").validate()
    with pytest.raises(ValueError, match="num_policy_components"):
        BCConfig(policy_head="gaussian_mixture", num_policy_components=0).validate()


def test_mixture_keeps_both_dataset_actions_and_crr_moves_the_mass_to_the_paying_one():
    """On the two-action bandit a mixture fits both modes (BC's samples sit near -0.5 and +0.5,
    about half each), which a single tanh-Gaussian cannot; CRR's weights move the mass to +0.5."""
    common = dict(
        **SMALL,
        batch_size=64,
        sgd_steps_per_call=50,
        policy_learning_rate=3e-3,
        critic_learning_rate=3e-3,
        policy_head="gaussian_mixture",
    )
    data = _bandit_dataset()
    samples = {}
    for name in ("exp", "bc"):
        builder = CRRBuilder(CRRConfig(**common, filter=name, beta=0.1))
        networks = builder.make_networks(ENV_SPEC)
        learner = builder.make_learner(networks, data, ENV_SPEC, jax.random.PRNGKey(0))
        learner.run(1500)
        [params] = learner.get_variables(["policy"])
        dist = networks.policy_apply(params, jnp.ones((1, OBS_DIM)))
        samples[name] = np.asarray(networks.head.sample(dist, jax.random.PRNGKey(1), 2000))[:, 0]
        greedy = _greedy_action(builder, learner)
        if name == "exp":
            assert np.all(greedy > 0.3), greedy
    near_a_mode = np.abs(np.abs(samples["bc"]) - 0.5) < 0.15
    assert near_a_mode.mean() > 0.8, near_a_mode.mean()
    assert 0.3 < (samples["bc"][..., 0] > 0).mean() < 0.7
    assert (samples["exp"][..., 0] > 0).mean() > 0.9


def test_reward_scale_leaves_unit_scale_data_alone_and_brings_large_rewards_to_one():
    from antiphon.agents.offline import reward_scale

    # DM Control: rewards in [0, 1] per environment step, summed over an action repeat of 2.
    assert reward_scale(np.array([0.0, 0.7, 1.93], np.float32), None, action_repeat=2) == 1.0
    assert reward_scale(np.array([0.0, 0.2, 1.0], np.float32), None) == 1.0
    # Pendulum-v1: rewards in [-16.3, 0].
    rewards = np.array([-16.25, -3.0, -0.001], np.float32)
    assert reward_scale(rewards, None) == pytest.approx(1 / 16.25)
    assert np.max(np.abs(rewards * reward_scale(rewards, None))) == pytest.approx(1.0)
    # Given: used as it is, 1.0 switches the scaling off; <= 0 is refused.
    assert reward_scale(rewards, 1.0) == 1.0 and reward_scale(rewards, 0.5) == 0.5
    with pytest.raises(ValueError, match="reward_scale"):
        reward_scale(rewards, 0.0)
