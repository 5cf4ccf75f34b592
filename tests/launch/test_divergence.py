"""A run whose learning rate diverges: it stops with one clear line and exit status 3, the
checkpoint on disk is the last finite state, and the same run directory resumes with a sane
learning rate (no --overwrite) and continues from that state."""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest

from antiphon.core import checkpointing
from antiphon.environments.datasets import save_dataset
from antiphon.launch import cli


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory) -> str:
    from antiphon.launch import collect

    path = str(tmp_path_factory.mktemp("data") / "cartpole_random.hdf5")
    save_dataset(collect.collect("dmc:cartpole-swingup", "random", 2, seed=0), path)
    return path


def _newest_checkpoint(run_dir: str):
    paths = glob.glob(os.path.join(run_dir, "checkpoints", "learner", "ckpt-*.msgpack"))
    newest = max(paths, key=lambda p: int(p.rsplit("-", 1)[1].split(".")[0]))
    # The raw leaves, without a template: every float leaf must be finite.
    import msgpack

    with open(newest, "rb") as f:
        payload = msgpack.unpackb(f.read(), raw=False, strict_map_key=False)
    leaves = dict(zip(payload["paths"], payload["leaves"], strict=True))
    return {path: checkpointing._decode_leaf(leaf) for path, leaf in leaves.items()}


def test_diverging_run_stops_keeps_the_last_finite_state_and_resumes(
    dataset_path, tmp_path, capsys
):
    run_dir = str(tmp_path / "run")
    common = [
        "train",
        "--agent",
        "crr",
        "--dataset",
        dataset_path,
        "--steps",
        "400",
        "--eval-every",
        "200",
        "--eval-episodes",
        "1",
        "--max-gradient-norm",
        "0",
        "--no-progress",
        "--run-dir",
        run_dir,
    ]
    code = cli.main(common + ["--policy-learning-rate", "1e6", "--critic-learning-rate", "1e6"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == cli.DIVERGED_EXIT_STATUS
    line = err[-1]
    assert line.startswith("antiphon train: the learner diverged at SGD step ")
    assert "loss" in line and "no --overwrite needed" in line
    with open(os.path.join(run_dir, "diverged.json")) as f:
        record = json.load(f)
    # Stopped within one call (8 SGD steps) of the first non-finite value: nothing past it ran.
    assert record["last_finite_step"] < record["step"] <= record["last_finite_step"] + 8
    assert record["checkpoint_step"] == record["last_finite_step"]

    leaves = _newest_checkpoint(run_dir)
    steps = [v for p, v in leaves.items() if p.endswith(".steps")]
    assert [int(s) for s in steps] == [record["last_finite_step"]]
    for path, value in leaves.items():
        if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating):
            assert np.all(np.isfinite(value)), path

    # Resume with a sane learning rate, same run directory, no --overwrite.
    code = cli.main(common + ["--policy-learning-rate", "1e-4", "--critic-learning-rate", "1e-4"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "resuming a run whose learner diverged" in err
    assert "policy_learning_rate: 1000000.0 -> 0.0001" in err
    assert not os.path.exists(os.path.join(run_dir, "diverged.json"))
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    assert config["config"]["critic_learning_rate"] == 1e-4
    assert config["history"][0]["diverged"]["step"] == record["step"]
    leaves = _newest_checkpoint(run_dir)
    steps = [int(v) for p, v in leaves.items() if p.endswith(".steps")]
    assert steps[0] >= 400
    with open(os.path.join(run_dir, "logs", "evaluator.csv")) as f:
        rows = f.read().splitlines()
    assert all("nan" not in row for row in rows[1:])


def test_a_run_that_did_not_diverge_still_refuses_other_settings(dataset_path, tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    base = ["train", "--agent", "bc", "--dataset", dataset_path, "--steps", "16"]
    base += ["--eval-every", "0", "--no-progress", "--run-dir", run_dir]
    assert cli.main(base) == 0
    capsys.readouterr()
    assert cli.main(base + ["--learning-rate", "1e-3"]) == 2
    assert "was started with learning_rate=0.0001" in capsys.readouterr().err
