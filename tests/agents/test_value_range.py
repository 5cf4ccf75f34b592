"""The value sanity monitor: the range a discounted return can take, the share of Q estimates
outside it and how far, and the learner's one plain-words warning."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from antiphon.agents.actor_critic import return_bounds, value_range_metrics


def test_return_bounds_by_hand():
    # Pendulum: rewards in [-16.3, 0], gamma 0.99 -> [-1630, 0].
    assert return_bounds(-16.3, 0.0, 0.99) == pytest.approx((-1630.0, 0.0))
    # DM Control with action repeat 2: [0, 2] -> [0, 200].
    assert return_bounds(0.0, 2.0, 0.99) == pytest.approx((0.0, 200.0))
    # Mixed signs: each side its infinite-horizon extreme; one step further out when gamma = 0.
    assert return_bounds(-1.0, 3.0, 0.5) == pytest.approx((-2.0, 6.0))
    assert return_bounds(-1.0, 3.0, 0.0) == pytest.approx((-1.0, 3.0))
    # gamma = 1: unbounded on the side the rewards reach.
    assert return_bounds(-1.0, 0.0, 1.0) == (-math.inf, 0.0)
    with pytest.raises(ValueError):
        return_bounds(1.0, 0.0, 0.9)


def test_out_of_range_share_and_distance_by_hand():
    bounds = (-100.0, 0.0)  # tolerance 1 = 1 % of the width
    q = jnp.array([-50.0, -100.5, 0.5, 2.0, -103.0, 30.0, -10.0, -1.0])
    metrics = value_range_metrics(q, bounds)
    # Outside beyond the tolerance: 2.0, -103.0 and 30.0.
    assert float(metrics["q_out_of_range"]) == pytest.approx(3 / 8)
    # The furthest: 30 above 0 -> 30 % of the width.
    assert float(metrics["q_beyond_range"]) == pytest.approx(0.30)
    # Within the tolerance: not counted, but the distance says how far (0.4 -> 0.4 %).
    inside = value_range_metrics(jnp.array([-99.5, -3.0, 0.4]), bounds)
    assert float(inside["q_out_of_range"]) == 0.0
    assert float(inside["q_beyond_range"]) == pytest.approx(0.004)
    assert float(value_range_metrics(jnp.array([-50.0]), bounds)["q_beyond_range"]) == 0.0
    assert value_range_metrics(q, None) == {}
    # An unbounded side: the share is still reported, the distance is not.
    unbounded = value_range_metrics(q, (-math.inf, 0.0))
    assert float(unbounded["q_out_of_range"]) == pytest.approx(3 / 8)
    assert "q_beyond_range" not in unbounded


class _Counter:
    def __init__(self):
        self.reports = []

    def report(self, key, value):
        self.reports.append((key, value))


def _monitor_node():
    from antiphon.agents.crr.builder import CRRBuilder
    from antiphon.agents.crr.config import CRRConfig
    from antiphon.launch.experiments import LearnerNode

    node = LearnerNode.__new__(LearnerNode)  # only the monitor's state, no learner
    node._counter = _Counter()
    node._set_value_bounds(CRRBuilder(CRRConfig()), (-16.3, 0.0), "dataset")
    return node


def test_the_monitor_warns_once_in_plain_words_when_the_critic_diverges(capsys):
    node = _monitor_node()
    node._monitor({"q_out_of_range": 0.03, "q_beyond_range": 2.0, "q_mean": 10.0})  # few
    node._monitor({"q_out_of_range": 0.5, "q_beyond_range": 0.02, "q_mean": -5.0})  # near
    assert capsys.readouterr().err == "" and node._counter.reports == []
    values = {"q_out_of_range": 0.6, "q_beyond_range": 3.0, "q_mean": 4000.0, "learner_steps": 7}
    node._monitor(values)
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "60 % of the critic's Q estimates (mean 4000)" in err
    assert "[-1630, 0]" in err and "rewards in [-16.3, 0]" in err and "300 %" in err
    assert "learner step 7" in err
    node._monitor(values)
    assert capsys.readouterr().err == ""
    assert [k for k, _ in node._counter.reports] == ["value_warning"]
    assert np.isfinite(node._value_bounds[0])
