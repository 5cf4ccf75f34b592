"""The Ray launcher on small programs: processes, proxies, broadcast, stop and failures."""

from __future__ import annotations

import os
import signal
import stat
import time

import pytest

from antiphon import launch
from antiphon.launch import program as lp
from tests.launch import ray_nodes
from tests.launch.ray_helpers import (
    assert_no_ray_processes,
    kill_and_wait_for_restart,
    ray_processes,
    start_marking,
    stop_marking,
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(autouse=True)
def no_ray_left_behind():
    run_id = start_marking()
    try:
        yield run_id
    finally:
        stop_marking()
    assert_no_ray_processes(run_id)


def _wait_for(predicate, timeout: float = 60.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(interval)


def test_nodes_are_processes_and_a_node_can_stop_the_program(no_ray_left_behind):
    program = lp.Program("toy")
    with program.group("counter"):
        accumulator = program.add_node(lp.PyClassNode(ray_nodes.Accumulator))
    with program.group("actor"):
        for _ in range(2):
            program.add_node(lp.PyClassNode(ray_nodes.Pusher, accumulator, 50))
    running = launch.launch(program, launch_type="ray", local_num_cpus=3)
    try:
        counter = running.client("counter")
        pids = {counter.pid(), running.client("actor_0").pid(), running.client("actor_1").pid()}
        assert len(pids) == 3 and os.getpid() not in pids
        # The leftover check can see this test's Ray processes (nodes, raylet, GCS) while they run.
        tagged = ray_processes(no_ray_left_behind)
        assert pids <= set(tagged) and any("raylet" in text for text in tagged.values())
        future = counter.futures.slow_echo({"x": [1, 2]}, 0.2)  # does not block
        assert future.result(timeout=30) == {"x": [1, 2]}
        # The pushers call launch.stop() once done: the program stops by itself.
        _wait_for(lambda: running.stop_requested)
        assert counter.total() == 100
    finally:
        running.shutdown()
    running.wait(0)  # no node failed


def test_broadcast_publishes_once_per_version_for_all_readers():
    program = lp.Program("broadcast")
    with program.group("learner"):
        source = program.add_node(lp.PyClassNode(ray_nodes.VersionedSource, 100_000))
    with program.group("actor"):
        for _ in range(3):
            program.add_node(lp.PyClassNode(ray_nodes.Reader, source))
    running = launch.launch(
        program, launch_type="ray", local_num_cpus=4, broadcast_period_seconds=0.1
    )
    try:
        learner = running.client("learner")
        readers = [running.client(f"actor_{i}") for i in range(3)]
        assert [r.pull() for r in readers] == [0.0, 0.0, 0.0]
        for version in (5, 9):
            learner.bump(version - learner.variables_version())
            time.sleep(0.5)  # > the broadcast period: the publisher has the new version
            assert [r.pull() for r in readers] == [float(version)] * 3
            assert [r.version() for r in readers] == [version] * 3
            # Pulling again with nothing new transfers nothing.
            assert [r.pull() for r in readers] == [float(version)] * 3
        stats = learner.broadcast_stats()
        # Versions 0, 5 and 9: one object each, however many readers pulled.
        assert stats["publishes"] == 3
    finally:
        running.shutdown()


def test_a_node_that_raises_stops_the_program_with_its_name():
    program = lp.Program("failing")
    with program.group("counter"):
        accumulator = program.add_node(lp.PyClassNode(ray_nodes.Accumulator))
    with program.group("learner"):
        program.add_node(lp.PyClassNode(ray_nodes.Exploder, accumulator))
    running = launch.launch(program, launch_type="ray", local_num_cpus=2)
    with pytest.raises(RuntimeError, match="node 'learner' raised ValueError\\('boom'\\)"):
        running.wait(120)


def test_a_node_out_of_restarts_stops_the_program_with_a_clear_message():
    program = lp.Program("budget")
    with program.group("counter"):
        program.add_node(lp.PyClassNode(ray_nodes.Accumulator))
    with program.group("actor"):
        program.add_node(lp.PyClassNode(ray_nodes.Accumulator))
    running = launch.launch(
        program, launch_type="ray", local_num_cpus=2, resources={"counter": {"max_restarts": 1}}
    )
    try:
        _, now = kill_and_wait_for_restart(running, "counter")  # restart 1 of 1
        os.kill(now["pid"], signal.SIGKILL)  # none left
    except BaseException:
        running.shutdown()
        raise
    with pytest.raises(RuntimeError, match="node 'counter' died and cannot restart .*budget 1"):
        running.wait(120)


def test_token_file_is_created_and_kept_owner_only(tmp_path, monkeypatch):
    from antiphon.launch.ray import ensure_token_file

    path = tmp_path / "ray" / "auth_token"
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(path))
    assert ensure_token_file() == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(path.read_text()) == 64
    token = path.read_text()
    path.chmod(0o644)
    ensure_token_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == token


def test_local_instance_runs_with_token_authentication():
    program = lp.Program("auth")
    with program.group("counter"):
        program.add_node(lp.PyClassNode(ray_nodes.Accumulator))
    running = launch.launch(program, launch_type="ray", local_num_cpus=1)
    try:
        assert running.client("counter").environment("RAY_AUTH_MODE") == "token"
    finally:
        running.shutdown()
