"""Shared pieces of the Ray launcher tests: leftover-process checks."""

from __future__ import annotations

import time

import psutil

_RAY_PROCESS_MARKERS = ("raylet", "gcs_server", "ray::", "default_worker.py", "ray/dashboard")


def ray_processes() -> dict[int, str]:
    """Every Ray process on this machine: pid -> name and command line."""
    found = {}
    for process in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            text = " ".join([process.info["name"] or ""] + (process.info["cmdline"] or []))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if any(marker in text for marker in _RAY_PROCESS_MARKERS):
            found[process.info["pid"]] = text[:100]
    return found


def assert_no_ray_processes(before: dict[int, str], timeout: float = 30.0) -> None:
    """Fails if a Ray process that was not in `before` is still alive after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        left = {pid: text for pid, text in ray_processes().items() if pid not in before}
        if not left:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"Ray processes left behind: {sorted(left.values())}")
        time.sleep(0.5)
