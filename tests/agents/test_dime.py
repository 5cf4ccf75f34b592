"""DiME: per-objective temperatures make it scale-invariant (and linear scalarisation is not),
K = 1 is exactly MPO's policy loss, the BC expert is exactly the dataset action, and the
offline learner runs on real data."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dm_env import specs

from antiphon.agents import mpo_family, mpo_losses
from antiphon.agents.dime import learning
from antiphon.agents.dime.config import DiMEOfflineConfig
from antiphon.agents.dime.networks import make_networks
from antiphon.agents.mpo import learning as mpo_learning
from antiphon.agents.mpo.config import MPOConfig
from antiphon.core.types import EnvironmentSpec, Transition

OBS_DIM, ACT_DIM, BATCH = 3, 2, 16
ENV_SPEC = EnvironmentSpec(
    observations=specs.Array((OBS_DIM,), np.float32),
    actions=specs.BoundedArray((ACT_DIM,), np.float32, -1.0, 1.0),
    rewards=specs.Array((), np.float32),
    discounts=specs.BoundedArray((), np.float32, 0.0, 1.0),
)
SMALL = dict(policy_layer_sizes=(32, 32), critic_layer_sizes=(32, 32), num_samples=6)


def _batch(key) -> Transition:
    keys = jax.random.split(key, 4)
    return Transition(
        observation=jax.random.normal(keys[0], (BATCH, OBS_DIM)),
        action=jnp.clip(jax.random.normal(keys[1], (BATCH, ACT_DIM)), -1.0, 1.0),
        reward=jax.random.normal(keys[2], (BATCH,)),
        discount=jnp.full((BATCH,), 0.99),
        next_observation=jax.random.normal(keys[3], (BATCH, OBS_DIM)),
    )


def _perturbed_state(config, key):
    """A training state whose online and target networks differ (so the KL terms are live)."""
    networks = make_networks(ENV_SPEC, config)
    state, _ = mpo_family.init_training_state(networks, config, ENV_SPEC, key)
    noisy = jax.tree_util.tree_map(
        lambda p: p + 0.05 * jax.random.normal(jax.random.PRNGKey(7), p.shape),
        state.policy_params,
    )
    critic = jax.tree_util.tree_map(
        lambda p: p + 0.3 * jax.random.normal(jax.random.PRNGKey(8), p.shape),
        state.critic_params,
    )
    return networks, state._replace(policy_params=noisy, critic_params=critic)


# ------------------------------------------------------------------------------------------------
# Scale invariance: the E-step's temperatures at their dual optimum


def _optimal_temperatures(q_values: np.ndarray, epsilon: float) -> np.ndarray:
    """Each objective's eta where the sample KL(q_k || pi_old) equals eps (the dual's optimum:
    dg/deta = eps - KL), by bisection on log eta (KL falls as eta grows)."""
    etas = []
    for q in q_values:
        low, high = -12.0, 12.0
        for _ in range(200):
            mid = 0.5 * (low + high)
            out = mpo_losses.e_step(jnp.asarray(q)[None], jnp.exp(jnp.array([mid])), epsilon)
            if float(out.kl_q[0]) > epsilon:
                low = mid
            else:
                high = mid
        etas.append(math.exp(0.5 * (low + high)))
    return np.asarray(etas)


def _q_two_objectives():
    q = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (2, 20, 8)))
    scaled = q.copy()
    scaled[1] *= 1000.0  # e.g. the action cost in other units
    return q, scaled


def test_dime_weights_are_unchanged_when_one_objective_is_scaled_by_1000():
    q, scaled = _q_two_objectives()
    preferences = jnp.array([0.3, 0.7])
    eta = _optimal_temperatures(q, 0.1)
    eta_scaled = _optimal_temperatures(scaled, 0.1)
    np.testing.assert_allclose(eta_scaled, eta * np.array([1.0, 1000.0]), rtol=1e-4)
    for combination in ("dime", "mompo"):
        before = learning.improve(jnp.asarray(q), jnp.asarray(eta), 0.1, preferences, combination)
        after = learning.improve(
            jnp.asarray(scaled), jnp.asarray(eta_scaled), 0.1, preferences, combination
        )
        np.testing.assert_allclose(after.weights, before.weights, atol=1e-5)
        np.testing.assert_allclose(
            after.per_objective_weights, before.per_objective_weights, atol=1e-5
        )
    # each objective's weights sum to 1 over the samples; dime's mixture sums to 1 too
    np.testing.assert_allclose(jnp.sum(before.per_objective_weights, axis=1), 1.0, rtol=1e-5)
    dime = learning.improve(jnp.asarray(q), jnp.asarray(eta), 0.1, preferences, "dime")
    np.testing.assert_allclose(jnp.sum(dime.weights, axis=0), 1.0, rtol=1e-5)


def test_linear_scalarisation_and_fixed_temperatures_are_not_scale_invariant():
    q, scaled = _q_two_objectives()
    preferences = jnp.array([0.5, 0.5])
    # linear: one temperature for sum_k lambda_k Q_k, at its own optimum each time
    linear_q = np.einsum("k,knb->nb", np.asarray(preferences), q)[None]
    linear_scaled_q = np.einsum("k,knb->nb", np.asarray(preferences), scaled)[None]
    eta = _optimal_temperatures(linear_q, 0.1)
    eta_scaled = _optimal_temperatures(linear_scaled_q, 0.1)
    before = learning.improve(jnp.asarray(q), jnp.asarray(eta), 0.1, preferences, "linear")
    after = learning.improve(
        jnp.asarray(scaled), jnp.asarray(eta_scaled), 0.1, preferences, "linear"
    )
    assert float(jnp.max(jnp.abs(after.weights - before.weights))) > 0.05
    # the scaled objective takes over: linear's weights become objective 1's own
    own = learning.improve(
        jnp.asarray(scaled[1:]),
        jnp.asarray(_optimal_temperatures(scaled[1:], 0.1)),
        0.1,
        jnp.ones((1,)),
        "dime",
    )
    np.testing.assert_allclose(after.weights, own.weights, atol=0.02)
    # fixed temperatures (the KL-regularised reading): scaling changes the weights
    fixed = jnp.array([1.0, 1.0])
    before = learning.improve(jnp.asarray(q), fixed, 0.1, preferences, learned_temperature=False)
    after = learning.improve(
        jnp.asarray(scaled), fixed, 0.1, preferences, learned_temperature=False
    )
    assert float(jnp.max(jnp.abs(after.weights - before.weights))) > 0.05
    assert float(before.loss_temperature) == 0.0


def test_learned_temperatures_get_only_their_own_dual_gradient():
    q, _ = _q_two_objectives()

    def loss(log_temperature):
        temperature = mpo_losses.dual_value(log_temperature)
        return learning.improve(
            jnp.asarray(q), temperature, 0.1, jnp.array([0.5, 0.5])
        ).loss_temperature

    grads = jax.grad(loss)(jnp.zeros((2,)))
    # objective 0 alone gives the same gradient on eta_0
    single = jax.grad(
        lambda t: (
            mpo_losses.e_step(jnp.asarray(q[:1]), mpo_losses.dual_value(t), 0.1).loss_temperature
        )
    )(jnp.zeros((1,)))
    np.testing.assert_allclose(grads[0], single[0], rtol=1e-5)
    fixed = jax.grad(
        lambda t: (
            learning.improve(
                jnp.asarray(q),
                mpo_losses.dual_value(t),
                0.1,
                jnp.ones(2),
                learned_temperature=False,
            ).loss_temperature
        )
    )(jnp.zeros((2,)))
    np.testing.assert_array_equal(fixed, 0.0)


# ------------------------------------------------------------------------------------------------
# K = 1 is MPO; the BC expert is the dataset action


@pytest.mark.parametrize("action_penalization", [True, False])
def test_rl_objective_alone_is_exactly_mpos_policy_loss(action_penalization):
    common = dict(SMALL, critic_type="scalar", action_penalization=action_penalization)
    dime_config = DiMEOfflineConfig(objectives=("rl",), preferences=(1.0,), **common)
    mpo_config = MPOConfig(**common)
    networks, state = _perturbed_state(dime_config, jax.random.PRNGKey(1))
    batch, key = _batch(jax.random.PRNGKey(2)), jax.random.PRNGKey(3)
    args = (state.policy_params, state.dual_params, state.target_policy_params)
    args = (*args, state.target_critic_params, batch, key)

    _, dime_policy_loss = learning.make_losses(networks, dime_config)
    _, mpo_policy_loss = mpo_learning.make_losses(networks, mpo_config)
    (dime_loss, dime_metrics), dime_grads = jax.value_and_grad(
        dime_policy_loss, argnums=(0, 1), has_aux=True
    )(*args)
    (mpo_loss, mpo_metrics), mpo_grads = jax.value_and_grad(
        mpo_policy_loss, argnums=(0, 1), has_aux=True
    )(*args)
    np.testing.assert_allclose(dime_loss, mpo_loss, rtol=1e-6)
    leaves = zip(
        jax.tree_util.tree_leaves(dime_grads), jax.tree_util.tree_leaves(mpo_grads), strict=True
    )
    for a, b in leaves:
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    for name in ("temperature", "kl_q_rel", "kl_mean_rel", "loss_policy"):
        np.testing.assert_allclose(dime_metrics[name], mpo_metrics[name], rtol=1e-6)


def test_bc_expert_is_exactly_the_dataset_action_with_its_preference():
    config = DiMEOfflineConfig(preferences=(0.25, 0.75), **SMALL)
    batch = _batch(jax.random.PRNGKey(4))
    networks, state = _perturbed_state(config, jax.random.PRNGKey(5))
    actions, _, _, q = mpo_family.sampled_q(
        networks,
        state.target_policy_params,
        state.target_critic_params,
        batch.observation,
        jax.random.PRNGKey(6),
        config.num_samples,
    )
    mixture = learning.experts(config, state.dual_params, actions, q, batch.action)
    n = config.num_samples
    assert mixture.actions.shape == (n + 1, BATCH, ACT_DIM)
    np.testing.assert_array_equal(mixture.actions[n], batch.action)
    np.testing.assert_array_equal(mixture.weights[n], 0.75)
    np.testing.assert_array_equal(mixture.actions[:n], actions)
    # the rl side: 0.25 x (its E-step weights + the action penalty's), each summing to 1
    np.testing.assert_allclose(jnp.sum(mixture.weights[:n], axis=0), 0.25 * 2, rtol=1e-5)

    bc_only = DiMEOfflineConfig(objectives=("bc",), preferences=(1.0,), **SMALL)
    mixture = learning.experts(bc_only, state.dual_params, actions, q, batch.action)
    np.testing.assert_array_equal(mixture.actions, batch.action[None])
    np.testing.assert_array_equal(mixture.weights, 1.0)
    assert float(mixture.loss_temperature) == 0.0


def test_bc_only_policy_loss_is_the_decoupled_likelihood_of_the_data():
    """objectives ("bc",): L_pi = -mean log N(a; mu, s_old) - mean log N(a; mu_old, s), by hand."""
    config = DiMEOfflineConfig(objectives=("bc",), preferences=(1.0,), **SMALL)
    networks, state = _perturbed_state(config, jax.random.PRNGKey(9))
    batch = _batch(jax.random.PRNGKey(10))
    _, policy_loss = learning.make_losses(networks, config)
    _, metrics = policy_loss(
        state.policy_params,
        state.dual_params,
        state.target_policy_params,
        state.target_critic_params,
        batch,
        jax.random.PRNGKey(11),
    )
    mu, s = (np.asarray(x) for x in networks.policy_apply(state.policy_params, batch.observation))
    mu_old, s_old = (
        np.asarray(x) for x in networks.policy_apply(state.target_policy_params, batch.observation)
    )
    a = np.asarray(batch.action)

    def log_n(x, m, sd):
        return np.sum(-0.5 * ((x - m) / sd) ** 2 - np.log(sd) - 0.5 * math.log(2 * math.pi), -1)

    expected = -np.mean(log_n(a, mu, s_old)) - np.mean(log_n(a, mu_old, s))
    np.testing.assert_allclose(metrics["loss_policy"], expected, rtol=1e-5)
    np.testing.assert_allclose(metrics["data_log_prob"], np.mean(log_n(a, mu, s)), rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# Config and the learner on data


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(objectives=("rl", "energy")), "objectives must be names from rl, bc, teacher"),
        (dict(objectives=("rl", "teacher")), "the teacher objective and --teacher"),
        (dict(teacher="runs/x"), "the teacher objective and --teacher"),
        (dict(objectives=("rl", "rl")), "must not repeat"),
        (dict(preferences=(1.0,)), "one weight per objective"),
        (dict(temperature_mode="annealed"), "temperature_mode"),
    ],
)
def test_bad_configs_are_refused_in_one_line(fields, message):
    with pytest.raises(ValueError, match=message):
        DiMEOfflineConfig(**fields).validate()


def test_mixture_weights_are_normalised():
    assert DiMEOfflineConfig(preferences=(1.0, 3.0)).mixture_weights() == {"rl": 0.25, "bc": 0.75}


def test_offline_steps_move_the_policy_towards_the_data_and_keep_the_trust_region():
    """Twenty SGD steps of BC-weighted DiME on a dataset whose action is a fixed function of the
    observation: the data's log-likelihood rises, the duals stay positive and finite."""
    config = DiMEOfflineConfig(preferences=(0.2, 0.8), **SMALL)
    networks = make_networks(ENV_SPEC, config)
    keys = jax.random.split(jax.random.PRNGKey(12), 3)
    obs = jax.random.normal(keys[0], (256, OBS_DIM))
    data = Transition(
        observation=obs,
        action=jnp.tanh(obs[:, :ACT_DIM]),
        reward=jnp.ones((256,)),
        discount=jnp.full((256,), 0.9),
        next_observation=jax.random.normal(keys[1], (256, OBS_DIM)),
    )
    sgd_step, state = learning.make_update(networks, config, ENV_SPEC, data, keys[2])
    step = jax.jit(sgd_step)
    log_probs = []
    for i in range(200):
        batch = jax.tree_util.tree_map(lambda x, i=i: x[(i * 16) % 256 : (i * 16) % 256 + 16], data)
        state, metrics = step(state, batch)
        log_probs.append(float(metrics["data_log_prob"]))
    assert np.mean(log_probs[-20:]) > np.mean(log_probs[:20]) + 0.05
    for leaf in jax.tree_util.tree_leaves(state.dual_params):
        assert np.all(np.isfinite(leaf))
    assert np.isfinite(float(metrics["critic_loss"]))


