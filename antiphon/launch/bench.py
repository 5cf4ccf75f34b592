"""`antiphon bench offline`: a DM Control offline-RL benchmark in one command, with no download.

Stages, per task (`--tasks cheetah-run,walker-walk`):

1. expert   an online MoG-DMPO run with episode recording (`antiphon train --agent mpo
            --critic-type mog --record-episodes`), kept in the cache directory and reused by
            every later bench with the same expert settings;
2. data     the D4RL recipe from that run (`antiphon collect --recipe`): random, medium,
            medium-replay, expert, medium-expert, also cached;
3. train    every offline method on every dataset for N seeds (`antiphon train --agent M
            --dataset F`); a run's score is its final evaluation return (the last row of
            `logs/evaluator.csv`, column `eval_return_mean`);
4. report   D4RL-normalised scores, 100 * (return - random) / (expert - random) with random and
            expert the mean episode returns of the task's random and expert datasets; per dataset
            the mean over seeds with a 95 % bootstrap interval; across datasets rliable's IQM,
            median, mean and optimality gap with stratified-bootstrap intervals and performance
            profiles (`bench_report`). Writes report.md, report.json and plots/*.png in --root.

Every stage is a subprocess of the existing CLI, so each run is isolated. Resumable: a run counts
as finished only once its result file (`ROOT/results/.../NAME.json`; the expert's and the
datasets' markers in the cache) is written, after the subprocess ended well; a run directory
that exists without one is resumed (`antiphon train` resumes an existing run directory), and
one whose evaluator already logged the final step is only read. Run the same command again
after a crash or Ctrl-C.

Presets (`--preset`): `smoke` runs the whole pipeline at toy sizes (one task, 2,000 expert steps,
2-episode datasets, every method on medium and medium-replay for 1,000 SGD steps, 2 seeds; its
returns mean nothing); `standard` is what a results table reports (PRESETS has the numbers and
why). `--launcher ray` runs the jobs of a
stage as independent Ray tasks, on a local instance or the cluster at `--ray-address`; ROOT and
the cache must then be on a file system every node sees.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import numpy as np

# The D4RL recipe of `antiphon collect --recipe` (launch/collect.RECIPE; a test keeps them equal).
DATASETS = ("random", "medium", "medium-replay", "expert", "medium-expert")
# Where the normalisation's 0 and 100 come from.
REFERENCE_DATASETS = ("random", "expert")
# `antiphon train`'s exit statuses that are not failures of the bench's own making.
DIVERGED_EXIT_STATUS = 3
INTERRUPTED_EXIT_STATUS = 130


@dataclasses.dataclass(frozen=True)
class Method:
    """One offline method of the bench: an `antiphon train` agent with fixed options, or one of
    d3rlpy's algorithms (`benchmarks/d3rlpy_side.py`, with --with-d3rlpy)."""

    name: str
    agent: str  # antiphon agent, or d3rlpy_side's method name
    options: tuple[str, ...] = ()
    side: str = "antiphon"  # "antiphon" | "d3rlpy"
    description: str = ""

    @property
    def sarsa_pretraining(self) -> bool:
        """Q_sarsa pre-training SGD steps are added to --steps (qreg with a regulariser)."""
        return self.agent == "qreg" and "none" not in self.options


# Learning rates as benchmarks/offline_side_by_side.py sets them (d3rlpy's 3e-4 where the agents'
# paper defaults differ), so a --with-d3rlpy table compares like with like.
METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("bc", "bc", ("--learning-rate", "3e-4"), description="behaviour cloning"),
        Method(
            "crr",
            "crr",
            ("--policy-learning-rate", "3e-4", "--critic-learning-rate", "3e-4"),
            description="CRR (exp filter)",
        ),
        Method("td3_bc", "td3_bc", description="TD3+BC"),
        Method("dime", "dime", description="DiME offline (rl + bc objectives)"),
        Method("qreg_critic", "qreg", ("--reg", "critic"), description="Q_sarsa-reg. critic"),
        Method(
            "qreg_critic_actor",
            "qreg",
            ("--reg", "critic_actor"),
            description="Q_sarsa-reg. critic and actor",
        ),
        Method("td3", "qreg", ("--reg", "none"), description="offline TD3, no regulariser"),
    )
}
D3RLPY_METHODS: dict[str, Method] = {
    f"d3rlpy_{name}": Method(f"d3rlpy_{name}", name, side="d3rlpy", description=f"d3rlpy {name}")
    for name in ("crr", "td3_bc", "iql", "cql", "bc")
}
# --methods shorthands.
METHOD_GROUPS = {"qreg": ("qreg_critic", "qreg_critic_actor"), "d3rlpy": tuple(D3RLPY_METHODS)}


@dataclasses.dataclass(frozen=True)
class Preset:
    """The sizes of one bench (every field has a command-line override or is fixed by design)."""

    name: str
    tasks: tuple[str, ...]
    # The expert: MoG-DMPO online, with episode recording.
    action_repeat: int
    expert_steps: int  # `antiphon train --steps` (actor steps)
    expert_eval_every: int  # also the snapshots `collect` picks medium and expert from
    expert_eval_episodes: int
    expert_options: tuple[str, ...]
    episodes: int  # per collected dataset (medium-replay: the run's own episodes)
    datasets: tuple[str, ...]  # trained on (all five are collected: random and expert normalise)
    # The offline runs.
    steps: int  # SGD steps
    sarsa_steps: int  # qreg's Q_sarsa pre-training, added to `steps`
    seeds: int
    eval_every: int
    eval_episodes: int
    small_networks: bool  # (64, 64) networks and batch 64: the smoke preset's speed
    bootstrap_reps: int


