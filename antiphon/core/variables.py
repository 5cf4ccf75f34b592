"""VariableClient: an actor's local, periodically refreshed copy of a learner's parameters.

Pulls run in a background thread so acting never waits on the learner; at most one pull is in
flight (a slow learner must not accumulate a queue of stale requests). If the source exposes
`variables_version()`, an unchanged version skips the (possibly large, possibly remote) transfer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import jax

from antiphon.core.interfaces import VariableSource

_log = logging.getLogger(__name__)


class VariableClient:
    """Keeps numpy copies of `source.get_variables(names)`.

    `params` is a single pytree when `names` is a string, else a list in the order of `names`;
    it is None until the first pull has finished (call `update(wait=True)` first).
    """

    def __init__(
        self,
        source: VariableSource,
        names: str | Sequence[str],
        update_period: int = 1,
    ):
        self._source = source
        self._single = isinstance(names, str)
        self._names = [names] if isinstance(names, str) else list(names)
        self._update_period = max(1, int(update_period))
        self._calls = 0
        self._params: list[Any] | None = None
        self._version = -1
        # None: not yet known whether the source is versioned; probed on the first pull.
        self._versioned: bool | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._closed = False
        # Guards the bookkeeping (call counter, thread, error); never held during a transfer.
        self._lock = threading.Lock()
        # Serialises pulls, so a background and a synchronous pull never interleave.
        self._pull_lock = threading.Lock()

    @property
    def params(self) -> Any:
        params = self._params
        if params is None:
            return None
        return params[0] if self._single else list(params)

    @property
    def version(self) -> int:
        """The version of the held params: -1 before the first pull.

        The source's `variables_version()` when it has one, else the number of pulls done.
        """
        return self._version

    def update(self, wait: bool = False) -> None:
        """Counts a call; every `update_period` calls starts a background pull.

        A pull is skipped (and retried on the next call) while another is in flight. With
        `wait=True` the pull happens now, in this thread, whatever the period. An error from a
        background pull is raised here, on the call after it happened.
        """
        self._raise_pending_error()
        if wait:
            self._join()
            self._raise_pending_error()
            with self._lock:
                self._calls = 0
            self._pull()
            return
        with self._lock:
            if self._closed:
                return
            self._calls += 1
            if self._calls < self._update_period:
                return
            if self._thread is not None and self._thread.is_alive():
                return  # skip-if-in-flight; the counter stays due, so the next call retries
            self._calls = 0
            self._thread = threading.Thread(
                target=self._background_pull, name="variable-client-pull", daemon=True
            )
            self._thread.start()

    def update_and_wait(self) -> None:
        """Pulls now and returns when the params are in place."""
        self.update(wait=True)

    def close(self, timeout: float | None = 10.0) -> None:
        """Stops starting pulls and waits (up to `timeout`) for the one in flight."""
        with self._lock:
            self._closed = True
        self._join(timeout)

    # Internals.

    def _raise_pending_error(self) -> None:
        with self._lock:
            error, self._error = self._error, None
        if error is not None:
            raise error

    def _join(self, timeout: float | None = None) -> None:
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _background_pull(self) -> None:
        try:
            self._pull()
        except BaseException as e:  # handed to the next update() call, not swallowed
            _log.error("VariableClient: background pull of %s failed", self._names, exc_info=e)
            with self._lock:
                self._error = e

    def _source_version(self) -> int | None:
        """The source's version, or None for an unversioned source."""
        if self._versioned is False:
            return None
        version_fn = getattr(self._source, "variables_version", None)
        if version_fn is None:
            self._versioned = False
            return None
        try:
            version = int(version_fn())
        except (AttributeError, NotImplementedError):
            # A proxy may offer every attribute and fail only when the call reaches the source.
            self._versioned = False
            return None
        self._versioned = True
        return version

    def _pull(self) -> None:
        with self._pull_lock:
            version = self._source_version()
            if version is not None and version == self._version and self._params is not None:
                return  # nothing new: skip the transfer
            params = self._source.get_variables(self._names)
            # Host copies: actors on CPU must never hold (or keep alive) device buffers.
            params = jax.device_get(list(params))
            if len(params) != len(self._names):
                raise ValueError(
                    f"get_variables({self._names}) returned {len(params)} items, "
                    f"expected {len(self._names)}"
                )
            self._params = params
            self._version = version if version is not None else self._version + 1
