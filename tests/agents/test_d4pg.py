"""D4PG learner: target copies, the policy gradient's direction, critic fitting, save/restore."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dm_env import specs

from antiphon.agents.d4pg import acting, learning
from antiphon.agents.d4pg.config import D4PGConfig
from antiphon.agents.d4pg.networks import make_networks
from antiphon.core.types import EnvironmentSpec, Transition

OBS_DIM, ACT_DIM, BATCH = 3, 2, 32
ENV_SPEC = EnvironmentSpec(
    observations=specs.Array((OBS_DIM,), np.float32),
    actions=specs.BoundedArray((ACT_DIM,), np.float32, -1.0, 1.0),
    rewards=specs.Array((), np.float32),
    discounts=specs.BoundedArray((), np.float32, 0.0, 1.0),
)
SMALL = dict(policy_layer_sizes=(32, 32), critic_layer_sizes=(32, 32), num_target_samples=16)


def _batch(key, k: int = 1, reward_fn=None) -> Transition:
    keys = jax.random.split(key, 3)
    obs = jax.random.normal(keys[0], (k, BATCH, OBS_DIM))
    action = jax.random.uniform(keys[1], (k, BATCH, ACT_DIM), minval=-1, maxval=1)
    reward = reward_fn(obs, action) if reward_fn else jnp.ones((k, BATCH))
    return Transition(
        observation=obs,
        action=action,
        reward=reward,
        discount=jnp.zeros((k, BATCH)),  # terminal: the critic must learn the reward itself
        next_observation=jax.random.normal(keys[2], (k, BATCH, OBS_DIM)),
    )


def _learner(config: D4PGConfig, batches) -> learning.D4PGLearner:
    return learning.D4PGLearner(
        make_networks(ENV_SPEC, config), config, ENV_SPEC, iter(batches), jax.random.PRNGKey(0)
    )


@pytest.mark.parametrize("critic_type", ["mog", "c51"])
def test_targets_are_hard_copied_every_period(critic_type):
    config = D4PGConfig(
        critic_type=critic_type, target_update_period=3, sgd_steps_per_call=1, **SMALL
    )
    learner = _learner(config, [_batch(jax.random.PRNGKey(i)) for i in range(4)])
    initial = learner.save()
    for step in range(1, 4):
        learner.step()
        state = learner.save()
        same = jax.tree_util.tree_map(
            np.array_equal, state.target_critic_params, initial.target_critic_params
        )
        equal_online = jax.tree_util.tree_map(
            np.array_equal, state.target_critic_params, state.critic_params
        )
        if step < 3:  # targets untouched before the period ends
            assert all(jax.tree_util.tree_leaves(same))
        else:  # at step 3 the targets equal the online networks
            assert all(jax.tree_util.tree_leaves(equal_online))
            assert all(
                jax.tree_util.tree_leaves(
                    jax.tree_util.tree_map(
                        np.array_equal, state.target_policy_params, state.policy_params
                    )
                )
            )
    assert learner.sgd_steps == 3


@pytest.mark.parametrize("critic_type", ["mog", "c51"])
def test_policy_climbs_a_frozen_critic(critic_type):
    """With the critic frozen (lr 0), DPG steps must raise Q(s, pi(s)) under that critic."""
    config = D4PGConfig(
        critic_type=critic_type,
        critic_learning_rate=0.0,
        policy_learning_rate=1e-2,
        sgd_steps_per_call=10,
        **SMALL,
    )
    networks = make_networks(ENV_SPEC, config)
    batches = [_batch(jax.random.PRNGKey(i), k=10) for i in range(5)]
    learner = learning.D4PGLearner(networks, config, ENV_SPEC, iter(batches), jax.random.PRNGKey(1))
    # A critic that prefers particular actions: train nothing, but make it non-trivial by
    # perturbing the initial critic parameters.
    state = learner.save()
    critic = jax.tree_util.tree_map(
        lambda p: p + 0.5 * jax.random.normal(jax.random.PRNGKey(7), p.shape), state.critic_params
    )
    learner.restore(state._replace(critic_params=critic, target_critic_params=critic))
    obs = batches[0].observation[0]

    def q_of_policy():
        s = learner.save()
        action = networks.policy_apply(s.policy_params, obs)
        return float(
            jnp.mean(networks.critic_mean(networks.critic_apply(s.critic_params, obs, action)))
        )

    before = q_of_policy()
    for _ in range(5):
        learner.step()
    after = q_of_policy()
    assert after > before + 1e-3, (before, after)
    # ... and the critic really was frozen
    np.testing.assert_allclose(
        jax.tree_util.tree_leaves(learner.save().critic_params)[0],
        jax.tree_util.tree_leaves(critic)[0],
    )


@pytest.mark.parametrize("critic_type", ["mog", "c51"])
def test_critic_learns_a_terminal_reward(critic_type):
    """discount 0, reward = 2 * a_0: the critic's mean must approach the reward."""
    config = D4PGConfig(
        critic_type=critic_type,
        critic_learning_rate=3e-3,
        v_min=-5.0,
        v_max=5.0,
        sgd_steps_per_call=50,
        init_scale=0.5,
        **SMALL,
    )
    networks = make_networks(ENV_SPEC, config)

    def reward_fn(obs, action):
        return 2.0 * action[..., 0]

    batches = [_batch(jax.random.PRNGKey(i), k=50, reward_fn=reward_fn) for i in range(12)]
    learner = learning.D4PGLearner(networks, config, ENV_SPEC, iter(batches), jax.random.PRNGKey(1))
    for _ in range(12):
        learner.step()
    test = _batch(jax.random.PRNGKey(99), reward_fn=reward_fn)
    state = learner.save()
    q = networks.critic_mean(
        networks.critic_apply(state.critic_params, test.observation[0], test.action[0])
    )
    error = float(jnp.mean(jnp.abs(q - test.reward[0])))
    assert error < 0.25, error


