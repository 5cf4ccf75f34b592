"""Gymnasium environments as dm_env environments.

Gymnasium's (terminated, truncated) pair maps onto dm_env's discount: `terminated` ends the
episode with discount 0 (no bootstrapping), `truncated` (time limits) ends it with discount 1 (the
learner still bootstraps from the last observation).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import dm_env
import numpy as np
from dm_env import specs

__all__ = ["GymnasiumToDmEnv", "load", "space_to_spec"]


def _float32_if_float(dtype: Any) -> np.dtype:
    dtype = np.dtype(dtype)
    # Floats become float32 (agents and replay work in float32); integer Boxes such as uint8
    # images keep their dtype.
    return np.dtype(np.float32) if np.issubdtype(dtype, np.floating) else dtype


def space_to_spec(space: Any, name: str) -> Any:
    """A (possibly nested) dm_env spec for a gymnasium space."""
    from gymnasium import spaces

    if isinstance(space, spaces.Box):
        dtype = _float32_if_float(space.dtype)
        return specs.BoundedArray(
            shape=space.shape,
            dtype=dtype,
            minimum=space.low.astype(dtype),
            maximum=space.high.astype(dtype),
            name=name,
        )
    if isinstance(space, spaces.Discrete):
        # DiscreteArray is 0..n-1; a non-zero `start` is added back in step().
        return specs.DiscreteArray(num_values=int(space.n), dtype=np.int32, name=name)
    if isinstance(space, spaces.MultiDiscrete):
        return specs.BoundedArray(
            shape=space.shape,
            dtype=np.int32,
            minimum=space.start,
            maximum=space.start + space.nvec - 1,
            name=name,
        )
    if isinstance(space, spaces.MultiBinary):
        return specs.BoundedArray(shape=space.shape, dtype=np.int8, minimum=0, maximum=1, name=name)
    if isinstance(space, spaces.Dict):
        return OrderedDict((key, space_to_spec(sub, key)) for key, sub in space.spaces.items())
    if isinstance(space, spaces.Tuple):
        return tuple(space_to_spec(sub, f"{name}_{i}") for i, sub in enumerate(space.spaces))
    raise NotImplementedError(f"gymnasium space {type(space).__name__} has no dm_env spec")


def _convert_value(value: Any, space: Any, spec: Any) -> Any:
    """A gymnasium observation -> arrays matching `space_to_spec(space)`."""
    from gymnasium import spaces

    if isinstance(space, spaces.Dict):
        return OrderedDict(
            (key, _convert_value(value[key], space[key], spec[key])) for key in space.spaces
        )
    if isinstance(space, spaces.Tuple):
        return tuple(
            _convert_value(v, sp, sc) for v, sp, sc in zip(value, space, spec, strict=True)
        )
    if isinstance(space, spaces.Discrete):
        return np.asarray(int(value) - int(space.start), dtype=spec.dtype)
    return np.asarray(value, dtype=spec.dtype)


def _convert_action(action: Any, space: Any) -> Any:
    """An action in spec form -> what the gymnasium space expects."""
    from gymnasium import spaces

    if isinstance(space, spaces.Dict):
        return {key: _convert_action(action[key], space[key]) for key in space.spaces}
    if isinstance(space, spaces.Tuple):
        return tuple(_convert_action(a, sp) for a, sp in zip(action, space, strict=True))
    if isinstance(space, spaces.Discrete):
        return int(np.asarray(action).reshape(())) + int(space.start)
    return np.asarray(action, dtype=space.dtype).reshape(space.shape)


class GymnasiumToDmEnv(dm_env.Environment):
    """Adapts a gymnasium.Env to dm_env.

    The first reset() passes `seed` to env.reset (and seeds the action space); later resets
    continue the environment's own random stream. Following dm_env, step() after a LAST timestep
    starts a new episode. The latest `info` dict is kept in `self.info`.
    """

    def __init__(self, env: Any, seed: int | None = None):
        self._env = env
        self._seed = seed
        self._seeded = False
        self._reset_next_step = True
        self.info: dict[str, Any] = {}
        self._observation_spec = space_to_spec(env.observation_space, "observation")
        self._action_spec = space_to_spec(env.action_space, "action")

    @property
    def gym_env(self) -> Any:
        """The wrapped gymnasium environment."""
        return self._env

    def _observation(self, observation: Any) -> Any:
        return _convert_value(observation, self._env.observation_space, self._observation_spec)

    def reset(self) -> dm_env.TimeStep:
        if not self._seeded:
            observation, self.info = self._env.reset(seed=self._seed)
            if self._seed is not None:
                self._env.action_space.seed(self._seed)
            self._seeded = True
        else:
            observation, self.info = self._env.reset()
        self._reset_next_step = False
        return dm_env.restart(self._observation(observation))

    def step(self, action: Any) -> dm_env.TimeStep:
        if self._reset_next_step:
            return self.reset()
        gym_action = _convert_action(action, self._env.action_space)
        observation, reward, terminated, truncated, self.info = self._env.step(gym_action)
        observation = self._observation(observation)
        reward = float(reward)
        if terminated:
            # A true end: nothing to bootstrap from (also when truncated at the same step).
            self._reset_next_step = True
            return dm_env.termination(reward, observation)
        if truncated:
            self._reset_next_step = True
            return dm_env.truncation(reward, observation, discount=1.0)
        return dm_env.transition(reward, observation, discount=1.0)

    def observation_spec(self) -> Any:
        return self._observation_spec

    def action_spec(self) -> Any:
        return self._action_spec

    def close(self) -> None:
        self._env.close()

    def __repr__(self) -> str:
        return f"GymnasiumToDmEnv({self._env!r})"


def load(env_id: str, seed: int | None = None, **kwargs: Any) -> dm_env.Environment:
    """gymnasium.make(env_id, **kwargs) adapted to dm_env (no antiphon wrappers yet)."""
    import gymnasium

    return GymnasiumToDmEnv(gymnasium.make(env_id, **kwargs), seed=seed)


def env_ids() -> list[str]:
    """Every id in gymnasium's registry (some need extras, e.g. MuJoCo or Box2D, to build)."""
    import gymnasium

    return list(gymnasium.registry.keys())
