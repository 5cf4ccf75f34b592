"""The d3rlpy side of the offline-RL comparison: the same HDF5 data, trained and evaluated by
d3rlpy 2.8.1 (PyTorch, CPU), so a driver can put it beside antiphon's own learners.

Needs the `bench` extra (`make bench-setup`); `make test` never installs torch, and nothing in
antiphon imports this module.

    python -m benchmarks.d3rlpy_side --method crr --dataset data.hdf5 --steps 100000 --seed 0 \\
        --out crr_seed0.json

Data. `load_mdp_dataset` reads our D4RL-style HDF5 file (observations, actions, rewards,
next_observations, terminals, timeouts; JSON metadata in attrs["metadata"]) into a
`d3rlpy.dataset.MDPDataset` with true terminals and time-limit truncations kept apart
(`terminals=`, `timeouts=`). d3rlpy rebuilds next observations from the next row of the same
episode, so the loader checks that `next_observations[i] == observations[i + 1]` inside every
episode. Two consequences of d3rlpy's episode layout (not ours): the last transition of an episode
cut by a timeout is never sampled (d3rlpy has no next observation for it; one transition per
episode), and the last transition of a truly terminal episode gets a zero next observation with
terminal=1 (the target ignores it).

Networks. Every method gets `VectorEncoderFactory(hidden_units=hidden)` (ReLU MLP, d3rlpy's own
default is [256, 256] too) for every actor, critic and value network, and `batch_size` (256 by
default; d3rlpy's defaults are 100 for CRR and BC, 256 for the others). All other settings are
d3rlpy 2.8.1's defaults except CRR's, which are pinned to the CRR paper (Wang et al. 2020):
beta=1, max_weight=20, n_action_samples=4, advantage_type="mean", weight_type="exp", hard target
update every 100 steps -- d3rlpy 2.8.1's defaults are already exactly these, so pinning them only
guards against a later d3rlpy changing them. d3rlpy 2.8.1 defaults that matter for a comparison:

    crr     lr 3e-4 / 3e-4 (actor / critic), gamma 0.99, 1 critic, update_actor_interval 1,
            Gaussian policy (mean tanh-squashed, log-likelihood of unsquashed data actions);
            acting = critic-weighted policy (4 samples, softmax over Q, one drawn)
    td3_bc  lr 3e-4 / 3e-4, alpha 2.5, tau 0.005, 2 critics, policy delay 2, target noise 0.2
            clipped 0.5; no observation normalisation (the TD3+BC paper normalises states,
            d3rlpy's reproduction script adds StandardObservationScaler; the default does not)
    iql     lr 3e-4 / 3e-4, expectile 0.7, weight_temp (beta) 3.0, max_weight 100, tau 0.005,
            2 critics; no cosine actor schedule and no reward scaling (both in d3rlpy's
            reproduction script, neither a default)
    cql     actor lr 1e-4, critic lr 3e-4, temperature and alpha lr 1e-4, initial temperature
            and alpha 1.0, alpha_threshold 10, conservative_weight 5, 10 action samples,
            2 critics, tau 0.005
    bc      lr 1e-3, deterministic policy, mean-squared error (set here: lr 3e-4 and the
            stochastic policy, N(tanh(mu), std): the same network and rate as antiphon's BC).
            The stochastic loss is not the likelihood: d3rlpy 2.8.1's
            compute_stochastic_imitation_loss is the squared error between one reparameterised
            sample, clamped to [-1, 1], and the data action. Antiphon's BC maximises log pi(a|s).

`train_d3rlpy` runs the loop of d3rlpy's own `fit()` by hand (sample_transition_batch, update),
so the step count is exact and sampling can be timed apart from the update; `loop="fit"` calls
`algo.fit` itself (NoopAdapterFactory: nothing written to disk) and times it through its
callback, as a check that the manual loop costs the same.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

METHODS = ("crr", "td3_bc", "iql", "cql", "bc")
DEFAULT_WARMUP_STEPS = 200

# Settings pinned to the CRR paper (Wang et al. 2020, "Critic Regularized Regression").
CRR_PAPER = {
    "beta": 1.0,
    "max_weight": 20.0,
    "n_action_samples": 4,
    "advantage_type": "mean",
    "weight_type": "exp",
    "target_update_type": "hard",
    "target_update_interval": 100,
}


# --------------------------------------------------------------------------------------------
# Data.


def read_hdf5(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The six arrays of our D4RL-style file and its JSON metadata."""
    import h5py

    with h5py.File(path, "r") as f:
        arrays = {
            "observations": np.asarray(f["observations"], dtype=np.float32),
            "actions": np.asarray(f["actions"], dtype=np.float32),
            "rewards": np.asarray(f["rewards"], dtype=np.float32).reshape(-1),
            "next_observations": np.asarray(f["next_observations"], dtype=np.float32),
            "terminals": np.asarray(f["terminals"]).astype(bool).reshape(-1),
            "timeouts": np.asarray(f["timeouts"]).astype(bool).reshape(-1),
        }
        raw = f.attrs.get("metadata", "{}")
    if isinstance(raw, bytes):
        raw = raw.decode()
    metadata = json.loads(raw) if raw else {}
    return arrays, metadata


