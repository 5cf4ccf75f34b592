"""Vector rewards: the task reward and the action cost per environment step on real DM Control
physics, summed over the action repeat, and refused names."""

from __future__ import annotations

import numpy as np
import pytest

from antiphon.environments import make_environment
from antiphon.environments.registry import environment_factory

ENV = "dmc:cartpole-swingup"


def test_task_and_action_cost_match_the_scalar_environment_step_by_step():
    plain = make_environment(ENV, seed=3)
    multi = make_environment(ENV, seed=3, objectives=("task", "action_cost"))
    assert multi.reward_spec().shape == (2,)
    assert multi.reward_spec().dtype == np.float32
    first = multi.reset()
    plain.reset()
    assert first.reward is None
    rng = np.random.default_rng(0)
    for _ in range(20):
        action = rng.uniform(-1, 1, size=(1,)).astype(np.float32)
        expected = plain.step(action)
        got = multi.step(action)
        np.testing.assert_allclose(got.reward[0], expected.reward, rtol=1e-6)
        np.testing.assert_allclose(
            got.reward[1], -np.sum(action.astype(np.float64) ** 2), rtol=1e-6
        )
        np.testing.assert_array_equal(got.observation, expected.observation)
        assert got.discount == expected.discount


def test_order_follows_the_names_and_the_repeat_sums_each_objective():
    env = make_environment(ENV, seed=1, action_repeat=3, objectives=("action_cost", "task"))
    plain = make_environment(ENV, seed=1, action_repeat=3)
    env.reset()
    plain.reset()
    action = np.array([0.5], np.float32)
    got, expected = env.step(action), plain.step(action)
    np.testing.assert_allclose(got.reward[0], -3 * 0.25, rtol=1e-6)  # three steps of -0.25
    np.testing.assert_allclose(got.reward[1], expected.reward, rtol=1e-6)


def test_a_factory_carries_the_objectives_to_every_copy():
    factory = environment_factory(ENV, objectives=["task", "action_cost"])
    assert factory(0).reward_spec().shape == (2,)


@pytest.mark.parametrize("objectives", [("task", "energy"), ("task", "task"), ()])
def test_unknown_repeated_or_no_objectives_are_refused(objectives):
    with pytest.raises(
        ValueError, match="objectives must be distinct names from task, action_cost"
    ):
        make_environment(ENV, objectives=objectives)
