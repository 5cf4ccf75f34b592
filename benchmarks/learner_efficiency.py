"""Learner efficiency: SGD steps/s of an agent's `learner.step()` ÷ a bare jitted SGD step (the
floor). `--agent d4pg` (default) or `--agent mpo`.

A (learner): `D4PGLearner.step()` / `MPOLearner.step()` called in a loop as training does (each
call runs `sgd_steps_per_call` = K SGD steps in one jitted lax.scan), fed by the real replay data
path: a pre-filled Reverb table with no rate limiter -> `make_dataset_iterator` (TrajectoryDataset,
tf.data batching to [K, B], DevicePrefetcher) -> `make_learner`. See `learner_common`.
B (floor), on a fixed [K, B] batch already on the device (no data movement, no metrics beyond
what the step itself returns, no counters, no locks, no divergence guard):
  D4PG: one jitted function doing K SGD steps (lax.scan) of the same algorithm on the same
  networks and batch shape — critic loss (target policy and critic forward, online critic,
  C51 cross-entropy or MoG sample loss) and DPG policy loss (dQ/da clipped to L2 norm 1 per
  example, as `rlax.dpg_loss` does; written batched), their gradients and optax.adam updates —
  and no target-network copies.
  MPO: the MPO learner's own pure `sgd_step` (`learner.sgd_step`, from
  `MPOLearner.make_update`: critic and MPO policy losses, their gradients, clipped Adam on
  policy, critic and duals, dual clipping, the periodic target copy inside it) run K times in
  one jitted lax.scan from the learner's initial state; the scan's output is the state and the
  stacked per-step metrics `sgd_step` returns (no averaging, no finiteness check).
C (context, learner_fixed_batch): the same learner class fed one fixed device batch forever
(itertools.repeat), which splits the gap into the learner's own extras (C ÷ B) and the data path
(A ÷ C).

JAX dispatches asynchronously, so every timed block ends with `block_until_ready` on the
resulting state. The learner's input pipeline keeps buffering while the floor runs (up to
~prefetch_size + tf.data prefetch batches), so each block starts with untimed lead-in calls
(A: enough to drain those buffers, so its timed part is in steady state; B: a few, which also
absorb the A pipeline refilling in the background), then the timed calls. Interleaved (order
reversed every repeat), each critic type of `--critic-types` (D4PG: MoG and C51; MPO: scalar,
C51, MoG), default config otherwise (batch 256, K = 4). Writes learner_efficiency.json (D4PG)
or learner_efficiency_<agent>.json.

    .venv/bin/python -m benchmarks.learner_efficiency
    .venv/bin/python -m benchmarks.learner_efficiency --agent mpo
"""

from __future__ import annotations

import argparse
import itertools
import time
from typing import Any

import jax
import optax

from antiphon.agents.d4pg import learning
from antiphon.core.types import Transition
from benchmarks import common, learner_common

NAME = "learner_efficiency"
TARGET = ">= 0.6"
CRITICS = learner_common.CRITIC_TYPES["d4pg"]
# Config fields recorded with each critic's figures (those the agent's config has).
CONFIG_FIELDS = (
    "critic_type",
    "batch_size",
    "sgd_steps_per_call",
    "policy_layer_sizes",
    "critic_layer_sizes",
    "num_atoms",
    "num_components",
    "num_target_samples",
    "num_samples",
    "prefetch_size",
)
WHAT = {
    "d4pg": "SGD steps/s: D4PGLearner.step() on the Reverb -> tf.data -> DevicePrefetcher "
    "path ÷ a bare jitted K-step forward+backward+Adam of the same networks on a fixed "
    "device batch",
    "mpo": "SGD steps/s: MPOLearner.step() on the Reverb -> tf.data -> DevicePrefetcher path "
    "÷ the MPO learner's own pure sgd_step run K times in one jitted lax.scan on a fixed "
    "device batch",
}


