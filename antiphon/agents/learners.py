"""The Learner every algorithm runs: K SGD steps per jitted call, and a divergence guard.

An algorithm provides a pure `sgd_step(state, batch) -> (state, metrics)` (its losses and
optimiser updates; see `actor_critic.py` for the shared actor-critic form) and a
`variables(state) -> {name: params}` table. This module turns that into the Learner of
ARCHITECTURE.md §3 in two flavours:

    OnlineLearner    batches [K, B, ...] from an iterator (the replay's prefetcher)
    offline.OfflineLearner   the dataset on the device, K batches drawn inside the call

**Divergence guard.** Every jitted call also returns one boolean: are the updated state's
floating-point leaves (parameters, targets, optimiser moments, duals) all finite, and is no
metric infinite? The learner reads that flag one call late: after dispatching call t it reads
call t-1's flag, which has had a whole call's time to finish, so the guard adds no host sync
beyond what the step already returns and dispatch stays one call ahead. Until a call's flag has
been read its output is "pending"; what the learner serves (`get_variables`) and saves (`save`)
is always the newest *verified* state, so no actor acts with, and no checkpoint holds, a
non-finite value.

On the first non-finite call the learner drops it (and the call dispatched after it), goes back
to the state the bad call started from (the last finite state), replays that call one SGD step
at a time to find the step and the losses that went non-finite, and raises `DivergenceError`.
The caller (the program's learner node) checkpoints the finite state and stops the run.

Memory: up to three states are alive at once (verified, pending, newest), so buffer donation is
not used; the states of these networks are megabytes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from antiphon.agents import actor_critic

SgdStep = Callable[[Any, Any], tuple[Any, dict[str, jax.Array]]]


class DivergenceError(RuntimeError):
    """A learner's update produced a non-finite value. The learner has gone back to its last
    finite state (`last_finite_step` SGD steps) before raising."""

    def __init__(
        self,
        step: int,
        last_finite_step: int,
        losses: dict[str, float],
        groups: list[str],
    ):
        self.step = step
        self.last_finite_step = last_finite_step
        self.losses = dict(losses)
        self.groups = list(groups)
        what = ", ".join(f"{name}={value}" for name, value in self.losses.items())
        where = ", ".join(self.groups) or "no state field (an infinite metric)"
        super().__init__(
            f"diverged at SGD step {step}: {what or 'every loss finite'}; "
            f"non-finite after that step: {where}"
        )


def tree_all_finite(tree: Any) -> jax.Array:
    """True iff every floating-point leaf of `tree` is finite (integer leaves are ignored)."""
    flags = [
        jnp.all(jnp.isfinite(leaf))
        for leaf in jax.tree_util.tree_leaves(tree)
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)
    ]
    return jnp.all(jnp.stack(flags)) if flags else jnp.asarray(True)


def update_is_finite(state: Any, metrics: dict[str, jax.Array]) -> jax.Array:
    """The guard's flag for one call: the state is finite and no metric is +-inf.

    NaN metrics are allowed: a step marks a metric it did not compute with NaN (TD3+BC's actor
    metrics on steps without an actor update). A NaN from a real divergence reaches the
    parameters through the gradients, so the state check catches it.
    """
    no_inf = [~jnp.any(jnp.isinf(value)) for value in jax.tree_util.tree_leaves(metrics)]
    return tree_all_finite(state) & jnp.all(jnp.stack(no_inf)) if no_inf else tree_all_finite(state)


def make_scan_update(sgd_step: SgdStep):
    """`update(state, batches) -> (state, mean metrics, finite)`: one SGD step per leading index
    of `batches` ([K, B, ...]), in a `lax.scan`. A metric is averaged over the steps that
    computed it (NaN marks "not computed"; see `update_is_finite`)."""

    def update(state, batches):
        state, metrics = jax.lax.scan(sgd_step, state, batches)
        metrics = jax.tree_util.tree_map(jnp.nanmean, metrics)
        return state, metrics, update_is_finite(state, metrics)

    return update


def _non_finite_fields(state: Any) -> list[str]:
    """Names of the state's top-level fields (NamedTuple fields) holding a non-finite value."""
    fields = getattr(state, "_fields", None)
    if fields is None:
        return [] if bool(tree_all_finite(state)) else ["state"]
    return [name for name in fields if not bool(tree_all_finite(getattr(state, name)))]


def _steps_of(state: Any) -> int:
    steps = getattr(state, "steps", None)
    return int(np.asarray(jax.device_get(steps))) if steps is not None else -1


