"""`antiphon bench offline`: the statistics on hand-computed values, the one-line refusals, the
commands it builds, resuming (with a stand-in executor that writes what the real commands would),
the Ray executor on trivial jobs, and one end-to-end run of the smoke preset."""

from __future__ import annotations

import csv
import io
import json
import os
import shlex

import h5py
import numpy as np
import pytest
from rich.console import Console

from antiphon.launch import bench, cli
from antiphon.launch import bench_report as stats

# ------------------------------------------------------------------------------------------------
# Statistics


def test_normalised_score_is_d4rls():
    assert stats.normalized_score(60.0, random_return=10.0, expert_return=110.0) == 50.0
    assert stats.normalized_score(10.0, 10.0, 110.0) == 0.0
    assert stats.normalized_score(110.0, 10.0, 110.0) == 100.0
    np.testing.assert_allclose(
        stats.normalized_score(np.array([-40.0, 160.0]), 10.0, 110.0), [-50.0, 150.0]
    )
    with pytest.raises(ValueError, match="equals the random return"):
        stats.normalized_score(1.0, 5.0, 5.0)


def test_iqm_is_the_mean_of_the_middle_half():
    # 8 values: the lowest two and the highest two go, mean(3, 4, 5, 6) = 4.5.
    assert stats.iqm(np.arange(1.0, 9.0)) == pytest.approx(4.5)
    # Runs x tasks are pooled, and the outlier does not move it.
    assert stats.iqm(np.array([[1.0, 100.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]])) == 4.5


def test_bootstrap_interval_holds_the_mean_and_shrinks_with_more_runs():
    few = np.array([40.0, 45.0, 55.0, 60.0])
    many = np.tile(few, 25)  # the same spread over 25 times the runs: sqrt(25) = 5x narrower
    mean, low, high = stats.bootstrap_interval(few, reps=2000)
    assert mean == 50.0 and low <= mean <= high and high - low > 5.0
    mean_many, low_many, high_many = stats.bootstrap_interval(many, reps=2000)
    assert mean_many == 50.0 and low_many <= mean_many <= high_many
    assert high_many - low_many < (high - low) / 3
    assert stats.bootstrap_interval([7.0]) == (7.0, 7.0, 7.0)
    # The same seed, the same interval (rliable draws from numpy's global generator).
    assert stats.bootstrap_interval(few, reps=500, seed=3) == stats.bootstrap_interval(
        few, reps=500, seed=3
    )


def test_aggregates_bracket_their_point_and_narrow_with_more_runs():
    rng = np.random.default_rng(1)
    tasks = np.array([20.0, 50.0, 80.0])
    few = tasks + rng.normal(0.0, 10.0, size=(3, 3))  # (runs, tasks)
    many = tasks + rng.normal(0.0, 10.0, size=(60, 3))
    estimates = stats.aggregate_estimates({"few": few, "many": many}, reps=1000)
    assert set(estimates["few"]) == set(stats.AGGREGATES)
    for name in ("few", "many"):
        for point, low, high in estimates[name].values():
            assert low <= point <= high
    assert estimates["few"]["IQM"][0] == pytest.approx(stats.iqm(few))
    assert estimates["few"]["Mean"][0] == pytest.approx(few.mean())
    width = {n: estimates[n]["IQM"][2] - estimates[n]["IQM"][1] for n in ("few", "many")}
    assert width["many"] < width["few"]
    # Optimality gap to 100: every score is below it, so it is 100 - mean.
    assert estimates["few"]["Optimality Gap"][0] == pytest.approx(100.0 - few.mean())
    table = stats.aggregate_table(estimates)
    assert table.splitlines()[0].startswith("| method | IQM [95 % CI]")


def test_performance_profile_runs_from_all_to_none():
    scores = {"a": np.array([[10.0, 20.0], [30.0, 40.0]])}
    thresholds = np.array([0.0, 25.0, 50.0])
    profiles, intervals = stats.performance_profiles(scores, thresholds, reps=200)
    np.testing.assert_allclose(profiles["a"], [1.0, 0.5, 0.0])
    assert intervals["a"].shape == (2, 3)
    assert stats.profile_thresholds(scores)[[0, -1]].tolist() == [0.0, 100.0]