PRESETS: dict[str, Preset] = {
    # Every stage at toy size: checks the pipeline end to end in minutes on 2 CPU cores (about
    # 15 s per offline run here, most of it process start-up and compilation). The expert is
    # untrained, so the returns and the normalised scores mean nothing.
    "smoke": Preset(
        name="smoke",
        tasks=("cheetah-run",),
        action_repeat=2,
        expert_steps=2_000,
        expert_eval_every=1_000,
        expert_eval_episodes=1,
        expert_options=(
            "--min-replay-size",
            "200",
            "--batch-size",
            "64",
            "--num-samples",
            "8",
            "--num-target-samples",
            "16",
            "--samples-per-insert",
            "8",
            "--policy-layer-sizes",
            "64,64",
            "--critic-layer-sizes",
            "64,64",
        ),  # fmt: skip
        episodes=2,
        # Every method on two datasets (28 runs, about 7 minutes here); --datasets for all five.
        datasets=("medium", "medium-replay"),
        steps=1_000,
        sarsa_steps=200,
        seeds=2,
        eval_every=1_000,
        eval_episodes=1,
        small_networks=True,
        bootstrap_reps=500,
    ),
    # What a results table reports. Expert: acme's MoG-DMPO defaults for 500k actor steps at
    # action repeat 2 (1M environment steps, the README's expert recipe; acme's control-suite
    # examples run 1M), evaluated every 25k steps on 10 episodes, so `collect` has 20 snapshots
    # to pick medium (half the best return) and expert (the best) from. Datasets: 2,000 episodes
    # of 500 agent steps each, 1M transitions per dataset (D4RL's size; medium-expert 2M).
    # Offline: 300k SGD steps (D4RL papers train 0.5-1M; most methods have flattened by 300k),
    # Q_sarsa pre-trained 100k steps (qreg's default), evaluations every 25k on 10 episodes,
    # 3 seeds, every network and batch at its paper's default, and rliable's 50,000 bootstrap
    # resamples. Sized for a GPU machine or a cluster (--launcher ray): 210 offline runs for two
    # tasks.
    "standard": Preset(
        name="standard",
        tasks=("cheetah-run", "walker-walk"),
        action_repeat=2,
        expert_steps=500_000,
        expert_eval_every=25_000,
        expert_eval_episodes=10,
        expert_options=(),
        episodes=2_000,
        datasets=DATASETS,
        steps=300_000,
        sarsa_steps=100_000,
        seeds=3,
        eval_every=25_000,
        eval_episodes=10,
        small_networks=False,
        bootstrap_reps=50_000,
    ),
}


