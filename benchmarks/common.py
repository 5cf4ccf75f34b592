"""Shared benchmark plumbing: interleaved timing, statistics, machine facts, JSON and markdown.

Every speed figure is a ratio of two sides measured in the same process, in interleaved blocks
(see /work/shared/BENCHMARKS.md). `interleave` runs the blocks in ABBA order (A B, B A, A B, ...)
so a linear drift in machine load cancels, pairs the two blocks of each repeat and reports the
median of the per-repeat ratios with their spread. Nothing here asserts: a missed target is a
figure, not a failure.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"

TABLE_HEADERS = ["figure", "median", "spread min–max (IQR)", "target", "met", "context"]

# A block returns (units done, seconds taken); units are env steps, items or SGD steps.
Block = Callable[[], tuple[float, float]]

THREAD_ENV_VARS = (
    "XLA_FLAGS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "JAX_PLATFORMS",
    "MUJOCO_GL",
)


# --------------------------------------------------------------------------------------------
# Statistics.


def spread(values: Sequence[float]) -> dict[str, float]:
    """median, min, max and the quartiles of `values`."""
    values = sorted(float(v) for v in values)
    if not values:
        return {}
    if len(values) >= 2:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    else:
        q1 = q3 = values[0]
    return {
        "median": statistics.median(values),
        "min": values[0],
        "max": values[-1],
        "q25": q1,
        "q75": q3,
        "n": len(values),
    }


def interleave(
    a: Block,
    b: Block,
    repeats: int,
    a_name: str = "a",
    b_name: str = "b",
    budget_seconds: float | None = None,
) -> dict[str, Any]:
    """Runs blocks of A and B interleaved (ABBA order), `repeats` of each.

    Returns the per-repeat rates of both sides, the per-repeat ratios rate_A / rate_B (each from
    two adjacent blocks) and their summaries. Warm-up is the caller's business.
    """
    result = interleave_many({a_name: a, b_name: b}, b_name, repeats, budget_seconds)
    result["ratio"] = result["ratios_to_reference"][a_name]
    result["ratios"] = result["per_repeat_ratios"][a_name]
    return result


MIN_REPEATS = 5


def interleave_many(
    blocks: dict[str, Block],
    reference: str,
    repeats: int,
    budget_seconds: float | None = None,
) -> dict[str, Any]:
    """Interleaves several sides: each repeat runs every block once, in forward order on even
    repeats and reversed on odd ones (A B C, C B A, ...). Ratios are each side's rate over the
    `reference` side's rate in the same repeat.

    With `budget_seconds`, stops early once that much time has passed, but never before
    MIN_REPEATS repeats (a heavily loaded machine gets fewer repeats, not a longer run).
    """
    names = list(blocks)
    rates: dict[str, list[float]] = {name: [] for name in names}
    ratios: dict[str, list[float]] = {name: [] for name in names if name != reference}
    start = time.perf_counter()
    done = 0
    for i in range(repeats):
        if (
            budget_seconds is not None
            and i >= MIN_REPEATS
            and time.perf_counter() - start > budget_seconds
        ):
            break
        order = names if i % 2 == 0 else names[::-1]
        current = {}
        for name in order:
            units, seconds = blocks[name]()
            current[name] = units / seconds
            rates[name].append(current[name])
        for name in ratios:
            ratios[name].append(current[name] / current[reference])
        done += 1
    result: dict[str, Any] = {
        "order": "interleaved; each repeat runs every side once, order reversed every other "
        "repeat (A B, B A, ...); ratios from the same repeat",
        "repeats": done,
        "repeats_requested": repeats,
        "reference": reference,
        "ratios_to_reference": {name: spread(v) for name, v in ratios.items()},
        "per_repeat_ratios": ratios,
        "rates": rates,
    }
    for name in names:
        result[f"{name}_per_s"] = spread(rates[name])
    return result


def timed(fn: Callable[[], float]) -> tuple[float, float]:
    """(units returned by fn, wall seconds it took)."""
    start = time.perf_counter()
    units = fn()
    return units, time.perf_counter() - start


# --------------------------------------------------------------------------------------------
# Machine facts.


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_description() -> str | None:
    """The accelerator JAX would use, or None on a CPU-only machine."""
    try:
        import jax

        devices = [d for d in jax.devices() if d.platform != "cpu"]
    except Exception:  # noqa: BLE001 - no JAX backend at all is still a valid machine
        return None
    if not devices:
        return None
    return ", ".join(sorted({getattr(d, "device_kind", d.platform) for d in devices}))


def git_commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine() -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    import jax
    import numpy as np

    versions = {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "numpy": np.__version__,
    }
    for dist in ("jaxlib", "dm-reverb", "tensorflow-cpu", "tensorflow", "dm-control", "mujoco"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "gpu": gpu_description(),
        "jax_backend": jax.default_backend(),
        "platform": platform.platform(),
        "thread_env": {k: os.environ[k] for k in THREAD_ENV_VARS if k in os.environ},
        "versions": versions,
    }


def other_processes_cpu(top: int = 3) -> list[str]:
    """The busiest other processes right now (context for a loaded machine)."""
    out = subprocess.run(
        ["ps", "-eo", "pid,pcpu,args", "--sort=-pcpu", "--no-headers"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    me = os.getpid()
    rows = []
    for line in out:
        parts = line.split(None, 2)
        if len(parts) < 3 or int(parts[0]) in (me, os.getppid()) or parts[2].startswith("ps "):
            continue
        rows.append(f"{parts[1]}% {parts[2][:120]}")
        if len(rows) == top:
            break
    return rows


# --------------------------------------------------------------------------------------------
# Results.


class StaticVariableSource:
    """A variable source that always serves the same parameters (an actor benchmark times acting
    and writing, not the learner's updates)."""

    def __init__(self, params: Any):
        self._params = params

    def get_variables(self, names):
        return [self._params for _ in names]


class Recorder:
    """Collects a benchmark's context: command, commit, machine, load before and after."""

    def __init__(self, name: str):
        self.name = name
        self.started = time.time()
        self.load_before = load_average()
        self.busy_before = other_processes_cpu()

    def finish(
        self, figures: dict[str, Any], table_rows: Sequence[Sequence[str]] = ()
    ) -> dict[str, Any]:
        """The JSON record; `table_rows` are this benchmark's rows of the markdown table."""
        cores = os.cpu_count() or 1
        load_after = load_average()
        return {
            "benchmark": self.name,
            "figures": figures,
            "table_headers": TABLE_HEADERS,
            "table_rows": [list(r) for r in table_rows],
            "command": " ".join(shlex.quote(a) for a in getattr(sys, "orig_argv", sys.argv)),
            "git": git_commit(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "wall_seconds": round(time.time() - self.started, 1),
            "machine": machine(),
            "load": {
                "loadavg_before": self.load_before,
                "loadavg_after": load_after,
                "cores": cores,
                # 1-min load above half the cores before we started: other work was competing.
                "loaded": bool(self.load_before) and self.load_before[0] > 0.5 * cores,
                "busiest_processes_before": self.busy_before,
                "busiest_processes_after": other_processes_cpu(),
            },
        }


def write_json(result: dict[str, Any], name: str | None = None) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name or result['benchmark']}.json"
    path.write_text(json.dumps(result, indent=2, default=float) + "\n")
    return path


def fmt_ratio(summary: dict[str, float]) -> str:
    return f"{summary['median']:.3f}"


def fmt_spread(summary: dict[str, float]) -> str:
    return (
        f"{summary['min']:.3f}–{summary['max']:.3f} "
        f"(IQR {summary['q25']:.3f}–{summary['q75']:.3f}, n={summary['n']})"
    )


def fmt_rate(summary: dict[str, float], unit: str) -> str:
    return f"{summary['median']:,.0f} {unit}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def meets(value: float, target: str) -> str:
    """'yes'/'no' for a target written '>= x' or '<= x'."""
    op, threshold = target.split()
    ok = value >= float(threshold) if op == ">=" else value <= float(threshold)
    return "yes" if ok else "**no**"
