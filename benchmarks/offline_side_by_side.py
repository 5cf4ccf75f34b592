"""Offline learners side by side with d3rlpy: gradient steps/s and final returns.

  speed  interleaved A/B timing (ours, d3rlpy) of CRR, TD3+BC and BC on one dataset, each run a
         fresh subprocess with the same thread count, pinned to as many cores; plus our
         learner's floor (the same jitted SGD step on a fixed device batch, one step per call)
         and its ceiling (the step's FLOPs, XLA's cost analysis, at the best [256, 256] matmul
         rate measured in the same process: what the ratio could be if every FLOP ran at it).
         Writes JSON + markdown.
  learn  trains ours (`antiphon train --agent M --dataset F`) and d3rlpy's methods on the same
         files, same networks (256, 256), batch 256, same gradient steps; one process per run.
  evaluate re-evaluates each of our runs' final policy snapshot on N fresh episodes (greedy, the
         same environment seeds for every run), so the final return has a smaller error than the
         training run's own evaluation; `report` shows it as a column. With --behaviour-policy
         the snapshot acts with a sample of pi instead (`antiphon collect --behaviour-policy`).
  report the learning table: final evaluation return per method and dataset (mean, 95 %
         bootstrap interval over seeds) next to the behaviour data's mean return.

  python -m benchmarks.offline_side_by_side speed --dataset datasets/walker-walk/medium.hdf5
  python -m benchmarks.offline_side_by_side learn --datasets F1 F2 --methods crr bc \
      --seeds 0 1 2 --steps 20000 --side ours
  python -m benchmarks.offline_side_by_side evaluate --root runs/offline --episodes 100
  python -m benchmarks.offline_side_by_side report --root runs/offline
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import glob
import json
import os
import shlex
import subprocess
import sys
import time
from typing import Any

import numpy as np

from benchmarks import common
from benchmarks.d3rlpy_side import METHODS as D3RLPY_METHODS  # imports d3rlpy only when run

OURS_OPTIONS = {
    # Equal settings to d3rlpy's side where the method has them (d3rlpy_side.algo_settings):
    # (256, 256) MLPs, batch 256, Adam 3e-4 (d3rlpy's CRR and TD3+BC rate).
    "crr": ["--policy-learning-rate", "3e-4", "--critic-learning-rate", "3e-4"],
    "td3_bc": [],
    # Q_sarsa pre-training is added to --steps; the default 100k is D4RL-sized (ALGORITHMS.md §5)
    "qreg": [],
    "bc": ["--learning-rate", "3e-4"],
    "dime": ["--policy-learning-rate", "3e-4", "--critic-learning-rate", "3e-4"],  # no d3rlpy side
}


def _thread_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    if threads == 1:
        env["XLA_FLAGS"] = (
            env.get("XLA_FLAGS", "")
            + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        ).strip()
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


# ------------------------------------------------------------------------------------------------
# Our learner's speed (run in a subprocess by `speed`)


def _builder(method: str):
    from antiphon.agents.registry import get_builder_class
    from antiphon.launch.cli import UsageError, _train_parser, config_from_args

    builder_class = get_builder_class(method)
    parser = _train_parser(builder_class.config_class)
    args = parser.parse_args(["--agent", method, "--env", "x", *OURS_OPTIONS[method]])
    try:
        config = config_from_args(args, builder_class.config_class)
    except UsageError as e:
        raise SystemExit(str(e)) from None
    return builder_class(config)


def make_learner(method: str, dataset_path: str):
    """(builder, device data, learner): our `method` with the benchmark's settings on the dataset
    at `dataset_path`, the dataset already in device memory."""
    import jax

    from antiphon.agents.offline import device_transitions
    from antiphon.core.types import make_environment_spec
    from antiphon.environments import make_environment
    from antiphon.environments.datasets import load_dataset

    dataset = load_dataset(dataset_path)
    environment = make_environment(
        dataset.metadata["environment"], action_repeat=dataset.metadata.get("action_repeat", 1)
    )
    env_spec = make_environment_spec(environment)
    builder = _builder(method)
    networks = builder.make_networks(env_spec)
    data = device_transitions(dataset, builder.config.discount)
    return builder, data, builder.make_learner(networks, data, env_spec, jax.random.PRNGKey(0))


def ours_speed(method: str, dataset_path: str, steps: int) -> dict[str, Any]:
    import jax

    from antiphon.agents.offline import sample_batch

    builder, data, learner = make_learner(method, dataset_path)
    learner.step()
    learner.block_until_ready()
    start = time.perf_counter()
    learner.run(steps)
    learner.block_until_ready()
    ours = learner.sgd_steps - learner.steps_per_call
    ours_rate = ours / (time.perf_counter() - start)

    # The floor: the same pure SGD step, one per jitted call, on a batch already on the device.
    sgd_step = jax.jit(learner.sgd_step)
    batch = sample_batch(data, jax.random.PRNGKey(1), builder.config.batch_size)
    state = learner.state
    state, _ = sgd_step(state, batch)
    jax.block_until_ready(state)
    floor_steps = max(steps // 2, 50)
    start = time.perf_counter()
    for _ in range(floor_steps):
        state, _ = sgd_step(state, batch)
    jax.block_until_ready(state)
    floor_rate = floor_steps / (time.perf_counter() - start)

    # The ceiling: the rate if every FLOP of the step ran at the best [256, 256] @ [256, 256]
    # matmul rate of this process's cores (same threads and pinning). Matmuls are most of the
    # step's FLOPs (97 % of BC's) and that rate is no lower than MKL's through PyTorch on one
    # core here (benchmarks/RESULTS.md, session 18), so ceiling / d3rlpy is about the most that
    # the same arithmetic can show against that d3rlpy run on these cores.
    # With a lax.cond whose branches differ the FLOPs count the costlier one on every step
    # (TD3+BC: an actor update on every step, not every second one): the ceiling is then a
    # lower bound.
    from benchmarks.cpu_matmul_peak import has_uneven_cond, matmul_rate, step_flops

    flops = step_flops(learner, batch)
    matmul_gflops = matmul_rate(256, 256, 256, repeats=5)
    return {
        "method": method,
        "steps_per_second": ours_rate,
        "floor_steps_per_second": floor_rate,
        "efficiency": ours_rate / floor_rate,
        "step_gflop": flops / 1e9,
        "matmul_gflops": matmul_gflops,
        "ceiling_steps_per_second": matmul_gflops * 1e9 / flops,
        "ceiling_is_lower_bound": has_uneven_cond(learner.sgd_step, learner.state, batch),
        "steps_per_call": learner.steps_per_call,
        "measured_steps": ours,
    }


def _pinned_cores(threads: int) -> set[int]:
    """The first `threads` of the cores this process may use."""
    return set(sorted(os.sched_getaffinity(0))[:threads])


def _run(command: list[str], threads: int, pin: bool = False) -> float:
    """Runs `command` in a subprocess with `threads` threads; raises with the tail of its stderr
    if it fails. Returns the cores it kept busy on average (its CPU time / wall time).

    With `pin` the subprocess may run only on `_pinned_cores(threads)`. The thread flags alone do
    not hold XLA to one core: with `--xla_cpu_multi_thread_eigen=false` jax 0.4.34's CPU client
    still ran our BC learner on both cores of this machine (20 s of CPU in 15 s; 634-715 steps/s
    against 462-478 pinned to one core), so speed figures pin both sides."""
    children_before = os.times()
    start = time.perf_counter()
    out = subprocess.run(
        command,
        env=_thread_env(threads),
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=(lambda: os.sched_setaffinity(0, _pinned_cores(threads))) if pin else None,
    )
    wall = time.perf_counter() - start
    children_after = os.times()
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{out.stderr[-3000:]}")
    cpu = (children_after.children_user - children_before.children_user) + (
        children_after.children_system - children_before.children_system
    )
    return cpu / wall


def _antiphon_command(*arguments: str) -> list[str]:
    """This environment's `antiphon` CLI with `arguments`."""
    return [os.path.join(os.path.dirname(sys.executable), "antiphon"), *arguments]


