"""Bad input: one clear line on stderr, exit status 2, and no run directory left behind."""

import dataclasses
import json
import os

import pytest

from antiphon.agents.d4pg.config import D4PGConfig
from antiphon.launch import cli

BASE = [
    "train",
    "--agent",
    "d4pg",
    "--env",
    "dmc:cartpole-swingup",
    "--steps",
    "10",
    "--no-progress",
]


def _run_bad(argv, capsys, run_dir):
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert not os.path.exists(run_dir), "a rejected command must not create its run_dir"
    return err


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--agent", "d4pgg"], "unknown agent 'd4pgg'; did you mean: d4pg"),
        (["--env", "dmc:cartpole-swingp"], "did you mean: dmc:cartpole-swingup"),
        (["--env", "nosuchenv"], "unknown environment 'nosuchenv'"),
        (["--batch-sise", "5"], "unrecognized arguments: --batch-sise"),
        (["--batch-size", "big"], "--batch-size: invalid int value: 'big'"),
        (["--critic-type", "gaussian"], "--critic-type: invalid choice: 'gaussian'"),
        (["--clip-dqda", "maybe"], "--clip-dqda"),
        (["--v-min", "10", "--v-max", "0"], "invalid config: v_min must be < v_max"),
        (["--actors", "0"], "--actors must be >= 1 (got 0)"),
        (["--steps", "-5"], "--steps must be >= 1"),
        (["--ray-address", "head:6379"], "--ray-address needs --launcher ray"),
        (["--launcher", "ray", "--ray-resources", "{learner"], "--ray-resources is not valid JSON"),
        (
            ["--launcher", "ray", "--ray-resources", '{"lerner": {"num_gpus": 1}}'],
            "--ray-resources: label 'lerner' is not a node of this program",
        ),
        (
            ["--launcher", "ray", "--ray-resources", '{"learner": {"gpus": 1}}'],
            "resources for 'learner': unknown key(s) gpus",
        ),
        (
            ["--launcher", "ray", "--ray-resources", '{"actor": {"num_cpus": -1}}'],
            "num_cpus must be >= 0",
        ),
        (["--launcher", "ray", "--max-restarts", "-1"], "--max-restarts must be >= 0"),
        (["--launcher", "mpi"], "--launcher: invalid choice: 'mpi'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, extra, expected):
    run_dir = str(tmp_path / "run")
    argv = BASE + ["--run-dir", run_dir] + extra
    err = _run_bad(argv, capsys, run_dir)
    assert expected in err
    if "unrecognized" in expected:
        assert "did you mean: --batch-size" in err


def test_unknown_command(capsys):
    assert cli.main(["trian"]) == 2
    assert "did you mean 'train'" in capsys.readouterr().err


def test_run_dir_of_another_agent_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(
        json.dumps({"agent": "mpo", "env": "dmc:cartpole-swingup"})
    )
    before = sorted(os.listdir(run_dir))
    assert cli.main(BASE + ["--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds a 'mpo' run, not 'd4pg'" in err
    assert sorted(os.listdir(run_dir)) == before  # untouched


def test_checkpoint_of_another_agent_is_refused(tmp_path, capsys):
    """No config.json, but a learner checkpoint whose metadata names another agent."""
    ckpt = tmp_path / "run" / "checkpoints" / "learner"
    ckpt.mkdir(parents=True)
    (ckpt / "metadata.json").write_text(json.dumps({"agent": "crr"}))
    assert cli.main(BASE + ["--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds a 'crr' checkpoint" in err
    assert not (tmp_path / "run" / "config.json").exists()


def test_resume_with_a_different_config_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    stored_config = {**dataclasses.asdict(D4PGConfig()), "critic_type": "c51"}
    stored_config["policy_layer_sizes"] = list(stored_config["policy_layer_sizes"])
    stored_config["critic_layer_sizes"] = list(stored_config["critic_layer_sizes"])
    record = {
        "agent": "d4pg",
        "env": "dmc:cartpole-swingup",
        "action_repeat": 1,
        "config": stored_config,
    }
    (run_dir / "config.json").write_text(json.dumps(record))
    assert cli.main(BASE + ["--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert "critic_type='c51' (now 'mog')" in err


def test_help_lists_agent_config_fields(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--agent", "d4pg", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--critic-type", "--num-target-samples", "--policy-layer-sizes", "--sigma"):
        assert option in out


def test_config_options_parse_types():
    parser = cli._train_parser(D4PGConfig)
    args = parser.parse_args(
        [
            "--agent",
            "d4pg",
            "--env",
            "x",
            "--policy-layer-sizes",
            "64,32",
            "--clip-dqda",
            "false",
            "--critic-type",
            "c51",
            "--sigma",
            "0.1",
        ]
    )
    config = cli.config_from_args(args, D4PGConfig)
    assert config.policy_layer_sizes == (64, 32)
    assert config.clip_dqda is False
    assert config.critic_type == "c51"
    assert config.sigma == 0.1
