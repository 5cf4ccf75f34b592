"""dm_env wrappers: flat float32 observations, canonical [-1, 1] actions, action repeat.

Every agent in antiphon sees the same kind of environment: one flat float32 observation vector
(for state-based tasks), continuous actions in [-1, 1] (so a tanh policy fits any task), and
float32 rewards and discounts (so replay signatures and jitted learners never see float64).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dm_env
import numpy as np
import tree
from dm_env import specs

__all__ = [
    "ActionRepeatWrapper",
    "CanonicalActionWrapper",
    "EnvironmentWrapper",
    "MultiObjectiveRewardWrapper",
    "ObservationFlattenWrapper",
    "SinglePrecisionWrapper",
    "native_action_spec",
]


class EnvironmentWrapper(dm_env.Environment):
    """Forwards everything to the wrapped environment; subclasses override what they change."""

    def __init__(self, environment: dm_env.Environment):
        self._environment = environment

    @property
    def environment(self) -> dm_env.Environment:
        """The directly wrapped environment."""
        return self._environment

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails. Guard private names so that copy/pickle (which
        # probe attributes before __init__ has run) cannot recurse into a missing _environment.
        if name.startswith("__") or name == "_environment":
            raise AttributeError(name)
        return getattr(self._environment, name)

    def reset(self) -> dm_env.TimeStep:
        return self._environment.reset()

    def step(self, action: Any) -> dm_env.TimeStep:
        return self._environment.step(action)

    def observation_spec(self) -> Any:
        return self._environment.observation_spec()

    def action_spec(self) -> Any:
        return self._environment.action_spec()

    def reward_spec(self) -> Any:
        return self._environment.reward_spec()

    def discount_spec(self) -> Any:
        return self._environment.discount_spec()

    def close(self) -> None:
        self._environment.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._environment!r})"


# ----------------------------------------------------------------------------------------------
# Observations


def _flat_size(spec: specs.Array) -> int:
    # Scalars (shape ()) become length-1 entries.
    return int(np.prod(spec.shape, dtype=np.int64))


def _ordered_leaves(value: Any, spec: Any) -> list[tuple[Any, Any]]:
    """(value, spec) pairs in the spec's own order (dict insertion order, not sorted keys).

    dm_control's observation specs are OrderedDicts whose order is meaningful (it is the order
    the task defines); tree.flatten would sort keys instead, so walk the structure by hand.
    """
    if isinstance(spec, Mapping):
        return [pair for key in spec for pair in _ordered_leaves(value[key], spec[key])]
    if isinstance(spec, (list, tuple)):
        return [pair for v, s in zip(value, spec, strict=True) for pair in _ordered_leaves(v, s)]
    return [(value, spec)]


class ObservationFlattenWrapper(EnvironmentWrapper):
    """Concatenates a (nested) dict of observations into one 1-D float32 vector.

    Keys keep the order of the wrapped observation spec (dm_control's order). A non-dict
    observation is flattened to 1-D as well.
    """

    def __init__(self, environment: dm_env.Environment):
        super().__init__(environment)
        self._inner_spec = environment.observation_spec()
        leaves = _ordered_leaves(self._inner_spec, self._inner_spec)
        size = sum(_flat_size(spec) for _, spec in leaves)
        self._observation_spec = specs.Array((size,), np.float32, name="observations")
        # The common case (DM Control): a flat mapping of arrays, read by key in spec order
        # without walking the structure every step (the walk cost more than the physics).
        self._flat_keys = (
            list(self._inner_spec)
            if isinstance(self._inner_spec, Mapping)
            and self._inner_spec
            and all(isinstance(v, specs.Array) for v in self._inner_spec.values())
            else None
        )

    def _flatten(self, observation: Any) -> np.ndarray:
        if self._flat_keys is not None:
            return np.concatenate(
                [np.asarray(observation[key], np.float32).reshape(-1) for key in self._flat_keys]
            )
        leaves = _ordered_leaves(observation, self._inner_spec)
        parts = [np.asarray(value, dtype=np.float32).reshape(-1) for value, _ in leaves]
        if not parts:
            return np.zeros((0,), np.float32)
        return np.concatenate(parts)

    def _convert(self, timestep: dm_env.TimeStep) -> dm_env.TimeStep:
        return timestep._replace(observation=self._flatten(timestep.observation))

    def reset(self) -> dm_env.TimeStep:
        return self._convert(self._environment.reset())

    def step(self, action: Any) -> dm_env.TimeStep:
        return self._convert(self._environment.step(action))

    def observation_spec(self) -> specs.Array:
        return self._observation_spec


# ----------------------------------------------------------------------------------------------
# Actions


def _is_rescalable(spec: Any) -> bool:
    """A continuous, finitely bounded action spec (DiscreteArray and integer specs are not)."""
    return (
        isinstance(spec, specs.BoundedArray)
        and not isinstance(spec, specs.DiscreteArray)
        and np.issubdtype(spec.dtype, np.floating)
        and bool(np.all(np.isfinite(spec.minimum)))
        and bool(np.all(np.isfinite(spec.maximum)))
    )


def _canonical_spec(spec: Any) -> Any:
    if not _is_rescalable(spec):
        return spec
    # Full-shape bounds, so agents can read spec.minimum.shape like any other bounded spec.
    return specs.BoundedArray(
        shape=spec.shape,
        dtype=spec.dtype,
        minimum=np.full(spec.shape, -1.0, spec.dtype),
        maximum=np.full(spec.shape, 1.0, spec.dtype),
        name=spec.name,
    )


def _scale_action(action: Any, spec: Any) -> Any:
    if not _is_rescalable(spec):
        return action
    # Policies (exploration noise, untrained nets) may step outside [-1, 1]: clip first so the
    # wrapped environment only ever receives actions inside its own bounds.
    action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
    low = np.asarray(spec.minimum, dtype=np.float64)
    high = np.asarray(spec.maximum, dtype=np.float64)
    scaled = low + (action + 1.0) * 0.5 * (high - low)
    return np.broadcast_to(scaled, spec.shape).astype(spec.dtype)


class CanonicalActionWrapper(EnvironmentWrapper):
    """Exposes continuous bounded actions as [-1, 1] and maps them affinely to [low, high].

    Incoming actions are clipped to [-1, 1] first. Discrete, integer, unbounded (plain Array) and
    not finitely bounded specs are passed through untouched. Nested action specs are handled leaf
    by leaf.
    """

    def __init__(self, environment: dm_env.Environment):
        super().__init__(environment)
        self._inner_spec = environment.action_spec()
        self._action_spec = tree.map_structure(_canonical_spec, self._inner_spec)
        # One rescalable array (the common case): its bounds as float64, read once.
        self._bounds = None
        if _is_rescalable(self._inner_spec):
            low = np.asarray(self._inner_spec.minimum, dtype=np.float64)
            high = np.asarray(self._inner_spec.maximum, dtype=np.float64)
            self._bounds = (low, high - low)

    def step(self, action: Any) -> dm_env.TimeStep:
        if self._bounds is not None:
            # _scale_action's arithmetic, with the spec's bounds converted once.
            low, span = self._bounds
            clipped = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
            scaled = low + (clipped + 1.0) * 0.5 * span
            spec = self._inner_spec
            if scaled.shape != spec.shape:
                scaled = np.broadcast_to(scaled, spec.shape)
            return self._environment.step(scaled.astype(spec.dtype))
        scaled = tree.map_structure_up_to(self._inner_spec, _scale_action, action, self._inner_spec)
        return self._environment.step(scaled)

    def action_spec(self) -> Any:
        return self._action_spec


def native_action_spec(environment: dm_env.Environment) -> Any:
    """The action spec in the environment's own ("native") units: the spec the outermost
    CanonicalActionWrapper in `environment`'s wrapper chain wraps (its bounds are what [-1, 1]
    maps to). Without a CanonicalActionWrapper in the chain, `environment.action_spec()` itself.

    Where the native bounds are already [-1, 1] (DM Control) this spec has the same bounds as
    `environment.action_spec()`. The dtype is the wrapped environment's (float64 on DM Control);
    only shape and bounds are meant to be read.
    """
    current = environment
    while isinstance(current, EnvironmentWrapper):
        if isinstance(current, CanonicalActionWrapper):
            return current._inner_spec
        current = current.environment
    return environment.action_spec()


# ----------------------------------------------------------------------------------------------
# Precision


def _single_precision_spec(spec: Any) -> Any:
    if not isinstance(spec, specs.Array) or spec.dtype != np.float64:
        return spec
    if isinstance(spec, specs.BoundedArray):
        return specs.BoundedArray(
            shape=spec.shape,
            dtype=np.float32,
            minimum=np.asarray(spec.minimum).astype(np.float32),
            maximum=np.asarray(spec.maximum).astype(np.float32),
            name=spec.name,
        )
    return specs.Array(shape=spec.shape, dtype=np.float32, name=spec.name)


def _single_precision_value(value: Any) -> Any:
    if value is None:  # reward/discount of a FIRST timestep
        return None
    array = np.asarray(value)
    if array.dtype != np.float64:
        return value
    # `[()]` turns a 0-d array into a numpy scalar and leaves n-d arrays as they are.
    return array.astype(np.float32)[()]


def _single_precision(value: Any) -> Any:
    """tree.map_structure(_single_precision_value, value), without the tree walk for the
    common leaves (one array, a Python float, a numpy scalar)."""
    if value is None or type(value) in (float, np.ndarray, np.float64, np.float32):
        return _single_precision_value(value)
    return tree.map_structure(_single_precision_value, value)


class SinglePrecisionWrapper(EnvironmentWrapper):
    """float64 observations, rewards and discounts (values and specs) become float32.

    Python floats count as float64. float64 action specs are exposed as float32 too, and actions
    are cast back to the wrapped spec's dtype on the way in, so agents work in float32 end to end.
    Integer dtypes are left alone.
    """

    def __init__(self, environment: dm_env.Environment):
        super().__init__(environment)
        self._inner_action_spec = environment.action_spec()
        spec = self._inner_action_spec
        self._cast_float64_action = isinstance(spec, specs.Array) and spec.dtype == np.float64
        self._plain_action = isinstance(spec, specs.Array)

    def _convert(self, timestep: dm_env.TimeStep) -> dm_env.TimeStep:
        return timestep._replace(
            observation=_single_precision(timestep.observation),
            reward=_single_precision(timestep.reward),
            discount=_single_precision(timestep.discount),
        )

    def reset(self) -> dm_env.TimeStep:
        return self._convert(self._environment.reset())

    def step(self, action: Any) -> dm_env.TimeStep:
        if self._plain_action:  # one array spec: no structure to walk
            if self._cast_float64_action:
                action = np.asarray(action, dtype=np.float64)
            return self._convert(self._environment.step(action))

        def cast(a: Any, spec: Any) -> Any:
            if isinstance(spec, specs.Array) and spec.dtype == np.float64:
                return np.asarray(a, dtype=np.float64)
            return a

        action = tree.map_structure_up_to(
            self._inner_action_spec, cast, action, self._inner_action_spec
        )
        return self._convert(self._environment.step(action))

    def observation_spec(self) -> Any:
        return tree.map_structure(_single_precision_spec, self._environment.observation_spec())

    def action_spec(self) -> Any:
        return tree.map_structure(_single_precision_spec, self._inner_action_spec)

    def reward_spec(self) -> Any:
        return tree.map_structure(_single_precision_spec, self._environment.reward_spec())

    def discount_spec(self) -> Any:
        return tree.map_structure(_single_precision_spec, self._environment.discount_spec())


# ----------------------------------------------------------------------------------------------
# Action repeat


class ActionRepeatWrapper(EnvironmentWrapper):
    """Applies each action `num_repeats` times and returns one combined timestep.

    Convention (Acme's): with inner rewards r_k and discounts d_k of the repeated steps,
        reward   = r_0 + d_0 r_1 + d_0 d_1 r_2 + ...   (discounted by the environment's
                                                          discounts only, no agent gamma)
        discount = d_0 d_1 ... d_{k-1}
    so a termination inside the repeat zeroes the discount and rewards after it never count.
    The agent's own gamma applies once per (repeated) step. The repeat stops early when the
    episode ends, and the returned timestep is that LAST one (with the summed reward).
    `environment_steps` counts the inner steps, so budgets are in environment steps.
    """

    def __init__(self, environment: dm_env.Environment, num_repeats: int):
        if int(num_repeats) != num_repeats or num_repeats < 1:
            raise ValueError(f"action repeat must be an integer >= 1, got {num_repeats!r}")
        super().__init__(environment)
        self._num_repeats = int(num_repeats)
        self._environment_steps = 0

    @property
    def num_repeats(self) -> int:
        return self._num_repeats

    @property
    def environment_steps(self) -> int:
        """Steps taken in the wrapped environment so far (what step budgets count)."""
        return self._environment_steps

    def step(self, action: Any) -> dm_env.TimeStep:
        reward: Any = 0.0
        discount: Any = 1.0
        timestep = None
        for _ in range(self._num_repeats):
            timestep = self._environment.step(action)
            if timestep.first():
                # dm_env auto-reset: stepping after LAST starts a new episode. That FIRST
                # timestep has no reward; hand it back untouched rather than repeating into
                # the new episode with a stale action.
                return timestep
            self._environment_steps += 1
            reward = reward + discount * np.asarray(timestep.reward)
            discount = discount * np.asarray(timestep.discount)
            if timestep.last():
                break
        assert timestep is not None
        # Keep the wrapped environment's dtypes (float32 stays float32).
        reward = np.asarray(reward, dtype=np.asarray(timestep.reward).dtype)[()]
        discount = np.asarray(discount, dtype=np.asarray(timestep.discount).dtype)[()]
        return timestep._replace(reward=reward, discount=discount)


# ----------------------------------------------------------------------------------------------
# Rewards: several objectives

# The named per-step reward objectives an environment can report (`MultiObjectiveRewardWrapper`).
REWARD_OBJECTIVES = ("task", "action_cost")


class MultiObjectiveRewardWrapper(EnvironmentWrapper):
    """The reward as a vector of named objectives [K], in the order given:

        task:        the wrapped environment's own reward
        action_cost: -||a||^2 of the action just taken, in the action spec's units (antiphon's
                     canonical [-1, 1] below this wrapper: between -A and 0 per step), the
                     classic DM Control energy trade-off

    The discount stays a scalar. Under `ActionRepeatWrapper` each objective is summed over the
    repeated steps as the task reward is. FIRST timesteps keep reward None.
    """

    def __init__(self, environment: dm_env.Environment, objectives: tuple[str, ...]):
        objectives = tuple(objectives)
        unknown = [name for name in objectives if name not in REWARD_OBJECTIVES]
        if not objectives or unknown or len(set(objectives)) != len(objectives):
            raise ValueError(
                f"objectives must be distinct names from {', '.join(REWARD_OBJECTIVES)} "
                f"(got {','.join(objectives) or 'none'})"
            )
        reward_spec = environment.reward_spec()
        if not isinstance(reward_spec, specs.Array) or reward_spec.shape != ():
            raise ValueError(f"objectives need a scalar task reward, got {reward_spec}")
        super().__init__(environment)
        self._objectives = objectives

    @property
    def objectives(self) -> tuple[str, ...]:
        return self._objectives

    def step(self, action: Any) -> dm_env.TimeStep:
        timestep = self._environment.step(action)
        if timestep.reward is None:
            return timestep
        values = {
            "task": float(np.asarray(timestep.reward)),
            "action_cost": -float(np.sum(np.square(np.asarray(action, np.float64)))),
        }
        reward = np.array([values[name] for name in self._objectives], np.float32)
        return timestep._replace(reward=reward)

    def reward_spec(self) -> specs.Array:
        return specs.Array((len(self._objectives),), np.float32, name="reward")
