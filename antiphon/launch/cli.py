"""`antiphon train | plot`: the command line.

Every field of the chosen agent's config is an option (`--critic-type c51`, `--batch-size 512`,
`--policy-layer-sizes 256,256`). Bad input ends with ONE line on stderr and exit status 2, before
anything is written to the run directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import types
import typing
from typing import Any, Literal, NoReturn

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# `antiphon train`'s exit status when the learner stopped on a non-finite update.
DIVERGED_EXIT_STATUS = 3


class UsageError(Exception):
    """Bad input: reported as one line on stderr with exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as a single line (and suggests close option names)."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments:"):
            unknown = message.split(":", 1)[1].split()
            options = [o for a in self._actions for o in a.option_strings]
            for arg in unknown:
                if arg.startswith("--"):
                    close = difflib.get_close_matches(arg.split("=")[0], options, n=3)
                    if close:
                        message += f" (did you mean: {', '.join(close)}?)"
                        break
            message += " — `antiphon train --agent AGENT --help` lists the agent's options"
        raise UsageError(message)


# ------------------------------------------------------------------------------------------------
# Config fields as options


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true/false, got '{text}'")


def _option_type(tp: Any):
    """(argparse type callable, choices) for a config field annotation."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        return type(choices[0]), list(choices)
    if origin in (tuple, typing.Tuple):  # noqa: UP006 - both spellings appear in annotations
        item = typing.get_args(tp)[0]

        def parse_tuple(text: str):
            parts = [p for p in text.replace(" ", "").split(",") if p]
            if not parts:
                raise ValueError(f"expected a comma-separated list of {item.__name__}")
            return tuple(item(p) for p in parts)

        parse_tuple.__name__ = f"comma-separated {item.__name__}s"
        return parse_tuple, None
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _option_type(inner[0])
    if tp is bool:
        _bool.__name__ = "bool"
        return _bool, None
    return tp, None


def add_config_options(parser: argparse.ArgumentParser, config_class) -> None:
    hints = typing.get_type_hints(config_class)
    group = parser.add_argument_group(f"{config_class.__name__} fields")
    for field in dataclasses.fields(config_class):
        parse, choices = _option_type(hints[field.name])
        default = field.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        group.add_argument(
            "--" + field.name.replace("_", "-"),
            dest=f"config.{field.name}",
            type=parse,
            choices=choices,
            default=argparse.SUPPRESS,
            metavar=None if choices else field.name.upper(),
            help=f"default: {shown}",
        )


def config_from_args(args: argparse.Namespace, config_class):
    overrides = {k.split(".", 1)[1]: v for k, v in vars(args).items() if k.startswith("config.")}
    for name, value in overrides.items():
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise UsageError(f"--{name.replace('_', '-')} must be a finite number (got {value})")
    config = config_class(**overrides)
    from antiphon.agents import config_checks

    try:
        config_checks.validate(config)
    except ValueError as e:
        raise UsageError(f"invalid config: {e}") from None
    return config


# ------------------------------------------------------------------------------------------------
# train


def _train_parser(config_class=None) -> _Parser:
    p = _Parser(prog="antiphon train", description="Train an agent (online, from actors).")
    p.add_argument("--agent", required=True, help="agent name, e.g. d4pg")
    p.add_argument(
        "--env",
        default=None,
        help="environment, e.g. dmc:cartpole-swingup (offline: defaults to the dataset's)",
    )
    p.add_argument("--actors", type=int, default=1, help="number of actors (default 1)")
    p.add_argument(
        "--envs-per-actor",
        type=int,
        default=1,
        help="environments each actor steps with one batched policy call (default 1)",
    )
    p.add_argument(
        "--env-backend",
        choices=("serial", "subprocess"),
        default="serial",
        help="with --envs-per-actor > 1: step the environments in the actor's process (serial) "
        "or in worker processes (subprocess)",
    )
    p.add_argument(
        "--env-workers",
        type=int,
        default=0,
        help="subprocess backend: worker processes per actor (default 0: one per environment)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=100_000,
        help="online: total actor env steps; offline (--dataset): learner SGD steps",
    )
    p.add_argument(
        "--dataset",
        default=None,
        help="offline agents (crr, bc, td3_bc, qreg, dime): the dataset to train from (RLDS "
        "directory, D4RL-style .hdf5, Minari directory or .npz; see `antiphon collect`)",
    )
    p.add_argument(
        "--dataset-action-units",
        choices=["native", "normalized"],
        default=None,
        help="units of the dataset's actions: native (the environment's own bounds, e.g. "
        "Pendulum's [-2, 2]) or normalized (antiphon's [-1, 1]); default: the dataset's "
        "metadata, else native for data antiphon did not write",
    )
    p.add_argument("--run-dir", default=None, help="run directory (default runs/<agent>-<env>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--action-repeat",
        type=int,
        default=None,
        help="repeat each action this many times (default 1; offline: the dataset's)",
    )
    p.add_argument(
        "--eval-every",
        type=int,
        default=10_000,
        help="actor steps between evaluations; 0 disables the evaluator",
    )
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument(
        "--launcher",
        choices=["threads", "local_mt", "ray", "local_mp"],
        default="threads",
        help="threads: one process (default); ray: every node a Ray actor (local_mt/local_mp: "
        "Launchpad's names for the same)",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        metavar="HOST:PORT",
        help="join the Ray cluster at this address (started with `ray start --head`) instead of "
        "starting a local instance; needs --launcher ray",
    )
    p.add_argument(
        "--ray-resources",
        default=None,
        metavar="JSON",
        help='per-label Ray resources, e.g. \'{"learner": {"num_gpus": 1}, "actor": {"num_cpus": '
        '1, "resources": {"cpu_host": 0.01}}}\' (keys: num_cpus, num_gpus, memory, resources, '
        "max_restarts)",
    )
    p.add_argument(
        "--max-restarts",
        type=int,
        default=3,
        help="restarts allowed for the learner, replay and counter on Ray (actors: unlimited)",
    )
    p.add_argument("--checkpoint-every", type=float, default=120.0, help="seconds")
    p.add_argument(
        "--no-replay-checkpoint",
        action="store_true",
        help="do not checkpoint the replay buffer into run_dir/replay",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="delete an existing run_dir instead of resuming it"
    )
    p.add_argument(
        "--record-episodes",
        action="store_true",
        help="write every actor episode to run_dir/episodes/ (for `antiphon collect "
        "--policy replay:RUN_DIR`, the medium-replay recipe)",
    )
    p.add_argument("--no-progress", action="store_true", help="no live progress bar")
    p.add_argument("--print-logs", action="store_true", help="print every node's log lines")
    if config_class is not None:
        add_config_options(p, config_class)
    return p


def _program_labels(offline: bool, eval_every: int) -> tuple[str, ...]:
    """The node labels of the program `train` builds (experiments.build_*_program)."""
    labels = ("counter", "learner") if offline else ("replay", "counter", "learner", "actor")
    return labels + (("evaluator",) if eval_every > 0 else ())


def _parse_ray_resources(
    text: str | None, labels: tuple[str, ...] = ("replay", "counter", "learner", "actor")
) -> dict[str, dict[str, Any]] | None:
    """--ray-resources: a JSON object label -> {num_cpus, num_gpus, memory, resources, ...};
    `labels` are the program's (an evaluator only where --eval-every > 0)."""
    if text is None:
        return None
    from antiphon.launch.ray import NodeResources

    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"--ray-resources is not valid JSON: {e}") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise UsageError('--ray-resources must map labels to objects, e.g. {"learner": {...}}')
    for label, fields in value.items():
        if label not in labels:
            raise UsageError(
                f"--ray-resources: label '{label}' is not a node of this program "
                f"(labels: {', '.join(labels)})"
            )
        try:
            NodeResources.from_dict(label, fields)
        except (TypeError, ValueError) as e:
            raise UsageError(f"--ray-resources: {e}") from None
    return value