def _run_json(command: list[str], threads: int, pin: bool = False) -> dict[str, Any]:
    """Runs a benchmark subprocess; its result is the JSON it writes to `--out`, plus
    `cores_busy`, the cores the whole subprocess kept busy on average (start-up included)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out_path = os.path.join(tmp, "result.json")
        cores_busy = _run([*command, "--out", out_path], threads, pin=pin)
        with open(out_path) as f:
            return {**json.load(f), "cores_busy": cores_busy}


def speed(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "dataset": args.dataset,
        "threads": args.threads,
        "pinned_cores": sorted(_pinned_cores(args.threads)),
        "methods": {},
    }
    for method in args.methods:
        # IQL and CQL have no antiphon learner: their rows give d3rlpy's rate alone.
        has_ours = method in OURS_OPTIONS
        ours_runs, theirs_runs = [], []
        for repeat in range(args.repeats):
            if has_ours:
                ours_runs.append(
                    _run_json(
                        [
                            sys.executable,
                            "-m",
                            "benchmarks.offline_side_by_side",
                            "ours-speed",
                            "--method",
                            method,
                            "--dataset",
                            args.dataset,
                            "--steps",
                            str(args.steps),
                        ],
                        args.threads,
                        pin=True,
                    )
                )
            theirs_runs.append(
                _run_json(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.d3rlpy_side",
                        "--method",
                        method,
                        "--dataset",
                        args.dataset,
                        "--steps",
                        str(args.d3rlpy_steps),
                        "--seed",
                        str(repeat),
                        "--eval-episodes",
                        "0",
                        "--threads",
                        str(args.threads),
                    ],
                    args.threads,
                    pin=True,
                )
            )
            ours_text = (
                f"ours {ours_runs[-1]['steps_per_second']:.0f} steps/s "
                f"(floor {ours_runs[-1]['floor_steps_per_second']:.0f}, "
                f"ceiling {ours_runs[-1]['ceiling_steps_per_second']:.0f}), "
                if has_ours
                else ""
            )
            ours_cores = f"{ours_runs[-1]['cores_busy']:.2f} / " if has_ours else ""
            print(
                f"{method} repeat {repeat}: {ours_text}d3rlpy "
                f"{theirs_runs[-1]['steps_per_second']:.0f} steps/s "
                f"(cores busy {ours_cores}{theirs_runs[-1]['cores_busy']:.2f})",
                file=sys.stderr,
            )
        entry: dict[str, Any] = {}
        if has_ours:
            ratios = [
                o["steps_per_second"] / t["steps_per_second"]
                for o, t in zip(ours_runs, theirs_runs, strict=True)
            ]
            ceiling_ratios = [
                o["ceiling_steps_per_second"] / t["steps_per_second"]
                for o, t in zip(ours_runs, theirs_runs, strict=True)
            ]
            entry = {
                "ours_steps_per_second": common.spread([o["steps_per_second"] for o in ours_runs]),
                "floor_steps_per_second": common.spread(
                    [o["floor_steps_per_second"] for o in ours_runs]
                ),
                "efficiency": common.spread([o["efficiency"] for o in ours_runs]),
                "ratio": common.spread(ratios),
                "ceiling_steps_per_second": common.spread(
                    [o["ceiling_steps_per_second"] for o in ours_runs]
                ),
                "ceiling_ratio": common.spread(ceiling_ratios),
                "ceiling_is_lower_bound": any(o["ceiling_is_lower_bound"] for o in ours_runs),
            }
        results["methods"][method] = {
            **entry,
            "d3rlpy_steps_per_second": common.spread([t["steps_per_second"] for t in theirs_runs]),
            "d3rlpy_sample_fraction": common.spread(
                [t.get("sample_fraction") or 0.0 for t in theirs_runs]
            ),
            "ours_runs": ours_runs,
            "d3rlpy_runs": [
                {k: v for k, v in t.items() if k not in ("config",)} for t in theirs_runs
            ],
        }
    return results


def speed_table(results: dict[str, Any]) -> str:
    targets = {"crr": ">= 2", "td3_bc": ">= 2", "bc": ">= 4"}
    rows = []
    for method, r in results["methods"].items():
        if "ratio" not in r:
            d3rlpy_rate = f"{r['d3rlpy_steps_per_second']['median']:.0f}"
            rows.append([method, "-", d3rlpy_rate, "-", "-", "-", "-", "-", "-"])
            continue
        rows.append(
            [
                method,
                f"{r['ours_steps_per_second']['median']:.0f}",
                f"{r['d3rlpy_steps_per_second']['median']:.0f}",
                f"{r['ratio']['median']:.2f} ({r['ratio']['min']:.2f}-{r['ratio']['max']:.2f})",
                targets[method],
                common.meets(r["ratio"]["median"], targets[method]),
                f"{r['efficiency']['median']:.2f}",
                common.meets(r["efficiency"]["median"], ">= 0.6"),
                f"{'>= ' if r['ceiling_is_lower_bound'] else ''}"
                f"{r['ceiling_ratio']['median']:.2f} "
                f"({r['ceiling_steps_per_second']['median']:.0f})",
            ]
        )
    return common.markdown_table(
        [
            "method",
            "ours steps/s",
            "d3rlpy steps/s",
            "ratio (min-max)",
            "target",
            "met",
            "ours / floor",
            "met",
            "ratio at the matmul ceiling (ceiling steps/s)",
        ],
        rows,
    )


# ------------------------------------------------------------------------------------------------
# Learning runs


def _run_name(side: str, method: str, dataset: str, seed: int) -> str:
    task = os.path.basename(os.path.dirname(os.path.abspath(dataset)))
    name = os.path.splitext(os.path.basename(dataset))[0]
    return f"{task}-{name}-{side}-{method}-s{seed}"


def _evaluation_curve(run_dir: str) -> list[float]:
    """The evaluator's mean return at each evaluation of an antiphon run, in order."""
    with open(os.path.join(run_dir, "logs", "evaluator.csv")) as f:
        return [float(row["eval_return_mean"]) for row in csv.DictReader(f)]


