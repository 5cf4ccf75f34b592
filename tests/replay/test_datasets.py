"""Datasets from Reverb tables and the device prefetcher."""

from __future__ import annotations

import threading
import time

import jax
import numpy as np
import pytest
import reverb
import tensorflow as tf

from antiphon.core.types import Transition
from antiphon.replay import adders as adders_lib
from antiphon.replay import datasets, tables
from tests.replay import ENV_SPEC, episode, feed


@pytest.fixture(scope="module")
def server():
    sig = adders_lib.NStepTransitionAdder.signature(ENV_SPEC)
    server = tables.start_server(
        [
            tables.uniform_table("a", 100, sig, samples_per_insert=None, min_replay_size=1),
            tables.uniform_table("b", 100, sig, samples_per_insert=None, min_replay_size=1),
        ]
    )
    client = reverb.Client(f"localhost:{server.port}")
    for table, episode_id in [("a", 0), ("b", 1)]:
        adder = adders_lib.NStepTransitionAdder(client, 2, 0.9, priority_fns=table)
        feed(adder, episode([1, 2, 3, 4], episode_id=episode_id))
    yield server
    server.stop()


def test_reverb_dataset_shapes_and_dtypes(server):
    address = f"localhost:{server.port}"
    ds = datasets.make_reverb_dataset(address, "a", batch_size=4, num_batches_per_call=3)
    sample = next(ds.as_numpy_iterator())
    assert isinstance(sample, reverb.ReplaySample)
    data = Transition(*sample.data)
    assert data.observation.shape == (3, 4, 2) and data.observation.dtype == np.float32
    assert data.action.shape == (3, 4, 1) and data.action.dtype == np.float32
    assert data.reward.shape == (3, 4) and data.reward.dtype == np.float32
    assert data.discount.shape == (3, 4) and data.discount.dtype == np.float32
    assert data.next_observation.shape == (3, 4, 2)
    assert sample.info.key.shape == (3, 4) and sample.info.key.dtype == np.uint64

    flat = datasets.make_reverb_dataset(address, "a", batch_size=5, num_parallel_calls=2)
    assert next(flat.as_numpy_iterator()).data.reward.shape == (5,)


def test_mixed_dataset_follows_weights(server):
    address = f"localhost:{server.port}"
    only_b = datasets.make_mixed_dataset(address, [("a", 0.0), ("b", 1.0)], batch_size=8)
    batch = next(only_b.as_numpy_iterator())
    assert np.all(batch.data.observation[:, 1] == 100)  # episode 1 was written to table b

    mixed = datasets.make_mixed_dataset(address, [("a", 1.0), ("b", 3.0)], batch_size=100, seed=0)
    batch = next(mixed.as_numpy_iterator())
    frac_b = np.mean(batch.data.observation[:, 1] == 100)
    assert 0.55 < frac_b < 0.95
    with pytest.raises(ValueError, match="weights"):
        datasets.make_mixed_dataset(address, [("a", -1.0)], batch_size=8)


def test_prefetcher_moves_reverb_batches_to_device(server):
    ds = datasets.make_reverb_dataset(f"localhost:{server.port}", "a", batch_size=4)
    with datasets.DevicePrefetcher(ds, size=2) as it:
        first, second = next(it), next(it)
        assert isinstance(first.data.observation, jax.Array)
        assert first.data.observation.shape == (4, 2)
        # Keys stay host-side uint64 (JAX would truncate them to 32 bits).
        assert isinstance(second.info.key, np.ndarray) and second.info.key.dtype == np.uint64
        assert it.num_items == 2 and it.wait_seconds >= 0.0
        assert 0.0 <= it.wait_fraction() <= 1.0


def test_prefetcher_yields_device_arrays_and_stops():
    items = [{"x": np.full((2,), i, np.float32)} for i in range(5)]
    it = datasets.DevicePrefetcher(items, size=2)
    out = list(it)
    assert [float(o["x"][0]) for o in out] == [0, 1, 2, 3, 4]
    assert all(isinstance(o["x"], jax.Array) for o in out)
    assert it.num_items == 5
    with pytest.raises(StopIteration):
        next(it)
    it.close()


def test_prefetcher_reraises_producer_errors():
    def gen():
        yield np.zeros(1)
        raise RuntimeError("boom in producer")

    it = datasets.DevicePrefetcher(gen())
    next(it)
    with pytest.raises(RuntimeError, match="boom in producer"):
        next(it)
    with pytest.raises(StopIteration):
        next(it)
    it.close()


def test_prefetcher_close_stops_infinite_producer():
    produced = []

    def gen():
        i = 0
        while True:
            produced.append(i)
            yield np.float32(i)
            i += 1

    # Relative to the threads already alive: earlier tests in the same process (in-process
    # `antiphon train` runs) leave library thread pools behind.
    threads_before = threading.active_count()
    it = datasets.DevicePrefetcher(gen(), size=2)
    assert float(next(it)) == 0.0
    time.sleep(0.05)
    it.close()
    assert not it._thread.is_alive()
    assert len(produced) <= 5  # bounded by the queue size, not run ahead
    assert threading.active_count() <= threads_before  # its producer thread is gone


def test_prefetcher_wraps_tf_datasets():
    ds = tf.data.Dataset.range(3).map(lambda i: {"i": i})
    assert [int(x["i"]) for x in datasets.DevicePrefetcher(ds)] == [0, 1, 2]
