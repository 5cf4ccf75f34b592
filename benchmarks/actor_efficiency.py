"""Actor efficiency: env steps/s of one antiphon actor ÷ env steps/s of the bare environment.

A (actor): `EnvironmentLoop` running the D4PG actor (default policy network, behaviour policy
with exploration noise, jitted on the CPU) whose n-step adder (n=5) writes into a live Reverb
table served from this process, with `should_update=True` so the variable client pulls
parameters every `variable_update_period` steps as it does in training.
B (bare): the same task stepping zero actions (`env.reset()`, then `env.step(zeros)` until the
episode ends) — nothing else.

Blocks are whole episodes (cheetah-run: 1000 steps), `block_steps` env steps per block, all sides
in this process, interleaved (order reversed every repeat), after one warm-up episode each (JIT,
Reverb connection). Context side C: the same actor and loop without an adder (no Reverb writes),
which splits the gap between the policy and the adder.
The replay table has no rate limiter (MinSize(1)) and never evicts during the run, so inserts
never block. A per-step timing breakdown (policy / env / adder / update) follows as context.

    .venv/bin/python -m benchmarks.actor_efficiency
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import jax
import numpy as np
import reverb

from antiphon.agents.d4pg.builder import REPLAY_TABLE, D4PGBuilder
from antiphon.agents.d4pg.config import D4PGConfig
from antiphon.core.logging import NoOpLogger
from antiphon.core.loop import EnvironmentLoop
from antiphon.core.types import make_environment_spec
from antiphon.environments import make_environment
from antiphon.replay import adders, tables
from benchmarks import common

NAME = "actor_efficiency"
TARGET = ">= 0.75"
TASK = "dmc:cheetah-run"


def _bare_block(env, num_steps: int, action_fn) -> tuple[float, float]:
    start = time.perf_counter()
    steps = 0
    while steps < num_steps:
        timestep = env.reset()
        while not timestep.last():
            timestep = env.step(action_fn())
            steps += 1
    return steps, time.perf_counter() - start


def _breakdown(env, actor, bare_env, zeros, num_episodes: int) -> dict[str, Any]:
    """µs per env step spent in each part of the actor loop (one instrumented pass)."""
    t = {"select_action": 0.0, "env_step": 0.0, "observe (adder)": 0.0, "update": 0.0}
    steps = 0
    start = time.perf_counter()
    for _ in range(num_episodes):
        timestep = env.reset()
        actor.observe_first(timestep)
        while not timestep.last():
            t0 = time.perf_counter()
            action = actor.select_action(timestep.observation)
            t1 = time.perf_counter()
            timestep = env.step(action)
            t2 = time.perf_counter()
            actor.observe(action, next_timestep=timestep)
            t3 = time.perf_counter()
            actor.update(wait=False)
            t4 = time.perf_counter()
            t["select_action"] += t1 - t0
            t["env_step"] += t2 - t1
            t["observe (adder)"] += t3 - t2
            t["update"] += t4 - t3
            steps += 1
    total = time.perf_counter() - start
    out = {k: 1e6 * v / steps for k, v in t.items()}
    out["loop total"] = 1e6 * total / steps
    out["other (loop, reset, counting)"] = out["loop total"] - sum(
        1e6 * v / steps for v in t.values()
    )
    # The bare env's cost per step, with zero actions (the reference) and random actions (what
    # the physics costs when the cheetah moves, as it does under the actor's noisy policy).
    rng = np.random.default_rng(0)
    shape = zeros.shape
    n, s = _bare_block(bare_env, num_episodes * 1000, lambda: zeros)
    out["bare env_step, zero actions"] = 1e6 * s / n
    n, s = _bare_block(
        bare_env, num_episodes * 1000, lambda: rng.uniform(-1, 1, shape).astype(np.float32)
    )
    out["bare env_step, random actions (incl. rng)"] = 1e6 * s / n
    return {k: round(v, 1) for k, v in out.items()}


def run(repeats: int = 9, block_steps: int = 2000, budget_seconds: float = 45.0) -> dict[str, Any]:
    config = D4PGConfig()
    builder = D4PGBuilder(config)
    env = make_environment(TASK, seed=0)
    bare_env = make_environment(TASK, seed=0)
    env_spec = make_environment_spec(env)
    zeros = np.zeros(env_spec.actions.shape, env_spec.actions.dtype)

    table = tables.uniform_table(
        REPLAY_TABLE,
        max_size=10_000_000,  # never evicts during the run
        signature=adders.NStepTransitionAdder.signature(env_spec),
        samples_per_insert=None,  # no rate limiter: inserts never block
        min_replay_size=1,
    )
    server = tables.start_server([table])
    client = reverb.Client(f"localhost:{server.port}")
    try:
        networks = builder.make_networks(env_spec)
        policy_params, _ = networks.init(jax.random.PRNGKey(0), env_spec)
        policy = builder.make_policy(networks, evaluation=False)
        source = common.StaticVariableSource(policy_params)
        actor = builder.make_actor(
            policy, jax.random.PRNGKey(1), source, builder.make_adder(client)
        )
        loop = EnvironmentLoop(env, actor, counter=None, logger=NoOpLogger(), should_update=True)
        # Context side: the same actor without an adder (policy + loop only).
        no_adder_env = make_environment(TASK, seed=0)
        no_adder = builder.make_actor(policy, jax.random.PRNGKey(1), source, adder=None)
        no_adder_loop = EnvironmentLoop(no_adder_env, no_adder, logger=NoOpLogger())

        def actor_block():
            return common.timed(lambda: loop.run(num_steps=block_steps))

        def no_adder_block():
            return common.timed(lambda: no_adder_loop.run(num_steps=block_steps))

        def bare_block():
            return _bare_block(bare_env, block_steps, lambda: zeros)

        loop.run(num_episodes=1)  # warm-up: JIT, Reverb connection
        no_adder_loop.run(num_episodes=1)
        bare_block()
        result = common.interleave_many(
            {"actor": actor_block, "actor_without_adder": no_adder_block, "bare_env": bare_block},
            "bare_env",
            repeats,
            budget_seconds,
        )
        breakdown = _breakdown(env, actor, bare_env, zeros, num_episodes=2)
        items = client.server_info()[REPLAY_TABLE].current_size
    finally:
        server.stop()

    return {
        "task": TASK,
        "what": "env steps/s: D4PG actor (policy jitted on CPU + n-step adder into a live Reverb "
        "table, EnvironmentLoop) ÷ bare env stepping zero actions; same process",
        "target": TARGET,
        "actor_efficiency": result["ratios_to_reference"]["actor"],
        "ratios": result["per_repeat_ratios"]["actor"],
        "actor_env_steps_per_s": result["actor_per_s"],
        "bare_env_steps_per_s": result["bare_env_per_s"],
        # Context: the same actor and loop without an adder (no Reverb writes).
        "actor_without_adder_efficiency": result["ratios_to_reference"]["actor_without_adder"],
        "actor_without_adder_env_steps_per_s": result["actor_without_adder_per_s"],
        "rates": result["rates"],
        "repeats": result["repeats"],
        "block_env_steps": block_steps,
        "order": result["order"],
        "policy": "D4PG behaviour policy (sigma 0.3), layers "
        f"{config.policy_layer_sizes}, GenericActor jit on CPU",
        "adder": f"NStepTransitionAdder n={config.n_step}, max_in_flight_items=4",
        "items_in_table_at_end": int(items),
        "breakdown_us_per_step": breakdown,
    }


def rows(figures: dict[str, Any]) -> list[list[str]]:
    r = figures["actor_efficiency"]
    return [
        [
            f"actor efficiency ({figures['task']})",
            common.fmt_ratio(r),
            common.fmt_spread(r),
            TARGET,
            common.meets(r["median"], TARGET),
            f"actor {common.fmt_rate(figures['actor_env_steps_per_s'], 'steps/s')}, "
            f"bare env {common.fmt_rate(figures['bare_env_steps_per_s'], 'steps/s')}; "
            "actor without adder ÷ bare env "
            f"{common.fmt_ratio(figures['actor_without_adder_efficiency'])}",
        ]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--block-steps", type=int, default=2000)
    args = parser.parse_args()
    recorder = common.Recorder(NAME)
    figures = run(args.repeats, args.block_steps)
    result = recorder.finish(figures, rows(figures))
    path = common.write_json(result)
    print(common.markdown_table(common.TABLE_HEADERS, rows(figures)))
    print("\nbreakdown (µs per env step):", figures["breakdown_us_per_step"])
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
