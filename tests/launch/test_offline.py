"""The offline path end to end: an online run records episodes and policy snapshots, `antiphon
collect` makes the D4RL recipe's five datasets from it (the small CI dataset), each round-trips
through RLDS and HDF5 with identical arrays, and `antiphon train --dataset` trains and evaluates
an offline agent; bad datasets are refused with one line and exit status 2."""

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from antiphon.environments.datasets import Dataset, load_dataset, save_dataset
from antiphon.launch import cli
from antiphon.launch.collect import RECIPE, list_snapshots
from tests.launch import evaluator_rows

ENV = "dmc:cartpole-swingup"


@pytest.fixture(scope="module")
def online_run(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("online") / "run")
    code = cli.main(
        ["train", "--agent", "d4pg", "--env", ENV, "--steps", "3000", "--action-repeat", "2",
         "--eval-every", "1000", "--eval-episodes", "1", "--record-episodes",
         "--min-replay-size", "200", "--run-dir", run_dir, "--no-progress"]
    )  # fmt: skip
    assert code == 0
    return run_dir


@pytest.fixture(scope="module")
def recipe(online_run, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("datasets"))
    code = cli.main(
        ["collect", "--env", ENV, "--recipe", online_run, "--episodes", "2", "--out", out,
         "--no-progress"]
    )  # fmt: skip
    assert code == 0
    return {name: os.path.join(out, name + ".hdf5") for name in RECIPE}


