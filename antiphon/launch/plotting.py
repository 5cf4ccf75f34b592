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


# Learner columns plotted under the returns, one panel per group, where a run's
# logs/learner.csv has them (MPO's trust regions and duals; every critic's q_out_of_range).
LEARNER_PANELS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("trust regions (KL / epsilon)", ("kl_q_rel", "kl_mean_rel", "kl_stddev_rel"), "linear"),
    (
        "duals, policy std",
        ("temperature", "alpha_mean", "alpha_stddev", "pi_stddev_min", "pi_stddev_max"),
        "log",
    ),
    ("critic", ("q_out_of_range", "q_beyond_range"), "linear"),
)


def _learner_rows(run_dirs: list[str]) -> dict[str, list[dict[str, str]]]:
    rows = {}
    for run_dir in run_dirs:
        path = os.path.join(run_dir, "logs", "learner.csv")
        if os.path.exists(path):
            rows[run_dir] = _read_csv(path)
    return rows


def _plot_learner_panel(ax, learner_rows, columns: tuple[str, ...], title: str, scale: str):
    """Against actor steps where the learner's log has them, else against its SGD steps."""
    x_labels = set()
    for run_dir, rows in learner_rows.items():
        name = os.path.basename(os.path.normpath(run_dir))
        step_key = "actor_steps" if "actor_steps" in rows[0] else "steps"
        x_labels.add("environment steps (all actors)" if step_key == "actor_steps" else "SGD steps")
        for column in columns:
            if column in rows[0]:
                x, y = _column(rows, step_key), _column(rows, column)
                ax.plot(x, y, marker="o", markersize=2, label=f"{name} {column}")
    ax.set_xlabel(" / ".join(sorted(x_labels)), fontsize=8)
    ax.set_yscale(scale)
    ax.set_title(title, fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)


def _success_rows(run_dirs: list[str]) -> dict[str, list[dict[str, str]]]:
    """Evaluator rows of the runs that report a success rate (goal-reaching environments)."""
    rows = {}
    for run_dir in run_dirs:
        path = os.path.join(run_dir, "logs", "evaluator.csv")
        if os.path.exists(path):
            with_success = [
                r for r in _read_csv(path) if r.get("eval_success_rate") not in (None, "")
            ]
            if with_success:
                rows[run_dir] = with_success
    return rows


def _plot_success_panel(ax, success_rows) -> None:
    for run_dir, rows in success_rows.items():
        name = os.path.basename(os.path.normpath(run_dir))
        ax.plot(
            _column(rows, "actor_steps"),
            _column(rows, "eval_success_rate"),
            marker="o",
            markersize=3,
            label=f"{name} evaluation",
        )
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("environment steps (all actors)", fontsize=8)
    ax.set_title("evaluation success rate", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)


def plot_run(run_dirs: list[str], out_path: str | None = None) -> str:
    """Plot evaluation return (mean ± std) and actor episode returns against actor steps; the
    evaluation success rate where the runs report one (MiniGrid, BabyAI); and under them the
    learner's diagnostics that its log has (`LEARNER_PANELS`).

    Several run directories are overlaid (e.g. seeds or critic types). Returns the PNG path.
    """
    if not run_dirs:
        raise ValueError("plot needs at least one run directory")
    learner_rows = {k: v for k, v in _learner_rows(run_dirs).items() if v}
    panels = [
        panel
        for panel in LEARNER_PANELS
        if any(column in rows[0] for rows in learner_rows.values() for column in panel[1])
    ]
    success_rows = _success_rows(run_dirs)
    extra = 1 if success_rows else 0
    fig, axes = plt.subplots(
        1 + extra + len(panels),
        1,
        figsize=(7, 4.5 + 2.5 * (extra + len(panels))),
        squeeze=False,
        gridspec_kw={"height_ratios": [1.8] + [1.0] * (extra + len(panels))},
    )
    ax = axes[0, 0]
    if success_rows:
        _plot_success_panel(axes[1, 0], success_rows)
    for panel_ax, (title, columns, scale) in zip(axes[1 + extra :, 0], panels, strict=True):
        _plot_learner_panel(panel_ax, learner_rows, columns, title, scale)
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


# ------------------------------------------------------------------------------------------------
# Pareto fronts of multi-objective runs


