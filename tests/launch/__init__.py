"""Shared helpers for the launch tests: the measured MoG-D4PG recipe on cartpole-swingup and the
evaluator's log."""

from __future__ import annotations

import csv
import os
import typing

if typing.TYPE_CHECKING:
    from antiphon.agents.d4pg.builder import D4PGBuilder
    from antiphon.launch.experiments import OnlineExperiment


def measured_recipe(
    environment: str, run_dir, eval_every: int
) -> tuple[D4PGBuilder, OnlineExperiment]:
    """MoG-D4PG with the recipe measured in benchmarks/RESULTS.md (action repeat 2, Adam 1e-3,
    samples_per_insert 128): one actor, 10k environment steps, seed 1, 3 evaluation episodes.

    Imports antiphon only when called: Ray workers import this package to load
    `tests.launch.ray_nodes`, and should not pay for jax there."""
    from antiphon.agents.d4pg.builder import D4PGBuilder
    from antiphon.agents.d4pg.config import D4PGConfig
    from antiphon.launch import experiments

    builder = D4PGBuilder(
        D4PGConfig(policy_learning_rate=1e-3, critic_learning_rate=1e-3, samples_per_insert=128.0)
    )
    experiment = experiments.OnlineExperiment(
        environment=environment,
        max_actor_steps=10_000,
        run_dir=str(run_dir),
        seed=1,
        action_repeat=2,
        eval_every=eval_every,
        eval_episodes=3,
        replay_checkpoint=False,
    )
    return builder, experiment


def evaluator_rows(run_dir) -> list[dict[str, float]]:
    """The rows of a run's `logs/evaluator.csv`, as floats."""
    with open(os.path.join(run_dir, "logs", "evaluator.csv")) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
