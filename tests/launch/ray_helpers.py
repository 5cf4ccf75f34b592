"""Shared pieces of the Ray launcher tests: leftover-process checks."""

from __future__ import annotations

import time

import psutil

_RAY_PROCESS_MARKERS = ("raylet", "gcs_server", "ray::", "default_worker.py", "ray/dashboard")


def ray_processes() -> list[str]:
    """Every Ray process on this machine (name and pid)."""
    found = []
    for process in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            text = " ".join([process.info["name"] or ""] + (process.info["cmdline"] or []))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if any(marker in text for marker in _RAY_PROCESS_MARKERS):
            found.append(f"{process.info['pid']}:{text[:80]}")
    return found


def assert_no_ray_processes(timeout: float = 30.0) -> None:
    """Fails if any Ray process is still alive `timeout` seconds after the program stopped."""
    deadline = time.monotonic() + timeout
    while True:
        left = ray_processes()
        if not left:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"Ray processes left behind: {left}")
        time.sleep(0.5)