# ------------------------------------------------------------------------------------------------
# Online: one critic per reward objective


def _online(**fields):
    from antiphon.agents.dime.config import DiMEConfig

    return DiMEConfig(**{**SMALL, "critic_type": "scalar", **fields})


def _vector_batch(key, k: int) -> Transition:
    batch = _batch(key)
    rewards = jnp.stack([batch.reward * (10.0**i) for i in range(k)], axis=-1)  # [B, K]
    return batch._replace(reward=rewards)


def test_each_stacked_critic_learns_from_its_own_reward_column():
    config = _online(objectives=("task", "action_cost"), preferences=(0.5, 0.5))
    networks = make_networks(ENV_SPEC, config)
    assert networks.num_critics == 2
    state, _ = mpo_family.init_training_state(networks, config, ENV_SPEC, jax.random.PRNGKey(0))
    leaves = jax.tree_util.tree_leaves(state.critic_params)
    assert all(leaf.shape[0] == 2 for leaf in leaves)
    assert any(not np.allclose(x[0], x[1]) for x in leaves)  # initialised independently
    batch, key = _vector_batch(jax.random.PRNGKey(1), 2), jax.random.PRNGKey(2)
    stacked = learning.make_stacked_critic_loss(networks, config, config.objectives)
    total, metrics = stacked(
        state.critic_params, state.target_policy_params, state.target_critic_params, batch, key
    )
    from antiphon.agents import policy_evaluation

    single = policy_evaluation.make_critic_loss(networks, config)
    expected = []
    for k in range(2):
        pick = jax.tree_util.tree_map(lambda x, k=k: x[k], state.critic_params)
        target = jax.tree_util.tree_map(lambda x, k=k: x[k], state.target_critic_params)
        loss, _ = single(
            pick, state.target_policy_params, target, batch._replace(reward=batch.reward[:, k]), key
        )
        expected.append(float(loss))
    np.testing.assert_allclose(metrics["critic_loss/task"], expected[0], rtol=1e-5)
    np.testing.assert_allclose(metrics["critic_loss/action_cost"], expected[1], rtol=1e-5)
    np.testing.assert_allclose(total, sum(expected), rtol=1e-5)
    assert expected[1] > 10 * expected[0]  # the second column is 10x the first


