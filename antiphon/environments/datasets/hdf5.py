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

Files without `next_observations` (D4RL's older files) are read by deriving it within episodes:
`next_observations[i] = observations[i + 1]` for every transition that does not end an episode.
The last transition of an episode has no following row to take it from:

* an episode that ends in a true terminal keeps that transition, with `next_observations[i]` set
  to `observations[i]` (a placeholder: the discount after a terminal is 0, so TD targets never
  read it);
* an episode that ends in a timeout loses that transition (bootstrapping from it needs the real
  next observation), and the transition before it becomes the timeout. A one-transition timeout
  episode disappears.

This is D4RL's own `qlearning_dataset` convention, minus its bug of reading across terminals.
The metadata records it under `derived_next_observations` with the number of dropped
transitions, so nothing is dropped silently.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from antiphon.environments.datasets.core import (
    BOOL_FIELDS,
    FIELDS,
    Dataset,
    DatasetError,
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


def _read_flags(value: np.ndarray) -> np.ndarray:
    # Converted D4RL files sometimes store terminals/timeouts as 0.0/1.0 floats: read those as
    # bools (lossless); anything else is left for `validate` to refuse.
    if value.dtype.kind == "f" and value.ndim == 1 and np.isin(value, (0.0, 1.0)).all():
        return value.astype(bool)
    return value


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
            value = _read_member(f, name, path)
            arrays[name] = _read_flags(value) if name in BOOL_FIELDS else value
        metadata: dict[str, Any] = {}
        if METADATA_ATTR in f.attrs:
            metadata = metadata_from_json(f.attrs[METADATA_ATTR], source=path)
    if "next_observations" not in arrays:
        # Validate what is there first, so derivation works on well-formed arrays.
        placeholder = dict(arrays, next_observations=arrays["observations"])
        checked = validate(Dataset(**placeholder, metadata=metadata), source=path)
        return validate(_derive_next_observations(checked, path), source=path)
    return validate(Dataset(**arrays, metadata=metadata), source=path)


def _derive_next_observations(dataset: Dataset, source: str) -> Dataset:
    """Fills `next_observations` from the following row (see the module docstring)."""
    observations = dataset.observations
    n = len(dataset)
    ends = dataset.terminals | dataset.timeouts
    next_observations = np.empty_like(observations)
    next_observations[:-1] = observations[1:]
    next_observations[ends] = observations[ends]  # terminal placeholders; timeouts dropped below
    keep = ~dataset.timeouts
    timeouts = np.zeros(n, bool)
    # The transition before a dropped timeout becomes the timeout, unless it ends an episode
    # itself (then the timeout episode had a single transition and vanishes whole).
    before = np.flatnonzero(dataset.timeouts) - 1
    before = before[(before >= 0) & ~ends[np.maximum(before, 0)]]
    timeouts[before] = True
    metadata = dict(dataset.metadata)
    metadata["derived_next_observations"] = {
        "from": "observations of the following row, within episodes",
        "terminal_next_observations": "placeholder: the terminal row's own observation",
        "dropped_timeout_transitions": int(dataset.timeouts.sum()),
    }
    if not keep.any():
        raise DatasetError(
            f"{source}: field 'next_observations' is missing and every transition ends a timeout"
            " episode: nothing is left after deriving it"
        )
    return Dataset(
        observations=observations[keep],
        actions=dataset.actions[keep],
        rewards=dataset.rewards[keep],
        next_observations=next_observations[keep],
        terminals=dataset.terminals[keep],
        timeouts=timeouts[keep],
        metadata=metadata,
    )