def make_floor(networks, config, env_spec, batch: Transition, key: jax.Array):
    """D4PG's floor. (run, state): `run(state) -> state` does K bare SGD steps on the fixed
    device `batch`."""
    policy_opt = optax.adam(config.policy_learning_rate)
    critic_opt = optax.adam(config.critic_learning_rate)
    init_key, key = jax.random.split(key)
    policy_params, critic_params = networks.init(init_key, env_spec)

    # The learner's own losses: the floor differs only in what surrounds them (no target copies,
    # no metrics, no data stream).
    critic_loss, policy_loss = learning.make_losses(networks, config)

    def sgd_step(carry, b):
        pp, cp, tpp, tcp, p_opt, c_opt, key = carry
        key, loss_key = jax.random.split(key)
        c_grads, _ = jax.grad(critic_loss, has_aux=True)(cp, tpp, tcp, b, loss_key)
        p_grads, _ = jax.grad(policy_loss, has_aux=True)(pp, cp, b, None)  # deterministic
        c_updates, c_opt = critic_opt.update(c_grads, c_opt)
        p_updates, p_opt = policy_opt.update(p_grads, p_opt)
        cp = optax.apply_updates(cp, c_updates)
        pp = optax.apply_updates(pp, p_updates)
        return (pp, cp, tpp, tcp, p_opt, c_opt, key), None

    # The batch is an argument, not a closure constant XLA could fold into the executable.
    scan = jax.jit(lambda carry, b: jax.lax.scan(sgd_step, carry, b)[0])

    def run(carry):
        return scan(carry, batch)

    state = (
        policy_params,
        critic_params,
        policy_params,
        critic_params,
        policy_opt.init(policy_params),
        critic_opt.init(critic_params),
        key,
    )
    return run, jax.device_put(state)


def make_sgd_step_floor(sgd_step, initial_state, batch: Transition):
    """The floor of a learner that exposes its pure `sgd_step(state, batch) -> (state, metrics)`
    (MPO): (run, carry) with carry = (state, metrics); `run(carry)` does K = batch's leading
    size steps of exactly that function in one jitted lax.scan on the fixed device `batch`, and
    returns the new state with the stacked [K] metrics the steps returned."""
    # The batch is an argument, not a closure constant XLA could fold into the executable.
    scan = jax.jit(lambda state, b: jax.lax.scan(sgd_step, state, b))

    def run(carry):
        return scan(carry[0], batch)

    return run, (jax.device_put(initial_state), None)


def _floor(setup: learner_common.Learner, batch: Transition):
    if setup.agent == "d4pg":
        return make_floor(
            setup.networks, setup.config, learner_common.ENV_SPEC, batch, jax.random.PRNGKey(1)
        )
    # The learner's own sgd_step and its state before any update (the learner has not stepped).
    return make_sgd_step_floor(setup.learner.sgd_step, setup.learner.state, batch)


def _timed_block(step, wait, lead_in: int, calls: int, sgd_steps_per_call: int):
    """One side of the interleaved comparison: `lead_in` untimed calls, then `calls` timed ones.

    `wait()` blocks until dispatched work has finished (JAX on CPU returns before an update has
    run), before the clock starts and before it stops. The block returns (SGD steps, seconds).
    """

    def block() -> tuple[int, float]:
        for _ in range(lead_in):
            step()
        wait()
        start = time.perf_counter()
        for _ in range(calls):
            step()
        wait()
        return calls * sgd_steps_per_call, time.perf_counter() - start

    return block