def test_reward_scales_train_each_critic_on_its_scaled_column():
    """reward_scales (c_1, c_2) = (1, 100): the stacked loss equals the unscaled loss on a batch
    whose second reward column is multiplied by 100, and differs from the unscaled loss."""
    config = _online(objectives=("task", "action_cost"), preferences=(0.5, 0.5))
    networks = make_networks(ENV_SPEC, config)
    state, _ = mpo_family.init_training_state(networks, config, ENV_SPEC, jax.random.PRNGKey(0))
    batch, key = _vector_batch(jax.random.PRNGKey(1), 2), jax.random.PRNGKey(2)
    args = (state.critic_params, state.target_policy_params, state.target_critic_params)
    plain = learning.make_stacked_critic_loss(networks, config, config.objectives)
    scaled = learning.make_stacked_critic_loss(networks, config, config.objectives, (1.0, 100.0))
    by_hand = batch._replace(reward=batch.reward * jnp.asarray([1.0, 100.0]))
    _, scaled_metrics = scaled(*args, batch, key)
    _, hand_metrics = plain(*args, by_hand, key)
    _, plain_metrics = plain(*args, batch, key)
    for name in ("critic_loss/task", "critic_loss/action_cost"):
        np.testing.assert_allclose(scaled_metrics[name], hand_metrics[name], rtol=1e-6)
    assert scaled_metrics["critic_loss/task"] == plain_metrics["critic_loss/task"]
    cost = "critic_loss/action_cost"
    assert scaled_metrics[cost] > 100 * plain_metrics[cost]


