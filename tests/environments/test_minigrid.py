"""MiniGrid / BabyAI through the registry: names and suggestions, the egocentric dict
observation, the mission's word ids, discrete actions, and the success flag the loop logs (the
BabyAI bot succeeds; turning in place times out, bootstrapped)."""

from __future__ import annotations

import numpy as np
import pytest

from antiphon.core.loop import EnvironmentLoop
from antiphon.environments import minigrid, registry


def test_babyai_names_resolve_to_their_newest_version_and_typos_get_suggestions():
    assert minigrid.babyai_id("KeyCorridorS3R3") == "BabyAI-KeyCorridorS3R3-v0"
    assert minigrid.babyai_id("GoToObjS6") == "BabyAI-GoToObjS6-v1"
    assert minigrid.babyai_id("GoToObjS6-v0") == "BabyAI-GoToObjS6-v0"
    registry.validate_environment_name("babyai:KeyCorridorS3R3")
    registry.validate_environment_name("minigrid:MiniGrid-MemoryS7-v0")
    with pytest.raises(registry.UnknownEnvironmentError) as error:
        registry.validate_environment_name("babyai:KeyCoridorS3R3")
    assert "babyai:KeyCorridorS3R3" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(registry.UnknownEnvironmentError, match="minigrid:MiniGrid-MemoryS7-v0"):
        registry.validate_environment_name("minigrid:MiniGrid-MemoryS7")


def test_mission_words_get_the_same_ids_everywhere_and_pad_with_zeros():
    ids = minigrid.encode_mission("pick up the ball")
    assert ids.shape == (minigrid.MISSION_LENGTH,) and ids.dtype == np.int32
    assert np.all(ids[:4] > 0) and np.all(ids[4:] == 0)
    again = minigrid.encode_mission("Pick up the BOX")
    np.testing.assert_array_equal(ids[:3], again[:3])  # same words, same ids
    assert ids[3] != again[3]
    assert np.all(minigrid.encode_mission("go " * 40) < minigrid.MISSION_VOCABULARY)


def test_observation_and_action_specs_and_seeding():
    env = registry.make_environment("babyai:KeyCorridorS3R3", seed=3)
    spec = env.observation_spec()
    assert spec["image"].shape == (7, 7, 3) and spec["image"].dtype == np.uint8
    assert spec["direction"].dtype == np.int32 and spec["mission"].shape == (16,)
    assert env.action_spec().num_values == 7
    first = env.reset().observation
    for name, value in first.items():
        spec[name].validate(value)
    other = registry.make_environment("babyai:KeyCorridorS3R3", seed=3).reset().observation
    for name in first:
        np.testing.assert_array_equal(first[name], other[name])
    with pytest.raises(ValueError, match="outside 0..6"):
        env.step(7)


def _bot_policy(env):
    from minigrid.utils.baby_ai_bot import BabyAIBot

    bot = BabyAIBot(env.gym_env.unwrapped)
    return bot


def test_the_bot_succeeds_and_the_loop_logs_success():
    env = registry.make_environment("babyai:GoToRedBallNoDists", seed=0)
    timestep = env.reset()
    assert env.episode_success is None
    bot = _bot_policy(env)
    steps = 0
    while not timestep.last():
        timestep = env.step(bot.replan())
        steps += 1
    assert timestep.discount == 0.0 and timestep.reward > 0  # a true end, rewarded
    assert env.episode_success is True and steps < 64


class _TurnLeft:
    """An actor that only turns: never reaches the goal."""

    def select_action(self, observation):
        return np.int32(0)

    def observe_first(self, timestep):
        pass

    def observe(self, action, next_timestep):
        pass

    def update(self, wait=False):
        pass


def test_a_time_out_is_a_bootstrapped_failure_and_the_loop_logs_it():
    env = registry.make_environment("minigrid:MiniGrid-Empty-5x5-v0", seed=0)
    result = EnvironmentLoop(env, _TurnLeft(), should_update=False).run_episode()
    assert result["episode_success"] == 0.0 and result["episode_return"] == 0.0
    assert result["episode_length"] == env.gym_env.unwrapped.max_steps
