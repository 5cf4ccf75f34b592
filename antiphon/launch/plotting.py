"""Learning curves from a run directory's CSV logs (matplotlib, headless)."""

from __future__ import annotations

import csv
import glob
import json
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _read_csv(path: str) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _column(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(r[key]) if r.get(key) not in (None, "") else float("nan") for r in rows]


def plot_run(run_dirs: list[str], out_path: str | None = None) -> str:
    """Plot evaluation return (mean ± std) and actor episode returns against actor steps.

    Several run directories are overlaid (e.g. seeds or critic types). Returns the PNG path.
    """
    if not run_dirs:
        raise ValueError("plot needs at least one run directory")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plotted = False
    for run_dir in run_dirs:
        name = os.path.basename(os.path.normpath(run_dir))
        eval_path = os.path.join(run_dir, "logs", "evaluator.csv")
        if os.path.exists(eval_path):
            rows = _read_csv(eval_path)
            if rows:
                # Evaluations with a non-finite return are left out of the curve, and counted.
                rows = [r for r in rows if math.isfinite(_column([r], "eval_return_mean")[0])]
                left_out = len(_read_csv(eval_path)) - len(rows)
                x = _column(rows, "actor_steps")
                y = _column(rows, "eval_return_mean")
                s = _column(rows, "eval_return_std")
                label = f"{name} evaluation" + (
                    f" ({left_out} non-finite evaluations left out)" if left_out else ""
                )
                line = ax.plot(x, y, marker="o", markersize=3, label=label)[0]
                lo = [a - b for a, b in zip(y, s, strict=True)]
                hi = [a + b for a, b in zip(y, s, strict=True)]
                ax.fill_between(x, lo, hi, alpha=0.2, color=line.get_color())
                plotted = True
        random_path = os.path.join(run_dir, "random_policy.json")
        if os.path.exists(random_path):
            with open(random_path) as f:
                baseline = json.load(f)["return_mean"]
            ax.axhline(
                baseline,
                linestyle="--",
                color="grey",
                linewidth=1,
                label=f"{name} uniform random policy ({baseline:.1f})",
            )
        for actor_path in sorted(glob.glob(os.path.join(run_dir, "logs", "actor_*.csv"))):
            rows = _read_csv(actor_path)
            # An actor's counter sees the program-wide actor step count as `steps`.
            step_key = "actor_steps" if rows and "actor_steps" in rows[0] else "steps"
            if rows and step_key in rows[0]:
                ax.plot(
                    _column(rows, step_key),
                    _column(rows, "episode_return"),
                    alpha=0.35,
                    linewidth=0.8,
                    label=f"{name} {os.path.basename(actor_path)[:-4]} (training episodes)",
                )
                plotted = True
    if not plotted:
        plt.close(fig)
        raise ValueError(f"no evaluator or actor logs under {', '.join(run_dirs)}")
    ax.set_xlabel("environment steps (all actors)")
    ax.set_ylabel("episode return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    if out_path is None:
        out_path = os.path.join(run_dirs[0], "plots", "returns.png")
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path