def check_layout(arrays: dict[str, np.ndarray], source: str = "dataset") -> dict[str, Any]:
    """Checks what d3rlpy silently assumes; returns counts. Raises ValueError otherwise."""
    n = arrays["rewards"].shape[0]
    for name, value in arrays.items():
        if value.shape[0] != n:
            raise ValueError(f"{source}: '{name}' has {value.shape[0]} rows, rewards has {n}")
    terminals, timeouts = arrays["terminals"], arrays["timeouts"]
    if np.any(terminals & timeouts):
        raise ValueError(f"{source}: a step is both a terminal and a timeout")
    ends = terminals | timeouts
    if n == 0 or not ends[-1]:
        # d3rlpy would drop the unfinished tail without a word.
        raise ValueError(f"{source}: the last transition does not end an episode")
    # Inside an episode the next row's observation must be this row's next observation: d3rlpy
    # rebuilds next observations that way.
    inside = ~ends[:-1]
    diff = np.abs(arrays["next_observations"][:-1][inside] - arrays["observations"][1:][inside])
    max_diff = float(diff.max()) if diff.size else 0.0
    if max_diff > 1e-6:
        bad = int(np.sum(diff.reshape(diff.shape[0], -1).max(axis=1) > 1e-6))
        raise ValueError(
            f"{source}: next_observations differ from the next row's observations inside an "
            f"episode at {bad} steps (max |diff| {max_diff:.3g}); d3rlpy cannot represent that"
        )
    return {
        "transitions": int(n),
        "episodes": int(ends.sum()),
        "terminals": int(terminals.sum()),
        "timeouts": int(timeouts.sum()),
        # Transitions d3rlpy can sample: each timed-out episode loses its last one.
        "d3rlpy_transitions": int(n - timeouts.sum()),
        "max_next_observation_diff": max_diff,
    }


def load_mdp_dataset(path: str | os.PathLike, return_info: bool = False):
    """Our HDF5 file -> d3rlpy.dataset.MDPDataset (terminals and timeouts kept distinct).

    With `return_info`, returns (dataset, info) where info has the file's metadata
    (`environment`, `action_repeat`, ...) under "metadata" and the counts of `check_layout`.
    """
    from d3rlpy.constants import ActionSpace
    from d3rlpy.dataset import MDPDataset

    arrays, metadata = read_hdf5(path)
    counts = check_layout(arrays, source=str(path))
    dataset = MDPDataset(
        observations=arrays["observations"],
        actions=arrays["actions"],
        rewards=arrays["rewards"],
        terminals=arrays["terminals"].astype(np.float32),
        timeouts=arrays["timeouts"].astype(np.float32),
        action_space=ActionSpace.CONTINUOUS,
        action_size=int(arrays["actions"].shape[1]),
    )
    if dataset.transition_count != counts["d3rlpy_transitions"]:
        raise AssertionError(
            f"{path}: d3rlpy holds {dataset.transition_count} transitions, expected "
            f"{counts['d3rlpy_transitions']}"
        )
    if return_info:
        return dataset, {"path": str(path), "metadata": metadata, **counts}
    return dataset


# --------------------------------------------------------------------------------------------
# Algorithms.


