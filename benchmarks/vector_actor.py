"""Vectorised actor: actor efficiency at E environments per actor, and the vectorised gain.

For each E (default 1, 8, 32), on `dmc:cheetah-run`, interleaved in this process:

A (actor, E): `VectorEnvironmentLoop` running the D4PG behaviour policy as one jitted batched
call for the E environments, each environment with its own n-step adder (n=5) into one live
Reverb table served from this process (no rate limiter, never evicts), parameters pulled through
a variable client as in training. With E = 1 it is GenericActor + EnvironmentLoop, the actor
every earlier figure measured.
B (bare, E): the same E environments on the same backend stepping zero actions, nothing else.

- actor efficiency(E) = A(E) env steps/s ÷ B(E) env steps/s (BENCHMARKS.md's ratio, same
  backend and E); target >= 0.75 at E = 1.
- vectorised gain = A(8) ÷ A(1) env steps/s of one actor (target >= 2x), and A(32) ÷ A(1).
- A "bound" side: the bare environment plus one bare Reverb `TrajectoryWriter` append and item
  per step (no policy): what an actor that writes one item per step cannot beat.

`--dispatch sync` sets `jax_cpu_enable_async_dispatch=False` for this process (what actor
processes on Ray use); `--dispatch both` runs the whole benchmark once per setting in child
processes and reports both.

    .venv/bin/python -m benchmarks.vector_actor                 # E = 1, 8, 32; async dispatch
    .venv/bin/python -m benchmarks.vector_actor --dispatch both
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

NAME = "vector_actor"
TASK = "dmc:cheetah-run"
EFFICIENCY_TARGET = ">= 0.75"
GAIN_TARGET = ">= 2"


def _bare_block(vector_env, loop_steps: int, zeros) -> tuple[float, float]:
    """Every environment steps `loop_steps` zero actions (resetting where an episode ends)."""
    indices = list(range(vector_env.num_envs))
    actions = [zeros] * vector_env.num_envs
    start = time.perf_counter()
    for i in indices:
        vector_env.reset(i)
    steps = 0
    for _ in range(loop_steps):
        for i, timestep in enumerate(vector_env.step(indices, actions)):
            if timestep.last():
                vector_env.reset(i)
        steps += len(indices)
    return steps, time.perf_counter() - start


def _bound_block(env, writer_client, table: str, num_steps: int, zeros) -> tuple[float, float]:
    """Bare env + one TrajectoryWriter append and one item per step (the write floor)."""
    start = time.perf_counter()
    steps = 0
    with writer_client.trajectory_writer(num_keep_alive_refs=2) as writer:
        while steps < num_steps:
            timestep = env.reset()
            while not timestep.last():
                timestep = env.step(zeros)
                writer.append({"observation": timestep.observation, "reward": timestep.reward})
                writer.create_item(
                    table,
                    1.0,
                    {
                        "observation": writer.history["observation"][-1],
                        "reward": writer.history["reward"][-1],
                    },
                )
                writer.flush(block_until_num_items=4)
                steps += 1
            writer.end_episode()
    return steps, time.perf_counter() - start


def run(
    envs: list[int], repeats: int, episodes_per_block: int, backend: str, budget_seconds: float
) -> dict[str, Any]:
    import jax
    import reverb

    from antiphon.agents.d4pg.builder import REPLAY_TABLE, D4PGBuilder
    from antiphon.agents.d4pg.config import D4PGConfig
    from antiphon.core.logging import NoOpLogger
    from antiphon.core.loop import EnvironmentLoop, VectorEnvironmentLoop
    from antiphon.core.types import make_environment_spec
    from antiphon.environments import make_environment
    from antiphon.environments.vector import make_vector_environment
    from antiphon.replay import adders, tables
    from benchmarks import common

    builder = D4PGBuilder(D4PGConfig())
    probe = make_environment(TASK, seed=0)
    env_spec = make_environment_spec(probe)
    zeros = np.zeros(env_spec.actions.shape, env_spec.actions.dtype)
    episode_steps = 1000  # cheetah-run's fixed episode length
    table = tables.uniform_table(
        REPLAY_TABLE,
        max_size=50_000_000,
        signature=adders.NStepTransitionAdder.signature(env_spec),
        samples_per_insert=None,
        min_replay_size=1,
    )
    bound_table = reverb.Table.queue("bound", max_size=1_000_000)
    server = tables.start_server([table, bound_table])
    client = reverb.Client(f"localhost:{server.port}")
    networks = builder.make_networks(env_spec)
    params, _ = networks.init(jax.random.PRNGKey(0), env_spec)
    source = common.StaticVariableSource(params)
    blocks: dict[str, Any] = {}
    closers = []
    loop_steps = episodes_per_block * episode_steps
    try:
        for e in envs:
            factories = [common_factory(TASK, seed) for seed in range(1, e + 1)]
            if e == 1:
                env = factories[0]()
                actor = builder.make_actor(
                    builder.make_actor_policy(networks, 0, 1),
                    jax.random.PRNGKey(1),
                    source,
                    adder=builder.make_adder(client),
                    evaluation=False,
                )
                loop = EnvironmentLoop(env, actor, logger=NoOpLogger())
                run_block = lambda loop=loop: common.timed(  # noqa: E731
                    lambda: loop.run(num_steps=loop_steps)
                )
            else:
                vector_env = make_vector_environment(factories, backend=backend)
                closers.append(vector_env.close)
                actor = builder.make_vector_actor(
                    builder.make_vector_actor_policy(networks, list(range(e)), e),
                    [jax.random.PRNGKey(s) for s in range(1, e + 1)],
                    source,
                    adders=[builder.make_adder(client) for _ in range(e)],
                    evaluation=False,
                )
                vloop = VectorEnvironmentLoop(vector_env, actor, logger=NoOpLogger())
                run_block = lambda vloop=vloop: common.timed(  # noqa: E731
                    lambda: vloop.run(num_steps=loop_steps * vloop.num_envs)
                )
            bare_env = make_vector_environment(factories, backend=backend if e > 1 else "serial")
            closers.append(bare_env.close)
            blocks[f"actor_E{e}"] = run_block
            blocks[f"bare_E{e}"] = lambda bare_env=bare_env: _bare_block(
                bare_env, loop_steps, zeros
            )
        bound_env = make_environment(TASK, seed=0)
        blocks["bound_E1"] = lambda: _bound_block(bound_env, client, "bound", loop_steps, zeros)
        # Warm-up: JIT for every batch size, Reverb connections, environment workers.
        for name, block in blocks.items():
            if name.startswith("actor"):
                block()
        # Ratios to bare_E1; the per-E efficiency is computed below from same-repeat pairs.
        result = common.interleave_many(blocks, "bare_E1", repeats, budget_seconds)
    finally:
        for close in closers:
            close()
        server.stop()

    rates = result["rates"]
    figures: dict[str, Any] = {
        "task": TASK,
        "backend": backend,
        "envs": envs,
        "episodes_per_block": episodes_per_block,
        "repeats": result["repeats"],
        "order": result["order"],
        "rates": rates,
        "efficiency": {},
        "actor_env_steps_per_s": {},
        "bare_env_steps_per_s": {},
    }
    for e in envs:
        per_repeat = [a / b for a, b in zip(rates[f"actor_E{e}"], rates[f"bare_E{e}"], strict=True)]
        figures["efficiency"][str(e)] = common.spread(per_repeat)
        figures["actor_env_steps_per_s"][str(e)] = common.spread(rates[f"actor_E{e}"])
        figures["bare_env_steps_per_s"][str(e)] = common.spread(rates[f"bare_E{e}"])
    for e in envs:
        if e != 1 and 1 in envs:
            gains = [a / b for a, b in zip(rates[f"actor_E{e}"], rates["actor_E1"], strict=True)]
            figures[f"gain_E{e}"] = common.spread(gains)
    bound = [a / b for a, b in zip(rates["bound_E1"], rates["bare_E1"], strict=True)]
    figures["bound_efficiency"] = common.spread(bound)
    if 1 in envs:
        of_bound = [a / b for a, b in zip(rates["actor_E1"], rates["bound_E1"], strict=True)]
        figures["actor_E1_of_bound"] = common.spread(of_bound)
    return figures


def common_factory(task: str, seed: int):
    import functools

    from antiphon.environments import make_environment

    return functools.partial(make_environment, task, seed=seed)


def rows(figures: dict[str, Any], dispatch: str) -> list[list[str]]:
    from benchmarks import common

    out = []
    for e in figures["envs"]:
        r = figures["efficiency"][str(e)]
        out.append(
            [
                f"actor efficiency, E={e} ({figures['task']}, {figures['backend']}, {dispatch} "
                "dispatch)",
                common.fmt_ratio(r),
                common.fmt_spread(r),
                EFFICIENCY_TARGET if e == 1 else "context",
                common.meets(r["median"], EFFICIENCY_TARGET) if e == 1 else "-",
                f"actor {common.fmt_rate(figures['actor_env_steps_per_s'][str(e)], 'steps/s')}, "
                f"bare {common.fmt_rate(figures['bare_env_steps_per_s'][str(e)], 'steps/s')}",
            ]
        )
    for e in figures["envs"]:
        key = f"gain_E{e}"
        if key in figures:
            r = figures[key]
            out.append(
                [
                    f"vectorised gain, E={e} ÷ E=1 ({dispatch} dispatch)",
                    common.fmt_ratio(r),
                    common.fmt_spread(r),
                    GAIN_TARGET if e == 8 else "context",
                    common.meets(r["median"], GAIN_TARGET) if e == 8 else "-",
                    "env steps/s of one actor",
                ]
            )
    r = figures["bound_efficiency"]
    context = ""
    if "actor_E1_of_bound" in figures:
        context = f"actor E=1 ÷ bound {common.fmt_ratio(figures['actor_E1_of_bound'])}"
    out.append(
        [
            "write bound: bare env + 1 bare writer item per step ÷ bare env",
            common.fmt_ratio(r),
            common.fmt_spread(r),
            "context",
            "-",
            context,
        ]
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default="1,8,32", help="comma-separated E values")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--episodes-per-block", type=int, default=1)
    parser.add_argument("--backend", choices=("serial", "subprocess"), default="serial")
    parser.add_argument("--dispatch", choices=("async", "sync", "both"), default="async")
    parser.add_argument("--budget-seconds", type=float, default=240.0)
    parser.add_argument("--json-out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    envs = [int(e) for e in args.envs.split(",")]

    from benchmarks import common

    if args.dispatch == "both":
        figures_by_dispatch = {}
        for dispatch in ("async", "sync"):
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                command = [
                    sys.executable, "-m", "benchmarks.vector_actor", "--envs", args.envs,
                    "--repeats", str(args.repeats), "--episodes-per-block",
                    str(args.episodes_per_block), "--backend", args.backend, "--dispatch",
                    dispatch, "--budget-seconds", str(args.budget_seconds), "--json-out", out.name,
                ]  # fmt: skip
                subprocess.run(command, check=True)
                figures_by_dispatch[dispatch] = json.loads(open(out.name).read())
    else:
        if args.dispatch == "sync":
            import jax

            jax.config.update("jax_cpu_enable_async_dispatch", False)
        figures = run(
            envs, args.repeats, args.episodes_per_block, args.backend, args.budget_seconds
        )
        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump(figures, f)
            return
        figures_by_dispatch = {args.dispatch: figures}

    recorder = common.Recorder(NAME)
    table_rows = [row for d, f in figures_by_dispatch.items() for row in rows(f, d)]
    result = recorder.finish(figures_by_dispatch, table_rows)
    path = common.write_json(result)
    print(common.markdown_table(common.TABLE_HEADERS, table_rows))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
