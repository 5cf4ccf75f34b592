"""Offline dataset file formats: round trips, refusals of malformed files, Minari, the recorder."""

from __future__ import annotations

import json
import os
import shutil

import dm_env
import h5py
import numpy as np
import pytest
from dm_env import specs

from antiphon.core.types import EnvironmentSpec
from antiphon.environments.datasets import (
    Dataset,
    DatasetError,
    check_matches_environment,
    detect_format,
    load_dataset,
    save_dataset,
    validate,
)
from antiphon.environments.datasets.hdf5 import read_hdf5, write_hdf5
from antiphon.environments.datasets.minari import read_minari
from antiphon.environments.datasets.npz import read_npz, write_npz
from antiphon.environments.datasets.recorder import (
    EpisodeRecorder,
    episodes_dir,
    read_recorded_episodes,
)

DATA = os.path.join(os.path.dirname(__file__), "data")
OBS_DIM, ACT_DIM = 3, 2
# (transitions, ends in a true terminal)
EPISODES = [(3, True), (5, False), (1, False), (4, False), (2, True)]
METADATA = {
    "environment": "pendulum-swingup",
    "action_repeat": 2,
    "policy": "random",
    "episode_returns": [1.25, -0.1, 3.0000000000000004, 0.0, 7.5],
    "notes": {"seed": 3, "tags": ["a", "b"], "nothing": None, "flag": True},
}


def make_dataset(seed: int = 0) -> Dataset:
    """Several episodes of different lengths, next observations taken from the following step."""
    rng = np.random.default_rng(seed)
    parts = []
    for length, terminal in EPISODES:
        observations = rng.normal(size=(length + 1, OBS_DIM)).astype(np.float32)
        ends = np.zeros(length, bool)
        ends[-1] = True
        parts.append(
            {
                "observations": observations[:-1],
                "actions": rng.uniform(-1, 1, size=(length, ACT_DIM)).astype(np.float32),
                "rewards": rng.normal(size=length).astype(np.float32),
                "next_observations": observations[1:],
                "terminals": ends if terminal else np.zeros(length, bool),
                "timeouts": np.zeros(length, bool) if terminal else ends,
            }
        )
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return validate(Dataset(**arrays, metadata=json.loads(json.dumps(METADATA))))


def assert_same(a: Dataset, b: Dataset) -> None:
    for name, value in a.arrays().items():
        other = getattr(b, name)
        assert other.dtype == value.dtype, name
        np.testing.assert_array_equal(other, value, err_msg=name)
    assert b.metadata == a.metadata


