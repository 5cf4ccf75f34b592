"""The same arithmetic in two forms, timed on one pinned CPU core: why the offline learners write
some pieces the way they do (an investigation tool; figures and conclusion in
benchmarks/investigations/README.md).

Each case times the old form (what plain autodiff or optax produces) against the form the
learners use, inside a 32-step `lax.scan` whose inputs depend on the carry, so XLA cannot hoist
the work out of the loop. Per-iteration microseconds, best of `--repeats`.

  heads_weight_gradient  d/dw of x @ w, x [256, 256], w [256, 12]: jnp.matmul vs
                         networks.narrow_output_matmul
  one_output_layer       value and weight gradient of a ReLU layer's [256, 256] -> 1 output:
                         hk.Linear(1) vs networks.linear_head
  flat_adam              clip-by-global-norm + Adam on BC's policy parameters:
                         optax.flatten vs optimizers.flatten
  censored_log_prob      gradient of the censored tanh-Gaussian log-likelihood, [256, 6]: both
                         edges evaluated everywhere vs networks.tanh_gaussian_log_prob
  bias_gradient          d/db of sum(c * relu(x + b)), x [256, 256] (a hidden layer's bias):
                         x + b vs networks.add_bias

    python -m benchmarks.investigations.xla_cpu_forms --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from benchmarks.offline_side_by_side import _pinned_cores, _thread_env

ITERATIONS = 32


def _time_per_iteration(body, args, repeats: int) -> float:
    """Best-of-`repeats` microseconds per iteration of `scan(body)`; `body(scale, *args)` returns
    a pytree whose first leaf feeds the carry."""
    import jax
    import jax.numpy as jnp

    def run(*args):
        def step(carry, _):
            out = body(1.0 + 1e-6 * carry, *args)
            return carry + 1e-9 * jnp.sum(jax.tree_util.tree_leaves(out)[0]), None

        return jax.lax.scan(step, jnp.zeros(()), None, length=ITERATIONS)[0]

    run = jax.jit(run)
    jax.block_until_ready(run(*args))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(20):
            out = run(*args)
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - start) / (20 * ITERATIONS))
    return best * 1e6


def cases():
    import haiku as hk
    import jax
    import jax.numpy as jnp
    import optax
    from jax.scipy.stats import norm

    from antiphon.agents import networks as shared
    from antiphon.agents import optimizers

    keys = jax.random.split(jax.random.PRNGKey(0), 8)
    x = jax.random.normal(keys[0], (256, 256))
    w12 = jax.random.normal(keys[1], (256, 12))
    cotangent12 = jax.random.normal(keys[2], (256, 12))

    def heads(matmul):
        def body(scale, x, w):
            return jax.grad(lambda w: jnp.sum(cotangent12 * matmul(scale * x, w)))(w)

        return body, (x, w12)

    def layer(module):
        transformed = hk.without_apply_rng(hk.transform(lambda h: module(jax.nn.relu(h))))
        params = transformed.init(keys[3], x)

        def body(scale, params, h):
            return jax.grad(lambda p: jnp.sum(jnp.sin(transformed.apply(p, scale * h))))(params)

        return body, (params, x)

    def adam(flatten):
        policy = hk.without_apply_rng(
            hk.transform(lambda o: shared.TanhGaussianPolicy((256, 256), 6)(o))
        )
        params = policy.init(keys[4], jnp.zeros((1, 24)))
        grads = jax.tree_util.tree_map(lambda p: 0.01 * jnp.ones_like(p), params)
        optimizer = flatten(optax.chain(optax.clip_by_global_norm(40.0), optax.adam(3e-4)))
        state = optimizer.init(params)

        def body(scale, params, grads, state):
            grads = jax.tree_util.tree_map(lambda g: scale * g, grads)
            updates, _ = optimizer.update(grads, state, params)
            return optax.apply_updates(params, updates)

        return body, (params, grads, state)

    threshold = shared.TANH_EDGE_THRESHOLD
    edge, log_width = jnp.arctanh(threshold), jnp.log1p(-threshold)

    def both_edges(mean, std, action):
        inside = jnp.clip(action, -threshold, threshold)
        density = norm.logpdf(jnp.arctanh(inside), mean, std) - jnp.log1p(-jnp.square(inside))
        lower = norm.logcdf(-edge, mean, std) - log_width
        upper = norm.logsf(edge, mean, std) - log_width
        per_dim = jnp.where(
            action <= -threshold, lower, jnp.where(action >= threshold, upper, density)
        )
        return jnp.sum(per_dim, -1)

    mean = jax.random.normal(keys[5], (256, 6))
    std = jax.nn.softplus(jax.random.normal(keys[6], (256, 6))) + 1e-3
    action = jnp.clip(1.2 * jax.random.uniform(keys[7], (256, 6), minval=-1, maxval=1), -1, 1)

    def log_prob(fn):
        def body(scale, mean, std, action):
            return jax.grad(lambda m, s: jnp.sum(fn(m, s, action)), (0, 1))(scale * mean, std)

        return body, (mean, std, action)

    cotangent256 = jax.random.normal(jax.random.fold_in(keys[2], 1), (256, 256))

    def bias(add):
        def body(scale, x, b):
            return jax.grad(lambda b: jnp.sum(cotangent256 * jax.nn.relu(add(scale * x, b))))(b)

        return body, (x, jnp.zeros((256,)))

    return {
        "heads_weight_gradient": (heads(jnp.matmul), heads(shared.narrow_output_matmul)),
        "one_output_layer": (
            layer(lambda h: hk.Linear(1)(h)),
            layer(lambda h: shared.linear_head(h, 1)),
        ),
        "flat_adam": (adam(optax.flatten), adam(optimizers.flatten)),
        "censored_log_prob": (log_prob(both_edges), log_prob(shared.tanh_gaussian_log_prob)),
        "bias_gradient": (bias(jnp.add), bias(shared.add_bias)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/xla_cpu_forms.json")
    args = parser.parse_args(argv)
    # One core, as `offline_side_by_side speed --threads 1` and `cpu_matmul_peak` run: pinned,
    # with the same thread flags, before jax starts its thread pool.
    (core,) = _pinned_cores(1)
    os.sched_setaffinity(0, {core})
    os.environ.update(_thread_env(1))
    import jax

    rows = {}
    for name, ((old_body, old_args), (new_body, new_args)) in cases().items():
        old = _time_per_iteration(old_body, old_args, args.repeats)
        new = _time_per_iteration(new_body, new_args, args.repeats)
        rows[name] = {"old_us": old, "new_us": new, "speedup": old / new}
        print(f"{name:24s} old {old:7.1f} us   new {new:7.1f} us   x{old / new:.2f}", flush=True)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "pinned_core": core,
        "jax": jax.__version__,
        "iterations_per_call": ITERATIONS,
        "repeats": args.repeats,
        "cases": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print("| case | old form (us) | our form (us) | speed-up |\n|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['old_us']:.1f} | {row['new_us']:.1f} | {row['speedup']:.2f} |")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
