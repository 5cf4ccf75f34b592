"""Checkpoints: round trip, mismatches, atomicity, rotation, metadata."""

import os
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import pytest

from antiphon.core import checkpointing
from antiphon.core.checkpointing import (
    Checkpointer,
    CheckpointMismatchError,
    read_metadata,
    restore_pytree,
    save_pytree,
)


class AdamLikeState(NamedTuple):  # the shape of optax.ScaleByAdamState
    count: jnp.ndarray
    mu: dict
    nu: dict


def _tree(scale=1.0):
    params = {"linear": {"w": np.full((3, 2), scale, np.float32), "b": jnp.zeros(2)}}
    return {
        "params": params,
        "opt": (AdamLikeState(jnp.int32(4), params, params), ()),
        "steps": 12,
        "lr": 3e-4,
        "name": "d4pg",
        "flag": True,
        "bf16": jnp.ones((2,), jnp.bfloat16),
        "np_scalar": np.float64(2.5),
    }


def _assert_same(a, b):
    import jax

    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        if hasattr(x, "dtype"):
            assert np.dtype(x.dtype) == np.dtype(y.dtype)
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        else:
            assert type(x) is type(y) and x == y


def test_round_trip_nested_tree(tmp_path):
    path = tmp_path / "t.msgpack"
    tree = _tree(2.0)
    save_pytree(path, tree)
    restored = restore_pytree(path, _tree(0.0))
    _assert_same(restored, tree)
    assert isinstance(restored["opt"][0], AdamLikeState)
    assert isinstance(restored["params"]["linear"]["b"], np.ndarray)  # numpy, caller device_puts


def test_format_is_not_pickle(tmp_path):
    path = tmp_path / "t.msgpack"
    save_pytree(path, _tree())
    assert b"pickle" not in path.read_bytes() and path.read_bytes()[:1] != b"\x80"


def test_shape_mismatch_names_the_leaf(tmp_path):
    path = tmp_path / "t.msgpack"
    save_pytree(path, {"a": np.zeros(2), "b": np.zeros((3, 2), np.float32)})
    with pytest.raises(CheckpointMismatchError, match=r"leaf 1 \(\['b'\]\).*shape \[3, 2\]"):
        restore_pytree(path, {"a": np.zeros(2), "b": np.zeros((3, 3), np.float32)})


def test_dtype_mismatch(tmp_path):
    path = tmp_path / "t.msgpack"
    save_pytree(path, {"a": np.zeros(2, np.float32)})
    with pytest.raises(CheckpointMismatchError, match="dtype float32.*float64"):
        restore_pytree(path, {"a": np.zeros(2, np.float64)})


def test_count_mismatch(tmp_path):
    path = tmp_path / "t.msgpack"
    save_pytree(path, [np.zeros(1), np.zeros(1)])
    with pytest.raises(CheckpointMismatchError, match="2 leaves, template has 3"):
        restore_pytree(path, [np.zeros(1), np.zeros(1), np.zeros(1)])
    with pytest.raises(CheckpointMismatchError, match="key path"):
        restore_pytree(path, {"a": np.zeros(1), "b": np.zeros(1)})
    assert issubclass(CheckpointMismatchError, ValueError)


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "t.msgpack"
    save_pytree(path, {"a": np.zeros(2)})
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(checkpointing.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        save_pytree(path, {"a": np.ones(2)})
    assert os.listdir(tmp_path) == ["t.msgpack"]
    assert path.read_bytes() == before
    with pytest.raises(TypeError):
        save_pytree(tmp_path / "obj.msgpack", {"a": np.array([object()])})
    assert os.listdir(tmp_path) == ["t.msgpack"]


class Holder:
    def __init__(self, value):
        self.state = {"w": np.full(3, value, np.float32), "step": int(value)}

    def save(self):
        return self.state

    def restore(self, state):
        self.state = state


def test_checkpointer_keeps_newest_and_restores(tmp_path):
    holder = Holder(0)
    ckpt = Checkpointer(tmp_path, holder, time_delta_seconds=3600, keep=2)
    assert ckpt.restore() is False and ckpt.latest_path() is None
    assert ckpt.save() is None  # time_delta not elapsed
    for i in range(5):
        holder.state = {"w": np.full(3, i, np.float32), "step": i}
        assert ckpt.save(force=True).endswith(f"ckpt-{i}.msgpack")
    assert sorted(os.listdir(tmp_path)) == ["ckpt-3.msgpack", "ckpt-4.msgpack"]

    fresh = Holder(0)
    resumed = Checkpointer(tmp_path, fresh, keep=2)
    assert resumed.restore() is True
    assert fresh.state["step"] == 4 and fresh.state["w"][0] == 4
    # Numbering continues after a restart.
    assert resumed.save(force=True).endswith("ckpt-5.msgpack")


def test_checkpointer_time_delta(tmp_path):
    ckpt = Checkpointer(tmp_path, Holder(1), time_delta_seconds=0.0)
    assert ckpt.save() is not None


def test_metadata_mismatch(tmp_path):
    assert read_metadata(tmp_path) is None
    Checkpointer(tmp_path, Holder(1), metadata={"agent": "d4pg", "dims": (1, 2)}).save(force=True)
    assert read_metadata(tmp_path) == {"agent": "d4pg", "dims": [1, 2]}
    assert Checkpointer(tmp_path, Holder(0), metadata={"agent": "d4pg", "dims": (1, 2)}).restore()
    with pytest.raises(CheckpointMismatchError, match="mpo"):
        Checkpointer(tmp_path, Holder(0), metadata={"agent": "mpo"}).restore()


def test_counter_state_restores_into_fresh_counter(tmp_path):
    from antiphon.core.counting import Counter

    counter = Counter()
    counter.increment(actor_steps=10, learner_steps=3)
    Checkpointer(tmp_path, counter).save(force=True)
    fresh = Counter()
    assert Checkpointer(tmp_path, fresh).restore()
    assert fresh.get_counts() == {"actor_steps": 10, "learner_steps": 3}