def test_save_restore_round_trip_continues_identically():
    config = D4PGConfig(sgd_steps_per_call=2, **SMALL)
    batches = [_batch(jax.random.PRNGKey(i), k=2) for i in range(4)]
    a = _learner(config, batches)
    a.step()
    b = _learner(config, batches[1:])
    b.restore(a.save())
    a.step()
    b.step()
    for x, y in zip(
        jax.tree_util.tree_leaves(a.save()), jax.tree_util.tree_leaves(b.save()), strict=True
    ):
        np.testing.assert_array_equal(x, y)


def test_behaviour_policy_adds_noise_and_stays_in_bounds():
    config = D4PGConfig(sigma=0.8, **SMALL)
    networks = make_networks(ENV_SPEC, config)
    policy_params, _ = networks.init(jax.random.PRNGKey(0), ENV_SPEC)
    obs = np.zeros(OBS_DIM, np.float32)
    greedy = acting.make_policy(networks, sigma=0.0)
    noisy = acting.make_policy(networks, sigma=config.sigma)
    g1, _ = greedy(policy_params, obs, (), jax.random.PRNGKey(1))
    g2, _ = greedy(policy_params, obs, (), jax.random.PRNGKey(2))
    np.testing.assert_array_equal(g1, g2)
    actions = np.stack(
        [noisy(policy_params, obs, (), jax.random.PRNGKey(i))[0] for i in range(200)]
    )
    assert actions.min() >= -1.0 and actions.max() <= 1.0
    assert actions.std() > 0.3


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="v_min"):
        D4PGConfig(v_min=1.0, v_max=0.0).validate()
    with pytest.raises(ValueError, match="n_step"):
        dataclasses.replace(D4PGConfig(), n_step=0).validate()


@pytest.mark.parametrize("clip", [None, 1.0, 0.3])
def test_batched_dpg_loss_equals_rlax(clip):
    import rlax

    action = jax.random.uniform(jax.random.PRNGKey(0), (16, 3), minval=-1, maxval=1)
    dqda = 3.0 * jax.random.normal(jax.random.PRNGKey(1), (16, 3))
    ours = learning.dpg_loss(action, dqda, clip)
    reference = jax.vmap(rlax.dpg_loss, in_axes=(0, 0, None))(action, dqda, clip)
    np.testing.assert_allclose(ours, reference, rtol=1e-5)
    # and the gradient w.r.t. the action is -g (clipped)
    grad = jax.grad(lambda a: jnp.mean(learning.dpg_loss(a, dqda, clip)))(action)
    ref_grad = jax.grad(
        lambda a: jnp.mean(jax.vmap(rlax.dpg_loss, in_axes=(0, 0, None))(a, dqda, clip))
    )(action)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5)