def test_collect_makes_the_five_recipe_datasets(online_run, recipe):
    datasets = {name: load_dataset(path) for name, path in recipe.items()}
    snapshots = {s.steps: s for s in list_snapshots(online_run)}
    assert sorted(snapshots) == [0, 1000, 2000, 3000]
    for name, dataset in datasets.items():
        meta = dataset.metadata
        assert meta["environment"] == ENV and meta["action_repeat"] == 2 and meta["recipe"] == name
        # dm_control tasks end by the time limit only: timeouts, never terminals.
        assert dataset.terminals.sum() == 0
        assert dataset.timeouts.sum() == dataset.num_episodes > 0
        np.testing.assert_allclose(meta["episode_returns"], dataset.episode_returns(), rtol=1e-6)
    assert datasets["random"].metadata["policy"]["kind"] == "random"
    expert = datasets["expert"].metadata["policy"]
    assert expert["snapshot_eval_return"] == max(s.eval_return for s in snapshots.values())
    medium = datasets["medium"].metadata["policy"]
    assert medium["snapshot_steps"] > 0  # never the untrained policy
    replay = datasets["medium-replay"].metadata["policy"]
    assert replay["kind"] == "replay" and replay["until_actor_steps"] == medium["snapshot_steps"]
    # The replay holds every actor episode up to that step: 500 agent steps per episode.
    assert len(datasets["medium-replay"]) == 500 * (medium["snapshot_steps"] // 1000)
    assert datasets["medium"].num_episodes == datasets["expert"].num_episodes == 2
    mixed = datasets["medium-expert"]
    np.testing.assert_array_equal(
        mixed.observations,
        np.concatenate([datasets["medium"].observations, datasets["expert"].observations]),
    )


@pytest.mark.parametrize("name", RECIPE)
def test_recipe_datasets_round_trip_through_rlds_and_hdf5(recipe, name, tmp_path):
    original = load_dataset(recipe[name])
    save_dataset(original, str(tmp_path / "rlds"), "rlds")
    save_dataset(original, str(tmp_path / "copy.hdf5"), "hdf5")
    for path in (tmp_path / "rlds", tmp_path / "copy.hdf5"):
        copy = load_dataset(str(path))
        for field, array in original.arrays().items():
            np.testing.assert_array_equal(getattr(copy, field), array, err_msg=f"{path} {field}")
            assert getattr(copy, field).dtype == array.dtype
        assert copy.metadata == original.metadata


def test_offline_training_from_a_dataset(recipe, tmp_path):
    run_dir = str(tmp_path / "crr")
    code = cli.main(
        ["train", "--agent", "crr", "--dataset", recipe["medium"], "--steps", "64",
         "--sgd-steps-per-call", "8", "--batch-size", "32", "--eval-every", "32",
         "--eval-episodes", "1", "--run-dir", run_dir, "--no-progress"]
    )  # fmt: skip
    assert code == 0
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    # Environment and action repeat come from the dataset's metadata.
    assert config["env"] == ENV and config["action_repeat"] == 2
    assert config["dataset_summary"]["episodes"] == 2
    last = evaluator_rows(run_dir)[-1]
    assert int(last["learner_steps"]) == 64 and np.isfinite(last["eval_return_mean"])
    assert os.listdir(os.path.join(run_dir, "checkpoints", "learner"))
    assert any(n.endswith(".msgpack") for n in os.listdir(os.path.join(run_dir, "snapshots")))


def test_resuming_from_a_checkpoint_of_another_learner_is_refused(recipe, tmp_path, capsys):
    # A run directory whose learner checkpoint no longer fits the learner (written by an older
    # antiphon, say): one line, exit 2, and the checkpoint left on disk untouched.
    from antiphon.core.checkpointing import save_pytree

    run_dir = str(tmp_path / "bc")
    argv = [
        "train", "--agent", "bc", "--dataset", recipe["medium"], "--batch-size", "32",
        "--eval-every", "1000", "--eval-episodes", "1", "--run-dir", run_dir, "--no-progress",
    ]  # fmt: skip
    assert cli.main([*argv, "--steps", "16"]) == 0
    checkpoints = os.path.join(run_dir, "checkpoints", "learner")
    names = [n for n in os.listdir(checkpoints) if n.endswith(".msgpack")]
    paths = [os.path.join(checkpoints, n) for n in names]
    assert paths
    for path in paths:
        save_pytree(path, {"state": {"other_learner": np.zeros(3)}})

    def contents():
        return {path: Path(path).read_bytes() for path in paths}

    before = contents()
    capsys.readouterr()
    assert cli.main([*argv, "--steps", "32"]) == 2
    err = capsys.readouterr().err.strip()
    # The run's "resuming ..." line, then the error on one line; no traceback.
    assert "Traceback" not in err, err
    last = err.splitlines()[-1]
    assert last.startswith("antiphon train: error: cannot resume") and checkpoints in last, err
    assert contents() == before


# ---- bad input: one line, exit 2, no run directory


def _refused(argv, capsys, run_dir, expected):
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert expected in err, err
    assert not os.path.exists(run_dir)


def _write_bad_hdf5(path, **changes):
    rng = np.random.default_rng(0)
    arrays = {
        "observations": rng.normal(size=(10, 5)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(10, 1)).astype(np.float32),
        "rewards": rng.uniform(size=10).astype(np.float32),
        "next_observations": rng.normal(size=(10, 5)).astype(np.float32),
        "terminals": np.zeros(10, bool),
        "timeouts": np.arange(10) == 9,
    }
    arrays.update(changes)
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            if value is not None:
                f.create_dataset(key, data=value)
        f.attrs["metadata"] = json.dumps({"environment": ENV, "action_repeat": 1})


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"rewards": None}, "'rewards'"),
        ({"rewards": np.full(10, np.nan, np.float32)}, "'rewards'"),
        ({"actions": np.zeros((9, 1), np.float32)}, "'actions'"),
        ({"actions": np.array(["a"] * 10).reshape(10, 1).astype("S1")}, "'actions'"),
        ({"timeouts": np.zeros(10, bool)}, "never ends"),
        # The right fields, the wrong environment: cartpole observes 5 numbers, not 7.
        (
            {
                "observations": np.zeros((10, 7), np.float32),
                "next_observations": np.zeros((10, 7), np.float32),
            },
            "'observations'",
        ),  # fmt: skip
        ({"actions": np.full((10, 1), 3.0, np.float32)}, "action bounds"),
    ],
)
def test_offline_train_refuses_malformed_datasets(tmp_path, capsys, changes, expected):
    path = str(tmp_path / "bad.hdf5")
    _write_bad_hdf5(path, **changes)
    run_dir = str(tmp_path / "run")
    argv = ["train", "--agent", "crr", "--dataset", path, "--run-dir", run_dir, "--no-progress"]
    _refused(argv, capsys, run_dir, expected)


