"""Reading Minari datasets (the Farama Foundation's offline-RL format) from a local directory.

Minari itself is not needed (nor imported). The on-disk layout, as written by minari 0.5.x's
`HDF5Storage` / `MinariStorage` (checked against the minari 0.5.4 sources):

    <dataset_dir>/data/metadata.json      JSON: total_episodes, total_steps, data_format ("hdf5"
                                          or "arrow"), observation_space, action_space, env_spec,
                                          dataset_id, algorithm_name, minari_version, ...
    <dataset_dir>/data/main_data.hdf5     one group per episode, `episode_<i>`, i = 0, 1, ...:
        episode_<i>/observations          [T + 1, ...] (the reset observation, then one per step);
                                          a group of such arrays for Dict/Tuple spaces (`_index_<k>`
                                          members for Tuple)
        episode_<i>/actions               [T, ...] (a group for Dict/Tuple spaces)
        episode_<i>/rewards               [T]
        episode_<i>/terminations          [T] bool
        episode_<i>/truncations           [T] bool
        episode_<i>/infos                 optional group (ignored here)
        episode_<i>.attrs                 id, seed, total_steps, options/... (ignored here)

Only the `hdf5` data format is read; `arrow` datasets are refused with a one-line error.
Episodes are read in index order. The step that ends an episode is a true terminal when its
`terminations` flag is set (also when `truncations` is set too: gymnasium allows both), else a
timeout. Dict (and Tuple) observations/actions are flattened by `core.flatten_structure`: the
leaves, each reshaped to one row per step, concatenated in sorted key order (the order of
gymnasium's `FlattenObservation`); the metadata lists the columns under `observation_keys` /
`action_keys`. Image (JPEG-encoded) and text spaces are refused.

Minari stores every observation of an episode (T + 1 of them), so next observations never need
deriving. Actions are stored as the environment took them (its own units); the metadata says
`action_units: "native"`, so `core.prepare_for_environment` maps them to antiphon's [-1, 1].
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import numpy as np

from antiphon.environments.datasets.core import (
    Dataset,
    DatasetError,
    first_line,
    flags_to_bool,
    flatten_structure,
    one_line_errors,
    validate,
)

MAIN_FILE = "main_data.hdf5"
METADATA_FILE = "metadata.json"
_EPISODE = re.compile(r"^episode_(\d+)$")


def find_minari_data_dir(path: str) -> str | None:
    """The `data` directory of a Minari dataset at `path` (the dataset directory, its `data`
    directory or the `main_data.hdf5` file), or None when `path` does not look like one."""
    path = str(path)
    if os.path.isfile(path):
        return (
            os.path.dirname(os.path.abspath(path)) if os.path.basename(path) == MAIN_FILE else None
        )
    for candidate in (os.path.join(path, "data"), path):
        if os.path.isfile(os.path.join(candidate, "dataset_info.json")):
            continue  # a TFDS dataset directory (it has a metadata.json of its own)
        if os.path.isfile(os.path.join(candidate, MAIN_FILE)):
            return candidate
        metadata = os.path.join(candidate, METADATA_FILE)
        if os.path.isfile(metadata):
            try:
                with open(metadata) as f:
                    if "data_format" in json.load(f):
                        return candidate
            except (OSError, ValueError):
                continue
    return None


def _read_node(node: Any, name: str, source: str) -> Any:
    import h5py

    if isinstance(node, h5py.Group):
        return {key: _read_node(node[key], f"{name}/{key}", source) for key in node.keys()}
    if not isinstance(node, h5py.Dataset):
        raise DatasetError(f"{source}: field '{name}' is an HDF5 {type(node).__name__}")
    try:
        return node[()]
    except Exception as error:  # any h5py/filter failure becomes one line
        raise DatasetError(
            f"{source}: field '{name}' cannot be read ({first_line(error)})"
        ) from None


def _flags(value: Any, name: str, steps: int, source: str) -> np.ndarray:
    value = np.asarray(value)
    if value.shape != (steps,):
        raise DatasetError(
            f"{source}: field '{name}' has shape {value.shape}, expected ({steps},) like 'rewards'"
            " (ragged fields)"
        )
    return flags_to_bool(value, source, name)  # bool, or integer/float 0/1


def read_minari(path: str) -> Dataset:
    """Reads a local Minari dataset (see the module docstring) and validates it."""
    with one_line_errors(path):
        return _read_minari(str(path))


def _read_minari(path: str) -> Dataset:
    import h5py

    path = str(path)
    if not os.path.exists(path):
        raise DatasetError(f"{path}: no such file or directory")
    data_dir = find_minari_data_dir(path)
    if data_dir is None:
        raise DatasetError(f"{path}: not a Minari dataset (no data/{MAIN_FILE} or {METADATA_FILE})")
    info: dict[str, Any] = {}
    metadata_path = os.path.join(data_dir, METADATA_FILE)
    if os.path.isfile(metadata_path):
        try:
            with open(metadata_path) as f:
                info = json.load(f)
        except (OSError, ValueError) as error:
            raise DatasetError(
                f"{metadata_path}: field 'metadata.json' is not valid JSON ({first_line(error)})"
            ) from None
        if not isinstance(info, dict):
            raise DatasetError(f"{metadata_path}: field 'metadata.json' is not a JSON object")
    data_format = info.get("data_format", "hdf5")
    if data_format != "hdf5":
        raise DatasetError(
            f"{metadata_path}: field 'data_format' is {data_format!r}; only Minari's 'hdf5' format"
            " is read (convert it with minari, e.g. combine into a new hdf5 dataset)"
        )
    main = os.path.join(data_dir, MAIN_FILE)
    if not os.path.isfile(main):
        raise DatasetError(f"{main}: no such file (field '{MAIN_FILE}' of the Minari dataset)")
    try:
        f = h5py.File(main, "r")
    except OSError as error:
        raise DatasetError(f"{main}: not a readable HDF5 file ({first_line(error)})") from None

    columns: dict[str, list[np.ndarray]] = {
        name: []
        for name in ("observations", "actions", "rewards", "next_observations", "terminals")
    }
    columns["timeouts"] = []
    observation_keys = action_keys = None
    with f:
        indices = sorted(int(m.group(1)) for key in f.keys() if (m := _EPISODE.match(key)))
        if not indices:
            raise DatasetError(f"{main}: field 'episode_0' is missing (no episode groups)")
        expected = info.get("total_episodes")
        if isinstance(expected, int) and expected != len(indices):
            raise DatasetError(
                f"{main}: field 'total_episodes' of {METADATA_FILE} says {expected} episodes, the"
                f" file holds {len(indices)} (a truncated or partly written dataset?)"
            )
        for index in indices:
            group_name = f"episode_{index}"
            group = f[group_name]
            if not isinstance(group, h5py.Group):
                raise DatasetError(f"{main}: field '{group_name}' is not an HDF5 group")
            raw = {}
            for key in ("observations", "actions", "rewards", "terminations", "truncations"):
                if key not in group:
                    raise DatasetError(f"{main}: field '{group_name}/{key}' is missing")
                raw[key] = _read_node(group[key], f"{group_name}/{key}", main)
            rewards = np.asarray(raw["rewards"])
            if rewards.ndim == 2 and rewards.shape[1] == 1:
                rewards = rewards[:, 0]
            if rewards.ndim != 1:
                raise DatasetError(
                    f"{main}: field '{group_name}/rewards' has shape {rewards.shape}, expected (T,)"
                )
            steps = rewards.shape[0]
            if steps == 0:
                continue  # no transitions: nothing to read
            observations, obs_keys = flatten_structure(
                raw["observations"], main, f"{group_name}/observations"
            )
            actions, act_keys = flatten_structure(raw["actions"], main, f"{group_name}/actions")
            if observations.shape[0] != steps + 1:
                raise DatasetError(
                    f"{main}: field '{group_name}/observations' has {observations.shape[0]} rows,"
                    f" expected {steps + 1} (one more than 'rewards')"
                )
            if actions.shape[0] != steps:
                raise DatasetError(
                    f"{main}: field '{group_name}/actions' has {actions.shape[0]} rows but"
                    f" '{group_name}/rewards' has {steps} (ragged fields)"
                )
            terminations = _flags(raw["terminations"], f"{group_name}/terminations", steps, main)
            truncations = _flags(raw["truncations"], f"{group_name}/truncations", steps, main)
            ends = terminations | truncations
            if not ends[-1]:
                raise DatasetError(
                    f"{main}: episode {index} never ends (fields '{group_name}/terminations' and"
                    f" '{group_name}/truncations' are false at its last step)"
                )
            if ends[:-1].any():
                row = int(np.flatnonzero(ends[:-1])[0])
                raise DatasetError(
                    f"{main}: field '{group_name}/terminations' or 'truncations' ends the episode"
                    f" at step {row}, before its last step {steps - 1}"
                )
            observation_keys = observation_keys or obs_keys
            action_keys = action_keys or act_keys
            terminal = bool(terminations[-1])
            flags = np.zeros(steps, bool)
            flags[-1] = True
            columns["observations"].append(observations[:-1])
            columns["next_observations"].append(observations[1:])
            columns["actions"].append(actions)
            columns["rewards"].append(rewards)
            columns["terminals"].append(flags if terminal else np.zeros(steps, bool))
            columns["timeouts"].append(np.zeros(steps, bool) if terminal else flags)
    if not columns["rewards"]:
        raise DatasetError(f"{main}: field 'rewards' is empty in every episode (no transitions)")
    arrays = {}
    for name, parts in columns.items():
        widths = {p.shape[1:] for p in parts}
        if len(widths) > 1:
            raise DatasetError(
                f"{main}: field '{name}' changes per-step shape between episodes ({sorted(widths)})"
            )
        arrays[name] = np.concatenate(parts)
    metadata: dict[str, Any] = {"source_format": "minari", "action_units": "native", "minari": info}
    if isinstance(info.get("algorithm_name"), str):
        metadata["policy"] = info["algorithm_name"]
    if observation_keys:
        metadata["observation_keys"] = [list(item) for item in observation_keys]
    if action_keys:
        metadata["action_keys"] = [list(item) for item in action_keys]
    return validate(Dataset(**arrays, metadata=metadata), source=main)
