"""Every option of `antiphon train` and `antiphon collect`, each with bad values: exit status 2,
one line on stderr, no traceback, and nothing written (no run directory, no output file).

The walk covers every option the parsers define, for every agent: an option without an entry
here fails `test_every_option_is_walked`, so a new option comes with its bad values.
"""

from __future__ import annotations

import dataclasses
import os
import typing

import pytest

from antiphon.agents import config_checks
from antiphon.agents.registry import get_builder_class, list_agents
from antiphon.environments.datasets import save_dataset
from antiphon.launch import cli

# Options of `antiphon train` that are not config fields -> bad values (each a list of argv
# pieces appended to a valid command).
TRAIN_OPTIONS: dict[str, list[list[str]]] = {
    "--agent": [["--agent", "d4pgg"], ["--agent", ""]],
    "--env": [["--env", "dmc:cartpole-swingp"], ["--env", "nosuchenv"], ["--env", "gym:"]],
    "--actors": [["--actors", "two"], ["--actors", "0"]],
    "--envs-per-actor": [["--envs-per-actor", "x"], ["--envs-per-actor", "0"]],
    "--env-backend": [["--env-backend", "envpool"]],
    "--env-workers": [["--env-workers", "x"], ["--env-workers", "-1"]],
    "--steps": [["--steps", "1e3"], ["--steps", "0"]],
    "--dataset": [["--dataset", "/no/such/file.hdf5"], ["--dataset", "NOT_A_DATASET"]],
    "--run-dir": [["--run-dir", "A_FILE"]],
    "--seed": [["--seed", "x"], ["--seed", "-1"]],
    "--action-repeat": [["--action-repeat", "x"], ["--action-repeat", "0"]],
    "--eval-every": [["--eval-every", "x"], ["--eval-every", "-1"]],
    "--eval-episodes": [["--eval-episodes", "x"], ["--eval-episodes", "0"]],
    "--launcher": [["--launcher", "mpi"]],
    "--ray-address": [
        ["--ray-address", "head:6379"],  # without --launcher ray
        ["--launcher", "ray", "--ray-address", "nohostport"],
        ["--launcher", "ray", "--ray-address", "127.0.0.1:1"],  # nothing listens there
    ],
    "--ray-resources": [
        ["--ray-resources", "{}"],  # without --launcher ray
        ["--launcher", "ray", "--ray-resources", "{learner"],
        ["--launcher", "ray", "--ray-resources", '{"lerner": {}}'],
        ["--launcher", "ray", "--ray-resources", '{"learner": {"num_cpus": -1}}'],
        ["--launcher", "ray", "--eval-every", "0", "--ray-resources", '{"evaluator": {}}'],
    ],
    "--max-restarts": [["--max-restarts", "x"], ["--launcher", "ray", "--max-restarts", "-1"]],
    "--checkpoint-every": [
        ["--checkpoint-every", "x"],
        ["--checkpoint-every", "0"],
        ["--checkpoint-every", "nan"],
    ],
    "--dataset-action-units": [["--dataset-action-units", "meters"]],
    # Flags take no value.
    "--no-replay-checkpoint": [["--no-replay-checkpoint=yes"]],
    "--overwrite": [["--overwrite=yes"]],
    "--record-episodes": [["--record-episodes=yes"]],
    "--no-progress": [["--no-progress=yes"]],
    "--print-logs": [["--print-logs=yes"]],
    "--help": [],  # exits 0 by design
}

# A value each rule of config_checks refuses.
RULE_BAD_VALUES = {
    "> 0": "0",
    ">= 1": "0",
    ">= 0": "-0.5",
    "in [0, 1]": "1.5",
    "in (0, 1]": "0",
    "sizes >= 1": "256,0",
    "weights >= 0 with a positive sum": "0.5,-0.5",
    "> 0 each": "0.1,0",
}


