"""The online D4PG program on the Ray launcher: a two-node cluster (placement and data path; its
learning run is `slow`), and nodes killed
mid-run (actor, replay, learner) that come back."""

from __future__ import annotations

import signal
import time

import pytest
import reverb

from antiphon import launch
from antiphon.agents.d4pg.builder import D4PGBuilder
from antiphon.agents.d4pg.config import D4PGConfig
from antiphon.core.types import make_environment_spec
from antiphon.environments import make_environment
from antiphon.launch import experiments
from tests.launch import evaluator_rows, measured_recipe
from tests.launch.ray_helpers import (
    assert_no_ray_processes,
    kill_and_wait_for_restart,
    start_marking,
    stop_marking,
)

ENV = "dmc:cartpole-swingup"
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(autouse=True)
def no_ray_left_behind():
    run_id = start_marking()
    try:
        yield
    finally:
        stop_marking()
    assert_no_ray_processes(run_id)


def _spec(action_repeat: int = 1):
    return make_environment_spec(make_environment(ENV, seed=0, action_repeat=action_repeat))


def _wait_for(predicate, timeout: float = 180.0, interval: float = 0.5, what: str = ""):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not reached in {timeout:.0f} s: {what}"
        time.sleep(interval)


# The small program's replay: the rate limiter holds the actors to the learner, so the learner's
# SGD steps set a run's length: (actor steps - MIN_REPLAY_SIZE) * SAMPLES_PER_INSERT / BATCH_SIZE.
# 8 samples per insert (not D4PG's 32) keeps these runs to a few hundred SGD steps.
MIN_REPLAY_SIZE, SAMPLES_PER_INSERT, BATCH_SIZE = 300, 8.0, 64


def _small_program(run_dir, max_actor_steps: int, **experiment_options):
    builder = D4PGBuilder(
        D4PGConfig(
            min_replay_size=MIN_REPLAY_SIZE,
            samples_per_insert=SAMPLES_PER_INSERT,
            sgd_steps_per_call=2,
            batch_size=BATCH_SIZE,
        )
    )
    options = {"seed": 0, "eval_every": 0, "checkpoint_every_seconds": 2.0, **experiment_options}
    experiment = experiments.OnlineExperiment(
        environment=ENV, max_actor_steps=max_actor_steps, run_dir=str(run_dir), **options
    )
    return experiments.build_online_program(builder, experiment, _spec())


def _table_size(address: str, timeout: float = 60.0) -> int:
    """The replay's item count; retried, because this process's gRPC channel to the address
    may still be the one to the killed server (the first calls then fail with a broken pipe)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return reverb.Client(address).server_info(timeout=5)["priority_table"].current_size
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _counts(running) -> dict[str, float]:
    return running.client("counter").get_counts()


def _finish(running) -> dict[str, float]:
    """Wait for the step limit to stop the program; the final counts (read before shutdown)."""
    _wait_for(lambda: running.stop_requested, timeout=400, what="the step limit")
    counts = _counts(running)
    running.wait(0)  # shuts down; raises if any node failed
    return counts


# Actor and evaluator on the worker; replay, learner and counter on the head.
_ON_HEAD = {"resources": {"learner_host": 1}}
_ON_WORKER = {"resources": {"actor_host": 1}}
_TWO_NODE_RESOURCES = {
    "replay": {"num_cpus": 1, **_ON_HEAD},
    "learner": {"num_cpus": 1, **_ON_HEAD},
    "counter": {"num_cpus": 0, **_ON_HEAD},
    "actor": {"num_cpus": 1, **_ON_WORKER},
    "evaluator": {"num_cpus": 0, **_ON_WORKER},
}


def _run_on_two_nodes(program, stop_timeout: float) -> None:
    """Runs `program` to its step limit on a fresh simulated two-node cluster
    (`ray.cluster_utils.Cluster`: a head with the `learner_host` resource, a worker with
    `actor_host`), first checking that each node runs where `_TWO_NODE_RESOURCES` asks."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "resources": {"learner_host": 10}},
    )
    try:
        worker = cluster.add_node(num_cpus=2, resources={"actor_host": 10})
        cluster.wait_for_nodes()
        running = launch.launch(
            program, launch_type="ray", address=cluster.address, resources=_TWO_NODE_RESOURCES
        )
        try:
            placed = {label: running.describe(label)["node_id"] for label in running.program_labels}
            head_id = cluster.head_node.node_id
            assert placed["actor"] == worker.node_id and placed["evaluator"] == worker.node_id
            assert placed["replay"] == placed["learner"] == placed["counter"] == head_id
            assert head_id != worker.node_id
        finally:
            _wait_for(lambda: running.stop_requested, timeout=stop_timeout, what="the step limit")
            running.wait(0)
    finally:
        cluster.shutdown()


def test_two_node_cluster_places_nodes_and_moves_data_and_parameters_across(tmp_path):
    """The two-node placement, and what crosses the nodes, on a short run (the learning check
    below is `slow`): the head's learner, sampling the head's replay that the worker's actor
    fills, makes the rate limiter's number of SGD steps, and the worker's evaluator, at the step
    limit, waits for and plays parameters the learner had already updated (its row's learner
    steps are read before it fetches them)."""
    _run_on_two_nodes(
        _small_program(tmp_path, max_actor_steps=2000, eval_every=10_000, eval_episodes=1),
        stop_timeout=400,
    )
    last = evaluator_rows(tmp_path)[-1]
    assert last["actor_steps"] >= 2000 and last["eval_episodes"] == 1
    expected_sgd_steps = (2000 - MIN_REPLAY_SIZE) * SAMPLES_PER_INSERT / BATCH_SIZE  # ~212
    assert 0.75 * expected_sgd_steps < last["learner_steps"] < 1.3 * expected_sgd_steps, last


