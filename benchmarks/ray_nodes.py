"""Nodes used only by the Ray benchmarks (importable by Ray worker processes)."""

from __future__ import annotations

import threading
import time
from typing import Any

import jax
import numpy as np

from antiphon.core.types import EnvironmentSpec
from antiphon.launch import experiments


class InitialParamsSource:
    """A variable source serving the D4PG networks' initial parameters (policy and critic);
    `bump()` makes a new version (the same values, as a learner step would make new ones)."""

    def __init__(self, builder, env_spec: EnvironmentSpec, seed: int = 0):
        networks = builder.make_networks(env_spec)
        policy, critic = networks.init(jax.random.PRNGKey(seed), env_spec)
        self._params = {"policy": jax.device_get(policy), "critic": jax.device_get(critic)}
        self._version = 0
        self.serialisations = 0

    def get_variables(self, names):
        self.serialisations += 1
        return [self._params[name] for name in names]

    def variables_version(self) -> int:
        return self._version

    def bump(self) -> int:
        self._version += 1
        return self._version

    def num_bytes(self, names) -> int:
        return int(
            sum(
                np.asarray(leaf).nbytes
                for n in names
                for leaf in jax.tree_util.tree_leaves(self._params[n])
            )
        )


class PausableActor:
    """`experiments.ActorNode`, but it only runs episodes while `active` (checked between
    episodes), so one program can measure 1..N actors without restarting processes."""

    def __init__(self, *args: Any, **kwargs: Any):
        self._node = experiments.ActorNode(*args, **kwargs)
        self._active = threading.Event()
        self._stop = threading.Event()

    def set_active(self, active: bool) -> None:
        if active:
            self._active.set()
        else:
            self._active.clear()

    def run(self) -> None:
        while not self._stop.is_set():
            if self._active.wait(0.1):
                self._node._loop.run_episode()

    def stop(self) -> None:
        self._stop.set()
        self._node.stop()


class TimedReader:
    """Pulls variables through a VariableClient and times each pull (in this process)."""

    def __init__(self, source, names=("policy",)):
        from antiphon.core.variables import VariableClient

        self._client = VariableClient(source, list(names))

    def timed_pull(self) -> tuple[int, float]:
        start = time.perf_counter()
        self._client.update(wait=True)
        return self._client.version, time.perf_counter() - start