def _field_bad_values(agent: str, field: dataclasses.Field, hint: typing.Any) -> list[list[str]]:
    option = "--" + field.name.replace("_", "-")
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return [[option, "bogus"]]
    if hint is bool:
        return [[option, "maybe"]]
    if origin is tuple:
        # A tuple field with no rule of its own (names) refuses numbers as well.
        rule = config_checks.rule_for(field.name)
        bad = RULE_BAD_VALUES[rule[1] if rule else "sizes >= 1"]
        return [[option, "a,b"], [option, ""], [option, bad]]
    if hint is str:  # a path-like choice (DiME's teacher run): one that does not exist
        return [[option, "/nonexistent/run@latest"]]
    values = [[option, "abc"]]
    if hint is float:
        values += [[option, "nan"], [option, "inf"]]
    rule = config_checks.rule_for(field.name)
    if rule is not None:
        values.append([option, RULE_BAD_VALUES[rule[1]]])
    elif field.name == "v_min":
        values.append(["--critic-type", "c51", option, "1000"])  # above v_max
    elif field.name == "v_max":
        values.append(["--critic-type", "c51", option, "-1000"])  # below v_min
    else:  # pragma: no cover - config_checks names every numeric field
        pytest.fail(f"{agent}.{field.name}: no rule and no bad value")
    return values


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory) -> str:
    """A small valid offline dataset for the offline agents' base command."""
    from antiphon.launch import collect

    path = str(tmp_path_factory.mktemp("data") / "cartpole_random.hdf5")
    save_dataset(collect.collect("dmc:cartpole-swingup", "random", 2, seed=0), path)
    return path


def _base(agent: str, run_dir: str, dataset: str) -> list[str]:
    argv = ["train", "--agent", agent, "--steps", "10", "--no-progress", "--run-dir", run_dir]
    builder = get_builder_class(agent)
    if builder.offline:
        return argv + ["--dataset", dataset]
    if "continuous" not in builder.action_kinds:  # R2D2: a gridworld it can act in
        return argv + ["--env", "minigrid:MiniGrid-Empty-5x5-v0"]
    return argv + ["--env", "dmc:cartpole-swingup"]


def _cases():
    for agent in list_agents():
        builder = get_builder_class(agent)
        hints = typing.get_type_hints(builder.config_class)
        for field in dataclasses.fields(builder.config_class):
            for extra in _field_bad_values(agent, field, hints[field.name]):
                yield pytest.param(agent, extra, id=f"{agent}:{' '.join(extra)}")
        for option, values in TRAIN_OPTIONS.items():
            for extra in values:
                if builder.offline and option in (
                    "--actors",
                    "--record-episodes",
                    "--envs-per-actor",
                ):
                    continue  # refused for offline agents anyway (below)
                yield pytest.param(agent, extra, id=f"{agent}:{' '.join(extra)}")
    # Online-only options on an offline agent, and a dataset on an online agent.
    yield pytest.param("crr", ["--actors", "2"], id="crr:--actors 2")
    yield pytest.param("crr", ["--record-episodes"], id="crr:--record-episodes")
    yield pytest.param("crr", ["--envs-per-actor", "4"], id="crr:--envs-per-actor 4")
    yield pytest.param("d4pg", ["--dataset", "DATASET"], id="d4pg:--dataset")
    # An agent on an environment whose spaces it cannot act in.
    yield pytest.param("d4pg", ["--env", "gym:CartPole-v1"], id="d4pg:--env gym:CartPole-v1")


def _expect_refused(argv: list[str], capsys, must_not_exist: list[str]) -> str:
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, f"exit {code} for {argv}: {err}"
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for path in must_not_exist:
        assert not os.path.exists(path), f"{path} was written for {argv}"
    return err


