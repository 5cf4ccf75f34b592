"""The vector environments on real environments: the subprocess backend (spawned workers) gives
exactly the serial backend's timesteps for the same seeds and actions, also when only some
environments step; a worker's error reaches the parent with its traceback; `info(i)` reports
the inner steps under action repeat and a goal environment's success; close() ends the workers.

Keep this module's imports light: spawned workers import it to unpickle `_bad_factory`.
"""

from __future__ import annotations

import functools
import multiprocessing as mp

import dm_env
import numpy as np
import pytest

from antiphon.environments import make_environment
from antiphon.environments.vector import (
    EnvironmentWorkerError,
    SerialVectorEnvironment,
    SubprocessVectorEnvironment,
    make_vector_environment,
)

CARTPOLE = "dmc:cartpole-swingup"
SEEDS = (3, 7, 11)
# 10 control steps (0.01 s each), so episodes end and restart inside the test.
SHORT = {"task_kwargs": {"time_limit": 0.1}}

# MiniGrid-Empty-5x5: the agent starts at (1, 1) facing east, the goal is at (3, 3).
FORWARD, RIGHT, LEFT = 2, 1, 0
TO_THE_GOAL = [FORWARD, FORWARD, RIGHT, FORWARD, FORWARD]


def _bad_factory() -> dm_env.Environment:
    raise ValueError("boom")


def _cartpole_factories(seeds=SEEDS, **kwargs):
    return [functools.partial(make_environment, CARTPOLE, seed=s, **kwargs) for s in seeds]


def _workers() -> list:
    return [p for p in mp.active_children() if p.name.startswith("antiphon-env-worker-")]


def _assert_same_timestep(got: dm_env.TimeStep, want: dm_env.TimeStep, where) -> None:
    assert got.step_type == want.step_type, where
    for field in ("reward", "discount"):
        g, w = getattr(got, field), getattr(want, field)
        assert (g is None) == (w is None), (where, field)
        if w is not None:
            np.testing.assert_array_equal(np.asarray(g), np.asarray(w), err_msg=str(where))
            assert np.asarray(g).dtype == np.asarray(w).dtype, (where, field)
    np.testing.assert_array_equal(got.observation, want.observation, err_msg=str(where))
    assert got.observation.dtype == want.observation.dtype


@pytest.fixture(scope="module")
def cartpoles():
    """The same three short-episode cartpoles, serial and over two worker processes."""
    serial = SerialVectorEnvironment([f() for f in _cartpole_factories(**SHORT)])
    subprocess = SubprocessVectorEnvironment(_cartpole_factories(**SHORT), num_workers=2)
    yield serial, subprocess
    serial.close()
    subprocess.close()


def test_subprocess_matches_serial_for_the_same_seeds_and_actions(cartpoles):
    serial, subprocess = cartpoles
    assert serial.num_envs == subprocess.num_envs == 3
    assert subprocess.observation_spec() == serial.observation_spec()
    assert subprocess.action_spec() == serial.action_spec()
    assert subprocess.reward_spec() == serial.reward_spec()
    assert subprocess.discount_spec() == serial.discount_spec()

    firsts = []
    for i in range(3):
        want, got = serial.reset(i), subprocess.reset(i)
        _assert_same_timestep(got, want, ("reset", i))
        firsts.append(want.observation)
    # Different seeds, different initial states (the comparison is not of three copies).
    assert not np.array_equal(firsts[0], firsts[1])

    rng = np.random.default_rng(0)
    shape = serial.action_spec().shape
    # All three, a subset living in one worker, one in each worker, a reversed order, ...
    schedule = [[0, 1, 2], [0, 2], [1], [2, 0], [0, 1, 2], [1, 2], [0]] * 4
    steps = [0, 0, 0]
    ends = 0
    for t, indices in enumerate(schedule):
        actions = [rng.uniform(-1, 1, shape).astype(np.float32) for _ in indices]
        want = serial.step(indices, actions)
        got = subprocess.step(indices, actions)
        assert len(got) == len(want) == len(indices)
        for i, g, w in zip(indices, got, want, strict=True):
            _assert_same_timestep(g, w, ("step", t, i))
            steps[i] += 1
            if w.last():
                ends += 1
                _assert_same_timestep(subprocess.reset(i), serial.reset(i), ("reset", t, i))
    assert steps == [20, 16, 20] and ends == 5  # episodes ended (and restarted) along the way

    # The subset steps left the others alone: one more step of each still agrees.
    actions = [np.full(shape, 0.5, np.float32)] * 3
    for i, (g, w) in enumerate(
        zip(subprocess.step([0, 1, 2], actions), serial.step([0, 1, 2], actions), strict=True)
    ):
        _assert_same_timestep(g, w, ("final", i))


