"""Exact checks of the wrappers on a tiny hand-written dm_env environment."""

from __future__ import annotations

import copy
import pickle
from collections import OrderedDict

import dm_env
import numpy as np
import pytest
from dm_env import specs

from antiphon.environments import wrappers


class ToyEnv(dm_env.Environment):
    """Episode of `length` steps; step t (1-based) gives reward t and discount `discounts[t-1]`.

    Observations are an OrderedDict in deliberately unsorted key order; actions are 2-D in [0, 4].
    Every action received is recorded in `self.actions`.
    """

    def __init__(
        self, length: int = 5, discounts: list[float] | None = None, terminal_discount: float = 0.0
    ):
        self.length = length
        self.discounts = discounts or [1.0] * length
        self.terminal_discount = terminal_discount
        self.actions: list[np.ndarray] = []
        self.t = 0
        self.closed = False
        self.custom_attribute = "forwarded"

    def _observation(self) -> OrderedDict:
        return OrderedDict(
            zeta=np.array([self.t, self.t + 0.5], np.float64),
            alpha=np.float64(-self.t),
            mid=np.arange(4, dtype=np.float64).reshape(2, 2) + 10 * self.t,
        )

    def reset(self) -> dm_env.TimeStep:
        self.t = 0
        return dm_env.restart(self._observation())

    def step(self, action) -> dm_env.TimeStep:
        if self.t >= self.length:
            return self.reset()
        self.actions.append(np.array(action))
        self.t += 1
        reward = float(self.t)
        if self.t == self.length:
            return dm_env.TimeStep(
                dm_env.StepType.LAST, reward, self.terminal_discount, self._observation()
            )
        return dm_env.transition(reward, self._observation(), self.discounts[self.t - 1])

    def observation_spec(self):
        return OrderedDict(
            zeta=specs.Array((2,), np.float64, name="zeta"),
            alpha=specs.Array((), np.float64, name="alpha"),
            mid=specs.Array((2, 2), np.float64, name="mid"),
        )

    def action_spec(self):
        return specs.BoundedArray((2,), np.float64, minimum=0.0, maximum=4.0, name="action")

    def close(self) -> None:
        self.closed = True


class DiscreteToyEnv(ToyEnv):
    def action_spec(self):
        return specs.DiscreteArray(3, name="action")


# --------------------------------------------------------------------------------------------


def test_base_wrapper_forwards_everything():
    inner = ToyEnv()
    env = wrappers.EnvironmentWrapper(inner)
    assert env.environment is inner
    assert env.custom_attribute == "forwarded"
    assert env.action_spec() == inner.action_spec()
    assert env.observation_spec().keys() == inner.observation_spec().keys()
    assert env.reward_spec() == inner.reward_spec()
    assert env.discount_spec() == inner.discount_spec()
    assert env.reset().first()
    assert env.step(np.zeros(2)).reward == 1.0
    with pytest.raises(AttributeError):
        env.no_such_attribute  # noqa: B018
    env.close()
    assert inner.closed
    # copy/pickle probe attributes before __init__ runs: must not recurse.
    copy.copy(env)
    pickle.loads(pickle.dumps(env))


def test_flatten_order_dtype_and_shape():
    env = wrappers.ObservationFlattenWrapper(ToyEnv())
    spec = env.observation_spec()
    assert spec == specs.Array((7,), np.float32, name="observations")
    first = env.reset().observation
    np.testing.assert_array_equal(first, [0, 0.5, -0, 0, 1, 2, 3])
    obs = env.step(np.zeros(2)).observation
    assert obs.dtype == np.float32 and obs.shape == (7,)
    # spec key order (zeta, alpha, mid), not sorted key order
    np.testing.assert_array_equal(obs, [1, 1.5, -1, 10, 11, 12, 13])
    spec.validate(obs)


@pytest.mark.parametrize(
    "action, expected",
    [(-1.0, 0.0), (0.0, 2.0), (1.0, 4.0), (2.0, 4.0), (-3.0, 0.0), (0.5, 3.0)],
)
def test_canonical_action_mapping(action, expected):
    inner = ToyEnv()
    env = wrappers.CanonicalActionWrapper(inner)
    env.reset()
    env.step(np.full(2, action))
    np.testing.assert_allclose(inner.actions[-1], [expected, expected])
    assert inner.actions[-1].dtype == np.float64


