"""Gymnasium -> dm_env: specs, termination vs truncation, seeding."""

from __future__ import annotations

from collections import OrderedDict

import gymnasium
import numpy as np
import pytest
from dm_env import specs
from gymnasium import spaces

from antiphon.environments import make_environment
from antiphon.environments.gym import GymnasiumToDmEnv, space_to_spec


def test_pendulum_truncates_at_200_with_discount_one():
    env = make_environment("gym:Pendulum-v1", seed=0)
    assert env.observation_spec().shape == (3,)
    assert env.observation_spec().dtype == np.float32
    action_spec = env.action_spec()
    assert isinstance(action_spec, specs.BoundedArray) and action_spec.dtype == np.float32
    np.testing.assert_array_equal(action_spec.minimum, [-1.0])
    np.testing.assert_array_equal(action_spec.maximum, [1.0])

    timestep = env.reset()
    assert timestep.first()
    steps = 0
    while not timestep.last():
        timestep = env.step(np.ones(1, np.float32))
        steps += 1
        assert timestep.reward.dtype == np.float32
    assert steps == 200
    assert timestep.discount == 1.0
    # dm_env convention: stepping after LAST starts a new episode
    assert env.step(np.zeros(1, np.float32)).first()


def test_a_gymnasium_mujoco_task_makes_and_ends_with_a_true_terminal():
    """gym:InvertedPendulum-v5 (MuJoCo): the pole falls under zero force, and a fall is a true
    terminal (discount 0), not a time-limit cut."""
    env = make_environment("gym:InvertedPendulum-v5", seed=0)
    assert env.observation_spec().shape == (4,)
    timestep = env.reset()
    steps = 0
    while not timestep.last():
        timestep = env.step(np.zeros(1, np.float32))
        steps += 1
    assert 0 < steps < 1000 and timestep.discount == 0.0


def test_pendulum_actions_are_rescaled():
    env = make_environment("gym:Pendulum-v1", seed=0)
    inner = env.environment.environment  # SinglePrecision -> Canonical -> GymnasiumToDmEnv
    assert isinstance(inner, GymnasiumToDmEnv)
    seen = []
    original_step = inner.gym_env.step
    inner.gym_env.step = lambda a: (seen.append(np.array(a)), original_step(a))[1]
    env.reset()
    env.step(np.array([0.5], np.float32))
    env.step(np.array([3.0], np.float32))
    np.testing.assert_allclose(seen[0], [1.0])  # 0.5 in [-1, 1] -> 1.0 in [-2, 2]
    np.testing.assert_allclose(seen[1], [2.0])  # clipped
    assert seen[0].dtype == np.float32


def test_cartpole_terminates_with_discount_zero():
    env = make_environment("gym:CartPole-v1", seed=0)
    spec = env.action_spec()
    assert isinstance(spec, specs.DiscreteArray) and spec.num_values == 2
    timestep = env.reset()
    steps = 0
    while not timestep.last():
        timestep = env.step(1)  # always push right: falls within a few dozen steps
        steps += 1
    assert steps < 100
    assert timestep.discount == 0.0
    assert timestep.reward == 1.0


def test_seed_applies_to_first_reset():
    a = make_environment("gym:CartPole-v1", seed=11)
    b = make_environment("gym:CartPole-v1", seed=11)
    first_a, first_b = a.reset().observation, b.reset().observation
    np.testing.assert_array_equal(first_a, first_b)
    # later resets continue the seeded stream (not the same start again), identically
    second_a, second_b = a.reset().observation, b.reset().observation
    np.testing.assert_array_equal(second_a, second_b)
    assert not np.array_equal(first_a, second_a)


def test_space_conversion():
    assert space_to_spec(spaces.Discrete(4), "a") == specs.DiscreteArray(4, name="a")
    box = space_to_spec(spaces.Box(0, 255, (2, 2), np.uint8), "image")
    assert box.dtype == np.uint8 and box.shape == (2, 2)
    nested = space_to_spec(
        # an OrderedDict keeps its order in gymnasium (a plain dict would be sorted)
        spaces.Dict(OrderedDict(b=spaces.Box(-1, 1, (2,), np.float64), a=spaces.Discrete(3))),
        "obs",
    )
    assert list(nested) == ["b", "a"]
    assert nested["b"].dtype == np.float32
    with pytest.raises(NotImplementedError):
        space_to_spec(spaces.Text(5), "text")


def test_discrete_start_offset():
    class Offset(gymnasium.Env):
        observation_space = spaces.Discrete(3, start=10)
        action_space = spaces.Discrete(2, start=-1)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return 11, {}

        def step(self, action):
            self.last_action = action
            return 12, 0.5, False, True, {"k": 1}

    env = GymnasiumToDmEnv(Offset(), seed=0)
    assert env.reset().observation == 1
    timestep = env.step(np.int32(0))
    assert env.gym_env.last_action == -1
    assert timestep.observation == 2 and timestep.last() and timestep.discount == 1.0
    assert env.info == {"k": 1}
