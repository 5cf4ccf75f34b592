"""Multi-objective benchmark (issue 21): a preference sweep of DiME and linear scalarisation on a
task + action-cost environment, then the same sweep with the action cost's reward multiplied by
100 in the learner (`--reward-scales 1,100`): DiME's front should stay where it was, linear
scalarisation's should collapse towards the cost end (ALGORITHMS.md §3, scale invariance).

    python -m benchmarks.pareto_sweep run --seeds 0            # one seed of every setting
    python -m benchmarks.pareto_sweep run --seeds 1 2          # more seeds, same settings
    python -m benchmarks.pareto_sweep report

`run` trains one run directory per (combination, scale, preference, seed) under --root, one after
another, and skips runs whose evaluator already logged the final step; an unfinished run directory
resumes (antiphon train resumes an existing run_dir). `report`
writes benchmarks/results/pareto_<env>.json and .md (per setting: each objective's return, mean
of the last `--last` evaluations, averaged over seeds) and the Pareto PNGs: one per reward scale
with both combinations, via `antiphon.launch.plotting.plot_pareto`.
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import subprocess
import sys

import numpy as np

from benchmarks.common import RESULTS_DIR, git_commit, machine, write_json

# alpha_task (DiME's mixture weight / linear's lambda on the task); the cost gets 1 - alpha_task.
TASK_WEIGHTS = (0.9, 0.7, 0.5, 0.3, 0.1)
COMBINATIONS = ("dime", "linear")
SCALES = ("1,1", "1,100")
# MPO's cartpole recipe (RESULTS.md, issue 20) on the offline agents' (256, 256) networks: the
# 20-run sweep fits a 2-core machine (about 70 s per 10k environment steps).
RECIPE = (
    "--objectives task,action_cost --critic-type scalar --action-repeat 2 "
    "--policy-learning-rate 3e-4 --critic-learning-rate 3e-4 --samples-per-insert 128 "
    "--policy-layer-sizes 256,256 --critic-layer-sizes 256,256"
)


def run_name(combination: str, scales: str, task_weight: float, seed: int) -> str:
    return f"{combination}-x{scales.split(',')[-1]}-w{task_weight:g}-s{seed}"


def finished(run_dir: str, steps: int) -> bool:
    path = os.path.join(run_dir, "logs", "evaluator.csv")
    if not os.path.exists(path):
        return False
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return bool(rows) and float(rows[-1]["actor_steps"]) >= steps


def run(args: argparse.Namespace) -> int:
    antiphon = os.path.join(os.path.dirname(sys.executable), "antiphon")
    settings = [
        (combination, scales, weight)
        for scales in SCALES
        for combination in COMBINATIONS
        for weight in args.weights
    ]
    for seed in args.seeds:
        for number, (combination, scales, weight) in enumerate(settings, 1):
            run_dir = os.path.join(args.root, run_name(combination, scales, weight, seed))
            if finished(run_dir, args.steps):
                print(f"[{number}/{len(settings)} seed {seed}] {run_dir}: done", flush=True)
                continue
            command = [
                antiphon, "train", "--agent", "dime", "--env", args.env,
                *RECIPE.split(),
                "--combination", combination,
                "--preferences", f"{weight:g},{1 - weight:g}",
                "--reward-scales", scales,
                "--steps", str(args.steps),
                "--eval-every", str(args.eval_every),
                "--eval-episodes", str(args.eval_episodes),
                "--seed", str(seed),
                "--run-dir", run_dir,
            ]  # fmt: skip
            print(f"[{number}/{len(settings)} seed {seed}] {' '.join(command)}", flush=True)
            with open(os.path.join(args.root, "sweep.log"), "a") as log:
                result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
            if result.returncode != 0:
                print(f"  failed with exit {result.returncode} (see {args.root}/sweep.log)")
                return result.returncode
    return 0


def report(args: argparse.Namespace) -> int:
    from antiphon.launch import plotting

    rows, pngs = [], {}
    env_name = args.env.replace(":", "_").replace("-", "_")
    for scales in SCALES:
        dirs = []
        for combination in COMBINATIONS:
            for weight in TASK_WEIGHTS:
                pattern = os.path.join(args.root, run_name(combination, scales, weight, 0))
                members = sorted(glob.glob(pattern[: -len("-s0")] + "-s*"))
                members = [d for d in members if finished(d, args.steps)]
                if not members:
                    continue
                dirs += members
                names, points = plotting.pareto_points(members, args.last)
                returns = np.asarray([p["returns"] for p in points])
                rows.append(
                    {
                        "combination": combination,
                        "reward_scales": scales,
                        "preferences": [weight, round(1 - weight, 6)],
                        "seeds": [p["seed"] for p in points],
                        "objectives": names,
                        "per_seed": returns.tolist(),
                        "mean": returns.mean(axis=0).tolist(),
                    }
                )
        if dirs:
            out = os.path.join(RESULTS_DIR, f"pareto_{env_name}_x{scales.split(',')[-1]}.png")
            pngs[scales] = plotting.plot_pareto(dirs, out, args.last)
    result = {
        "benchmark": "pareto_sweep",
        "env": args.env,
        "steps": args.steps,
        "last_evaluations": args.last,
        "recipe": RECIPE,
        "rows": rows,
        "plots": pngs,
        "commit": git_commit(),
        "machine": machine(),
    }
    write_json(result, f"pareto_{env_name}")
    lines = [
        "| combination | action cost x | preferences (task, cost) | seeds | task return "
        "| action_cost return |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        per_seed = np.asarray(row["per_seed"])
        lines.append(
            f"| {row['combination']} | {row['reward_scales'].split(',')[-1]} "
            f"| {row['preferences'][0]:g}, {row['preferences'][1]:g} | {len(row['seeds'])} "
            f"| {row['mean'][0]:.1f} ({', '.join(f'{v:.0f}' for v in per_seed[:, 0])}) "
            f"| {row['mean'][1]:.1f} ({', '.join(f'{v:.0f}' for v in per_seed[:, 1])}) |"
        )
    table = "\n".join(lines) + "\n"
    with open(os.path.join(RESULTS_DIR, f"pareto_{env_name}.md"), "w") as f:
        f.write(table)
    print(table)
    for scales, png in pngs.items():
        print(f"front, rewards x{scales}: {png}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("run", "report"))
    parser.add_argument("--env", default="dmc:cartpole-swingup")
    parser.add_argument("--root", default="runs/pareto")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--eval-every", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=3)
    parser.add_argument("--last", type=int, default=2, help="evaluations averaged per run")
    parser.add_argument(
        "--weights",
        type=float,
        nargs="+",
        default=list(TASK_WEIGHTS),
        help="run: these task weights only (e.g. the ends and the middle first)",
    )
    args = parser.parse_args(argv)
    os.makedirs(args.root, exist_ok=True)
    return run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    sys.exit(main())