def test_canonical_action_spec_and_per_dimension_values():
    inner = ToyEnv()
    env = wrappers.CanonicalActionWrapper(inner)
    spec = env.action_spec()
    assert isinstance(spec, specs.BoundedArray)
    assert spec.shape == (2,) and spec.name == "action"
    np.testing.assert_array_equal(spec.minimum, [-1, -1])
    np.testing.assert_array_equal(spec.maximum, [1, 1])
    env.reset()
    env.step(np.array([-1.0, 2.0]))
    np.testing.assert_array_equal(inner.actions[-1], [0.0, 4.0])


def test_canonical_action_leaves_discrete_alone():
    inner = DiscreteToyEnv()
    env = wrappers.CanonicalActionWrapper(inner)
    assert env.action_spec() == inner.action_spec()
    env.reset()
    env.step(2)
    assert inner.actions[-1] == 2


def test_single_precision():
    env = wrappers.SinglePrecisionWrapper(wrappers.ObservationFlattenWrapper(ToyEnv()))
    assert env.reward_spec().dtype == np.float32
    assert env.discount_spec().dtype == np.float32
    assert env.discount_spec().maximum == 1.0
    assert env.action_spec().dtype == np.float32
    first = env.reset()
    assert first.reward is None and first.discount is None
    ts = env.step(np.ones(2, np.float32))
    assert ts.observation.dtype == np.float32
    assert ts.reward.dtype == np.float32 and ts.reward == 1.0
    assert ts.discount.dtype == np.float32 and ts.discount == 1.0
    # the wrapped environment still receives its own dtype
    inner = env.environment.environment
    assert inner.actions[-1].dtype == np.float64


def test_action_repeat_discounted_sum():
    # rewards 1, 2, 3, ...; discounts after steps 1..: 0.5, 0.5, 1, ...
    inner = ToyEnv(length=10, discounts=[0.5, 0.5, 1.0, 1.0] + [1.0] * 6)
    env = wrappers.ActionRepeatWrapper(inner, 3)
    env.reset()
    ts = env.step(np.zeros(2))
    assert ts.mid()
    # 1 + 0.5 * 2 + 0.25 * 3
    assert ts.reward == pytest.approx(2.75)
    assert ts.discount == pytest.approx(0.25)
    assert len(inner.actions) == 3
    ts = env.step(np.zeros(2))  # steps 4, 5, 6 with discounts 1
    assert ts.reward == pytest.approx(15.0) and ts.discount == 1.0


def test_action_repeat_stops_at_episode_end():
    inner = ToyEnv(length=5, terminal_discount=0.0)
    env = wrappers.ActionRepeatWrapper(inner, 3)
    env.reset()
    assert env.step(np.zeros(2)).reward == pytest.approx(6.0)  # 1 + 2 + 3
    ts = env.step(np.zeros(2))  # steps 4, 5 then the episode ends
    assert ts.last()
    assert ts.reward == pytest.approx(9.0)
    assert ts.discount == 0.0
    assert len(inner.actions) == 5
    # dm_env auto-reset: the next step starts a new episode and is returned untouched
    ts = env.step(np.zeros(2))
    assert ts.first() and ts.reward is None
    assert len(inner.actions) == 5


def test_action_repeat_keeps_float32():
    inner = wrappers.SinglePrecisionWrapper(wrappers.ObservationFlattenWrapper(ToyEnv()))
    env = wrappers.ActionRepeatWrapper(inner, 2)
    env.reset()
    ts = env.step(np.zeros(2, np.float32))
    assert ts.reward == 3.0 and ts.reward.dtype == np.float32
    assert ts.discount.dtype == np.float32


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_action_repeat_rejects_bad_counts(bad):
    with pytest.raises(ValueError):
        wrappers.ActionRepeatWrapper(ToyEnv(), bad)
