"""Statistics and plots of `antiphon bench offline`: D4RL-normalised scores, per-dataset means
with bootstrap intervals, and across datasets the interquartile mean (IQM), median, mean and
optimality gap with stratified-bootstrap intervals and performance profiles, as rliable
(Agarwal et al. 2021, "Deep RL at the Edge of the Statistical Precipice") computes them.

Scores are arranged as rliable expects: per method an array of shape (runs, tasks), where a
"task" is one (environment, dataset) pair and a run is one seed. The stratified bootstrap
resamples runs within each task, so every task keeps its weight in every resample.

Everything here is a pure function of arrays, except the `plot_*` functions, which write PNGs.
rliable, scipy and matplotlib are imported when first needed.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

# The aggregate metrics reported across datasets, in table order (rliable's names).
AGGREGATES = ("IQM", "Median", "Mean", "Optimality Gap")


def normalized_score(
    score: float | np.ndarray, random_return: float, expert_return: float
) -> float | np.ndarray:
    """D4RL's normalised score: 100 * (score - random) / (expert - random).

    0 is the random dataset's mean episode return, 100 the expert dataset's. Raises ValueError
    when the two are equal (the scale is undefined)."""
    span = float(expert_return) - float(random_return)
    if span == 0.0 or not math.isfinite(span):
        raise ValueError(
            f"cannot normalise: the expert return ({expert_return}) equals the random return "
            f"({random_return})"
        )
    result = 100.0 * (np.asarray(score, np.float64) - float(random_return)) / span
    return float(result) if np.ndim(result) == 0 else result


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of every score in `scores` (all runs and tasks pooled): the mean of
    the middle 50 %, after dropping the lowest and highest 25 % (rliable's aggregate_iqm)."""
    from rliable import metrics

    return float(metrics.aggregate_iqm(np.asarray(scores, np.float64)))