def test_a_factory_error_in_a_worker_is_raised_in_the_parent_with_its_traceback():
    before = set(_workers())
    with pytest.raises(EnvironmentWorkerError) as caught:
        SubprocessVectorEnvironment(
            [functools.partial(make_environment, CARTPOLE, seed=0), _bad_factory],
            num_workers=2,
        )
    message = str(caught.value)
    assert "Traceback (most recent call last)" in message
    assert "ValueError: boom" in message
    assert "_bad_factory" in message
    # The worker that did build its environment is not left behind.
    assert set(_workers()) <= before


def test_an_environment_error_during_a_step_is_raised_in_the_parent():
    environment = SubprocessVectorEnvironment(
        [functools.partial(make_environment, "minigrid:MiniGrid-Empty-5x5-v0", seed=0)]
    )
    try:
        environment.reset(0)
        with pytest.raises(EnvironmentWorkerError, match="outside 0..6"):
            environment.step([0], [np.int32(99)])
    finally:
        environment.close()


@pytest.mark.parametrize("backend", ["serial", "subprocess"])
def test_info_counts_inner_steps_under_action_repeat(backend):
    environment = make_vector_environment(
        _cartpole_factories(seeds=(1, 2), action_repeat=2, **SHORT),
        backend=backend,
        num_workers=2,
    )
    try:
        environment.reset(0)
        environment.reset(1)
        assert environment.info(0)["environment_steps"] == 0
        action = [np.zeros((1,), np.float32)]
        for k in range(1, 4):
            environment.step([0], action)
            assert environment.info(0)["environment_steps"] == 2 * k
            assert environment.info(1)["environment_steps"] == 0
        environment.step([0, 1], action * 2)
        assert environment.info(0)["environment_steps"] == 8
        assert environment.info(1)["environment_steps"] == 2
        # Five repeated steps end the 10-step episode; the count goes on across resets.
        for _ in range(4):
            last = environment.step([1], action)[0]
        assert last.last()
        assert environment.info(1)["environment_steps"] == 10
        environment.reset(1)
        environment.step([1], action)
        assert environment.info(1)["environment_steps"] == 12
        assert "episode_success" not in environment.info(1)
    finally:
        environment.close()


@pytest.mark.parametrize("backend", ["serial", "subprocess"])
def test_info_reports_episode_success_after_the_episode_ends(backend):
    environment = make_vector_environment(
        [
            functools.partial(make_environment, "minigrid:MiniGrid-Empty-5x5-v0", seed=0),
            functools.partial(
                make_environment, "minigrid:MiniGrid-Empty-5x5-v0", seed=1, max_steps=3
            ),
        ],
        backend=backend,
        num_workers=2,
    )
    try:
        for i in range(2):
            environment.reset(i)
            assert "episode_success" not in environment.info(i)  # no episode has ended
            assert "environment_steps" not in environment.info(i)  # no action repeat
        for t, action in enumerate(TO_THE_GOAL):
            goal, timeout = environment.step([0, 1], [np.int32(action), np.int32(LEFT)])
            if t == 2:  # the 3-step episode ran out of time without reaching the goal
                assert timeout.last() and timeout.discount == 1.0
                assert environment.info(1)["episode_success"] is False
                environment.reset(1)
                assert "episode_success" not in environment.info(1)
            if t < len(TO_THE_GOAL) - 1:
                assert goal.mid()
                assert "episode_success" not in environment.info(0)
        assert goal.last() and goal.reward > 0 and goal.discount == 0.0
        assert environment.info(0)["episode_success"] is True
        environment.reset(0)
        assert "episode_success" not in environment.info(0)
    finally:
        environment.close()


def test_close_ends_the_worker_processes():
    before = set(_workers())
    environment = SubprocessVectorEnvironment(_cartpole_factories(), num_workers=2)
    workers = [w for w in _workers() if w not in before]
    assert len(workers) == 2 and all(w.is_alive() for w in workers)
    environment.reset(0)
    environment.step([0], [np.zeros((1,), np.float32)])
    environment.close()
    assert not any(w.is_alive() for w in workers)
    assert [w.exitcode for w in workers] == [0, 0]  # they left on "close", not terminated
    assert set(_workers()) <= before
    environment.close()  # a second close is harmless
