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


class _ParameterPulling:
    """What GenericActor and VectorActor share: parameters from a VariableClient (`_client`),
    put on `_device` once per pulled version."""

    _client: Any
    _device: Any
    _params: Any = None
    _params_version: Any = None

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

    def update(self, wait: bool = False) -> None:
        self._client.update(wait)


class GenericActor(_ParameterPulling):
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

        def step(params, observation, state, key):
            key, policy_key = jax.random.split(key)
            action, state = policy(params, observation, state, policy_key)
            return action, state, key

        self._step = jax.jit(step, backend=backend)

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


BatchedPolicyFn = Callable[[Any, Any, Any, jax.Array], tuple[Any, Any]]


def vectorise_policy(policy: PolicyFn) -> BatchedPolicyFn:
    """The same policy for E observations at once: `(params, observations[E], states[E],
    keys[E]) -> (actions[E], states[E])`, each element exactly what `policy` does alone."""
    return jax.vmap(policy, in_axes=(None, 0, 0, 0))


def _stack(trees: list[Any]) -> Any:
    return jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


class VectorActor(_ParameterPulling):
    """The actor of E environments: one jitted, batched policy call per step for all of them.

    Environment i has its own PRNG key stream (`keys[i]`, split exactly as GenericActor splits
    its key), its own recurrent state and its own adder (`adders[i]`), so with the same keys and
    seeds it writes the items E GenericActors would. Parameters come through one variable client.

    `batched_policy(params, observations[E], states[E], keys[E]) -> (actions[E], states[E])`;
    `vectorise_policy` makes one from a single-observation policy.

    `select_actions(indices, observations)` acts for the environments in `indices` (all of them,
    except where an evaluator has fewer episodes left than environments); the others' states
    and keys are left as they were.
    """

    def __init__(
        self,
        batched_policy: BatchedPolicyFn,
        keys: list[jax.Array],
        variable_client,
        adders: list | None = None,
        initial_state: Callable[[], Any] | None = None,
        backend: str = "cpu",
        state_extras: Callable[[Any], Any] | None = None,
    ):
        if adders is not None and len(adders) != len(keys):
            raise ValueError(f"{len(keys)} environments but {len(adders)} adders")
        self.num_envs = len(keys)
        self._client = variable_client
        self._adders = adders
        self._initial_state = initial_state or (lambda: ())
        # Host-side (numpy) batched state, so a reset is an assignment, not a device op.
        self._states = _stack([self._initial_state() for _ in range(self.num_envs)])
        self._state_extras = state_extras
        self._extras: list[Any] = [() for _ in range(self.num_envs)]
        self._observations: list[Any] = [None] * self.num_envs
        self._device = jax.devices(backend)[0]
        # uint32 [E, 2] keys (jax.random.PRNGKey's), kept on the host with the states.
        self._keys = np.stack([np.asarray(k) for k in keys])

        def step(params, observations, states, keys):
            split = jax.vmap(jax.random.split)(keys)
            actions, states = batched_policy(params, observations, states, split[:, 1])
            return actions, states, split[:, 0]

        self._step = jax.jit(step, backend=backend)

    def select_actions(self, indices: list[int], observations: list[Any]) -> np.ndarray:
        """Actions for the environments in `indices`, given their observations (in order).

        The policy always runs on all E (one compiled shape; an idle environment gets its last
        observation again), and only the environments in `indices` advance their state and key.
        """
        for i, observation in zip(indices, observations, strict=True):
            self._observations[i] = observation
        if any(o is None for o in self._observations):  # idle before their first observation
            first = observations[0]
            self._observations = [first if o is None else o for o in self._observations]
        if self._state_extras is not None:
            for i in indices:
                self._extras[i] = self._state_extras(
                    jax.tree_util.tree_map(lambda x, i=i: x[i], self._states)
                )
        actions, new_states, new_keys = self._step(
            self._current_params(), _stack(self._observations), self._states, self._keys
        )
        # One transfer back per step for the states and the keys (they live on the host).
        new_states, new_keys = jax.device_get((new_states, new_keys))
        if len(indices) == self.num_envs:
            self._states, self._keys = new_states, np.asarray(new_keys)
        else:
            rows = np.asarray(indices)

            def put(old, new):
                old = np.array(old, copy=True)
                old[rows] = np.asarray(new)[rows]
                return old

            self._states = jax.tree_util.tree_map(put, self._states, new_states)
            self._keys = put(self._keys, new_keys)
        return np.asarray(actions)[np.asarray(indices)]

    def observe_first(self, index: int, timestep: dm_env.TimeStep) -> None:
        initial = self._initial_state()

        def reset(batched, value):
            batched = np.array(batched, copy=True)
            batched[index] = np.asarray(value)
            return batched

        self._states = jax.tree_util.tree_map(reset, self._states, initial)
        if self._adders is not None:
            self._adders[index].add_first(timestep)

    def observe(self, index: int, action, next_timestep: dm_env.TimeStep) -> None:
        if self._adders is not None:
            if self._state_extras is not None:
                self._adders[index].add(action, next_timestep, extras=self._extras[index])
            else:
                self._adders[index].add(action, next_timestep)
