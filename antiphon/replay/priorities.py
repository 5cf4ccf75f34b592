"""Asynchronous priority updates, so the learner never waits on a Reverb round trip."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable
from typing import Any

import numpy as np
import reverb

from antiphon.replay import clients

log = logging.getLogger(__name__)

__all__ = ["PriorityUpdater"]

_STOP = object()


class PriorityUpdater:
    """Sends `client.mutate_priorities` calls for one table from a background thread.

    `update` only enqueues (it blocks only when `max_pending` updates are already waiting, which
    bounds memory if the server is slow). The thread merges everything queued into one call, later
    values winning for repeated keys. Keys no longer in the table are ignored by Reverb.

    An error raised by the server is re-raised (once) by the next `update`, `flush` or `close`.
    A lost server (transport error) is not an error: the updates in that call are dropped (they
    are advisory, and the items they named may not have survived the restart), and the thread
    reconnects to the re-resolved address with backoff.
    """

    def __init__(self, client: reverb.Client, table: str, max_pending: int = 64):
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self._client = client
        self._table = table
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="PriorityUpdater", daemon=True)
        self._thread.start()

    def update(self, keys: Iterable[Any], priorities: Iterable[Any]) -> None:
        """Queue new priorities for the items with `keys` (arrays or sequences, same length)."""
        self._raise_pending_error()
        if self._closed:
            raise RuntimeError("PriorityUpdater is closed")
        # Copy to host-side Python numbers now: callers may pass device arrays or reuse buffers.
        keys = [int(k) for k in np.asarray(keys).reshape(-1)]
        priorities = [float(p) for p in np.asarray(priorities, np.float64).reshape(-1)]
        if len(keys) != len(priorities):
            raise ValueError(f"got {len(keys)} keys but {len(priorities)} priorities")
        if keys:
            self._queue.put(dict(zip(keys, priorities, strict=True)))

    def flush(self) -> None:
        """Block until every queued update has been applied (or failed)."""
        self._queue.join()
        self._raise_pending_error()

    def close(self) -> None:
        """Apply what is queued, then stop the thread."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join()
        self._raise_pending_error()

    def _raise_pending_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:  # merge whatever else is already waiting into the same call
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in batch)
            updates: dict[int, float] = {}
            for item in batch:
                if item is not _STOP:
                    updates.update(item)
            try:
                if updates:
                    self._client.mutate_priorities(self._table, updates=updates)
            except Exception as e:
                if clients.is_transport_error(e) and not stop:
                    log.warning("priority updates dropped: replay unreachable; reconnecting")
                    try:
                        self._client = clients.connect(
                            self._client.server_address, should_stop=lambda: self._closed
                        )
                    except ConnectionError as connection_error:
                        self._error = connection_error
                else:
                    self._error = e
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                self._error = e
            finally:
                for _ in batch:
                    self._queue.task_done()
            if stop:
                return

    def __enter__(self) -> PriorityUpdater:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
