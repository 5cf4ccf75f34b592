"""Checkpoints of pytrees in a safe format: msgpack, never pickle.

A checkpoint stores the flattened leaves (arrays as dtype + shape + raw bytes, python scalars as
themselves), their key paths and the treedef's string form. Restoring unflattens with the
caller's template, so the checkpoint never decides which python classes get built; a leaf count,
key path, shape or dtype that differs from the template is a `CheckpointMismatchError`.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from typing import Any

import jax
import jax.numpy as jnp
import msgpack
import numpy as np

from antiphon.core.interfaces import Saveable

_FORMAT = "antiphon-pytree"
_FORMAT_VERSION = 1
_ARRAY_TAG = "__ndarray__"
_METADATA_FILE = "metadata.json"
_CKPT_RE = re.compile(r"^ckpt-(\d+)\.msgpack$")
_PY_SCALARS = (bool, int, float, str, bytes, type(None))


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit what the caller expects (structure, shape, dtype, metadata)."""


# Leaves.


def _is_array(x: Any) -> bool:
    return isinstance(x, np.ndarray | np.generic | jax.Array)


def _encode_leaf(leaf: Any, path: str) -> Any:
    if _is_array(leaf):
        array = np.asarray(jax.device_get(leaf))
        if array.dtype.hasobject:
            raise TypeError(f"leaf {path}: object arrays cannot be checkpointed safely")
        return {
            _ARRAY_TAG: True,
            "dtype": array.dtype.name,
            "shape": list(array.shape),
            "scalar": isinstance(leaf, np.generic),
            "data": np.ascontiguousarray(array).tobytes(),
        }
    if isinstance(leaf, _PY_SCALARS):
        return leaf
    raise TypeError(f"leaf {path}: cannot checkpoint a {type(leaf).__name__}")


def _decode_leaf(item: Any) -> Any:
    if isinstance(item, dict) and item.get(_ARRAY_TAG):
        dtype = jnp.dtype(item["dtype"])  # jnp.dtype also knows bfloat16 & co (ml_dtypes)
        array = np.frombuffer(item["data"], dtype=dtype).reshape(item["shape"]).copy()
        return array[()] if item.get("scalar") else array
    return item


def _describe(leaf: Any) -> str:
    if _is_array(leaf):
        return f"{np.dtype(leaf.dtype).name}{list(np.shape(leaf))}"
    return type(leaf).__name__


