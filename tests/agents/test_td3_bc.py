"""TD3+BC: the critic and actor losses against hand-computed values, the stop-gradient on lambda,
the policy delay (actor and targets move only every `policy_delay` steps), observation
normalisation, the policies, and a builder-made learner that clones a behaviour."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dm_env import specs

from antiphon.agents import td3
from antiphon.agents.offline import (
    device_transitions,
    make_multi_step_update,
    sample_batch,
    sample_batches,
)
from antiphon.agents.td3_bc import learning
from antiphon.agents.td3_bc.builder import TD3BCBuilder
from antiphon.agents.td3_bc.config import TD3BCConfig
from antiphon.agents.td3_bc.networks import (
    NORMALIZER,
    frozen_mask,
    make_networks,
    with_observation_statistics,
)
from antiphon.core.types import EnvironmentSpec, Transition
from antiphon.environments.datasets.core import Dataset

OBS_DIM, ACT_DIM, BATCH = 3, 2, 32
ENV_SPEC = EnvironmentSpec(
    observations=specs.Array((OBS_DIM,), np.float32),
    actions=specs.BoundedArray((ACT_DIM,), np.float32, -1.0, 1.0),
    rewards=specs.Array((), np.float32),
    discounts=specs.BoundedArray((), np.float32, 0.0, 1.0),
)
SMALL = dict(policy_layer_sizes=(16, 16), critic_layer_sizes=(16, 16), batch_size=BATCH)
W_BEHAVIOUR = np.array([[1.0, -0.5], [0.3, 0.8], [-0.7, 0.2]], np.float32)


def _batch(seed: int = 0, n: int = BATCH) -> Transition:
    rng = np.random.default_rng(seed)
    return jax.device_put(
        Transition(
            observation=rng.normal(size=(n, OBS_DIM)).astype(np.float32),
            action=rng.uniform(-1, 1, size=(n, ACT_DIM)).astype(np.float32),
            reward=rng.normal(size=(n,)).astype(np.float32),
            discount=(0.99 * (rng.uniform(size=(n,)) > 0.2)).astype(np.float32),
            next_observation=rng.normal(size=(n, OBS_DIM)).astype(np.float32),
        )
    )


def _params(networks, seed: int):
    return networks.init(jax.random.PRNGKey(seed), ENV_SPEC)


def _with_targets(target_policy_params, target_critic_params) -> learning.TrainingState:
    """A state carrying only the target networks (what the critic loss reads of it)."""
    return learning.TrainingState(
        None, None, target_policy_params, target_critic_params, None, None, 0, None
    )


def _tree_equal(a, b) -> bool:
    return all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(np.array_equal, a, b)))


def test_critic_loss_matches_hand_computation():
    config = TD3BCConfig(policy_noise=0.0, **SMALL)  # no smoothing noise: deterministic target
    networks = make_networks(ENV_SPEC, config)
    _, critic_params = _params(networks, 0)
    target_policy_params, target_critic_params = _params(networks, 1)
    batch = _batch()
    critic_loss, _ = learning.make_losses(networks, config)
    loss, metrics = critic_loss(
        critic_params,
        _with_targets(target_policy_params, target_critic_params),
        batch,
        jax.random.PRNGKey(2),
    )

    next_action = np.clip(
        np.asarray(networks.policy_apply(target_policy_params, batch.next_observation)), -1, 1
    )
    tq1, tq2 = map(
        np.asarray, networks.critic_apply(target_critic_params, batch.next_observation, next_action)
    )
    y = np.asarray(batch.reward) + np.asarray(batch.discount) * np.minimum(tq1, tq2)
    q1, q2 = map(np.asarray, networks.critic_apply(critic_params, batch.observation, batch.action))
    expected = np.mean((q1 - y) ** 2) + np.mean((q2 - y) ** 2)  # summed over the two critics
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["q_mean"]), q1.mean(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(q1, q2)  # the twins are distinct networks


def test_critic_target_is_stop_gradiented():
    config = TD3BCConfig(policy_noise=0.0, **SMALL)
    networks = make_networks(ENV_SPEC, config)
    target_policy_params, critic_params = _params(networks, 0)
    batch = _batch()
    critic_loss, _ = learning.make_losses(networks, config)
    key = jax.random.PRNGKey(1)
    # Target critic = the online critic itself: a target that is not stopped adds dy/dtheta.
    grads = jax.grad(
        lambda p: critic_loss(p, _with_targets(target_policy_params, p), batch, key)[0]
    )(critic_params)
    next_action = networks.policy_apply(target_policy_params, batch.next_observation)
    tq1, tq2 = networks.critic_apply(critic_params, batch.next_observation, next_action)
    y = batch.reward + batch.discount * jnp.minimum(tq1, tq2)

    def fixed_target_loss(p):
        q1, q2 = networks.critic_apply(p, batch.observation, batch.action)
        return jnp.mean((q1 - y) ** 2) + jnp.mean((q2 - y) ** 2)

    expected = jax.grad(fixed_target_loss)(critic_params)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads, expected
    )


def test_target_policy_smoothing_is_clipped():
    config = TD3BCConfig(**SMALL)
    networks = make_networks(ENV_SPEC, config)
    policy_params, _ = _params(networks, 0)
    obs = _batch().next_observation
    clean = np.asarray(networks.policy_apply(policy_params, obs))
    noisy = np.asarray(
        learning.target_actions(networks, policy_params, obs, jax.random.PRNGKey(3), 10.0, 0.1)
    )
    assert np.all(np.abs(noisy) <= 1.0)
    assert np.all(np.abs(noisy - clean) <= 0.1 + 1e-6)
    # sigma = 10 >> c = 0.1: nearly every noise sample saturates at +-c (unless the box clips).
    assert np.mean(np.isclose(np.abs(noisy - clean), 0.1, atol=1e-5)) > 0.9


def test_actor_loss_matches_hand_computation_and_lambda_is_stop_gradiented():
    config = TD3BCConfig(alpha=2.5, **SMALL)
    networks = make_networks(ENV_SPEC, config)
    policy_params, critic_params = _params(networks, 0)
    batch = _batch()
    _, policy_loss = learning.make_losses(networks, config)
    loss, metrics = policy_loss(policy_params, critic_params, None, batch)

    pi = np.asarray(networks.policy_apply(policy_params, batch.observation))
    q = np.asarray(networks.critic_apply(critic_params, batch.observation, pi)[0])  # Q1 only
    lmbda = 2.5 / np.mean(np.abs(q))
    mse = np.mean((pi - np.asarray(batch.action)) ** 2)
    np.testing.assert_allclose(float(metrics["lambda"]), lmbda, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["bc_mse"]), mse, rtol=1e-5)
    np.testing.assert_allclose(float(loss), -lmbda * q.mean() + mse, rtol=1e-5, atol=1e-6)

    def loss_with(p, lam):
        action = networks.policy_apply(p, batch.observation)
        q1 = networks.q1(critic_params, batch.observation, action)
        lam = 2.5 / jnp.mean(jnp.abs(q1)) if lam is None else lam
        return -lam * jnp.mean(q1) + jnp.mean((action - batch.action) ** 2)

    grads = jax.grad(lambda p: policy_loss(p, critic_params, None, batch)[0])(policy_params)
    held = jax.grad(lambda p: loss_with(p, float(lmbda)))(policy_params)
    through = jax.grad(lambda p: loss_with(p, None))(policy_params)
    flat = lambda t: np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(t)])
    np.testing.assert_allclose(flat(grads), flat(held), rtol=1e-4, atol=1e-6)
    assert not np.allclose(flat(grads), flat(through), rtol=1e-3, atol=1e-5)  # the test has teeth


@pytest.mark.parametrize("delay", [2, 3])
def test_actor_and_targets_move_only_on_delay_steps(delay):
    config = TD3BCConfig(policy_delay=delay, tau=0.1, **SMALL)
    networks = make_networks(ENV_SPEC, config)
    state, policy_opt, critic_opt = learning.init_training_state(
        networks, config, ENV_SPEC, jax.random.PRNGKey(0)
    )
    sgd_step = jax.jit(learning.make_sgd_step(networks, config, policy_opt, critic_opt))
    for step in range(1, 2 * delay + 1):
        new, metrics = sgd_step(state, _batch(step))
        assert int(new.steps) == step
        assert not _tree_equal(new.critic_params, state.critic_params)  # the critic: every step
        assert set(metrics) == {"critic_loss", "policy_loss", "q_mean", "bc_mse", "lambda"}
        assert np.isfinite(float(metrics["critic_loss"])) and np.isfinite(float(metrics["q_mean"]))
        actor_metrics = [float(metrics[k]) for k in ("policy_loss", "bc_mse", "lambda")]
        if step % delay:
            assert np.all(np.isnan(actor_metrics))  # not computed without an actor update
            assert _tree_equal(new.policy_params, state.policy_params)
            assert _tree_equal(new.policy_opt_state, state.policy_opt_state)
            assert _tree_equal(new.target_policy_params, state.target_policy_params)
            assert _tree_equal(new.target_critic_params, state.target_critic_params)
        else:
            assert np.all(np.isfinite(actor_metrics))
            assert not _tree_equal(new.policy_params, state.policy_params)
            for online, old, target in [
                (new.policy_params, state.target_policy_params, new.target_policy_params),
                (new.critic_params, state.target_critic_params, new.target_critic_params),
            ]:  # Polyak towards the networks after this step's updates
                expected = jax.tree_util.tree_map(lambda o, t: 0.1 * o + 0.9 * t, online, old)
                jax.tree_util.tree_map(
                    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                    target,
                    expected,
                )
                assert not _tree_equal(target, old)
        state = new


def test_a_calls_actor_metrics_are_the_mean_over_its_actor_updates():
    """K = 6 steps per call with policy_delay 3: the call's actor metrics average the two
    actor-update steps (3 and 6) only; its critic metrics average all six."""
    config = TD3BCConfig(policy_delay=3, **SMALL)
    networks = make_networks(ENV_SPEC, config)
    state, policy_opt, critic_opt = learning.init_training_state(
        networks, config, ENV_SPEC, jax.random.PRNGKey(0)
    )
    sgd_step = learning.make_sgd_step(networks, config, policy_opt, critic_opt)
    step = jax.jit(sgd_step)
    data = _batch(seed=7, n=200)
    update = jax.jit(make_multi_step_update(sgd_step, BATCH, steps_per_call=6))
    new_state, means, _, _ = update(state, data, jax.random.PRNGKey(1))

    # The same six steps one at a time, on the batches the call drew.
    _, sample_key = jax.random.split(jax.random.PRNGKey(1))
    batches = sample_batches(data, sample_key, 6, BATCH)
    per_step = []
    for i in range(6):
        state, metrics = step(state, jax.tree_util.tree_map(lambda x, i=i: x[i], batches))
        per_step.append({k: float(v) for k, v in metrics.items()})
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        new_state.policy_params,
        state.policy_params,
    )
    for name in ("policy_loss", "bc_mse", "lambda"):
        values = [m[name] for m in per_step]
        assert np.all(np.isnan(values[0:2] + values[3:5])) and np.all(np.isfinite(values[2::3]))
        np.testing.assert_allclose(float(means[name]), np.mean(values[2::3]), rtol=1e-5)
    for name in ("critic_loss", "q_mean"):
        expected = np.mean([m[name] for m in per_step])
        np.testing.assert_allclose(float(means[name]), expected, rtol=1e-5, atol=1e-7)


def _dataset(n: int = 512, seed: int = 0, action_noise: float = 0.2) -> Dataset:
    """Actions a = tanh(s W) + noise; the reward 1 - |a - tanh(s W)|^2 prefers the same behaviour
    (the offset keeps Q away from 0, where lambda = alpha / mean |Q| would blow up)."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, OBS_DIM)).astype(np.float32) * 2.0 + 1.0
    clean = np.tanh(obs @ W_BEHAVIOUR)
    actions = np.clip(clean + action_noise * rng.normal(size=clean.shape), -1, 1)
    terminals = np.zeros(n, bool)
    terminals[rng.choice(n, n // 10, replace=False)] = True
    timeouts = np.zeros(n, bool)
    timeouts[-1] = not terminals[-1]
    return Dataset(
        observations=obs,
        actions=actions.astype(np.float32),
        rewards=1.0 - np.sum((actions - clean) ** 2, axis=-1).astype(np.float32),
        next_observations=(rng.normal(size=(n, OBS_DIM)) * 2.0 + 1.0).astype(np.float32),
        terminals=terminals,
        timeouts=timeouts,
    )


def _bc_mse(networks, policy_params, dataset: Dataset) -> float:
    pi = networks.policy_apply(policy_params, dataset.observations)
    return float(np.mean((np.asarray(pi) - dataset.actions) ** 2))


@pytest.mark.parametrize("normalize", [False, True])
def test_builder_learner_clones_the_behaviour(normalize):
    config = TD3BCConfig(
        sgd_steps_per_call=10,
        normalize_observations=normalize,
        policy_learning_rate=1e-3,
        critic_learning_rate=1e-3,
        **SMALL,
    )
    builder = TD3BCBuilder(config)
    assert builder.name == "td3_bc" and builder.offline and builder.config_class is TD3BCConfig
    networks = builder.make_networks(ENV_SPEC)
    dataset = _dataset()
    data = device_transitions(dataset, config.discount)
    learner = builder.make_learner(networks, data, ENV_SPEC, jax.random.PRNGKey(0))
    [initial] = learner.get_variables(["policy"])
    before = _bc_mse(networks, initial, dataset)
    for call in range(1, 31):
        learner.step()
        assert learner.sgd_steps == call * config.sgd_steps_per_call
    [policy_params, critic_params] = learner.get_variables(["policy", "critic"])
    after = _bc_mse(networks, policy_params, dataset)
    assert after < 0.5 * before, (before, after)

    state = learner.state
    if normalize:  # the dataset's statistics, untouched by 300 steps of Adam and Polyak
        mean, std = dataset.observations.mean(0), dataset.observations.std(0) + 1e-3
        for params in [
            policy_params,
            critic_params,
            state.target_policy_params,
            state.target_critic_params,
        ]:
            np.testing.assert_allclose(params[NORMALIZER]["mean"], mean, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(params[NORMALIZER]["std"], std, rtol=1e-5)
            np.testing.assert_array_equal(
                params[NORMALIZER]["mean"], policy_params[NORMALIZER]["mean"]
            )
    else:
        assert NORMALIZER not in policy_params and NORMALIZER not in critic_params

    # The evaluation actor gets its params (normaliser included) from the learner alone.
    actor = builder.make_actor(
        builder.make_policy(networks, evaluation=True), jax.random.PRNGKey(1), learner
    )
    obs = dataset.observations[:4]
    actions = np.stack([actor.select_action(o) for o in obs])
    np.testing.assert_allclose(actions, networks.policy_apply(policy_params, obs), atol=1e-5)


def test_flat_adam_matches_per_array_adam_and_leaves_the_normaliser_alone():
    import optax

    networks = make_networks(ENV_SPEC, TD3BCConfig(normalize_observations=True, **SMALL))
    _, critic_params = _params(networks, 0)
    critic_params = with_observation_statistics(critic_params, jnp.ones(OBS_DIM), jnp.ones(OBS_DIM))
    optimizer = td3.make_optimizer(0.1)
    reference = optax.multi_transform(
        {"trained": optax.adam(0.1), "frozen": optax.set_to_zero()},
        lambda p: jax.tree_util.tree_map(
            lambda frozen: "frozen" if frozen else "trained", frozen_mask(p)
        ),
    )
    state, reference_state = optimizer.init(critic_params), reference.init(critic_params)
    for scale in (1.0, -0.3, 2.0):
        grads = jax.tree_util.tree_map(lambda p, s=scale: s * (p + 1.0), critic_params)
        got, state = optimizer.update(grads, state, critic_params)
        want, reference_state = reference.update(grads, reference_state, critic_params)
        jax.tree_util.tree_map(
            lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7), got, want
        )
        np.testing.assert_array_equal(got[NORMALIZER]["mean"], 0.0)
        critic_params = optax.apply_updates(critic_params, got)


def test_normalizer_normalises():
    config = TD3BCConfig(normalize_observations=True, **SMALL)
    networks = make_networks(ENV_SPEC, config)
    policy_params, _ = _params(networks, 0)
    obs = _batch().observation
    mean, std = jnp.array([1.0, -2.0, 0.5]), jnp.array([2.0, 0.5, 3.0])
    normalised = with_observation_statistics(policy_params, mean, std)
    np.testing.assert_allclose(
        networks.policy_apply(normalised, obs),
        networks.policy_apply(policy_params, (obs - mean) / std),
        atol=1e-6,
    )


def test_behaviour_policy_is_noisy_and_clipped_evaluation_is_deterministic():
    config = TD3BCConfig(exploration_sigma=0.5, **SMALL)
    builder = TD3BCBuilder(config)
    networks = builder.make_networks(ENV_SPEC)
    policy_params, _ = _params(networks, 0)
    obs = jnp.ones((OBS_DIM,))
    greedy = networks.policy_apply(policy_params, obs[None])[0]
    evaluation = builder.make_policy(networks, evaluation=True)
    behaviour = builder.make_policy(networks, evaluation=False)
    keys = jax.random.split(jax.random.PRNGKey(0), 200)
    eval_actions = jax.vmap(lambda k: evaluation(policy_params, obs, (), k)[0])(keys)
    noisy = jax.vmap(lambda k: behaviour(policy_params, obs, (), k)[0])(keys)
    np.testing.assert_allclose(eval_actions, jnp.broadcast_to(greedy, eval_actions.shape))
    assert np.all(np.abs(noisy) <= 1.0) and np.any(np.abs(noisy) == 1.0)
    assert 0.3 < float(jnp.std(noisy - greedy)) < 0.5


def test_config_validation():
    with pytest.raises(ValueError, match="policy_delay"):
        TD3BCBuilder(TD3BCConfig(policy_delay=0))
    with pytest.raises(ValueError, match="tau"):
        TD3BCBuilder(dataclasses.replace(TD3BCConfig(), tau=0.0))


def test_sampled_batches_are_whole_dataset_rows_drawn_uniformly():
    # Row i of every field holds i, so a batch row mixing two dataset rows would show.
    n = 10
    rows = np.arange(n, dtype=np.float32)
    data = jax.device_put(
        Transition(
            observation=np.stack([rows] * OBS_DIM, 1),
            action=np.stack([rows] * ACT_DIM, 1),
            reward=rows,
            discount=rows,
            next_observation=np.stack([rows] * OBS_DIM, 1),
        )
    )
    batches = jax.jit(sample_batches, static_argnums=(2, 3))(data, jax.random.PRNGKey(0), 50, 64)
    assert batches.observation.shape == (50, 64, OBS_DIM) and batches.reward.shape == (50, 64)
    for leaf in (batches.observation, batches.action, batches.next_observation):
        np.testing.assert_array_equal(leaf, np.broadcast_to(batches.reward[..., None], leaf.shape))
    np.testing.assert_array_equal(batches.discount, batches.reward)
    counts = np.bincount(np.asarray(batches.reward, np.int64).ravel(), minlength=n)
    assert counts.sum() == 50 * 64 and counts.min() > 250  # 320 expected per row
    assert not np.array_equal(batches.reward[0], batches.reward[1])  # each batch drawn afresh
    one = sample_batch(data, jax.random.PRNGKey(1), 64)
    assert one.observation.shape == (64, OBS_DIM) and one.reward.shape == (64,)
