"""Adders: turn an actor's stream of timesteps into Reverb items (Acme's adder API).

All adders write through one `reverb.TrajectoryWriter`: each piece of data is sent once and items
only reference cells of the writer's history, so an observation shared by several items (n-step
transitions, overlapping sequences) is stored once.

Common API:
  add_first(timestep)                     first timestep of an episode (`timestep.first()`)
  add(action, next_timestep, extras=())   one environment step
  reset()                                 abandon the current episode (pending items are dropped)

Items go to every table named in `priority_fns`, a mapping table name -> priority function (None
means priority 1.0). A function receives the item as numpy arrays, structured like the table
signature (a `Transition` or a `Step` of [T, ...] arrays), and returns a float. A plain table name
is accepted as shorthand for `{name: None}`.

After each item the writer is flushed down to `max_in_flight_items` unconfirmed items, so a slow
server or a blocking rate limiter stalls the actor instead of letting memory grow; at the end of an
episode everything is flushed.

If the server goes away (a replay node that died and is being restarted), the adder reconnects to
the re-resolved address with backoff and drops the rest of the episode it was writing: that
episode's history lived in the old writer. A flush that waits is told apart from a dead server by
asking the server for its info every `liveness_check_seconds`: a blocking rate limiter is not a
failure.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

import dm_env
import numpy as np
import reverb
import tensorflow as tf
import tree

from antiphon.core.types import EnvironmentSpec, NestedArray, NestedSpec, Transition
from antiphon.replay import clients

log = logging.getLogger(__name__)

__all__ = [
    "EpisodeAdder",
    "NStepTransitionAdder",
    "PriorityFn",
    "PriorityFns",
    "SequenceAdder",
    "Step",
]

PriorityFn = Callable[[Any], float]
PriorityFns = Mapping[str, PriorityFn | None]


class Step(NamedTuple):
    """One step of a sequence or episode item (each field gets a leading time axis when sampled).

    Step t holds the observation o_t, the action a_t taken there, and the reward r_t and discount
    d_t of the timestep that a_t led to. An episode of T actions is written as T + 1 steps: the last
    one holds the final observation o_T with zero action, reward, discount and extras (Acme's
    convention), so a learner sees the bootstrap observation. Padding steps are all zeros with
    start_of_episode False.
    """

    observation: NestedArray
    action: NestedArray
    reward: NestedArray
    discount: NestedArray
    start_of_episode: NestedArray
    extras: NestedArray = ()


# --------------------------------------------------------------------------------------------
# Helpers.


def _tensor_spec(
    spec: Any, prefix: tuple[int | None, ...] = (), dtype: Any = None
) -> tf.TensorSpec:
    """dm_env spec (or anything with shape and dtype) -> tf.TensorSpec with leading dims."""
    return tf.TensorSpec(shape=prefix + tuple(spec.shape), dtype=tf.as_dtype(dtype or spec.dtype))


def _tensor_specs(specs: NestedSpec, prefix: tuple[int | None, ...] = ()) -> NestedSpec:
    return tree.map_structure(lambda s: _tensor_spec(s, prefix), specs)


def _step_signature(env_spec: EnvironmentSpec, length: int | None, extras_spec: NestedSpec) -> Step:
    prefix = (length,)
    return Step(
        observation=_tensor_specs(env_spec.observations, prefix),
        action=_tensor_specs(env_spec.actions, prefix),
        reward=_tensor_spec(env_spec.rewards, prefix, np.float32),
        discount=_tensor_spec(env_spec.discounts, prefix, np.float32),
        start_of_episode=tf.TensorSpec(prefix, tf.bool),
        extras=_tensor_specs(extras_spec, prefix),
    )


def _to_numpy(x: NestedArray) -> NestedArray:
    return tree.map_structure(np.asarray, x)


def _at(column: Any, index: int | slice) -> Any:
    """Index a (nested) writer-history column with absolute step indices of the episode.

    Indices are turned into negative ones here: reverb's history maps a slice whose stop equals
    the history length to an empty slice (stop - len == 0).
    """

    def get(c: Any) -> Any:
        n = len(c)
        if isinstance(index, slice):
            stop = None if index.stop >= n else index.stop - n
            return c[slice(index.start - n, stop)]
        return c[index - n]

    return tree.map_structure(get, column)


def _has_leaves(x: Any) -> bool:
    return bool(tree.flatten(x))


# --------------------------------------------------------------------------------------------
# Base.


class _Adder:
    """Writer ownership, item creation with priorities, bounded flushing, episode bookkeeping."""

    def __init__(
        self,
        client: reverb.Client,
        priority_fns: str | PriorityFns,
        num_keep_alive_refs: int,
        max_in_flight_items: int,
    ):
        if isinstance(priority_fns, str):
            priority_fns = {priority_fns: None}
        if not priority_fns:
            raise ValueError("priority_fns must name at least one table")
        if max_in_flight_items < 0:
            raise ValueError(f"max_in_flight_items must be >= 0, got {max_in_flight_items}")
        self._client = client
        self._priority_fns = dict(priority_fns)
        self._max_in_flight_items = max_in_flight_items
        self._num_keep_alive_refs = num_keep_alive_refs
        self._writer = client.trajectory_writer(num_keep_alive_refs=num_keep_alive_refs)
        # The writer refuses a new episode while its last step is partial, so track it.
        self._step_open = False
        self._in_episode = False
        self._has_extras = False
        # Set after a reconnect: the rest of the current episode is not written.
        self._dropping_episode = False
        self._interrupted = False
        self.liveness_check_seconds = 5.0
        self.max_outage_seconds = 600.0
        self.reconnects = 0

    # Writer plumbing.

    def _append(self, data: dict[str, Any], partial: bool) -> None:
        self._writer.append(data, partial_step=partial)
        self._step_open = partial

    def _create_item(self, trajectory: Any) -> None:
        numpy_trajectory = None
        for table, priority_fn in self._priority_fns.items():
            if priority_fn is None:
                priority = 1.0
            else:
                if numpy_trajectory is None:  # fetch the data once, only if someone needs it
                    numpy_trajectory = tree.map_structure(lambda c: c.numpy(), trajectory)
                priority = float(priority_fn(numpy_trajectory))
            self._writer.create_item(table=table, priority=priority, trajectory=trajectory)
        self._flush(self._max_in_flight_items)

    def _flush(self, block_until_num_items: int) -> None:
        """Flush, waiting as long as the server is alive (a rate limiter may hold inserts)."""
        timeout_ms = max(1, int(self.liveness_check_seconds * 1000))
        while True:
            try:
                self._writer.flush(
                    block_until_num_items=block_until_num_items, timeout_ms=timeout_ms
                )
                return
            except reverb.errors.DeadlineExceededError:
                if self._interrupted or not clients.server_alive(
                    self._client, self.liveness_check_seconds
                ):
                    raise

    def _guarded(self, write: Callable[..., None], *args: Any) -> None:
        """Run a write; on a transport error reconnect and drop the rest of the episode."""
        if self._dropping_episode:
            return
        try:
            write(*args)
        except Exception as e:
            if not clients.is_transport_error(e):
                raise
            self._reconnect(e)

    def _reconnect(self, error: BaseException) -> None:
        log.warning(
            "replay writer lost its server (%s); reconnecting and dropping this episode",
            str(error).splitlines()[0][:120],
        )
        try:
            self._writer.close()
        except Exception:  # noqa: BLE001, S110 - the old writer's server is gone
            pass
        self._client = clients.connect(
            self._client.server_address,
            max_outage_seconds=self.max_outage_seconds,
            should_stop=lambda: self._interrupted,
        )
        self._writer = self._client.trajectory_writer(num_keep_alive_refs=self._num_keep_alive_refs)
        self._step_open = False
        self._reset_state()
        self._dropping_episode = True
        self.reconnects += 1

    # Public API.

    def add_first(self, timestep: dm_env.TimeStep) -> None:
        """Record the first timestep of an episode."""
        if self._in_episode:
            raise ValueError("add_first called twice in one episode; call reset() in between")
        if not timestep.first():
            raise ValueError(f"add_first needs a FIRST timestep, got {timestep.step_type}")
        self._in_episode = True
        self._guarded(self._add_first, timestep)

    def add(self, action: NestedArray, next_timestep: dm_env.TimeStep, extras: Any = ()) -> None:
        """Record one step: `action` was taken and led to `next_timestep`."""
        if not self._in_episode:
            raise ValueError("add called before add_first")
        if next_timestep.first():
            raise ValueError("add got a FIRST timestep; start new episodes with add_first")
        self._guarded(self._add, _to_numpy(action), next_timestep, _to_numpy(extras))
        if next_timestep.last():
            self.reset()

    def reset(self, timeout_ms: int | None = None) -> None:
        """End the episode: flush finished items, drop unfinished ones, clear the history."""
        self._guarded(self._end_episode, timeout_ms)
        self._in_episode = False
        self._dropping_episode = False
        self._reset_state()

    def _end_episode(self, timeout_ms: int | None) -> None:
        if self._step_open:
            self._append({}, partial=False)  # close the open step so a new episode can start
        if timeout_ms is None:
            self._flush(0)  # waits while the server lives, fails when it does not
        self._writer.end_episode(clear_buffers=True, timeout_ms=timeout_ms)

    def interrupt(self) -> None:
        """Make a pending or future reconnect give up at once (the program is stopping)."""
        self._interrupted = True

    def close(self) -> None:
        """Close the writer (items not yet flushed are lost)."""
        self._interrupted = True
        try:
            self._writer.close()
        except Exception as e:  # noqa: BLE001 - closing after the server went away
            if not clients.is_transport_error(e):
                raise

    # Subclass hooks.

    def _add_first(self, timestep: dm_env.TimeStep) -> None:
        raise NotImplementedError

    def _add(self, action: NestedArray, next_timestep: dm_env.TimeStep, extras: Any) -> None:
        raise NotImplementedError

    def _reset_state(self) -> None:
        pass


# --------------------------------------------------------------------------------------------
# N-step transitions.


class NStepTransitionAdder(_Adder):
    """Writes one n-step `Transition` per environment step, with one writer append per step.

    For step t (action a_t taken at o_t) with n' = min(n, steps left in the episode):
      reward   = sum_{k<n'} gamma^k (prod_{j<k} d_{t+j}) r_{t+k}
      discount = gamma^{n'} prod_{k<n'} d_{t+k}
      next_observation = o_{t+n'}
    where r_{t+k}, d_{t+k} are the reward and discount of the timestep following a_{t+k}. The
    transition of step t is written once step t+n-1 is done; at the end of the episode the last
    (shorter) transitions follow, so an episode of T steps yields exactly T items, in order of t.

    Writer layout (`add_first` appends step 0; each `add` appends exactly one step, complete):
      step 0: observation o_0
      step i: observation o_i | action a_{i-1}, extras_{i-1} | n-step values of the transitions
              whose next observation is o_i
    The n-step values are computed here on the host, before the step is appended, from the
    rewards and discounts of the last n steps (kept in a small buffer, never written raw). The
    full-length transition t = i - n goes to columns `n_step_return`/`total_discount`; at the
    episode end (step T) the shorter transitions t = T - k, k < n, go to columns
    `n_step_return_k`/`total_discount_k` of that same step (a history cell holds one value, so
    each needs its own column; no extra steps are appended). An item references o_t (step t), a_t
    and extras_t (step t + 1), its two values and o_{t+n'} (step t + n'); no data is stored twice.
    """

    def __init__(
        self,
        client: reverb.Client,
        n_step: int,
        discount: float,
        priority_fns: str | PriorityFns,
        max_in_flight_items: int = 16,
    ):
        if n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {n_step}")
        if not 0.0 <= discount <= 1.0:
            raise ValueError(f"discount must be in [0, 1], got {discount}")
        # Items span the n + 1 writer steps t..t+n; the writer keeps 2n + 1 alive, as it always
        # has (and as benchmarks/adder_efficiency.py's bare writer does).
        super().__init__(client, priority_fns, 2 * n_step + 1, max_in_flight_items)
        self._n = n_step
        self._gamma = float(discount)
        self._rewards: collections.deque = collections.deque(maxlen=n_step)
        # Column names of the n-step values of a transition of length k (index k, 1..n).
        self._value_columns = [("", "")] + [
            (f"n_step_return_{k}", f"total_discount_{k}") for k in range(1, n_step)
        ]
        self._value_columns.append(("n_step_return", "total_discount"))
        # `writer.history`, kept while no new column appears: building it costs more than the
        # rest of an item's Python work, and its column objects are the writer's own, live ones.
        self._history: Any = None

    @staticmethod
    def signature(env_spec: EnvironmentSpec, extras_spec: NestedSpec = ()) -> Transition:
        """Table signature matching exactly what this adder writes."""
        obs = _tensor_specs(env_spec.observations)
        return Transition(
            observation=obs,
            action=_tensor_specs(env_spec.actions),
            reward=_tensor_spec(env_spec.rewards, (), np.float32),
            discount=_tensor_spec(env_spec.discounts, (), np.float32),
            next_observation=obs,
            extras=_tensor_specs(extras_spec),
        )

    def _add_first(self, timestep: dm_env.TimeStep) -> None:
        self._append({"observation": _as_numpy(timestep.observation)}, partial=False)

    def _add(self, action: NestedArray, next_timestep: dm_env.TimeStep, extras: Any) -> None:
        self._has_extras = _has_leaves(extras)
        self._rewards.append(_reward_discount(next_timestep))
        window = list(self._rewards)
        # Lengths n' of the transitions whose next observation is this step's, in order of t.
        if next_timestep.last():
            lengths: Any = range(len(window), 0, -1)
        elif len(window) == self._n:
            lengths = (self._n,)
        else:
            lengths = ()
        step = {"observation": _as_numpy(next_timestep.observation), "action": action}
        if self._has_extras:
            step["extras"] = extras
        for k in lengths:
            return_column, discount_column = self._value_columns[k]
            step[return_column], step[discount_column] = self._n_step_return(window[-k:])
        self._append(step, partial=False)
        if self._history is None or not step.keys() <= self._history.keys():
            self._history = self._writer.history  # first step, or this step added a column
        for k in lengths:
            self._write(self._history, k)

    def _write(self, history: Any, k: int) -> None:
        """Create the item of the length-k transition whose next observation is the last step's."""
        return_column, discount_column = self._value_columns[k]
        self._create_item(
            Transition(
                observation=_back(history["observation"], k + 1),
                action=_back(history["action"], k),
                reward=history[return_column][-1],
                discount=history[discount_column][-1],
                next_observation=_back(history["observation"], 1),
                extras=_back(history["extras"], k) if self._has_extras else (),
            )
        )

    def _n_step_return(self, rewards_discounts: list) -> tuple[np.ndarray, np.ndarray]:
        # Scalar rewards and discounts arrive as Python floats: the same IEEE double operations,
        # in the same order, as with numpy float64 scalars, at a fraction of the cost. Array
        # rewards keep numpy arithmetic from a float64 weight.
        n_return: Any = 0.0
        weight: Any = 1.0 if type(rewards_discounts[0][0]) is float else np.float64(1.0)
        for reward, discount in rewards_discounts:
            n_return = n_return + weight * reward
            weight = weight * self._gamma * discount
        return np.asarray(n_return, np.float32), np.asarray(weight, np.float32)

    def _reset_state(self) -> None:
        self._rewards.clear()
        self._history = None  # after a reconnect it would be the old writer's


def _as_numpy(x: NestedArray) -> NestedArray:
    """`_to_numpy` with a shortcut for the common case of one array."""
    return x if type(x) is np.ndarray else _to_numpy(x)


def _reward_discount(timestep: dm_env.TimeStep) -> tuple[Any, Any]:
    """(reward, discount) of a timestep: Python floats when both are scalars, else arrays."""
    reward, discount = np.asarray(timestep.reward), np.asarray(timestep.discount)
    if reward.ndim == 0 and discount.ndim == 0:
        return float(reward), float(discount)
    return reward, discount


def _back(column: Any, k: int) -> Any:
    """The cell(s) k writer steps back in a (nested) history column (1: the last step)."""
    if not tree.is_nested(column):
        return column[-k]
    return tree.map_structure(lambda c: c[-k], column)


# --------------------------------------------------------------------------------------------
# Sequences and episodes.


class _StepAdder(_Adder):
    """Shared writer layout for sequence and episode adders (see `Step`).

    Writer step i holds one `Step`: observation and start_of_episode are appended first (partial
    step), action/reward/discount/extras complete it on the next `add`.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._num_steps = 0  # completed writer steps in this episode
        self._zero_step: dict[str, Any] | None = None
        self._observation_zeros: Any = None

    def _add_first(self, timestep: dm_env.TimeStep) -> None:
        observation = _to_numpy(timestep.observation)
        self._observation_zeros = tree.map_structure(np.zeros_like, observation)
        self._append({"observation": observation, "start_of_episode": np.bool_(True)}, partial=True)

    def _complete_step(
        self, action: NestedArray, next_timestep: dm_env.TimeStep, extras: Any
    ) -> None:
        self._has_extras = _has_leaves(extras)
        step = {
            "action": action,
            "reward": np.asarray(next_timestep.reward, np.float32),
            "discount": np.asarray(next_timestep.discount, np.float32),
        }
        if self._has_extras:
            step["extras"] = extras
        self._append(step, partial=False)
        self._num_steps += 1
        if self._zero_step is None:
            self._zero_step = tree.map_structure(np.zeros_like, step)
        self._append(
            {
                "observation": _to_numpy(next_timestep.observation),
                "start_of_episode": np.bool_(False),
            },
            partial=True,
        )

    def _close_final_step(self) -> None:
        """Complete the final observation's step with zero action/reward/discount/extras."""
        self._append(self._zero_step, partial=False)
        self._num_steps += 1

    def _append_padding(self, count: int) -> None:
        padding = dict(self._zero_step)
        padding["observation"] = self._observation_zeros
        padding["start_of_episode"] = np.bool_(False)
        for _ in range(count):
            self._append(padding, partial=False)

    def _write_steps(self, start: int, stop: int) -> None:
        """Create an item from writer steps [start, stop) of this episode."""
        history = self._writer.history
        index = slice(start, stop)
        self._create_item(
            Step(
                observation=_at(history["observation"], index),
                action=_at(history["action"], index),
                reward=_at(history["reward"], index),
                discount=_at(history["discount"], index),
                start_of_episode=_at(history["start_of_episode"], index),
                extras=_at(history["extras"], index) if self._has_extras else (),
            )
        )

    def _reset_state(self) -> None:
        self._num_steps = 0


class SequenceAdder(_StepAdder):
    """Writes fixed-length sequences of `Step`s starting every `period` steps of an episode.

    Sequences start at steps 0, period, 2*period, ...; `period < sequence_length` makes them
    overlap. A sequence is written as soon as its last step is complete. At episode end (the episode
    has T + 1 steps, see `Step`) one more sequence is written if the steps written so far do not
    reach the final step: the one starting at the first multiple of `period` whose sequence reaches
    past it. With "zero_pad" it is padded with zero steps to `sequence_length`; with "truncate" it
    is written shorter (the table signature then needs a variable time dimension:
    `signature(env_spec, None)`). Later starts are not written, so every step is in at least one
    sequence (for period <= sequence_length) and no sequence starts in padding. Sequences never
    cross episode boundaries.
    """

    def __init__(
        self,
        client: reverb.Client,
        sequence_length: int,
        period: int,
        priority_fns: str | PriorityFns,
        end_of_episode_behavior: Literal["zero_pad", "truncate"] = "zero_pad",
        max_in_flight_items: int = 16,
    ):
        if sequence_length < 1:
            raise ValueError(f"sequence_length must be >= 1, got {sequence_length}")
        if period < 1:
            raise ValueError(f"period must be >= 1, got {period}")
        if end_of_episode_behavior not in ("zero_pad", "truncate"):
            raise ValueError(
                "end_of_episode_behavior must be 'zero_pad' or 'truncate', got "
                f"{end_of_episode_behavior!r}"
            )
        super().__init__(client, priority_fns, sequence_length + 1, max_in_flight_items)
        self._length = sequence_length
        self._period = period
        self._zero_pad = end_of_episode_behavior == "zero_pad"

    @staticmethod
    def signature(
        env_spec: EnvironmentSpec, sequence_length: int | None, extras_spec: NestedSpec = ()
    ) -> Step:
        """Table signature: `Step` of [sequence_length, ...] specs (None: variable, truncate)."""
        return _step_signature(env_spec, sequence_length, extras_spec)

    def _add(self, action: NestedArray, next_timestep: dm_env.TimeStep, extras: Any) -> None:
        self._complete_step(action, next_timestep, extras)
        self._maybe_write()
        if next_timestep.last():
            self._close_final_step()
            if self._maybe_write():
                return
            num_steps, length, period = self._num_steps, self._length, self._period
            # First start s = k * period with s + length >= num_steps (reaches the final step).
            start = max(0, -(-(num_steps - length) // period)) * period
            if start >= num_steps:  # period > length: the final steps fall in a gap
                return
            if self._zero_pad:
                self._append_padding(start + length - num_steps)
                self._write_steps(start, start + length)
            else:
                self._write_steps(start, num_steps)

    def _maybe_write(self) -> bool:
        """Write the sequence ending at the last completed step if one ends there."""
        end = self._num_steps
        if end >= self._length and (end - self._length) % self._period == 0:
            self._write_steps(end - self._length, end)
            return True
        return False


class EpisodeAdder(_StepAdder):
    """Writes each whole episode (T actions -> T + 1 `Step`s, see `Step`) as one item.

    With `padding=True` episodes are zero-padded to `max_sequence_length` steps (fixed-shape
    signature); otherwise items have the episode's own length (signature with a None time dim).
    An episode that would exceed `max_sequence_length` steps raises ValueError.
    """

    def __init__(
        self,
        client: reverb.Client,
        max_sequence_length: int,
        priority_fns: str | PriorityFns,
        padding: bool = True,
        max_in_flight_items: int = 16,
    ):
        if max_sequence_length < 2:
            raise ValueError(
                f"max_sequence_length must be >= 2 (one action plus the final observation), "
                f"got {max_sequence_length}"
            )
        super().__init__(client, priority_fns, max_sequence_length + 1, max_in_flight_items)
        self._max_length = max_sequence_length
        self._padding = padding

    @staticmethod
    def signature(
        env_spec: EnvironmentSpec, max_sequence_length: int | None, extras_spec: NestedSpec = ()
    ) -> Step:
        """Table signature: pass max_sequence_length with padding=True, None without padding."""
        return _step_signature(env_spec, max_sequence_length, extras_spec)

    def _add(self, action: NestedArray, next_timestep: dm_env.TimeStep, extras: Any) -> None:
        # After this step the episode has at least num_steps + 2 steps (this one and the final
        # observation's); refuse before writing anything.
        if self._num_steps + 2 > self._max_length:
            raise ValueError(
                f"episode longer than max_sequence_length={self._max_length} steps "
                f"(an episode of T actions needs T + 1 steps); raise max_sequence_length or "
                "shorten episodes"
            )
        self._complete_step(action, next_timestep, extras)
        if next_timestep.last():
            self._close_final_step()
            if self._padding:
                self._append_padding(self._max_length - self._num_steps)
                self._write_steps(0, self._max_length)
            else:
                self._write_steps(0, self._num_steps)
