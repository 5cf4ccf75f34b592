"""Which policy snapshot `RUN@expert` / `@medium` / `@latest` / `@step=N` names, on hand-written
snapshot files: the untrained step-0 policy is never the expert or medium while a trained one
exists."""

from __future__ import annotations

import json
import os

import pytest

from antiphon.agents.snapshots import SnapshotError, select_snapshot


def _run(tmp_path, returns: dict[int, float]) -> str:
    directory = tmp_path / "snapshots"
    os.makedirs(directory)
    for steps, value in returns.items():
        (directory / f"policy-{steps:010d}.msgpack").write_bytes(b"")
        (directory / f"policy-{steps:010d}.json").write_text(
            json.dumps({"eval_return_mean": value})
        )
    return str(tmp_path)


def test_expert_medium_latest_and_step(tmp_path):
    run = _run(tmp_path, {0: 5.0, 100: 40.0, 200: 90.0, 300: 100.0, 400: 80.0})
    assert select_snapshot(run, "expert").steps == 300
    assert select_snapshot(run, "medium").steps == 100  # return closest to 100 / 2, before it
    assert select_snapshot(run, "latest").steps == 400
    assert select_snapshot(run, "step=200").eval_return == 90.0
    with pytest.raises(SnapshotError, match="no snapshot at step 250"):
        select_snapshot(run, "step=250")


def test_an_untrained_policy_that_evaluated_best_is_not_the_expert(tmp_path):
    run = _run(tmp_path, {0: 50.0, 100: 10.0, 200: 30.0})
    assert select_snapshot(run, "expert").steps == 200
    assert select_snapshot(run, "medium").steps > 0


def test_a_run_with_only_its_untrained_snapshot_still_has_one(tmp_path):
    run = _run(tmp_path, {0: 3.0})
    assert select_snapshot(run, "expert").steps == 0
