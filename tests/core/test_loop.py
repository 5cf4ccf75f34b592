"""EnvironmentLoop with a deterministic toy environment and a recording actor."""

import threading

import dm_env
import numpy as np
from dm_env import specs

from antiphon.core.counting import Counter
from antiphon.core.loop import EnvironmentLoop


class FixedLengthEnv(dm_env.Environment):
    """Episodes of `length` steps, reward 1 per step; the observation is the step index."""

    def __init__(self, length=3):
        self._length = length
        self._t = 0

    def reset(self):
        self._t = 0
        return dm_env.restart(np.float32(0))

    def step(self, action):
        self._t += 1
        if self._t >= self._length:
            return dm_env.termination(1.0, np.float32(self._t))
        return dm_env.transition(1.0, np.float32(self._t))

    def observation_spec(self):
        return specs.Array((), np.float32)

    def action_spec(self):
        return specs.DiscreteArray(2)


class RecordingActor:
    def __init__(self):
        self.calls = []

    def select_action(self, observation):
        self.calls.append(("select_action", float(observation)))
        return 0

    def observe_first(self, timestep):
        self.calls.append(("observe_first", timestep.step_type))

    def observe(self, action, next_timestep):
        self.calls.append(("observe", next_timestep.step_type))

    def update(self, wait=False):
        self.calls.append(("update", wait))


class ListLogger:
    def __init__(self):
        self.rows = []

    def write(self, values):
        self.rows.append(dict(values))

    def close(self):
        pass


class Observer:
    def __init__(self):
        self.actions = []

    def observe_first(self, env, timestep):
        self.actions = []

    def observe(self, env, timestep, action):
        self.actions.append(action)

    def get_metrics(self):
        return {"num_actions": len(self.actions)}


def _loop(length=3, **kwargs):
    actor, logger = RecordingActor(), ListLogger()
    kwargs.setdefault("counter", Counter())
    loop = EnvironmentLoop(FixedLengthEnv(length), actor, logger=logger, **kwargs)
    return loop, actor, logger


def test_episode_call_sequence_and_result():
    loop, actor, logger = _loop(observers=[Observer()])
    result = loop.run_episode()
    first, mid, last = dm_env.StepType.FIRST, dm_env.StepType.MID, dm_env.StepType.LAST
    assert actor.calls == [
        ("observe_first", first),
        ("select_action", 0.0),
        ("observe", mid),
        ("update", False),
        ("select_action", 1.0),
        ("observe", mid),
        ("update", False),
        ("select_action", 2.0),
        ("observe", last),
        ("update", False),
    ]
    assert result["episode_length"] == 3
    assert result["episode_return"] == 3.0 and isinstance(result["episode_return"], float)
    assert result["steps"] == 3 and result["episodes"] == 1
    assert result["num_actions"] == 3 and result["steps_per_second"] > 0
    assert logger.rows == [result]


def test_no_update_when_disabled():
    loop, actor, _ = _loop(should_update=False)
    loop.run_episode()
    assert all(name != "update" for name, _ in actor.calls)


def test_counter_is_incremented_per_episode_with_prefix():
    root = Counter()
    loop, _, logger = _loop(length=4, counter=Counter(root, "actor"))
    assert loop.run(num_episodes=3) == 12
    assert root.get_counts() == {"actor_episodes": 3, "actor_steps": 12}
    assert [r["steps"] for r in logger.rows] == [4, 8, 12]


def test_step_budget_stops_between_episodes():
    loop, _, logger = _loop(length=4)
    assert loop.run(num_steps=6) == 8  # the second episode finishes
    assert len(logger.rows) == 2


def test_stop_event_is_honoured():
    stop = threading.Event()

    class StoppingLogger(ListLogger):
        def write(self, values):
            super().write(values)
            if len(self.rows) == 2:
                stop.set()

    actor, logger = RecordingActor(), StoppingLogger()
    loop = EnvironmentLoop(FixedLengthEnv(2), actor, counter=Counter(), logger=logger)
    assert loop.run(stop_event=stop) == 4
    assert len(logger.rows) == 2
    stop.set()
    assert loop.run(num_episodes=5, stop_event=stop) == 0
