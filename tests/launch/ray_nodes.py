"""Small node classes for the Ray launcher tests (importable by Ray worker processes)."""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from antiphon import launch


class Accumulator:
    def __init__(self):
        self._total = 0
        self._lock = threading.Lock()

    def add(self, value: int) -> int:
        with self._lock:
            self._total += value
            return self._total

    def total(self) -> int:
        return self._total

    def pid(self) -> int:
        return os.getpid()

    def environment(self, name: str) -> str | None:
        return os.environ.get(name)

    def slow_echo(self, value, seconds: float):
        time.sleep(seconds)
        return value


class Pusher:
    """Adds 1 to the accumulator `times` times, then stops the program."""

    def __init__(self, accumulator, times: int):
        self._accumulator = accumulator
        self._times = times

    def run(self) -> None:
        for _ in range(self._times):
            self._accumulator.add(1)
        launch.stop()

    def pid(self) -> int:
        return os.getpid()


class VersionedSource:
    """A variable source whose variables are filled with their version number."""

    def __init__(self, size: int = 1000):
        self._version = 0
        self._size = size
        self._stop = threading.Event()

    def get_variables(self, names):
        version = self._version
        return [{"w": np.full(self._size, version, np.float32)} for _ in names]

    def variables_version(self) -> int:
        return self._version

    def bump(self, times: int = 1) -> int:
        self._version += times
        return self._version

    def stop(self) -> None:
        self._stop.set()


class Reader:
    """Pulls variables through a VariableClient; reports the versions it held."""

    def __init__(self, source):
        from antiphon.core.variables import VariableClient

        self._client = VariableClient(source, "policy")

    def pull(self) -> float:
        self._client.update(wait=True)
        return float(self._client.params["w"][0])

    def version(self) -> int:
        return self._client.version


class Exploder:
    """Its main loop fails after touching its input."""

    def __init__(self, accumulator):
        self._accumulator = accumulator

    def run(self) -> None:
        self._accumulator.add(1)
        raise ValueError("boom")