def test_offline_train_refuses_mismatched_or_missing_inputs(tmp_path, capsys):
    path = str(tmp_path / "ok.hdf5")
    _write_bad_hdf5(path)
    run_dir = str(tmp_path / "run")
    base = ["train", "--run-dir", run_dir, "--no-progress"]
    _refused([*base, "--agent", "crr", "--dataset", path, "--env", "dmc:walker-walk"], capsys,
             run_dir, "field 'metadata.environment' is 'dmc:cartpole-swingup'")  # fmt: skip
    _refused([*base, "--agent", "crr", "--dataset", path, "--action-repeat", "2"], capsys,
             run_dir, "field 'metadata.action_repeat' is 1")  # fmt: skip
    _refused([*base, "--agent", "crr", "--dataset", str(tmp_path / "nope.hdf5")], capsys,
             run_dir, "no such dataset")  # fmt: skip
    _refused([*base, "--agent", "crr", "--env", ENV], capsys, run_dir, "give --dataset")
    _refused([*base, "--agent", "d4pg", "--env", ENV, "--dataset", path], capsys, run_dir,
             "--dataset is for offline agents")  # fmt: skip
    (tmp_path / "notes.txt").write_text("not a dataset")
    _refused([*base, "--agent", "bc", "--dataset", str(tmp_path / "notes.txt")], capsys,
             run_dir, "notes.txt")  # fmt: skip


def test_collect_refuses_bad_input(tmp_path, capsys):
    out = str(tmp_path / "d.hdf5")
    for argv, expected in [
        (["--env", ENV, "--out", out], "exactly one of --policy and --recipe"),
        (["--env", ENV, "--policy", "runs/none", "--out", out], "no such run directory"),
        (["--env", "dmc:nosuch-task", "--policy", "random", "--out", out], "unknown environment"),
        (["--env", ENV, "--policy", "random", "--episodes", "0", "--out", out], "--episodes"),
        (["--env", ENV, "--policy", "random", "--behaviour-policy", "--out", out], "snapshot"),
    ]:
        code = cli.main(["collect", *argv])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and expected in err, err
    assert not os.path.exists(out)