# Files.


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: str, data: bytes) -> None:
    """Writes `data` to `path` so that readers see the old file or the whole new one, never a
    part: tmp file in the same directory, fsync, rename. The tmp file goes away on failure."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)


def write_json(path: str | os.PathLike, value: Any) -> None:
    """Write `value` as JSON to `path` atomically (run_dir files: config, metadata, baselines)."""
    _atomic_write(os.fspath(path), json.dumps(value, sort_keys=True, indent=2).encode())


def save_pytree(path: str | os.PathLike, tree: Any) -> None:
    """Saves `tree` (arrays and python scalars in dicts, lists, tuples, NamedTuples, ...)."""
    path = os.fspath(path)
    leaves_with_paths, treedef = jax.tree_util.tree_flatten_with_path(tree)
    paths = [jax.tree_util.keystr(p) for p, _ in leaves_with_paths]
    payload = {
        "format": _FORMAT,
        "version": _FORMAT_VERSION,
        "treedef": str(treedef),
        "paths": paths,
        "leaves": [
            _encode_leaf(leaf, p) for p, (_, leaf) in zip(paths, leaves_with_paths, strict=True)
        ],
    }
    _atomic_write(path, msgpack.packb(payload, use_bin_type=True))


def _read(path: str) -> dict[str, Any]:
    with open(path, "rb") as f:
        data = f.read()
    try:
        payload = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as e:
        raise CheckpointMismatchError(f"{path}: not a readable checkpoint ({e})") from e
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise CheckpointMismatchError(f"{path}: not an antiphon checkpoint")
    return payload


def restore_pytree(path: str | os.PathLike, template: Any) -> Any:
    """Loads the checkpoint at `path` into the structure of `template`.

    Array leaves come back as numpy arrays (the caller device_puts them); python scalars as
    themselves (ints and floats cast to the template's type).
    """
    path = os.fspath(path)
    payload = _read(path)
    stored = payload["leaves"]
    stored_paths = payload.get("paths") or [f"[{i}]" for i in range(len(stored))]
    expected, treedef = jax.tree_util.tree_flatten_with_path(template)
    expected_paths = [jax.tree_util.keystr(p) for p, _ in expected]

    def fail(index: int, what: str) -> CheckpointMismatchError:
        where = expected_paths[index] if index < len(expected_paths) else stored_paths[index]
        return CheckpointMismatchError(f"{path}: leaf {index} ({where}): {what}")

    for i, (p_stored, p_expected) in enumerate(zip(stored_paths, expected_paths, strict=False)):
        if p_stored != p_expected:
            raise fail(i, f"checkpoint has key path {p_stored}, template has {p_expected}")
    if len(stored) != len(expected):
        i = min(len(stored), len(expected))
        side = "checkpoint" if len(stored) > len(expected) else "template"
        raise fail(
            i,
            f"checkpoint has {len(stored)} leaves, template has {len(expected)} "
            f"(this leaf is only in the {side})",
        )

    leaves = []
    for i, (item, (_, want)) in enumerate(zip(stored, expected, strict=True)):
        got = _decode_leaf(item)
        if _is_array(want):
            if not _is_array(got):
                raise fail(i, f"checkpoint has {_describe(got)}, template has {_describe(want)}")
            if np.shape(got) != np.shape(want):
                raise fail(
                    i,
                    f"shape {list(np.shape(got))} in checkpoint, "
                    f"{list(np.shape(want))} in template",
                )
            if np.dtype(got.dtype) != np.dtype(want.dtype):
                raise fail(
                    i,
                    f"dtype {np.dtype(got.dtype).name} in checkpoint, "
                    f"{np.dtype(want.dtype).name} in template",
                )
        elif _is_array(got):
            raise fail(i, f"checkpoint has {_describe(got)}, template has {_describe(want)}")
        elif isinstance(want, int | float) and not isinstance(want, bool):
            if not isinstance(got, int | float) or isinstance(got, bool):
                raise fail(i, f"checkpoint has {_describe(got)}, template has {_describe(want)}")
            got = type(want)(got)
        elif type(got) is not type(want):
            raise fail(i, f"checkpoint has {_describe(got)}, template has {_describe(want)}")
        leaves.append(got)
    return jax.tree_util.tree_unflatten(treedef, leaves)


# Checkpointer.


class NonFiniteCheckpointError(ValueError):
    """A state with a NaN or inf in a floating-point leaf; it is never written."""


def _non_finite_path(tree: Any) -> str | None:
    """The key path of the first floating-point leaf holding a NaN or inf, else None."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if _is_array(leaf) or isinstance(leaf, float):
            array = np.asarray(jax.device_get(leaf))
            if np.issubdtype(array.dtype, np.inexact) and not np.all(np.isfinite(array)):
                return jax.tree_util.keystr(path)
    return None


def read_metadata(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The metadata stored beside the checkpoints in `directory`, or None if there is none."""
    path = os.path.join(os.fspath(directory), _METADATA_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


class Checkpointer:
    """Periodic checkpoints of a `Saveable` as `<directory>/ckpt-<n>.msgpack`, newest `keep` kept.

    `metadata` (JSON-able, e.g. {"agent": "d4pg"}) is written to `<directory>/metadata.json`;
    `restore()` refuses a directory whose metadata differs, so a run never silently loads another
    agent's (or another config's) checkpoint.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        saveable: Saveable,
        time_delta_seconds: float = 600.0,
        keep: int = 3,
        metadata: dict[str, Any] | None = None,
    ):
        self._directory = os.fspath(directory)
        self._saveable = saveable
        self._time_delta = time_delta_seconds
        self._keep = keep
        # Normalised through JSON so that e.g. tuples compare equal to the lists read back.
        self._metadata = None if metadata is None else json.loads(json.dumps(metadata))
        # The first unforced save comes time_delta after construction, not at once: a state
        # nobody trained yet is not worth a checkpoint.
        self._last_save = time.monotonic()
        self._lock = threading.Lock()

    @property
    def directory(self) -> str:
        return self._directory

    def _checkpoints(self) -> list[tuple[int, str]]:
        """(n, path) of the complete checkpoints, oldest first."""
        try:
            names = os.listdir(self._directory)
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            match = _CKPT_RE.match(name)
            if match:
                found.append((int(match.group(1)), os.path.join(self._directory, name)))
        return sorted(found)

    def latest_path(self) -> str | None:
        checkpoints = self._checkpoints()
        return checkpoints[-1][1] if checkpoints else None

    def save(self, force: bool = False) -> str | None:
        """Saves if forced or `time_delta_seconds` passed since the last save; returns the path."""
        with self._lock:
            if not force and time.monotonic() - self._last_save < self._time_delta:
                return None
            os.makedirs(self._directory, exist_ok=True)
            if self._metadata is not None:
                write_json(os.path.join(self._directory, _METADATA_FILE), self._metadata)
            tree = self._saveable.save()
            bad = _non_finite_path(tree)
            if bad is not None:
                # The last line of defence (learners only save verified-finite states): a
                # checkpoint never holds a NaN or inf, so resuming always starts from a sane state.
                raise NonFiniteCheckpointError(
                    f"{self._directory}: refusing to checkpoint a non-finite value at leaf {bad}"
                )
            checkpoints = self._checkpoints()
            n = checkpoints[-1][0] + 1 if checkpoints else 0
            path = os.path.join(self._directory, f"ckpt-{n}.msgpack")
            save_pytree(path, tree)
            self._last_save = time.monotonic()
            if self._keep and self._keep > 0:
                for _, old in self._checkpoints()[: -self._keep]:
                    try:
                        os.remove(old)
                    except FileNotFoundError:
                        pass
            return path

    def restore(self) -> bool:
        """Restores the newest checkpoint into the saveable; False if there is none."""
        with self._lock:
            path = self.latest_path()
            if path is None:
                return False
            if self._metadata is not None:
                stored = read_metadata(self._directory)
                if stored is not None and stored != self._metadata:
                    raise CheckpointMismatchError(
                        f"{self._directory} holds checkpoints of {json.dumps(stored)}, "
                        f"not {json.dumps(self._metadata)}"
                    )
            self._saveable.restore(restore_pytree(path, self._saveable.save()))
            return True
