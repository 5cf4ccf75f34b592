"""A Reverb server process that dies and comes back on the same port: writers, datasets and
priority updaters carry on without being rebuilt by their owner."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import dm_env
import numpy as np
import portpicker
import pytest
import reverb
import tensorflow as tf

from antiphon.replay import adders, clients, datasets, priorities

_SERVER = textwrap.dedent(
    """
    import sys, time, reverb, tensorflow as tf
    signature = {"x": tf.TensorSpec([], tf.float32)}
    table = reverb.Table("t", reverb.selectors.Uniform(), reverb.selectors.Fifo(), 10_000,
                         reverb.rate_limiters.MinSize(1), signature=signature)
    server = reverb.Server([table], port=int(sys.argv[1]))
    print("ready", flush=True)
    time.sleep(600)
    """
)


class _ServerProcess:
    def __init__(self, port: int):
        self.port = port
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _SERVER, str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout.readline().strip() == "ready"

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def server():
    server = _ServerProcess(portpicker.pick_unused_port())
    server.start()
    yield server
    server.kill()


class _OneColumnAdder(adders._Adder):
    """Writes one item per step holding the step's observation."""

    def _add_first(self, timestep):
        self._append({"x": np.float32(timestep.observation)}, partial=False)
        self._create_item({"x": self._writer.history["x"][-1]})

    def _add(self, action, next_timestep, extras):
        self._append({"x": np.float32(next_timestep.observation)}, partial=False)
        self._create_item({"x": self._writer.history["x"][-1]})


def _episode(adder, start: float, length: int) -> None:
    adder.add_first(dm_env.restart(np.float32(start)))
    for i in range(1, length):
        step = dm_env.termination if i == length - 1 else dm_env.transition
        if step is dm_env.termination:
            adder.add(np.zeros(1), dm_env.termination(0.0, np.float32(start + i)))
        else:
            adder.add(np.zeros(1), dm_env.transition(0.0, np.float32(start + i)))


def _sample(port: int, batch_size: int):
    dataset = datasets.make_reverb_dataset(
        f"localhost:{port}", "t", batch_size=batch_size, num_batches_per_call=1
    )
    return next(dataset.as_numpy_iterator())


def _size(port: int) -> int:
    return reverb.Client(f"localhost:{port}").server_info(timeout=5)["t"].current_size


def _restart_later(server: _ServerProcess, delay: float) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(delay), server.start()))
    thread.start()
    return thread


def test_adder_reconnects_and_drops_only_the_broken_episode(server):
    adder = _OneColumnAdder(
        reverb.Client(f"localhost:{server.port}"), "t", num_keep_alive_refs=2, max_in_flight_items=1
    )
    adder.liveness_check_seconds = 1.0
    _episode(adder, 0, 5)
    assert _size(server.port) == 5

    # Start an episode, lose the server mid-episode for longer than a liveness check; it comes
    # back empty (no checkpoint) on the same port.
    adder.add_first(dm_env.restart(np.float32(100)))
    server.kill()
    restarter = _restart_later(server, 3.0)
    for i in range(1, 4):  # the rest of the broken episode is dropped, not raised
        adder.add(np.zeros(1), dm_env.transition(0.0, np.float32(100 + i)))
    adder.add(np.zeros(1), dm_env.termination(0.0, np.float32(104)))
    restarter.join()
    assert adder.reconnects == 1
    _episode(adder, 200, 4)  # the next episode is written in full to the new server
    assert _size(server.port) == 4
    values = set(_sample(server.port, 50).data["x"].reshape(-1).tolist())
    assert values == {200.0, 201.0, 202.0, 203.0}


def test_adder_rides_out_a_short_restart(server):
    """A server back before the liveness check fails: Reverb's writer resends by itself."""
    adder = _OneColumnAdder(
        reverb.Client(f"localhost:{server.port}"), "t", num_keep_alive_refs=2, max_in_flight_items=1
    )
    server.kill()
    server.start()
    _episode(adder, 0, 3)
    _episode(adder, 10, 3)
    assert _size(server.port) >= 3


def test_adder_reconnect_re_resolves_the_address(server):
    """The address is asked again before reconnecting (a replay restarted on another port)."""
    moved = _ServerProcess(portpicker.pick_unused_port())
    current = {"address": f"localhost:{server.port}"}
    address = clients.ReplayAddress(current["address"], lambda: current["address"])
    adder = _OneColumnAdder(
        reverb.Client(address), "t", num_keep_alive_refs=2, max_in_flight_items=1
    )
    adder.liveness_check_seconds = 1.0
    _episode(adder, 0, 3)
    server.kill()
    moved.start()
    try:
        current["address"] = f"localhost:{moved.port}"
        _episode(adder, 10, 3)  # its first write finds the old address dead: dropped
        _episode(adder, 20, 3)
        assert adder.reconnects == 1
        assert _size(moved.port) == 3
    finally:
        moved.kill()


def test_adder_gives_up_after_the_outage_budget(server):
    adder = _OneColumnAdder(
        reverb.Client(f"localhost:{server.port}"), "t", num_keep_alive_refs=2, max_in_flight_items=1
    )
    adder.liveness_check_seconds = 1.0
    adder.max_outage_seconds = 2.0
    server.kill()
    with pytest.raises(ConnectionError, match="unreachable"):
        _episode(adder, 0, 3)
    server.start()  # for the fixture's kill


def test_dataset_stream_resumes_after_a_restart(server):
    client = reverb.Client(f"localhost:{server.port}")
    with client.trajectory_writer(1) as writer:
        for i in range(3):
            writer.append({"x": np.float32(i)})
            writer.create_item("t", 1.0, {"x": writer.history["x"][-1]})
        writer.flush()

    def make_dataset() -> tf.data.Dataset:
        return datasets.make_reverb_dataset(
            f"localhost:{server.port}", "t", batch_size=2, num_batches_per_call=1
        ).map(lambda sample: sample.data)

    stream = datasets.reconnecting_numpy_iterator(make_dataset, initial_backoff_seconds=0.1)
    assert set(np.asarray(next(stream)["x"]).reshape(-1)) <= {0.0, 1.0, 2.0}
    server.kill()
    server.start()
    with reverb.Client(f"localhost:{server.port}").trajectory_writer(1) as writer:
        writer.append({"x": np.float32(7)})
        writer.create_item("t", 1.0, {"x": writer.history["x"][-1]})
        writer.flush()
    # Items of the old server may still be buffered; within a few batches the new one shows.
    deadline = time.monotonic() + 60
    while True:
        batch = np.asarray(next(stream)["x"]).reshape(-1)
        if set(batch) == {7.0}:
            break
        assert time.monotonic() < deadline


def test_priority_updater_survives_a_restart(server):
    updater = priorities.PriorityUpdater(reverb.Client(f"localhost:{server.port}"), "t")
    server.kill()
    updater.update([1, 2], [0.5, 0.5])
    server.start()
    updater.flush()  # the lost call is dropped, not raised
    client = reverb.Client(f"localhost:{server.port}")
    with client.trajectory_writer(1) as writer:
        writer.append({"x": np.float32(1)})
        writer.create_item("t", 1.0, {"x": writer.history["x"][-1]})
    key = _sample(server.port, 1).info.key.reshape(-1)[0]
    updater.update([key], [3.0])
    updater.flush()
    assert _sample(server.port, 1).info.priority.reshape(-1)[0] == pytest.approx(3.0)
    updater.close()