# ------------------------------------------------------------------------------------------------
# Refusals: one line on stderr, exit 2, nothing written


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--tasks", "cheetah-runn"], "unknown environment 'dmc:cheetah-runn'; did you mean"),
        (["--tasks", "gym:Pendulum-v1"], "is not a DM Control task"),
        (["--methods", "bc,crx"], "unknown method 'crx' (did you mean 'crr'?)"),
        (["--preset", "huge"], "invalid choice: 'huge'"),
        (["--datasets", "medium,hard"], "unknown dataset 'hard'"),
        (["--seeds", "0"], "--seeds must be >= 1"),
        (["--ray-address", "127.0.0.1:1"], "--ray-address needs --launcher ray"),
        (["--no-such-option"], "unrecognized arguments: --no-such-option"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, expected):
    root = tmp_path / "root"
    status = cli.main(["bench", "offline", "--root", str(root), "--cache", str(root), *argv])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1 and err.startswith("antiphon bench: error:")
    assert expected in err
    assert not root.exists()


def test_unknown_benchmark_and_missing_suite(capsys):
    assert cli.main(["bench", "online"]) == 2
    assert "unknown benchmark 'online' (benchmarks: offline)" in capsys.readouterr().err
    assert cli.main(["bench"]) == 2
    assert "give a benchmark" in capsys.readouterr().err


