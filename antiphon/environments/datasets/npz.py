"""NumPy `.npz` files: one array per field plus the metadata as a JSON string.

Keys: `observations`, `actions`, `rewards`, `next_observations`, `terminals`, `timeouts` and
`metadata` (a 0-d unicode array holding the JSON of `Dataset.metadata`; optional on reading, so
the recorder's chunk files read too). Files are written compressed and read without pickles.

Reading also takes the arrays other tools save (d3rlpy's `MDPDataset` keys: `observations`,
`actions`, `rewards`, `terminals`, `timeouts`):

* `next_observations` may be absent: it is derived within episodes by
  `core.derive_next_observations`, the rule D4RL-layout HDF5 files follow too (an episode cut
  by a time limit loses its last transition; the metadata's `derived_next_observations` says how
  many were dropped);
* flags may be integer or float 0/1 (`core.validate` converts them; other values are refused).

Other keys are ignored, except that a file holding the recorder's `episode_lengths` and
`episode_actor_steps` arrays is antiphon's own (an `EpisodeRecorder` chunk): one written before
chunks carried metadata gets `action_units: "normalized"`.
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

METADATA_KEY = "metadata"
# The recorder's chunk files (recorder.EpisodeRecorder) hold these besides the six fields.
RECORDER_KEYS = ("episode_lengths", "episode_actor_steps")


def write_npz(dataset: Dataset, path: str) -> None:
    """Writes `dataset` to exactly `path` (no `.npz` appended), atomically."""
    path = str(path)
    dataset = validate(dataset, source=path)
    arrays: dict[str, Any] = dataset.arrays()
    arrays[METADATA_KEY] = np.array(metadata_to_json(dataset.metadata, source=path))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except OSError as error:
        raise DatasetError(f"{path}: cannot write the file ({first_line(error)})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_npz(path: str) -> Dataset:
    """Reads an `.npz` dataset (see the module docstring) and validates it."""
    with one_line_errors(path):
        return _read_npz(str(path))


def _read_npz(path: str) -> Dataset:
    path = str(path)
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: no such file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        raise DatasetError(f"{path}: not an .npz file (no zip archive signature)")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as error:  # not a zip, a pickle, truncated...
        raise DatasetError(f"{path}: not a readable .npz file ({first_line(error)})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DatasetError(f"{path}: holds a single array, not an .npz archive of named fields")
    with archive:
        recorder_chunk = all(key in archive.files for key in RECORDER_KEYS)
        arrays: dict[str, np.ndarray] = {}
        for name in [*FIELDS, METADATA_KEY]:
            if name not in archive.files:
                if name in (METADATA_KEY, "next_observations"):
                    continue
                raise DatasetError(f"{path}: field '{name}' is missing")
            try:
                arrays[name] = archive[name]
            except Exception as error:  # pickled object arrays, bad CRCs...
                raise DatasetError(
                    f"{path}: field '{name}' cannot be read ({first_line(error)})"
                ) from None
    metadata = {}
    if METADATA_KEY in arrays:
        metadata = metadata_from_json(arrays.pop(METADATA_KEY), source=path)
    if recorder_chunk:
        metadata.setdefault("action_units", "normalized")
    if "next_observations" not in arrays:
        return derive_next_observations(arrays, metadata, source=path)
    return validate(Dataset(**arrays, metadata=metadata), source=path)
