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
    "continuous": (BOX, "Box(2,) [-1, 1]"),
    "discrete": (specs.DiscreteArray(3), "Discrete(3)"),
    "multi_discrete": (
        specs.BoundedArray((2,), np.int32, 0, 4),
        "MultiDiscrete(2,) [0, 4]",
    ),
    "unbounded": (specs.Array((2,), np.float32), "unbounded Box(2,)"),
    "dict": (OrderedDict(move=BOX, grip=specs.DiscreteArray(2)), "Dict(move, grip)"),
}
OBSERVATIONS = {
    "vector": (VECTOR, "Box(5,) float32"),
    "image": (specs.Array((64, 64, 3), np.uint8), "Image(64, 64, 3) uint8"),
    "discrete": (specs.DiscreteArray(16), "Discrete(16)"),
    "dict": (OrderedDict(pixels=VECTOR, state=VECTOR), "Dict(pixels, state)"),
}


def _spec(observations, actions) -> EnvironmentSpec:
    return EnvironmentSpec(observations, actions, specs.Array((), np.float32), None)


def _mismatches(table: dict, declared: str):
    """(agent, kind) for every kind an agent does not declare."""
    return [
        (agent, kind)
        for agent in list_agents()
        for kind in table
        if kind not in getattr(get_builder_class(agent), declared)
    ]


def _fitting(agent: str):
    builder = get_builder_class(agent)
    return OBSERVATIONS[builder.observation_kinds[0]][0], ACTIONS[builder.action_kinds[0]][0]


@pytest.mark.parametrize(("agent", "kind"), _mismatches(ACTIONS, "action_kinds"))
def test_action_space_mismatch_names_both_sides(agent, kind):
    builder = get_builder_class(agent)
    spec, shown = ACTIONS[kind]
    with pytest.raises(IncompatibleEnvironmentError) as raised:
        check_environment(builder, _spec(_fitting(agent)[0], spec), "gym:Made-v0")
    message = str(raised.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"{agent} acts in ")
    assert f"gym:Made-v0 has {shown} actions" in message
    assert "agents for " in message


@pytest.mark.parametrize(("agent", "kind"), _mismatches(OBSERVATIONS, "observation_kinds"))
def test_observation_space_mismatch_names_both_sides(agent, kind):
    builder = get_builder_class(agent)
    spec, shown = OBSERVATIONS[kind]
    with pytest.raises(IncompatibleEnvironmentError) as raised:
        check_environment(builder, _spec(spec, _fitting(agent)[1]), "gym:Made-v0")
    message = str(raised.value)
    assert message.startswith(f"{agent} reads ")
    assert f"gym:Made-v0 has {shown} observations" in message


@pytest.mark.parametrize("agent", list_agents())
def test_the_declared_spaces_pass(agent):
    check_environment(get_builder_class(agent), _spec(*_fitting(agent)), "dmc:x")


def test_r2d2_reads_dict_observations_and_acts_in_discrete_actions():
    builder = get_builder_class("r2d2")
    with pytest.raises(IncompatibleEnvironmentError, match="^r2d2 acts in discrete action"):
        check_environment(builder, _spec(OBSERVATIONS["dict"][0], BOX), "dmc:x")


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