def learn(args: argparse.Namespace) -> None:
    known = tuple(OURS_OPTIONS) if args.side == "ours" else D3RLPY_METHODS
    unknown = [m for m in args.methods if m not in known]
    if unknown:
        raise SystemExit(f"--side {args.side}: unknown method(s) {unknown}; expected {known}")
    os.makedirs(args.root, exist_ok=True)
    for dataset in args.datasets:
        for seed in args.seeds:
            for method in args.methods:
                name = _run_name(args.side, method, dataset, seed)
                result_path = os.path.join(args.root, name + ".json")
                if os.path.exists(result_path):
                    continue
                started = time.time()
                if args.side == "ours":
                    run_dir = os.path.join(args.root, name)
                    command = _antiphon_command(
                        "train",
                        "--agent",
                        method,
                        "--dataset",
                        dataset,
                        "--steps",
                        str(args.steps),
                        "--seed",
                        str(seed),
                        "--run-dir",
                        run_dir,
                        "--overwrite",
                        "--eval-every",
                        str(args.eval_every or args.steps),
                        "--eval-episodes",
                        str(args.eval_episodes),
                        "--no-progress",
                        *OURS_OPTIONS[method],
                        *shlex.split(args.ours_options),
                    )
                    _run(command, args.threads)
                    result = {
                        "eval_return_mean": _evaluation_curve(run_dir)[-1],
                        "ours_options": args.ours_options,
                    }
                else:
                    result = _run_json(
                        [
                            sys.executable,
                            "-m",
                            "benchmarks.d3rlpy_side",
                            "--method",
                            method,
                            "--dataset",
                            dataset,
                            "--steps",
                            str(args.steps),
                            "--seed",
                            str(seed),
                            "--eval-episodes",
                            str(args.eval_episodes),
                            "--threads",
                            str(args.threads),
                        ],
                        args.threads,
                    )
                    result = {k: v for k, v in result.items() if k != "config"}
                result.update(
                    side=args.side,
                    method=method,
                    dataset=dataset,
                    seed=seed,
                    steps=args.steps,
                    wall_seconds=time.time() - started,
                )
                with open(result_path, "w") as f:
                    json.dump(result, f, indent=1, default=float)
                print(
                    f"{name}: return {result['eval_return_mean']:.1f} "
                    f"({result['wall_seconds']:.0f} s)",
                    file=sys.stderr,
                )