def pareto_points(run_dirs: list[str], last: int = 3) -> tuple[list[str], list[dict]]:
    """(objective names, one point per run): each run's per-objective evaluation returns
    (`eval_return_mean/<name>` in logs/evaluator.csv), averaged over its last `last`
    evaluations, with its label (combination and preferences from config.json) and seed.

    Raises ValueError (one line) for a run without several objectives, or runs whose objectives
    differ."""
    names: list[str] | None = None
    points = []
    for run_dir in run_dirs:
        path = os.path.join(run_dir, "logs", "evaluator.csv")
        if not os.path.exists(path):
            raise ValueError(f"{run_dir}: no logs/evaluator.csv")
        rows = [r for r in _read_csv(path) if r.get("eval_return_mean") not in (None, "")]
        prefix = "eval_return_mean/"
        run_names = [
            key[len(prefix) :] for key in (rows[0] if rows else {}) if key.startswith(prefix)
        ]
        if len(run_names) < 2:
            raise ValueError(
                f"{run_dir}: not a multi-objective run (no eval_return_mean/<objective> columns; "
                "train with --objectives a,b)"
            )
        if names is not None and run_names != names:
            raise ValueError(f"{run_dir}: objectives {run_names} differ from {names}")
        names = run_names
        config = {}
        config_path = os.path.join(run_dir, "config.json")
        if os.path.exists(config_path):
            with open(config_path) as f:
                config = json.load(f)
        agent_config = config.get("config", {})
        preferences = agent_config.get("preferences", [])
        combination = agent_config.get("combination", config.get("agent", "?"))
        scales = agent_config.get("reward_scales") or []
        if any(float(c) != 1.0 for c in scales):  # a scaled run is its own front
            combination += " rewards x" + ",".join(f"{float(c):g}" for c in scales)
        label = f"{combination} " + ",".join(f"{p:g}" for p in preferences)
        tail = rows[-last:]
        points.append(
            {
                "run_dir": run_dir,
                "label": label.strip(),
                "combination": combination,
                "seed": config.get("seed"),
                "returns": [float(sum(_column(tail, prefix + n)) / len(tail)) for n in names],
            }
        )
    if names is None:
        raise ValueError("no run directories given")
    return names, points


def plot_pareto(run_dirs: list[str], out_path: str | None = None, last: int = 3) -> str:
    """Objective returns of several runs against each other (first two objectives): one small
    marker per run, and per label (combination + preferences) the mean over its seeds with the
    seeds' range, so a preference sweep shows as a front per combination. Returns the PNG
    path (default: pareto.png beside the first run directory)."""
    names, points = pareto_points(run_dirs, last)
    groups: dict[str, list[dict]] = {}
    for point in points:
        groups.setdefault(point["label"], []).append(point)
    combinations = sorted({p["combination"] for p in points})
    colours = {c: f"C{i}" for i, c in enumerate(combinations)}
    fig, ax = plt.subplots(figsize=(7, 5))
    for combination in combinations:
        front = []
        for label, members in groups.items():
            if members[0]["combination"] != combination:
                continue
            xs = [m["returns"][0] for m in members]
            ys = [m["returns"][1] for m in members]
            ax.scatter(xs, ys, s=10, alpha=0.4, color=colours[combination])
            mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
            ax.errorbar(
                mx,
                my,
                xerr=[[mx - min(xs)], [max(xs) - mx]],
                yerr=[[my - min(ys)], [max(ys) - my]],
                fmt="o",
                color=colours[combination],
                capsize=2,
            )
            ax.annotate(
                label.rsplit(" ", 1)[-1],
                (mx, my),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
            front.append((mx, my))
        front.sort()
        ax.plot(
            [x for x, _ in front],
            [y for _, y in front],
            color=colours[combination],
            alpha=0.6,
            label=f"{combination} ({len(front)} settings)",
        )
    ax.set_xlabel(f"return: {names[0]}")
    ax.set_ylabel(f"return: {names[1]}")
    ax.set_title(f"mean of the last {last} evaluations per run; bars: range over seeds", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if out_path is None:
        out_path = os.path.join(os.path.dirname(os.path.normpath(run_dirs[0])) or ".", "pareto.png")
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return out_path
