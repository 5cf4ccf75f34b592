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
    online = ["train", "--agent", "dime", "--env", "dmc:cartpole-swingup", "--steps", "10"]
    online += ["--preferences", "1,1", "--run-dir", str(tmp_path / "a"), "--objectives"]
    assert cli.main([*online, "rl,bc"]) == 2
    assert "the bc objective learns from a dataset" in capsys.readouterr().err
    assert cli.main([*online, "task,rl"]) == 2  # not a reward the environment has
    assert "--objectives: objectives must be distinct names from" in capsys.readouterr().err
    argv = ["train", "--agent", "dime", "--dataset", DATA, "--combination", "linear"]
    argv += ["--steps", "10", "--run-dir", str(tmp_path / "b")]
    assert cli.main(argv) == 2
    assert "--combination" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "a") and not os.path.exists(tmp_path / "b")


# ------------------------------------------------------------------------------------------------
# The teacher objective: a snapshot of another run labels the states with its actions


def _bc_teacher(tmp_path) -> str:
    run = tmp_path / "bc-teacher"
    argv = ["train", "--agent", "bc", "--dataset", DATA, "--steps", "100", "--eval-every", "50"]
    argv += ["--eval-episodes", "1", "--run-dir", str(run), "--no-progress"]
    assert cli.main(argv) == 0
    return str(run)


def test_teacher_samples_come_from_the_snapshot_policy(tmp_path):
    import jax
    import numpy as np

    from antiphon.agents.snapshots import snapshot_action_sampler
    from antiphon.core.types import make_environment_spec
    from antiphon.environments import make_environment

    teacher = _bc_teacher(tmp_path)
    spec = make_environment_spec(make_environment("gym:Pendulum-v1"))
    observations = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
    sample = jax.jit(snapshot_action_sampler(teacher + "@latest", spec, 4))
    actions = np.asarray(sample(observations, jax.random.PRNGKey(1)))
    assert actions.shape == (4, 5, 1) and np.all(np.abs(actions) <= 1.0)
    assert np.std(actions, axis=0).min() > 0  # the behaviour policy samples
    greedy = snapshot_action_sampler(teacher + "@latest", spec, 3, behaviour=False)
    greedy_actions = np.asarray(greedy(observations, jax.random.PRNGKey(2)))
    np.testing.assert_allclose(greedy_actions[0], greedy_actions[2], rtol=1e-6)


def test_offline_dime_with_a_teacher_and_a_teacher_that_does_not_fit(tmp_path, capsys):
    teacher = _bc_teacher(tmp_path)
    run = tmp_path / "student"
    argv = ["train", "--agent", "dime", "--dataset", DATA, "--steps", "100", "--eval-every"]
    argv += ["100", "--eval-episodes", "1", "--no-progress", *SMALL]
    argv += ["--objectives", "rl,bc,teacher", "--preferences", "0.4,0.3,0.3"]
    assert cli.main([*argv, "--run-dir", str(run), "--teacher", teacher + "@latest"]) == 0
    with open(run / "config.json") as f:
        assert json.load(f)["config"]["teacher"] == teacher + "@latest"
    # a cartpole policy cannot label Pendulum's states: one line, nothing written
    cartpole = tmp_path / "cartpole"
    online = ["train", "--agent", "dime", "--env", "dmc:cartpole-swingup", "--steps", "600"]
    online += ["--eval-every", "600", "--eval-episodes", "1", "--min-replay-size", "300"]
    assert cli.main([*online, "--run-dir", str(cartpole), "--no-progress", *SMALL]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert cli.main([*argv, "--run-dir", str(bad), "--teacher", str(cartpole)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--teacher" in err and "does not fit" in err, err
    assert not os.path.exists(bad)
    # the cartpole run teaches a cartpole student online (the teacher only labels)
    student = tmp_path / "online-student"
    argv = [*online, "--run-dir", str(student), "--no-progress", *SMALL, "--teacher"]
    argv += [f"{cartpole}@latest", "--objectives", "task,teacher", "--preferences", "0.5,0.5"]
    assert cli.main(argv) == 0
    with open(student / "logs" / "learner.csv") as f:
        assert float(list(csv.DictReader(f))[-1]["steps"]) > 0