def _reevaluation_path(run_dir: str, episodes: int, behaviour_policy: bool = False) -> str:
    suffix = "-behaviour" if behaviour_policy else ""
    return os.path.join(run_dir, f"final{episodes}{suffix}.json")


def _reevaluate(
    run_dir: str, episodes: int, seed: int, threads: int, behaviour_policy: bool = False
) -> dict[str, Any]:
    """Plays the run's latest policy snapshot for `episodes` episodes (`antiphon collect` with no
    action noise; greedy, or a sample of pi with `behaviour_policy`) and returns the per-episode
    returns."""
    from antiphon.environments.datasets import load_dataset
    from antiphon.launch.collect import run_record

    environment = run_record(run_dir)["env"]
    out = os.path.join(run_dir, f"final{episodes}.hdf5")
    command = _antiphon_command(
        "collect",
        "--env",
        environment,
        "--policy",
        f"{run_dir}@latest",
        "--action-noise",
        "0",
        "--episodes",
        str(episodes),
        "--seed",
        str(seed),
        "--out",
        out,
        "--format",
        "hdf5",
        "--overwrite",
        "--no-progress",
        *(["--behaviour-policy"] if behaviour_policy else []),
    )
    _run(command, threads)
    try:
        dataset = load_dataset(out)
        returns = [float(r) for r in dataset.episode_returns()]
        policy = dataset.metadata["policy"]
    finally:
        os.remove(out)
    return {
        "episodes": episodes,
        "seed": seed,
        "snapshot": policy["snapshot"],
        "snapshot_steps": policy["snapshot_steps"],
        "episode_returns": returns,
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "acting": "behaviour" if behaviour_policy else "evaluation",
    }