def _aggregate_function(gap_threshold: float):
    from rliable import metrics

    def aggregates(scores: np.ndarray) -> np.ndarray:
        return np.array(
            [
                metrics.aggregate_iqm(scores),
                metrics.aggregate_median(scores),
                metrics.aggregate_mean(scores),
                # The gap to `gap_threshold` (100: the expert) averaged over runs and tasks.
                metrics.aggregate_optimality_gap(scores, gap_threshold),
            ]
        )

    return aggregates


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """rliable's bootstrap draws its indices from numpy's global generator (its
    `random_state` argument does not reach them): seed it for the call, then put it back."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def bootstrap_interval(
    values: Sequence[float], reps: int = 2000, seed: int = 0, size: float = 0.95
) -> tuple[float, float, float]:
    """(mean, low, high): the mean of `values` (the runs of one dataset) and its percentile
    bootstrap interval of coverage `size`. One value gives a zero-width interval."""
    array = np.asarray(values, np.float64).reshape(-1, 1)
    if array.size == 0:
        raise ValueError("no values to bootstrap")
    mean = float(array.mean())
    if array.shape[0] == 1:
        return mean, mean, mean
    from rliable import library, metrics

    with _seeded(seed):
        _, intervals = library.get_interval_estimates(
            {"x": array}, metrics.aggregate_mean, reps=reps, confidence_interval_size=size
        )
    low, high = np.asarray(intervals["x"]).reshape(-1)[:2]
    return mean, float(low), float(high)


def aggregate_estimates(
    score_dict: Mapping[str, np.ndarray],
    reps: int = 2000,
    seed: int = 0,
    size: float = 0.95,
    gap_threshold: float = 100.0,
) -> dict[str, dict[str, tuple[float, float, float]]]:
    """{method: {metric: (point, low, high)}} for the metrics of AGGREGATES, with
    stratified-bootstrap intervals of coverage `size`; each array is (runs, tasks)."""
    from rliable import library

    arrays = {k: np.asarray(v, np.float64) for k, v in score_dict.items()}
    for name, array in arrays.items():
        if array.ndim != 2 or array.size == 0:
            raise ValueError(f"{name}: scores must be a non-empty (runs, tasks) array")
    with _seeded(seed):
        points, intervals = library.get_interval_estimates(
            arrays, _aggregate_function(gap_threshold), reps=reps, confidence_interval_size=size
        )
    return {
        name: {
            metric: (
                float(points[name][i]),
                float(intervals[name][0][i]),
                float(intervals[name][1][i]),
            )
            for i, metric in enumerate(AGGREGATES)
        }
        for name in arrays
    }


def profile_thresholds(score_dict: Mapping[str, np.ndarray], points: int = 101) -> np.ndarray:
    """Thresholds tau for the performance profiles: from min(0, lowest score) to
    max(100, highest score)."""
    values = np.concatenate([np.asarray(v, np.float64).ravel() for v in score_dict.values()])
    low = min(0.0, float(values.min())) if values.size else 0.0
    high = max(100.0, float(values.max())) if values.size else 100.0
    return np.linspace(low, high, points)


def performance_profiles(
    score_dict: Mapping[str, np.ndarray],
    thresholds: np.ndarray,
    reps: int = 2000,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """rliable's score distributions: per method the fraction of runs (over all tasks) whose
    score exceeds each threshold, and its stratified-bootstrap interval, shape (2, len)."""
    from rliable import library

    arrays = {k: np.asarray(v, np.float64) for k, v in score_dict.items()}
    with _seeded(seed):
        profiles, intervals = library.create_performance_profile(arrays, thresholds, reps=reps)
    return (
        {k: np.asarray(v) for k, v in profiles.items()},
        {k: np.asarray(v) for k, v in intervals.items()},
    )


# ------------------------------------------------------------------------------------------------
# Tables


def format_interval(point: float, low: float, high: float, digits: int = 1) -> str:
    return f"{point:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def aggregate_table(estimates: Mapping[str, Mapping[str, tuple[float, float, float]]]) -> str:
    """Markdown: one row per method, one column per aggregate metric, `point [low, high]`."""
    rows = [
        [name] + [format_interval(*metrics[m]) for m in AGGREGATES]
        for name, metrics in estimates.items()
    ]
    return markdown_table(["method", *(f"{m} [95 % CI]" for m in AGGREGATES)], rows)


# ------------------------------------------------------------------------------------------------
# Plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display is assumed
    import matplotlib.pyplot as plt

    return plt


def plot_aggregates(
    estimates: Mapping[str, Mapping[str, tuple[float, float, float]]], path: str
) -> str:
    """rliable's interval plot (one panel per aggregate metric, one row per method) as a PNG."""
    from rliable import plot_utils

    plt = _pyplot()
    names = list(estimates)
    points = {n: np.array([estimates[n][m][0] for m in AGGREGATES]) for n in names}
    intervals = {
        n: np.array(
            [[estimates[n][m][1] for m in AGGREGATES], [estimates[n][m][2] for m in AGGREGATES]]
        )
        for n in names
    }
    fig, _ = plot_utils.plot_interval_estimates(
        points,
        intervals,
        metric_names=list(AGGREGATES),
        algorithms=names,
        xlabel="D4RL-normalised score",
        subfigure_width=3.6,
        # A figure at least 2 inches high, so that the x label clears the tick labels.
        row_height=max(0.45, 2.0 / max(1, len(names))),
        xlabel_y_coordinate=-0.2,
    )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_profiles(
    profiles: Mapping[str, np.ndarray],
    intervals: Mapping[str, np.ndarray],
    thresholds: np.ndarray,
    path: str,
) -> str:
    """The performance profiles (fraction of runs above tau, with their intervals) as a PNG."""
    from rliable import plot_utils

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot_utils.plot_performance_profiles(
        dict(profiles),
        thresholds,
        performance_profile_cis=dict(intervals),
        ax=ax,
        xlabel=r"D4RL-normalised score ($\tau$)",
        ylabel=r"fraction of runs with score $> \tau$",
        labelsize="medium",
        ticklabelsize="medium",
    )
    ax.legend(loc="upper right", fontsize="small")  # the lines carry the method names
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_per_dataset(
    cells: Mapping[str, Mapping[str, tuple[float, float, float]]],
    datasets: Sequence[str],
    path: str,
) -> str:
    """Grouped bars: per dataset (x) each method's mean normalised score with its 95 %
    bootstrap interval. `cells[method][dataset] = (mean, low, high)`; missing cells are skipped."""
    plt = _pyplot()
    methods = list(cells)
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(datasets) * max(1, len(methods)) / 3), 4.5))
    x = np.arange(len(datasets))
    for i, method in enumerate(methods):
        where = [j for j, d in enumerate(datasets) if d in cells[method]]
        if not where:
            continue
        values = np.array([cells[method][datasets[j]] for j in where])
        errors = np.abs(values[:, 1:].T - values[:, 0])
        ax.bar(
            x[where] + (i - (len(methods) - 1) / 2) * width,
            values[:, 0],
            width,
            yerr=errors,
            capsize=2,
            label=method,
        )
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.axhline(100.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks(x)
    ax.set_xticklabels(datasets, rotation=20, ha="right", fontsize="small")
    ax.set_ylabel("D4RL-normalised score (mean, 95 % CI)")
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


__all__ = [
    "AGGREGATES",
    "aggregate_estimates",
    "aggregate_table",
    "bootstrap_interval",
    "format_interval",
    "iqm",
    "markdown_table",
    "normalized_score",
    "performance_profiles",
    "plot_aggregates",
    "plot_per_dataset",
    "plot_profiles",
    "profile_thresholds",
]
