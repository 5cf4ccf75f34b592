"""Learning benchmark: several seeds of `antiphon train`, aggregated (BENCHMARKS.md, "Learning").

    python -m benchmarks.learning run --name mog --seeds 0 1 2 -- --agent d4pg \
        --env dmc:cartpole-swingup --steps 100000 --action-repeat 8
    python -m benchmarks.learning report --target 750 mog=runs/bench/mog-s* c51=runs/bench/c51-s*

`run` trains one run directory per seed (runs/bench/<name>-s<seed>), one after another (the
machine has 2 cores). `report` reads each run's logs/evaluator.csv and writes
benchmarks/results/learning_<env>.json and .md: the final evaluation return per seed, the mean
with a 95 % bootstrap interval, and the environment steps and wall time at which each seed first
reached the target.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import subprocess
import sys

import numpy as np

from benchmarks.common import RESULTS_DIR, git_commit, machine, write_json


def bootstrap_interval(values, num_resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float(values.mean()), float(values.mean())
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(num_resamples, len(values)), replace=True).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def read_run(run_dir: str, target: float | None, metric: str = "eval_return_mean") -> dict:
    """One run's evaluations; `metric` is the column read as its "return" (for goal-reaching
    tasks `eval_success_rate`)."""
    with open(os.path.join(run_dir, "logs", "evaluator.csv")) as f:
        rows = [
            {k: float(v) if v not in (None, "") else float("nan") for k, v in r.items()}
            for r in csv.DictReader(f)
        ]
    if metric != "eval_return_mean":
        for r in rows:
            r["eval_return_mean"] = r.get(metric, float("nan"))
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    random_path = os.path.join(run_dir, "random_policy.json")
    random_return = None
    if os.path.exists(random_path):
        with open(random_path) as f:
            random_return = json.load(f)["return_mean"]
    reached = next(
        (r for r in rows if target is not None and r["eval_return_mean"] >= target), None
    )
    return {
        "run_dir": run_dir,
        "command": config.get("command"),
        "final_env_steps": rows[-1]["actor_steps"],
        "final_return": rows[-1]["eval_return_mean"],
        "best_return": max(r["eval_return_mean"] for r in rows),
        "wall_seconds": rows[-1]["wall_seconds"],
        "random_policy_return": random_return,
        "target_reached_at_env_steps": reached["actor_steps"] if reached else None,
        "target_reached_at_wall_seconds": reached["wall_seconds"] if reached else None,
        "curve": [(r["actor_steps"], r["eval_return_mean"]) for r in rows],
    }


def report(
    groups: dict[str, list[str]],
    target: float | None,
    name: str,
    metric: str = "eval_return_mean",
) -> dict:
    summary = {}
    for label, run_dirs in groups.items():
        runs = [read_run(d, target, metric) for d in run_dirs]
        finals = [r["final_return"] for r in runs]
        low, high = bootstrap_interval(finals)
        summary[label] = {
            "seeds": len(runs),
            "final_return_mean": float(np.mean(finals)),
            "final_return_ci95": [low, high],
            "runs": runs,
        }
    lines = [
        f"| method | seeds | final {metric}, mean [95 % CI] | per seed | env steps to "
        f"{target} | wall s to {target} |",
        "|---|---|---|---|---|---|",
    ]
    for label, s in summary.items():
        per_seed = ", ".join(f"{r['final_return']:.3g}" for r in s["runs"])
        steps = ", ".join(
            str(int(r["target_reached_at_env_steps"]))
            if r["target_reached_at_env_steps"] is not None
            else "not reached"
            for r in s["runs"]
        )
        walls = ", ".join(
            f"{r['target_reached_at_wall_seconds']:.0f}"
            if r["target_reached_at_wall_seconds"] is not None
            else "-"
            for r in s["runs"]
        )
        lo, hi = s["final_return_ci95"]
        lines.append(
            f"| {label} | {s['seeds']} | {s['final_return_mean']:.3g} [{lo:.3g}, {hi:.3g}]"
            f" | {per_seed} | {steps} | {walls} |"
        )
    table = "\n".join(lines)
    write_json(
        {
            "benchmark": name,
            "target": target,
            "metric": metric,
            "groups": summary,
            "machine": machine(),
            "git": git_commit(),
            "command": "python -m benchmarks.learning " + " ".join(sys.argv[1:]),
        },
        name,
    )
    (RESULTS_DIR / f"{name}.md").write_text(table + "\n")
    print(table)
    return summary


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.learning")
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run")
    run_p.add_argument("--name", required=True)
    run_p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    run_p.add_argument("--root", default="runs/bench")
    report_p = sub.add_parser("report")
    report_p.add_argument("--target", type=float, default=None)
    report_p.add_argument("--name", default="learning")
    report_p.add_argument(
        "--metric", default="eval_return_mean", help="evaluator column (e.g. eval_success_rate)"
    )
    report_p.add_argument("groups", nargs="+", help="label=GLOB of run directories")
    if "--" in argv:
        split = argv.index("--")
        argv, train_args = argv[:split], argv[split + 1 :]
    else:
        train_args = []
    args = parser.parse_args(argv)
    if args.command == "run":
        for seed in args.seeds:
            run_dir = os.path.join(args.root, f"{args.name}-s{seed}")
            cmd = [
                sys.executable,
                "-m",
                "antiphon.launch.cli",
                "train",
                *train_args,
                "--seed",
                str(seed),
                "--run-dir",
                run_dir,
                "--no-progress",
            ]
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
        return 0
    groups = {}
    for spec in args.groups:
        label, pattern = spec.split("=", 1)
        groups[label] = sorted(glob.glob(pattern))
        if not groups[label]:
            parser.error(f"no run directories match {pattern}")
    report(groups, args.target, args.name, args.metric)
    return 0


if __name__ == "__main__":
    sys.exit(main())
