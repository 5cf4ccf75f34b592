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

Datasets (flat float32 rows) hold the observation flattened: `flatten_observation` /
`unflatten_observations` and the layout under "Observations in datasets" below.
`BabyAIBotPolicy` is minigrid's BabyAI bot as a policy on our environment (what
`antiphon collect --policy babyai-bot` records).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
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


# ----------------------------------------------------------------------------------------------
# Observations in datasets
#
# A `Dataset` row is one flat float32 vector, so datasets hold each dict observation flattened
# in this fixed order (C order within each part):
#
#     image      [7, 7, 3] uint8    columns   0..146
#     direction  []        int32    column  147
#     mission    [16]      int32    columns 148..163
#
# 164 floats in all. Every value is a small integer (image <= 255, direction <= 3, mission ids
# <= 127), which float32 holds exactly, so `unflatten_observations` gives back the observation
# bit for bit. The order is the module docstring's (image, direction, mission), not sorted key
# order: datasets record it under `observation_layout` (`observation_layout()`), and readers pass
# that record back to `unflatten_observations` rather than assume it.

# (key, shape, dtype, minimum, maximum): the observation spec's, for the default 7x7 view.
OBSERVATION_LAYOUT: tuple[tuple[str, tuple[int, ...], str, int, int], ...] = (
    ("image", (7, 7, 3), "uint8", 0, 255),
    ("direction", (), "int32", 0, 3),
    ("mission", (MISSION_LENGTH,), "int32", 0, MISSION_VOCABULARY - 1),
)
OBSERVATION_SIZE = 147 + 1 + MISSION_LENGTH  # 164


def observation_layout(observation_spec: Mapping[str, specs.Array] | None = None) -> list[dict]:
    """The flat layout as JSON-ready records `{key, shape, dtype, minimum, maximum, offset,
    size}` (the dataset metadata's `observation_layout`), for `observation_spec` (an
    environment's, whose image may have another view size) or the default 7x7 view."""
    if observation_spec is None:
        parts = OBSERVATION_LAYOUT
    else:
        parts = tuple(
            (
                key,
                tuple(observation_spec[key].shape),
                np.dtype(observation_spec[key].dtype).name,
                int(np.min(observation_spec[key].minimum)),
                int(np.max(observation_spec[key].maximum)),
            )
            for key, *_ in OBSERVATION_LAYOUT
        )
    records, offset = [], 0
    for key, shape, dtype, minimum, maximum in parts:
        size = int(np.prod(shape, dtype=np.int64))
        records.append(
            {
                "key": key,
                "shape": list(shape),
                "dtype": dtype,
                "minimum": minimum,
                "maximum": maximum,
                "offset": offset,
                "size": size,
            }
        )
        offset += size
    return records


def _layout(layout: Sequence[Mapping[str, Any]] | None) -> list[dict]:
    if layout is None:
        layout = observation_layout()
    records = []
    for record in layout:
        shape = tuple(int(n) for n in record["shape"])
        dtype = np.dtype(record["dtype"])
        records.append(
            {
                "key": str(record["key"]),
                "shape": shape,
                "dtype": dtype,
                "minimum": int(record.get("minimum", np.iinfo(dtype).min)),
                "maximum": int(record.get("maximum", np.iinfo(dtype).max)),
                "size": int(np.prod(shape, dtype=np.int64)),
            }
        )
    return records


def flatten_observation(
    observation: Mapping[str, Any], layout: Sequence[Mapping[str, Any]] | None = None
) -> np.ndarray:
    """One dict observation (or a batch: every part with the same leading dims) as the float32
    vector `[..., 164]` datasets store (the order above; `layout` from `observation_layout`
    for another view size)."""
    records = _layout(layout)
    first = records[0]
    value = np.asarray(observation[first["key"]])
    batch = value.shape[: value.ndim - len(first["shape"])]
    parts = []
    for record in records:
        part = np.asarray(observation[record["key"]])
        expected = (*batch, *record["shape"])
        if part.shape != expected:
            raise ValueError(
                f"observation part '{record['key']}' has shape {part.shape}, expected {expected}"
            )
        parts.append(part.reshape((*batch, record["size"])).astype(np.float32))
    return np.concatenate(parts, axis=-1)


