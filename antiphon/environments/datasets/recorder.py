"""Recording the episodes an online run's actors see (the source of `medium-replay` datasets).

`EpisodeRecorder` is an environment-loop observer. It buffers one episode, and `commit()` (called
by the actor node after each episode, with the program's actor step count at that moment) files it
into `<run_dir>/episodes/<actor>/chunk-<n>.npz`, written atomically every `episodes_per_chunk`
episodes and on `flush()`. A crash loses at most the unflushed episodes, never a written chunk.

`read_recorded_episodes(run_dir, until_actor_steps)` gathers every actor's episodes, in the order
they ended, up to a step count: exactly what a D4RL-style replay buffer of a run stopped at that
point held.

The actions recorded are the ones the agent chose, in antiphon's internal [-1, 1] box (the
environment's CanonicalActionWrapper maps them to its own units): each chunk file's `metadata`
says `action_units: "normalized"` (`ACTION_UNITS_METADATA`), and `antiphon collect` records the
same in the datasets it writes from these episodes.
"""

from __future__ import annotations

import glob
import os
from typing import Any

import dm_env
import numpy as np

from antiphon.environments.datasets.core import (
    FIELDS,
    Dataset,
    DatasetError,
    from_episodes,
    metadata_to_json,
)

EPISODES_DIR = "episodes"
# What antiphon's own recordings say about their actions (see core's module docstring).
ACTION_UNITS_METADATA = {"action_units": "normalized"}


def episodes_dir(run_dir: str) -> str:
    return os.path.join(run_dir, EPISODES_DIR)


class EpisodeAssembler:
    """An environment-loop observer that assembles each episode into flat transition arrays
    (the `Dataset` fields). `pop_finished()` hands over the episode that just ended."""

    def __init__(self):
        self._current: dict[str, list[Any]] | None = None
        self._finished: dict[str, np.ndarray] | None = None

    def observe_first(self, env: dm_env.Environment, timestep: dm_env.TimeStep) -> None:
        self._current = {
            "observations": [np.asarray(timestep.observation)],
            "actions": [],
            "rewards": [],
            "discounts": [],
        }
        self._finished = None

    def observe(self, env: dm_env.Environment, timestep: dm_env.TimeStep, action: Any) -> None:
        current = self._current
        if current is None:
            return
        current["observations"].append(np.asarray(timestep.observation))
        current["actions"].append(np.asarray(action))
        current["rewards"].append(float(timestep.reward))
        current["discounts"].append(float(timestep.discount))
        if timestep.last():
            observations = np.asarray(current["observations"], np.float32)
            n = len(current["rewards"])
            # dm_env: discount 0 on the last step is a true terminal; otherwise the time limit
            # cut the episode (a truncation, which bootstraps).
            terminal = current["discounts"][-1] == 0.0
            terminals = np.zeros(n, bool)
            timeouts = np.zeros(n, bool)
            (terminals if terminal else timeouts)[-1] = True
            self._finished = {
                "observations": observations[:-1],
                "actions": np.asarray(current["actions"], np.float32),
                "rewards": np.asarray(current["rewards"], np.float32),
                "next_observations": observations[1:],
                "terminals": terminals,
                "timeouts": timeouts,
            }
            self._current = None

    def get_metrics(self) -> dict[str, Any]:
        return {}

    def pop_finished(self) -> dict[str, np.ndarray] | None:
        finished, self._finished = self._finished, None
        return finished


class EpisodeRecorder(EpisodeAssembler):
    """Files each finished episode into `directory/chunk-<n>.npz` (see the module docstring)."""

    def __init__(self, directory: str, episodes_per_chunk: int = 20):
        super().__init__()
        self._directory = directory
        self._episodes_per_chunk = episodes_per_chunk
        os.makedirs(directory, exist_ok=True)
        existing = sorted(glob.glob(os.path.join(directory, "chunk-*.npz")))
        # A restarted actor continues the numbering instead of overwriting.
        self._next_chunk = int(os.path.basename(existing[-1])[6:12]) + 1 if existing else 0
        self._pending: list[dict[str, np.ndarray]] = []

    # Filing
    def commit(self, actor_steps: int) -> None:
        """Files the episode that just ended, tagged with the program's actor step count."""
        episode = self.pop_finished()
        if episode is None:
            return
        episode["actor_steps"] = np.int64(actor_steps)
        self._pending.append(episode)
        if len(self._pending) >= self._episodes_per_chunk:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        arrays = from_episodes(self._pending).arrays()
        arrays["episode_lengths"] = np.array([len(e["rewards"]) for e in self._pending], np.int64)
        arrays["episode_actor_steps"] = np.array([e["actor_steps"] for e in self._pending])
        arrays["metadata"] = np.array(metadata_to_json(dict(ACTION_UNITS_METADATA)))
        path = os.path.join(self._directory, f"chunk-{self._next_chunk:06d}.npz")
        # Not matching chunk-*.npz, so a crash mid-write never leaves a half file readers see.
        tmp = os.path.join(self._directory, f".writing-{self._next_chunk:06d}.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        self._next_chunk += 1
        self._pending = []


def read_recorded_episodes(
    run_dir: str, until_actor_steps: int | None = None, metadata: dict[str, Any] | None = None
) -> Dataset:
    """Every recorded episode that ended by `until_actor_steps`, in the order they ended."""
    paths = sorted(glob.glob(os.path.join(episodes_dir(run_dir), "*", "chunk-*.npz")))
    if not paths:
        raise DatasetError(
            f"{run_dir}: no recorded episodes (train with --record-episodes to record them)"
        )
    episodes: list[tuple[int, dict[str, np.ndarray]]] = []
    for path in paths:
        with np.load(path) as chunk:
            lengths = chunk["episode_lengths"]
            steps = chunk["episode_actor_steps"]
            data = {name: chunk[name] for name in FIELDS}
        start = 0
        for length, step in zip(lengths, steps, strict=True):
            stop = start + int(length)
            if until_actor_steps is None or step <= until_actor_steps:
                episodes.append((int(step), {k: v[start:stop] for k, v in data.items()}))
            start = stop
    if not episodes:
        raise DatasetError(
            f"{run_dir}: no recorded episode ended by actor step {until_actor_steps}"
        )
    episodes.sort(key=lambda item: item[0])
    return from_episodes([e for _, e in episodes], metadata)