def _one_critic(
    replay,
    agent: str,
    critic_type: str,
    repeats: int,
    timed_calls: int,
    learner_lead_in: int,
    budget_seconds: float,
    overrides: dict[str, Any],
) -> dict[str, Any]:
    setup = learner_common.make_agent_learner(replay, agent, critic_type, **overrides)
    config, learner = setup.config, setup.learner
    k = config.sgd_steps_per_call
    try:
        # A fixed batch for the floor: one real [K, B] batch from the same pipeline, on device.
        batch = jax.device_put(Transition(*next(setup.prefetcher)))
        floor_run, floor_state = _floor(setup, batch)  # before the learner's first step
        start = time.perf_counter()
        learner.step()
        learner_common.block_until_ready(learner)
        compile_learner = time.perf_counter() - start
        start = time.perf_counter()
        floor_state = jax.block_until_ready(floor_run(floor_state))
        compile_floor = time.perf_counter() - start
        fixed = setup.builder.learner_class(
            setup.networks,
            config,
            learner_common.ENV_SPEC,
            itertools.repeat(batch),
            jax.random.PRNGKey(0),
        )
        start = time.perf_counter()
        fixed.step()
        learner_common.block_until_ready(fixed)
        compile_fixed = time.perf_counter() - start

        def floor_step() -> None:
            nonlocal floor_state
            floor_state = floor_run(floor_state)

        def floor_wait() -> None:
            jax.block_until_ready(floor_state)

        def learner_wait() -> None:
            learner_common.block_until_ready(learner)

        def fixed_wait() -> None:
            learner_common.block_until_ready(fixed)

        for _ in range(3):  # warm-up past compilation
            learner.step()
            fixed.step()
            floor_step()
        learner_wait()
        fixed_wait()
        floor_wait()

        learner_block = _timed_block(learner.step, learner_wait, learner_lead_in, timed_calls, k)
        fixed_block = _timed_block(fixed.step, fixed_wait, 2, timed_calls, k)
        floor_block = _timed_block(floor_step, floor_wait, 2, timed_calls, k)

        result = common.interleave_many(
            {"learner": learner_block, "learner_fixed_batch": fixed_block, "floor": floor_block},
            "floor",
            repeats,
            budget_seconds,
        )
    finally:
        setup.close()
    ratios = result["per_repeat_ratios"]
    data_path = [
        a / b for a, b in zip(ratios["learner"], ratios["learner_fixed_batch"], strict=True)
    ]
    return {
        "learner_efficiency": result["ratios_to_reference"]["learner"],
        "ratios": ratios["learner"],
        "learner_sgd_steps_per_s": result["learner_per_s"],
        "floor_sgd_steps_per_s": result["floor_per_s"],
        # Decomposition (context): the same learner class fed a fixed device batch forever
        # (itertools.repeat) isolates the learner's own extras from the data path.
        "learner_fixed_batch_sgd_steps_per_s": result["learner_fixed_batch_per_s"],
        "learner_fixed_batch_over_floor": result["ratios_to_reference"]["learner_fixed_batch"],
        "learner_over_learner_fixed_batch (data path cost)": common.spread(data_path),
        "rates": result["rates"],
        "compile_seconds": {
            "learner": round(compile_learner, 2),
            "learner_fixed_batch": round(compile_fixed, 2),
            "floor": round(compile_floor, 2),
        },
        "config": {
            name: list(v) if isinstance(v, tuple) else v
            for name in CONFIG_FIELDS
            if (v := getattr(config, name, None)) is not None
        },
        "repeats": result["repeats"],
        "timed_sgd_steps_per_block": timed_calls * k,
        "learner_lead_in_calls": learner_lead_in,
        "order": result["order"],
    }


def run(
    repeats: int = 7,
    timed_calls: int = 10,
    learner_lead_in: int = 8,
    num_items: int = 20_000,
    budget_seconds: float = 60.0,
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
            c: _one_critic(
                replay, agent, c, repeats, timed_calls, learner_lead_in, budget_seconds, overrides
            )
            for c in critic_types
        }
    finally:
        replay.stop()
    return {
        "what": WHAT[agent],
        "agent": agent,
        "target": TARGET,
        "device": jax.devices()[0].device_kind,
        "replay_items": replay.num_items,
        "repeats_requested": repeats,
        "critics": per_critic,
    }


def rows(figures: dict[str, Any]) -> list[list[str]]:
    agent = figures.get("agent", "d4pg").upper()
    out = []
    for critic, f in figures["critics"].items():
        r = f["learner_efficiency"]
        b, k = f["config"]["batch_size"], f["config"]["sgd_steps_per_call"]
        out.append(
            [
                f"learner efficiency ({agent} {critic.upper()}, B={b}, K={k}, {figures['device']})",
                common.fmt_ratio(r),
                common.fmt_spread(r),
                TARGET,
                common.meets(r["median"], TARGET),
                f"learner {common.fmt_rate(f['learner_sgd_steps_per_s'], 'SGD steps/s')}, "
                f"floor {common.fmt_rate(f['floor_sgd_steps_per_s'], 'SGD steps/s')}; "
                "learner on a fixed batch ÷ floor "
                f"{common.fmt_ratio(f['learner_fixed_batch_over_floor'])}",
            ]
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--timed-calls", type=int, default=10, help="learner calls per block")
    parser.add_argument("--lead-in", type=int, default=8, help="untimed learner calls per block")
    learner_common.add_agent_arguments(parser)
    args = parser.parse_args()
    critic_types, overrides = learner_common.agent_options(parser, args)
    name = args.json_name or learner_common.result_name(NAME, args.agent)
    recorder = common.Recorder(name)
    figures = run(
        args.repeats,
        args.timed_calls,
        args.lead_in,
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
