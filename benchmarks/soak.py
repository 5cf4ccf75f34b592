"""Soak: the online program for N minutes; every process's memory, the replay, and a resume.

    .venv/bin/python -m benchmarks.soak --minutes 60                     # threads, then Ray
    .venv/bin/python -m benchmarks.soak --minutes 60 --launcher ray
    .venv/bin/python -m benchmarks.soak --minutes 3 --launcher threads --name soak_smoke
    .venv/bin/python -m benchmarks.soak --replot benchmarks/results/soak_ray.json

The program is `build_online_program` as `antiphon train` builds it: D4PG (default MoG critic,
every D4PGConfig field an option, as in `antiphon train`) on `dmc:cartpole-swingup`, real Reverb
(with its checkpoints) and MuJoCo, `--actors` actors and the evaluator, a run_dir. The replay is
small (`--max-replay-size`, default 15 000 items) so the table fills in the first minutes and
evicts for the rest of the run. The step limit is out of reach: the run ends on time.

Launchers. `threads`: every node a thread of this process. `ray`: every node a Ray actor (own
process), on a private local Ray instance. `both` (the default): threads first, then Ray, each in
a fresh Python process of its own, one after the other (so 2 x `--minutes`). They are not run
side by side: on a 2-core machine each would load the other and the two records would not be
of the program alone. (Side by side is still possible, two commands with different `--name`.)

Samples, at minute 0 (the moment every node is built) and every `--sample-every` seconds:
- resident memory (RSS; also USS, threads, open files, CPU seconds) of every process. threads:
  the one process. Ray: each node's process -- its PID from `LaunchedRayProgram.describe(label)`
  (every node host serves `describe()`; asked again at every sample, so a restarted node shows
  as a new PID) -- and, as context, this driver, Ray's `raylet` and `gcs_server`, and the sum of
  Ray's other helper processes (all descendants of this process);
- the replay table: items (`current_size`) against `max_size`, items inserted and sampled;
- the counter: actor steps, learner steps, last eval return; the learner's own SGD step count;
- disk bytes of run_dir (checkpoints, replay checkpoints, snapshots, logs).

The record, `benchmarks/results/<name>_<launcher>.json`, is rewritten atomically after every
sample, so a crash leaves the samples so far; Ctrl-C or SIGTERM ends the timed part early, shuts
the program down (final checkpoints) and writes the record (`status: interrupted`, no resume
check). A second signal skips ahead to writing the record.

Growth (`memory_growth`), per process and per series: the analysis window is the last 2/3 of the
run (samples at minute >= last minute / 3: minutes 20..60 of 60, 1..3 of 3), so the start-up
third (JIT, replay filling) is left out. With k = min(5, n // 2) samples at each end of the
window's n samples (at least 1): base = mean of the first k, end = mean of the last k;
  growth % = (end - base) / base x 100     (the headline figure)
  peak %   = (max in window - base) / base x 100, low % = (min in window - base) / base x 100,
  final %  = (last sample - base) / base x 100, slope = least-squares fit over the window.
A process that restarted (a new PID) in the window is flagged: its growth spans two processes.

Resume ("the run ends with its data intact"): after the timed run has stopped (final learner,
counter and replay checkpoints written by the launcher's shutdown), the same program is launched
again on the same run_dir. Right after start it reads the learner's SGD steps, the counter's
actor and learner steps and the replay's items, then waits (up to `--resume-seconds`) until
actors and learner move on, and shuts down. `before` values are read from the live nodes just
before the first shutdown, so a complete final checkpoint gives after >= before; `ok` is true
when each restored value is >= its `before` value and > 0 (the replay restored from its Reverb
checkpoint, not refilled: a refilled table would hold a few hundred items, not ~max_size).
`continued` says whether actors and learner stepped on within `--resume-seconds`.

Nothing here asserts. Figures are context for a leak, not speeds: no ratio is involved.
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import common  # noqa: E402

NAME = "soak"
TASK = "dmc:cartpole-swingup"
WINDOW_FRACTION = 2 / 3  # the analysis window: the last 2/3 of the run
EDGE_SAMPLES = 5  # samples averaged at each end of the window
MB = 2**20
RUN_MARKER = "soak_run.json"  # in a run_dir this benchmark made (and may delete)
CALL_TIMEOUT = 30.0  # seconds for any one read from a node (a stuck node must not stop sampling)
LAUNCHERS = ("threads", "ray")
TABLE_HEADERS = [
    "process",
    "pid",
    "RSS window start MiB",
    "RSS window end MiB",
    "growth %",
    "peak %",
    "low %",
    "final MiB",
    "slope MiB/h",
]


# --------------------------------------------------------------------------------------------
# Analysis (pure; tests/benchmarks/test_soak_analysis.py)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _pct(value: float, base: float) -> float | None:
    return (value - base) / base * 100.0 if base else None


def memory_growth(
    minutes: Sequence[float],
    values: Sequence[float | None],
    window_fraction: float = WINDOW_FRACTION,
    edge: int = EDGE_SAMPLES,
) -> dict[str, Any] | None:
    """Growth of `values` (sampled at `minutes`) over the last `window_fraction` of the run.

    Samples whose value is None (a failed read) are dropped first. The window holds the samples
    at minute >= last minute x (1 - window_fraction); k = min(edge, n // 2), at least 1, samples
    at each end. Returns None when no sample is left; percentages are None when the base is 0.
    """
    points = [(float(m), float(v)) for m, v in zip(minutes, values, strict=True) if v is not None]
    if not points:
        return None
    last = points[-1][0]
    start = last - last * window_fraction
    window = [(m, v) for m, v in points if m >= start - 1e-6]
    n = len(window)
    k = max(1, min(edge, n // 2))
    ys = [v for _, v in window]
    base, end = _mean(ys[:k]), _mean(ys[-k:])
    slope = None
    if n >= 2:
        xs = [m for m, _ in window]
        mx, my = _mean(xs), _mean(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        if sxx > 0:
            slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx * 60.0
    return {
        "window_start_minute": window[0][0],
        "window_end_minute": window[-1][0],
        "samples_in_window": n,
        "edge_samples": k,
        "base": base,
        "end": end,
        "max": max(ys),
        "min": min(ys),
        "final": ys[-1],
        "growth_pct": _pct(end, base),
        "peak_pct": _pct(max(ys), base),
        "low_pct": _pct(min(ys), base),
        "final_pct": _pct(ys[-1], base),
        "slope_per_hour": slope,
        "slope_pct_per_hour": (slope / base * 100.0) if slope is not None and base else None,
    }


def summarize(record: dict[str, Any]) -> dict[str, Any]:
    """The summary of a record's samples: growth per process and series, replay, steps."""
    samples = record.get("samples", [])
    minutes = [s["minute"] for s in samples]
    labels: list[str] = []
    for s in samples:
        labels += [label for label in s.get("processes", {}) if label not in labels]
    processes = {}
    for label in labels:
        rows = [s.get("processes", {}).get(label) or {} for s in samples]
        pids = []
        for row in rows:
            if row.get("pid") is not None and row["pid"] not in pids:
                pids.append(row["pid"])
        rss = memory_growth(minutes, [r.get("rss") for r in rows])
        window_start = rss["window_start_minute"] if rss else 0.0
        window_pids = {
            r["pid"]
            for m, r in zip(minutes, rows, strict=True)
            if m >= window_start - 1e-6 and r.get("pid") is not None
        }
        processes[label] = {
            "pids": pids,
            "restarted_in_window": len(window_pids) > 1,
            "rss": rss,
            "uss": memory_growth(minutes, [r.get("uss") for r in rows]),
            "threads": memory_growth(minutes, [r.get("threads") for r in rows]),
            "fds": memory_growth(minutes, [r.get("fds") for r in rows]),
        }
    replay = [s.get("replay") or {} for s in samples]
    sizes = [(m, r["size"]) for m, r in zip(minutes, replay, strict=True) if "size" in r]
    max_size = next((r["max_size"] for r in replay if "max_size" in r), None)
    full_at = next((m for m, size in sizes if max_size and size >= max_size), None)
    last_replay = next((r for r in reversed(replay) if "size" in r), {})
    counts = next((s["counts"] for s in reversed(samples) if s.get("counts")), {})
    evals = [s.get("eval_return") for s in samples if s.get("eval_return") is not None]
    return {
        "minutes_run": minutes[-1] if minutes else 0.0,
        "samples": len(samples),
        "window_fraction": WINDOW_FRACTION,
        "edge_samples": EDGE_SAMPLES,
        "processes": processes,
        "replay": {
            "max_size": max_size,
            "max_size_observed": max((size for _, size in sizes), default=None),
            "final_size": last_replay.get("size"),
            "full_from_minute": full_at,
            "inserted": last_replay.get("inserted"),
            "sampled": last_replay.get("sampled"),
            "evicted": (
                last_replay["inserted"] - last_replay["size"]
                if "inserted" in last_replay and "size" in last_replay
                else None
            ),
        },
        "actor_steps": counts.get("actor_steps"),
        "learner_steps": counts.get("learner_steps"),
        "eval_return_last": evals[-1] if evals else None,
        "eval_return_best": max(evals) if evals else None,
        "errors": sum(len(s.get("errors", [])) for s in samples),
    }


# --------------------------------------------------------------------------------------------
# Output: table, progress line, figure, atomic JSON


def _f(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def table_rows(summary: dict[str, Any]) -> list[list[str]]:
    rows = []
    for label, p in summary["processes"].items():
        rss = p["rss"]
        if rss is None:
            rows.append([label, "-", "-", "-", "-", "-", "-", "-", "-"])
            continue
        pid = ",".join(str(x) for x in p["pids"][-3:])
        if p["restarted_in_window"]:
            pid += " (restarted)"
        slope = rss["slope_per_hour"] / MB if rss["slope_per_hour"] is not None else None
        rows.append(
            [
                label,
                pid,
                _f(rss["base"] / MB),
                _f(rss["end"] / MB),
                _f(rss["growth_pct"], "+.2f"),
                _f(rss["peak_pct"], "+.2f"),
                _f(rss["low_pct"], "+.2f"),
                _f(rss["final"] / MB),
                _f(slope, "+.1f"),
            ]
        )
    return rows


def run_rows(record: dict[str, Any]) -> list[list[str]]:
    s = record["summary"]
    replay = s["replay"]
    rows = [
        ["status", record.get("status", "?")],
        ["launcher", record["launcher"]],
        ["minutes run (samples)", f"{s['minutes_run']:.1f} ({s['samples']})"],
        [
            "analysis window",
            f"minutes >= {s['minutes_run'] / 3:.1f}; ends: mean of {EDGE_SAMPLES} samples "
            "(fewer in short runs)",
        ],
        [
            "replay max size observed / max_size",
            f"{_f(replay['max_size_observed'], ',.0f')} / {_f(replay['max_size'], ',.0f')}"
            + (
                f" (full from minute {replay['full_from_minute']:.1f})"
                if replay["full_from_minute"] is not None
                else " (never full)"
            ),
        ],
        [
            "replay items inserted / evicted / sampled",
            f"{_f(replay['inserted'], ',.0f')} / {_f(replay['evicted'], ',.0f')} / "
            f"{_f(replay['sampled'], ',.0f')}",
        ],
        [
            "actor steps / learner steps",
            f"{_f(s['actor_steps'], ',.0f')} / {_f(s['learner_steps'], ',.0f')}",
        ],
        [
            "eval return last (best)",
            f"{_f(s['eval_return_last'])} ({_f(s['eval_return_best'])})",
        ],
        ["sample read errors", str(s["errors"])],
    ]
    if record.get("restarts"):
        rows.append(["node restarts", json.dumps(record["restarts"])])
    if record.get("node_error"):
        rows.append(["node error", record["node_error"][:200]])
    if record.get("error"):
        rows.append(["error", record["error"].strip().splitlines()[-1][:200]])
    shutdown = record.get("shutdown") or {}
    if shutdown:
        rows.append(
            [
                "shutdown",
                f"{_f(shutdown.get('seconds'))} s; processes left after it: "
                f"{len(shutdown.get('leftover_processes', []))}",
            ]
        )
    resume = record.get("resume") or {}
    if "ok" in resume:
        rows.append(
            [
                "resume: data intact",
                f"{'yes' if resume['ok'] else '**no**'} — learner SGD steps "
                f"{resume['learner_steps_before']} -> {resume['learner_steps_after_restore']}, "
                f"actor steps {_f(resume['actor_steps_before'], '.0f')} -> "
                f"{_f(resume['actor_steps_after_restore'], '.0f')}, replay items "
                f"{resume['replay_items_before']} -> {resume['replay_items_after_restore']}; "
                f"continued: {'yes' if resume.get('continued') else 'no'}",
            ]
        )
    elif resume:
        rows.append(["resume", resume.get("skipped") or resume.get("error", "?")[:200]])
    return rows


def markdown(record: dict[str, Any]) -> str:
    return (
        common.markdown_table(TABLE_HEADERS, table_rows(record["summary"]))
        + "\n\n"
        + common.markdown_table(["figure", "value"], run_rows(record))
    )


def progress_line(record: dict[str, Any], sample: dict[str, Any]) -> str:
    minutes = record["minutes"]
    procs = sample.get("processes", {})
    first = record["samples"][0].get("processes", {})
    parts = []
    for label, p in procs.items():
        if label in ("ray_other", "gcs_server", "raylet") or p.get("rss") is None:
            continue
        rss0 = (first.get(label) or {}).get("rss")
        delta = f" {_pct(p['rss'], rss0):+.0f}%" if rss0 else ""
        parts.append(f"{label} {p['rss'] / MB:.0f}{delta}")
    replay = sample.get("replay") or {}
    counts = sample.get("counts") or {}
    return (
        f"[soak {record['launcher']}] {sample['minute']:5.1f}/{minutes:g} min | RSS MiB "
        + ", ".join(parts)
        + f" | replay {replay.get('size', '?')}/{replay.get('max_size', '?')}"
        + f" | actor {counts.get('actor_steps', 0):.0f}"
        + f" learner {counts.get('learner_steps', 0):.0f}"
        + f" | eval {_f(sample.get('eval_return'))}"
        + (f" | {len(sample['errors'])} read error(s)" if sample.get("errors") else "")
    )


def write_record(record: dict[str, Any], path: Path) -> None:
    """Atomic: a reader (or a crash) sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1, default=float)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def plot(record: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = record["samples"]
    minutes = [s["minute"] for s in samples]
    summary = record["summary"]
    fig, (ax_rss, ax_replay, ax_steps) = plt.subplots(
        3, 1, figsize=(10, 11), sharex=True, gridspec_kw={"height_ratios": [3, 1.4, 1.4]}
    )
    for label, p in summary["processes"].items():
        values = [((s.get("processes", {}).get(label) or {}).get("rss")) for s in samples]
        xs = [m for m, v in zip(minutes, values, strict=True) if v is not None]
        ys = [v / MB for v in values if v is not None]
        growth = p["rss"]["growth_pct"] if p["rss"] else None
        ax_rss.plot(xs, ys, marker=".", label=f"{label} ({_f(growth, '+.1f')} %)")
    if minutes:
        ax_rss.axvspan(minutes[-1] / 3, minutes[-1], color="0.9", zorder=0, label="window")
    ax_rss.set_ylabel("RSS (MiB)")
    ax_rss.set_title(
        f"soak, {record['launcher']} launcher: {record['config']['environment']}, "
        f"{record['config']['actors']} actor(s), D4PG {record['config']['d4pg']['critic_type']}"
        f" — {record.get('git', {}).get('commit', '')[:10]}"
    )
    ax_rss.legend(fontsize=7, ncol=2, title="growth over window", title_fontsize=7)
    ax_rss.grid(alpha=0.3)
    sizes = [(s.get("replay") or {}).get("size") for s in samples]
    ax_replay.plot(
        [m for m, v in zip(minutes, sizes, strict=True) if v is not None],
        [v for v in sizes if v is not None],
        marker=".",
        label="items",
    )
    if summary["replay"]["max_size"]:
        ax_replay.axhline(summary["replay"]["max_size"], color="red", ls="--", label="max_size")
    ax_replay.set_ylabel("replay items")
    ax_replay.legend(fontsize=7)
    ax_replay.grid(alpha=0.3)
    for key in ("actor_steps", "learner_steps"):
        values = [(s.get("counts") or {}).get(key) for s in samples]
        ax_steps.plot(
            [m for m, v in zip(minutes, values, strict=True) if v is not None],
            [v for v in values if v is not None],
            label=key,
        )
    ax_steps.set_ylabel("steps")
    ax_steps.set_xlabel("minutes since every node was built")
    ax_steps.grid(alpha=0.3)
    evals = [(m, s.get("eval_return")) for m, s in zip(minutes, samples, strict=True)]
    evals = [(m, v) for m, v in evals if v is not None]
    ax_eval = ax_steps.twinx()
    if evals:
        ax_eval.plot(*zip(*evals, strict=True), color="green", marker="o", ms=3, label="eval")
    ax_eval.set_ylabel("eval return", color="green")
    lines = ax_steps.get_legend_handles_labels()
    more = ax_eval.get_legend_handles_labels()
    ax_steps.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------
# Signals


class _Stop:
    """Set by the first SIGINT/SIGTERM; the second raises KeyboardInterrupt (skip ahead).

    While a program is starting, the first signal raises at once: the launcher then stops
    what it had started (a start-up that hangs can still be ended)."""

    event = threading.Event()
    signals = 0
    last_signum = signal.SIGINT

    eager = False  # while a program starts: the first signal raises at once

    @classmethod
    def handler(cls, signum, frame):
        cls.signals += 1
        cls.last_signum = signum
        cls.event.set()
        if cls.signals == 1 and not cls.eager:
            print(
                f"\n[soak] signal {signum}: stopping (final checkpoints, then the record); "
                "again to skip ahead",
                file=sys.stderr,
                flush=True,
            )
            return
        raise KeyboardInterrupt(f"signal {signum}")

    @classmethod
    def install(cls) -> None:
        # Again after Ray starts: ray.init() replaces this process's SIGTERM handler with one
        # that kills Ray's processes and exits (no final checkpoints).
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, cls.handler)
            signal.signal(signal.SIGTERM, cls.handler)


# --------------------------------------------------------------------------------------------
# Reading the running program


class _Reader:
    """Runs reads with a timeout, on a few worker threads (a stuck node call is abandoned)."""

    def __init__(self):
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="soak-read")

    def __call__(self, fn: Callable[[], Any], timeout: float = CALL_TIMEOUT) -> Any:
        return self._pool.submit(fn).result(timeout=timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _process_row(pid: int) -> dict[str, Any]:
    import psutil

    proc = psutil.Process(pid)
    with proc.oneshot():
        mem = proc.memory_info()
        times = proc.cpu_times()
        row = {
            "pid": pid,
            "rss": int(mem.rss),
            "shared": int(getattr(mem, "shared", 0)),
            "threads": proc.num_threads(),
            "fds": proc.num_fds(),
            "cpu_seconds": round(times.user + times.system, 1),
        }
    try:
        row["uss"] = int(proc.memory_full_info().uss)
    except (psutil.AccessDenied, AttributeError):
        row["uss"] = None
    return row


def _replay_address(program) -> str:
    from antiphon.replay import clients

    return clients.resolve_address(program.groups["replay"][0].handle.dereference())


def _replay_info(address: str) -> dict[str, Any]:
    import reverb

    from antiphon.agents.d4pg.builder import REPLAY_TABLE

    info = reverb.Client(address).server_info(timeout=int(CALL_TIMEOUT))[REPLAY_TABLE]
    limiter = info.rate_limiter_info
    return {
        "size": int(info.current_size),
        "max_size": int(info.max_size),
        "inserted": int(limiter.insert_stats.completed),
        "sampled": int(limiter.sample_stats.completed),
        "episodes": int(info.num_episodes),
        "deleted_episodes": int(info.num_deleted_episodes),
    }


def _disk_bytes(run_dir: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for root, _, files in os.walk(run_dir):
        rel = os.path.relpath(root, run_dir)
        top = "." if rel == "." else rel.split(os.sep)[0]
        for name in files:
            try:
                totals[top] = totals.get(top, 0) + os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return totals


def _ray_system_pids(node_pids: set[int]) -> dict[str, list[int]]:
    """This driver's descendants that are not nodes, by kind (raylet, gcs_server, other)."""
    import psutil

    kinds: dict[str, list[int]] = {"raylet": [], "gcs_server": [], "ray_other": []}
    for child in psutil.Process().children(recursive=True):
        if child.pid in node_pids:
            continue
        try:
            name = child.name()
        except psutil.Error:
            continue
        kind = name if name in ("raylet", "gcs_server") else "ray_other"
        kinds[kind].append(child.pid)
    return kinds


class Sampler:
    def __init__(self, launcher: str, launched, program, run_dir: str, reader: _Reader):
        self.launcher = launcher
        self.launched = launched
        self.program = program
        self.run_dir = run_dir
        self.read = reader
        self.pids: dict[str, int] = {}

    def node_pids(self, errors: list[str]) -> dict[str, int]:
        if self.launcher == "threads":
            return {"program": os.getpid()}
        for label in self.launched.program_labels:
            try:
                self.pids[label] = int(
                    self.read(lambda lb=label: self.launched.describe(lb))["pid"]
                )
            except Exception as e:  # noqa: BLE001 - a restarting node: keep its last PID
                errors.append(f"describe {label}: {e!r}"[:300])
        return dict(self.pids)

    def processes(self, errors: list[str]) -> dict[str, Any]:
        import psutil

        pids = self.node_pids(errors)
        rows: dict[str, Any] = {}
        for label, pid in pids.items():
            try:
                rows[label] = _process_row(pid)
            except psutil.Error as e:
                rows[label] = {"pid": pid, "rss": None}
                errors.append(f"process {label} ({pid}): {e!r}"[:300])
        if self.launcher == "ray":
            rows["driver"] = _process_row(os.getpid())
            for kind, kind_pids in _ray_system_pids(set(pids.values())).items():
                parts = []
                for pid in kind_pids:
                    try:
                        parts.append(_process_row(pid))
                    except psutil.Error:
                        continue
                if not parts:
                    continue
                if len(parts) == 1 and kind != "ray_other":
                    rows[kind] = parts[0]
                else:  # summed; the PID field is the count of processes
                    rows[kind] = {
                        "pid": None,
                        "count": len(parts),
                        **{
                            key: sum(p[key] or 0 for p in parts)
                            for key in ("rss", "shared", "uss", "threads", "fds", "cpu_seconds")
                        },
                    }
        return rows

    def sample(self, minute: float, elapsed_minute: float) -> dict[str, Any]:
        errors: list[str] = []
        sample: dict[str, Any] = {
            "minute": round(minute, 4),
            "elapsed_minute": round(elapsed_minute, 3),
            "time": round(time.time(), 1),
        }
        sample["processes"] = self.processes(errors)
        try:
            sample["replay"] = self.read(lambda: _replay_info(_replay_address(self.program)))
        except Exception as e:  # noqa: BLE001
            errors.append(f"replay: {e!r}"[:300])
        counter = self.launched.client("counter")
        try:
            status = self.read(counter.status)
            sample["counts"] = {
                k: v for k, v in status.items() if k.endswith(("_steps", "_episodes"))
            }
            sample["eval_return"] = status.get("eval_return")
            sample["actor_return"] = status.get("actor_return")
        except Exception as e:  # noqa: BLE001
            errors.append(f"counter: {e!r}"[:300])
        try:
            sample["learner_sgd_steps"] = int(self.read(self.launched.client("learner").sgd_steps))
        except Exception as e:  # noqa: BLE001
            errors.append(f"learner: {e!r}"[:300])
        if self.launcher == "ray":
            sample["restarts"] = dict(self.launched.restarts)
        sample["disk_bytes"] = _disk_bytes(self.run_dir)
        sample["loadavg"] = common.load_average()
        sample["errors"] = errors
        return sample


# --------------------------------------------------------------------------------------------
# Running


class UsageError(Exception):
    """Bad input: one line on stderr, exit status 2."""


def _prepare_run_dir(run_dir: str) -> None:
    if os.path.exists(run_dir):
        if not os.path.exists(os.path.join(run_dir, RUN_MARKER)):
            raise UsageError(
                f"run_dir '{run_dir}' exists and was not made by this benchmark "
                f"(no {RUN_MARKER}); give another --run-dir"
            )
        shutil.rmtree(run_dir)
    os.makedirs(run_dir)


def _launch(program, launcher: str):
    from antiphon import launch

    _Stop.eager = True
    try:
        if _Stop.event.is_set():
            raise KeyboardInterrupt("stopped before start")
        launched = launch.launch(program, launch_type=launcher)
    finally:
        _Stop.eager = False
    _Stop.install()
    return launched


def _children() -> list[Any]:
    import psutil

    try:
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []


def _shutdown(launched) -> dict[str, Any]:
    """Shut the program down (final checkpoints), then make sure no child process is left."""
    import psutil

    start = time.monotonic()
    result: dict[str, Any] = {}
    try:
        launched.shutdown()
    except BaseException as e:  # noqa: BLE001 - whatever happens, look for leftovers below
        result["error"] = repr(e)
    result["seconds"] = round(time.monotonic() - start, 1)
    deadline = time.monotonic() + 15
    left = _children()
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = [p for p in left if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    described = []
    for proc in left:
        try:
            described.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
            proc.terminate()
        except psutil.Error:
            pass
    if left:
        _, alive = psutil.wait_procs(left, timeout=5)
        for proc in alive:
            try:
                proc.kill()
            except psutil.Error:
                pass
    result["leftover_processes"] = described  # still running 15 s after shutdown; ended here
    return result


def _read_before(launched, program, reader: _Reader) -> dict[str, Any]:
    counts = reader(launched.client("counter").get_counts)
    return {
        "learner_steps": int(reader(launched.client("learner").sgd_steps)),
        "actor_steps": counts.get("actor_steps"),
        "counter_learner_steps": counts.get("learner_steps"),
        "replay_items": int(reader(lambda: _replay_info(_replay_address(program)))["size"]),
    }


def resume_check(make_program, launcher: str, before: dict[str, Any], seconds: float) -> dict:
    """Launches the program again on the same run_dir and reads what came back."""
    reader = _Reader()
    program = make_program()
    result: dict[str, Any] = {
        "learner_steps_before": before["learner_steps"],
        "actor_steps_before": before["actor_steps"],
        "counter_learner_steps_before": before["counter_learner_steps"],
        "replay_items_before": before["replay_items"],
    }
    start = time.monotonic()
    launched = _launch(program, launcher)
    result["launch_seconds"] = round(time.monotonic() - start, 1)
    try:
        # The replay first: actors insert as soon as they are built.
        result["replay_items_after_restore"] = int(
            reader(lambda: _replay_info(_replay_address(program)))["size"]
        )
        counts = reader(launched.client("counter").get_counts)
        result["actor_steps_after_restore"] = counts.get("actor_steps")
        result["counter_learner_steps_after_restore"] = counts.get("learner_steps")
        learner_steps = int(reader(launched.client("learner").sgd_steps))
        result["learner_steps_after_restore"] = learner_steps
        restored = {
            "learner": learner_steps >= before["learner_steps"] > 0,
            "actor_steps": (counts.get("actor_steps") or 0) >= (before["actor_steps"] or 0) > 0,
            "replay": result["replay_items_after_restore"] >= before["replay_items"] > 0,
        }
        result["restored"] = restored
        result["ok"] = all(restored.values())
        deadline = time.monotonic() + seconds
        actor_moved = learner_moved = False
        while time.monotonic() < deadline and not _Stop.event.is_set():
            counts = reader(launched.client("counter").get_counts)
            actor_moved = (counts.get("actor_steps") or 0) > (
                result["actor_steps_after_restore"] or 0
            )
            learner_moved = int(reader(launched.client("learner").sgd_steps)) > learner_steps
            if actor_moved and learner_moved:
                break
            _Stop.event.wait(1.0)
        result["continued"] = actor_moved and learner_moved
        result["continued_after_seconds"] = round(time.monotonic() - start, 1)
        result["actor_steps_at_end"] = counts.get("actor_steps")
    finally:
        result["shutdown"] = _shutdown(launched)
        reader.close()
    try:
        launched.wait(0)
    except Exception as e:  # noqa: BLE001
        result["node_error"] = str(e)[:1000]
    return result


def run(args: argparse.Namespace, launcher: str, config) -> int:
    from antiphon.agents.d4pg.builder import D4PGBuilder
    from antiphon.core.types import make_environment_spec
    from antiphon.environments import make_environment
    from antiphon.launch import experiments

    name = f"{args.name}_{launcher}"
    json_path = Path(args.results_dir) / f"{name}.json"
    run_dir = args.run_dir or os.path.join("runs", "soak", name)
    _prepare_run_dir(run_dir)
    recorder = common.Recorder(name)
    experiment = experiments.OnlineExperiment(
        environment=args.env,
        max_actor_steps=10**12,  # out of reach: the run ends on time
        run_dir=run_dir,
        num_actors=args.actors,
        seed=args.seed,
        action_repeat=args.action_repeat,
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        checkpoint_every_seconds=args.checkpoint_every,
        replay_checkpoint=True,
    )
    builder = D4PGBuilder(config)
    environment = make_environment(args.env, seed=args.seed, action_repeat=args.action_repeat)
    env_spec = make_environment_spec(environment)
    environment.close()
    settings = {
        "environment": args.env,
        "launcher": launcher,
        "actors": args.actors,
        "seed": args.seed,
        "action_repeat": args.action_repeat,
        "eval_every": args.eval_every,
        "eval_episodes": args.eval_episodes,
        "checkpoint_every_seconds": args.checkpoint_every,
        "sample_every_seconds": args.sample_every,
        "resume_seconds": args.resume_seconds,
        "run_dir": run_dir,
        "d4pg": dataclasses.asdict(config),
    }
    with open(os.path.join(run_dir, RUN_MARKER), "w") as f:
        json.dump(settings, f, indent=1)

    def make_program():
        return experiments.build_online_program(builder, experiment, env_spec)

    record: dict[str, Any] = {
        **recorder.finish({}),
        "launcher": launcher,
        "minutes": args.minutes,
        "config": settings,
        "definitions": {
            "window": "samples at minute >= last minute x (1 - 2/3): the last 2/3 of the run",
            "k": f"min({EDGE_SAMPLES}, samples in window // 2), at least 1",
            "growth_pct": "(mean of last k - mean of first k samples of the window) / mean of "
            "first k x 100",
            "peak_pct": "(max in window - mean of first k) / mean of first k x 100",
            "low_pct": "(min in window - mean of first k) / mean of first k x 100",
            "final_pct": "(last sample - mean of first k) / mean of first k x 100",
            "slope_per_hour": "least-squares slope over the window, bytes per hour",
            "minute": "the sample's scheduled time, minutes since launch returned (every node "
            "built); elapsed_minute: when it was taken",
            "resume.ok": "learner SGD steps, counter actor steps and replay items after restore "
            "each >= the value read from the live nodes just before the timed run's shutdown, "
            "and > 0",
        },
        "status": "starting",
        "samples": [],
    }
    record["table_headers"] = TABLE_HEADERS
    record.pop("figures", None)  # the figures are in "summary"

    def save(status: str | None = None) -> None:
        if status:
            record["status"] = status
        record["summary"] = summarize(record)
        record["table_rows"] = table_rows(record["summary"])
        record["wall_seconds"] = round(time.time() - recorder.started, 1)
        write_record(record, json_path)

    print(
        f"[soak {launcher}] {args.minutes:g} min of D4PG ({config.critic_type}) on {args.env}, "
        f"{args.actors} actor(s), max_replay_size {config.max_replay_size}; run_dir {run_dir}; "
        f"record {json_path}",
        flush=True,
    )
    save()
    reader = _Reader()
    launched = None
    before = None
    status = "complete"
    try:
        start = time.monotonic()
        launched = _launch(make_program(), launcher)
        record["launch_seconds"] = round(time.monotonic() - start, 1)
        program = launched.program
        sampler = Sampler(launcher, launched, program, run_dir, reader)
        t0 = time.monotonic()
        total = args.minutes * 60.0
        next_at = 0.0
        record["status"] = "running"
        while True:
            sample = sampler.sample(next_at / 60.0, (time.monotonic() - t0) / 60.0)
            record["samples"].append(sample)
            if launcher == "ray":
                record["restarts"] = sample.get("restarts")
            save()
            print(progress_line(record, sample), flush=True)
            if time.monotonic() - t0 >= total - 1.0:
                break
            if launched.stop_requested:
                status = "program_stopped"  # a node failed (the error is read after shutdown)
                break
            next_at = min(next_at + args.sample_every, total)
            while time.monotonic() - t0 < next_at:
                if _Stop.event.wait(min(0.5, max(0.0, next_at - (time.monotonic() - t0)))):
                    break
                if launched.stop_requested:
                    break
            if _Stop.event.is_set():
                status = "interrupted"
                break
        if status == "complete":
            before = _read_before(launched, program, reader)
    except KeyboardInterrupt:
        status = "interrupted"
    except BaseException as e:  # noqa: BLE001 - recorded; the record is written below
        status = "failed"
        record["error"] = "".join(traceback.format_exception(e))[-4000:]
        if isinstance(e, SystemExit):  # Ray's own SIGTERM handler (during start-up)
            status = "interrupted"
    finally:
        if launched is not None:
            print(f"[soak {launcher}] shutting down (final checkpoints)...", flush=True)
            record["shutdown"] = _shutdown(launched)
            try:
                launched.wait(0)
            except Exception as e:  # noqa: BLE001
                record["node_error"] = str(e)[:2000]
        reader.close()
        save(status)
    if status == "complete" and before is not None:
        print(f"[soak {launcher}] resume check on {run_dir} ...", flush=True)
        try:
            record["resume"] = resume_check(make_program, launcher, before, args.resume_seconds)
        except KeyboardInterrupt:
            record["resume"] = {"skipped": "interrupted"}
        except Exception as e:  # noqa: BLE001
            record["resume"] = {"error": "".join(traceback.format_exception(e))[-3000:]}
    else:
        record["resume"] = {"skipped": f"timed run ended with status {status}"}
    try:
        record["eval_curve"] = _eval_curve(run_dir)
    except Exception:  # noqa: BLE001, S110 - context only
        pass
    final = recorder.finish({})
    record["load"] = final["load"]
    save()
    png = json_path.with_suffix(".png")
    try:
        plot(record, png)
    except Exception as e:  # noqa: BLE001 - the JSON is the record; the figure can be redrawn
        print(f"[soak {launcher}] plotting failed: {e!r} (--replot {json_path})", flush=True)
    text = markdown(record)
    json_path.with_suffix(".md").write_text(text + "\n")
    print()
    print(text)
    print(f"\n[soak {launcher}] {json_path}, {png}", flush=True)
    return 0 if status == "complete" else 1


def _eval_curve(run_dir: str) -> list[list[float]]:
    import csv

    with open(os.path.join(run_dir, "logs", "evaluator.csv")) as f:
        return [
            [float(r["actor_steps"]), float(r["eval_return_mean"]), float(r["wall_seconds"])]
            for r in csv.DictReader(f)
        ]


def _run_both(argv: list[str]) -> int:
    """Each launcher in a fresh process of its own, one after the other."""
    rest = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "--launcher":
            skip = i + 1 < len(argv)
            continue
        if arg.startswith("--launcher="):
            continue
        rest.append(arg)
    status = 0
    for launcher in LAUNCHERS:
        if _Stop.event.is_set():
            print(f"[soak] interrupted: {launcher} not run", flush=True)
            status = status or 1
            continue
        cmd = [sys.executable, "-m", "benchmarks.soak", *rest, "--launcher", launcher]
        print("[soak] " + " ".join(cmd), flush=True)
        # Its own session: a Ctrl-C reaches this process only, which passes each signal on
        # once (the child's first signal stops it cleanly, a second skips ahead).
        child = subprocess.Popen(cmd, cwd=common.REPO_ROOT, start_new_session=True)
        forwarded = 0
        while True:
            try:
                code = child.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                pass
            except KeyboardInterrupt:
                pass
            if _Stop.signals > forwarded:
                child.send_signal(_Stop.last_signum)
                forwarded += 1
        status = status or code
    return status


def main(argv: list[str] | None = None) -> int:
    from antiphon.agents.d4pg.config import D4PGConfig
    from antiphon.launch import cli

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--minutes", type=float, default=60.0, help="per launcher (default 60)")
    parser.add_argument("--launcher", choices=[*LAUNCHERS, "both"], default="both")
    parser.add_argument("--name", default=NAME, help="records are <name>_<launcher>.json")
    parser.add_argument("--results-dir", default=str(common.RESULTS_DIR))
    parser.add_argument(
        "--run-dir", default=None, help="default runs/soak/<name>_<launcher> (made fresh)"
    )
    parser.add_argument("--env", default=TASK)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--action-repeat", type=int, default=1)
    parser.add_argument("--eval-every", type=int, default=50_000, help="actor steps")
    parser.add_argument("--eval-episodes", type=int, default=3)
    parser.add_argument("--checkpoint-every", type=float, default=120.0, help="seconds")
    parser.add_argument("--sample-every", type=float, default=60.0, help="seconds")
    parser.add_argument("--resume-seconds", type=float, default=120.0)
    parser.add_argument("--replot", default=None, metavar="JSON", help="redraw a record's PNG")
    cli.add_config_options(parser, D4PGConfig)
    args = parser.parse_args(argv)
    if args.replot:
        path = Path(args.replot)
        record = json.loads(path.read_text())
        record["summary"] = summarize(record)
        print(plot(record, path.with_suffix(".png")))
        print(markdown(record))
        return 0
    if args.minutes <= 0 or args.sample_every <= 0 or args.actors < 1:
        parser.error("--minutes, --sample-every must be > 0 and --actors >= 1")
    if not any(k == "config.max_replay_size" for k in vars(args)):
        setattr(args, "config.max_replay_size", 15_000)
    try:
        config = cli.config_from_args(args, D4PGConfig)
    except cli.UsageError as e:
        parser.error(str(e))
    _Stop.install()
    # `kill -USR1 PID` prints every thread's Python stack (a run that seems stuck).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    if args.launcher == "both":
        per = args.minutes + 3
        print(
            f"[soak] threads, then ray: {args.minutes:g} min each (~{2 * per:.0f} min in all "
            "with start-up, shutdown and the resume checks)",
            flush=True,
        )
        return _run_both(argv)
    try:
        return run(args, args.launcher, config)
    except UsageError as e:
        print(f"soak: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
