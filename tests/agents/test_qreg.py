"""Q_sarsa-regularised TD3: the (s, a, r, d, s', a') rows (terminals, time-limit cuts, shuffled
files), Q_sarsa's target on the logged next action and its fixed point on a hand-built episode,
every regulariser against hand computation (values and gradients), lambda = 0 as offline TD3
exactly, and the pre-train / co-train schedules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dm_env import specs

from antiphon.agents import offline
from antiphon.agents.qreg import learning
from antiphon.agents.qreg.config import QRegConfig
from antiphon.agents.qreg.networks import make_networks
from antiphon.core.types import EnvironmentSpec, Transition
from antiphon.environments.datasets.core import Dataset, DatasetError

OBS_DIM, ACT_DIM, BATCH = 3, 2, 32
ENV_SPEC = EnvironmentSpec(
    observations=specs.Array((OBS_DIM,), np.float32),
    actions=specs.BoundedArray((ACT_DIM,), np.float32, -1.0, 1.0),
    rewards=specs.Array((), np.float32),
    discounts=specs.BoundedArray((), np.float32, 0.0, 1.0),
)
SMALL = dict(
    policy_layer_sizes=(16, 16),
    critic_layer_sizes=(16, 16),
    sarsa_layer_sizes=(16, 16),
    batch_size=BATCH,
)


def _dataset(observations, actions, rewards, terminals, timeouts, next_observations=None):
    observations = np.asarray(observations, np.float32)
    if next_observations is None:  # each row's s' is the next row's s (the last: its own)
        next_observations = np.concatenate([observations[1:], observations[-1:]])
    return Dataset(
        observations=observations,
        actions=np.asarray(actions, np.float32),
        rewards=np.asarray(rewards, np.float32),
        next_observations=np.asarray(next_observations, np.float32),
        terminals=np.asarray(terminals, bool),
        timeouts=np.asarray(timeouts, bool),
    )


def _batch(seed: int = 0, n: int = BATCH) -> Transition:
    rng = np.random.default_rng(seed)
    return jax.device_put(
        Transition(
            observation=rng.normal(size=(n, OBS_DIM)).astype(np.float32),
            action=rng.uniform(-1, 1, size=(n, ACT_DIM)).astype(np.float32),
            reward=rng.normal(size=(n,)).astype(np.float32),
            discount=(0.99 * (rng.uniform(size=(n,)) > 0.2)).astype(np.float32),
            next_observation=rng.normal(size=(n, OBS_DIM)).astype(np.float32),
            extras={"next_action": rng.uniform(-1, 1, size=(n, ACT_DIM)).astype(np.float32)},
        )
    )


def _state(config: QRegConfig, seed: int = 0) -> learning.TrainingState:
    networks = make_networks(ENV_SPEC, config)
    state, *_ = learning.init_training_state(networks, config, ENV_SPEC, jax.random.PRNGKey(seed))
    # Targets and Q_sarsa different from the online networks, so each term is distinguishable.
    other, *_ = learning.init_training_state(networks, config, ENV_SPEC, jax.random.PRNGKey(99))
    return state._replace(
        target_policy_params=other.policy_params,
        target_critic_params=other.critic_params,
        target_sarsa_params=other.sarsa_params,
    )


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(tree)])


# ------------------------------------------------------------------------------------------------
# The data: (s, a, r, d, s', a') inside episodes


def test_next_actions_inside_episodes_terminals_kept_timeouts_and_the_open_tail_dropped():
    # Episode 1: rows 0-2, true terminal at 2. Episode 2: rows 3-5, time-limit cut at 5.
    # Rows 6-7: an episode the file ends inside (no end flag).
    actions = np.arange(16, dtype=np.float32).reshape(8, 2)
    observations = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    terminals = [0, 0, 1, 0, 0, 0, 0, 0]
    timeouts = [0, 0, 0, 0, 0, 1, 0, 0]
    next_obs = np.concatenate([observations[1:], observations[-1:]])
    next_obs[2] = -1.0  # a terminal's and a cut's s' are not the next row's s
    next_obs[5] = -2.0
    data = _dataset(observations, actions, np.ones(8), terminals, timeouts, next_obs)
    next_actions, keep = offline.sarsa_next_actions(data)
    np.testing.assert_array_equal(keep, [1, 1, 1, 1, 1, 0, 1, 0])
    np.testing.assert_array_equal(next_actions[[0, 1, 3, 4, 6]], actions[[1, 2, 4, 5, 7]])
    np.testing.assert_array_equal(next_actions[2], 0.0)  # terminal: discount 0, never read

    rows = offline.device_sarsa_transitions(data, discount=0.9)
    np.testing.assert_array_equal(rows.action, actions[[0, 1, 2, 3, 4, 6]])
    np.testing.assert_array_equal(rows.extras["next_action"], next_actions[[0, 1, 2, 3, 4, 6]])
    np.testing.assert_allclose(rows.discount, [0.9, 0.9, 0.0, 0.9, 0.9, 0.9])


def test_a_shuffled_file_is_refused_in_one_line():
    rng = np.random.default_rng(0)
    observations = rng.normal(size=(10, 3))
    data = _dataset(observations, rng.normal(size=(10, 2)), np.ones(10), [0] * 9 + [1], [0] * 10)
    offline.sarsa_next_actions(data)  # in order: fine
    order = rng.permutation(10)
    shuffled = _dataset(
        observations[order],
        data.actions[order],
        np.ones(10),
        np.asarray(data.terminals)[order],
        [0] * 10,
        next_observations=data.next_observations[order],
    )
    with pytest.raises(DatasetError, match="not consecutive steps") as error:
        offline.sarsa_next_actions(shuffled)
    assert "\n" not in str(error.value)


# ------------------------------------------------------------------------------------------------
# Q_sarsa


def test_sarsa_target_uses_the_logged_next_action():
    config = QRegConfig(**SMALL)
    networks = make_networks(ENV_SPEC, config)
    state = _state(config)
    batch = _batch()
    loss, _ = learning.make_sarsa_loss(networks)(
        state.sarsa_params, state.target_sarsa_params, batch
    )
    next_q = networks.sarsa_apply(
        state.target_sarsa_params, batch.next_observation, batch.extras["next_action"]
    )
    y = np.asarray(batch.reward) + np.asarray(batch.discount) * np.asarray(next_q)
    q = np.asarray(networks.sarsa_apply(state.sarsa_params, batch.observation, batch.action))
    np.testing.assert_allclose(float(loss), np.mean((q - y) ** 2), rtol=1e-5)
    other = batch._replace(extras={"next_action": -batch.extras["next_action"]})
    changed, _ = learning.make_sarsa_loss(networks)(
        state.sarsa_params, state.target_sarsa_params, other
    )
    assert abs(float(changed) - float(loss)) > 1e-4  # the target reads a', not pi(s')


def test_sarsa_converges_to_the_logged_returns_of_a_hand_built_episode():
    """A 3-step episode ending in a true terminal, rewards 1, 2, 4, gamma 0.5: Q_sarsa at the
    logged actions must reach 1 + 0.5 * (2 + 0.5 * 4) = 3, 2 + 0.5 * 4 = 4 and 4."""
    observations = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    actions = np.array([[0.5, -0.5], [-0.2, 0.3], [0.9, 0.1]], np.float32)
    next_obs = np.concatenate([observations[1:], np.zeros((1, 3), np.float32)])
    data = _dataset(observations, actions, [1.0, 2.0, 4.0], [0, 0, 1], [0, 0, 0], next_obs)
    rows = offline.device_sarsa_transitions(data, discount=0.5)
    config = QRegConfig(
        reg="critic", sarsa_steps=10**9, tau=0.05, sarsa_learning_rate=3e-3, **SMALL
    )
    networks = make_networks(ENV_SPEC, config)
    state, p_opt, c_opt, s_opt = learning.init_training_state(
        networks, config, ENV_SPEC, jax.random.PRNGKey(0)
    )
    step = jax.jit(learning.make_sgd_step(networks, config, p_opt, c_opt, s_opt))
    for _ in range(1500):
        state, metrics = step(state, rows)
    q = networks.sarsa_apply(state.sarsa_params, rows.observation, rows.action)
    np.testing.assert_allclose(np.asarray(q), [3.0, 4.0, 4.0], atol=0.05)
    assert np.isnan(float(metrics["critic_loss"]))  # pre-training: TD3 did not run


# ------------------------------------------------------------------------------------------------
# The regularisers


def test_critic_regulariser_value_and_gradient_by_hand():
    config = QRegConfig(reg="critic", reg_weight=0.7, policy_noise=0.0, **SMALL)
    networks = make_networks(ENV_SPEC, config)
    state, batch, key = _state(config), _batch(), jax.random.PRNGKey(3)
    critic_loss, _ = learning.make_losses(networks, config)
    loss, metrics = critic_loss(state.critic_params, state, batch, key)

    pi = networks.policy_apply(state.policy_params, batch.observation)
    anchor = networks.sarsa_apply(state.sarsa_params, batch.observation, pi)
    next_a = networks.policy_apply(state.target_policy_params, batch.next_observation)
    tq1, tq2 = networks.critic_apply(state.target_critic_params, batch.next_observation, next_a)
    y = batch.reward + batch.discount * jnp.minimum(tq1, tq2)

    def by_hand(critic_params):
        q1, q2 = networks.critic_apply(critic_params, batch.observation, batch.action)
        p1, p2 = networks.critic_apply(critic_params, batch.observation, pi)
        td = jnp.mean((q1 - y) ** 2) + jnp.mean((q2 - y) ** 2)
        penalty = jnp.mean((p1 - anchor) ** 2) + jnp.mean((p2 - anchor) ** 2)
        return td + 0.7 * penalty, penalty

    expected, penalty = by_hand(state.critic_params)
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["critic_reg"]), float(penalty), rtol=1e-5)
    assert float(penalty) > 1e-3
    grads = jax.grad(lambda p: critic_loss(p, state, batch, key)[0])(state.critic_params)
    want = jax.grad(lambda p: by_hand(p)[0])(state.critic_params)
    np.testing.assert_allclose(_flat(grads), _flat(want), rtol=1e-4, atol=1e-6)
    # Nothing flows into the actor or Q_sarsa through the penalty.
    to_policy = jax.grad(
        lambda p: critic_loss(state.critic_params, state._replace(policy_params=p), batch, key)[0]
    )(state.policy_params)
    to_sarsa = jax.grad(
        lambda p: critic_loss(state.critic_params, state._replace(sarsa_params=p), batch, key)[0]
    )(state.sarsa_params)
    assert not np.any(_flat(to_policy)) and not np.any(_flat(to_sarsa))


def test_target_regulariser_blends_q_sarsa_into_the_bootstrap():
    config = QRegConfig(reg="target", reg_weight=0.25, policy_noise=0.0, **SMALL)
    networks = make_networks(ENV_SPEC, config)
    state, batch, key = _state(config), _batch(), jax.random.PRNGKey(3)
    critic_loss, _ = learning.make_losses(networks, config)
    loss, _ = critic_loss(state.critic_params, state, batch, key)
    next_a = networks.policy_apply(state.target_policy_params, batch.next_observation)
    tq1, tq2 = networks.critic_apply(state.target_critic_params, batch.next_observation, next_a)
    sarsa = networks.sarsa_apply(state.sarsa_params, batch.next_observation, next_a)
    y = batch.reward + batch.discount * (0.75 * jnp.minimum(tq1, tq2) + 0.25 * sarsa)
    q1, q2 = networks.critic_apply(state.critic_params, batch.observation, batch.action)
    expected = jnp.mean((q1 - y) ** 2) + jnp.mean((q2 - y) ** 2)
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)


@pytest.mark.parametrize("use_bc", [False, True])
def test_actor_regulariser_value_and_gradient_by_hand(use_bc):
    config = QRegConfig(reg="critic_actor", actor_reg_weight=0.5, use_bc=use_bc, **SMALL)
    networks = make_networks(ENV_SPEC, config)
    state, batch = _state(config), _batch()
    _, policy_loss = learning.make_losses(networks, config)
    loss, metrics = policy_loss(state.policy_params, state.critic_params, state, batch)

    def by_hand(policy_params, q_scale=None):
        action = networks.policy_apply(policy_params, batch.observation)
        q = networks.q1(state.critic_params, batch.observation, action)
        anchor = networks.sarsa_apply(state.sarsa_params, batch.observation, action)
        scale = jnp.mean(jnp.abs(q)) if q_scale is None else q_scale
        base = -jnp.mean(q)
        if use_bc:
            base = -2.5 / scale * jnp.mean(q) + jnp.mean((action - batch.action) ** 2)
        return base + 0.5 * jnp.mean((q - anchor) ** 2) / scale

    q_scale = float(
        jnp.mean(
            jnp.abs(
                networks.q1(
                    state.critic_params,
                    batch.observation,
                    networks.policy_apply(state.policy_params, batch.observation),
                )
            )
        )
    )
    np.testing.assert_allclose(float(loss), float(by_hand(state.policy_params)), rtol=1e-5)
    assert float(metrics["actor_reg"]) > 0
    grads = jax.grad(lambda p: policy_loss(p, state.critic_params, state, batch)[0])(
        state.policy_params
    )
    held = jax.grad(lambda p: by_hand(p, q_scale))(state.policy_params)
    through = jax.grad(by_hand)(state.policy_params)
    np.testing.assert_allclose(_flat(grads), _flat(held), rtol=1e-4, atol=1e-6)
    assert not np.allclose(_flat(grads), _flat(through), rtol=1e-3, atol=1e-5)  # scale is held


@pytest.mark.parametrize("reg", ["critic", "target", "critic_actor"])
def test_lambda_zero_is_offline_td3_exactly(reg):
    """Every variant with lambda = lambda_pi = 0 takes bitwise the steps offline TD3 takes
    (Q_sarsa trained alongside, so its own update runs too but touches nothing else)."""
    fields = dict(reg_weight=0.0, actor_reg_weight=0.0, sarsa_mode="cotrain", **SMALL)
    regularised = QRegConfig(reg=reg, **fields)
    plain = QRegConfig(reg="none", **fields)
    batch = _batch()
    states = {}
    for name, config in (("reg", regularised), ("none", plain)):
        networks = make_networks(ENV_SPEC, config)
        state, p_opt, c_opt, s_opt = learning.init_training_state(
            networks, config, ENV_SPEC, jax.random.PRNGKey(0)
        )
        step = jax.jit(learning.make_sgd_step(networks, config, p_opt, c_opt, s_opt))
        for _ in range(4):  # two actor updates (policy_delay 2)
            state, _ = step(state, batch)
        states[name] = state
    for field in ("policy_params", "critic_params", "target_policy_params", "target_critic_params"):
        np.testing.assert_array_equal(
            _flat(getattr(states["reg"], field)), _flat(getattr(states["none"], field))
        )
    assert states["none"].sarsa_params == ()  # reg none has no Q_sarsa at all


def test_a_nonzero_lambda_changes_the_steps():
    batch, moved = _batch(), {}
    for weight in (0.0, 1.0):
        config = QRegConfig(reg="critic", reg_weight=weight, sarsa_mode="cotrain", **SMALL)
        networks = make_networks(ENV_SPEC, config)
        state, p_opt, c_opt, s_opt = learning.init_training_state(
            networks, config, ENV_SPEC, jax.random.PRNGKey(0)
        )
        state, _ = learning.make_sgd_step(networks, config, p_opt, c_opt, s_opt)(state, batch)
        moved[weight] = _flat(state.critic_params)
    assert not np.allclose(moved[0.0], moved[1.0])


# ------------------------------------------------------------------------------------------------
# Schedules


def test_pretraining_moves_only_q_sarsa_then_freezes_it():
    config = QRegConfig(reg="critic", sarsa_steps=3, **SMALL)
    networks = make_networks(ENV_SPEC, config)
    state, p_opt, c_opt, s_opt = learning.init_training_state(
        networks, config, ENV_SPEC, jax.random.PRNGKey(0)
    )
    step = jax.jit(learning.make_sgd_step(networks, config, p_opt, c_opt, s_opt))
    batch = _batch()
    history = [state]
    for _ in range(6):
        state, metrics = step(state, batch)
        history.append(state)
    for before, after in zip(history[:3], history[1:4], strict=True):  # steps 1-3: Q_sarsa only
        assert not np.array_equal(_flat(before.sarsa_params), _flat(after.sarsa_params))
        np.testing.assert_array_equal(_flat(before.critic_params), _flat(after.critic_params))
        np.testing.assert_array_equal(_flat(before.policy_params), _flat(after.policy_params))
    for before, after in zip(history[3:-1], history[4:], strict=True):  # then TD3, Q_sarsa frozen
        np.testing.assert_array_equal(_flat(before.sarsa_params), _flat(after.sarsa_params))
        assert not np.array_equal(_flat(before.critic_params), _flat(after.critic_params))
    assert np.isnan(float(metrics["sarsa_loss"])) and np.isfinite(float(metrics["critic_loss"]))
    assert int(state.steps) == 6
    assert config.pretraining_steps() == 3
    from antiphon.agents.qreg.builder import QRegBuilder

    assert QRegBuilder.pretraining_steps(config) == 3  # the CLI adds these to --steps
    assert QRegConfig(sarsa_mode="cotrain").pretraining_steps() == 0
    assert QRegConfig(reg="none").pretraining_steps() == 0


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(reg="both"), "reg must be one of none, critic, target, critic_actor"),
        (dict(sarsa_mode="later"), "sarsa_mode must be one of"),
        (dict(reg="target", reg_weight=1.5), r"in \[0, 1\]"),
    ],
)
def test_bad_configs_are_refused_in_one_line(fields, message):
    with pytest.raises(ValueError, match=message):
        QRegConfig(**fields).validate()
