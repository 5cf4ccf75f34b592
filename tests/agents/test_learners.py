"""The shared learner's divergence guard (antiphon.agents.learners), on a hand-made update whose
first non-finite value comes at a known SGD step."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from antiphon.agents.learners import DivergenceError, OnlineLearner, tree_all_finite


class State(NamedTuple):
    weight: jax.Array
    moment: jax.Array
    steps: jax.Array


def _sgd_step(state: State, batch):
    # weight *= batch each step: with batch = 1e10 the weight is 1e10, 1e20, 1e30, then inf
    # (float32 overflows past 3.4e38) at SGD step 4.
    weight = state.weight * batch
    new = State(weight, state.moment + 1.0, state.steps + 1)
    return new, {"critic_loss": weight, "policy_loss": jnp.float32(0.5)}


def _learner(batches_per_call=2, factor=1e10, calls=10):
    batches = iter([jnp.full((batches_per_call,), factor, jnp.float32)] * calls)
    state = State(jnp.float32(1.0), jnp.float32(0.0), jnp.zeros((), jnp.int32))
    return OnlineLearner(
        _sgd_step,
        state,
        batches,
        variables=lambda s: {"policy": s.weight},
        steps_per_call=batches_per_call,
    )


def test_tree_all_finite_ignores_integers_and_sees_nan_and_inf():
    assert bool(tree_all_finite({"a": jnp.ones(3), "b": jnp.arange(3)}))
    assert not bool(tree_all_finite({"a": jnp.array([1.0, jnp.nan])}))
    assert not bool(tree_all_finite([jnp.float32(1.0), jnp.array([jnp.inf])]))


def test_divergence_stops_within_one_call_and_keeps_the_last_finite_state():
    learner = _learner()
    learner.step()  # call 1: steps 1-2, finite (dispatched, not yet read)
    learner.step()  # call 2: steps 3-4, inf at step 4; call 1's flag read: verified
    assert learner.verified_sgd_steps == 2
    with pytest.raises(DivergenceError) as raised:
        learner.step()  # call 3 dispatched, call 2's flag read: diverged
    error = raised.value
    assert error.step == 4
    assert error.last_finite_step == 2
    assert error.losses == {"critic_loss": np.inf}
    assert error.groups == ["weight"]
    assert "diverged at SGD step 4" in str(error)
    # Back at the state call 2 started from: what is served and what is saved.
    assert learner.sgd_steps == 2
    saved = learner.save()
    np.testing.assert_allclose(saved.weight, 1e20, rtol=1e-6)
    assert int(saved.steps) == 2 and float(saved.moment) == 2.0
    np.testing.assert_allclose(learner.get_variables(["policy"])[0], 1e20, rtol=1e-6)


def test_what_is_served_is_never_a_pending_call():
    learner = _learner(factor=2.0)
    learner.step()
    # Call 1 is dispatched but its flag not read: actors still get the initial parameters.
    assert float(learner.get_variables(["policy"])[0]) == 1.0
    learner.step()
    assert float(learner.get_variables(["policy"])[0]) == 4.0  # call 1 verified
    learner.flush()
    assert float(learner.get_variables(["policy"])[0]) == 16.0


def test_a_divergence_in_the_last_call_is_found_by_flush_and_save():
    learner = _learner(batches_per_call=4)  # call 1: steps 1-4, inf at step 4
    learner.step()
    with pytest.raises(DivergenceError) as raised:
        learner.save()
    assert raised.value.step == 4 and raised.value.last_finite_step == 0
    assert int(learner.save().steps) == 0


def test_nan_metrics_alone_are_not_a_divergence():
    """NaN marks a metric a step did not compute (TD3+BC's actor metrics): not a divergence
    while the state stays finite."""

    def step(state, batch):
        new, metrics = _sgd_step(state, batch)
        return new, {**metrics, "policy_loss": jnp.float32(jnp.nan)}

    state = State(jnp.float32(1.0), jnp.float32(0.0), jnp.zeros((), jnp.int32))
    learner = OnlineLearner(
        step, state, iter([jnp.ones((2,))] * 5), lambda s: {"policy": s.weight}, 2
    )
    for _ in range(4):
        learner.step()
    learner.flush()
    assert learner.verified_sgd_steps == 8