def evaluate(args: argparse.Namespace) -> None:
    pending = []
    for path in sorted(glob.glob(os.path.join(args.root, args.runs + ".json"))):
        run_dir = path[: -len(".json")]
        if not os.path.exists(os.path.join(run_dir, "snapshots")):
            continue  # d3rlpy's runs keep no snapshots
        if not os.path.exists(_reevaluation_path(run_dir, args.episodes, args.behaviour_policy)):
            pending.append(run_dir)

    def one(run_dir: str) -> str:
        started = time.time()
        result = _reevaluate(run_dir, args.episodes, args.seed, args.threads, args.behaviour_policy)
        with open(_reevaluation_path(run_dir, args.episodes, args.behaviour_policy), "w") as f:
            json.dump(result, f, indent=1)
        return (
            f"{os.path.basename(run_dir)}: {result['return_mean']:.1f} +- "
            f"{result['return_std']:.1f} over {args.episodes} episodes "
            f"({time.time() - started:.0f} s)"
        )

    with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
        for i, line in enumerate(pool.map(one, pending), 1):
            print(f"[{i}/{len(pending)}] {line}", file=sys.stderr, flush=True)


def _bootstrap_ci(values: list[float]) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    if len(values) < 2:
        return values[0], values[0]
    samples = rng.choice(values, size=(10_000, len(values))).mean(axis=1)
    return float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))


