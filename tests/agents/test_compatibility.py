"""Every agent declares the spaces it acts in; a mismatch is refused in one line naming both
sides (and the agents that would fit)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
from dm_env import specs

from antiphon.agents import compatibility
from antiphon.agents.compatibility import IncompatibleEnvironmentError
from antiphon.agents.registry import check_environment, get_builder_class, list_agents
from antiphon.core.types import EnvironmentSpec

VECTOR = specs.Array((5,), np.float32)
BOX = specs.BoundedArray((2,), np.float32, -1.0, 1.0)

ACTIONS = {
    "discrete": (specs.DiscreteArray(3), "Discrete(3)"),
    "multi_discrete": (
        specs.BoundedArray((2,), np.int32, 0, 4),
        "MultiDiscrete(2,) [0, 4]",
    ),
    "unbounded": (specs.Array((2,), np.float32), "unbounded Box(2,)"),
    "dict": (OrderedDict(move=BOX, grip=specs.DiscreteArray(2)), "Dict(move, grip)"),
}
OBSERVATIONS = {
    "image": (specs.Array((64, 64, 3), np.uint8), "Image(64, 64, 3) uint8"),
    "discrete": (specs.DiscreteArray(16), "Discrete(16)"),
    "dict": (OrderedDict(pixels=VECTOR, state=VECTOR), "Dict(pixels, state)"),
}


def _spec(observations, actions) -> EnvironmentSpec:
    return EnvironmentSpec(observations, actions, specs.Array((), np.float32), None)


@pytest.mark.parametrize("agent", list_agents())
@pytest.mark.parametrize("kind", list(ACTIONS))
def test_action_space_mismatch_names_both_sides(agent, kind):
    builder = get_builder_class(agent)
    assert kind not in builder.action_kinds
    spec, shown = ACTIONS[kind]
    with pytest.raises(IncompatibleEnvironmentError) as raised:
        check_environment(builder, _spec(VECTOR, spec), "gym:Made-v0")
    message = str(raised.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"{agent} acts in continuous action spaces; ")
    assert f"gym:Made-v0 has {shown} actions" in message
    assert "agents for " in message


@pytest.mark.parametrize("agent", list_agents())
@pytest.mark.parametrize("kind", list(OBSERVATIONS))
def test_observation_space_mismatch_names_both_sides(agent, kind):
    builder = get_builder_class(agent)
    spec, shown = OBSERVATIONS[kind]
    with pytest.raises(IncompatibleEnvironmentError) as raised:
        check_environment(builder, _spec(spec, BOX), "gym:Made-v0")
    message = str(raised.value)
    assert message.startswith(f"{agent} reads vector observations; ")
    assert f"gym:Made-v0 has {shown} observations" in message


@pytest.mark.parametrize("agent", list_agents())
def test_vector_observations_and_a_box_pass(agent):
    check_environment(get_builder_class(agent), _spec(VECTOR, BOX), "dmc:x")


def test_agents_that_fit_are_named():
    supporting = {"a": (("vector",), ("continuous",)), "b": (("vector",), ("discrete",))}
    with pytest.raises(IncompatibleEnvironmentError, match="agents for discrete actions: b$"):
        compatibility.check_compatible(
            "a",
            ("vector",),
            ("continuous",),
            _spec(VECTOR, ACTIONS["discrete"][0]),
            "e",
            supporting,
        )


def test_kinds_of_specs():
    assert compatibility.action_kind(BOX) == "continuous"
    assert compatibility.action_kind(specs.BoundedArray((1,), np.float32, -np.inf, 1.0)) == (
        "unbounded"
    )
    assert compatibility.observation_kind(specs.Array((), np.float32)) == "vector"
    assert compatibility.describe_actions(BOX) == "Box(2,) [-1, 1]"