def assert_refused(error: pytest.ExceptionInfo, *words: str) -> None:
    message = str(error.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, (word, message)


# ----------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("name", ["data.h5", "data.hdf5", "data.npz", "rlds-dir"])
def test_round_trip_through_save_and_load(tmp_path, name):
    dataset = make_dataset()
    path = str(tmp_path / name)
    save_dataset(dataset, path)
    loaded = load_dataset(path)
    assert_same(dataset, loaded)
    assert loaded.num_episodes == len(EPISODES)
    assert loaded.terminals.sum() == 2 and loaded.timeouts.sum() == 3


def test_round_trip_direct_writers(tmp_path):
    dataset = make_dataset(seed=1)
    write_hdf5(dataset, str(tmp_path / "a.h5"), compression=None)
    assert_same(dataset, read_hdf5(str(tmp_path / "a.h5")))
    write_npz(dataset, str(tmp_path / "a.data"))  # no .npz appended to the path
    assert os.path.exists(tmp_path / "a.data")
    assert_same(dataset, read_npz(str(tmp_path / "a.data")))


def test_metadata_with_numpy_values_is_stored_as_plain_json(tmp_path):
    dataset = make_dataset()
    dataset.metadata = {"returns": np.array([1.5, 2.0]), "repeat": np.int64(2), "x": np.float32(3)}
    save_dataset(dataset, str(tmp_path / "d.h5"))
    assert load_dataset(str(tmp_path / "d.h5")).metadata == {
        "returns": [1.5, 2.0],
        "repeat": 2,
        "x": 3.0,
    }
    dataset.metadata = {"policy": object()}
    with pytest.raises(DatasetError) as error:
        save_dataset(dataset, str(tmp_path / "e.npz"))
    assert_refused(error, "e.npz", "'metadata'")
    assert not os.path.exists(tmp_path / "e.npz")


def test_rlds_directory_follows_rlds_conventions(tmp_path):
    import tensorflow_datasets as tfds

    dataset = make_dataset()
    directory = tmp_path / "rlds"
    save_dataset(dataset, str(directory), format="rlds")
    assert detect_format(str(directory)) == "rlds"
    builder = tfds.builder_from_directory(str(directory))
    assert set(builder.info.features["steps"].feature.keys()) == {
        "observation",
        "action",
        "reward",
        "discount",
        "is_first",
        "is_last",
        "is_terminal",
    }
    episodes = list(tfds.as_numpy(builder.as_dataset(split="train", shuffle_files=False)))
    assert len(episodes) == len(EPISODES)
    slices = dataset.episode_slices()
    for episode, (length, terminal), rows in zip(episodes, EPISODES, slices, strict=True):
        steps = {k: np.stack(list(v)) for k, v in _columns(episode["steps"]).items()}
        assert steps["observation"].shape == (length + 1, OBS_DIM)
        np.testing.assert_array_equal(steps["observation"][:-1], dataset.observations[rows])
        np.testing.assert_array_equal(steps["observation"][-1], dataset.next_observations[rows][-1])
        np.testing.assert_array_equal(steps["action"][-1], np.zeros(ACT_DIM, np.float32))
        assert steps["reward"][-1] == 0 and steps["discount"][-1] == 0
        assert steps["is_first"].tolist() == [True] + [False] * length
        assert steps["is_last"].tolist() == [False] * length + [True]
        assert steps["is_terminal"].tolist() == [False] * length + [terminal]
        assert steps["discount"][length - 1] == (0.0 if terminal else 1.0)
    # The metadata travels in the TFDS directory's metadata.json.
    with open(directory / "metadata.json") as f:
        assert json.load(f)["antiphon_metadata"] == METADATA


def _columns(steps) -> dict[str, list]:
    columns: dict[str, list] = {}
    for step in steps:
        for key, value in step.items():
            columns.setdefault(key, []).append(value)
    return columns


def _write_foreign_rlds(
    directory, episodes, step_features, with_is_terminal=True, steps_feature="Dataset"
):
    """An RLDS dataset the way other tools write them: TFDS `<data_dir>/<name>/<version>`."""
    import tensorflow_datasets as tfds

    features = {
        "steps": getattr(tfds.features, steps_feature)(
            {
                **step_features,
                "is_first": np.bool_,
                "is_last": np.bool_,
                **({"is_terminal": np.bool_} if with_is_terminal else {}),
            }
        ),
    }
    data_dir = os.path.join(directory, "foreign_robot", "1.0.0")
    os.makedirs(data_dir)
    identity = tfds.core.DatasetIdentity(
        name="foreign_robot",
        version=tfds.core.Version("1.0.0"),
        data_dir=data_dir,
        module_name="tests",
    )
    info = tfds.core.DatasetInfo(
        builder=identity,
        features=tfds.features.FeaturesDict(features),
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict({"robot": "arm"}),
    )
    writer = tfds.core.SequentialWriter(ds_info=info, max_examples_per_shard=2)
    writer.initialize_splits(["train"])
    writer.add_examples({"train": [{"steps": e} for e in episodes]})
    writer.close_all()


@pytest.mark.parametrize("steps_feature", ["Dataset", "Sequence"])
def test_rlds_reads_foreign_dict_observations(tmp_path, steps_feature):
    import tensorflow_datasets as tfds

    rng = np.random.default_rng(0)

    def episode(length, terminal, discount_last=None):
        flags = np.zeros(length + 1, bool)
        last = flags.copy()
        last[-1] = True
        first = flags.copy()
        first[0] = True
        discount = np.ones(length + 1, np.float32)
        if terminal and length:
            discount[length - 1] = 0.0
        return {
            "observation": {
                "joints": rng.normal(size=(length + 1, 2)).astype(np.float32),
                "gripper": rng.normal(size=length + 1).astype(np.float64),
            },
            "action": rng.normal(size=(length + 1, 1)).astype(np.float32),
            "reward": rng.normal(size=length + 1).astype(np.float32),
            "discount": discount,
            "is_first": first,
            "is_last": last,
        }

    episodes = [episode(3, True), episode(0, False), episode(2, False)]
    step_features = {
        "observation": {
            "joints": tfds.features.Tensor(shape=(2,), dtype=np.float32),
            "gripper": tfds.features.Scalar(dtype=np.float64),
        },
        "action": tfds.features.Tensor(shape=(1,), dtype=np.float32),
        "reward": tfds.features.Scalar(dtype=np.float32),
        "discount": tfds.features.Scalar(dtype=np.float32),
    }
    _write_foreign_rlds(
        str(tmp_path), episodes, step_features, with_is_terminal=False, steps_feature=steps_feature
    )

    dataset = load_dataset(str(tmp_path))  # the builder directory is two levels down
    assert len(dataset) == 5 and dataset.num_episodes == 2
    first, third = episodes[0], episodes[2]
    expected_obs = np.concatenate(
        [
            np.concatenate([e["observation"]["gripper"][:, None], e["observation"]["joints"]], 1)
            for e in (first, third)
        ]
    ).astype(np.float32)
    # Sorted keys: gripper (1 column) before joints (2 columns).
    np.testing.assert_array_equal(dataset.observations[:3], expected_obs[:3])
    np.testing.assert_array_equal(dataset.next_observations[2], expected_obs[3])
    np.testing.assert_array_equal(dataset.observations[3:], expected_obs[4:6])
    np.testing.assert_array_equal(dataset.rewards[:3], first["reward"][:3])
    # No is_terminal: the zero discount after the last action marks the terminal.
    assert dataset.terminals.tolist() == [False, False, True, False, False]
    assert dataset.timeouts.tolist() == [False, False, False, False, True]
    assert dataset.metadata["observation_keys"] == [["gripper", 1], ["joints", 2]]
    assert dataset.metadata["rlds"]["episodes_without_transitions"] == 1
    assert dataset.metadata["rlds"]["metadata"] == {"robot": "arm"}


def test_rlds_refuses_text_observations_and_unfinished_episodes(tmp_path):
    import tensorflow_datasets as tfds

    length = 2
    steps = {
        "observation": {
            "state": np.zeros((length + 1, 2), np.float32),
            "instruction": ["pick", "pick", "pick"],
        },
        "action": np.zeros((length + 1, 1), np.float32),
        "reward": np.zeros(length + 1, np.float32),
        "is_first": np.array([True, False, False]),
        "is_last": np.array([False, False, True]),
        "is_terminal": np.array([False, False, False]),
    }
    features = {
        "observation": {
            "state": tfds.features.Tensor(shape=(2,), dtype=np.float32),
            "instruction": tfds.features.Text(),
        },
        "action": tfds.features.Tensor(shape=(1,), dtype=np.float32),
        "reward": tfds.features.Scalar(dtype=np.float32),
    }
    _write_foreign_rlds(str(tmp_path / "text"), [steps], features)
    with pytest.raises(DatasetError) as error:
        load_dataset(str(tmp_path / "text"))
    assert_refused(error, "steps/observation/instruction", "foreign_robot")

    unfinished = dict(steps, is_last=np.array([False, False, False]))
    unfinished["observation"] = {"state": steps["observation"]["state"]}
    features["observation"] = {"state": features["observation"]["state"]}
    _write_foreign_rlds(str(tmp_path / "unfinished"), [unfinished], features)
    with pytest.raises(DatasetError) as error:
        load_dataset(str(tmp_path / "unfinished"), format="rlds")
    assert_refused(error, "is_last", "never ends")


def test_rlds_refuses_what_it_cannot_store_losslessly(tmp_path):
    dataset = make_dataset()
    dataset.next_observations[1] += 1.0  # inside episode 0: no longer the next row's observation
    with pytest.raises(DatasetError) as error:
        save_dataset(dataset, str(tmp_path / "rlds"), format="rlds")
    assert_refused(error, "next_observations", "row 1")
    assert not os.path.exists(tmp_path / "rlds")
    # An existing non-empty directory is never overwritten.
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(DatasetError) as error:
        save_dataset(make_dataset(), str(tmp_path / "full"), format="rlds")
    assert_refused(error, "full", "not an empty directory")
    assert (tmp_path / "full" / "keep.txt").exists()


def test_rlds_refuses_a_directory_without_dataset_info(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError) as error:
        load_dataset(str(tmp_path / "empty"), format="rlds")
    assert_refused(error, "dataset_info.json")
    with pytest.raises(DatasetError) as error:
        load_dataset(str(tmp_path / "empty"))
    assert_refused(error, "dataset_info.json")


# ----------------------------------------------------------------------------------------------
# Malformed HDF5 / npz files


def _write_raw_hdf5(path, arrays, metadata=None):
    with h5py.File(path, "w") as f:
        for name, value in arrays.items():
            f.create_dataset(name, data=value)
        if metadata is not None:
            f.attrs["metadata"] = metadata


def _malformed_cases():
    base = make_dataset().arrays()
    n = len(base["rewards"])
    cases = {}
    cases["missing"] = ({k: v for k, v in base.items() if k != "actions"}, "actions")
    cases["ragged"] = (dict(base, rewards=base["rewards"][:-2]), "rewards")
    nan = base["observations"].copy()
    nan[4, 1] = np.nan
    cases["nan"] = (dict(base, observations=nan), "observations")
    cases["string_actions"] = (
        dict(base, actions=np.array([["left", "right"]] * n, dtype="S5")),
        "actions",
    )
    cases["complex_actions"] = (dict(base, actions=base["actions"].astype(np.complex64)), "actions")
    never_ends = dict(base, terminals=base["terminals"].copy(), timeouts=base["timeouts"].copy())
    never_ends["terminals"][-1] = never_ends["timeouts"][-1] = False
    cases["never_ends"] = (never_ends, "terminals")
    cases["flags_not_bool"] = (dict(base, terminals=base["terminals"] * 2.5), "terminals")
    cases["wrong_rank"] = (
        dict(base, observations=base["observations"][:, :, None]),
        "observations",
    )
    return cases


MALFORMED = _malformed_cases()


@pytest.mark.parametrize("case", sorted(MALFORMED))
@pytest.mark.parametrize("suffix", [".h5", ".npz"])
def test_malformed_files_are_refused_in_one_line(tmp_path, case, suffix):
    arrays, field = MALFORMED[case]
    path = str(tmp_path / f"bad{suffix}")
    if suffix == ".h5":
        _write_raw_hdf5(path, arrays)
    else:
        np.savez(path, **arrays)
    with pytest.raises(DatasetError) as error:
        load_dataset(path)
    assert_refused(error, path, f"'{field}'")


def test_files_that_are_not_datasets_are_refused(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("observations,actions\n1,2\n")
    with pytest.raises(DatasetError) as error:
        load_dataset(str(text))
    assert_refused(error, str(text), "not a readable HDF5 file")
    with pytest.raises(DatasetError) as error:
        read_npz(str(text))
    assert_refused(error, str(text), ".npz")
    truncated = tmp_path / "truncated.h5"
    write_hdf5(make_dataset(), str(truncated))
    truncated.write_bytes(truncated.read_bytes()[:2000])
    with pytest.raises(DatasetError) as error:
        load_dataset(str(truncated))
    assert_refused(error, str(truncated))
    with pytest.raises(DatasetError) as error:
        load_dataset(str(tmp_path / "missing.h5"))
    assert_refused(error, "missing.h5")
    unknown = tmp_path / "data.csv"
    unknown.write_text("1,2\n")
    with pytest.raises(DatasetError) as error:
        load_dataset(str(unknown))
    assert_refused(error, "unknown dataset format")


def test_hdf5_group_field_and_bad_metadata_are_refused(tmp_path):
    arrays = make_dataset().arrays()
    path = str(tmp_path / "group.h5")
    with h5py.File(path, "w") as f:
        for name, value in arrays.items():
            if name == "observations":
                f.create_group(name).create_dataset("x", data=value)
            else:
                f.create_dataset(name, data=value)
    with pytest.raises(DatasetError) as error:
        load_dataset(path)
    assert_refused(error, "'observations'", "Group")
    path = str(tmp_path / "meta.h5")
    _write_raw_hdf5(path, arrays, metadata="{not json")
    with pytest.raises(DatasetError) as error:
        load_dataset(path)
    assert_refused(error, "'metadata'", "JSON")


def test_hdf5_without_next_observations_derives_them_within_episodes(tmp_path):
    dataset = make_dataset()
    arrays = {k: v for k, v in dataset.arrays().items() if k != "next_observations"}
    path = str(tmp_path / "d4rl-v0.hdf5")
    _write_raw_hdf5(path, arrays)
    loaded = load_dataset(path)
    # Timeout transitions lose their last step (its next observation is unknown); the 1-step
    # timeout episode disappears; terminal episodes stay whole.
    expected_lengths = [3, 4, 3, 2]
    assert [s.stop - s.start for s in loaded.episode_slices()] == expected_lengths
    assert loaded.metadata["derived_next_observations"]["dropped_timeout_transitions"] == 3
    keep = ~dataset.timeouts
    np.testing.assert_array_equal(loaded.observations, dataset.observations[keep])
    inside = ~(loaded.terminals | loaded.timeouts)
    np.testing.assert_array_equal(
        loaded.next_observations[inside], dataset.next_observations[keep][inside]
    )
    assert loaded.terminals.sum() == 2 and loaded.timeouts.sum() == 2


# ----------------------------------------------------------------------------------------------
# Minari


def _minari_episodes(path):
    with h5py.File(path) as f:
        return [_group(f[f"episode_{i}"]) for i in range(len(f))]


def _group(group):
    return {k: (_group(v) if isinstance(v, h5py.Group) else v[()]) for k, v in group.items()}


@pytest.mark.parametrize("where", ["dataset_dir", "data_dir", "main_file"])
def test_minari_fixture_written_by_minari_reads(where):
    root = os.path.join(DATA, "minari-tiny")
    path = {
        "dataset_dir": root,
        "data_dir": os.path.join(root, "data"),
        "main_file": os.path.join(root, "data", "main_data.hdf5"),
    }[where]
    assert detect_format(path) == "minari"
    dataset = load_dataset(path)
    raw = _minari_episodes(os.path.join(root, "data", "main_data.hdf5"))
    assert dataset.num_episodes == len(raw) == 4
    assert len(dataset) == sum(len(e["rewards"]) for e in raw) == 14
    for rows, episode in zip(dataset.episode_slices(), raw, strict=True):
        np.testing.assert_array_equal(dataset.observations[rows], episode["observations"][:-1])
        np.testing.assert_array_equal(dataset.next_observations[rows], episode["observations"][1:])
        np.testing.assert_array_equal(dataset.actions[rows], episode["actions"])
        np.testing.assert_array_equal(dataset.rewards[rows], episode["rewards"].astype(np.float32))
        assert dataset.terminals[rows][-1] == episode["terminations"][-1]
        assert dataset.timeouts[rows][-1] == episode["truncations"][-1]
    assert dataset.terminals.sum() == 2 and dataset.timeouts.sum() == 2
    assert dataset.metadata["source_format"] == "minari"
    assert dataset.metadata["minari"]["dataset_id"] == "antiphon/minari-tiny-v0"
    assert dataset.metadata["policy"] == "scripted"


def test_minari_dict_observations_flatten_in_sorted_key_order():
    dataset = read_minari(os.path.join(DATA, "minari-dict"))
    raw = _minari_episodes(os.path.join(DATA, "minari-dict", "data", "main_data.hdf5"))
    first = raw[0]["observations"]
    expected = np.concatenate([first["goal"], first["position"]], axis=1)
    np.testing.assert_array_equal(dataset.observations[: len(expected) - 1], expected[:-1])
    assert dataset.metadata["observation_keys"] == [["goal", 2], ["position", 3]]
    assert dataset.observations.shape == (14, 5)


def _tampered_minari(tmp_path, edit):
    target = tmp_path / "minari"
    shutil.copytree(os.path.join(DATA, "minari-tiny"), target)
    edit(target / "data")
    return str(target)


def test_minari_malformed_datasets_are_refused(tmp_path):
    def drop_terminations(data):
        with h5py.File(data / "main_data.hdf5", "a") as f:
            del f["episode_1/terminations"]

    path = _tampered_minari(tmp_path / "a", drop_terminations)
    with pytest.raises(DatasetError) as error:
        load_dataset(path)
    assert_refused(error, "episode_1/terminations", "missing")

    def never_end(data):
        with h5py.File(data / "main_data.hdf5", "a") as f:
            f["episode_3/truncations"][-1] = False

    path = _tampered_minari(tmp_path / "b", never_end)
    with pytest.raises(DatasetError) as error:
        load_dataset(path)
    assert_refused(error, "episode_3/truncations", "never ends")

    def short_observations(data):
        with h5py.File(data / "main_data.hdf5", "a") as f:
            obs = f["episode_2/observations"][()]
            del f["episode_2/observations"]
            f["episode_2/observations"] = obs[:-1]

    path = _tampered_minari(tmp_path / "c", short_observations)
    with pytest.raises(DatasetError) as error:
        load_dataset(path)
    assert_refused(error, "episode_2/observations", "rows")

    def arrow(data):
        metadata = json.loads((data / "metadata.json").read_text())
        (data / "metadata.json").write_text(json.dumps(dict(metadata, data_format="arrow")))

    path = _tampered_minari(tmp_path / "d", arrow)
    with pytest.raises(DatasetError) as error:
        load_dataset(path)
    assert_refused(error, "data_format", "arrow")

    def nan_rewards(data):
        with h5py.File(data / "main_data.hdf5", "a") as f:
            f["episode_0/rewards"][0] = np.nan

    path = _tampered_minari(tmp_path / "e", nan_rewards)
    with pytest.raises(DatasetError) as error:
        load_dataset(path)
    assert_refused(error, "'rewards'", "NaN")


# ----------------------------------------------------------------------------------------------
# Environment check


def test_check_matches_environment_refuses_a_wrong_observation_width():
    dataset = make_dataset()
    spec = EnvironmentSpec(
        observations=specs.Array((OBS_DIM + 1,), np.float32),
        actions=specs.BoundedArray((ACT_DIM,), np.float32, -1.0, 1.0),
        rewards=specs.Array((), np.float32),
        discounts=specs.BoundedArray((), np.float32, 0.0, 1.0),
    )
    with pytest.raises(DatasetError) as error:
        check_matches_environment(dataset, spec, source="data.h5")
    assert_refused(error, "data.h5", "'observations'")
    matching = EnvironmentSpec(
        observations=specs.Array((OBS_DIM,), np.float32),
        actions=spec.actions,
        rewards=spec.rewards,
        discounts=spec.discounts,
    )
    check_matches_environment(dataset, matching)


# ----------------------------------------------------------------------------------------------
# The recorder


def _run_episode(recorder, rng, length, end, actor_steps):
    observation = rng.normal(size=OBS_DIM).astype(np.float32)
    recorder.observe_first(None, dm_env.restart(observation))
    seen = [observation]
    for t in range(length):
        action = rng.uniform(-1, 1, ACT_DIM).astype(np.float32)
        observation = rng.normal(size=OBS_DIM).astype(np.float32)
        reward = float(t)
        if t < length - 1:
            step = dm_env.transition(reward, observation)
        elif end == "terminal":
            step = dm_env.termination(reward, observation)
        else:
            step = dm_env.truncation(reward, observation)
        recorder.observe(None, step, action)
        seen.append(observation)
    recorder.commit(actor_steps)
    return np.stack(seen)


def test_recorder_files_episodes_and_filters_by_actor_steps(tmp_path):
    run_dir = str(tmp_path / "run")
    rng = np.random.default_rng(0)
    recorders = [
        EpisodeRecorder(os.path.join(episodes_dir(run_dir), f"actor-{i}"), episodes_per_chunk=2)
        for i in range(2)
    ]
    # (actor, length, end, actor steps when the episode ended)
    plan = [
        (0, 3, "terminal", 10),
        (1, 4, "timeout", 12),
        (0, 2, "timeout", 25),
        (1, 5, "terminal", 31),
        (0, 1, "timeout", 40),
    ]
    observations = {}
    for actor, length, end, steps in plan:
        observations[steps] = _run_episode(recorders[actor], rng, length, end, steps)
    # A commit without a finished episode files nothing.
    recorders[0].commit(99)
    chunks = sorted(os.listdir(os.path.join(episodes_dir(run_dir), "actor-0")))
    assert chunks == ["chunk-000000.npz"]  # 2 episodes per chunk; the third is still pending
    for recorder in recorders:
        recorder.flush()

    everything = validate(read_recorded_episodes(run_dir))
    assert everything.num_episodes == 5
    assert [s.stop - s.start for s in everything.episode_slices()] == [3, 4, 2, 5, 1]
    for rows, (_, _, end, steps) in zip(everything.episode_slices(), plan, strict=True):
        np.testing.assert_array_equal(everything.observations[rows], observations[steps][:-1])
        np.testing.assert_array_equal(everything.next_observations[rows], observations[steps][1:])
        assert everything.terminals[rows][-1] == (end == "terminal")
        assert everything.timeouts[rows][-1] == (end == "timeout")
        np.testing.assert_array_equal(everything.rewards[rows], np.arange(rows.stop - rows.start))

    early = read_recorded_episodes(run_dir, until_actor_steps=25, metadata={"policy": "x"})
    assert [s.stop - s.start for s in early.episode_slices()] == [3, 4, 2]
    assert early.metadata == {"policy": "x"}
    assert len(read_recorded_episodes(run_dir, until_actor_steps=24)) == 7
    with pytest.raises(DatasetError) as error:
        read_recorded_episodes(run_dir, until_actor_steps=5)
    assert_refused(error, "actor step 5")

    # A restarted actor continues the chunk numbering.
    restarted = EpisodeRecorder(
        os.path.join(episodes_dir(run_dir), "actor-0"), episodes_per_chunk=1
    )
    _run_episode(restarted, rng, 2, "terminal", 50)
    assert sorted(os.listdir(os.path.join(episodes_dir(run_dir), "actor-0")))[-1] == (
        "chunk-000002.npz"
    )
    assert read_recorded_episodes(run_dir).num_episodes == 6
