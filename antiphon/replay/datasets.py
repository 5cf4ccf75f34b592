"""Replay -> learner data path: Reverb samples batched by tf.data, then prefetched onto the device.

`make_reverb_dataset` yields `reverb.ReplaySample(info, data)` batches shaped [B, ...], or
[K, B, ...] when `num_batches_per_call=K` (the learner scans K SGD steps per jitted call).
`DevicePrefetcher` moves those numpy batches to the accelerator in a background thread.

Note: `data` comes back structured like the table signature as Reverb decodes it: a namedtuple
with the same name and fields (e.g. `Transition`) but not the same class, so convert with
`Transition(*sample.data)` where the exact type matters.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import jax
import reverb
import tensorflow as tf

__all__ = [
    "DevicePrefetcher",
    "make_mixed_dataset",
    "make_reverb_dataset",
    "ReconnectingIterator",
    "reconnecting_numpy_iterator",
]

log = logging.getLogger(__name__)


def _table_dataset(
    server_address: str,
    table: str,
    batch_size: int,
    max_in_flight_samples_per_worker: int | None,
    num_parallel_calls: int,
    rate_limiter_timeout_ms: int,
) -> tf.data.Dataset:
    """Unbatched ReplaySamples from one table (`num_parallel_calls` streams interleaved)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_parallel_calls < 1:
        raise ValueError(f"num_parallel_calls must be >= 1, got {num_parallel_calls}")
    # Reverb's rule of thumb: 2-3x the batch size in flight per worker.
    in_flight = max_in_flight_samples_per_worker or 2 * batch_size

    def make(_: Any) -> tf.data.Dataset:
        return reverb.TrajectoryDataset.from_table_signature(
            server_address=server_address,
            table=table,
            max_in_flight_samples_per_worker=in_flight,
            rate_limiter_timeout_ms=rate_limiter_timeout_ms,
        )

    if num_parallel_calls == 1:
        return make(None)
    return tf.data.Dataset.range(num_parallel_calls).interleave(
        make,
        cycle_length=num_parallel_calls,
        num_parallel_calls=num_parallel_calls,
        deterministic=False,
    )


def _batch(
    dataset: tf.data.Dataset,
    batch_size: int,
    num_batches_per_call: int | None,
    prefetch_size: int,
) -> tf.data.Dataset:
    dataset = dataset.batch(batch_size, drop_remainder=True)
    if num_batches_per_call is not None:
        if num_batches_per_call < 1:
            raise ValueError(f"num_batches_per_call must be >= 1, got {num_batches_per_call}")
        dataset = dataset.batch(num_batches_per_call, drop_remainder=True)
    if prefetch_size > 0:
        dataset = dataset.prefetch(prefetch_size)
    return dataset


def make_reverb_dataset(
    server_address: str,
    table: str,
    batch_size: int,
    num_batches_per_call: int | None = None,
    prefetch_size: int = 4,
    max_in_flight_samples_per_worker: int | None = None,
    num_parallel_calls: int = 1,
    rate_limiter_timeout_ms: int = -1,
) -> tf.data.Dataset:
    """A tf.data stream of batched samples from `table` (which must have a signature).

    Args:
      server_address: "host:port" of the Reverb server.
      table: table to sample from; its signature fixes the structure, dtypes and shapes.
      batch_size: B, samples per batch (incomplete batches are dropped).
      num_batches_per_call: if K is given, batches are stacked again to [K, B, ...].
      prefetch_size: batches tf.data prepares ahead (host memory); 0 disables.
      max_in_flight_samples_per_worker: samples requested per round trip; default 2 * B.
      num_parallel_calls: independent sample streams interleaved (more throughput; the order of
        samples across streams is not deterministic).
      rate_limiter_timeout_ms: -1 waits forever for the rate limiter; otherwise the stream ends
        (StopIteration) once a sample waited this long. Useful for tests and clean shutdown.

    Returns:
      A dataset of `reverb.ReplaySample(info, data)`, every leaf with leading [B] or [K, B].
    """
    dataset = _table_dataset(
        server_address,
        table,
        batch_size,
        max_in_flight_samples_per_worker,
        num_parallel_calls,
        rate_limiter_timeout_ms,
    )
    return _batch(dataset, batch_size, num_batches_per_call, prefetch_size)