def test_reward_scales_need_one_factor_per_reward_objective():
    with pytest.raises(ValueError, match="reward_scales needs one factor per reward objective"):
        _online(
            objectives=("task", "action_cost"), preferences=(1, 1), reward_scales=(2.0,)
        ).validate()


@pytest.mark.parametrize("action_penalization", [True, False])
def test_online_with_one_objective_is_exactly_mpos_policy_loss(action_penalization):
    common = dict(SMALL, critic_type="scalar", action_penalization=action_penalization)
    config = _online(objectives=("task",), preferences=(1.0,), **common)
    mpo_config = MPOConfig(**common)
    networks = make_networks(ENV_SPEC, config)
    # one unstacked critic (the offline config's networks are the same architecture)
    _, state = _perturbed_state(DiMEOfflineConfig(**common), jax.random.PRNGKey(1))
    batch, key = _batch(jax.random.PRNGKey(2)), jax.random.PRNGKey(3)
    stacked = jax.tree_util.tree_map(lambda x: x[None], state.target_critic_params)
    _, dime_policy_loss = learning.make_online_losses(networks, config)
    _, mpo_policy_loss = mpo_learning.make_losses(networks, mpo_config)
    head = (state.policy_params, state.dual_params, state.target_policy_params)
    dime_loss, dime_metrics = dime_policy_loss(*head, stacked, batch, key)
    mpo_loss, mpo_metrics = mpo_policy_loss(*head, state.target_critic_params, batch, key)
    np.testing.assert_allclose(dime_loss, mpo_loss, rtol=1e-6)
    for name in ("temperature", "kl_q_rel", "kl_mean_rel", "loss_policy"):
        np.testing.assert_allclose(dime_metrics[name], mpo_metrics[name], rtol=1e-6)