@pytest.mark.parametrize("agent, extra", list(_cases()))
def test_bad_train_value_is_refused_before_anything_is_written(
    agent, extra, tmp_path, capsys, dataset_path
):
    run_dir = str(tmp_path / "run")
    not_a_dataset = tmp_path / "notes.txt"
    not_a_dataset.write_text("not a dataset\n")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    replace = {"NOT_A_DATASET": str(not_a_dataset), "A_FILE": str(a_file), "DATASET": dataset_path}
    extra = [replace.get(x, x) for x in extra]
    argv = _base(agent, run_dir, dataset_path) + extra
    err = _expect_refused(argv, capsys, [run_dir])
    assert err.startswith("antiphon train: error: ")
    # The line is about the bad value: it names the option (or its config field), or the
    # value itself.
    option = next(x for x in reversed(extra) if x.startswith("--")).split("=")[0]
    names = {option, option[2:].replace("-", "_"), *extra[1:]} - {""}
    assert any(name in err for name in names), err


@pytest.mark.parametrize("agent", ["bc", "d4pg"])
def test_the_walks_base_command_runs(agent, tmp_path, dataset_path):
    """The control: without a bad value, the walk's command trains (so every refusal above is
    the bad value's doing)."""
    run_dir = str(tmp_path / "run")
    assert cli.main(_base(agent, run_dir, dataset_path) + ["--eval-every", "0"]) == 0
    assert os.path.exists(os.path.join(run_dir, "config.json"))


def test_every_option_is_walked():
    walked = set(TRAIN_OPTIONS)
    for agent in list_agents():
        config_class = get_builder_class(agent).config_class
        parser = cli._train_parser(config_class)
        fields = {"--" + f.name.replace("_", "-") for f in dataclasses.fields(config_class)}
        options = {o for action in parser._actions for o in action.option_strings}
        options = {o for o in options if o.startswith("--")}
        assert options - fields - walked == set(), f"{agent}: options without bad values"


COLLECT_OPTIONS: dict[str, list[list[str]]] = {
    "--env": [["--env", "dmc:nosuch-task"]],
    "--policy": [
        ["--policy", "/no/such/run@expert"],
        ["--policy", "random", "--recipe", "x"],
        ["--policy", "babyai-bot"],  # on dmc: the bot needs a BabyAI level
    ],
    "--recipe": [["--recipe", "/no/such/run"]],
    "--only": [["--only", "medium"]],  # without --recipe
    "--episodes": [["--episodes", "x"], ["--episodes", "0"]],
    "--out": [["--out", "EXISTING"]],  # exists, no --overwrite
    "--format": [["--format", "csv"], ["--format", "npz"]],  # npz, but --out ends in .hdf5
    "--seed": [["--seed", "x"], ["--seed", "-1"]],
    "--action-repeat": [["--action-repeat", "x"], ["--action-repeat", "0"]],
    "--action-noise": [["--action-noise", "x"], ["--action-noise", "-0.1"]],
    "--behaviour-policy": [["--behaviour-policy"]],  # with --policy random
    "--overwrite": [["--overwrite=yes"]],
    "--no-progress": [["--no-progress=yes"]],
    "--help": [],
}


def _collect_cases():
    for values in COLLECT_OPTIONS.values():
        for extra in values:
            yield pytest.param(extra, id=" ".join(extra))


@pytest.mark.parametrize("extra", list(_collect_cases()))
def test_bad_collect_value_is_refused_before_anything_is_written(extra, tmp_path, capsys):
    out = str(tmp_path / "out.hdf5")
    existing = tmp_path / "existing.hdf5"
    existing.write_text("")
    extra = [str(existing) if x == "EXISTING" else x for x in extra]
    argv = ["collect", "--env", "dmc:cartpole-swingup", "--episodes", "1", "--no-progress"]
    if "--policy" not in extra and "--recipe" not in extra:
        argv += ["--policy", "random"]
    if "--out" not in extra:
        argv += ["--out", out]
    err = _expect_refused(argv + extra, capsys, [out])
    assert err.startswith("antiphon collect: error: ")


def test_every_collect_option_is_walked():
    parser = cli._collect_parser()
    options = {o for action in parser._actions for o in action.option_strings if o[:2] == "--"}
    assert options - set(COLLECT_OPTIONS) == set(), "collect options without bad values"
