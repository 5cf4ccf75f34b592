"""A generic feed-forward or recurrent actor around a pure policy function (Acme's GenericActor).

The policy is `select_action(params, observation, state, key) -> (action, state)` for ONE
(unbatched) observation; this class jits it on the CPU, owns the PRNG key and recurrent state,
pulls parameters through a VariableClient and writes experience through an adder.

A recurrent agent whose learner needs the actor's state (R2D2's stored state) passes
`state_extras(state) -> extras`: each step's extras are made from the state the actor had
before that step, and go to the adder with the step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dm_env
import jax
import numpy as np

PolicyFn = Callable[[Any, Any, Any, jax.Array], tuple[Any, Any]]


class GenericActor:
    def __init__(
        self,
        policy: PolicyFn,
        key: jax.Array,
        variable_client,
        adder=None,
        initial_state: Callable[[], Any] | None = None,
        backend: str = "cpu",
        state_extras: Callable[[Any], Any] | None = None,
    ):
        self._client = variable_client
        self._adder = adder
        self._initial_state = initial_state or (lambda: ())
        self._state = self._initial_state()
        self._state_extras = state_extras
        self._extras: Any = ()
        self._device = jax.devices(backend)[0]
        self._key = jax.device_put(key, self._device)
        self._params = None
        self._params_version = None

        def step(params, observation, state, key):
            key, policy_key = jax.random.split(key)
            action, state = policy(params, observation, state, policy_key)
            return action, state, key

        self._step = jax.jit(step, backend=backend)

    def _current_params(self):
        # Convert pulled numpy params to device arrays once per version, not once per step.
        version = getattr(self._client, "version", None)
        if self._params is None or version != self._params_version:
            self._params = jax.device_put(self._client.params, self._device)
            self._params_version = version
        return self._params

    @property
    def params(self):
        """The parameters the policy currently acts with (numpy; None before the first pull)."""
        try:
            return self._client.params
        except Exception:  # noqa: BLE001 - no pull yet
            return None

    def select_action(self, observation):
        if self._state_extras is not None:
            self._extras = self._state_extras(self._state)
        action, self._state, self._key = self._step(
            self._current_params(), observation, self._state, self._key
        )
        return np.asarray(action)

    def observe_first(self, timestep: dm_env.TimeStep) -> None:
        self._state = self._initial_state()
        if self._adder is not None:
            self._adder.add_first(timestep)

    def observe(self, action, next_timestep: dm_env.TimeStep) -> None:
        if self._adder is not None:
            if self._state_extras is not None:
                self._adder.add(action, next_timestep, extras=self._extras)
            else:
                self._adder.add(action, next_timestep)

    def update(self, wait: bool = False) -> None:
        self._client.update(wait)


class UniformRandomActor:
    """Uniformly random actions in a bounded action spec: the reference point of every curve."""

    def __init__(self, action_spec, seed: int = 0):
        self._spec = action_spec
        self._rng = np.random.default_rng(seed)

    def select_action(self, observation):
        return self._rng.uniform(self._spec.minimum, self._spec.maximum, self._spec.shape).astype(
            self._spec.dtype
        )

    def observe_first(self, timestep: dm_env.TimeStep) -> None:
        pass

    def observe(self, action, next_timestep: dm_env.TimeStep) -> None:
        pass

    def update(self, wait: bool = False) -> None:
        pass
