"""`antiphon plot --pareto`: per-run points from hand-written evaluator logs (exact means of the
last evaluations), the PNG, and the one-line refusals."""

from __future__ import annotations

import json
import os

import pytest

from antiphon.launch import cli
from antiphon.launch.plotting import pareto_points

HEADER = "actor_steps,eval_return_mean,eval_return_mean/task,eval_return_mean/action_cost\n"


def _run(root, name, combination, preferences, rows, seed=0, reward_scales=None):
    run = root / name
    os.makedirs(run / "logs")
    with open(run / "logs" / "evaluator.csv", "w") as f:
        f.write(HEADER)
        for step, (task, cost) in enumerate(rows):
            f.write(f"{step * 1000},{task},{task},{cost}\n")
    config = {
        "agent": "dime",
        "seed": seed,
        "config": {"combination": combination, "preferences": preferences},
    }
    if reward_scales is not None:
        config["config"]["reward_scales"] = reward_scales
    with open(run / "config.json", "w") as f:
        json.dump(config, f)
    return str(run)


def test_points_average_the_last_evaluations_and_carry_the_label(tmp_path):
    a = _run(tmp_path, "a", "dime", [0.7, 0.3], [(0, -9), (100, -6), (200, -3), (300, -3)])
    b = _run(tmp_path, "b", "linear", [0.5, 0.5], [(50, -1), (60, -2)], seed=1)
    names, points = pareto_points([a, b], last=3)
    assert names == ["task", "action_cost"]
    assert points[0]["returns"] == [200.0, -4.0]  # mean of the last three rows
    assert points[1]["returns"] == [55.0, -1.5]  # only two rows
    assert points[0]["label"] == "dime 0.7,0.3" and points[1]["seed"] == 1


def test_runs_with_scaled_rewards_form_their_own_front(tmp_path):
    plain = _run(tmp_path, "p", "linear", [0.5, 0.5], [(1, -1)], reward_scales=[1.0, 1.0])
    scaled = _run(tmp_path, "s", "linear", [0.5, 0.5], [(1, -1)], reward_scales=[1.0, 100.0])
    _, points = pareto_points([plain, scaled])
    assert points[0]["combination"] == "linear" and points[0]["label"] == "linear 0.5,0.5"
    assert points[1]["combination"] == "linear rewards x1,100"
    assert points[1]["label"] == "linear rewards x1,100 0.5,0.5"


def test_the_command_writes_a_png(tmp_path, capsys):
    runs = [
        _run(tmp_path, f"r{i}", c, [p, 1 - p], [(100 * p, -p)], seed=i)
        for i, (c, p) in enumerate([("dime", 0.2), ("dime", 0.8), ("linear", 0.2), ("linear", 0.8)])
    ]
    out = tmp_path / "front.png"
    assert cli.main(["plot", "--pareto", *runs, "--out", str(out)]) == 0
    assert out.stat().st_size > 1000 and capsys.readouterr().out.strip() == str(out)


def test_single_objective_runs_are_refused_in_one_line(tmp_path, capsys):
    run = tmp_path / "plain"
    os.makedirs(run / "logs")
    (run / "logs" / "evaluator.csv").write_text("actor_steps,eval_return_mean\n0,1.0\n")
    assert cli.main(["plot", "--pareto", str(run)]) == 2
    assert "not a multi-objective run" in capsys.readouterr().err
    with pytest.raises(ValueError, match="differ"):
        other = tmp_path / "other"
        os.makedirs(other / "logs")
        (other / "logs" / "evaluator.csv").write_text(
            "actor_steps,eval_return_mean,eval_return_mean/task,eval_return_mean/x\n0,1,1,2\n"
        )
        pareto_points([_run(tmp_path, "ok", "dime", [1, 1], [(1, -1)]), str(other)])