def test_d3rlpy_outside_a_source_checkout_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "repository_root", lambda: str(tmp_path))
    assert cli.main(["bench", "offline", "--with-d3rlpy", "--root", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs a source checkout" in err


def test_recipe_names_are_collects():
    from antiphon.launch.collect import RECIPE

    assert bench.DATASETS == RECIPE


# ------------------------------------------------------------------------------------------------
# The commands


def _plan(tmp_path, *argv: str) -> bench.Plan:
    return bench.parse_plan(
        ["--preset", "smoke", "--root", str(tmp_path / "root"), "--cache", str(tmp_path / "c")]
        + list(argv)
    )


def test_every_method_builds_an_antiphon_train_command_its_agent_accepts(tmp_path):
    from antiphon.agents.registry import get_builder_class

    plan = _plan(tmp_path)
    assert [m.name for m in plan.methods] == list(bench.METHODS)
    runner = bench.Bench(plan, console=Console(file=io.StringIO()))
    for method in plan.methods:
        argv = runner.offline_argv("cheetah-run", "medium", method, 1)
        assert argv[:4] == ["-m", "antiphon.launch.cli", "train", "--agent"]
        builder_class = get_builder_class(method.agent)
        builder_class = getattr(builder_class, "offline_variant", None) or builder_class
        args = cli._train_parser(builder_class.config_class).parse_args(argv[3:])
        assert args.dataset.endswith("/medium.hdf5") and args.seed == 1
        assert args.run_dir == runner.run_dir("cheetah-run", "medium", method, 1)
        assert "--overwrite" not in argv  # an existing run directory resumes
    assert bench.METHODS["td3"].options == ("--reg", "none")
    assert runner.offline_target(bench.METHODS["td3"]) == plan.steps
    assert runner.offline_target(bench.METHODS["qreg_critic"]) == plan.steps + plan.sarsa_steps
    expert = runner.expert_jobs(["cheetah-run"])[0].argv
    assert " ".join(expert[2:9]) == "train --agent mpo --critic-type mog --env dmc:cheetah-run"
    assert "--record-episodes" in expert


def test_method_groups_and_overrides(tmp_path):
    plan = _plan(tmp_path, "--methods", "qreg,bc,bc", "--seeds", "3", "--steps", "500")
    assert [m.name for m in plan.methods] == ["qreg_critic", "qreg_critic_actor", "bc"]
    assert plan.seeds == (0, 1, 2) and plan.steps == 500 and plan.eval_every == 500
    assert bench.parse_plan(["--tasks", "dmc:walker-walk,cheetah-run"]).tasks == (
        "walker-walk",
        "cheetah-run",
    )


# ------------------------------------------------------------------------------------------------
# Resuming: a stand-in executor writes what each real command would


def _option(argv: list[str], name: str, default: str | None = None) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else default


def _write_evaluations(run_dir: str, key: str, steps: list[int], returns: list[float]) -> None:
    os.makedirs(os.path.join(run_dir, "logs"), exist_ok=True)
    with open(os.path.join(run_dir, "logs", "evaluator.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([key, "eval_return_mean"])
        writer.writerows(zip(steps, returns, strict=True))


class FakeExecutor:
    """Runs no process: writes the files the command would have written, then reports the exit
    status `statuses` gives for the job's run directory (default 0)."""

    def __init__(self, statuses: dict[str, int] | None = None):
        self.commands: list[list[str]] = []
        self.statuses = statuses or {}

    def run(self, jobs, progress) -> None:
        for job in jobs:
            self.commands.append(job.argv)
            argv = job.argv[2:]
            status = 0
            if argv[0] == "collect":
                out = _option(argv, "--out")
                os.makedirs(out, exist_ok=True)
                for offset, name in enumerate(bench.DATASETS):
                    with h5py.File(os.path.join(out, name + ".hdf5"), "w") as f:
                        returns = [10.0 * offset, 10.0 * offset + 2.0]  # random 1, expert 31
                        f.attrs["metadata"] = json.dumps({"episode_returns": returns})
            elif _option(argv, "--agent") == "mpo":
                run_dir = _option(argv, "--run-dir")
                steps = int(_option(argv, "--steps"))
                _write_evaluations(run_dir, "actor_steps", [0, steps], [5.0, 3.0])
                os.makedirs(os.path.join(run_dir, "snapshots"), exist_ok=True)
                for step, value in ((0, 5.0), (steps, 3.0)):  # the untrained one evaluates best
                    name = os.path.join(run_dir, "snapshots", f"policy-{step:010d}")
                    with open(name + ".json", "w") as f:
                        json.dump({"eval_return_mean": value}, f)
                    open(name + ".msgpack", "w").close()
            else:
                run_dir = _option(argv, "--run-dir")
                status = self.statuses.get(run_dir, 0)
                target = int(_option(argv, "--steps"))
                if _option(argv, "--agent") == "qreg" and _option(argv, "--reg") != "none":
                    target += int(_option(argv, "--sarsa-steps"))
                final = target if status == 0 else target // 2
                seed = int(_option(argv, "--seed"))
                _write_evaluations(run_dir, "learner_steps", [0, final], [1.0, 11.0 + seed])
                if status == bench.DIVERGED_EXIT_STATUS:
                    open(os.path.join(run_dir, "diverged.json"), "w").close()
            job.done(job, status)


def _bench(plan, executor) -> tuple[int, str]:
    out = io.StringIO()
    status = bench.Bench(plan, executor=executor, console=Console(file=out, width=300)).run()
    return status, out.getvalue()


def _results(plan) -> dict[str, bytes]:
    found = {}
    for directory, _, files in os.walk(os.path.join(plan.root, "results")):
        for name in files:
            with open(os.path.join(directory, name), "rb") as f:
                found[os.path.join(directory, name)] = f.read()
    return found


def test_a_second_run_trains_nothing_and_an_unfinished_run_resumes(tmp_path):
    plan = _plan(tmp_path, "--methods", "bc,qreg_critic,td3", "--datasets", "medium,expert")
    first = FakeExecutor()
    status, _ = _bench(plan, first)
    assert status == 0
    assert len(first.commands) == 1 + 1 + 3 * 2 * 2  # expert, data, 12 runs
    results = _results(plan)
    assert len(results) == 12
    runner = bench.Bench(plan, console=Console(file=io.StringIO()))
    one = json.loads(results[runner.result_path("cheetah-run", "expert", plan.methods[1], 1)])
    assert one["eval_return_mean"] == 12.0 and one["diverged"] is False
    assert one["learner_steps"] == plan.steps + plan.sarsa_steps
    # The expert's untrained snapshot evaluated best: the bench leaves it where it is (the
    # snapshot selection never names step 0 while a trained one exists; test_snapshot_selection).
    snapshots = os.path.join(runner.expert_dir("cheetah-run"), "snapshots")
    assert os.path.exists(os.path.join(snapshots, "policy-0000000000.json"))
    report = open(os.path.join(plan.root, "report.md")).read()
    assert "## Across datasets" in report and "| qreg_critic |" in report
    # Normalised: random 1, expert 31 (the fake datasets' means); seed 0 scores 11 -> 33.3.
    assert "cheetah-run/medium | 35.0 [33.3, 36.7]" in report
    for png in ("aggregates", "performance_profiles", "per_dataset"):
        assert os.path.getsize(os.path.join(plan.root, "plots", png + ".png")) > 0

    # Again: nothing runs, and no result file changes.
    second = FakeExecutor()
    status, out = _bench(plan, second)
    assert status == 0 and second.commands == []
    assert _results(plan) == results
    assert "12 of 12 runs finished earlier" in out and "[expert] cheetah-run: cached" in out

    # A run that died half way (its run directory, no result file): resumed with the same run
    # directory. One whose evaluator logged the final step: only read.
    method = bench.METHODS["td3"]
    unfinished = runner.run_dir("cheetah-run", "medium", method, 0)
    os.remove(runner.result_path("cheetah-run", "medium", method, 0))
    _write_evaluations(unfinished, "learner_steps", [0], [1.0])
    os.remove(runner.result_path("cheetah-run", "expert", method, 1))
    third = FakeExecutor()
    status, _ = _bench(plan, third)
    assert status == 0 and len(third.commands) == 1
    assert _option(third.commands[0], "--run-dir") == unfinished
    assert "--overwrite" not in third.commands[0]
    assert set(_results(plan)) == set(results)


def test_failed_and_diverged_runs(tmp_path):
    plan = _plan(tmp_path, "--methods", "bc,td3", "--datasets", "medium", "--seeds", "1")
    runner = bench.Bench(plan, console=Console(file=io.StringIO()))
    failing = runner.run_dir("cheetah-run", "medium", bench.METHODS["bc"], 0)
    diverging = runner.run_dir("cheetah-run", "medium", bench.METHODS["td3"], 0)
    status, out = _bench(plan, FakeExecutor({failing: 1, diverging: 3}))
    assert status == 1
    assert "cheetah-run medium bc seed 0: failed with exit status 1" in out
    results = _results(plan)
    assert list(results) == [runner.result_path("cheetah-run", "medium", bench.METHODS["td3"], 0)]
    assert json.loads(next(iter(results.values())))["diverged"] is True
    # The failed run is tried again, and only it.
    retry = FakeExecutor()
    assert _bench(plan, retry)[0] == 0
    assert [_option(c, "--run-dir") for c in retry.commands] == [failing]


def test_results_from_other_datasets_are_refused(tmp_path, capsys):
    plan = _plan(tmp_path, "--methods", "bc", "--datasets", "medium", "--seeds", "1")
    runner = bench.Bench(plan, console=Console(file=io.StringIO()))
    bench.write_json(
        runner.result_path("cheetah-run", "medium", plan.methods[0], 0),
        {"dataset": "/elsewhere/medium.hdf5", "eval_return_mean": 1.0},
    )
    argv = ["bench", "offline", "--preset", "smoke", "--methods", "bc", "--datasets", "medium"]
    argv += ["--seeds", "1", "--root", plan.root, "--cache", plan.cache, "--episodes", "2"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "holds results trained on other datasets" in err and len(err.splitlines()) == 1


# ------------------------------------------------------------------------------------------------
# Ray: every job a task


def test_ray_executor_runs_every_job_as_a_task(tmp_path):
    from tests.launch.ray_helpers import assert_no_ray_processes, start_marking, stop_marking

    run_id = start_marking()
    executor = bench.RayExecutor(address=None, cpus=1, gpus=0)
    done: dict[str, int] = {}
    jobs = [
        bench.Job(
            label=f"job {i}",
            argv=["-c", f"import sys, os; open({str(tmp_path / f'out{i}')!r}, 'w'); sys.exit({i})"],
            log=str(tmp_path / f"job{i}.log"),
            done=lambda job, status: done.__setitem__(job.label, status),
        )
        for i in (0, 3)
    ]
    try:
        executor.run(jobs, progress=lambda running: None)
    finally:
        executor.close()
        stop_marking()
    assert done == {"job 0": 0, "job 3": 3}
    assert (tmp_path / "out0").exists() and (tmp_path / "out3").exists()
    assert_no_ray_processes(run_id)


# ------------------------------------------------------------------------------------------------
# End to end: the smoke preset, real subprocesses (about 2 minutes on 2 busy cores)


def test_smoke_preset_end_to_end_then_resume(tmp_path):
    root, cache = tmp_path / "bench", tmp_path / "cache"
    argv = "bench offline --preset smoke --methods td3 --datasets medium,medium-replay "
    argv += f"--root {root} --cache {cache}"
    assert cli.main(shlex.split(argv)) == 0
    plan = bench.parse_plan(shlex.split(argv)[2:])
    results = _results(plan)
    assert len(results) == 2 * 2  # two datasets x two seeds
    for text in results.values():
        result = json.loads(text)
        assert np.isfinite(result["eval_return_mean"])
        assert result["learner_steps"] >= plan.steps and result["method"] == "td3"
    runner = bench.Bench(plan, console=Console(file=io.StringIO()))
    marker = json.load(open(runner.datasets_marker("cheetah-run")))
    assert set(marker["datasets"]) == set(bench.DATASETS)
    report = json.load(open(root / "report.json"))
    assert set(report["normalised"]["td3"]) == {"cheetah-run/medium", "cheetah-run/medium-replay"}
    assert "IQM" in report["aggregates"]["td3"]
    assert os.path.getsize(root / "plots" / "performance_profiles.png") > 0
    # Resumed: nothing is trained again and no result changes.
    assert cli.main(shlex.split(argv)) == 0
    assert _results(plan) == results