def _usage_error(message: str) -> NoReturn:
    from antiphon.launch.cli import UsageError  # lazily: cli imports this module

    raise UsageError(message)


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr and exit status 2 (cli.UsageError)."""

    def error(self, message: str) -> NoReturn:
        _usage_error(message)


# ------------------------------------------------------------------------------------------------
# The plan: every setting resolved and checked before anything is written


@dataclasses.dataclass(frozen=True)
class Plan:
    preset: Preset
    tasks: tuple[str, ...]  # "cheetah-run" (the environment is "dmc:" + task)
    methods: tuple[Method, ...]
    datasets: tuple[str, ...]  # the ones trained on (all five are collected)
    seeds: tuple[int, ...]
    steps: int
    sarsa_steps: int
    expert_steps: int
    episodes: int
    eval_every: int
    eval_episodes: int
    root: str
    cache: str
    launcher: str
    ray_address: str | None
    job_cpus: float
    job_gpus: float
    bootstrap_reps: int
    report_only: bool
    dry_run: bool

    def environment(self, task: str) -> str:
        return f"dmc:{task}"


def _default_cache() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "antiphon", "bench-offline")


def _offline_parser() -> _Parser:
    p = _Parser(
        prog="antiphon bench offline",
        description="Train MoG-DMPO experts, record the D4RL recipe's five datasets, train every "
        "offline method on them for N seeds and report normalised scores (IQM, bootstrap "
        "intervals, performance profiles). Resumable: run the same command again.",
    )
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="standard",
        help="smoke: the whole pipeline at toy sizes, minutes on a laptop; standard (default): "
        "500k-step experts, D4RL-sized datasets, 300k SGD steps, 3 seeds (a GPU or a cluster)",
    )
    p.add_argument("--tasks", default=None, help="comma-separated DM Control tasks, e.g. "
                   "cheetah-run,walker-walk (default: the preset's)")  # fmt: skip
    p.add_argument(
        "--methods",
        default=None,
        help=f"comma-separated, from {', '.join(METHODS)} (qreg: both qreg_*; with "
        f"--with-d3rlpy also {', '.join(D3RLPY_METHODS)}); default: all of ours",
    )
    p.add_argument(
        "--datasets",
        default=None,
        help=f"comma-separated, train on these ({', '.join(DATASETS)}; all five are collected); "
        "default: the preset's",
    )
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default: the preset's)")
    p.add_argument("--steps", type=int, default=None, help="offline SGD steps per run")
    p.add_argument("--expert-steps", type=int, default=None, help="the expert's actor steps")
    p.add_argument("--episodes", type=int, default=None, help="episodes per collected dataset")
    p.add_argument("--eval-episodes", type=int, default=None, help="per offline evaluation")
    p.add_argument("--root", default=None, help="bench directory: runs, results, report, plots "
                   "(default runs/bench-offline/PRESET)")  # fmt: skip
    p.add_argument("--cache", default=None, help="experts and datasets, reused across benches "
                   f"(default {_default_cache()})")  # fmt: skip
    p.add_argument("--launcher", choices=["local", "ray"], default="local",
                   help="local: one job after another; ray: every job a Ray task")  # fmt: skip
    p.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                   help="join this Ray cluster (default: start a local instance)")  # fmt: skip
    p.add_argument("--job-cpus", type=float, default=1.0, help="Ray: CPUs per job")
    p.add_argument("--job-gpus", type=float, default=0.0, help="Ray: GPUs per job")
    p.add_argument("--with-d3rlpy", action="store_true",
                   help="also train d3rlpy's crr, td3_bc, iql, cql, bc on the same files (needs "
                   "the bench extra, `make bench-setup`, and a source checkout)")  # fmt: skip
    p.add_argument("--bootstrap-reps", type=int, default=None, help="bootstrap resamples")
    p.add_argument("--report-only", action="store_true", help="report what is finished; train "
                   "nothing")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="print the jobs; run nothing")
    return p


def _split(text: str) -> list[str]:
    return [part for part in text.replace(" ", "").split(",") if part]


def _resolve_tasks(text: str | None, preset: Preset) -> tuple[str, ...]:
    from antiphon.environments import UnknownEnvironmentError, validate_environment_name

    tasks = []
    for task in _split(text) if text is not None else preset.tasks:
        prefix, sep, name = task.partition(":")
        if sep and prefix != "dmc":
            _usage_error(f"--tasks: '{task}' is not a DM Control task (e.g. cheetah-run)")
        name = name if sep else task
        try:
            validate_environment_name(f"dmc:{name}")
        except UnknownEnvironmentError as e:
            _usage_error(f"--tasks: {e}")
        if name not in tasks:
            tasks.append(name)
    if not tasks:
        _usage_error("--tasks: give at least one task, e.g. cheetah-run")
    return tuple(tasks)


def _resolve_methods(text: str | None, with_d3rlpy: bool) -> tuple[Method, ...]:
    import difflib

    known = {**METHODS, **D3RLPY_METHODS}
    names = list(METHODS) if text is None else []
    for name in _split(text) if text is not None else ():
        if name in METHOD_GROUPS:
            names += list(METHOD_GROUPS[name])
        elif name in known:
            names.append(name)
        else:
            close = difflib.get_close_matches(name, [*known, *METHOD_GROUPS], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            _usage_error(
                f"--methods: unknown method '{name}'{hint}; methods: {', '.join(METHODS)}, "
                f"{', '.join(D3RLPY_METHODS)}"
            )
    if with_d3rlpy and not any(n in D3RLPY_METHODS for n in names):
        names += list(D3RLPY_METHODS)
    if not names:
        _usage_error("--methods: give at least one method")
    if any(n in D3RLPY_METHODS for n in names):
        _check_d3rlpy()
    return tuple(known[n] for n in dict.fromkeys(names))


def repository_root() -> str:
    """The source checkout holding this package (benchmarks/ lives beside antiphon/)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _with_repository_path() -> dict[str, str]:
    """PYTHONPATH with the source checkout first (for `-m benchmarks.d3rlpy_side`)."""
    paths = [repository_root(), os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def _check_d3rlpy() -> None:
    """d3rlpy's runs use benchmarks/d3rlpy_side.py: a source checkout and the bench extra."""
    side = os.path.join(repository_root(), "benchmarks", "d3rlpy_side.py")
    if not os.path.exists(side):
        _usage_error(
            "--with-d3rlpy needs a source checkout of antiphon: benchmarks/d3rlpy_side.py is not "
            "part of the installed package"
        )
    missing = [m for m in ("d3rlpy", "torch") if importlib.util.find_spec(m) is None]
    if missing:
        _usage_error(
            f"--with-d3rlpy: {' and '.join(missing)} not installed; run `make bench-setup` "
            "(the bench extra)"
        )


def _positive(name: str, value: int | float | None, minimum: float = 1) -> None:
    if value is not None and not value >= minimum:
        _usage_error(f"--{name} must be >= {minimum:g} (got {value})")


def parse_plan(argv: Sequence[str]) -> Plan:
    """The bench's settings from its command line; bad input raises cli.UsageError (one line)."""
    args = _offline_parser().parse_args(list(argv))
    preset = PRESETS[args.preset]
    for name in ("seeds", "steps", "expert_steps", "episodes", "eval_episodes", "bootstrap_reps"):
        _positive(name.replace("_", "-"), getattr(args, name))
    _positive("job-cpus", args.job_cpus, 0)
    _positive("job-gpus", args.job_gpus, 0)
    if args.ray_address is not None and args.launcher != "ray":
        _usage_error("--ray-address needs --launcher ray")
    tasks = _resolve_tasks(args.tasks, preset)
    methods = _resolve_methods(args.methods, args.with_d3rlpy)
    datasets = (
        preset.datasets if args.datasets is None else tuple(dict.fromkeys(_split(args.datasets)))
    )
    unknown = [d for d in datasets if d not in DATASETS]
    if unknown or not datasets:
        _usage_error(
            f"--datasets: unknown dataset '{unknown[0] if unknown else ''}' "
            f"(datasets: {', '.join(DATASETS)})"
        )
    steps = args.steps or preset.steps
    if args.launcher == "ray" and args.ray_address is not None:
        from antiphon.launch.cli import _check_ray_address

        _check_ray_address(args.ray_address)
    return Plan(
        preset=preset,
        tasks=tasks,
        methods=methods,
        datasets=datasets,
        seeds=tuple(range(args.seeds or preset.seeds)),
        steps=steps,
        sarsa_steps=preset.sarsa_steps,
        expert_steps=args.expert_steps or preset.expert_steps,
        episodes=args.episodes or preset.episodes,
        eval_every=min(preset.eval_every, steps),
        eval_episodes=args.eval_episodes or preset.eval_episodes,
        root=os.path.abspath(args.root or os.path.join("runs", "bench-offline", preset.name)),
        cache=os.path.abspath(args.cache or _default_cache()),
        launcher=args.launcher,
        ray_address=args.ray_address,
        job_cpus=args.job_cpus,
        job_gpus=args.job_gpus,
        bootstrap_reps=args.bootstrap_reps or preset.bootstrap_reps,
        report_only=args.report_only,
        dry_run=args.dry_run,
    )


# ------------------------------------------------------------------------------------------------
# Jobs: one subprocess each


@dataclasses.dataclass
class Job:
    """One subprocess: `python ARGV...` with its output in `log`. `watch` (an evaluator.csv) and
    `total` feed the progress display; `done(job, exit_status)` runs in the bench process."""

    label: str
    argv: list[str]
    log: str
    done: Callable[[Job, int], None]
    watch: str | None = None
    step_key: str = "learner_steps"
    total: int = 0
    cwd: str | None = None
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    started: float = 0.0
    seen_rows: int = 0


def _cli(*arguments: str) -> list[str]:
    """Arguments after the interpreter for one antiphon command (each worker's own Python)."""
    return ["-m", "antiphon.launch.cli", *arguments]


def _spawn(argv: list[str], out, cwd: str | None, env: dict[str, str]) -> subprocess.Popen:
    out.write(f"\n$ {sys.executable} {' '.join(argv)}\n")
    out.flush()
    return subprocess.Popen(
        [sys.executable, *argv],
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env={**os.environ, **env},
        # Its own session: a Ctrl-C at the terminal reaches the bench alone, which stops the
        # child with one SIGTERM and waits for its checkpoints, instead of both racing.
        start_new_session=True,
    )


def run_process(argv: list[str], log: str, cwd: str | None, env: dict[str, str]) -> int:
    """Runs `sys.executable ARGV` with stdout and stderr appended to `log`; returns its exit
    status. An interrupt (Ctrl-C, Ray's cancel) stops the child as SIGTERM does: `antiphon
    train` checkpoints and exits 130."""
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with open(log, "a") as out:
        process = _spawn(argv, out, cwd, env)
        try:
            return process.wait()
        except BaseException:
            _stop_child(process)
            raise


def _stop_child(process: subprocess.Popen, grace: float = 120.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Interrupted(Exception):
    """Ctrl-C, SIGTERM or a child stopped by a signal: the bench stops; rerun to resume."""


def _evaluations(path: str | None) -> list[dict[str, str]]:
    if not path or not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class LocalExecutor:
    """Runs jobs one after another in this machine's processes."""

    poll_seconds = 2.0

    def run(self, jobs: list[Job], progress: Callable[[list[Job]], None]) -> None:
        for job in jobs:
            job.started = time.time()
            os.makedirs(os.path.dirname(job.log), exist_ok=True)
            with open(job.log, "a") as out:
                process = _spawn(job.argv, out, job.cwd, job.env)
                try:
                    while process.poll() is None:
                        progress([job])
                        try:
                            process.wait(self.poll_seconds)
                        except subprocess.TimeoutExpired:
                            pass
                except BaseException:
                    _stop_child(process)
                    raise
            job.done(job, process.returncode)


class RayExecutor:
    """Runs every job of a stage as one Ray task (a subprocess on whichever node has the CPUs
    and GPUs asked for), on the cluster at `address` or a local instance."""

    poll_seconds = 2.0

    def __init__(self, address: str | None, cpus: float, gpus: float):
        self._address, self._cpus, self._gpus = address, cpus, gpus
        self._started = False

    def _start(self) -> None:
        import logging

        import ray

        if self._started:
            return
        env_vars = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        if self._address is None:
            # As launch/ray.py starts its private instance: token authentication, no dashboard.
            from antiphon.launch.ray import prepare_private_instance

            prepare_private_instance()
            ray.init(
                include_dashboard=False,
                namespace="antiphon-bench",
                runtime_env={"env_vars": env_vars},
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
        else:
            ray.init(
                address=self._address,
                namespace="antiphon-bench",
                runtime_env={"env_vars": env_vars},
                logging_level=logging.WARNING,
            )
        self._started = True

    def run(self, jobs: list[Job], progress: Callable[[list[Job]], None]) -> None:
        import ray

        if not jobs:
            return
        self._start()
        task = ray.remote(num_cpus=self._cpus, num_gpus=self._gpus, max_retries=0)(run_process)
        pending = {}
        for job in jobs:
            job.started = time.time()
            pending[task.remote(job.argv, job.log, job.cwd, job.env)] = job
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=self.poll_seconds)
                for ref in ready:
                    job = pending.pop(ref)
                    try:
                        status = ray.get(ref)
                    except ray.exceptions.RayError as e:
                        with open(job.log, "a") as out:
                            out.write(f"\nRay task failed: {e}\n")
                        status = 1
                    job.done(job, status)
                progress(list(pending.values()))
        except BaseException:
            for ref in pending:
                ray.cancel(ref)  # the task stops its child as SIGTERM does (run_process)
            ray.wait(list(pending), num_returns=len(pending), timeout=150)
            raise

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False


# ------------------------------------------------------------------------------------------------
# Files


def write_json(path: str, value: Any) -> None:
    """Writes JSON atomically (a reader never sees half a result)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1, default=float)
    os.replace(tmp, path)


def read_json(path: str) -> dict[str, Any] | None:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def dataset_returns(path: str) -> list[float]:
    """The episode returns of a dataset `antiphon collect` wrote (its metadata records them)."""
    import h5py

    with h5py.File(path, "r") as f:
        metadata = json.loads(f.attrs.get("metadata", "{}"))
    if "episode_returns" in metadata:
        return [float(r) for r in metadata["episode_returns"]]
    from antiphon.environments.datasets import load_dataset

    return [float(r) for r in load_dataset(path).episode_returns()]


def _key(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:8]


def _log_tail(path: str) -> str:
    """The last non-empty line of a log: what a failed run said last."""
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f.readlines()[-50:] if line.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


# ------------------------------------------------------------------------------------------------
# The bench


class Bench:
    """Builds the jobs of each stage from a Plan, runs them, and keeps the record."""

    def __init__(self, plan: Plan, executor: Any = None, console: Any = None):
        from rich.console import Console

        self.plan = plan
        self.console = console or Console(stderr=True, highlight=False)
        self.executor = executor
        self.failures: list[str] = []
        self.diverged: list[str] = []

    def say(self, text: str) -> None:
        self.console.print(text, markup=False, soft_wrap=True)

    # --- names and places

    def expert_name(self, task: str) -> str:
        p = self.plan
        preset = p.preset
        key = _key(
            task,
            preset.action_repeat,
            p.expert_steps,
            preset.expert_eval_every,
            preset.expert_eval_episodes,
            preset.expert_options,
        )
        return f"{task}-mogdmpo-{p.expert_steps}-{key}"

    def expert_dir(self, task: str) -> str:
        return os.path.join(self.plan.cache, "experts", self.expert_name(task))

    def datasets_dir(self, task: str) -> str:
        name = f"{self.expert_name(task)}-e{self.plan.episodes}"
        return os.path.join(self.plan.cache, "datasets", name)

    def dataset_path(self, task: str, dataset: str) -> str:
        return os.path.join(self.datasets_dir(task), dataset + ".hdf5")

    def run_name(self, method: Method, seed: int) -> str:
        return f"{method.name}-{self.plan.steps}-s{seed}"

    def run_dir(self, task: str, dataset: str, method: Method, seed: int) -> str:
        return os.path.join(self.plan.root, "runs", task, dataset, self.run_name(method, seed))

    def result_path(self, task: str, dataset: str, method: Method, seed: int) -> str:
        name = self.run_name(method, seed) + ".json"
        return os.path.join(self.plan.root, "results", task, dataset, name)

    def offline_target(self, method: Method) -> int:
        """The learner step count at which a run is done (Q_sarsa pre-training included)."""
        return self.plan.steps + (self.plan.sarsa_steps if method.sarsa_pretraining else 0)

    def runs(self) -> list[tuple[str, str, Method, int]]:
        return [
            (task, dataset, method, seed)
            for task in self.plan.tasks
            for dataset in self.plan.datasets
            for method in self.plan.methods
            for seed in self.plan.seeds
        ]

    # --- stage 1: experts

    def expert_marker(self, task: str) -> str:
        return self.expert_dir(task) + ".done.json"

    def _expert_finished(self, task: str) -> bool:
        rows = _evaluations(os.path.join(self.expert_dir(task), "logs", "evaluator.csv"))
        return bool(rows) and float(rows[-1]["actor_steps"]) >= self.plan.expert_steps

    def _mark_expert(self, task: str, wall: float) -> None:
        rows = _evaluations(os.path.join(self.expert_dir(task), "logs", "evaluator.csv"))
        returns = [float(r["eval_return_mean"]) for r in rows]
        write_json(
            self.expert_marker(task),
            {
                "task": task,
                "run_dir": self.expert_dir(task),
                "steps": self.plan.expert_steps,
                "best_eval_return": max(returns) if returns else None,
                "final_eval_return": returns[-1] if returns else None,
                "wall_seconds": wall,
            },
        )

    def expert_jobs(self, tasks: Sequence[str]) -> list[Job]:
        p = self.plan
        jobs = []
        for task in tasks:
            if os.path.exists(self.expert_marker(task)):
                marker = read_json(self.expert_marker(task)) or {}
                self.say(
                    f"[expert] {task}: cached ({self.expert_dir(task)}, best eval return "
                    f"{marker.get('best_eval_return', float('nan')):.1f})"
                )
                continue
            if self._expert_finished(task):  # trained, but the bench stopped before the marker
                self._mark_expert(task, 0.0)
                self.say(f"[expert] {task}: finished earlier ({self.expert_dir(task)})")
                continue
            run_dir = self.expert_dir(task)
            argv = _cli(
                "train", "--agent", "mpo", "--critic-type", "mog", "--env", p.environment(task),
                "--action-repeat", str(p.preset.action_repeat), "--steps", str(p.expert_steps),
                "--eval-every", str(p.preset.expert_eval_every),
                "--eval-episodes", str(p.preset.expert_eval_episodes),
                "--seed", "0", "--record-episodes", "--no-progress", "--run-dir", run_dir,
                *p.preset.expert_options,
            )  # fmt: skip
            what = "resuming" if os.path.isdir(run_dir) else "training"
            jobs.append(
                Job(
                    label=f"[expert] {task}",
                    argv=argv,
                    log=run_dir + ".log",
                    done=lambda job, status, task=task: self._expert_done(task, job, status),
                    watch=os.path.join(run_dir, "logs", "evaluator.csv"),
                    step_key="actor_steps",
                    total=p.expert_steps,
                )
            )
            self.say(
                f"[expert] {task}: {what} MoG-DMPO for {p.expert_steps} actor steps "
                f"-> {run_dir} (log {run_dir}.log)"
            )
        return jobs

    def _expert_done(self, task: str, job: Job, status: int) -> None:
        if status == INTERRUPTED_EXIT_STATUS:
            raise Interrupted(job.label)
        if status != 0 or not self._expert_finished(task):
            self._fail(job, status)
            return
        self._mark_expert(task, time.time() - job.started)
        marker = read_json(self.expert_marker(task)) or {}
        self.say(
            f"{job.label}: done in {time.time() - job.started:.0f} s, best eval return "
            f"{marker['best_eval_return']:.1f}"
        )

    # --- stage 2: datasets

    def datasets_marker(self, task: str) -> str:
        return os.path.join(self.datasets_dir(task), "bench-datasets.json")

    def dataset_jobs(self, tasks: Sequence[str]) -> list[Job]:
        p = self.plan
        jobs = []
        for task in tasks:
            marker = read_json(self.datasets_marker(task))
            if marker is not None:
                self.say(f"[data] {task}: cached ({self._describe_returns(marker)})")
                continue
            if not os.path.exists(self.expert_marker(task)):
                continue  # its expert failed: reported already
            out = self.datasets_dir(task) + ".partial"
            argv = _cli(
                "collect", "--env", p.environment(task), "--recipe", self.expert_dir(task),
                "--episodes", str(p.episodes), "--out", out, "--overwrite", "--no-progress",
            )  # fmt: skip
            jobs.append(
                Job(
                    label=f"[data] {task}",
                    argv=argv,
                    log=self.datasets_dir(task) + ".log",
                    done=lambda job, status, task=task: self._datasets_done(task, job, status),
                )
            )
            self.say(
                f"[data] {task}: collecting {', '.join(DATASETS)} ({p.episodes} episodes each) "
                f"-> {self.datasets_dir(task)}"
            )
        return jobs

    @staticmethod
    def _describe_returns(marker: dict[str, Any]) -> str:
        return ", ".join(f"{n} {v['return_mean']:.1f}" for n, v in marker["datasets"].items())

    def _datasets_done(self, task: str, job: Job, status: int) -> None:
        if status == INTERRUPTED_EXIT_STATUS:
            raise Interrupted(job.label)
        partial = self.datasets_dir(task) + ".partial"
        paths = {n: os.path.join(partial, n + ".hdf5") for n in DATASETS}
        if status != 0 or not all(os.path.exists(path) for path in paths.values()):
            self._fail(job, status)
            return
        summary = {}
        for name, path in paths.items():
            returns = dataset_returns(path)
            summary[name] = {
                "return_mean": float(sum(returns) / len(returns)),
                "episodes": len(returns),
            }
        write_json(
            os.path.join(partial, "bench-datasets.json"),
            {"task": task, "expert": self.expert_dir(task), "datasets": summary},
        )
        final = self.datasets_dir(task)
        if os.path.exists(final):  # an incomplete copy without a marker: ours, replace it
            shutil.rmtree(final)
        os.replace(partial, final)  # all five files appear at once
        marker = read_json(self.datasets_marker(task)) or {}
        took = time.time() - job.started
        self.say(f"{job.label}: done in {took:.0f} s ({self._describe_returns(marker)})")

    # --- stage 3: offline runs

    def _size_options(self, method: Method) -> list[str]:
        if not self.plan.preset.small_networks:
            return []
        if method.side == "d3rlpy":
            return ["--hidden", "64", "64", "--batch-size", "64"]
        options = ["--policy-layer-sizes", "64,64", "--batch-size", "64"]
        if method.agent != "bc":
            options += ["--critic-layer-sizes", "64,64"]
        if method.agent == "qreg":
            options += ["--sarsa-layer-sizes", "64,64"]
        return options

    def offline_argv(self, task: str, dataset: str, method: Method, seed: int) -> list[str]:
        """The command of one offline run (after the interpreter)."""
        p = self.plan
        data = self.dataset_path(task, dataset)
        run_dir = self.run_dir(task, dataset, method, seed)
        if method.side == "d3rlpy":
            return [
                "-m", "benchmarks.d3rlpy_side", "--method", method.agent, "--dataset", data,
                "--steps", str(p.steps), "--seed", str(seed),
                "--eval-episodes", str(p.eval_episodes),
                "--out", os.path.join(run_dir, "result.json"), *self._size_options(method),
            ]  # fmt: skip
        sarsa = ["--sarsa-steps", str(p.sarsa_steps)] if method.agent == "qreg" else []
        return _cli(
            "train", "--agent", method.agent, "--dataset", data, "--steps", str(p.steps),
            "--seed", str(seed), "--run-dir", run_dir, "--eval-every", str(p.eval_every),
            "--eval-episodes", str(p.eval_episodes), "--no-progress",
            *method.options, *sarsa, *self._size_options(method),
        )  # fmt: skip

    def check_results(self) -> None:
        """Refuses a root whose results were trained on other datasets than this plan's."""
        for task, dataset, method, seed in self.runs():
            result = read_json(self.result_path(task, dataset, method, seed))
            if result is not None and result.get("dataset") != self.dataset_path(task, dataset):
                _usage_error(
                    f"{self.plan.root} holds results trained on other datasets "
                    f"({result.get('dataset')}); use another --root for these expert/dataset "
                    "settings"
                )

    def _offline_finished(self, task, dataset, method, seed) -> dict[str, Any] | None:
        """The final evaluation of a run whose program finished, else None."""
        run_dir = self.run_dir(task, dataset, method, seed)
        if method.side == "d3rlpy":
            result = read_json(os.path.join(run_dir, "result.json"))
            if result is None or result.get("eval_return_mean") is None:
                return None
            return {"eval_return_mean": float(result["eval_return_mean"]), "diverged": False}
        rows = _evaluations(os.path.join(run_dir, "logs", "evaluator.csv"))
        diverged = os.path.exists(os.path.join(run_dir, "diverged.json"))
        reached = bool(rows) and float(rows[-1]["learner_steps"]) >= self.offline_target(method)
        if not rows or not (reached or diverged):
            return None
        return {
            "eval_return_mean": float(rows[-1]["eval_return_mean"]),
            "learner_steps": float(rows[-1]["learner_steps"]),
            "evaluations": [float(r["eval_return_mean"]) for r in rows],
            "diverged": diverged,
        }

    def _write_result(self, task, dataset, method, seed, final: dict[str, Any], wall: float):
        result = {
            "task": task,
            "env": self.plan.environment(task),
            "dataset_name": dataset,
            "dataset": self.dataset_path(task, dataset),
            "method": method.name,
            "agent": method.agent,
            "side": method.side,
            "options": list(method.options),
            "seed": seed,
            "steps": self.plan.steps,
            "run_dir": self.run_dir(task, dataset, method, seed),
            "wall_seconds": wall,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **final,
        }
        write_json(self.result_path(task, dataset, method, seed), result)
        return result

    def offline_jobs(self) -> list[Job]:
        runs = self.runs()
        jobs, finished = [], 0
        for number, (task, dataset, method, seed) in enumerate(runs, 1):
            label = f"[run {number}/{len(runs)}] {task} {dataset} {method.name} seed {seed}"
            if os.path.exists(self.result_path(task, dataset, method, seed)):
                finished += 1
                continue
            if not os.path.exists(self.datasets_marker(task)):
                continue  # its data failed: reported already
            final = self._offline_finished(task, dataset, method, seed)
            if final is not None:  # trained, but the bench stopped before the result file
                self._write_result(task, dataset, method, seed, final, 0.0)
                finished += 1
                continue
            run_dir = self.run_dir(task, dataset, method, seed)
            resuming = method.side == "antiphon" and os.path.isdir(run_dir)
            jobs.append(
                Job(
                    label=label + (" (resumed)" if resuming else ""),
                    argv=self.offline_argv(task, dataset, method, seed),
                    log=os.path.join(
                        self.plan.root, "logs", task, dataset, self.run_name(method, seed) + ".log"
                    ),  # fmt: skip
                    done=lambda job, status, run=(task, dataset, method, seed): self._offline_done(
                        run, job, status
                    ),
                    watch=os.path.join(run_dir, "logs", "evaluator.csv"),
                    total=self.offline_target(method),
                    # d3rlpy_side is a module of the source checkout's benchmarks package.
                    cwd=repository_root() if method.side == "d3rlpy" else None,
                    env=_with_repository_path() if method.side == "d3rlpy" else {},
                )
            )
        if finished:
            self.say(f"[train] {finished} of {len(runs)} runs finished earlier: not run again")
        return jobs

    def _offline_done(self, run, job: Job, status: int) -> None:
        task, dataset, method, seed = run
        if status == INTERRUPTED_EXIT_STATUS:
            raise Interrupted(job.label)
        final = self._offline_finished(task, dataset, method, seed)
        if status not in (0, DIVERGED_EXIT_STATUS) or final is None:
            self._fail(job, status)
            return
        self._write_result(task, dataset, method, seed, final, time.time() - job.started)
        note = ""
        if final["diverged"]:
            self.diverged.append(job.label)
            note = " (diverged: the last evaluation before it)"
        self.say(
            f"{job.label}: return {final['eval_return_mean']:.1f}{note} "
            f"in {time.time() - job.started:.0f} s"
        )

    # --- running

    def _fail(self, job: Job, status: int) -> None:
        line = (
            f"{job.label}: failed with exit status {status}: {_log_tail(job.log)} (log {job.log})"
        )
        self.failures.append(line)
        self.say(line)

    def _progress(self, status, running: list[Job]) -> None:
        """The live status line (terminals only): the jobs under way and their step counts;
        experts, which run for hours, also print a line at each evaluation."""
        parts = []
        for job in running:
            rows = _evaluations(job.watch)
            if not rows:
                continue
            if len(rows) > job.seen_rows:
                job.seen_rows = len(rows)
                if job.step_key == "actor_steps":
                    self.say(
                        f"{job.label}: {float(rows[-1][job.step_key]):.0f}/{job.total} steps, "
                        f"eval return {float(rows[-1]['eval_return_mean']):.1f}"
                    )
            steps = float(rows[-1][job.step_key])
            parts.append(f"{job.label} {steps:.0f}/{job.total} steps")
        if len(running) == 1 and not parts:
            parts = [f"{running[0].label}: starting"]
        elif len(running) > len(parts[:3]):
            parts = parts[:3] + [f"{len(running) - len(parts[:3])} more queued or starting"]
        if status is not None:
            status.update("; ".join(parts) or "waiting")

    def _run(self, executor, jobs: list[Job]) -> None:
        if not jobs:
            return
        with self.console.status("starting") as status:
            executor.run(jobs, lambda running: self._progress(status, running))

    def run(self) -> int:
        p = self.plan
        runs = self.runs()
        self.check_results()  # bad input: one line, before anything is said or written
        self.say(
            f"bench offline, preset {p.preset.name}: {len(p.tasks)} task(s) x "
            f"{len(p.datasets)} dataset(s) x {len(p.methods)} method(s) x {len(p.seeds)} seed(s) "
            f"= {len(runs)} runs of {p.steps} SGD steps; root {p.root}, cache {p.cache}"
        )
        if p.dry_run:
            for job in self.expert_jobs(p.tasks) + self.dataset_jobs(p.tasks):
                self.say(f"{job.label}: {sys.executable} {' '.join(job.argv)}")
            for task, dataset, method, seed in runs:
                argv = self.offline_argv(task, dataset, method, seed)
                self.say(f"[run] {sys.executable} {' '.join(argv)}")
            return 0
        executor = self.executor or (
            RayExecutor(p.ray_address, p.job_cpus, p.job_gpus)
            if p.launcher == "ray"
            else LocalExecutor()
        )
        try:
            if not p.report_only:
                self._run(executor, self.expert_jobs(p.tasks))
                self._run(executor, self.dataset_jobs(p.tasks))
                jobs = self.offline_jobs()
                if jobs:
                    self.say(f"[train] {len(jobs)} run(s) to train ({p.launcher} launcher)")
                self._run(executor, jobs)
        except (KeyboardInterrupt, Interrupted):
            self.say(
                "interrupted: finished runs are kept; run the same command again to resume "
                "where it stopped"
            )
            return INTERRUPTED_EXIT_STATUS
        finally:
            close = getattr(executor, "close", None)
            if close is not None:
                close()
        try:
            report = self.report()
        except KeyboardInterrupt:
            self.say("interrupted while reporting: every finished run is kept; rerun to report")
            return INTERRUPTED_EXIT_STATUS
        if report is not None:
            self.say(f"[report] {report}")
        for line in self.failures:
            self.say(f"failed: {line}")
        return 1 if self.failures else 0

    # --- stage 4: the report

    def report(self) -> str | None:
        """Writes report.md, report.json and plots/ from the finished results; returns the
        markdown's path (None when no run has finished)."""
        from antiphon.launch import bench_report as stats

        p = self.plan
        references = {t: read_json(self.datasets_marker(t)) for t in p.tasks}
        results: dict[tuple[str, str, str], dict[int, dict[str, Any]]] = {}
        for task, dataset, method, seed in self.runs():
            result = read_json(self.result_path(task, dataset, method, seed))
            if result is not None:
                results.setdefault((task, dataset, method.name), {})[seed] = result
        if not results:
            self.say("[report] no finished runs yet: nothing to report")
            return None
        notes = []
        spans = {}
        for task, marker in references.items():
            if marker is None:
                continue
            random_return = marker["datasets"]["random"]["return_mean"]
            expert_return = marker["datasets"]["expert"]["return_mean"]
            if expert_return == random_return:
                notes.append(f"{task}: expert and random datasets score the same; not normalised")
                continue
            spans[task] = (random_return, expert_return)
            if expert_return < random_return:
                notes.append(
                    f"{task}: the expert dataset ({expert_return:.1f}) scores below the random "
                    f"one ({random_return:.1f}): the expert is untrained (smoke preset?) and "
                    "its normalised scores mean nothing; raise --expert-steps"
                )
        cells = [(t, d) for t in p.tasks for d in p.datasets]
        names = [m.name for m in p.methods]
        reps = p.bootstrap_reps
        # Per-cell intervals of 2-3 seeds and the profiles' 101 thresholds need fewer resamples
        # (rliable's own profile default is 2,000); 50,000 of them would take minutes.
        cell_reps, profile_reps = min(reps, 10_000), min(reps, 2_000)
        raw: dict[str, dict[str, tuple[float, float, float]]] = {n: {} for n in names}
        normalised: dict[str, dict[str, tuple[float, float, float]]] = {n: {} for n in names}
        per_seed: dict[str, dict[str, dict[int, float]]] = {n: {} for n in names}
        diverged_runs = 0
        for task, dataset in cells:
            cell = f"{task}/{dataset}"
            for name in names:
                found = results.get((task, dataset, name))
                if not found:
                    continue
                diverged_runs += sum(1 for r in found.values() if r.get("diverged"))
                returns = {s: float(r["eval_return_mean"]) for s, r in sorted(found.items())}
                per_seed[name][cell] = returns
                raw[name][cell] = stats.bootstrap_interval(list(returns.values()), cell_reps)
                if task in spans:
                    scores = stats.normalized_score(np.array(list(returns.values())), *spans[task])
                    normalised[name][cell] = stats.bootstrap_interval(list(scores), cell_reps)
        # Across datasets: each method's (runs, cells) array over the seeds every cell has.
        score_dict = {}
        normalised_cells = [(t, d) for t, d in cells if t in spans]
        for name in names:
            if not normalised_cells:
                break
            seed_sets = [set(per_seed[name].get(f"{t}/{d}", {})) for t, d in normalised_cells]
            common = sorted(set.intersection(*seed_sets)) if seed_sets else []
            if not common:
                notes.append(f"{name}: not every dataset has a finished run; no aggregate")
                continue
            score_dict[name] = np.array(
                [
                    [
                        stats.normalized_score(per_seed[name][f"{t}/{d}"][s], *spans[t])
                        for t, d in normalised_cells
                    ]
                    for s in common
                ]
            )
        if diverged_runs:
            notes.append(
                f"{diverged_runs} run(s) diverged (non-finite update): their score is the last "
                "evaluation before it"
            )
        expected = len(self.runs())
        finished = sum(len(v) for v in results.values())
        if finished < expected:
            notes.append(f"{finished} of {expected} runs finished; missing cells show '-'")

        plots = os.path.join(p.root, "plots")
        outputs = {}
        aggregates = {}
        if score_dict:
            aggregates = stats.aggregate_estimates(score_dict, reps=reps)
            thresholds = stats.profile_thresholds(score_dict)
            profiles, profile_cis = stats.performance_profiles(
                score_dict, thresholds, reps=profile_reps
            )
            outputs["aggregates"] = stats.plot_aggregates(
                aggregates, os.path.join(plots, "aggregates.png")
            )
            outputs["performance_profiles"] = stats.plot_profiles(
                profiles, profile_cis, thresholds, os.path.join(plots, "performance_profiles.png")
            )
        if any(normalised.values()):
            outputs["per_dataset"] = stats.plot_per_dataset(
                {n: v for n, v in normalised.items() if v},
                [f"{t}/{d}" for t, d in normalised_cells],
                os.path.join(plots, "per_dataset.png"),
            )

        def cell_text(values: dict[str, tuple[float, float, float]], cell: str) -> str:
            return stats.format_interval(*values[cell]) if cell in values else "-"

        lines = [
            f"# Offline benchmark: preset {p.preset.name}",
            "",
            f"Tasks {', '.join(p.tasks)}; datasets {', '.join(p.datasets)}; {len(p.seeds)} seeds; "
            f"{p.steps} SGD steps per run (qreg: plus {p.sarsa_steps} of Q_sarsa pre-training); "
            f"expert MoG-DMPO, {p.expert_steps} actor steps at action repeat "
            f"{p.preset.action_repeat}; {p.episodes} episodes per collected dataset. A run's "
            f"score is its final evaluation ({p.eval_episodes} episode(s)).",
            "",
            "Normalised score = 100 * (return - random) / (expert - random), with random and "
            "expert the mean episode returns of the task's random and expert datasets (D4RL's "
            "convention). Intervals: 95 % percentile bootstrap over seeds per dataset; across "
            f"datasets rliable's stratified bootstrap ({reps} resamples; {cell_reps} per "
            f"dataset, {profile_reps} for the performance profiles).",
            "",
            "## Datasets: mean episode return",
            "",
            stats.markdown_table(
                ["task", *DATASETS],
                [
                    [t]
                    + [
                        f"{references[t]['datasets'][d]['return_mean']:.1f}"
                        if references[t]
                        else "-"
                        for d in DATASETS
                    ]
                    for t in p.tasks
                ],
            ),
            "## Normalised score per dataset: mean over seeds [95 % CI]",
            "",
            stats.markdown_table(
                ["dataset", *names],
                [
                    [f"{t}/{d}"] + [cell_text(normalised[n], f"{t}/{d}") for n in names]
                    for t, d in normalised_cells
                ],
            ),  # fmt: skip
            "## Final evaluation return per dataset: mean over seeds [95 % CI]",
            "",
            stats.markdown_table(
                ["dataset", *names],
                [[f"{t}/{d}"] + [cell_text(raw[n], f"{t}/{d}") for n in names] for t, d in cells],
            ),
        ]
        if aggregates:
            lines += [
                f"## Across datasets ({len(normalised_cells)} task-dataset pairs, "
                f"{', '.join(f'{n}: {len(score_dict[n])}' for n in score_dict)} seeds)",
                "",
                stats.aggregate_table(aggregates),
            ]
        if outputs:
            lines += ["## Plots", ""] + [
                f"- {name}: `{os.path.relpath(path, p.root)}`" for name, path in outputs.items()
            ]
            lines.append("")
        if notes:
            lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
        markdown = "\n".join(lines)
        path = os.path.join(p.root, "report.md")
        os.makedirs(p.root, exist_ok=True)
        with open(path, "w") as f:
            f.write(markdown)
        write_json(
            os.path.join(p.root, "report.json"),
            {
                "preset": p.preset.name,
                "settings": {
                    k: v
                    for k, v in dataclasses.asdict(p).items()
                    if k not in ("preset", "methods", "report_only", "dry_run")
                },
                "methods": [dataclasses.asdict(m) for m in p.methods],
                "references": references,
                "per_seed": per_seed,
                "returns": raw,
                "normalised": normalised,
                "aggregates": aggregates,
                "plots": outputs,
                "notes": notes,
            },
        )
        if aggregates:
            self.say(stats.aggregate_table(aggregates).rstrip())
        return path


def bench(argv: list[str]) -> int:
    """`antiphon bench SUITE ...`: the only suite is `offline`."""
    if not argv:
        _usage_error(
            "give a benchmark, e.g. `antiphon bench offline --preset smoke` (benchmarks: offline)"
        )
    if argv[0] in ("-h", "--help"):
        print(
            "usage: antiphon bench offline [--preset smoke|standard] [--tasks T1,T2] "
            "[--methods M1,M2] [--seeds N] [--steps N] [--root DIR] [--cache DIR] "
            "[--launcher local|ray] ...\n\n  offline  DM Control offline-RL benchmark "
            "(`antiphon bench offline --help`)"
        )
        return 0
    suite, rest = argv[0], argv[1:]
    if suite != "offline":
        _usage_error(f"unknown benchmark '{suite}' (benchmarks: offline)")
    plan = parse_plan(rest)
    previous = _interrupt_on_signals()
    try:
        return Bench(plan).run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _interrupt_on_signals() -> dict[int, Any]:
    """SIGTERM (a scheduler, `kill`) stops the bench as Ctrl-C does: the running job is stopped
    with its checkpoints, exit 130. SIGINT too where a shell started us with it ignored.
    Returns the handlers it replaced."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    return {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGINT)}


__all__ = [
    "Bench",
    "D3RLPY_METHODS",
    "DATASETS",
    "Job",
    "LocalExecutor",
    "METHODS",
    "PRESETS",
    "Plan",
    "Preset",
    "RayExecutor",
    "bench",
    "parse_plan",
]
