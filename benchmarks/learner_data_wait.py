"""Learner data wait: fraction of learner wall time spent blocked waiting for the next batch.

`--agent d4pg` (default) or `--agent mpo`. Replay ready: a pre-filled Reverb table with no rate
limiter, read through the real data path (`make_dataset_iterator` -> `make_learner`, see
`learner_common`), each critic of `--critic-types` (D4PG: MoG and C51; MPO: scalar, C51, MoG),
default config (batch 256, K = 4 SGD steps per call). After compilation and a warm-up,
`windows` windows of `window_calls` learner calls are measured.

JAX dispatches asynchronously: `D4PGLearner.step()` (or `MPOLearner.step()`) returns as soon as
its update is enqueued, so a free-running loop reaches the next `next(iterator)` while the
previous update still runs, and the time it then blocks there is not time the learner lacked
data — the update is still computing. The headline figure therefore makes each step
synchronous: `step()` followed by `block_until_ready` on the learner state, so a window's wall
time is the compute plus whatever time `next()` had to wait because no batch was ready. The
fraction is

    (DevicePrefetcher.wait_seconds at the end - at the start) / window wall time.

As context, the same is reported for free-running windows (no blocking per step, only at the
window end; interleaved with the synchronous ones), together with the learner's own cumulative
`data_wait_fraction` property (wait time ÷ time inside `step()`): both count waits that overlap
running updates, so they are upper bounds that say little about starvation on an asynchronous
backend.

Writes learner_data_wait.json (D4PG) or learner_data_wait_<agent>.json.

    .venv/bin/python -m benchmarks.learner_data_wait
    .venv/bin/python -m benchmarks.learner_data_wait --agent mpo
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import jax

from benchmarks import common, learner_common

NAME = "learner_data_wait"
TARGET = "<= 0.05"
CRITICS = learner_common.CRITIC_TYPES["d4pg"]


def _window(setup: learner_common.Learner, calls: int, synchronous: bool) -> dict[str, float]:
    learner, prefetcher = setup.learner, setup.prefetcher
    learner_common.block_until_ready(learner)
    wait_before = prefetcher.wait_seconds
    start = time.perf_counter()
    for _ in range(calls):
        learner.step()
        if synchronous:
            learner_common.block_until_ready(learner)
    learner_common.block_until_ready(learner)
    wall = time.perf_counter() - start
    wait = prefetcher.wait_seconds - wait_before
    k = setup.config.sgd_steps_per_call
    return {"wait_fraction": wait / wall, "sgd_steps_per_s": calls * k / wall, "wall_s": wall}


def _one_critic(
    replay, agent: str, critic_type: str, windows: int, window_calls: int, overrides: dict
) -> dict[str, Any]:
    setup = learner_common.make_agent_learner(replay, agent, critic_type, **overrides)
    try:
        start = time.perf_counter()
        setup.learner.step()
        learner_common.block_until_ready(setup.learner)
        compile_seconds = time.perf_counter() - start
        for _ in range(5):  # warm-up: pipeline running, buffers filled
            setup.learner.step()
        learner_common.block_until_ready(setup.learner)
        sync, free = [], []
        for i in range(windows):  # interleaved, order reversed every other window pair
            for synchronous in (True, False) if i % 2 == 0 else (False, True):
                (sync if synchronous else free).append(
                    _window(setup, window_calls, synchronous=synchronous)
                )
        cumulative = setup.learner.data_wait_fraction
    finally:
        setup.close()
    k = setup.config.sgd_steps_per_call
    return {
        "data_wait_fraction": common.spread([w["wait_fraction"] for w in sync]),
        "windows": sync,
        "sgd_steps_per_window": window_calls * k,
        "sgd_steps_per_s": common.spread([w["sgd_steps_per_s"] for w in sync]),
        "free_running": {
            "wait_fraction": common.spread([w["wait_fraction"] for w in free]),
            "sgd_steps_per_s": common.spread([w["sgd_steps_per_s"] for w in free]),
            "windows": free,
        },
        "learner_data_wait_fraction_property (cumulative, incl. warm-up)": cumulative,
        "compile_seconds": round(compile_seconds, 2),
        "config": {
            "critic_type": critic_type,
            "batch_size": setup.config.batch_size,
            "sgd_steps_per_call": k,
            "prefetch_size": setup.config.prefetch_size,
        },
    }


def run(
    windows: int = 4,
    window_calls: int = 25,
    num_items: int = 20_000,
    agent: str = "d4pg",
    critic_types: tuple[str, ...] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """`overrides`: config fields set for every critic (e.g. batch_size for a quick check)."""
    critic_types = tuple(critic_types or learner_common.CRITIC_TYPES[agent])
    n_step = learner_common.make_config(agent, critic_types[0], **overrides).n_step
    replay = learner_common.start_filled_replay(num_items, n_step=n_step)
    try:
        per_critic = {
            c: _one_critic(replay, agent, c, windows, window_calls, overrides) for c in critic_types
        }
    finally:
        replay.stop()
    learner_class = {"d4pg": "D4PGLearner", "mpo": "MPOLearner"}[agent]
    return {
        "what": f"fraction of {learner_class} wall time blocked in next(iterator) "
        "(DevicePrefetcher wait_seconds), steps made synchronous; replay pre-filled, no rate "
        "limiter",
        "agent": agent,
        "target": TARGET,
        "device": jax.devices()[0].device_kind,
        "replay_items": replay.num_items,
        "critics": per_critic,
    }


def rows(figures: dict[str, Any]) -> list[list[str]]:
    agent = figures.get("agent", "d4pg").upper()
    out = []
    for critic, f in figures["critics"].items():
        r = f["data_wait_fraction"]
        free = f["free_running"]["wait_fraction"]
        out.append(
            [
                f"learner data wait ({agent} {critic.upper()}, {f['sgd_steps_per_window']} SGD "
                f"steps x {r['n']} windows, {figures['device']})",
                common.fmt_ratio(r),
                common.fmt_spread(r),
                "<= 0.05",
                common.meets(r["median"], TARGET),
                f"{common.fmt_rate(f['sgd_steps_per_s'], 'SGD steps/s')} (synchronous steps); "
                f"free-running wait fraction {free['median']:.3f} (overlaps compute)",
            ]
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--window-calls", type=int, default=25)
    learner_common.add_agent_arguments(parser)
    args = parser.parse_args()
    critic_types, overrides = learner_common.agent_options(parser, args)
    recorder = common.Recorder(args.json_name or learner_common.result_name(NAME, args.agent))
    figures = run(
        args.windows,
        args.window_calls,
        num_items=args.num_items,
        agent=args.agent,
        critic_types=critic_types,
        **overrides,
    )
    path = common.write_json(recorder.finish(figures, rows(figures)))
    print(common.markdown_table(common.TABLE_HEADERS, rows(figures)))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
