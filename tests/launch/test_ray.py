"""The Ray launcher on small programs: processes, proxies, broadcast, stop and failures."""

from __future__ import annotations

import os
import time

import pytest

from antiphon import launch
from antiphon.launch import program as lp
from tests.launch import ray_nodes
from tests.launch.ray_helpers import assert_no_ray_processes, ray_processes

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(autouse=True)
def no_ray_left_behind():
    before = ray_processes()
    yield
    assert_no_ray_processes(before)


def _wait_for(predicate, timeout: float = 60.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(interval)


def test_nodes_are_processes_and_a_node_can_stop_the_program():
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
