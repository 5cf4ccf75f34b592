"""E environments stepped together, for a vectorised actor (one batched policy call per step).

Each environment keeps its own episode, seed and step count; nothing is auto-reset: the loop
resets environment `i` (`reset(i)`) when its episode ends, so every episode is exactly what a
single environment with the same seed runs.

Two backends, the same interface:

- `SerialVectorEnvironment`: the E environments in this process, stepped one after another. No
  copies and no inter-process traffic; the right choice when the environment step is cheap next to
  a process round trip (MiniGrid) or there is one core per actor anyway.
- `SubprocessVectorEnvironment`: the E environments spread over W worker processes (spawned, so
  no JAX or Reverb state is forked), each stepping its share while the others, and the actor's
  own process, do theirs. Actions go out and timesteps come back as pickled numpy.

`make_vector_environment(factories, backend)` picks one. A factory is a picklable callable
returning a dm_env environment (for the subprocess backend: a module-level function or a
`functools.partial` of one, e.g. of `antiphon.environments.make_environment`).

Per environment, `info(i)` gives what the loop reads off a single environment: `environment_steps`
(inner steps under action repeat, when the environment counts them) and `episode_success` (goal
environments), as of the last reset or step.
"""

from __future__ import annotations

import multiprocessing as mp
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import dm_env

EnvironmentFactory = Callable[[], dm_env.Environment]

BACKENDS = ("serial", "subprocess")


class VectorEnvironment(Protocol):
    num_envs: int
    objectives: Any

    def observation_spec(self) -> Any: ...

    def action_spec(self) -> Any: ...

    def reward_spec(self) -> Any: ...

    def discount_spec(self) -> Any: ...

    def reset(self, index: int) -> dm_env.TimeStep: ...

    def step(self, indices: Sequence[int], actions: Sequence[Any]) -> list[dm_env.TimeStep]: ...

    def info(self, index: int) -> dict[str, Any]: ...

    def close(self) -> None: ...


def _info(environment: dm_env.Environment) -> dict[str, Any]:
    info: dict[str, Any] = {}
    try:
        info["environment_steps"] = int(environment.environment_steps)
    except AttributeError:
        pass
    success = getattr(environment, "episode_success", None)
    if success is not None:
        info["episode_success"] = bool(success)
    return info


class SerialVectorEnvironment:
    """The environments in this process, stepped in turn."""

    def __init__(self, environments: Sequence[dm_env.Environment]):
        if not environments:
            raise ValueError("a vector environment needs at least one environment")
        self._environments = list(environments)
        self.num_envs = len(self._environments)
        self.objectives = getattr(self._environments[0], "objectives", None)

    @property
    def environments(self) -> list[dm_env.Environment]:
        return self._environments

    def observation_spec(self):
        return self._environments[0].observation_spec()

    def action_spec(self):
        return self._environments[0].action_spec()

    def reward_spec(self):
        return self._environments[0].reward_spec()

    def discount_spec(self):
        return self._environments[0].discount_spec()

    def reset(self, index: int) -> dm_env.TimeStep:
        return self._environments[index].reset()

    def step(self, indices: Sequence[int], actions: Sequence[Any]) -> list[dm_env.TimeStep]:
        return [self._environments[i].step(a) for i, a in zip(indices, actions, strict=True)]

    def info(self, index: int) -> dict[str, Any]:
        return _info(self._environments[index])

    def close(self) -> None:
        for environment in self._environments:
            environment.close()


def _worker(connection, factories: list[EnvironmentFactory]) -> None:
    """A worker process: builds its environments, then serves reset / step / spec requests."""
    try:
        environments = [factory() for factory in factories]
        connection.send(("ok", None))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        connection.send(("error", traceback.format_exc()))
        return
    try:
        while True:
            command, payload = connection.recv()
            if command == "step":
                local_indices, actions = payload
                timesteps = [
                    environments[i].step(a) for i, a in zip(local_indices, actions, strict=True)
                ]
                infos = [_info(environments[i]) for i in local_indices]
                connection.send(("ok", (timesteps, infos)))
            elif command == "reset":
                timestep = environments[payload].reset()
                connection.send(("ok", (timestep, _info(environments[payload]))))
            elif command == "specs":
                environment = environments[0]
                connection.send(
                    (
                        "ok",
                        (
                            environment.observation_spec(),
                            environment.action_spec(),
                            environment.reward_spec(),
                            environment.discount_spec(),
                            getattr(environment, "objectives", None),
                        ),
                    )
                )
            elif command == "close":
                break
            else:
                connection.send(("error", f"unknown command {command!r}"))
    except (EOFError, KeyboardInterrupt):
        pass
    except BaseException:  # noqa: BLE001
        try:
            connection.send(("error", traceback.format_exc()))
        except Exception:  # noqa: BLE001 - the parent is gone
            pass
    finally:
        for environment in environments:
            try:
                environment.close()
            except Exception:  # noqa: BLE001
                pass


