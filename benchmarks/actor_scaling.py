"""Actor scaling on the Ray launcher: aggregate env steps/s with N actors ÷ (N × one actor).

One program on a local Ray instance: a Reverb node (a uniform table with no rate limiter, so
inserts never block), the counter, a variable source serving the D4PG networks' initial
parameters, and `max_actors` actors, each a real D4PG actor (policy on CPU, n-step adder into the
replay, parameter pulls every `variable_update_period` steps) on `dmc:cheetah-run`. Actors can be
switched on and off between episodes, so every N is measured in the same processes, interleaved
(the order reversed on every repeat). A window's steps are the items the replay received (one
per env step), read from the server before and after it.

    .venv/bin/python -m benchmarks.actor_scaling --max-actors 3 --repeats 5

Target (BENCHMARKS.md): >= 0.8 for N up to cores - 1.
"""

from __future__ import annotations

import argparse
import os
import time

import reverb

from antiphon import launch
from antiphon.agents.d4pg.builder import REPLAY_TABLE, D4PGBuilder
from antiphon.agents.d4pg.config import D4PGConfig
from antiphon.core.types import make_environment_spec
from antiphon.environments import make_environment
from antiphon.launch import experiments
from antiphon.launch import program as lp
from antiphon.replay import adders, tables
from benchmarks import common, ray_nodes

NAME = "actor_scaling"
TARGET = ">= 0.8"
TASK = "dmc:cheetah-run"


def _program(max_actors: int):
    builder = D4PGBuilder(D4PGConfig())
    env_spec = make_environment_spec(make_environment(TASK, seed=0))
    signature = adders.NStepTransitionAdder.signature(env_spec)
    experiment = experiments.OnlineExperiment(
        environment=TASK, max_actor_steps=10**12, eval_every=0, num_actors=max_actors
    )
    program = lp.Program("actor-scaling")
    with program.group("replay"):
        replay = program.add_node(
            lp.ReverbNode(
                lambda: [tables.uniform_table(REPLAY_TABLE, 10_000_000, signature, None, 1)]
            )
        )
    with program.group("counter"):
        counter = program.add_node(
            lp.PyClassNode(experiments.CounterNode, experiment, wait_for_evaluator=False)
        )
    with program.group("learner"):
        source = program.add_node(lp.PyClassNode(ray_nodes.InitialParamsSource, builder, env_spec))
    with program.group("actor"):
        for actor_id in range(max_actors):
            program.add_node(
                lp.PyClassNode(
                    ray_nodes.PausableActor, builder, replay, source, counter, experiment, actor_id
                )
            )
    return program


def _inserted(client: reverb.Client) -> int:
    info = client.server_info()[REPLAY_TABLE]
    return int(info.rate_limiter_info.insert_stats.completed)


def run(max_actors: int, repeats: int, window: float, settle: float) -> dict:
    running = launch.launch(_program(max_actors), launch_type="ray")
    try:
        labels = [f"actor_{i}" for i in range(max_actors)] if max_actors > 1 else ["actor"]
        actors = [running.client(label) for label in labels]
        client = reverb.Client(str(running.client("replay")))
        # Warm-up: every actor runs an episode (JIT, Reverb connection, first parameter pull).
        for actor in actors:
            actor.set_active(True)
        time.sleep(settle * 2)
        rates: dict[int, list[float]] = {n: [] for n in range(1, max_actors + 1)}
        for repeat in range(repeats):
            order = list(range(1, max_actors + 1))
            if repeat % 2:
                order.reverse()
            for n in order:
                for i, actor in enumerate(actors):
                    actor.set_active(i < n)
                time.sleep(settle)  # switched-off actors finish their episode
                before, start = _inserted(client), time.perf_counter()
                time.sleep(window)
                after, end = _inserted(client), time.perf_counter()
                rates[n].append((after - before) / (end - start))
                print(f"repeat {repeat} N={n}: {rates[n][-1]:.0f} env steps/s", flush=True)
    finally:
        running.shutdown()
    one = rates[1]
    result = {}
    for n, values in rates.items():
        ratios = [v / (n * o) for v, o in zip(values, one, strict=True)]
        result[n] = {"steps_per_second": common.spread(values), "scaling": common.spread(ratios)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.actor_scaling")
    parser.add_argument("--max-actors", type=int, default=max(2, (os.cpu_count() or 2) - 1))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--window", type=float, default=12.0, help="seconds per measurement")
    parser.add_argument("--settle", type=float, default=6.0, help="seconds after switching")
    args = parser.parse_args()
    result = run(args.max_actors, args.repeats, args.window, args.settle)
    cores = os.cpu_count() or 1
    rows = []
    for n, summary in result.items():
        in_target = n <= max(1, cores - 1)
        rows.append(
            [
                n,
                common.fmt_rate(summary["steps_per_second"], "steps/s"),
                common.fmt_ratio(summary["scaling"]),
                common.fmt_spread(summary["scaling"]),
                common.meets(summary["scaling"]["median"], TARGET)
                if in_target
                else "(N > cores - 1)",
            ]
        )
    table = common.markdown_table(
        ["actors N", "aggregate env steps/s (median)", "scaling", "spread", f"target {TARGET}"],
        rows,
    )
    print(table)
    common.write_json(
        {
            "benchmark": NAME,
            "task": TASK,
            "target": TARGET,
            "results": {str(n): v for n, v in result.items()},
            "machine": common.machine(),
            "git": common.git_commit(),
            "command": "python -m benchmarks.actor_scaling "
            + f"--max-actors {args.max_actors} --repeats {args.repeats} --window {args.window}",
        }
    )
    (common.RESULTS_DIR / f"{NAME}.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
