"""Shared pieces of the Ray launcher tests: checking that a test leaves no Ray process behind.

Each test runs with a fresh `ANTIPHON_TEST_RUN` value in its environment, which every process it
starts (Ray's GCS server and raylet, and through the raylet every worker) inherits; a Ray process
carrying the value after the test is one this test left behind. Ray processes of anything else
running on the machine are not counted.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import psutil

_MARKER = "ANTIPHON_TEST_RUN"
_RAY_PROCESS_MARKERS = ("raylet", "gcs_server", "ray::", "default_worker.py", "ray/dashboard")


def start_marking() -> str:
    """Tag every process started from now on (until `stop_marking`) with a fresh id."""
    run_id = uuid.uuid4().hex
    os.environ[_MARKER] = run_id
    return run_id


def stop_marking() -> None:
    os.environ.pop(_MARKER, None)


def ray_processes(run_id: str) -> dict[int, str]:
    """Ray processes carrying `run_id`: pid -> name and command line."""
    found = {}
    for process in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            text = " ".join([process.info["name"] or ""] + (process.info["cmdline"] or []))
            if not any(marker in text for marker in _RAY_PROCESS_MARKERS):
                continue
            if process.environ().get(_MARKER) != run_id:
                continue
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        found[process.info["pid"]] = text[:100]
    return found


def assert_no_ray_processes(run_id: str, timeout: float = 30.0) -> None:
    """Fails if a Ray process started under `run_id` is still alive after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        left = ray_processes(run_id)
        if not left:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"Ray processes left behind: {sorted(left.values())}")
        time.sleep(0.5)


def kill_and_wait_for_restart(running, label: str, timeout: float = 180.0) -> tuple[dict, dict]:
    """SIGKILL the process hosting node `label`; wait until the launcher has counted one more
    restart of it. Returns where the node ran before and where it runs now (`describe`)."""
    old = running.describe(label)
    restarts = running.restarts.get(label, 0)
    os.kill(old["pid"], signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while running.restarts.get(label, 0) <= restarts:
        assert time.monotonic() < deadline, f"node '{label}' did not restart in {timeout:.0f} s"
        time.sleep(0.5)
    new = running.describe(label)
    assert new["pid"] != old["pid"]
    return old, new
