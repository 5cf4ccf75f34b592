"""Shared helpers for the replay tests: a tiny environment spec and hand-built episodes."""

from __future__ import annotations

import dm_env
import numpy as np
import reverb
from dm_env import specs

from antiphon.core.types import EnvironmentSpec

ENV_SPEC = EnvironmentSpec(
    observations=specs.Array((2,), np.float32, name="observation"),
    actions=specs.BoundedArray((1,), np.float32, -1.0, 1.0, name="action"),
    rewards=specs.Array((), np.float32, name="reward"),
    discounts=specs.BoundedArray((), np.float32, 0.0, 1.0, name="discount"),
)


def obs(t: int, episode: int = 0) -> np.ndarray:
    """Observation of step t: identifies both the step and the episode."""
    return np.array([t, 100 * episode], np.float32)


def act(t: int) -> np.ndarray:
    return np.array([t / 10], np.float32)


def episode(
    rewards: list[float],
    discounts: list[float] | None = None,
    truncated: bool = False,
    episode_id: int = 0,
) -> list[dm_env.TimeStep]:
    """FIRST timestep then one timestep per reward; the last one terminates (or truncates).

    discounts: the environment discount of each step (defaults to 1, and 0 at termination).
    """
    n = len(rewards)
    if discounts is None:
        discounts = [1.0] * (n - 1) + [1.0 if truncated else 0.0]
    steps = [dm_env.restart(obs(0, episode_id))]
    for t, (r, d) in enumerate(zip(rewards, discounts, strict=True), start=1):
        o = obs(t, episode_id)
        if t < n:
            steps.append(dm_env.transition(r, o, discount=d))
        elif truncated:
            steps.append(dm_env.truncation(r, o, discount=d))
        else:
            assert d == 0.0, "a terminating step has discount 0"
            steps.append(dm_env.termination(r, o))
    return steps


def feed(adder, timesteps: list[dm_env.TimeStep], extras_fn=None) -> None:
    """Drive an adder through one episode, taking action act(t) at step t."""
    adder.add_first(timesteps[0])
    for t, ts in enumerate(timesteps[1:]):
        extras = extras_fn(t) if extras_fn else ()
        adder.add(act(t), ts, extras)


def drain(client: reverb.Client, table: str) -> list:
    """All items of a queue table, oldest first (data unpacked as the table signature)."""
    size = client.server_info()[table].current_size
    if size == 0:
        return []
    samples = client.sample(table, size, emit_timesteps=False, unpack_as_table_signature=True)
    return [s.data for s in samples]