def algo_settings(
    method: str, batch_size: int = 256, hidden: tuple[int, ...] = (256, 256)
) -> tuple[type, dict[str, Any]]:
    """(d3rlpy config class, the keyword arguments we set) for `method`."""
    import d3rlpy

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    algos = d3rlpy.algos

    def encoder():
        return d3rlpy.models.VectorEncoderFactory(hidden_units=list(hidden))

    actor_critic = {
        "actor_encoder_factory": encoder(),
        "critic_encoder_factory": encoder(),
        "batch_size": batch_size,
    }
    if method == "crr":
        return algos.CRRConfig, {**actor_critic, **CRR_PAPER}
    if method == "td3_bc":
        return algos.TD3PlusBCConfig, actor_critic
    if method == "iql":
        return algos.IQLConfig, {**actor_critic, "value_encoder_factory": encoder()}
    if method == "cql":
        return algos.CQLConfig, actor_critic
    # The Gaussian policy at Adam 3e-4: the network and rate of antiphon's BC in the benchmark
    # (d3rlpy's default is a deterministic policy at 1e-3). Its loss is the squared error of a
    # reparameterised sample, not the likelihood (module docstring).
    return algos.BCConfig, {
        "encoder_factory": encoder(),
        "batch_size": batch_size,
        "policy_type": "stochastic",
        "learning_rate": 3e-4,
    }


def make_d3rlpy_algo(
    method: str,
    batch_size: int = 256,
    hidden: tuple[int, ...] = (256, 256),
    seed: int = 0,
    device: str = "cpu:0",
    overrides: dict[str, Any] | None = None,
):
    """A d3rlpy algorithm for `method` (see the module docstring for every setting), with
    `overrides` (config field -> value, e.g. {"actor_learning_rate": 1e-4}) on top.

    Seeds python, numpy and torch (d3rlpy.seed): d3rlpy samples batches with numpy's global RNG.
    The networks are built on the first `train_d3rlpy` call (or `algo.build_with_dataset`).
    """
    import d3rlpy

    config_cls, kwargs = algo_settings(method, batch_size, hidden)
    kwargs = {**kwargs, **(overrides or {})}
    d3rlpy.seed(seed)
    return config_cls(**kwargs).create(device=device)


def config_report(method: str, algo, batch_size: int, hidden: tuple[int, ...]) -> dict[str, Any]:
    """The full config as d3rlpy serialises it and, for each field we set, d3rlpy's default."""
    config_cls, kwargs = algo_settings(method, batch_size, hidden)
    ours = algo.config.serialize_to_dict()
    defaults = config_cls().serialize_to_dict()
    set_fields = {
        key: {"d3rlpy_default": defaults.get(key), "set": ours.get(key)} for key in sorted(kwargs)
    }
    return {"class": config_cls.__name__, "values": ours, "fields_set": set_fields}


# --------------------------------------------------------------------------------------------
# Evaluation.


def evaluate(
    algo,
    environment: str,
    action_repeat: int = 1,
    episodes: int = 10,
    seed: int = 999,
) -> list[float]:
    """Returns of `episodes` episodes of algo.predict on antiphon's environment (one env, reset
    between episodes, like antiphon's evaluator). Actions are clipped to the action spec: CRR
    acts with samples of an unsquashed Gaussian, which can leave [-1, 1]."""
    from antiphon.environments import make_environment

    env = make_environment(environment, seed=seed, action_repeat=action_repeat)
    spec = env.action_spec()
    low = np.broadcast_to(np.asarray(spec.minimum, np.float32), spec.shape)
    high = np.broadcast_to(np.asarray(spec.maximum, np.float32), spec.shape)
    returns = []
    try:
        for _ in range(episodes):
            timestep = env.reset()
            total = 0.0
            while not timestep.last():
                obs = np.asarray(timestep.observation, dtype=np.float32)
                action = algo.predict(obs[None])[0]
                action = np.clip(action, low, high).astype(spec.dtype).reshape(spec.shape)
                timestep = env.step(action)
                total += float(timestep.reward or 0.0)
            returns.append(total)
    finally:
        close = getattr(env, "close", None)
        if close is not None:
            close()
    return returns