def report(args: argparse.Namespace) -> str:
    from antiphon.environments.datasets import load_dataset

    rows: dict[tuple[str, str, str], list[float]] = {}
    # Ours, where a run evaluated more than once: the mean of its last `--last` evaluations per
    # seed (the TD3+BC paper's protocol, over fewer evaluations), less noisy than the final one.
    late: dict[tuple[str, str, str], list[float]] = {}
    # Ours, where `evaluate` has run: the final snapshot's mean return on `--episodes` fresh ones.
    fresh: dict[tuple[str, str, str], list[float]] = {}
    for path in sorted(glob.glob(os.path.join(args.root, "*.json"))):
        with open(path) as f:
            r = json.load(f)
        key = (r["dataset"], r["side"], r["method"])
        rows.setdefault(key, []).append(float(r["eval_return_mean"]))
        run_dir = path[: -len(".json")]  # ours: learn() writes NAME.json beside run dir NAME
        if os.path.exists(os.path.join(run_dir, "logs", "evaluator.csv")):
            curve = _evaluation_curve(run_dir)
            if len(curve) > args.last:
                late.setdefault(key, []).append(float(np.mean(curve[-args.last :])))
        reevaluation = _reevaluation_path(run_dir, args.episodes, args.behaviour_policy)
        if os.path.exists(reevaluation):
            with open(reevaluation) as f:
                fresh.setdefault(key, []).append(float(json.load(f)["return_mean"]))

    def mean_and_ci(values: list[float], expected: int) -> str:
        if len(values) != expected:
            return "-"
        lo, hi = _bootstrap_ci(values)
        return f"{np.mean(values):.1f} [{lo:.1f}, {hi:.1f}]"

    datasets = sorted({k[0] for k in rows})
    table = []
    for dataset in datasets:
        behaviour = load_dataset(dataset).episode_returns().tolist()
        label = os.path.relpath(dataset)
        table.append(
            [
                label,
                "behaviour data",
                "-",
                mean_and_ci(behaviour, len(behaviour)),
                f"{len(behaviour)} episodes",
                "-",
                "-",
            ]
        )
        for (d, side, method), values in sorted(rows.items()):
            if d != dataset:
                continue
            key = (d, side, method)
            table.append(
                [
                    label,
                    f"{'antiphon' if side == 'ours' else 'd3rlpy'} {method}",
                    str(len(values)),
                    mean_and_ci(values, len(values)),
                    ", ".join(f"{v:.0f}" for v in values),
                    mean_and_ci(late.get(key, []), len(values)),
                    mean_and_ci(fresh.get(key, []), len(values)),
                ]
            )
    return common.markdown_table(
        [
            "dataset",
            "method",
            "seeds",
            "final eval return, mean [95 % CI]",
            "per seed",
            f"mean of the last {args.last} evaluations [95 % CI]",
            f"final policy{' sampled' if args.behaviour_policy else ''} on {args.episodes} "
            "fresh episodes [95 % CI]",
        ],
        table,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--dataset", required=True)
    s.add_argument("--methods", nargs="+", default=["crr", "td3_bc", "bc"])
    s.add_argument("--steps", type=int, default=2000)
    s.add_argument("--d3rlpy-steps", type=int, default=600)
    s.add_argument("--repeats", type=int, default=5)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--name", default="offline_speed", help="results JSON name")
    o = sub.add_parser("ours-speed")
    o.add_argument("--method", required=True)
    o.add_argument("--dataset", required=True)
    o.add_argument("--steps", type=int, default=2000)
    o.add_argument("--out", required=True, help="JSON result path")
    learn_p = sub.add_parser("learn")
    learn_p.add_argument("--datasets", nargs="+", required=True)
    learn_p.add_argument("--methods", nargs="+", default=["crr", "bc"])
    learn_p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    learn_p.add_argument("--steps", type=int, default=20_000)
    learn_p.add_argument("--eval-episodes", type=int, default=10)
    learn_p.add_argument(
        "--eval-every", type=int, default=0, help="ours: evaluate every N steps (0: at the end)"
    )
    learn_p.add_argument("--side", choices=["ours", "d3rlpy"], default="ours")
    learn_p.add_argument(
        "--ours-options",
        default="",
        help="extra `antiphon train` options for our runs (a variant: give it its own --root), "
        "e.g. '--baseline max'",
    )
    learn_p.add_argument("--root", default="runs/offline")
    learn_p.add_argument("--threads", type=int, default=1)
    e = sub.add_parser("evaluate")
    e.add_argument("--root", default="runs/offline")
    e.add_argument("--episodes", type=int, default=100)
    e.add_argument("--seed", type=int, default=1000, help="environment seed, the same for all runs")
    e.add_argument("--parallel", type=int, default=2, help="runs evaluated at once")
    e.add_argument("--threads", type=int, default=1)
    e.add_argument(
        "--behaviour-policy", action="store_true", help="act with a sample of pi, not greedily"
    )
    e.add_argument("--runs", default="*", help="only the runs whose name matches this glob")
    r = sub.add_parser("report")
    r.add_argument("--root", default="runs/offline")
    r.add_argument("--name", default="offline_learning")
    r.add_argument("--last", type=int, default=3, help="evaluations averaged per seed (ours)")
    r.add_argument("--episodes", type=int, default=100, help="the `evaluate` column to show (ours)")
    r.add_argument(
        "--behaviour-policy", action="store_true", help="show evaluate --behaviour-policy's column"
    )
    args = p.parse_args(argv)
    if args.command == "ours-speed":
        with open(args.out, "w") as f:
            json.dump(ours_speed(args.method, args.dataset, args.steps), f)
        return 0
    if args.command == "speed":
        recorder = common.Recorder(args.name)
        results = speed(args)
        context = recorder.finish({})  # command, commit, date, machine and load, as every record
        results.update({k: context[k] for k in ("command", "git", "date", "machine", "load")})
        results["table"] = speed_table(results)
        path = common.write_json(results, args.name)
        print(results["table"])
        print(f"-> {path}", file=sys.stderr)
        return 0
    if args.command == "learn":
        learn(args)
        return 0
    if args.command == "evaluate":
        evaluate(args)
        return 0
    table = report(args)
    common.write_json({"table": table, "root": args.root}, args.name)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
