"""The online program end to end on a real Reverb server and real DM Control physics."""

import dataclasses
import json
import os

import numpy as np
import reverb

from antiphon.agents.d4pg.builder import D4PGBuilder
from antiphon.agents.d4pg.config import D4PGConfig
from antiphon.core.types import make_environment_spec
from antiphon.environments import make_environment
from antiphon.launch import experiments, threads
from tests.launch import evaluator_rows, measured_recipe

ENV = "dmc:cartpole-swingup"


def _spec():
    return make_environment_spec(make_environment(ENV, seed=0))


def test_threaded_program_improves_its_return(tmp_path):
    """MoG-D4PG with the measured recipe (benchmarks/RESULTS.md: action repeat 2, Adam 1e-3,
    samples_per_insert 128), one actor, 10k environment steps, seed 1, evaluated every 2.5k: the
    greedy policy's return must rise far above the initial policy's (~1: the pole hangs down) and
    the uniform random policy's (22 for this seed).

    The actor and learner threads interleave differently from run to run, so a seed's trajectory
    is not reproducible and the return at one evaluation is not either: the final one has been
    26 (one full-suite run), 71, 126, 210 and 250 (2026-11-21, 2-core machine). The best of the
    evaluations after the first was 126-250 in those four runs; that is the one held to the bar."""
    builder, experiment = measured_recipe(ENV, tmp_path, eval_every=2_500)
    launched = threads.launch(experiments.build_online_program(builder, experiment, _spec()))
    launched.wait(timeout=600)
    rows = evaluator_rows(tmp_path)
    assert rows[0]["actor_steps"] < 10_000 and rows[-1]["actor_steps"] >= 10_000
    assert len(rows) >= 4, rows
    first = rows[0]["eval_return_mean"]
    best = max(row["eval_return_mean"] for row in rows[1:])
    assert best > first + 50, (first, [row["eval_return_mean"] for row in rows])
    with open(tmp_path / "random_policy.json") as f:
        random_return = json.load(f)["return_mean"]
    assert best > random_return + 50, (random_return, [row["eval_return_mean"] for row in rows])
    # the rate limiter: (5000 agent steps - 1000 min size) * 128 / 256 ~ 2000 SGD steps
    assert 1500 < rows[-1]["learner_steps"] < 2600
    # what a run leaves behind
    for path in ("logs/learner.csv", "logs/actor_0.csv", "checkpoints/learner", "tb/evaluator"):
        assert os.path.exists(tmp_path / path), path


def test_rerun_resumes_learner_counter_and_replay(tmp_path):
    builder = D4PGBuilder(D4PGConfig(min_replay_size=300, sgd_steps_per_call=2))
    first = experiments.OnlineExperiment(
        environment=ENV, max_actor_steps=2000, run_dir=str(tmp_path), seed=0, eval_every=0
    )
    launched = threads.launch(experiments.build_online_program(builder, first, _spec()))
    launched.wait(timeout=300)
    counts = launched.instances["counter"].get_counts()
    learner_steps = launched.instances["learner"].learner.sgd_steps
    assert counts["actor_steps"] == 2000 and learner_steps > 0
    assert os.path.exists(tmp_path / "replay" / "port")

    second = dataclasses.replace(first, max_actor_steps=3000)
    launched = threads.launch(experiments.build_online_program(builder, second, _spec()))
    try:
        # Right after start, before any new step: everything restored, nothing started over.
        learner = launched.instances["learner"].learner
        assert learner.sgd_steps >= learner_steps
        assert launched.instances["counter"].get_counts()["actor_steps"] >= 2000
        address = launched.instances["replay"].address
        size = reverb.Client(address).server_info()["priority_table"].current_size
        assert size >= 1900  # the 2000 transitions written by the first run (minus in flight)
        # same port as the first run (pinned in run_dir/replay/port)
        with open(tmp_path / "replay" / "port") as f:
            assert address.endswith(f":{int(f.read())}")
    finally:
        launched.wait(timeout=300)
    counts = launched.instances["counter"].get_counts()
    assert 3000 <= counts["actor_steps"] < 3000 + 1000  # only ~1000 new steps, not 3000
    assert launched.instances["learner"].learner.sgd_steps > learner_steps
    assert np.isfinite(counts["learner_steps"])