class EnvironmentWorkerError(RuntimeError):
    """An environment raised in a worker process (the worker's traceback is the message)."""


class SubprocessVectorEnvironment:
    """E environments over `num_workers` spawned processes (environment i in worker i mod W)."""

    def __init__(self, factories: Sequence[EnvironmentFactory], num_workers: int | None = None):
        if not factories:
            raise ValueError("a vector environment needs at least one environment")
        self.num_envs = len(factories)
        num_workers = min(num_workers or self.num_envs, self.num_envs)
        self._num_workers = num_workers
        # Environment i lives in worker i % W at local index i // W.
        self._place = [(i % num_workers, i // num_workers) for i in range(self.num_envs)]
        self._infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        context = mp.get_context("spawn")
        self._connections = []
        self._processes = []
        for w in range(num_workers):
            parent, child = context.Pipe()
            process = context.Process(
                target=_worker,
                args=(child, [factories[i] for i in range(w, self.num_envs, num_workers)]),
                daemon=True,
                name=f"antiphon-env-worker-{w}",
            )
            process.start()
            child.close()
            self._connections.append(parent)
            self._processes.append(process)
        try:
            for connection in self._connections:
                self._receive(connection)
            specs = self._call(0, "specs", None)
        except BaseException:
            # A factory failed in one worker: stop the others (they would wait for commands
            # until this process exits) before the error reaches the caller.
            self.close()
            raise
        self._observation_spec, self._action_spec, self._reward_spec, self._discount_spec = specs[
            :4
        ]
        self.objectives = specs[4]

    def _receive(self, connection):
        try:
            status, payload = connection.recv()
        except EOFError as error:
            raise EnvironmentWorkerError("an environment worker process died") from error
        if status != "ok":
            raise EnvironmentWorkerError(payload)
        return payload

    def _call(self, worker: int, command: str, payload: Any) -> Any:
        self._connections[worker].send((command, payload))
        return self._receive(self._connections[worker])

    def observation_spec(self):
        return self._observation_spec

    def action_spec(self):
        return self._action_spec

    def reward_spec(self):
        return self._reward_spec

    def discount_spec(self):
        return self._discount_spec

    def reset(self, index: int) -> dm_env.TimeStep:
        worker, local = self._place[index]
        timestep, self._infos[index] = self._call(worker, "reset", local)
        return timestep

    def step(self, indices: Sequence[int], actions: Sequence[Any]) -> list[dm_env.TimeStep]:
        per_worker: dict[int, tuple[list[int], list[int], list[Any]]] = {}
        for index, action in zip(indices, actions, strict=True):
            worker, local = self._place[index]
            slot = per_worker.setdefault(worker, ([], [], []))
            slot[0].append(index)
            slot[1].append(local)
            slot[2].append(action)
        # Send to every worker first, then collect: the workers step in parallel.
        for worker, (_, locals_, worker_actions) in per_worker.items():
            self._connections[worker].send(("step", (locals_, worker_actions)))
        results: dict[int, dm_env.TimeStep] = {}
        for worker, (globals_, _, _) in per_worker.items():
            timesteps, infos = self._receive(self._connections[worker])
            for index, timestep, info in zip(globals_, timesteps, infos, strict=True):
                results[index] = timestep
                self._infos[index] = info
        return [results[i] for i in indices]

    def info(self, index: int) -> dict[str, Any]:
        return self._infos[index]

    def close(self) -> None:
        for connection in self._connections:
            try:
                connection.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        for process in self._processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
        for connection in self._connections:
            connection.close()
        self._connections = []
        self._processes = []


def make_vector_environment(
    factories: Sequence[EnvironmentFactory],
    backend: str = "serial",
    num_workers: int | None = None,
) -> SerialVectorEnvironment | SubprocessVectorEnvironment:
    """`backend`: "serial" (in this process) or "subprocess" (`num_workers` processes; default
    one per environment)."""
    if backend == "serial":
        return SerialVectorEnvironment([factory() for factory in factories])
    if backend == "subprocess":
        return SubprocessVectorEnvironment(factories, num_workers=num_workers)
    raise ValueError(f"unknown vector environment backend {backend!r}; choose from {BACKENDS}")
