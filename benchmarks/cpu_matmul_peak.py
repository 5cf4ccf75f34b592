"""What one CPU core does for XLA's float32 matmuls, the ceiling under the offline learners' steps.

Times `[m, k] @ [k, n]` on one core (pinned, with the `speed` benchmark's XLA flags), 200
matmuls per jitted call in a `lax.scan`, best of `--repeats` calls, for a large square shape and
for the shapes of one forward pass of the (256, 256) policy MLP at batch 256 on walker-walk
(24 observation dimensions, 2 x 6 head outputs). Then gives the BC step's floating-point work
(XLA's own cost analysis) and the rate it implies at the best matmul rate, so a BC speed figure
can be read against the core.

    python -m benchmarks.cpu_matmul_peak --dataset datasets/walker-walk/medium.hdf5
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from benchmarks.offline_side_by_side import _pinned_cores, _thread_env, make_learner

if __name__ == "__main__":
    # One core, as `offline_side_by_side speed --threads 1` runs each side: pinned (the XLA flag
    # alone still let jax 0.4.34 use both cores) and with its thread flags, before jax starts.
    os.sched_setaffinity(0, _pinned_cores(1))
    os.environ.update(_thread_env(1))

MATMULS_PER_CALL = 200
SHAPES = {
    "square 1024": (1024, 1024, 1024),
    "square 256": (256, 256, 256),
    "policy layer 1 (24 -> 256)": (256, 24, 256),
    "policy layer 2 (256 -> 256)": (256, 256, 256),
    "policy heads (256 -> 12)": (256, 256, 12),
}


def matmul_rate(m: int, k: int, n: int, repeats: int) -> float:
    """Best GFLOP/s over `repeats` calls of MATMULS_PER_CALL dependent [m, k] @ [k, n] matmuls.

    Each matmul's left operand is scaled by a carry that depends on the previous product, so XLA
    can neither hoist nor drop any of them; the scaling costs m * k multiplies, under 1/n of the
    matmul's work."""
    import jax
    import jax.numpy as jnp

    def chain(a, b):
        def body(scale, _):
            product = (a * scale) @ b
            return scale + 1e-12 * product[0, 0], None

        scale, _ = jax.lax.scan(body, jnp.float32(1.0), None, length=MATMULS_PER_CALL)
        return scale

    a = jnp.full((m, k), 0.01, jnp.float32)
    b = jnp.full((k, n), 0.01, jnp.float32)
    run = jax.jit(chain)
    run(a, b).block_until_ready()
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        run(a, b).block_until_ready()
        seconds = time.perf_counter() - start
        best = max(best, MATMULS_PER_CALL * 2 * m * k * n / seconds / 1e9)
    return best


def step_flops(learner, batch) -> float:
    """XLA's cost analysis of one `learner.sgd_step` on `batch`, in FLOP.

    XLA counts a `lax.cond` as its costlier branch, so for a step with one whose branches differ
    (TD3+BC's delayed actor update) this is more than the mean over steps; `has_uneven_cond`
    tells."""
    import jax

    analysis = jax.jit(learner.sgd_step).lower(learner.state, batch).compile().cost_analysis()
    if isinstance(analysis, list):  # jax 0.4.34 returns one dict per computation
        analysis = analysis[0]
    return float(analysis["flops"])


def has_uneven_cond(function, *args) -> bool:
    """Whether `function(*args)` holds a `lax.cond` whose branches differ in FLOPs (XLA's cost
    analysis of each branch alone), anywhere in its jaxpr."""
    import jax

    def flops(closed) -> float:
        shapes = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in closed.jaxpr.invars]
        analysis = jax.jit(jax.core.jaxpr_as_fun(closed)).lower(*shapes).compile().cost_analysis()
        return float((analysis[0] if isinstance(analysis, list) else analysis).get("flops", 0.0))

    def walk(jaxpr) -> bool:
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "cond" and len({flops(b) for b in eqn.params["branches"]}) > 1:
                return True
            for value in eqn.params.values():
                for sub in value if isinstance(value, tuple | list) else (value,):
                    inner = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr holds its Jaxpr
                    if isinstance(inner, jax.core.Jaxpr) and walk(inner):
                        return True
        return False

    return walk(jax.make_jaxpr(function)(*args).jaxpr)


def bc_step_flops(dataset_path: str) -> float:
    """One BC SGD step (the `speed` benchmark's settings), in FLOP."""
    import jax

    from antiphon.agents.offline import sample_batch

    builder, data, learner = make_learner("bc", dataset_path)
    return step_flops(learner, sample_batch(data, jax.random.PRNGKey(1), builder.config.batch_size))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="datasets/walker-walk/medium.hdf5")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    from benchmarks.common import Recorder, write_json

    recorder = Recorder("cpu_matmul_peak")
    rates = {}
    for name, (m, k, n) in SHAPES.items():
        rates[name] = matmul_rate(m, k, n, args.repeats)
        print(f"{name:28s} [{m}, {k}] @ [{k}, {n}]: {rates[name]:6.1f} GFLOP/s", flush=True)
    flops = bc_step_flops(args.dataset)
    peak = max(rates.values())
    figures: dict[str, Any] = {
        "matmul_gflops": rates,
        "bc_step_gflop": flops / 1e9,
        "bc_steps_per_second_at_peak": peak * 1e9 / flops,
    }
    print(
        f"BC step: {flops / 1e9:.3f} GFLOP; at the best matmul rate ({peak:.1f} GFLOP/s) that is "
        f"{figures['bc_steps_per_second_at_peak']:.0f} steps/s if every FLOP ran at it",
        flush=True,
    )
    print(f"-> {write_json(recorder.finish(figures))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
