"""Hierarchical step counters, as in Acme.

A root `Counter` holds the counts. A child counter with prefix "actor" holds nothing itself: it
forwards `increment(steps=5)` to its parent as `actor_steps=5` and, when read, strips its prefix
again, so every node sees its own `steps` next to everyone else's counts ("learner_steps", ...).
The parent may be a proxy to a counter living in another process; only `increment` and
`get_counts` are ever called on it, so one remote call per increment suffices.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any, Protocol

Number = int | float


class _CounterLike(Protocol):
    def increment(self, **counts: Number) -> dict[str, Number]: ...

    def get_counts(self) -> dict[str, Number]: ...


def _prefixed(key: str, prefix: str) -> str:
    return f"{prefix}_{key}" if prefix else key


def _strip_prefix(counts: Mapping[str, Number], prefix: str) -> dict[str, Number]:
    """The parent's counts as a child with `prefix` sees them.

    Keys carrying the prefix lose it; the others pass through. A stripped key wins over an
    unprefixed key of the same name, so a child always sees its own count.
    """
    if not prefix:
        return dict(counts)
    head = prefix + "_"
    result = {k: v for k, v in counts.items() if not k.startswith(head)}
    result.update({k[len(head) :]: v for k, v in counts.items() if k.startswith(head)})
    return result


class Counter:
    """A thread-safe, optionally hierarchical counter of steps, episodes, ...

    Only the root (a counter without parent) stores counts; children forward everything, so two
    children never disagree with their parent and nothing is lost when a child goes away.
    """

    def __init__(self, parent: _CounterLike | None = None, prefix: str = ""):
        self._parent = parent
        self._prefix = prefix
        self._counts: dict[str, Number] = {}
        self._lock = threading.Lock()

    def increment(self, **counts: Number) -> dict[str, Number]:
        """Adds `counts` and returns the updated counts, as `get_counts()` would."""
        forwarded = {_prefixed(k, self._prefix): v for k, v in counts.items()}
        if self._parent is not None:
            return _strip_prefix(self._parent.increment(**forwarded), self._prefix)
        with self._lock:
            for key, value in forwarded.items():
                self._counts[key] = self._counts.get(key, 0) + value
            return _strip_prefix(self._counts, self._prefix)

    def get_counts(self) -> dict[str, Number]:
        """All counts, with this counter's prefix stripped from the keys that carry it."""
        if self._parent is not None:
            return _strip_prefix(self._parent.get_counts(), self._prefix)
        with self._lock:
            return _strip_prefix(self._counts, self._prefix)

    def save(self) -> dict[str, Any]:
        """This counter's own counts (empty for a child, whose counts live in the root).

        The counts go into one JSON string so that the state's pytree structure does not depend
        on which keys exist: `Checkpointer.restore` flattens a fresh counter's `save()` as the
        template, and a fresh counter has no keys yet.
        """
        with self._lock:
            return {"counts_json": json.dumps(self._counts, sort_keys=True)}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Replaces this counter's own counts; accepts `save()`'s output or a plain counts dict."""
        if "counts_json" in state:
            counts = json.loads(state["counts_json"])
        else:
            counts = dict(state)
        with self._lock:
            self._counts = {str(k): v for k, v in counts.items()}
