"""Names, suggestions and the dm_control path of the registry."""

from __future__ import annotations

import pickle

import dm_env
import numpy as np
import pytest
from dm_env import specs

from antiphon import environments
from antiphon.environments import (
    UnknownEnvironmentError,
    environment_factory,
    list_environments,
    make_environment,
    registry,
    validate_environment_name,
)


def test_every_dmc_task_is_listed():
    names = list_environments("dmc")  # first: antiphon picks the headless GL backend
    from dm_control import suite

    assert len(names) == len(suite.ALL_TASKS)
    for expected in (
        "dmc:ball_in_cup-catch",
        "dmc:finger-turn_hard",
        "dmc:point_mass-easy",
        "dmc:cartpole-swingup",
        "dmc:walker-walk",
    ):
        assert expected in names
        validate_environment_name(expected)
    assert set(list_environments("dmc:")) == set(names)
    assert set(names) <= set(list_environments())
    assert "gym:Pendulum-v1" in list_environments("gym")


def test_underscore_names_build():
    env = make_environment("dmc:point_mass-easy", seed=0)
    assert env.observation_spec().shape == (4,)
    assert env.action_spec().shape == (2,)


@pytest.mark.parametrize(
    "name, suggestion",
    [
        ("dmc:cartpole-swingp", "dmc:cartpole-swingup"),
        ("cartpole-swingup", "dmc:cartpole-swingup"),
        ("dmcc:walker-walk", "dmc:walker-walk"),
        ("dmc:finger-turnhard", "dmc:finger-turn_hard"),
        ("gym:Pendulum-v0", "gym:Pendulum-v1"),
    ],
)
def test_unknown_names_get_suggestions(name, suggestion):
    with pytest.raises(UnknownEnvironmentError) as info:
        validate_environment_name(name)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"unknown environment '{name}'; did you mean: ")
    assert suggestion in info.value.suggestions
    assert info.value.suggestions[0] == suggestion
    assert len(info.value.suggestions) <= 5
    assert isinstance(info.value, ValueError)


def test_suggestion_message_format():
    with pytest.raises(UnknownEnvironmentError) as info:
        make_environment("dmc:cartpole-swingp")
    assert str(info.value).startswith(
        "unknown environment 'dmc:cartpole-swingp'; did you mean: "
        "dmc:cartpole-swingup, dmc:cartpole-swingup_sparse"
    )
    assert str(info.value).endswith("?")


def test_no_close_match_still_one_line():
    with pytest.raises(UnknownEnvironmentError) as info:
        validate_environment_name("zzzzzzzz")
    assert "\n" not in str(info.value)
    assert "dmc:" in str(info.value)
    with pytest.raises(UnknownEnvironmentError):
        list_environments("nope")


def test_cartpole_swingup_specs_and_full_episode():
    env = make_environment("dmc:cartpole-swingup", seed=1)
    assert env.observation_spec() == specs.Array((5,), np.float32, name="observations")
    action_spec = env.action_spec()
    assert isinstance(action_spec, specs.BoundedArray)
    assert action_spec.shape == (1,) and action_spec.dtype == np.float32
    np.testing.assert_array_equal(action_spec.minimum, [-1.0])
    np.testing.assert_array_equal(action_spec.maximum, [1.0])
    assert env.reward_spec().dtype == np.float32
    assert env.discount_spec().dtype == np.float32

    timestep = env.reset()
    assert timestep.first() and timestep.observation.dtype == np.float32
    rng = np.random.default_rng(0)
    steps = 0
    while not timestep.last():
        # deliberately outside [-1, 1] at times: the wrapper clips
        timestep = env.step(rng.uniform(-1.5, 1.5, size=(1,)).astype(np.float32))
        steps += 1
        assert timestep.observation.shape == (5,)
        assert timestep.reward.dtype == np.float32
    assert steps == 1000
    assert timestep.discount == 1.0  # time limit = truncation, not termination
    env.close()


def test_same_seed_same_first_observation():
    first = [
        make_environment("dmc:cartpole-swingup", seed=s).reset().observation for s in (3, 3, 4)
    ]
    np.testing.assert_array_equal(first[0], first[1])
    assert not np.array_equal(first[0], first[2])


def test_action_repeat_through_make_environment():
    env = make_environment("dmc:cartpole-swingup", seed=0, action_repeat=4)
    steps = 0
    timestep = env.reset()
    while not timestep.last():
        timestep = env.step(np.zeros(1, np.float32))
        steps += 1
    assert steps == 250
    assert timestep.reward.dtype == np.float32
    with pytest.raises(ValueError):
        make_environment("dmc:cartpole-swingup", action_repeat=0)


def test_dmc_kwargs_pass_through():
    env = make_environment("dmc:cartpole-swingup", seed=0, task_kwargs={"time_limit": 0.1})
    timestep = env.reset()
    steps = 0
    while not timestep.last():
        timestep = env.step(np.zeros(1, np.float32))
        steps += 1
    assert steps == 10  # control timestep 0.01 s


def test_environment_factory_is_picklable_and_seeds():
    factory = environment_factory("dmc:cartpole-swingup", action_repeat=2)
    factory = pickle.loads(pickle.dumps(factory))
    a, b = factory(7), factory(7)
    assert isinstance(a, dm_env.Environment)
    np.testing.assert_array_equal(a.reset().observation, b.reset().observation)
    with pytest.raises(UnknownEnvironmentError):
        environment_factory("dmc:cartpole-swingp")


def test_register_custom_prefix():
    made = []

    def factory(rest, seed=None, **kwargs):
        made.append((rest, seed, kwargs))
        return make_environment("dmc:cartpole-balance", seed=seed)

    registry.register("toy", factory, lambda: ["one", "toy:two"])
    try:
        assert list_environments("toy") == ["toy:one", "toy:two"]
        with pytest.raises(ValueError):
            registry.register("toy", factory)
        env = environments.make_environment("toy:two", seed=5, flag=True)
        assert made == [("two", 5, {"flag": True})]
        assert env.observation_spec().shape == (5,)
        with pytest.raises(UnknownEnvironmentError) as info:
            validate_environment_name("toy:tw")
        assert "toy:two" in info.value.suggestions
    finally:
        registry._REGISTRY.pop("toy")


def test_register_without_list_accepts_any_rest():
    registry.register("free", lambda rest, seed=None: rest)
    try:
        validate_environment_name("free:anything")
        assert make_environment("free:abc") == "abc"
        assert list_environments("free") == []
    finally:
        registry._REGISTRY.pop("free")


def test_action_repeat_budgets_count_environment_steps():
    """With action repeat 4 a 1000-step DM Control episode is 250 agent steps, and the loop's
    step counter counts the 1000 environment steps (what step budgets mean)."""
    from antiphon.agents.actors import UniformRandomActor
    from antiphon.core.counting import Counter
    from antiphon.core.logging import NoOpLogger
    from antiphon.core.loop import EnvironmentLoop

    env = make_environment("dmc:cartpole-swingup", seed=0, action_repeat=4)
    counter = Counter()
    loop = EnvironmentLoop(
        env,
        UniformRandomActor(env.action_spec(), seed=0),
        counter=counter,
        logger=NoOpLogger(),
        should_update=False,
    )
    result = loop.run_episode()
    assert result["episode_length"] == 250
    assert result["environment_steps"] == 1000
    assert counter.get_counts()["steps"] == 1000