def _check_ray_address(address: str, timeout_seconds: float = 3.0) -> None:
    """--ray-address: HOST:PORT (or ray://HOST:PORT, or `auto` for the cluster `ray start`
    left on this machine) that something answers at; checked before anything is written."""
    text = address
    if address == "auto":
        text = os.environ.get("RAY_ADDRESS", "")
        if not text:
            try:
                with open(os.path.join(tempfile.gettempdir(), "ray", "ray_current_cluster")) as f:
                    text = f.read().strip()
            except OSError:
                text = ""
        if not text:
            raise UsageError(
                "--ray-address auto: no Ray cluster was started on this machine "
                "(run `ray start --head` first, or give HOST:PORT)"
            )
    host, sep, port = text.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--ray-address must be HOST:PORT, e.g. 10.0.0.2:6379 (got '{address}')")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_seconds).close()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise UsageError(
            f"--ray-address {address}: nothing answers at {host}:{port} ({reason}); start the "
            "cluster with `ray start --head --port PORT` or check the address"
        ) from None


def _check_run_dir(
    run_dir: str, agent: str, stored_fields: dict[str, Any], overwrite: bool
) -> tuple[str, list[str]]:
    """('new' | 'overwrite' | 'resume', config changes); raises UsageError when the directory
    belongs to something else.

    A run resumes with the settings it was started with, except a run whose learner diverged
    (run_dir/diverged.json): that one may resume with other config values (a lower learning
    rate), and the changes come back as 'field: old -> new' lines."""
    from antiphon.core import checkpointing

    if not os.path.exists(run_dir):
        return "new", []
    if not os.path.isdir(run_dir):
        raise UsageError(f"run_dir '{run_dir}' exists and is not a directory")
    if overwrite:
        return "overwrite", []
    config_path = os.path.join(run_dir, "config.json")
    metadata = checkpointing.read_metadata(os.path.join(run_dir, "checkpoints", "learner"))
    if not os.path.exists(config_path):
        if metadata and metadata.get("agent") != agent:
            raise UsageError(
                f"run_dir '{run_dir}' holds a '{metadata.get('agent')}' checkpoint, "
                f"not '{agent}'; use another --run-dir or --overwrite"
            )
        if os.listdir(run_dir):
            raise UsageError(
                f"run_dir '{run_dir}' is not empty and is not an antiphon run; "
                "use another --run-dir or --overwrite"
            )
        return "new", []
    try:
        with open(config_path) as f:
            stored = json.load(f)
    except (OSError, ValueError) as e:
        raise UsageError(f"run_dir '{run_dir}' has an unreadable config.json ({e})") from None
    if stored.get("agent") != agent or (metadata and metadata.get("agent") != agent):
        found = stored.get("agent") if stored.get("agent") != agent else metadata.get("agent")
        raise UsageError(
            f"run_dir '{run_dir}' holds a '{found}' run, not '{agent}'; "
            "use another --run-dir or --overwrite"
        )
    diverged = os.path.exists(os.path.join(run_dir, "diverged.json"))
    changes = []
    if diverged:
        changes = [
            f"{k}: {stored.get('config', {}).get(k)!r} -> {v!r}"
            for k, v in stored_fields["config"].items()
            if stored.get("config", {}).get(k) != v
        ]
    for key in ("env", "config", "action_repeat"):
        if key == "config" and diverged:
            continue
        if stored.get(key) != stored_fields[key]:
            if key == "config":
                diffs = [
                    k
                    for k in stored_fields["config"]
                    if stored["config"].get(k) != stored_fields["config"][k]
                ]
                what = ", ".join(
                    f"{k}={stored['config'].get(k)!r} (now {stored_fields['config'][k]!r})"
                    for k in diffs[:3]
                )
            else:
                what = f"{key}={stored.get(key)!r} (now {stored_fields[key]!r})"
            raise UsageError(
                f"run_dir '{run_dir}' was started with {what}; resume with the "
                "same settings, or use another --run-dir or --overwrite"
            )
    return "resume", changes


