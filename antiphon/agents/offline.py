"""Shared mechanics of offline learners: the dataset in device memory, batches drawn inside jit.

The whole dataset is one `Transition` pytree of device arrays with N rows (1-step transitions:
`discount = gamma * (1 - terminal)`, so a time-limit truncation still bootstraps). An update
samples K batches of row indices with `jax.random.randint` *inside* the jitted call and runs K SGD
steps with `lax.scan`, so a learner step moves no data between host and device
(ARCHITECTURE.md §5).

`OfflineLearner` is the Learner around an algorithm's pure `sgd_step(state, batch) ->
(state, metrics)`; each algorithm keeps its losses, state and step in its own `learning.py`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from antiphon.core.types import Transition

SgdStep = Callable[[Any, Transition], tuple[Any, dict[str, jax.Array]]]


def device_transitions(dataset, discount: float, device: jax.Device | None = None) -> Transition:
    """A `Dataset` (antiphon.environments.datasets) as 1-step transitions on `device`.

    reward = r_t, discount = gamma * (1 - terminal_t): zero only at true terminals.
    """
    transitions = Transition(
        observation=np.asarray(dataset.observations, np.float32),
        action=np.asarray(dataset.actions, np.float32),
        reward=np.asarray(dataset.rewards, np.float32),
        discount=(discount * (1.0 - np.asarray(dataset.terminals, np.float32))).astype(np.float32),
        next_observation=np.asarray(dataset.next_observations, np.float32),
    )
    return jax.device_put(transitions, device)


def sample_batch(data: Transition, key: jax.Array, batch_size: int) -> Transition:
    """`batch_size` rows drawn uniformly with replacement (inside jit: indices never leave the
    device)."""
    return jax.tree_util.tree_map(lambda x: x[0], sample_batches(data, key, 1, batch_size))


def sample_batches(data: Transition, key: jax.Array, num_batches: int, batch_size: int):
    """`num_batches` batches of `batch_size` rows, each row drawn uniformly with replacement:
    a `Transition` whose leaves have leading dimensions [num_batches, batch_size].

    All the indices come from one `randint` call: inside a `lax.scan`, a call per step ran
    jax's threefry as three small XLA loops per step (about 2 % of BC's step on one core).
    """
    size = jax.tree_util.tree_leaves(data)[0].shape[0]
    indices = jax.random.randint(key, (num_batches, batch_size), 0, size)
    return jax.tree_util.tree_map(lambda x: jnp.take(x, indices, axis=0), data)


def make_multi_step_update(sgd_step: SgdStep, batch_size: int, steps_per_call: int):
    """`update(state, data, key) -> (state, mean metrics, next key)`: `steps_per_call` SGD steps,
    each on a fresh batch sampled from `data` on the device.

    A metric is averaged over the steps that computed it: a step marks one it did not compute
    with NaN (TD3+BC's actor metrics on steps without an actor update), and a metric no step of
    the call computed comes out NaN. So a NaN from a diverged loss shows in the mean only once
    every step of a call has it, at most one call later.

    The key for the next call is split off inside the call: a separate split per call was a
    second dispatch, about 2 % of BC's step at 8 steps per call."""

    def update(state, data: Transition, key: jax.Array):
        key, sample_key = jax.random.split(key)
        batches = sample_batches(data, sample_key, steps_per_call, batch_size)
        state, metrics = jax.lax.scan(sgd_step, state, batches)
        return state, jax.tree_util.tree_map(jnp.nanmean, metrics), key

    return update


class OfflineLearner:
    """Runs `steps_per_call` SGD steps per `step()` on a dataset held in device memory.

    `variables(state) -> {name: params}` names what `get_variables` serves (e.g. "policy",
    "critic"). The state must have an integer `steps` field (SGD steps taken).
    """

    def __init__(
        self,
        sgd_step: SgdStep,
        state: Any,
        data: Transition,
        variables: Callable[[Any], dict[str, Any]],
        batch_size: int,
        steps_per_call: int,
        key: jax.Array,
        counter=None,
        logger=None,
        log_every_seconds: float = 5.0,
    ):
        self._state = state
        self._data = data
        self._variables = variables
        self._steps_per_call = steps_per_call
        self._key = key
        self._counter = counter
        self._logger = logger
        self._log_every = log_every_seconds
        self._last_log = 0.0
        update = make_multi_step_update(sgd_step, batch_size, steps_per_call)
        donate = (0,) if jax.default_backend() != "cpu" else ()  # CPU ignores donation (warns)
        self._sgd_step = sgd_step
        self._update = jax.jit(update, donate_argnums=donate)
        self._lock = threading.Lock()  # guards _state against concurrent get_variables/save
        self._version = 0
        self._stop = threading.Event()

    @property
    def sgd_step(self) -> SgdStep:
        """The pure `sgd_step(state, batch)` this learner runs (benchmarks time it alone)."""
        return self._sgd_step

    @property
    def steps_per_call(self) -> int:
        return self._steps_per_call

    # ---- Learner
    def step(self) -> dict[str, Any] | None:
        with self._lock:
            self._state, metrics, self._key = self._update(self._state, self._data, self._key)
            self._version += 1
        counts = (
            self._counter.increment(steps=self._steps_per_call) if self._counter is not None else {}
        )
        now = time.time()
        if self._logger is not None and now - self._last_log >= self._log_every:
            self._last_log = now
            values = {k: float(v) for k, v in jax.device_get(metrics).items()}
            values.update(counts)
            self._logger.write(values)
            return values
        return None

    def run(self, num_steps: int | None = None) -> None:
        """`num_steps` SGD steps (rounded up to whole calls), or until stop()."""
        done = 0
        while not self._stop.is_set() and (num_steps is None or done < num_steps):
            self.step()
            done += self._steps_per_call

    def stop(self) -> None:
        self._stop.set()

    def block_until_ready(self) -> None:
        jax.block_until_ready(self._state)

    # ---- VariableSource
    def get_variables(self, names):
        with self._lock:
            state = self._state
        table = self._variables(state)
        return [jax.device_get(table[name]) for name in names]

    def variables_version(self) -> int:
        return self._version

    # ---- Saveable: the training state and the sampling key
    def save(self) -> Any:
        with self._lock:
            return {"state": jax.device_get(self._state), "key": jax.device_get(self._key)}

    def restore(self, saved: Any) -> None:
        with self._lock:
            # checkpointing.restore_pytree rebuilds the template's structure (our save()).
            self._state = jax.device_put(saved["state"])
            self._key = jax.device_put(saved["key"])
            self._version += 1

    @property
    def state(self) -> Any:
        return self._state

    @property
    def sgd_steps(self) -> int:
        return int(np.asarray(jax.device_get(self._state.steps)))
