"""Offline learners on gymnasium data nobody tuned them for (issue 25).

Each fixture in `tests/launch/data/` is one mixed-quality file recorded with `antiphon collect`
(commands in `tests/launch/data/make_gym_offline_fixtures.sh`): a trained D4PG policy, the same
policy with heavy action noise, and uniform random episodes, one after another. Every offline
method trains on it with its defaults and must end above the uniform random policy on the same
environment (the run's own `random_policy.json`), and its critic must not diverge: at most 20 %
of its Q estimates outside the range a discounted return can take, none more than 10 % of the
range's width beyond it. Measured on the Pendulum file at 10k steps (seed 0): CRR 8.7 % outside,
6.2 % of the width beyond (a slow overshoot above the top bound, where the upright states' true
values sit); the same CRR without reward scaling (`--reward-scale 1`) diverges, 72 % outside and
18 % beyond by step 7.4k.

Pendulum-v1 (time-limit cuts only, rewards in [-16.3, 0]) runs in `make test`; InvertedPendulum-v5
(true terminals, MuJoCo) is marked slow.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from antiphon.environments.datasets import load_dataset
from antiphon.launch import cli

DATA = Path(__file__).parent / "data"
PENDULUM = ("gym:Pendulum-v1", DATA / "pendulum-mixed.npz")
INVERTED_PENDULUM = ("gym:InvertedPendulum-v5", DATA / "inverted_pendulum-mixed.npz")
METHODS = ("bc", "crr", "td3_bc", "qreg")
# CRR's critic needs the longest: its values propagate one hard target copy (100 steps) at a time.
STEPS = {"bc": 3000, "crr": 10000, "td3_bc": 3000, "qreg": 3000, "dime": 10000}
# Q_sarsa-regularised TD3: 2000 SGD steps of Q_sarsa first (its default 100k is D4RL-sized).
# Measured on the Pendulum file, seed 0: -580.8 (random -1225.9); offline TD3 (--reg none) -998.8.
EXTRA = {"qreg": ["--sarsa-steps", "2000"]}


def _last_row(path: str) -> dict[str, float]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: float(v) for k, v in rows[-1].items() if v not in ("", None)}


def _train(method: str, dataset: Path, run_dir: str, steps: int) -> tuple[float, float, dict]:
    argv = ["train", "--agent", method, "--dataset", str(dataset), "--steps", str(steps),
            "--eval-every", str(steps), "--eval-episodes", "10", "--seed", "0",
            "--run-dir", run_dir, "--no-progress", *EXTRA.get(method, [])]  # fmt: skip
    assert cli.main(argv) == 0
    final = _last_row(os.path.join(run_dir, "logs", "evaluator.csv"))
    with open(os.path.join(run_dir, "random_policy.json")) as f:
        random_return = json.load(f)["return_mean"]
    learner = _last_row(os.path.join(run_dir, "logs", "learner.csv"))
    return final["eval_return_mean"], random_return, learner


def _check(method: str, case: tuple[str, Path], tmp_path) -> None:
    environment, path = case
    dataset = load_dataset(path)
    assert dataset.metadata["environment"] == environment
    assert [p["kind"] for p in dataset.metadata["policy"]["parts"]] == [
        "snapshot", "snapshot", "random"
    ]  # fmt: skip
    final, random_return, learner = _train(method, path, str(tmp_path / method), STEPS[method])
    assert np.isfinite(final)
    assert final > random_return, (method, final, random_return)
    if "q_out_of_range" in learner:  # the critics (CRR, TD3+BC, Q_sarsa-TD3); BC has none
        assert learner["q_out_of_range"] <= 0.2, learner
        assert learner["q_beyond_range"] <= 0.1, learner


# Q_sarsa-TD3 (40 s: 2000 + 3000 steps) runs in `make test-all`: the fast suite was 902 s on a
# fresh clone with it (CI's target: under 15 minutes); its code path stays in the fast suite
# (tests/agents/test_qreg.py, the shuffled-file refusal below, the bench's smoke runs of td3).
@pytest.mark.parametrize(
    "method", [m if m != "qreg" else pytest.param(m, marks=pytest.mark.slow) for m in METHODS]
)
def test_offline_methods_beat_the_random_policy_on_a_mixed_pendulum_file(method, tmp_path):
    _check(method, PENDULUM, tmp_path)


def test_qreg_refuses_a_shuffled_file_in_one_line(tmp_path, capsys):
    """Q_sarsa needs each row's logged next action: a file whose rows are shuffled is refused
    before training, exit 2."""
    from antiphon.environments.datasets import save_dataset

    dataset = load_dataset(PENDULUM[1])
    # Shuffled, except that the file still ends with an episode's end (as files must).
    order = np.append(np.random.default_rng(0).permutation(len(dataset) - 1), len(dataset) - 1)
    shuffled = type(dataset)(
        **{name: value[order] for name, value in dataset.arrays().items()},
        metadata=dataset.metadata,
    )
    path = tmp_path / "shuffled.npz"
    save_dataset(shuffled, str(path))
    argv = ["train", "--agent", "qreg", "--dataset", str(path), "--steps", "10",
            "--run-dir", str(tmp_path / "run"), "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "not consecutive steps" in error[0], error
    # Offline TD3 (no Q_sarsa) reads no next actions: the same file trains.
    assert cli.main([*argv[:-3], "--reg", "none", "--run-dir", str(tmp_path / "td3"),
                     "--no-progress"]) == 0  # fmt: skip


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="known gap (issue 21): on this 12k-transition file DiME's critic ends with ~60 % of Q "
    "above the reachable range (~10 % of its width beyond) at lr 1e-4 and 3e-4; on the 30k file "
    "it stays inside (q_out_of_range 0.001)",
)
def test_dime_beats_the_random_policy_on_a_mixed_pendulum_file(tmp_path):
    """DiME (RL + BC) at its offline defaults; slow: N = 20 sampled actions per state make its
    10k steps about 3 minutes on one core."""
    _check("dime", PENDULUM, tmp_path)


QREG_ON_INVERTED_PENDULUM = pytest.mark.xfail(
    strict=True,
    reason="known gap (issue 22): with no BC term, Q_sarsa-regularised TD3 ends at 2.0 (random 5, "
    "data 338.8) on this file after 2000 + 3000 steps, also at 10k steps (2.0) and lambda 10 "
    "(2.0); the actor variant 52.0, offline TD3 11.6. TD3+BC, CRR and BC reach 1000",
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "method",
    [m if m != "qreg" else pytest.param(m, marks=QREG_ON_INVERTED_PENDULUM) for m in METHODS],
)
def test_offline_methods_beat_the_random_policy_on_a_mixed_inverted_pendulum_file(method, tmp_path):
    _check(method, INVERTED_PENDULUM, tmp_path)