def make_mixed_dataset(
    server_address: str,
    tables_and_weights: Sequence[tuple[str, float]],
    batch_size: int,
    num_batches_per_call: int | None = None,
    prefetch_size: int = 4,
    max_in_flight_samples_per_worker: int | None = None,
    num_parallel_calls: int = 1,
    rate_limiter_timeout_ms: int = -1,
    seed: int | None = None,
    with_table_index: bool = False,
) -> tf.data.Dataset:
    """Like `make_reverb_dataset`, but each sample comes from table i with probability w_i / sum w.

    All tables must share one signature structure (e.g. agent replay and demonstrations in R2D3).
    Mixing is per sample, so a batch's composition varies around the weights (Binomial(B, w_i)).
    With `with_table_index` the elements are `(table_index [B] int32, ReplaySample)`, i the
    position in `tables_and_weights` of the table each sample came from (priority updates go
    back to that table: keys are only unique within one).
    """
    if not tables_and_weights:
        raise ValueError("tables_and_weights must name at least one table")
    weights = [float(w) for _, w in tables_and_weights]
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights must be >= 0 with a positive sum, got {weights}")
    datasets = [
        _table_dataset(
            server_address,
            table,
            batch_size,
            max_in_flight_samples_per_worker,
            num_parallel_calls,
            rate_limiter_timeout_ms,
        )
        for table, _ in tables_and_weights
    ]
    if with_table_index:
        datasets = [
            dataset.map(lambda sample, i=i: (tf.constant(i, tf.int32), sample))
            for i, dataset in enumerate(datasets)
        ]
    total = sum(weights)
    mixed = tf.data.Dataset.sample_from_datasets(
        datasets, weights=[w / total for w in weights], seed=seed
    )
    return _batch(mixed, batch_size, num_batches_per_call, prefetch_size)


class _ProducerError:
    """Carries an exception from the producer thread to the consumer."""

    def __init__(self, error: BaseException):
        self.error = error


_END = object()


