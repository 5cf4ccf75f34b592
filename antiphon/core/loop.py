"""EnvironmentLoop: runs an actor in an environment, episode by episode; counts and logs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import dm_env
import jax
import numpy as np

from antiphon.core.counting import Counter
from antiphon.core.interfaces import Actor
from antiphon.core.logging import Logger, make_logger


class EnvLoopObserver(Protocol):
    """Computes extra per-episode metrics (Acme's observer interface)."""

    def observe_first(self, env: dm_env.Environment, timestep: dm_env.TimeStep) -> None: ...

    def observe(self, env: dm_env.Environment, timestep: dm_env.TimeStep, action: Any) -> None: ...

    def get_metrics(self) -> dict[str, Any]: ...


def _add_rewards(total: Any, reward: Any) -> Any:
    if reward is None:
        return total
    if total is None:
        return jax.tree_util.tree_map(lambda r: np.array(r, copy=True), reward)
    return jax.tree_util.tree_map(np.add, total, reward)


def _as_python(x: Any) -> Any:
    """0-d arrays as python floats, so loggers and results get plain numbers."""
    return jax.tree_util.tree_map(lambda v: v.item() if np.ndim(v) == 0 else v, x)


def _episode_returns(episode_return: Any, objectives: Any) -> dict[str, Any]:
    """{"episode_return": ...}; for a vector reward (several objectives) the first objective's
    return is the headline "episode_return", and each one is "episode_return/<name>" (names
    from the environment's `objectives`, else the index)."""
    if episode_return is None:
        return {"episode_return": 0.0}
    if np.ndim(episode_return) != 1:
        return {"episode_return": _as_python(episode_return)}
    values = [float(v) for v in np.asarray(episode_return)]
    names = list(objectives) if objectives is not None else [str(i) for i in range(len(values))]
    if len(names) != len(values):
        names = [str(i) for i in range(len(values))]
    return {
        "episode_return": values[0],
        **{f"episode_return/{name}": v for name, v in zip(names, values, strict=True)},
    }


class EnvironmentLoop:
    """Acts in `environment` with `actor`; one counter increment and one log line per episode.

    `counter` defaults to a fresh root `Counter`, `logger` to a terminal logger for `label`.
    With `should_update`, `actor.update(wait=False)` follows every step, so the actor refreshes
    its parameters at the pace its `VariableClient`'s period allows.
    """

    def __init__(
        self,
        environment: dm_env.Environment,
        actor: Actor,
        counter: Counter | None = None,
        logger: Logger | None = None,
        should_update: bool = True,
        label: str = "environment",
        observers: Sequence[EnvLoopObserver] = (),
    ):
        self._environment = environment
        self._actor = actor
        self._counter = counter if counter is not None else Counter()
        self._logger = logger if logger is not None else make_logger(label, None)
        self._should_update = should_update
        self._label = label
        self._observers = list(observers)

    def run_episode(self) -> dict[str, Any]:
        """Runs one episode; returns (and logs) its length, return, speed and the counts."""
        start = time.monotonic()
        steps_before = _environment_steps(self._environment)
        timestep = self._environment.reset()
        self._actor.observe_first(timestep)
        for observer in self._observers:
            observer.observe_first(self._environment, timestep)

        episode_length = 0
        episode_return = None
        while not timestep.last():
            action = self._actor.select_action(timestep.observation)
            timestep = self._environment.step(action)
            self._actor.observe(action, next_timestep=timestep)
            for observer in self._observers:
                observer.observe(self._environment, timestep, action)
            if self._should_update:
                self._actor.update(wait=False)
            episode_length += 1
            episode_return = _add_rewards(episode_return, timestep.reward)

        # `steps` counts environment steps: with action repeat, the wrapped environment's.
        steps_after = _environment_steps(self._environment)
        environment_steps = episode_length if steps_before is None else steps_after - steps_before
        counts = self._counter.increment(episodes=1, steps=environment_steps)
        duration = time.monotonic() - start
        result: dict[str, Any] = {
            "episode_length": episode_length,
            "environment_steps": environment_steps,
            **_episode_returns(episode_return, getattr(self._environment, "objectives", None)),
            "steps_per_second": environment_steps / max(duration, 1e-9),
        }
        # Environments with a goal (MiniGrid, BabyAI) say whether the episode reached it.
        success = getattr(self._environment, "episode_success", None)
        if success is not None:
            result["episode_success"] = float(success)
        for observer in self._observers:
            result.update(observer.get_metrics())
        result.update(counts)
        self._logger.write(result)
        return result

    def run(
        self,
        num_episodes: int | None = None,
        num_steps: int | None = None,
        stop_event: threading.Event | None = None,
    ) -> int:
        """Runs episodes until `num_episodes` or `num_steps` is reached or `stop_event` is set.

        Checks happen between episodes, so a step budget is met or exceeded by the last episode.
        With neither budget, runs until `stop_event` is set (or forever). Returns the steps run.
        """
        return _run_until(lambda: [self.run_episode()], num_episodes, num_steps, stop_event)


def _run_until(
    run_once: Callable[[], list[dict[str, Any]]],
    num_episodes: int | None,
    num_steps: int | None,
    stop_event: threading.Event | None,
) -> int:
    """Calls `run_once` (which returns the results of the episodes it ended) until the episode
    or step budget is met or `stop_event` is set, checking between calls; returns the steps."""
    if num_episodes is not None and num_steps is not None:
        raise ValueError("give num_episodes or num_steps, not both")
    episodes = steps = 0
    while True:
        if stop_event is not None and stop_event.is_set():
            break
        if num_episodes is not None and episodes >= num_episodes:
            break
        if num_steps is not None and steps >= num_steps:
            break
        for result in run_once():
            episodes += 1
            steps += result["episode_length"]
    return steps


def _environment_steps(environment: dm_env.Environment) -> int | None:
    """The environment's own step count if it keeps one (ActionRepeatWrapper does), else None."""
    try:
        return int(environment.environment_steps)
    except AttributeError:
        return None


class VectorEnvironmentLoop:
    """Acts in E environments at once with a VectorActor: one batched policy call per step.

    Each environment runs its own episodes; when one ends it is logged and counted exactly as
    EnvironmentLoop logs and counts an episode, and that environment is reset for the next.
    `vector_environment` is an `antiphon.environments.vector` environment (or anything with
    its `num_envs`, `reset(i)`, `step(indices, actions)`, `info(i)`). `observers[i]` are
    environment i's observers (called with `env=None`: the environment may be in another
    process).
    """

    def __init__(
        self,
        vector_environment: Any,
        actor: Any,
        counter: Counter | None = None,
        logger: Logger | None = None,
        should_update: bool = True,
        label: str = "environment",
        observers: Sequence[Sequence[EnvLoopObserver]] = (),
    ):
        self._environments = vector_environment
        self._observers = [list(o) for o in observers] or [
            [] for _ in range(vector_environment.num_envs)
        ]
        if len(self._observers) != vector_environment.num_envs:
            raise ValueError("give one list of observers per environment")
        self._actor = actor
        self._counter = counter if counter is not None else Counter()
        self._logger = logger if logger is not None else make_logger(label, None)
        self._should_update = should_update
        self._label = label
        self._timesteps: list[dm_env.TimeStep | None] = [None] * vector_environment.num_envs
        self._episodes: list[dict[str, Any]] = [{} for _ in range(vector_environment.num_envs)]

    @property
    def num_envs(self) -> int:
        return self._environments.num_envs

    def _start(self, index: int) -> None:
        timestep = self._environments.reset(index)
        self._timesteps[index] = timestep
        self._episodes[index] = {
            "start": time.monotonic(),
            "steps_before": self._environments.info(index).get("environment_steps"),
            "length": 0,
            "return": None,
        }
        self._actor.observe_first(index, timestep)
        for observer in self._observers[index]:
            observer.observe_first(None, timestep)

    def _finish(self, index: int) -> dict[str, Any]:
        episode = self._episodes[index]
        info = self._environments.info(index)
        steps_after = info.get("environment_steps")
        if episode["steps_before"] is None or steps_after is None:
            environment_steps = episode["length"]
        else:
            environment_steps = steps_after - episode["steps_before"]
        counts = self._counter.increment(episodes=1, steps=environment_steps)
        duration = time.monotonic() - episode["start"]
        result: dict[str, Any] = {
            "episode_length": episode["length"],
            "environment_steps": environment_steps,
            **_episode_returns(episode["return"], self._environments.objectives),
            # Per environment, so E environments together run E times this.
            "steps_per_second": environment_steps / max(duration, 1e-9),
            "environment_index": index,
        }
        if "episode_success" in info:
            result["episode_success"] = float(info["episode_success"])
        for observer in self._observers[index]:
            result.update(observer.get_metrics())
        result.update(counts)
        self._logger.write(result)
        self._timesteps[index] = None
        return result

    def step(self, start_new: Sequence[bool] | bool = True) -> list[dict[str, Any]]:
        """One batched step of every running environment (environments that are not running
        start an episode first where `start_new` allows). Returns the results of the episodes
        that ended at this step."""
        wanted = [start_new] * self.num_envs if isinstance(start_new, bool) else list(start_new)
        for i in range(self.num_envs):
            if self._timesteps[i] is None and wanted[i]:
                self._start(i)
        indices = [i for i in range(self.num_envs) if self._timesteps[i] is not None]
        if not indices:
            return []
        observations = [self._timesteps[i].observation for i in indices]
        actions = self._actor.select_actions(indices, observations)
        per_env = [actions[p] for p in range(len(indices))]
        timesteps = self._environments.step(indices, per_env)
        finished = []
        for i, action, timestep in zip(indices, per_env, timesteps, strict=True):
            self._actor.observe(i, action, next_timestep=timestep)
            for observer in self._observers[i]:
                observer.observe(None, timestep, action)
            episode = self._episodes[i]
            episode["length"] += 1
            episode["return"] = _add_rewards(episode["return"], timestep.reward)
            self._timesteps[i] = timestep
            if timestep.last():
                finished.append(self._finish(i))
        if self._should_update:
            self._actor.update(wait=False)
        return finished

    def run_episodes(self, num_episodes: int, stop_event: threading.Event | None = None):
        """Exactly `num_episodes` episodes over the E environments (none started beyond that);
        returns their results in the order they ended. Episodes still running from earlier
        calls are abandoned first, so each call starts from fresh resets."""
        self._timesteps = [None] * self.num_envs
        results: list[dict[str, Any]] = []
        started = 0
        while len(results) < num_episodes:
            if stop_event is not None and stop_event.is_set():
                break
            allow = []
            for i in range(self.num_envs):
                starts = self._timesteps[i] is None and started < num_episodes
                started += int(starts)
                allow.append(starts)
            results.extend(self.step(allow))
        return results

    def run(
        self,
        num_episodes: int | None = None,
        num_steps: int | None = None,
        stop_event: threading.Event | None = None,
    ) -> int:
        """Steps until `num_episodes` episodes have ended or `num_steps` environment steps were
        run (counted at episode ends, as EnvironmentLoop does), or `stop_event` is set."""
        return _run_until(self.step, num_episodes, num_steps, stop_event)