@pytest.mark.slow
def test_two_node_cluster_actors_on_one_node_learner_and_replay_on_the_other(tmp_path):
    """A simulated two-node cluster (`ray.cluster_utils.Cluster`): actor and evaluator on the
    worker node, replay, learner and counter on the head, with the recipe and seed of the threaded
    end-to-end test (10k environment steps).

    What crosses the nodes is checked exactly: the learner, sampling the head's replay that the
    worker's actor fills, makes the rate limiter's number of SGD steps, and the worker's evaluator
    plays the learned parameters, which move the return far off the initial policy's (~1: the
    pole hangs down). How far it climbs is not: on Ray the actor and learner run in separate
    processes, so the trajectory of a seed is not reproducible, and at 10k steps the greedy
    return has spread from 35 (one CI run) to 123 and 152 (this test, three runs on a 2-core
    machine). The threaded test, evaluating every 2.5k steps, holds its best evaluation to 50
    above the uniform random policy (its threads do not reproduce a trajectory either)."""
    builder, experiment = measured_recipe(ENV, tmp_path, eval_every=10_000)
    _run_on_two_nodes(
        experiments.build_online_program(builder, experiment, _spec(action_repeat=2)),
        stop_timeout=500,
    )
    rows = evaluator_rows(tmp_path)
    first, last = rows[0]["eval_return_mean"], rows[-1]["eval_return_mean"]
    assert rows[-1]["actor_steps"] >= 10_000
    # (5000 agent steps - 1000 min size) * 128 / 256 ~ 2000 SGD steps, as in the threaded test
    assert 1500 < rows[-1]["learner_steps"] < 2600, rows[-1]
    assert first < 5 and last > first + 20, (first, last)


def _kill_actor_and_check(running) -> None:
    _wait_for(lambda: _counts(running).get("actor_steps", 0) > 500, what="actor steps")
    kill_and_wait_for_restart(running, "actor")


def _kill_replay_and_check(running, run_dir) -> None:
    _wait_for(lambda: _counts(running).get("learner_steps", 0) > 20, what="learner steps")
    address = str(running.client("replay"))
    client = reverb.Client(address)
    size_checkpointed = client.server_info()["priority_table"].current_size
    client.checkpoint()  # holds at least `size_checkpointed` items
    old, new = kill_and_wait_for_restart(running, "replay")
    assert new["address"] == old["address"] == address  # same host and pinned port
    with open(run_dir / "replay" / "port") as f:
        assert address.endswith(f":{int(f.read())}")
    restored = _table_size(address)
    assert restored >= size_checkpointed > 0
    at_restart = _counts(running)

    def resumed() -> bool:
        # Actors count their steps at the end of each episode (1000 steps).
        now = _counts(running)
        return (
            now["learner_steps"] > at_restart["learner_steps"] + 20
            and now.get("actor_steps", 0) >= at_restart.get("actor_steps", 0) + 1000
        )

    # Writers and the learner's dataset resume on the restarted server.
    _wait_for(resumed, what="actors and learner resuming")
    grown = _table_size(address)
    assert grown > restored


def _kill_learner_and_check(running) -> None:
    learner = running.client("learner")
    _wait_for(lambda: learner.checkpointed_steps() > 0, what="a learner checkpoint")
    before_kill = learner.sgd_steps()
    checkpointed = learner.checkpointed_steps()
    kill_and_wait_for_restart(running, "learner")
    restored = learner.sgd_steps()
    # Restored, not started over: back at most to the last checkpoint (one interval).
    assert restored >= checkpointed > 0, (before_kill, checkpointed, restored)
    _wait_for(lambda: learner.sgd_steps() > restored + 10, what="the learner stepping again")


def test_killed_actor_replay_and_learner_each_come_back_and_the_run_finishes(tmp_path):
    """In one run, each node SIGKILLed in turn, once the previous one is back: the actor; the
    replay, which restarts on its address with its checkpointed items, after which the actors'
    writers and the learner's dataset resume; the learner, which restores its last checkpoint
    rather than starting over. Then the run reaches its step limit.

    One run rather than three, for the 15-minute budget of `make test` on 2 cores: as three
    tests (one kill each, 3000-4000 actor steps) they took 69-77 s apiece, mostly starting the
    program's processes; this one took 107 s."""
    running = launch.launch(
        _small_program(tmp_path, max_actor_steps=5000), launch_type="ray", local_num_cpus=4
    )
    try:
        _kill_actor_and_check(running)
        _kill_replay_and_check(running, tmp_path)
        _kill_learner_and_check(running)
        counts = _finish(running)
    finally:
        running.shutdown()
    assert counts["actor_steps"] >= 5000


def test_ctrl_c_stops_every_node_and_saves_checkpoints(tmp_path):
    """`antiphon train --launcher ray`, interrupted: exit status 130 within the termination
    notice, learner and replay checkpoints on disk, and (the fixture) no Ray process left."""
    import subprocess
    import sys

    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "antiphon.launch.cli",
            "train",
            "--agent",
            "d4pg",
            "--env",
            ENV,
            "--steps",
            "1000000",
            "--launcher",
            "ray",
            "--run-dir",
            str(run_dir),
            "--min-replay-size",
            "300",
            "--eval-every",
            "0",
            "--no-progress",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        learner_log = run_dir / "logs" / "learner.csv"
        _wait_for(
            lambda: learner_log.exists() and len(learner_log.read_text().splitlines()) >= 2,
            timeout=240,
            what="the learner logging a step",
        )
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr
    assert any((run_dir / "checkpoints" / "learner").glob("ckpt-*.msgpack"))
    assert any((run_dir / "replay" / "checkpoints").iterdir())
