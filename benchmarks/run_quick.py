"""The quick benchmarks (`make bench`): every performance ratio that runs on this machine alone.

Each benchmark runs in its own fresh process (`python -m benchmarks.<name>`), one after another,
so no Reverb server, prefetch thread or XLA thread pool of one leaks into the next. Each writes
benchmarks/results/<name>.json; this script then writes benchmarks/results/quick.md (one table)
and quick.json (the run's summary) and prints the table. It never asserts: a missed target or a
benchmark that failed is reported in the table, and the exit status is 0 unless nothing ran.

    .venv/bin/python -m benchmarks.run_quick [--only actor_efficiency adder_efficiency ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common

# name -> seconds allowed (the whole run must stay under 10 minutes on 2 loaded cores).
BENCHMARKS = {
    "actor_efficiency": 100,
    "adder_efficiency": 70,
    "learner_efficiency": 270,
    "learner_data_wait": 130,
}


def _run_one(name: str, timeout: float, log_dir: Path) -> tuple[dict | None, str, float]:
    """Runs benchmark `name` in a subprocess; (its JSON record or None, error text, seconds)."""
    path = common.RESULTS_DIR / f"{name}.json"
    before = path.stat().st_mtime if path.exists() else None
    log = log_dir / f"{name}.log"
    start = time.time()
    with open(log, "w") as out:
        try:
            proc = subprocess.run(
                [sys.executable, "-m", f"benchmarks.{name}"],
                cwd=common.REPO_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
            error = "" if proc.returncode == 0 else f"exit status {proc.returncode}"
        except subprocess.TimeoutExpired:
            error = f"timed out after {timeout:.0f} s"
    seconds = time.time() - start
    fresh = path.exists() and path.stat().st_mtime != before
    if error or not fresh:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        return None, (error or "no result written") + ": " + " / ".join(tail)[-600:], seconds
    return json.loads(path.read_text()), "", seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    args = parser.parse_args()

    start = time.time()
    load_before = common.load_average()
    busy_before = common.other_processes_cpu()
    rows, records, failures, seconds = [], {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="antiphon-bench-") as log_dir:
        for name in args.only:
            print(f"[run_quick] {name} ...", flush=True)
            record, error, took = _run_one(name, BENCHMARKS[name], Path(log_dir))
            seconds[name] = round(took, 1)
            if record is None:
                failures[name] = error
                rows.append([name, "-", "-", "-", "failed", error.replace("|", "/")[:300]])
                print(f"[run_quick] {name} FAILED ({error[:200]})", flush=True)
                continue
            records[name] = record
            rows.extend(record["table_rows"])
            print(f"[run_quick] {name} done in {took:.0f} s", flush=True)
    total = time.time() - start
    load_after = common.load_average()
    machine = common.machine()
    git = common.git_commit()
    cores = os.cpu_count() or 1
    loaded = bool(load_before) and load_before[0] > 0.5 * cores
    command = " ".join([".venv/bin/python -m benchmarks.run_quick", *sys.argv[1:]])
    table = common.markdown_table(common.TABLE_HEADERS, rows)
    header = [
        "# antiphon quick benchmarks",
        "",
        f"- command: `{command}` (`make bench`)",
        f"- git: {git['commit']}{' (uncommitted changes)' if git['dirty'] else ''}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; total {total:.0f} s "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in seconds.items())})",
        f"- machine: {machine['cpu_model']}, {machine['cpu_count']} cores "
        f"({machine['usable_cores']} usable), GPU: {machine['gpu'] or 'none'}, "
        f"JAX backend {machine['jax_backend']}, jax {machine['versions'].get('jax')}, "
        f"dm-reverb {machine['versions'].get('dm-reverb')}",
        f"- load average before {load_before}, after {load_after}"
        + (
            " — **machine loaded by other work**, see busiest processes in each JSON"
            if loaded
            else ""
        ),
        f"- thread settings: {machine['thread_env'] or 'defaults (none set)'}, same for both sides",
        "",
        "Every figure is a ratio of two sides measured in the same process, interleaved, "
        "median over repeats with the spread (min–max and inter-quartile range); definitions "
        "in /work/shared/BENCHMARKS.md and each module's docstring, raw rates in "
        "benchmarks/results/<name>.json.",
        "",
    ]
    notes = _notes(records)
    text = "\n".join(header) + "\n" + table + "\n"
    if notes:
        text += "\n" + "\n".join(notes) + "\n"
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (common.RESULTS_DIR / "quick.md").write_text(text)
    common.write_json(
        {
            "benchmark": "quick",
            "command": command,
            "git": git,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "total_seconds": round(total, 1),
            "seconds": seconds,
            "machine": machine,
            "load": {
                "loadavg_before": load_before,
                "loadavg_after": load_after,
                "loaded": loaded,
                "busiest_processes_before": busy_before,
            },
            "table_headers": common.TABLE_HEADERS,
            "table_rows": rows,
            "failures": failures,
        }
    )
    print()
    print(text)
    return 0 if records else 1


def _notes(records: dict) -> list[str]:
    """A few context lines: where the actor's time goes, the adder's bare-writer breakdown."""
    notes = []
    actor = records.get("actor_efficiency", {}).get("figures")
    if actor:
        parts = ", ".join(f"{k} {v:.0f}" for k, v in actor["breakdown_us_per_step"].items())
        notes.append(f"- actor loop, µs per env step (one instrumented pass): {parts}")
    adder = records.get("adder_efficiency", {}).get("figures")
    if adder:
        parts = ", ".join(f"{k} {v:.0f}" for k, v in adder["bare_breakdown_us_per_item"].items())
        notes.append(
            f"- adder: {adder['adder_us_per_item_one_pass']:.0f} µs per item; bare writer, µs per "
            f"item: {parts}; writer appends per env step: adder "
            f"{adder['writer_appends_per_step']['adder']}, bare "
            f"{adder['writer_appends_per_step']['bare']}"
        )
    learner = records.get("learner_efficiency", {}).get("figures")
    if learner:
        for critic, f in learner["critics"].items():
            data = f["learner_over_learner_fixed_batch (data path cost)"]
            notes.append(
                f"- learner {critic}: learner on a fixed device batch ÷ floor "
                f"{f['learner_fixed_batch_over_floor']['median']:.3f} (the learner's own extras), "
                f"learner ÷ learner on a fixed batch {data['median']:.3f} (the data path)"
            )
    return notes


if __name__ == "__main__":
    sys.exit(main())
