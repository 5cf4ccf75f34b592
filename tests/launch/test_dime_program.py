"""DiME through `antiphon train`: online with a vector reward (task + action cost) on real DM
Control physics and a real Reverb server, and offline (RL + BC) from a gymnasium dataset, with
the same agent name."""

from __future__ import annotations

import csv
import json
import os

from antiphon.launch import cli
from tests.launch import evaluator_rows

SMALL = ["--policy-layer-sizes", "32,32", "--critic-layer-sizes", "32,32", "--num-samples", "6"]
DATA = os.path.join(os.path.dirname(__file__), "data", "pendulum-mixed.npz")


def test_online_run_logs_every_objective(tmp_path):
    run = tmp_path / "run"
    argv = ["train", "--agent", "dime", "--env", "dmc:cartpole-swingup", "--action-repeat", "4"]
    argv += ["--objectives", "task,action_cost", "--preferences", "0.7,0.3", "--steps", "2400"]
    argv += ["--eval-every", "1200", "--eval-episodes", "2", "--min-replay-size", "300"]
    argv += ["--critic-type", "scalar", "--run-dir", str(run), "--no-progress", *SMALL]
    assert cli.main(argv) == 0
    rows = evaluator_rows(run)
    assert len(rows) >= 2
    for row in rows:
        # the headline return is the first objective's; the action cost is -||a||^2 summed
        assert row["eval_return_mean"] == row["eval_return_mean/task"]
        assert row["eval_return_mean/action_cost"] <= 0.0
    with open(run / "logs" / "learner.csv") as f:
        last = list(csv.DictReader(f))[-1]
    for name in ("q_mean/task", "q_mean/action_cost", "temperature/task", "kl_q_rel/action_cost"):
        assert name in last and last[name] != "", name
    assert float(last["steps"]) > 0
    with open(run / "config.json") as f:
        config = json.load(f)
    assert config["config"]["objectives"] == ["task", "action_cost"]
    out = tmp_path / "pareto.png"
    assert cli.main(["plot", "--pareto", str(run), "--out", str(out)]) == 0
    assert out.exists()


def test_offline_run_from_a_dataset_under_the_same_name(tmp_path):
    run = tmp_path / "run"
    argv = ["train", "--agent", "dime", "--dataset", DATA, "--steps", "200", "--eval-every"]
    argv += ["100", "--eval-episodes", "1", "--run-dir", str(run), "--no-progress", *SMALL]
    assert cli.main(argv) == 0
    with open(run / "config.json") as f:
        config = json.load(f)
    assert config["config"]["objectives"] == ["rl", "bc"]
    with open(run / "logs" / "learner.csv") as f:
        last = list(csv.DictReader(f))[-1]
    assert float(last["data_log_prob"]) > -20.0
    assert float(last["q_out_of_range"]) >= 0.0


def test_offline_objectives_online_and_online_options_offline_are_refused(tmp_path, capsys):
    argv = ["train", "--agent", "dime", "--env", "dmc:cartpole-swingup", "--objectives"]
    argv += ["rl,bc", "--preferences", "1,1", "--steps", "10", "--run-dir", str(tmp_path / "a")]
    assert cli.main(argv) == 2
    assert "--objectives" in capsys.readouterr().err
    argv = ["train", "--agent", "dime", "--dataset", DATA, "--combination", "linear"]
    argv += ["--steps", "10", "--run-dir", str(tmp_path / "b")]
    assert cli.main(argv) == 2
    assert "--combination" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "a") and not os.path.exists(tmp_path / "b")
