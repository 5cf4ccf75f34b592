"""Programs and launchers (Launchpad's model): `launch(program, launch_type="threads")`."""

from __future__ import annotations

from typing import Any

from antiphon.launch.program import (
    CourierNode,
    MultiThreadingColocation,
    Program,
    PyClassNode,
    PyNode,
    ReverbNode,
)

# Launchpad's names for the same launchers.
_LAUNCH_TYPES = {"threads": "threads", "local_mt": "threads"}


def launch(program: Program, launch_type: str = "threads", **kwargs: Any):
    """Start `program`; returns the running program (`.wait()`, `.shutdown()`)."""
    kind = _LAUNCH_TYPES.get(launch_type)
    if kind is None:
        raise ValueError(
            f"unknown launch_type '{launch_type}' (available: {', '.join(sorted(_LAUNCH_TYPES))})"
        )
    from antiphon.launch import threads

    return threads.launch(program, **kwargs)


def stop() -> None:
    """Ask the running program to stop (Launchpad's `lp.stop()`), from any node."""
    from antiphon.launch import threads

    threads.stop()


__all__ = [
    "CourierNode",
    "MultiThreadingColocation",
    "Program",
    "PyClassNode",
    "PyNode",
    "ReverbNode",
    "launch",
    "stop",
]