def test_collect_with_several_policies_writes_each_part_in_order(online_run, tmp_path, capsys):
    """Repeated --policy: each policy's episodes one after another in one file, each part in the
    metadata with its episode range and noise; the noiseless snapshot part is exactly what a
    single-policy collect with the same seed writes."""
    path = str(tmp_path / "mixed.npz")
    assert cli.main(["collect", "--env", ENV, "--policy", f"{online_run}@latest",
                     "--policy", f"{online_run}@latest", "--policy", "random",
                     "--action-noise", "0", "--action-noise", "1.0", "--action-noise", "0",
                     "--episodes", "2", "--seed", "5", "--format", "npz", "--out", path,
                     "--no-progress"]) == 0  # fmt: skip
    mixed = load_dataset(path)
    parts = mixed.metadata["policy"]["parts"]
    assert mixed.metadata["policy"]["kind"] == "mixture" and mixed.num_episodes == 6
    assert [p["kind"] for p in parts] == ["snapshot", "snapshot", "random"]
    assert [p["episodes"] for p in parts] == [[0, 2], [2, 4], [4, 6]]
    assert [p.get("action_noise") for p in parts] == [0.0, 1.0, None]
    single = str(tmp_path / "single.npz")
    assert cli.main(["collect", "--env", ENV, "--policy", f"{online_run}@latest",
                     "--action-noise", "0", "--episodes", "2", "--seed", "5", "--format", "npz",
                     "--out", single, "--no-progress"]) == 0  # fmt: skip
    first = load_dataset(single)
    np.testing.assert_array_equal(mixed.actions[: len(first.actions)], first.actions)
    # The heavy-noise part's actions are not the greedy ones (different seed, noise 1.0 clipped).
    second = mixed.actions[len(first.actions) : 2 * len(first.actions)]
    assert np.mean(np.abs(second) > 0.99) > 0.2
    capsys.readouterr()
    code = cli.main(["collect", "--env", ENV, "--policy", "random", "--policy", "random",
                     "--action-noise", "0", "--action-noise", "0", "--action-noise", "0",
                     "--out", str(tmp_path / "x.npz")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "one per --policy" in err, err


def test_collect_with_the_behaviour_policy_acts_differently_from_the_evaluation_policy(
    online_run, tmp_path
):
    """Same environment seed, no action noise: the evaluation (greedy) policy repeats its actions
    exactly; --behaviour-policy acts with the agent's exploring policy instead."""
    actions = {}
    for name, extra in (("greedy", []), ("again", []), ("behaviour", ["--behaviour-policy"])):
        path = str(tmp_path / f"{name}.hdf5")
        assert cli.main(["collect", "--env", ENV, "--policy", f"{online_run}@latest",
                         "--episodes", "1", "--action-noise", "0", "--seed", "3", "--out", path,
                         "--no-progress", *extra]) == 0  # fmt: skip
        dataset = load_dataset(path)
        actions[name] = dataset.actions
        acting = "behaviour" if extra else "evaluation"
        assert dataset.metadata["policy"]["acting"] == acting
    np.testing.assert_array_equal(actions["greedy"], actions["again"])
    assert np.abs(actions["behaviour"] - actions["greedy"]).mean() > 0.01


def test_collect_from_a_critic_weighted_crr_run(recipe, tmp_path):
    """A CRR run that evaluates with the critic-weighted policy snapshots [policy, critic]; collect
    acts with both (evaluation) or with the policy alone (--behaviour-policy)."""
    run_dir = str(tmp_path / "crr-cwp")
    assert cli.main(
        ["train", "--agent", "crr", "--dataset", recipe["medium"], "--steps", "16",
         "--sgd-steps-per-call", "8", "--batch-size", "32", "--eval-every", "16",
         "--eval-episodes", "1", "--run-dir", run_dir, "--no-progress",
         "--critic-weighted-policy", "true", "--cwp-samples", "4"]
    ) == 0  # fmt: skip
    for acting, extra in (("evaluation", []), ("behaviour", ["--behaviour-policy"])):
        path = str(tmp_path / f"{acting}.hdf5")
        assert cli.main(["collect", "--env", ENV, "--policy", f"{run_dir}@latest",
                         "--episodes", "1", "--action-noise", "0", "--out", path,
                         "--no-progress", *extra]) == 0  # fmt: skip
        dataset = load_dataset(path)
        assert len(dataset) == 500 and dataset.metadata["policy"]["acting"] == acting


def test_collect_random_policy_to_every_format(tmp_path):
    for fmt, name in (("hdf5", "r.hdf5"), ("npz", "r.npz"), ("rlds", "r_rlds")):
        path = str(tmp_path / name)
        assert cli.main(["collect", "--env", ENV, "--policy", "random", "--episodes", "1",
                         "--out", path, "--format", fmt, "--no-progress"]) == 0  # fmt: skip
        dataset = load_dataset(path)
        assert isinstance(dataset, Dataset) and len(dataset) == 1000
        assert dataset.metadata["policy"] == {"kind": "random"}


def test_sigterm_stops_a_run_with_checkpoints(recipe, tmp_path):
    """A scheduler's SIGTERM (or `kill`) ends a run like Ctrl-C: exit 130, learner checkpoint
    on disk. Started the way a non-interactive shell starts a background job: SIGINT ignored."""
    import signal
    import subprocess
    import sys
    import time

    run_dir = str(tmp_path / "run")
    process = subprocess.Popen(
        [sys.executable, "-m", "antiphon.launch.cli", "train", "--agent", "bc", "--dataset",
         recipe["medium"], "--steps", "10000000", "--eval-every", "1000000", "--eval-episodes",
         "1", "--run-dir", run_dir, "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    learner_log = os.path.join(run_dir, "logs", "learner.csv")
    try:
        deadline = time.time() + 300
        # A data row: the learner has stepped (the file itself appears when it is built).
        while time.time() < deadline and not (
            os.path.exists(learner_log) and len(open(learner_log).read().splitlines()) >= 2
        ):
            assert process.poll() is None, process.stdout.read()
            time.sleep(0.5)
        assert os.path.exists(learner_log), "the learner never logged a step"
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:  # never leave a training process behind for later tests
            process.kill()
            process.wait()
    assert process.returncode == 130, output
    assert os.listdir(os.path.join(run_dir, "checkpoints", "learner")), output