class _Call(NamedTuple):
    """A dispatched update whose finite flag has not been read yet."""

    state_in: Any
    inputs: Any  # what replaying the call needs (its batches, or its sampling key)
    state_out: Any
    metrics: Any
    finite: jax.Array


class GuardedLearner:
    """The Learner protocol around a pure `sgd_step`, with the divergence guard.

    Subclasses implement `_next_inputs()` (what the next call needs: its batches, or its
    sampling key; called without the lock held, since it may block on data),
    `_dispatch(state, inputs) -> (state_out, metrics, finite)` (one jitted call of
    `steps_per_call` SGD steps) and `_call_batches(inputs)` (the call's batches [K, B, ...], to
    replay it one step at a time after a divergence).
    """

    def __init__(
        self,
        sgd_step: SgdStep,
        state: Any,
        variables: Callable[[Any], dict[str, Any]],
        steps_per_call: int,
        counter=None,
        logger=None,
        log_every_seconds: float = 5.0,
    ):
        self._sgd_step = sgd_step
        self._variables = variables
        self._steps_per_call = steps_per_call
        self._counter = counter
        self._logger = logger
        self._log_every = log_every_seconds
        self._last_log = 0.0
        self._state = state  # newest (possibly pending) state
        self._verified = state  # newest state whose finite flag has been read
        self._verified_metrics: dict[str, Any] | None = None
        self._pending: _Call | None = None
        self._lock = threading.Lock()  # guards the states against get_variables/save threads
        self._version = 0
        self._stop = threading.Event()
        self._single_step = None

    # ---- subclass hooks
    def _next_inputs(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _dispatch(self, state, inputs):  # pragma: no cover - abstract
        raise NotImplementedError

    def _call_batches(self, inputs):  # pragma: no cover - abstract
        raise NotImplementedError

    def _extra_log_values(self) -> dict[str, float]:
        return {}

    # ---- the guard
    def _resolve(self, call: _Call) -> None:
        """Reads `call`'s flag (blocking until it is computed). Finite: its output becomes the
        verified state. Not: back to its input state, then DivergenceError. Lock held."""
        if bool(np.asarray(call.finite)):
            self._verified = call.state_out
            self._verified_metrics = call.metrics
            self._version += 1
            return
        self._state = self._verified = call.state_in
        self._pending = None
        raise self._diagnose(call)

    def _diagnose(self, call: _Call) -> DivergenceError:
        """Replays `call` one SGD step at a time from its (finite) input state."""
        if self._single_step is None:
            self._single_step = jax.jit(self._sgd_step)
        batches = self._call_batches(call.inputs)
        num_steps = jax.tree_util.tree_leaves(batches)[0].shape[0]
        state = call.state_in
        start = _steps_of(state)
        for k in range(num_steps):
            batch = jax.tree_util.tree_map(lambda x, k=k: x[k], batches)
            state, metrics = self._single_step(state, batch)
            values = {name: float(v) for name, v in jax.device_get(metrics).items()}
            groups = _non_finite_fields(state)
            infinite = {n: v for n, v in values.items() if np.isinf(v)}
            if groups or infinite:
                losses = {n: v for n, v in values.items() if not np.isfinite(v) and "loss" in n}
                losses.update(infinite)
                return DivergenceError(start + k + 1, start, losses, groups)
        # The scanned call and the replay disagree (summation order at the edge of overflow):
        # still a divergence, reported at the call's last step.
        return DivergenceError(start + num_steps, start, {}, _non_finite_fields(call.state_out))

    def flush(self) -> None:
        """Reads the pending call's flag now: afterwards the verified state is the newest one.
        Raises DivergenceError if that call was not finite."""
        with self._lock:
            if self._pending is not None:
                call, self._pending = self._pending, None
                self._resolve(call)

    # ---- Learner
    def step(self) -> dict[str, Any] | None:
        """Dispatches one call of `steps_per_call` SGD steps and checks the previous one."""
        inputs = self._next_inputs()
        with self._lock:
            state_out, metrics, finite = self._dispatch(self._state, inputs)
            previous = self._pending
            self._pending = _Call(self._state, inputs, state_out, metrics, finite)
            self._state = state_out
            if previous is not None:
                self._resolve(previous)
        counts = (
            self._counter.increment(steps=self._steps_per_call) if self._counter is not None else {}
        )
        now = time.time()
        if self._logger is not None and now - self._last_log >= self._log_every:
            with self._lock:
                metrics = self._verified_metrics
            if metrics is None:
                return None
            self._last_log = now
            values = {k: float(v) for k, v in jax.device_get(metrics).items()}
            values.update(self._extra_log_values())
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
        self.flush()

    def stop(self) -> None:
        self._stop.set()

    def block_until_ready(self) -> None:
        jax.block_until_ready(self._state)

    @property
    def sgd_step(self) -> SgdStep:
        """The pure `sgd_step(state, batch)` this learner runs (benchmarks time it alone)."""
        return self._sgd_step

    @property
    def steps_per_call(self) -> int:
        return self._steps_per_call

    # ---- VariableSource: the verified state only
    def get_variables(self, names):
        with self._lock:
            state = self._verified
        table = self._variables(state)
        return [jax.device_get(table[name]) for name in names]

    def variables_version(self) -> int:
        return self._version

    # ---- Saveable: the verified state (after reading the pending flag)
    def save(self) -> Any:
        self.flush()
        with self._lock:
            return self._saved(self._verified)

    def _saved(self, state) -> Any:
        return jax.device_get(state)

    def restore(self, saved: Any) -> None:
        with self._lock:
            state = self._restored(saved)
            self._state = self._verified = state
            self._pending = None
            self._version += 1

    def _restored(self, saved: Any) -> Any:
        return jax.device_put(saved)

    @property
    def state(self) -> Any:
        """The newest state (the last dispatched call's output, possibly not yet verified)."""
        return self._state

    @property
    def sgd_steps(self) -> int:
        """SGD steps of the newest state."""
        return _steps_of(self._state)

    @property
    def verified_sgd_steps(self) -> int:
        """SGD steps of the newest verified state (what `save` writes)."""
        with self._lock:
            return _steps_of(self._verified)


class OnlineLearner(GuardedLearner):
    """Pulls [K, B, ...] batches from `iterator` and runs K SGD steps per call. Also the
    program's variable source. Logs `data_wait_fraction`: the share of wall time spent blocked
    on the iterator (BENCHMARKS.md's learner data wait)."""

    def __init__(
        self,
        sgd_step: SgdStep,
        state: Any,
        iterator: Iterator[Any],
        variables: Callable[[Any], dict[str, Any]],
        steps_per_call: int,
        counter=None,
        logger=None,
        log_every_seconds: float = 5.0,
    ):
        super().__init__(
            sgd_step, state, variables, steps_per_call, counter, logger, log_every_seconds
        )
        self._iterator = iterator
        self._update = jax.jit(make_scan_update(sgd_step))
        self._wait_seconds = 0.0
        self._first_step_time: float | None = None

    def _next_inputs(self):
        start = time.perf_counter()
        if self._first_step_time is None:
            self._first_step_time = start
        batches = next(self._iterator)
        self._wait_seconds += time.perf_counter() - start
        return batches

    def _dispatch(self, state, batches):
        return self._update(state, batches)

    def _call_batches(self, inputs):
        return inputs

    def _extra_log_values(self) -> dict[str, float]:
        return {"data_wait_fraction": self.data_wait_fraction}

    @property
    def data_wait_fraction(self) -> float:
        """Time blocked on the data stream / wall time since the first step. (Wall time, not
        dispatch time: with asynchronous dispatch an update returns before it has run.)"""
        if self._first_step_time is None:
            return 0.0
        return self._wait_seconds / max(time.perf_counter() - self._first_step_time, 1e-9)


class ConfiguredOnlineLearner(OnlineLearner):
    """An online agent's learner, made from what its builder holds:
    `Learner(networks, config, env_spec, iterator, key, counter, logger, value_bounds=...)`.

    A subclass gives `make_update(networks, config, env_spec, key, value_bounds) -> (sgd_step,
    initial state)` (its losses and optimisers) and, if it serves more than the actor-critic
    pair, `variables(state)`. Each call runs `config.sgd_steps_per_call` SGD steps.
    `value_bounds`: the range a discounted return can take (`actor_critic.return_bounds`); a
    critic logs the fraction of its Q estimates outside it.
    """

    def __init__(
        self,
        networks,
        config,
        env_spec,
        iterator: Iterator[Any],
        key: jax.Array,
        counter=None,
        logger=None,
        log_every_seconds: float = 5.0,
        value_bounds: tuple[float, float] | None = None,
    ):
        sgd_step, state = self.make_update(networks, config, env_spec, key, value_bounds)
        super().__init__(
            sgd_step,
            state,
            iterator,
            self.variables,
            config.sgd_steps_per_call,
            counter=counter,
            logger=logger,
            log_every_seconds=log_every_seconds,
        )

    @staticmethod
    def make_update(networks, config, env_spec, key, value_bounds):  # pragma: no cover
        raise NotImplementedError

    # What the learner serves: {"policy": ..., "critic": ...}.
    variables = staticmethod(actor_critic.variables)
