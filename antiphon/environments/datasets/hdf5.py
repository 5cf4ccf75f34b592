"""D4RL-layout HDF5 files.

Layout (the one D4RL's `get_dataset()` reads, so D4RL's own files load too):

    /observations       [N, obs_dim] float32
    /actions            [N, act_dim] float32
    /rewards            [N] float32
    /next_observations  [N, obs_dim] float32
    /terminals          [N] bool
    /timeouts           [N] bool
    attrs["metadata"]   the `Dataset.metadata` dict as a JSON string

Other top-level members (D4RL's `infos/...` and `metadata/...` groups) are ignored on reading.

Files without `next_observations` (D4RL's older files) are read by deriving it within episodes
with `core.derive_next_observations` (the rule npz files follow too):
`next_observations[i] = observations[i + 1]` inside an episode; an episode ending in a true
terminal keeps its last transition (a placeholder next observation, never read: the discount
after it is 0); the last transition of an episode cut by a time limit has no successor and is
dropped (the one before becomes the timeout). The metadata records it under
`derived_next_observations`, with `dropped_timeout_transitions`, so nothing is dropped silently.

Flags stored as integer or float 0/1 (converted D4RL files often hold 0.0/1.0) are read as bools
by `core.validate`; any other value is refused naming its row.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from antiphon.environments.datasets.core import (
    FIELDS,
    Dataset,
    DatasetError,
    derive_next_observations,
    first_line,
    metadata_from_json,
    metadata_to_json,
    one_line_errors,
    validate,
)

METADATA_ATTR = "metadata"


def write_hdf5(dataset: Dataset, path: str, compression: str | None = "gzip") -> None:
    """Writes `dataset` to `path` (atomically: a temporary file renamed into place)."""
    import h5py

    dataset = validate(dataset, source=str(path))
    metadata = metadata_to_json(dataset.metadata, source=str(path))
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with h5py.File(tmp, "w") as f:
            for name in FIELDS:
                value = getattr(dataset, name)
                f.create_dataset(
                    name,
                    data=value,
                    compression=compression if value.size else None,
                )
            f.attrs[METADATA_ATTR] = metadata
        os.replace(tmp, path)
    except OSError as error:
        raise DatasetError(f"{path}: cannot write the file ({first_line(error)})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _read_member(f: Any, name: str, path: str) -> np.ndarray:
    import h5py

    member = f[name]
    if not isinstance(member, h5py.Dataset):
        raise DatasetError(
            f"{path}: field '{name}' is an HDF5 {type(member).__name__}, not an array"
        )
    try:
        return member[()]
    except Exception as error:  # any h5py/filter failure becomes one line
        raise DatasetError(f"{path}: field '{name}' cannot be read ({first_line(error)})") from None


def read_hdf5(path: str) -> Dataset:
    """Reads a D4RL-layout HDF5 file (see the module docstring) and validates it."""
    with one_line_errors(path):
        return _read_hdf5(str(path))


def _read_hdf5(path: str) -> Dataset:
    import h5py

    path = str(path)
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        raise DatasetError(f"{path}: not a readable HDF5 file ({first_line(error)})") from None
    with f:
        arrays: dict[str, np.ndarray] = {}
        for name in FIELDS:
            if name not in f:
                if name == "next_observations":
                    continue
                raise DatasetError(f"{path}: field '{name}' is missing")
            arrays[name] = _read_member(f, name, path)
        metadata: dict[str, Any] = {}
        if METADATA_ATTR in f.attrs:
            metadata = metadata_from_json(f.attrs[METADATA_ATTR], source=path)
    if "next_observations" not in arrays:
        return derive_next_observations(arrays, metadata, source=path)
    return validate(Dataset(**arrays, metadata=metadata), source=path)
