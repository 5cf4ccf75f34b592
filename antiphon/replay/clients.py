"""Replay addresses that can be re-resolved, and reconnecting to a Reverb server that restarted.

A replay node can die and come back (ARCHITECTURE.md §4: restarts are the launcher's job). Its
port is pinned in `run_dir/replay/port`, but on a cluster it may come back on another host, so
clients hold a `ReplayAddress` where the launcher can give one: a `str` (so `reverb.Client`
takes it as is) that also knows how to ask the launcher for the current address. Adders,
datasets and priority updaters call `resolve_address` before every reconnect.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import reverb

log = logging.getLogger(__name__)


class ReplayAddress(str):
    """A Reverb address (`host:port`) plus a function returning the current one.

    Pickles with its resolver, so a node on another process or host can re-resolve too.
    """

    resolver: Callable[[], str] | None

    def __new__(cls, address: str, resolver: Callable[[], str] | None = None) -> ReplayAddress:
        instance = super().__new__(cls, address)
        instance.resolver = resolver
        return instance

    def __reduce__(self):
        return (ReplayAddress, (str(self), self.resolver))


def resolve_address(address: str) -> str:
    """The current address of the replay behind `address` (itself for a plain string)."""
    resolver = getattr(address, "resolver", None)
    if resolver is None:
        return str(address)
    try:
        return str(resolver())
    except Exception as e:  # noqa: BLE001 - the launcher may itself be restarting the node
        log.warning("could not re-resolve replay address (%r); keeping %s", e, address)
        return str(address)


def is_transport_error(error: BaseException) -> bool:
    """True for errors meaning 'the server went away' rather than 'the request was wrong'."""
    if isinstance(error, reverb.errors.DeadlineExceededError):
        return True
    text = str(error)
    return any(
        marker in text
        for marker in (
            "UNAVAILABLE",
            "Unavailable",
            "Socket closed",
            "Connection reset",
            "CANCELLED",
        )
    )


def server_alive(client: reverb.Client, timeout_seconds: float = 5.0) -> bool:
    """Whether the server answers an info request within `timeout_seconds`."""
    try:
        client.server_info(timeout=max(1, int(timeout_seconds)))
        return True
    except Exception:  # noqa: BLE001 - any failure here means "not reachable now"
        return False


def connect(
    address: str,
    max_outage_seconds: float = 600.0,
    initial_backoff_seconds: float = 0.5,
    max_backoff_seconds: float = 10.0,
    should_stop: Callable[[], bool] | None = None,
) -> reverb.Client:
    """A new client on the (re-resolved) address, once the server answers.

    Retries with exponential backoff; raises `ConnectionError` after `max_outage_seconds`, or
    as soon as `should_stop()` turns true. A new client, not the old one: a gRPC channel to a
    server that died reconnects only after its own backoff (seen: 6 s), a new one at once.
    """
    deadline = time.monotonic() + max_outage_seconds
    backoff = initial_backoff_seconds
    while True:
        current = resolve_address(address)
        client = reverb.Client(current)
        if server_alive(client):
            return client
        if time.monotonic() + backoff > deadline:
            raise ConnectionError(
                f"replay at {current} unreachable for {max_outage_seconds:.0f} s; giving up"
            )
        if should_stop is not None and should_stop():
            raise ConnectionError(f"replay at {current} unreachable and stop was requested")
        log.warning("replay at %s unreachable; retrying in %.1f s", current, backoff)
        time.sleep(backoff)
        backoff = min(2 * backoff, max_backoff_seconds)