class DevicePrefetcher(Iterator[Any]):
    """Iterates `iterable` with up to `size` items already on `device`, put there by a thread.

    A `tf.data.Dataset` is read with `as_numpy_iterator()`; any other iterable as is. Items are
    `jax.device_put` in the producer thread, so the host->device copy overlaps the learner's step.

    A `reverb.ReplaySample` keeps its `info` as host numpy arrays (uint64 keys must not be
    truncated by JAX's default 32-bit mode; they are only needed for priority updates), only its
    `data` moves to the device.

    Counters (read at any time): `num_items` (items handed out) and `wait_seconds` (total time
    the consumer blocked in `__next__`); `wait_fraction()` relates the latter to wall time.
    Errors in the producer are re-raised by `__next__`; exhausting `iterable` ends iteration.
    """

    def __init__(self, iterable: Iterable[Any], size: int = 2, device: Any = None):
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        if isinstance(iterable, tf.data.Dataset):
            iterable = iterable.as_numpy_iterator()
        self._source = iter(iterable)
        self._device = device
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._done = False
        self.num_items = 0
        self.wait_seconds = 0.0
        self._start_time: float | None = None
        # Daemon: a producer blocked inside the source (e.g. an empty table) must not keep the
        # process alive; close() stops it at the next item boundary.
        self._thread = threading.Thread(target=self._produce, name="DevicePrefetcher", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        """Put unless closed; returns False if the prefetcher was closed meanwhile."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _to_device(self, item: Any) -> Any:
        if isinstance(item, reverb.ReplaySample):
            # Sample info stays on the host: keys are uint64, which JAX (without x64) would
            # truncate, and they only travel back to Reverb for priority updates anyway.
            return reverb.ReplaySample(info=item.info, data=jax.device_put(item.data, self._device))
        return jax.device_put(item, self._device)

    def _produce(self) -> None:
        try:
            for item in self._source:
                if self._stop.is_set():
                    return
                if not self._put(self._to_device(item)):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, not swallowed
            self._put(_ProducerError(e))
            return
        self._put(_END)

    def __iter__(self) -> DevicePrefetcher:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        start = time.perf_counter()
        if self._start_time is None:
            self._start_time = start
        while True:
            try:
                item = self._queue.get(timeout=0.1)
                break
            except queue.Empty:
                if self._stop.is_set() or (not self._thread.is_alive() and self._queue.empty()):
                    self._done = True
                    raise StopIteration from None
        self.wait_seconds += time.perf_counter() - start
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, _ProducerError):
            self._done = True
            raise item.error
        self.num_items += 1
        return item

    def wait_fraction(self) -> float:
        """Fraction of wall time since the first `__next__` call spent waiting for data."""
        if self._start_time is None:
            return 0.0
        elapsed = time.perf_counter() - self._start_time
        return self.wait_seconds / elapsed if elapsed > 0 else 0.0

    def close(self, timeout: float = 5.0) -> None:
        """Stop the producer thread (waits up to `timeout` s for it; it is a daemon regardless)."""
        self._stop.set()
        interrupt = getattr(self._source, "interrupt", None)
        if callable(interrupt):  # a source retrying a lost server gives up now
            interrupt()
        self._done = True
        while True:  # free a producer blocked on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout)

    def __enter__(self) -> DevicePrefetcher:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class ReconnectingIterator:
    """numpy items of `make_dataset()`, rebuilding the dataset after a transport error.

    A Reverb server that restarted (on the same, pinned, address or, re-resolved by
    `make_dataset`, on another host) or a gRPC channel left stale by an earlier server at that
    address raises `tf.errors.UnavailableError`; the stream is then rebuilt with exponential
    backoff. Gives up (re-raising) once the server has been unreachable for `max_outage_seconds`,
    or at once after `interrupt()` (the program is stopping); any other error propagates at once.
    """

    def __init__(
        self,
        make_dataset: Callable[[], tf.data.Dataset],
        max_outage_seconds: float = 600.0,
        initial_backoff_seconds: float = 0.2,
        max_backoff_seconds: float = 10.0,
    ):
        self._make_dataset = make_dataset
        self._max_outage_seconds = max_outage_seconds
        self._initial_backoff = initial_backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._interrupted = threading.Event()
        self._iterator: Iterator[Any] | None = None
        self.reconnects = 0

    def interrupt(self) -> None:
        self._interrupted.set()

    def __iter__(self) -> ReconnectingIterator:
        return self

    def __next__(self) -> Any:
        backoff = self._initial_backoff
        outage_started: float | None = None
        while True:
            try:
                if self._iterator is None:
                    self._iterator = self._make_dataset().as_numpy_iterator()
                return next(self._iterator)
            except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError) as e:
                self._iterator = None
                now = time.monotonic()
                outage_started = now if outage_started is None else outage_started
                if self._interrupted.is_set() or now - outage_started > self._max_outage_seconds:
                    raise
                log.warning(
                    "replay unavailable (%s); reconnecting in %.1f s", e.message[:80], backoff
                )
                self.reconnects += 1
                self._interrupted.wait(backoff)
                backoff = min(2 * backoff, self._max_backoff)


def reconnecting_numpy_iterator(
    make_dataset: Callable[[], tf.data.Dataset], **kwargs: Any
) -> ReconnectingIterator:
    """See `ReconnectingIterator`."""
    return ReconnectingIterator(make_dataset, **kwargs)