def test_online_sgd_steps_run_for_every_combination():
    for combination in ("dime", "mompo", "linear"):
        config = _online(
            objectives=("task", "action_cost"), preferences=(0.7, 0.3), combination=combination
        )
        networks = make_networks(ENV_SPEC, config)
        sgd_step, state = learning.DiMELearner.make_update(
            networks, config, ENV_SPEC, jax.random.PRNGKey(0)
        )
        state, metrics = jax.jit(sgd_step)(state, _vector_batch(jax.random.PRNGKey(1), 2))
        assert int(state.steps) == 1
        assert np.isfinite(float(metrics["policy_loss"])), combination
        assert "q_mean/action_cost" in metrics and "sampled_q_mean/task" in metrics
        assert ("temperature/linear" in metrics) == (combination == "linear")


def test_teacher_expert_is_its_samples_each_weighing_an_equal_share():
    config = DiMEOfflineConfig(
        objectives=("rl", "bc", "teacher"), preferences=(2.0, 1.0, 1.0), teacher="x", **SMALL
    )
    networks, state = _perturbed_state(config, jax.random.PRNGKey(20))
    batch = _batch(jax.random.PRNGKey(21))
    actions, _, _, q = mpo_family.sampled_q(
        networks,
        state.target_policy_params,
        state.target_critic_params,
        batch.observation,
        jax.random.PRNGKey(22),
        config.num_samples,
    )
    teacher_actions = jax.random.uniform(jax.random.PRNGKey(23), (4, BATCH, ACT_DIM), minval=-1)
    mixture = learning.experts(config, state.dual_params, actions, q, batch.action, teacher_actions)
    n = config.num_samples
    assert mixture.actions.shape == (n + 1 + 4, BATCH, ACT_DIM)
    np.testing.assert_array_equal(mixture.actions[n + 1 :], teacher_actions)
    np.testing.assert_allclose(mixture.weights[n + 1 :], 0.25 / 4)  # alpha_teacher = 1/4
    np.testing.assert_allclose(mixture.weights[n], 0.25)  # bc
    np.testing.assert_allclose(jnp.sum(mixture.weights[:n], axis=0), 0.5 * 2, rtol=1e-5)
    with pytest.raises(ValueError, match="needs teacher actions"):
        learning.experts(config, state.dual_params, actions, q, batch.action)