# --------------------------------------------------------------------------------------------
# Training.


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(int(threads))
    try:
        torch.set_num_interop_threads(int(threads))
    except RuntimeError:
        pass  # only settable before torch's first parallel work; intra-op threads matter here


def train_d3rlpy(
    method: str,
    dataset_path: str | os.PathLike,
    steps: int,
    seed: int = 0,
    eval_episodes: int = 10,
    eval_every: int | None = None,
    threads: int = 1,
    batch_size: int = 256,
    hidden: tuple[int, ...] = (256, 256),
    device: str = "cpu:0",
    warmup_steps: int = DEFAULT_WARMUP_STEPS,
    eval_seed: int | None = None,
    loop: str = "manual",
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Trains `method` for exactly `steps` gradient steps on the file, then evaluates it.

    Throughput leaves out the first `warmup_steps` (at most half the run) and any evaluation:
    steps_per_second covers sampling plus update, as in d3rlpy's fit(); update_steps_per_second
    the update alone; sample_fraction is the share of the measured time spent sampling
    (loop="manual" only). The evaluation environment is seeded `seed * 1000 + 999` unless
    `eval_seed` is given (antiphon's evaluator uses the same seed).
    """
    import d3rlpy
    import torch

    from benchmarks import common

    if loop not in ("manual", "fit"):
        raise ValueError(f"loop must be 'manual' or 'fit', got {loop!r}")
    if loop == "fit" and eval_every:
        raise ValueError("eval_every needs loop='manual'")
    steps = int(steps)
    load_before = common.load_average()
    busy_before = common.other_processes_cpu()
    _set_threads(threads)

    dataset, info = load_mdp_dataset(dataset_path, return_info=True)
    metadata = info["metadata"]
    environment = metadata.get("environment")
    action_repeat = int(metadata.get("action_repeat", 1))
    if eval_seed is None:
        eval_seed = seed * 1000 + 999

    algo = make_d3rlpy_algo(
        method, batch_size, hidden, seed=seed, device=device, overrides=overrides
    )
    # What fit() does before its loop: scalers (all None by default), then the networks.
    from d3rlpy.algos.utility import build_scalers_with_transition_picker

    build_scalers_with_transition_picker(algo, dataset)
    algo.build_with_dataset(dataset)

    warmup = min(int(warmup_steps), steps // 2)
    curve: list[dict[str, Any]] = []
    sample_seconds = update_seconds = measured_seconds = 0.0
    last_loss: dict[str, float] = {}

    def run_eval(step: int) -> None:
        if environment is None or eval_episodes <= 0:
            return
        returns = evaluate(algo, environment, action_repeat, eval_episodes, eval_seed)
        curve.append(
            {
                "step": step,
                "return_mean": float(np.mean(returns)),
                "return_std": float(np.std(returns)),
                "returns": returns,
            }
        )

    train_start = time.perf_counter()
    if loop == "manual":
        for step in range(1, steps + 1):
            t0 = time.perf_counter()
            batch = dataset.sample_transition_batch(algo.config.batch_size)
            t1 = time.perf_counter()
            last_loss = algo.update(batch)
            t2 = time.perf_counter()
            if step > warmup:
                sample_seconds += t1 - t0
                update_seconds += t2 - t1
                measured_seconds += t2 - t0
            if eval_every and step % eval_every == 0 and step != steps:
                run_eval(step)
        sample_fraction = sample_seconds / measured_seconds if measured_seconds else None
    else:
        from d3rlpy.logging import NoopAdapterFactory

        marks: dict[int, float] = {}

        def callback(_algo, _epoch: int, total_step: int) -> None:
            if total_step in (warmup, steps):
                marks[total_step] = time.perf_counter()

        algo.fit(
            dataset,
            n_steps=steps,
            n_steps_per_epoch=steps,  # one epoch, so n_steps // n_steps_per_epoch == 1
            experiment_name=f"d3rlpy_side_{method}",
            with_timestamp=False,
            logger_adapter=NoopAdapterFactory(),
            show_progress=False,
            save_interval=10**9,
            evaluators=None,
            callback=callback,
        )
        if warmup == 0:
            marks[0] = train_start
        measured_seconds = marks[steps] - marks[warmup]
        sample_fraction = None
    train_seconds = time.perf_counter() - train_start
    if algo.grad_step != steps:
        raise AssertionError(f"d3rlpy ran {algo.grad_step} gradient steps, expected {steps}")

    run_eval(steps)
    final = curve[-1] if curve and curve[-1]["step"] == steps else None
    measured_steps = steps - warmup

    def rate(seconds: float) -> float | None:
        return measured_steps / seconds if seconds > 0 and measured_steps > 0 else None

    versions = {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "d3rlpy": d3rlpy.__version__,
        "torch": torch.__version__,
    }
    return {
        "method": method,
        "seed": seed,
        "steps": steps,
        "batch_size": batch_size,
        "hidden": list(hidden),
        "threads": threads,
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "loop": loop,
        "warmup_steps": warmup,
        "measured_steps": measured_steps,
        "measured_seconds": measured_seconds,
        "steps_per_second": rate(measured_seconds),
        "update_steps_per_second": rate(update_seconds) if loop == "manual" else None,
        "sample_fraction": sample_fraction,
        "train_seconds": train_seconds,
        "final_losses": {k: float(v) for k, v in last_loss.items()},
        "eval_environment": environment,
        "eval_action_repeat": action_repeat,
        "eval_seed": eval_seed,
        "eval_episodes": eval_episodes,
        "eval_return_mean": final["return_mean"] if final else None,
        "eval_return_std": final["return_std"] if final else None,
        "eval_returns": final["returns"] if final else [],
        "eval_curve": curve,
        "dataset": {k: v for k, v in info.items() if k != "metadata"},
        "dataset_metadata": {k: v for k, v in metadata.items() if k not in ("episode_returns",)},
        "d3rlpy_version": d3rlpy.__version__,
        "torch_version": torch.__version__,
        "config": config_report(method, algo, batch_size, hidden),
        "versions": versions,
        "cpu_model": common.cpu_model(),
        "load": {
            "loadavg_before": load_before,
            "loadavg_after": common.load_average(),
            "cores": os.cpu_count(),
            "busiest_processes_before": busy_before,
            "busiest_processes_after": common.other_processes_cpu(),
        },
        "git": common.git_commit(),
    }


# --------------------------------------------------------------------------------------------
# CLI.


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def _quiet_d3rlpy_logs() -> None:
    """d3rlpy logs through structlog, whose default prints to stdout; send warnings and worse to
    stderr, so that without --out stdout is the JSON alone."""
    import logging

    import d3rlpy  # noqa: F401 - configures structlog on import; ours must come after
    import structlog

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", required=True, choices=METHODS)
    parser.add_argument("--dataset", required=True, help="our D4RL-style HDF5 file")
    parser.add_argument("--steps", type=int, required=True, help="gradient steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="JSON file for the result (default: print it)")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--eval-every", type=int, default=None)
    parser.add_argument("--eval-seed", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--device", default="cpu:0")
    parser.add_argument("--warmup-steps", type=int, default=DEFAULT_WARMUP_STEPS)
    parser.add_argument("--loop", choices=("manual", "fit"), default="manual")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a d3rlpy config field, e.g. --set actor_learning_rate=1e-4 (JSON value)",
    )
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.set:
        field, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set takes FIELD=VALUE (got {item!r})")
        overrides[field] = json.loads(value)
    _quiet_d3rlpy_logs()

    result = train_d3rlpy(
        args.method,
        args.dataset,
        args.steps,
        seed=args.seed,
        eval_episodes=args.eval_episodes,
        eval_every=args.eval_every,
        threads=args.threads,
        batch_size=args.batch_size,
        hidden=tuple(args.hidden),
        device=args.device,
        warmup_steps=args.warmup_steps,
        eval_seed=args.eval_seed,
        loop=args.loop,
        overrides=overrides,
    )
    text = json.dumps(result, indent=2, default=_json_default) + "\n"
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    sps = result["steps_per_second"]
    print(
        f"{args.method} seed {args.seed}: {args.steps} steps, "
        f"{'n/a' if sps is None else f'{sps:.1f}'} steps/s, "
        f"return {result['eval_return_mean']} ± {result['eval_return_std']}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