def unflatten_observations(
    array: np.ndarray, layout: Sequence[Mapping[str, Any]] | None = None
) -> dict[str, np.ndarray]:
    """The dict observation(s) back from flat rows `[164]` or `[N, 164]` (a dataset's
    `observations` / `next_observations`), with the environment's dtypes and shapes: image
    uint8 `[N, 7, 7, 3]`, direction int32 `[N]`, mission int32 `[N, 16]`.

    `layout` is the dataset's `metadata["observation_layout"]` (default: the 7x7 layout above).
    Values that are not integers within the spec's bounds (the layout's `minimum`..`maximum`)
    are refused (ValueError): such a file was not written by `flatten_observation`, and casting
    would silently change it.
    """
    array = np.asarray(array)
    records = _layout(layout)
    total = sum(record["size"] for record in records)
    if array.ndim < 1 or array.shape[-1] != total:
        raise ValueError(
            f"flat observations have shape {array.shape}, expected [..., {total}]"
            f" ({', '.join(r['key'] for r in records)})"
        )
    batch = array.shape[:-1]
    out: dict[str, np.ndarray] = {}
    offset = 0
    for record in records:
        part = array[..., offset : offset + record["size"]]
        offset += record["size"]
        low, high = record["minimum"], record["maximum"]
        bad = (part != np.round(part)) | (part < low) | (part > high)
        if bad.any():
            value = part[tuple(np.argwhere(bad)[0])]
            raise ValueError(
                f"observation part '{record['key']}' holds {float(value):g}, not an integer in"
                f" {low}..{high}"
            )
        out[record["key"]] = part.astype(record["dtype"]).reshape((*batch, *record["shape"]))
    return out


# ----------------------------------------------------------------------------------------------
# The BabyAI bot (minigrid.utils.baby_ai_bot.BabyAIBot) as a policy


def is_babyai_level(environment: Any) -> bool:
    """Whether `environment` (ours, wrapped or not) runs a BabyAI level: the only kind of
    environment whose instructions (`instrs`) the bot can plan from."""
    from minigrid.envs.babyai.core.roomgrid_level import RoomGridLevel

    gym_env = getattr(environment, "gym_env", None)
    return gym_env is not None and isinstance(gym_env.unwrapped, RoomGridLevel)


class BabyAIBotPolicy:
    """The BabyAI bot acting in one of our environments: `begin_episode()` after each reset,
    then `policy(observation) -> action` (np.int32) each step.

    The bot reads the full state of the gymnasium environment under our wrapper (not the
    observation), so it plans on exactly the episode our `reset()` started, from the same seed;
    a fresh bot per episode, as the bot expects. The bot is deterministic: same seed, same
    actions.

    The bot cannot solve every level (its docstring names four). When it raises, the policy
    records the error in `errors` ("episode <i>: <Type>: <message>", i counting from 0), sets
    `gave_up` and answers `done`; the caller ends the episode there (as a truncation, a
    failure). `antiphon collect` does.
    """

    def __init__(self, environment: Any):
        if not is_babyai_level(environment):
            raise ValueError(
                f"the BabyAI bot plans from a BabyAI level's instructions; {environment!r} is"
                " not a BabyAI level (babyai:<Level>)"
            )
        self._environment = environment
        self._bot: Any = None
        self._done = np.int32(int(environment.gym_env.unwrapped.actions.done))
        self.gave_up = False
        self.errors: list[str] = []
        self._episode = -1

    def begin_episode(self) -> None:
        """A new bot for the episode the environment has just reset to."""
        from minigrid.utils.baby_ai_bot import BabyAIBot

        self._bot = BabyAIBot(self._environment.gym_env.unwrapped)
        self.gave_up = False
        self._episode += 1

    def __call__(self, observation: Any = None) -> np.int32:
        if self._bot is None:
            raise RuntimeError("call begin_episode() after each reset, before the first action")
        if self.gave_up:
            return self._done
        try:
            return np.int32(int(self._bot.replan()))
        except Exception as error:  # the bot's own failures (DisappearedBoxError, asserts)
            self.gave_up = True
            text = str(error).strip().splitlines()
            what = f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
            self.errors.append(f"episode {self._episode}: {what}")
            return self._done
