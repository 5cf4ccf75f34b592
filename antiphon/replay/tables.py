"""Reverb table recipes, rate limiters and the replay server (with optional checkpointing).

Every table is built with a signature (see the adders' `signature` methods), so the server rejects
items that do not match what learners expect to sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import reverb

__all__ = [
    "checkpoint",
    "prioritized_table",
    "queue_table",
    "rate_limiter",
    "start_server",
    "uniform_table",
]


def rate_limiter(
    samples_per_insert: float | None,
    min_replay_size: int,
    tolerance_rate: float = 0.1,
) -> reverb.rate_limiters.RateLimiter:
    """A rate limiter for a replay table.

    Args:
      samples_per_insert: target number of times each item is sampled over its lifetime. None
        means "no ratio": only wait until `min_replay_size` items are present.
      min_replay_size: sampling blocks until the table holds this many items.
      tolerance_rate: how far (as a fraction of `min_replay_size * samples_per_insert`) the
        sample/insert ratio may drift before the faster side is blocked.
    """
    if min_replay_size < 1:
        raise ValueError(f"min_replay_size must be a positive integer, got {min_replay_size}")
    if samples_per_insert is None:
        return reverb.rate_limiters.MinSize(min_replay_size)
    if samples_per_insert <= 0:
        raise ValueError(f"samples_per_insert must be > 0 (or None), got {samples_per_insert}")
    if tolerance_rate < 0:
        raise ValueError(f"tolerance_rate must be >= 0, got {tolerance_rate}")
    # Acme's recipe scales the slack with the table's warm-up size; the floor keeps the allowed
    # range wide enough that reverb accepts it (it needs >= 2 * max(1, spi)) and that neither
    # side deadlocks when the warm-up size is small.
    error_buffer = max(
        min_replay_size * tolerance_rate * samples_per_insert,
        2.0 * max(1.0, samples_per_insert),
    )
    return reverb.rate_limiters.SampleToInsertRatio(
        samples_per_insert=samples_per_insert,
        min_size_to_sample=min_replay_size,
        error_buffer=error_buffer,
    )


def uniform_table(
    name: str,
    max_size: int,
    signature: Any,
    samples_per_insert: float | None,
    min_replay_size: int,
) -> reverb.Table:
    """A uniformly sampled table that evicts its oldest items first."""
    return reverb.Table(
        name=name,
        sampler=reverb.selectors.Uniform(),
        remover=reverb.selectors.Fifo(),
        max_size=max_size,
        rate_limiter=rate_limiter(samples_per_insert, min_replay_size),
        signature=signature,
    )


def prioritized_table(
    name: str,
    max_size: int,
    signature: Any,
    priority_exponent: float,
    samples_per_insert: float | None,
    min_replay_size: int,
) -> reverb.Table:
    """A table sampled with probability proportional to priority**priority_exponent (FIFO evict)."""
    return reverb.Table(
        name=name,
        sampler=reverb.selectors.Prioritized(priority_exponent),
        remover=reverb.selectors.Fifo(),
        max_size=max_size,
        rate_limiter=rate_limiter(samples_per_insert, min_replay_size),
        signature=signature,
    )


def queue_table(name: str, max_size: int, signature: Any) -> reverb.Table:
    """A FIFO queue: each item is sampled exactly once, writers block when it is full."""
    return reverb.Table.queue(name=name, max_size=max_size, signature=signature)


def start_server(
    tables: Sequence[reverb.Table],
    port: int | None = None,
    checkpoint_dir: str | None = None,
) -> reverb.Server:
    """Start a Reverb server hosting `tables`.

    Args:
      tables: the tables to serve.
      port: port to listen on; None picks a free one (`server.port` tells which). Note that
        Reverb listens on all interfaces.
      checkpoint_dir: if given, checkpoints are written under this directory and a server started
        again with the same directory loads the latest checkpoint found there (resume after a
        restart). The tables passed must then have the same names as the checkpointed ones.
    """
    checkpointer = None
    if checkpoint_dir is not None:
        checkpointer = reverb.checkpointers.DefaultCheckpointer(path=str(checkpoint_dir))
    return reverb.Server(tables=list(tables), port=port, checkpointer=checkpointer)


def checkpoint(client_or_address: reverb.Client | str) -> str:
    """Ask the server to write a checkpoint now (blocks until done); returns its path."""
    client = (
        reverb.Client(client_or_address)
        if isinstance(client_or_address, str)
        else client_or_address
    )
    return client.checkpoint()
