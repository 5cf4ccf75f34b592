"""Asynchronous priority updates."""

from __future__ import annotations

import numpy as np
import pytest
import reverb
import tensorflow as tf

from antiphon.replay import tables
from antiphon.replay.priorities import PriorityUpdater

SIGNATURE = {"x": tf.TensorSpec((), tf.float32)}


@pytest.fixture
def client():
    table = tables.prioritized_table("p", 10, SIGNATURE, 1.0, None, 1)
    server = tables.start_server([table])
    client = reverb.Client(f"localhost:{server.port}")
    with client.trajectory_writer(num_keep_alive_refs=1) as writer:
        for v in (0.0, 1.0):
            writer.append({"x": np.float32(v)})
            writer.create_item("p", 1.0, {"x": writer.history["x"][-1]})
    yield client
    server.stop()


def sample(client, n):
    return list(client.sample("p", n, emit_timesteps=False, unpack_as_table_signature=True))


def test_updates_reach_the_table(client):
    keys = {}
    while len(keys) < 2:
        for s in sample(client, 10):
            keys[float(s.data["x"])] = s.info.key
    updater = PriorityUpdater(client, "p")
    updater.update(np.array([keys[0.0], keys[1.0]], np.uint64), np.array([0.0, 3.0], np.float32))
    updater.flush()
    samples = sample(client, 20)
    assert all(float(s.data["x"]) == 1.0 for s in samples)  # priority 0: never sampled
    assert all(s.info.priority == 3.0 and s.info.probability == 1.0 for s in samples)

    # Later updates win; several queued updates are applied in order.
    updater.update([keys[0.0]], [1.0])
    updater.update([keys[1.0]], [1.0])
    updater.update([keys[0.0]], [2.0])
    updater.close()
    priorities = {float(s.data["x"]): s.info.priority for s in sample(client, 40)}
    assert priorities == {0.0: 2.0, 1.0: 1.0}


def test_errors_are_reraised(client):
    updater = PriorityUpdater(client, "no_such_table")
    updater.update([1], [1.0])
    with pytest.raises(Exception, match="no_such_table"):
        updater.flush()
    updater.close()  # the error was reported once; closing is clean
    with pytest.raises(RuntimeError, match="closed"):
        updater.update([1], [1.0])
    with PriorityUpdater(client, "p") as other, pytest.raises(ValueError, match="keys"):
        other.update([1, 2], [1.0])
