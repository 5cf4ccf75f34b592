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

# Our names and Launchpad's names for the same launchers.
_LAUNCH_TYPES = {"threads": "threads", "local_mt": "threads", "ray": "ray", "local_mp": "ray"}


def launch(program: Program, launch_type: str = "threads", **kwargs: Any):
    """Start `program`; returns the running program (`.wait()`, `.shutdown()`, `.client(label)`).

    `threads` (Launchpad: `local_mt`): every node a thread of this process. `ray` (Launchpad:
    `local_mp`): every node a Ray actor; keyword arguments go to
    `antiphon.launch.ray.LaunchedRayProgram` (`address=` joins a cluster, `resources=` per label).
    """
    kind = _LAUNCH_TYPES.get(launch_type)
    if kind is None:
        raise ValueError(
            f"unknown launch_type '{launch_type}' (available: {', '.join(sorted(_LAUNCH_TYPES))})"
        )
    if kind == "ray":
        from antiphon.launch import ray as ray_launcher

        return ray_launcher.launch(program, **kwargs)
    from antiphon.launch import threads

    return threads.launch(program, **kwargs)


def stop() -> None:
    """Ask the running program to stop (Launchpad's `lp.stop()`), from any node."""
    from antiphon.launch import ray as ray_launcher

    if ray_launcher.in_node():
        ray_launcher.request_stop_from_node()
        return
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
