"""MiniGrid and BabyAI (the `minigrid` package) as dm_env environments.

Names: `minigrid:<id>` for any MiniGrid id (`minigrid:MiniGrid-MemoryS7-v0`), `babyai:<Level>`
for a BabyAI level with or without its version (`babyai:KeyCorridorS3R3` is
`BabyAI-KeyCorridorS3R3-v0`; without a version the newest registered one).

What the agent sees is MiniGrid's partially observable, egocentric view, kept as a dict (it is
not flattened: recurrent image agents read the parts):

    image      uint8 [7, 7, 3]   (object, colour, state) index per cell of the agent's view
    direction  int32 []          the agent's heading, 0..3
    mission    int32 [16]        the mission's words as ids in 1..127 (0 pads), the same id for
                                 the same word in every level (a hash of the word: BabyAI's
                                 grammar has ~40 words, so collisions are rare and harmless)

Actions: MiniGrid's 7 discrete actions (left, right, forward, pickup, drop, toggle, done).
MiniGrid rewards 1 - 0.9 t / T on success and 0 otherwise, and ends a successful episode with a
true terminal; time-outs are truncations (bootstrapped). `episode_success` (True / False after an
episode's last step, None before) is what the environment loop logs as `episode_success`.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

import dm_env
import numpy as np
from dm_env import specs

from antiphon.environments import wrappers

MISSION_LENGTH = 16
MISSION_VOCABULARY = 128  # ids 1..127; 0 is padding
BABYAI_PREFIX = "BabyAI-"
MINIGRID_PREFIX = "MiniGrid-"


def encode_mission(mission: str) -> np.ndarray:
    """The mission's first MISSION_LENGTH words as int32 ids (crc32 of the lower-cased word,
    into 1..MISSION_VOCABULARY - 1), zero-padded."""
    words = re.findall(r"[a-z]+", mission.lower())[:MISSION_LENGTH]
    ids = np.zeros((MISSION_LENGTH,), np.int32)
    for i, word in enumerate(words):
        ids[i] = 1 + zlib.crc32(word.encode()) % (MISSION_VOCABULARY - 1)
    return ids


def _registered(prefix: str) -> list[str]:
    import gymnasium
    import minigrid  # noqa: F401  (registers its ids with gymnasium)

    return sorted(name for name in gymnasium.registry if name.startswith(prefix))


def minigrid_names() -> list[str]:
    return _registered(MINIGRID_PREFIX)


def babyai_names() -> list[str]:
    """Level names without the `BabyAI-` prefix and version (`KeyCorridorS3R3`), and each
    versioned id's short form (`GoToObjS6-v1`)."""
    names = set()
    for full in _registered(BABYAI_PREFIX):
        short = full[len(BABYAI_PREFIX) :]
        names.add(short)
        names.add(re.sub(r"-v\d+$", "", short))
    return sorted(names)


def babyai_id(level: str) -> str:
    """`KeyCorridorS3R3` -> `BabyAI-KeyCorridorS3R3-v0` (the newest registered version)."""
    level = level[len(BABYAI_PREFIX) :] if level.startswith(BABYAI_PREFIX) else level
    if re.search(r"-v\d+$", level):
        return BABYAI_PREFIX + level
    versions = [
        name
        for name in _registered(BABYAI_PREFIX)
        if re.sub(r"-v\d+$", "", name) == BABYAI_PREFIX + level
    ]
    if not versions:
        raise ValueError(f"unknown BabyAI level {level!r}")
    return max(versions, key=lambda name: int(name.rsplit("-v", 1)[1]))


class MiniGridEnvironment(dm_env.Environment):
    """A MiniGrid gymnasium environment as dm_env with the observation of the module docstring.

    The first reset() seeds the environment with `seed`; later resets continue its own random
    stream (so episodes differ). step() after a LAST timestep starts a new episode.
    """

    def __init__(self, env_id: str, seed: int | None = None, **kwargs: Any):
        import gymnasium
        import minigrid  # noqa: F401

        self._env = gymnasium.make(env_id, **kwargs)
        self._env_id = env_id
        self._seed = seed
        self._seeded = False
        self._reset_next_step = True
        self._success: bool | None = None
        self._num_actions = int(self._env.action_space.n)
        view = self._env.observation_space["image"].shape

        self._observation_spec = {
            "image": specs.BoundedArray(view, np.uint8, 0, 255, name="image"),
            "direction": specs.BoundedArray((), np.int32, 0, 3, name="direction"),
            "mission": specs.BoundedArray(
                (MISSION_LENGTH,), np.int32, 0, MISSION_VOCABULARY - 1, name="mission"
            ),
        }

    @property
    def gym_env(self) -> Any:
        return self._env

    @property
    def episode_success(self) -> bool | None:
        """After an episode's last step: whether it reached the goal (a positive reward at a
        true terminal); None before the first episode ends."""
        return self._success

    def _observation(self, observation: dict[str, Any]) -> dict[str, np.ndarray]:
        return {
            "image": np.asarray(observation["image"], np.uint8),
            "direction": np.asarray(observation["direction"], np.int32),
            "mission": encode_mission(str(observation["mission"])),
        }

    def reset(self) -> dm_env.TimeStep:
        if not self._seeded:
            observation, _ = self._env.reset(seed=self._seed)
            self._seeded = True
        else:
            observation, _ = self._env.reset()
        self._reset_next_step = False
        self._success = None
        return dm_env.restart(self._observation(observation))

    def step(self, action: Any) -> dm_env.TimeStep:
        if self._reset_next_step:
            return self.reset()
        action = int(np.asarray(action).reshape(()))
        if not 0 <= action < self._num_actions:
            raise ValueError(f"action {action} outside 0..{self._num_actions - 1}")
        observation, reward, terminated, truncated, _ = self._env.step(action)
        observation = self._observation(observation)
        reward = float(reward)
        if terminated:
            self._reset_next_step = True
            self._success = reward > 0.0
            return dm_env.termination(reward, observation)
        if truncated:
            self._reset_next_step = True
            self._success = False
            return dm_env.truncation(reward, observation, discount=1.0)
        return dm_env.transition(reward, observation, discount=1.0)

    def observation_spec(self) -> dict[str, specs.Array]:
        return self._observation_spec

    def action_spec(self) -> specs.DiscreteArray:
        return specs.DiscreteArray(self._num_actions, dtype=np.int32, name="action")

    def reward_spec(self) -> specs.Array:
        return specs.Array((), np.float32, name="reward")

    def discount_spec(self) -> specs.BoundedArray:
        return specs.BoundedArray((), np.float32, 0.0, 1.0, name="discount")

    def close(self) -> None:
        self._env.close()

    def __repr__(self) -> str:
        return f"MiniGridEnvironment({self._env_id!r})"


def load(env_id: str, seed: int | None = None, **kwargs: Any) -> dm_env.Environment:
    """The environment with antiphon's float32 rewards and discounts (observations keep their
    integer dtypes; discrete actions pass through)."""
    return wrappers.SinglePrecisionWrapper(MiniGridEnvironment(env_id, seed=seed, **kwargs))
