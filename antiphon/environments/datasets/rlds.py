"""RLDS episode datasets stored as TFDS dataset directories (RL Unplugged, Open X-Embodiment).

Writing produces a TFDS dataset directory (`dataset_info.json`, `features.json`,
`metadata.json` and TFRecord shards) with the public `tfds.core.SequentialWriter`, the writer
EnvLogger's TFDS backend uses for RLDS data, so `tfds.builder_from_directory(directory)` loads it
like any other TFDS dataset. One split, `train`; examples are episodes in dataset order
(`disable_shuffling`):

    episode_id: int64                       the episode's index in the dataset
    steps: tfds.features.Dataset of
        observation  float32 [obs_dim]
        action       float32 [act_dim]
        reward       float32
        discount     float32
        is_first, is_last, is_terminal  bool

RLDS conventions: step t holds observation_t, the action taken in it, and the reward and
discount that followed that action. An episode of T transitions has T + 1 steps: the last one
carries the final observation, zero action/reward/discount, `is_last=True`, and
`is_terminal=True` iff the episode ended in a true terminal (then the discount of step T - 1 is
0). The `Dataset.metadata` dict is stored in the directory's `metadata.json` (TFDS's
`MetadataDict`) under the key `antiphon_metadata` and comes back unchanged.

Since RLDS stores each observation once, writing needs `next_observations[i] ==
observations[i + 1]` inside every episode (true of anything recorded from an environment); a
dataset where that does not hold is refused rather than silently changed.

Reading accepts RLDS datasets written by other tools too: the builder directory itself or a
folder above it (`<data_dir>/<name>/<config>/<version>`), `steps` as a `Dataset` or `Sequence`
feature. Structured (dict) observations and actions are flattened by `core.flatten_structure`:
every leaf reshaped to one row per step and concatenated in sorted key order; the metadata lists
the columns under `observation_keys` / `action_keys`. Text or image-only fields that cannot be
numbers are refused with a one-line error. Episodes of a single step (no transition) are
skipped and counted in the metadata (`rlds.episodes_without_transitions`).

RLDS stores every observation of an episode, so next observations never need deriving. A
dataset other tools wrote has no `action_units` in its metadata: `core.prepare_for_environment`
reads its actions
in the environment's own units unless told otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from typing import Any

import numpy as np

from antiphon.environments.datasets.core import (
    Dataset,
    DatasetError,
    first_line,
    flatten_structure,
    metadata_to_json,
    one_line_errors,
    validate,
)

DATASET_NAME = "antiphon_dataset"
VERSION = "1.0.0"
SPLIT = "train"
METADATA_KEY = "antiphon_metadata"
DATASET_INFO = "dataset_info.json"
_BATCH = 65536


def _tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise DatasetError(
            f"the RLDS format needs tensorflow-datasets ({first_line(error)})"
        ) from None
    return tfds


# ----------------------------------------------------------------------------------------------
# Writing


def _check_next_observations(dataset: Dataset, source: str) -> None:
    ends = dataset.terminals | dataset.timeouts
    inside = ~ends[:-1]
    differs = (dataset.next_observations[:-1] != dataset.observations[1:]).any(axis=1)
    bad = np.flatnonzero(inside & differs)
    if bad.size:
        row = int(bad[0])
        raise DatasetError(
            f"{source}: field 'next_observations' row {row} differs from 'observations' row"
            f" {row + 1} inside an episode; RLDS stores each observation once, so this dataset"
            " cannot be written losslessly"
        )


def _episodes(dataset: Dataset) -> Iterator[dict[str, Any]]:
    for index, steps in enumerate(dataset.episode_slices()):
        length = steps.stop - steps.start
        terminal = bool(dataset.terminals[steps.stop - 1])
        observation = np.concatenate(
            [dataset.observations[steps], dataset.next_observations[steps.stop - 1][None]]
        )
        action = np.concatenate(
            [dataset.actions[steps], np.zeros((1, dataset.actions.shape[1]), np.float32)]
        )
        reward = np.append(dataset.rewards[steps], np.float32(0.0)).astype(np.float32)
        discount = np.append(dataset.discounts[steps], np.float32(0.0)).astype(np.float32)
        is_first = np.zeros(length + 1, bool)
        is_first[0] = True
        is_last = np.zeros(length + 1, bool)
        is_last[-1] = True
        is_terminal = np.zeros(length + 1, bool)
        is_terminal[-1] = terminal
        yield {
            "episode_id": np.int64(index),
            "steps": {
                "observation": observation,
                "action": action,
                "reward": reward,
                "discount": discount,
                "is_first": is_first,
                "is_last": is_last,
                "is_terminal": is_terminal,
            },
        }


def write_rlds(
    dataset: Dataset,
    directory: str,
    name: str = DATASET_NAME,
    episodes_per_shard: int = 1000,
) -> None:
    """Writes `dataset` as an RLDS TFDS dataset into `directory` (see the module docstring).

    `directory` must not exist or be empty; it is filled through a temporary sibling directory
    renamed into place, so a crash never leaves a half-written dataset under that name.
    """
    directory = os.path.abspath(str(directory))
    dataset = validate(dataset, source=directory)
    _check_next_observations(dataset, directory)
    metadata = json.loads(metadata_to_json(dataset.metadata, source=directory))
    if os.path.exists(directory) and (not os.path.isdir(directory) or os.listdir(directory)):
        raise DatasetError(f"{directory}: already exists and is not an empty directory")
    tfds = _tfds()
    obs_dim = dataset.observations.shape[1]
    act_dim = dataset.actions.shape[1]
    features = tfds.features.FeaturesDict(
        {
            "episode_id": tfds.features.Scalar(dtype=np.int64),
            "steps": tfds.features.Dataset(
                {
                    "observation": tfds.features.Tensor(shape=(obs_dim,), dtype=np.float32),
                    "action": tfds.features.Tensor(shape=(act_dim,), dtype=np.float32),
                    "reward": tfds.features.Scalar(dtype=np.float32),
                    "discount": tfds.features.Scalar(dtype=np.float32),
                    "is_first": tfds.features.Scalar(dtype=np.bool_),
                    "is_last": tfds.features.Scalar(dtype=np.bool_),
                    "is_terminal": tfds.features.Scalar(dtype=np.bool_),
                }
            ),
        }
    )
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    tmp = f"{directory}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        identity = tfds.core.DatasetIdentity(
            name=name,
            version=tfds.core.Version(VERSION),
            data_dir=tmp,
            module_name=__name__,
        )
        info = tfds.core.DatasetInfo(
            builder=identity,
            description=(
                "Offline RL transitions written by antiphon in the RLDS episode format; the"
                f" dataset's metadata is in metadata.json under '{METADATA_KEY}'."
            ),
            features=features,
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict({METADATA_KEY: metadata}),
        )
        writer = tfds.core.SequentialWriter(ds_info=info, max_examples_per_shard=episodes_per_shard)
        writer.initialize_splits([SPLIT])
        batch: list[dict[str, Any]] = []
        for episode in _episodes(dataset):
            batch.append(episode)
            if len(batch) >= 100:
                writer.add_examples({SPLIT: batch})
                batch = []
        if batch:
            writer.add_examples({SPLIT: batch})
        writer.close_all()
        if os.path.isdir(directory):
            os.rmdir(directory)  # empty (checked above)
        os.rename(tmp, directory)
    except DatasetError:
        raise
    except Exception as error:  # TF/TFDS failures become one line
        raise DatasetError(
            f"{directory}: cannot write the RLDS dataset ({first_line(error)})"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# Reading


def _version_key(name: str) -> tuple[int, ...] | None:
    parts = name.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        return tuple(int(p) for p in parts)
    return None


def find_tfds_builder_dir(path: str, max_depth: int = 3) -> str | None:
    """The TFDS builder directory (the one holding `dataset_info.json`) at or below `path`.

    Several versions of one dataset side by side give the highest version. Raises DatasetError
    when `path` holds several different datasets or configs; None when it holds none.
    """
    path = str(path)
    if not os.path.isdir(path):
        return None
    if os.path.isfile(os.path.join(path, DATASET_INFO)):
        return path
    found = []
    base_depth = path.rstrip(os.sep).count(os.sep)
    for root, dirs, files in os.walk(path):
        dirs.sort()
        if root.rstrip(os.sep).count(os.sep) - base_depth >= max_depth:
            dirs[:] = []
        if DATASET_INFO in files:
            found.append(root)
            dirs[:] = []
    if not found:
        return None
    if len(found) == 1:
        return found[0]
    parents = {os.path.dirname(d) for d in found}
    versions = [(_version_key(os.path.basename(d)), d) for d in found]
    if len(parents) == 1 and all(key is not None for key, _ in versions):
        return max(versions)[1]
    listed = ", ".join(os.path.relpath(d, path) for d in found[:4])
    raise DatasetError(
        f"{path}: holds several TFDS datasets ({listed}{', ...' if len(found) > 4 else ''});"
        " pass the one to read"
    )


def _concat(parts: list[Any]) -> Any:
    if isinstance(parts[0], dict):
        return {key: _concat([p[key] for p in parts]) for key in parts[0]}
    return np.concatenate(parts, axis=0)


def read_rlds(directory: str, split: str | None = None) -> Dataset:
    """Reads an RLDS dataset from a TFDS directory (see the module docstring) and validates it.

    `split` defaults to `train` when the dataset has one, else to its only split.
    """
    with one_line_errors(directory, "cannot read the dataset"):
        return _read_rlds(str(directory), split)


def _read_rlds(directory: str, split: str | None) -> Dataset:
    if not os.path.exists(directory):
        raise DatasetError(f"{directory}: no such directory")
    builder_dir = find_tfds_builder_dir(directory)
    if builder_dir is None:
        raise DatasetError(f"{directory}: field '{DATASET_INFO}' is missing (not a TFDS dataset)")
    tfds = _tfds()
    import tensorflow as tf

    try:
        builder = tfds.builder_from_directory(builder_dir)
        features = builder.info.features
        splits = list(builder.info.splits.keys())
    except Exception as error:  # any TFDS failure becomes one line
        raise DatasetError(
            f"{builder_dir}: field '{DATASET_INFO}' cannot be read as a TFDS dataset"
            f" ({first_line(error)})"
        ) from None
    source = builder_dir
    if "steps" not in features:
        raise DatasetError(f"{source}: field 'steps' is missing (not an RLDS episode dataset)")
    steps_feature = features["steps"]
    if not isinstance(steps_feature, tfds.features.Sequence) or not isinstance(
        steps_feature.feature, tfds.features.FeaturesDict
    ):
        raise DatasetError(
            f"{source}: field 'steps' is a {type(steps_feature).__name__}, expected a Dataset or"
            " Sequence of step dicts"
        )
    step_keys = set(steps_feature.feature.keys())
    for key in ("observation", "action", "reward", "is_first", "is_last"):
        if key not in step_keys:
            raise DatasetError(f"{source}: field 'steps/{key}' is missing")
    if "is_terminal" not in step_keys and "discount" not in step_keys:
        raise DatasetError(
            f"{source}: field 'steps/is_terminal' is missing (and no 'steps/discount' to tell"
            " terminals from timeouts)"
        )
    if split is None:
        if SPLIT in splits:
            split = SPLIT
        elif len(splits) == 1:
            split = splits[0]
        else:
            raise DatasetError(
                f"{source}: field 'split' must be given: the dataset has splits {sorted(splits)}"
            )
    elif split not in splits:
        raise DatasetError(f"{source}: field 'split' {split!r} is not one of {sorted(splits)}")

    wanted = [
        k
        for k in (
            "observation",
            "action",
            "reward",
            "discount",
            "is_first",
            "is_last",
            "is_terminal",
        )
        if k in step_keys
    ]
    sequence_of_tensors = not isinstance(steps_feature, tfds.features.Dataset)

    def episode_steps(episode):
        steps = episode["steps"]
        if sequence_of_tensors:
            steps = tf.data.Dataset.from_tensor_slices(steps)
        return steps.map(lambda step: {key: step[key] for key in wanted})

    chunks: list[dict[str, Any]] = []
    try:
        episodes = builder.as_dataset(split=split, shuffle_files=False)
        for batch in tfds.as_numpy(episodes.flat_map(episode_steps).batch(_BATCH)):
            chunks.append(batch)
    except Exception as error:  # corrupt records, ragged steps...
        raise DatasetError(
            f"{source}: field 'steps' cannot be read ({first_line(error)})"
        ) from None
    if not chunks:
        raise DatasetError(f"{source}: field 'steps' is empty (split {split!r} has no steps)")
    steps = _concat(chunks)
    return _steps_to_dataset(steps, builder, split, source)


def _bools(value: Any, name: str, source: str) -> np.ndarray:
    value = np.asarray(value)
    if value.ndim == 2 and value.shape[1] == 1:
        value = value[:, 0]
    if value.ndim != 1 or value.dtype.kind not in "biu":
        raise DatasetError(
            f"{source}: field '{name}' has dtype {value.dtype} and per-step shape"
            f" {value.shape[1:]}, expected a bool per step"
        )
    return value.astype(bool)


def _steps_to_dataset(steps: dict[str, Any], builder: Any, split: str, source: str) -> Dataset:
    is_first = _bools(steps["is_first"], "steps/is_first", source)
    is_last = _bools(steps["is_last"], "steps/is_last", source)
    n = is_first.shape[0]
    if not is_first[0]:
        raise DatasetError(f"{source}: field 'steps/is_first' is false at the first step")
    if not is_last[-1]:
        raise DatasetError(
            f"{source}: the last episode never ends (field 'steps/is_last' is false at its last"
            " step); a truncated dataset?"
        )
    broken = np.flatnonzero(is_first[1:] != is_last[:-1])
    if broken.size:
        step = int(broken[0])
        raise DatasetError(
            f"{source}: fields 'steps/is_last' and 'steps/is_first' disagree at step {step}: an"
            " episode ends without the next one starting, or starts before the previous ended"
        )
    if "is_terminal" in steps:
        is_terminal = _bools(steps["is_terminal"], "steps/is_terminal", source)
        early = np.flatnonzero(is_terminal & ~is_last)
        if early.size:
            raise DatasetError(
                f"{source}: field 'steps/is_terminal' is true at step {int(early[0])}, which is"
                " not the last step of its episode"
            )
    else:
        # No is_terminal: the discount after the last action tells terminals (0) from timeouts.
        discount, _ = flatten_structure(steps["discount"], source, "steps/discount")
        is_terminal = np.zeros(n, bool)
        last_action = np.flatnonzero(is_last[1:] & ~is_first[1:])
        is_terminal[last_action + 1] = discount[last_action, 0] == 0
    observations, observation_keys = flatten_structure(
        steps["observation"], source, "steps/observation"
    )
    actions, action_keys = flatten_structure(steps["action"], source, "steps/action")
    rewards, _ = flatten_structure(steps["reward"], source, "steps/reward")
    if rewards.shape[1] != 1:
        raise DatasetError(
            f"{source}: field 'steps/reward' has {rewards.shape[1]} values per step, expected one"
        )
    for name, value in (("observation", observations), ("action", actions)):
        if value.shape[0] != n:
            raise DatasetError(
                f"{source}: field 'steps/{name}' has {value.shape[0]} rows but 'steps/is_first'"
                f" has {n} (ragged fields)"
            )
    transition = ~is_last  # every step but an episode's last starts a transition
    index = np.flatnonzero(transition)
    ends_episode = is_last[index + 1]
    terminal_end = is_terminal[index + 1]
    if index.size == 0:
        raise DatasetError(f"{source}: field 'steps' holds no transition (single-step episodes)")
    arrays = {
        "observations": observations[index],
        "actions": actions[index],
        "rewards": rewards[index, 0],
        "next_observations": observations[index + 1],
        "terminals": ends_episode & terminal_end,
        "timeouts": ends_episode & ~terminal_end,
    }
    info = builder.info
    # LazyMetadataDict loads metadata.json on keys()/[]; dict(...) alone would see it empty.
    lazy = info.metadata
    stored = {key: lazy[key] for key in lazy.keys()} if lazy is not None else {}
    if isinstance(stored.get(METADATA_KEY), dict):
        metadata = dict(stored[METADATA_KEY])
    else:
        metadata = {
            "source_format": "rlds",
            "rlds": {
                "name": info.name,
                "version": str(info.version),
                "config": info.config_name or None,
                "split": split,
            },
        }
        try:
            metadata["rlds"]["metadata"] = json.loads(json.dumps(stored))
        except (TypeError, ValueError):
            pass
        if observation_keys:
            metadata["observation_keys"] = [list(item) for item in observation_keys]
        if action_keys:
            metadata["action_keys"] = [list(item) for item in action_keys]
        empty = int((is_first & is_last).sum())
        if empty:
            metadata["rlds"]["episodes_without_transitions"] = empty
    return validate(Dataset(**arrays, metadata=metadata), source=source)