def _check_dataset(path: str, env: str | None, action_repeat: int | None) -> tuple[str, int, Any]:
    """Loads and validates a dataset; reconciles --env/--action-repeat with its metadata.

    Returns (env, action_repeat, dataset)."""
    from antiphon.environments.datasets import DatasetError, load_dataset

    if not os.path.exists(path):
        raise UsageError(f"no such dataset: {path}")
    try:
        dataset = load_dataset(path)
    except DatasetError as e:
        raise UsageError(str(e)) from None
    meta_env = dataset.metadata.get("environment")
    meta_repeat = dataset.metadata.get("action_repeat")
    if env is None:
        if meta_env is None:
            raise UsageError(f"{path}: the dataset names no environment; give --env")
        env = meta_env
    elif meta_env is not None and meta_env != env:
        raise UsageError(
            f"{path}: field 'metadata.environment' is '{meta_env}' but --env is '{env}'"
        )
    if action_repeat is None:
        action_repeat = int(meta_repeat or 1)
    elif meta_repeat is not None and int(meta_repeat) != action_repeat:
        raise UsageError(
            f"{path}: field 'metadata.action_repeat' is {meta_repeat} but --action-repeat is "
            f"{action_repeat}"
        )
    return env, action_repeat, dataset


def train(argv: list[str]) -> int:
    from antiphon.agents.registry import UnknownAgentError, get_builder_class

    # Phase 1: which agent? (its config fields become options). --help without it: the basics.
    first = _Parser(add_help=False)
    first.add_argument("--agent")
    first.add_argument("--dataset")
    known, _ = first.parse_known_args(argv)
    if known.agent is None:
        if "-h" in argv or "--help" in argv:
            _train_parser().print_help()
            return 0
        raise UsageError("--agent is required (e.g. --agent d4pg)")
    try:
        builder_class = get_builder_class(known.agent)
    except UnknownAgentError as e:
        raise UsageError(str(e)) from None
    # An agent that trains both ways (DiME) names its offline builder: --dataset picks it.
    if known.dataset is not None and getattr(builder_class, "offline_variant", None):
        builder_class = builder_class.offline_variant

    # Phase 2: everything, including the agent's config fields.
    parser = _train_parser(builder_class.config_class)
    args = parser.parse_args(argv)
    config = config_from_args(args, builder_class.config_class)
    offline = bool(getattr(builder_class, "offline", False))
    dataset = dataset_summary = None
    if offline:
        if args.dataset is None:
            raise UsageError(
                f"agent '{known.agent}' trains offline: give --dataset PATH "
                "(record one with `antiphon collect`)"
            )
        if args.actors != 1 or args.record_episodes or args.envs_per_actor != 1:
            raise UsageError(
                "--actors, --envs-per-actor and --record-episodes are for online agents"
            )
        args.env, args.action_repeat, dataset = _check_dataset(
            args.dataset, args.env, args.action_repeat
        )
        dataset_summary = dataset.summary()
    elif args.dataset is not None:
        raise UsageError(
            f"agent '{known.agent}' trains online (from actors); --dataset is for offline agents"
            " (crr, bc, td3_bc, qreg, dime)"
        )
    if args.env is None:
        raise UsageError("--env is required (e.g. --env dmc:cartpole-swingup)")
    if args.action_repeat is None:
        args.action_repeat = 1
    if args.actors < 1:
        raise UsageError(f"--actors must be >= 1 (got {args.actors})")
    if args.envs_per_actor < 1:
        raise UsageError(f"--envs-per-actor must be >= 1 (got {args.envs_per_actor})")
    if args.env_workers < 0:
        raise UsageError(f"--env-workers must be >= 0 (got {args.env_workers})")
    if args.steps < 1:
        raise UsageError(f"--steps must be >= 1 (got {args.steps})")
    if args.action_repeat < 1:
        raise UsageError(f"--action-repeat must be >= 1 (got {args.action_repeat})")
    if args.eval_every < 0 or args.eval_episodes < 1:
        raise UsageError("--eval-every must be >= 0 and --eval-episodes >= 1")
    on_ray = args.launcher in ("ray", "local_mp")
    if args.ray_address is not None and not on_ray:
        raise UsageError("--ray-address needs --launcher ray")
    if args.ray_resources is not None and not on_ray:
        raise UsageError("--ray-resources needs --launcher ray")
    if args.max_restarts < 0:
        raise UsageError(f"--max-restarts must be >= 0 (got {args.max_restarts})")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0 (got {args.seed})")
    if not (math.isfinite(args.checkpoint_every) and args.checkpoint_every > 0):
        raise UsageError(f"--checkpoint-every must be > 0 seconds (got {args.checkpoint_every})")
    ray_resources = (
        _parse_ray_resources(args.ray_resources, _program_labels(offline, args.eval_every))
        if on_ray
        else None
    )
    if args.ray_address is not None:
        _check_ray_address(args.ray_address)

    from antiphon.core.types import make_environment_spec
    from antiphon.environments import UnknownEnvironmentError, make_environment

    # A vector reward for agents with several reward objectives (DiME online).
    objectives = None if offline else getattr(builder_class, "reward_objectives", None)
    objectives = objectives(config) if objectives is not None else None
    try:
        environment = make_environment(
            args.env, seed=args.seed, action_repeat=args.action_repeat, objectives=objectives
        )
    except UnknownEnvironmentError as e:
        raise UsageError(str(e)) from None
    except ValueError as e:
        if objectives is None:
            raise
        raise UsageError(f"--objectives: {e}") from None
    env_spec = make_environment_spec(environment)
    from antiphon.environments.wrappers import native_action_spec

    native_spec = native_action_spec(environment)
    environment.close()
    from antiphon.agents.compatibility import IncompatibleEnvironmentError
    from antiphon.agents.registry import check_environment

    try:
        check_environment(builder_class, env_spec, args.env)
    except IncompatibleEnvironmentError as e:
        raise UsageError(str(e)) from None
    # What only the agent can check against the environment (DiME: its teacher's snapshot;
    # R2D3: its demonstrations).
    fit = getattr(builder_class, "check_environment_fit", None)
    if fit is not None:
        from antiphon.agents.snapshots import SnapshotError
        from antiphon.environments.datasets import DatasetError

        try:
            fit(config, env_spec)
        except SnapshotError as e:
            raise UsageError(f"--teacher: {e}") from None
        except DatasetError as e:  # R2D3: demonstrations that do not fit the environment
            raise UsageError(f"--demos: {e}") from None
    dataset_info = None
    if offline:
        from antiphon.environments.datasets import DatasetError, prepare_for_specs

        try:
            prepared, dataset_info = prepare_for_specs(
                dataset, env_spec, native_spec, args.dataset_action_units, source=args.dataset
            )
            builder_class.check_dataset(config, prepared)  # what only the agent needs of it
        except DatasetError as e:
            raise UsageError(str(e)) from None
        del prepared
        if hasattr(config, "reward_scale"):
            from antiphon.agents.offline import reward_scale

            dataset_info = {
                **dataset_info,
                "reward_scale": reward_scale(
                    dataset.rewards, config.reward_scale, args.action_repeat
                ),
            }
        dataset = None  # the learner node loads its own copy (on Ray, in its own process)
    elif args.dataset_action_units is not None:
        raise UsageError("--dataset-action-units is for offline agents (with --dataset)")

    run_dir = args.run_dir or os.path.join("runs", f"{known.agent}-{args.env.replace(':', '-')}")
    record = {
        "agent": known.agent,
        "env": args.env,
        "action_repeat": args.action_repeat,
        "config": json.loads(json.dumps(dataclasses.asdict(config))),
    }
    mode, changes = _check_run_dir(run_dir, known.agent, record, args.overwrite)
    builder = builder_class(config)
    diverged_path = os.path.join(run_dir, "diverged.json")
    if mode == "resume" and os.path.exists(diverged_path):
        with open(diverged_path) as f:
            divergence = json.load(f)
        print(
            f"resuming a run whose learner diverged at SGD step {divergence.get('step')} "
            f"(checkpoint at step {divergence.get('checkpoint_step')}); "
            + ("changed: " + "; ".join(changes) if changes else "no setting changed"),
            file=sys.stderr,
        )

    # All input is valid: only now touch the run directory.
    if mode == "overwrite":
        shutil.rmtree(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    history = []
    if mode == "resume":
        with open(os.path.join(run_dir, "config.json")) as f:
            history = json.load(f).get("history", [])
        if os.path.exists(diverged_path):
            with open(diverged_path) as f:
                history.append({"diverged": json.load(f), "resumed_with_changes": changes})
            os.replace(diverged_path, os.path.join(run_dir, f"diverged-{len(history)}.json"))
    record.update(
        seed=args.seed,
        actors=args.actors,
        steps=args.steps,
        command="antiphon train " + " ".join(argv),
    )
    if history:
        record["history"] = history
    if offline:
        record.update(
            dataset=os.path.abspath(args.dataset),
            dataset_summary=dataset_summary,
            dataset_actions=dataset_info,
        )
        del record["actors"]
    from antiphon.core import checkpointing
    from antiphon.launch import experiments, threads

    checkpointing.write_json(os.path.join(run_dir, "config.json"), record)
    from antiphon.launch.plotting import plot_run

    # SGD steps an offline learner takes before the `--steps` of its algorithm (Q_sarsa's).
    pretraining = builder_class.pretraining_steps(config) if offline else 0
    if offline:
        experiment = experiments.OfflineExperiment(
            environment=args.env,
            dataset=os.path.abspath(args.dataset),
            max_learner_steps=args.steps + pretraining,
            run_dir=run_dir,
            seed=args.seed,
            action_repeat=args.action_repeat,
            eval_every=args.eval_every,
            eval_episodes=args.eval_episodes,
            checkpoint_every_seconds=args.checkpoint_every,
            print_logs=args.print_logs,
            dataset_action_units=dataset_info["action_units"],
        )
        program = experiments.build_offline_program(builder, experiment, env_spec)
    else:
        experiment = experiments.OnlineExperiment(
            environment=args.env,
            max_actor_steps=args.steps,
            run_dir=run_dir,
            num_actors=args.actors,
            seed=args.seed,
            action_repeat=args.action_repeat,
            eval_every=args.eval_every,
            eval_episodes=args.eval_episodes,
            checkpoint_every_seconds=args.checkpoint_every,
            replay_checkpoint=not args.no_replay_checkpoint,
            print_logs=args.print_logs,
            record_episodes=args.record_episodes,
            objectives=objectives,
            envs_per_actor=args.envs_per_actor,
            env_backend=args.env_backend,
            env_workers=args.env_workers,
        )
        program = experiments.build_online_program(builder, experiment, env_spec)
    what = (
        f"from {args.dataset} ({dataset_summary['transitions']} transitions, "
        f"{dataset_summary['episodes']} episodes, return {dataset_summary['return_mean']:.1f}) "
        f"for {args.steps} learner steps"
        + (f" after {pretraining} of pre-training" if pretraining else "")
        if offline
        else f"with {args.actors} actor(s) for {args.steps} env steps"
    )
    print(
        f"{'resuming' if mode == 'resume' else 'starting'} {known.agent} on {args.env} "
        f"{what} -> {run_dir}",
        file=sys.stderr,
    )
    if dataset_info is not None:
        from antiphon.environments.datasets import describe_preparation

        print(f"  {describe_preparation(dataset_info)}", file=sys.stderr)
        scale = dataset_info.get("reward_scale")
        if scale is not None and scale != 1.0:
            how = "--reward-scale"
            if config.reward_scale is None:
                how = "auto: 1 / max |r| per environment step"
            print(
                f"  rewards: times {scale:.4g} for learning ({how}; --reward-scale 1 turns it "
                "off); returns are reported in the environment's units",
                file=sys.stderr,
            )
    _stop_on_signals()
    started = time.time()
    launched = None
    interrupted = False
    counts: dict[str, Any] = {}
    try:
        if on_ray:
            from antiphon import launch as launch_module

            try:
                launched = launch_module.launch(
                    program,
                    launch_type="ray",
                    address=args.ray_address,
                    resources=ray_resources,
                    max_restarts=args.max_restarts,
                )
            except ValueError as e:  # resources naming labels the program does not have
                raise UsageError(str(e)) from None
        else:
            launched = threads.launch(program)
        _watch(
            launched,
            args.steps + pretraining,
            show_progress=not args.no_progress,
            step_key="learner_steps" if offline else "actor_steps",
        )
    except KeyboardInterrupt:  # also during start-up: the launcher has stopped what it started
        interrupted = True
        print("interrupted: stopping and saving checkpoints...", file=sys.stderr)
    finally:
        if launched is not None:
            try:  # read before shutdown: on Ray the counter goes away with its process
                counts = launched.client("counter").status()
            except Exception:  # noqa: BLE001, S110 - the counter itself may be what failed
                pass
            launched.shutdown()
    if launched is None:
        return 130
    launched.wait(0)  # re-raises a node failure
    diverged = counts.get("diverged")
    if diverged:
        print(
            f"antiphon train: the learner {diverged['message']}. Stopped; the last finite state "
            f"(SGD step {diverged['last_finite_step']}) is checkpointed "
            f"(checkpoint at step {diverged['checkpoint_step']}). Resume with a lower learning "
            f"rate: the same command with other --*-learning-rate values and --run-dir {run_dir}"
            " (no --overwrite needed)",
            file=sys.stderr,
        )
        return DIVERGED_EXIT_STATUS
    try:
        png = plot_run([run_dir])
    except ValueError:
        png = None
    print(
        f"done in {time.time() - started:.0f} s: actor_steps={counts.get('actor_steps', 0):.0f} "
        f"learner_steps={counts.get('learner_steps', 0):.0f} "
        f"last eval return={counts.get('eval_return', float('nan')):.1f}",
        file=sys.stderr,
    )
    print(
        f"run dir: {run_dir} (logs/, tb/, checkpoints/{', plots/returns.png' if png else ''})",
        file=sys.stderr,
    )
    return 130 if interrupted else 0


_signalled = threading.Event()


def _raise_interrupt(signum, frame):
    # Python may run a handler inside a gc callback or __del__, where the exception is printed
    # and dropped; the event makes the watch loop raise it again from a place where it counts.
    _signalled.set()
    raise KeyboardInterrupt(f"signal {signum}")


def _wait_for_stop(launched) -> None:
    while not launched.stop_requested:
        if _signalled.is_set():
            raise KeyboardInterrupt("signal")
        time.sleep(0.5)


def _stop_on_signals() -> None:
    """SIGTERM (schedulers, `kill`) stops a run like Ctrl-C: nodes stop, checkpoints are taken,
    exit 130. SIGINT too, even where a non-interactive shell started us with SIGINT ignored (a
    background job)."""
    if threading.current_thread() is not threading.main_thread():
        return
    _signalled.clear()
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)


