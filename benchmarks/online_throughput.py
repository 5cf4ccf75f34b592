"""Online throughput: the whole online program (replay, learner, N actors with E environments
each), environment steps/s, learner SGD steps/s and the samples per insert actually achieved.

For each (N, E), a fresh `experiments.build_online_program` of the agent (default D4PG with its
own config, rate limiter included) on `dmc:cheetah-run` is launched (Ray by default: every node
in its own process, actor processes with synchronous CPU dispatch). After `--settle` seconds
(JIT, the replay's minimum size, the first parameter pulls) one window of `--window` seconds is
read from the live system:

- environment steps/s: items the replay accepted per second (n-step transitions: one per step);
- learner SGD steps/s: the counter's `learner_steps` over the window;
- samples per insert: items sampled ÷ items inserted over the window (the rate limiter's target
  is the config's `samples_per_insert`; less means the learner, not the limiter, set the pace).

    .venv/bin/python -m benchmarks.online_throughput        # N = 1..cores, E = 1, 8, 32
    .venv/bin/python -m benchmarks.online_throughput --actors 1 --envs 1,8 --launcher threads
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from typing import Any

import reverb

from antiphon import launch
from antiphon.agents import registry
from antiphon.core.types import make_environment_spec
from antiphon.environments import make_environment
from antiphon.launch import experiments
from antiphon.replay import clients
from benchmarks import common

NAME = "online_throughput"
TASK = "dmc:cheetah-run"


def _table_stats(client: reverb.Client) -> tuple[int, int]:
    inserted = sampled = 0
    for info in client.server_info().values():
        inserted += int(info.rate_limiter_info.insert_stats.completed)
        sampled += int(info.rate_limiter_info.sample_stats.completed)
    return inserted, sampled


def measure(
    agent: str,
    num_actors: int,
    envs_per_actor: int,
    launcher: str,
    backend: str,
    settle: float,
    window: float,
    samples_per_insert: float | None = None,
) -> dict[str, Any]:
    builder_class = registry.get_builder_class(agent)
    config = builder_class.config_class()
    if samples_per_insert is not None:
        config = dataclasses.replace(config, samples_per_insert=samples_per_insert)
    builder = builder_class(config)
    env_spec = make_environment_spec(make_environment(TASK, seed=0))
    experiment = experiments.OnlineExperiment(
        environment=TASK,
        max_actor_steps=10**12,
        eval_every=0,
        num_actors=num_actors,
        envs_per_actor=envs_per_actor,
        env_backend=backend,
        replay_checkpoint=False,
    )
    program = experiments.build_online_program(builder, experiment, env_spec)
    running = launch.launch(program, launch_type=launcher)
    try:
        address = clients.resolve_address(program.groups["replay"][0].handle.dereference())
        client = reverb.Client(address)
        counter = running.client("counter")
        time.sleep(settle)
        inserted0, sampled0 = _table_stats(client)
        learner0 = int(counter.get_counts().get("learner_steps", 0))
        start = time.perf_counter()
        time.sleep(window)
        inserted1, sampled1 = _table_stats(client)
        learner1 = int(counter.get_counts().get("learner_steps", 0))
        seconds = time.perf_counter() - start
    finally:
        running.shutdown()
    inserted, sampled = inserted1 - inserted0, sampled1 - sampled0
    return {
        "actors": num_actors,
        "envs_per_actor": envs_per_actor,
        "env_steps_per_s": inserted / seconds,
        "learner_sgd_steps_per_s": (learner1 - learner0) / seconds,
        "samples_per_insert": sampled / inserted if inserted else float("nan"),
        "samples_per_insert_target": getattr(builder.config, "samples_per_insert", None),
        "window_seconds": seconds,
    }


def main() -> None:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", default="d4pg")
    parser.add_argument("--actors", default=",".join(str(n) for n in range(1, cores + 1)))
    parser.add_argument("--envs", default="1,8,32")
    parser.add_argument("--launcher", choices=("ray", "threads"), default="ray")
    parser.add_argument("--backend", choices=("serial", "subprocess"), default="serial")
    parser.add_argument("--settle", type=float, default=40.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument(
        "--samples-per-insert",
        type=float,
        default=None,
        help="override the agent's rate limiter target (default: the agent's own config)",
    )
    args = parser.parse_args()
    recorder = common.Recorder(NAME)
    results = []
    for n in [int(x) for x in args.actors.split(",")]:
        for e in [int(x) for x in args.envs.split(",")]:
            result = measure(
                args.agent, n, e, args.launcher, args.backend, args.settle, args.window
            )
            results.append(result)
            print(
                f"N={n} E={e}: {result['env_steps_per_s']:.0f} env steps/s, "
                f"{result['learner_sgd_steps_per_s']:.1f} SGD steps/s, samples/insert "
                f"{result['samples_per_insert']:.2f}",
                flush=True,
            )
    headers = [
        "actors N",
        "envs per actor E",
        "env steps/s",
        "learner SGD steps/s",
        "samples per insert (target)",
    ]
    rows = [
        [
            r["actors"],
            r["envs_per_actor"],
            f"{r['env_steps_per_s']:,.0f}",
            f"{r['learner_sgd_steps_per_s']:.1f}",
            f"{r['samples_per_insert']:.2f} ({r['samples_per_insert_target']})",
        ]
        for r in results
    ]
    table = common.markdown_table(headers, rows)
    figures = {
        "agent": args.agent,
        "task": TASK,
        "launcher": args.launcher,
        "backend": args.backend,
        "settle_seconds": args.settle,
        "samples_per_insert_override": args.samples_per_insert,
        "results": results,
    }
    result = recorder.finish(figures, [])
    result["table"] = table
    path = common.write_json(result)
    (common.RESULTS_DIR / f"{NAME}.md").write_text(table + "\n")
    print(table)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
