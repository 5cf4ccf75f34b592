"""Offline datasets: the in-memory `Dataset` and the file formats it reads from and writes to.

    load_dataset(path, format=None)        rlds | minari | hdf5 | npz, detected from the path
    save_dataset(dataset, path, format=None)  rlds | hdf5 | npz
    prepare_for_environment(dataset, environment, action_units=None, source=path)
        -> (dataset in antiphon's [-1, 1] action units, checked against the environment; info)
    describe_preparation(info)              that info as one line for the start line

Formats (one module each): `hdf5` (D4RL layout), `npz`, `rlds` (a TFDS dataset directory in the
RLDS episode format; needs tensorflow-datasets, imported only when used) and `minari` (reading a
local Minari dataset). Every loaded dataset has been through `validate`; every failure to read a
file is a `DatasetError` whose message is one line naming the path and the field. Files without
`next_observations` (hdf5, npz) get them derived by `core.derive_next_observations`; loaded
actions are as stored, in the units the metadata's `action_units` names (`prepare_for_environment`
maps them to antiphon's internal [-1, 1] box).
"""

from __future__ import annotations

import os

from antiphon.environments.datasets.core import (
    ACTION_UNITS,
    Dataset,
    DatasetError,
    check_matches_environment,
    concatenate,
    derive_next_observations,
    describe_preparation,
    prepare_for_environment,
    prepare_for_specs,
    validate,
)

__all__ = [
    "ACTION_UNITS",
    "FORMATS",
    "Dataset",
    "DatasetError",
    "check_matches_environment",
    "concatenate",
    "derive_next_observations",
    "describe_preparation",
    "detect_format",
    "load_dataset",
    "prepare_for_environment",
    "prepare_for_specs",
    "save_dataset",
    "validate",
]

FORMATS = ("rlds", "minari", "hdf5", "npz")
_WRITABLE = ("rlds", "hdf5", "npz")
_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


def detect_format(path: str) -> str:
    """The format of the dataset at `path` (see `load_dataset`); DatasetError when unknown."""
    from antiphon.environments.datasets.minari import find_minari_data_dir
    from antiphon.environments.datasets.rlds import find_tfds_builder_dir

    path = str(path)
    if not os.path.exists(path):
        raise DatasetError(f"{path}: no such file or directory")
    if find_minari_data_dir(path) is not None:
        return "minari"
    lower = path.lower()
    if os.path.isfile(path):
        if lower.endswith(_HDF5_SUFFIXES):
            return "hdf5"
        if lower.endswith(".npz"):
            return "npz"
        with open(path, "rb") as f:
            magic = f.read(8)
        if magic == b"\x89HDF\r\n\x1a\n":
            return "hdf5"
        if magic[:4] == b"PK\x03\x04":
            return "npz"
        raise DatasetError(
            f"{path}: unknown dataset format (expected .h5/.hdf5, .npz, an RLDS/TFDS directory or"
            " a Minari dataset)"
        )
    if find_tfds_builder_dir(path) is not None:
        return "rlds"
    raise DatasetError(
        f"{path}: field 'dataset_info.json' is missing: the directory is neither a TFDS/RLDS"
        " dataset nor a Minari dataset"
    )


def load_dataset(path: str, format: str | None = None) -> Dataset:
    """Reads and validates the dataset at `path`.

    `format` is detected when None: a Minari dataset (its directory, `data` directory or
    `main_data.hdf5`) -> minari; a directory holding a TFDS `dataset_info.json` (possibly in a
    `<name>/<config>/<version>` folder below) -> rlds; `.h5`/`.hdf5` -> hdf5; `.npz` -> npz.
    """
    path = str(path)
    format = format or detect_format(path)
    if format == "hdf5":
        from antiphon.environments.datasets.hdf5 import read_hdf5 as read
    elif format == "npz":
        from antiphon.environments.datasets.npz import read_npz as read
    elif format == "rlds":
        from antiphon.environments.datasets.rlds import read_rlds as read
    elif format == "minari":
        from antiphon.environments.datasets.minari import read_minari as read
    else:
        raise DatasetError(f"{path}: unknown dataset format {format!r} (one of {FORMATS})")
    return validate(read(path), source=path)


def save_dataset(dataset: Dataset, path: str, format: str | None = None) -> None:
    """Writes `dataset` to `path` as rlds (a directory), hdf5 or npz.

    `format` is taken from the suffix when None: `.h5`/`.hdf5` -> hdf5, `.npz` -> npz, no
    suffix -> rlds.
    """
    path = str(path)
    if format is None:
        lower = path.lower()
        if lower.endswith(_HDF5_SUFFIXES):
            format = "hdf5"
        elif lower.endswith(".npz"):
            format = "npz"
        elif not os.path.splitext(path.rstrip(os.sep))[1]:
            format = "rlds"
        else:
            raise DatasetError(
                f"{path}: cannot tell the format from the suffix; pass format= (one of {_WRITABLE})"
            )
    if format == "hdf5":
        from antiphon.environments.datasets.hdf5 import write_hdf5

        write_hdf5(dataset, path)
    elif format == "npz":
        from antiphon.environments.datasets.npz import write_npz

        write_npz(dataset, path)
    elif format == "rlds":
        from antiphon.environments.datasets.rlds import write_rlds

        write_rlds(dataset, path)
    else:
        raise DatasetError(f"{path}: cannot write format {format!r} (one of {_WRITABLE})")