def _watch(launched, total_steps: int, show_progress: bool, step_key: str = "actor_steps") -> None:
    """Wait for the program, showing a live progress bar fed by the counter node."""
    from antiphon.core.logging import ProgressDisplay

    counter = launched.client("counter")
    history: list[tuple[float, float]] = []

    def poll() -> dict[str, Any]:
        status = counter.status()
        steps = float(status.get(step_key, 0))
        now = time.time()
        history.append((now, steps))
        while len(history) > 2 and now - history[0][0] > 30:
            history.pop(0)
        dt = history[-1][0] - history[0][0]
        rate = (history[-1][1] - history[0][1]) / dt if dt > 0 else 0.0
        return {
            "steps": steps,
            "steps_per_second": rate,
            "recent_return": status.get("actor_return"),
            "eval_return": status.get("eval_return"),
            "learner_steps": status.get("learner_steps", 0),
        }

    if not show_progress:
        _wait_for_stop(launched)
        return
    description = "env steps" if step_key == "actor_steps" else "learner steps"
    with ProgressDisplay(total_steps, poll, description=description):
        _wait_for_stop(launched)


# ------------------------------------------------------------------------------------------------
# plot


def plot(argv: list[str]) -> int:
    from antiphon.launch.plotting import plot_run

    p = _Parser(prog="antiphon plot", description="Plot learning curves of run directories.")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", default=None, help="PNG path (default RUN_DIR/plots/returns.png)")
    p.add_argument(
        "--pareto",
        action="store_true",
        help="multi-objective runs (--objectives a,b): their objectives' returns against each "
        "other, one front per combination (default out: pareto.png beside the first run)",
    )
    p.add_argument("--last", type=int, default=3, help="--pareto: evaluations averaged per run")
    args = p.parse_args(argv)
    for run_dir in args.run_dirs:
        if not os.path.isdir(run_dir):
            raise UsageError(f"no such run directory: {run_dir}")
    if args.last < 1:
        raise UsageError(f"--last must be >= 1 (got {args.last})")
    try:
        if args.pareto:
            from antiphon.launch.plotting import plot_pareto

            path = plot_pareto(args.run_dirs, args.out, args.last)
        else:
            path = plot_run(args.run_dirs, args.out)
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(path)
    return 0


