"""Table recipes: rate limiting and checkpoint round trips."""

from __future__ import annotations

import numpy as np
import pytest
import reverb
import tensorflow as tf

from antiphon.replay import tables

SIGNATURE = {"x": tf.TensorSpec((), tf.float32)}


def write(client: reverb.Client, table: str, values, timeout_ms: int | None = None) -> None:
    with client.trajectory_writer(num_keep_alive_refs=1) as writer:
        for v in values:
            writer.append({"x": np.float32(v)})
            writer.create_item(table, 1.0, {"x": writer.history["x"][-1]})
            writer.flush(timeout_ms=timeout_ms)


def test_rate_limiter_recipe():
    assert isinstance(tables.rate_limiter(None, 5), reverb.rate_limiters.MinSize)
    limiter = tables.rate_limiter(4.0, 1000, tolerance_rate=0.1)
    # error_buffer = 1000 * 0.1 * 4 = 400 around the offset 1000 * 4.
    assert (limiter._min_diff, limiter._max_diff) == (3600.0, 4400.0)
    small = tables.rate_limiter(4.0, 1)  # floor: 2 * max(1, spi) = 8
    assert (small._min_diff, small._max_diff) == (-4.0, 12.0)
    fractional = tables.rate_limiter(0.5, 2)  # floor: 2 * max(1, 0.5) = 2
    assert (fractional._min_diff, fractional._max_diff) == (-1.0, 3.0)


@pytest.mark.parametrize(
    "spi, min_size, match",
    [
        (0.0, 10, "samples_per_insert"),
        (-1.0, 10, "samples_per_insert"),
        (1.0, 0, "min_replay_size"),
        (None, 0, "min_replay_size"),
    ],
)
def test_rate_limiter_rejects_bad_values(spi, min_size, match):
    with pytest.raises(ValueError, match=match):
        tables.rate_limiter(spi, min_size)


def test_rate_limiter_blocks_samples_and_inserts():
    table = tables.uniform_table("u", 100, SIGNATURE, samples_per_insert=1.0, min_replay_size=2)
    server = tables.start_server([table])
    try:
        client = reverb.Client(f"localhost:{server.port}")
        address = f"localhost:{server.port}"

        def try_sample() -> list:
            ds = reverb.TrajectoryDataset.from_table_signature(
                address, "u", max_in_flight_samples_per_worker=1, rate_limiter_timeout_ms=50
            )
            return list(ds.take(1).as_numpy_iterator())

        write(client, "u", [0.0])
        assert try_sample() == []  # below min_replay_size: sampling times out
        # spi=1, min size 2, error buffer 2: inserts are allowed while
        # inserts * spi - samples <= 2 * 1 + 2 = 4, so the 5th insert blocks without samples.
        write(client, "u", [1.0, 2.0, 3.0])
        # Exactly one sample (a dataset would prefetch more than it hands out).
        assert len(list(client.sample("u", 1, emit_timesteps=False))) == 1
        write(client, "u", [4.0])  # 5 inserts, 1 sample: error 4, still allowed
        with pytest.raises(reverb.errors.DeadlineExceededError):
            write(client, "u", [5.0], timeout_ms=200)
    finally:
        server.stop()


def test_prioritized_and_queue_tables():
    p = tables.prioritized_table(
        "p", 10, SIGNATURE, 0.6, samples_per_insert=None, min_replay_size=1
    )
    q = tables.queue_table("q", 3, SIGNATURE)
    server = tables.start_server([p, q])
    try:
        client = reverb.Client(f"localhost:{server.port}")
        write(client, "p", [1.0])
        write(client, "q", [1.0, 2.0, 3.0])
        info = client.server_info()
        assert info["p"].current_size == 1 and info["q"].current_size == 3
        assert info["q"].max_size == 3
        values = [
            float(s.data["x"])
            for s in client.sample("q", 3, emit_timesteps=False, unpack_as_table_signature=True)
        ]
        assert values == [1.0, 2.0, 3.0]  # FIFO, each once
    finally:
        server.stop()


def test_checkpoint_round_trip(tmp_path):
    def make_tables():
        return [
            tables.uniform_table("u", 100, SIGNATURE, None, 1),
            tables.queue_table("q", 10, SIGNATURE),
        ]

    server = tables.start_server(make_tables(), checkpoint_dir=str(tmp_path))
    client = reverb.Client(f"localhost:{server.port}")
    write(client, "u", [1.0, 2.0, 3.0])
    write(client, "q", [7.0])
    path = tables.checkpoint(client)
    assert path.startswith(str(tmp_path))
    server.stop()

    server = tables.start_server(make_tables(), checkpoint_dir=str(tmp_path))
    try:
        client = reverb.Client(f"localhost:{server.port}")
        info = client.server_info()
        assert info["u"].current_size == 3 and info["q"].current_size == 1
        (sample,) = client.sample("q", 1, emit_timesteps=False, unpack_as_table_signature=True)
        assert float(sample.data["x"]) == 7.0
        assert tables.checkpoint(f"localhost:{server.port}").startswith(str(tmp_path))
    finally:
        server.stop()