# ------------------------------------------------------------------------------------------------

# ------------------------------------------------------------------------------------------------
# collect


_EXTENSIONS = {"hdf5": ".hdf5", "rlds": "", "npz": ".npz"}


def _collect_parser() -> _Parser:
    p = _Parser(
        prog="antiphon collect",
        description="Record an offline dataset from a policy, or the five D4RL-recipe datasets "
        "(random, medium, medium-replay, expert, medium-expert) from one online run.",
    )
    p.add_argument("--env", required=True, help="environment, e.g. dmc:cheetah-run")
    p.add_argument(
        "--policy",
        action="append",
        default=None,
        help="random | babyai-bot (minigrid's BabyAI bot, babyai:<Level> only) | "
        "RUN_DIR[@expert|@medium|@latest|@step=N] | replay:RUN_DIR[@medium|...]; "
        "repeat it for a mixed-quality file (--episodes from each policy, one after another)",
    )
    p.add_argument(
        "--recipe",
        default=None,
        metavar="RUN_DIR",
        help="write the D4RL recipe's datasets from this online run (trained with "
        "--record-episodes) into --out",
    )
    p.add_argument(
        "--only",
        default=None,
        help="with --recipe: a comma-separated subset, e.g. medium,medium-replay",
    )
    p.add_argument("--episodes", type=int, default=100, help="episodes per dataset")
    p.add_argument("--out", required=True, help="output file (or directory with --recipe)")
    p.add_argument(
        "--format",
        choices=["hdf5", "rlds", "npz"],
        default=None,
        help="default: npz for an --out ending in .npz, else hdf5",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--action-repeat", type=int, default=None, help="default: the run's, else 1")
    p.add_argument(
        "--action-noise",
        type=float,
        action="append",
        default=None,
        help="Gaussian noise added to a snapshot policy's greedy action (default 0.1); one value "
        "for every --policy, or one per --policy in the same order",
    )
    p.add_argument(
        "--behaviour-policy",
        action="store_true",
        help="with a snapshot --policy: act with the agent's behaviour policy (CRR, BC: a sample "
        "of pi; D4PG: with its exploration noise) instead of its evaluation policy",
    )
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p


def _collect_format(format: str | None, out: str | None) -> str:
    """--format, or the format --out's suffix names (so `--out x.npz` writes an .npz that loads
    back by its suffix); a --format that contradicts the suffix is refused."""
    suffix = os.path.splitext(out)[1].lower() if out else ""
    named = {".npz": "npz", ".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5"}.get(suffix)
    if format is None:
        return named or "hdf5"
    if named is not None and named != format:
        raise UsageError(
            f"--out {out} ends in {suffix} but --format is {format}; drop --format or change"
            " the suffix"
        )
    return format


def collect(argv: list[str]) -> int:
    args = _collect_parser().parse_args(argv)
    if (args.policy is None) == (args.recipe is None):
        raise UsageError("give exactly one of --policy and --recipe")
    policies = args.policy or []
    noises = args.action_noise or [0.1]
    if args.behaviour_policy and (
        args.recipe is not None
        or any(
            policy in ("random", "babyai-bot") or policy.startswith("replay:")
            for policy in policies
        )
    ):
        raise UsageError("--behaviour-policy applies to a snapshot --policy (RUN_DIR[@WHICH]) only")
    if len(noises) not in (1, max(len(policies), 1)):
        raise UsageError(
            f"give one --action-noise for all policies or one per --policy "
            f"(got {len(noises)} for {len(policies)})"
        )
    if args.recipe is not None and len(noises) > 1:
        raise UsageError("--recipe takes one --action-noise")
    if args.only is not None and args.recipe is None:
        raise UsageError("--only selects datasets of --recipe; give --recipe RUN_DIR")
    if args.episodes < 1:
        raise UsageError(f"--episodes must be >= 1 (got {args.episodes})")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0 (got {args.seed})")
    if args.action_repeat is not None and args.action_repeat < 1:
        raise UsageError(f"--action-repeat must be >= 1 (got {args.action_repeat})")
    if any(noise < 0 for noise in noises):
        raise UsageError(f"--action-noise must be >= 0 (got {min(noises)})")
    args.format = _collect_format(args.format, args.out if args.recipe is None else None)

    from antiphon.environments import UnknownEnvironmentError, validate_environment_name
    from antiphon.environments.datasets import DatasetError, save_dataset
    from antiphon.launch import collect as collecting

    try:
        validate_environment_name(args.env)
    except UnknownEnvironmentError as e:
        raise UsageError(str(e)) from None
    if args.recipe is not None:
        names = tuple(args.only.split(",")) if args.only else collecting.RECIPE
        outputs = {n: os.path.join(args.out, n + _EXTENSIONS[args.format]) for n in names}
    else:
        outputs = {"dataset": args.out}
    existing = [path for path in outputs.values() if os.path.exists(path)]
    if existing and not args.overwrite:
        raise UsageError(f"{existing[0]} exists; use --overwrite or another --out")

    from rich.progress import Progress

    with Progress(disable=args.no_progress, transient=True) as progress:

        def progress_factory(name: str, total: int):
            task = progress.add_task(f"collect {name}", total=total)
            return lambda done: progress.update(task, completed=done)

        try:
            if args.recipe is not None:
                datasets = collecting.collect_recipe(
                    args.env,
                    args.recipe,
                    args.episodes,
                    seed=args.seed,
                    action_noise=noises[0],
                    names=names,
                    progress_factory=progress_factory,
                )
            else:
                if len(noises) == 1:
                    noises = noises * len(policies)
                datasets = {
                    "dataset": collecting.collect_mixture(
                        args.env,
                        policies,
                        args.episodes,
                        seed=args.seed,
                        action_repeat=args.action_repeat,
                        action_noises=noises,
                        progress_factory=progress_factory,
                        behaviour_policy=args.behaviour_policy,
                    )
                }
        except (collecting.SnapshotError, DatasetError) as e:
            raise UsageError(str(e)) from None
    for name, dataset in datasets.items():
        path = outputs[name]
        if os.path.exists(path) and args.overwrite:
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        save_dataset(dataset, path, args.format)
        summary = dataset.summary()
        successes = dataset.metadata.get("episode_successes")
        solved = f", {sum(successes)}/{len(successes)} successes" if successes else ""
        print(
            f"{path}: {summary['transitions']} transitions, {summary['episodes']} episodes, "
            f"return {summary['return_mean']:.1f} ± {summary['return_std']:.1f} "
            f"[{summary['return_min']:.1f}, {summary['return_max']:.1f}], "
            f"{summary['terminals']} terminals, {summary['timeouts']} timeouts{solved}",
        )
    return 0


from antiphon.launch.bench import bench  # noqa: E402 - registered with the commands below

COMMANDS = {"train": train, "collect": collect, "plot": plot, "bench": bench}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(
            "usage: antiphon {train,collect,plot,bench} ...\n\n"
            "  train   train an agent, e.g. antiphon train --agent d4pg "
            "--env dmc:cartpole-swingup --actors 2 --steps 100000 --run-dir runs/x\n"
            "          offline: antiphon train --agent crr --dataset PATH --steps 100000\n"
            "  collect record datasets: antiphon collect --env dmc:cheetah-run "
            "--recipe runs/x --out datasets/cheetah-run\n"
            "  plot    plot learning curves: antiphon plot runs/x [runs/y ...]\n"
            "  bench   offline benchmark, datasets by recipe: antiphon bench offline "
            "--preset smoke|standard --tasks cheetah-run,walker-walk"
        )
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, list(COMMANDS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        print(
            f"antiphon: error: unknown command '{command}'{hint} (commands: {', '.join(COMMANDS)})",
            file=sys.stderr,
        )
        return 2
    try:
        return COMMANDS[command](rest)
    except UsageError as e:
        print(f"antiphon {command}: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        # A run directory whose checkpoint another version or config of the learner wrote: one
        # line, not a traceback. (checkpointing is imported by then; cli stays light to import.)
        from antiphon.core.checkpointing import CheckpointMismatchError

        if not isinstance(e, CheckpointMismatchError):
            raise
        # train resumes a run's learner; collect reads a run's policy snapshots.
        what, hint = (
            ("cannot resume", " Start a new --run-dir, or pass --overwrite to discard this one.")
            if command == "train"
            else ("cannot read a checkpoint", "")
        )
        print(
            f"antiphon {command}: error: {what}: {e}. It was written by another version or "
            f"configuration of this agent, and is left as it is.{hint}",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
