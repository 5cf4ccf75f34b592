"""Offline datasets as users bring them: derived next observations, 0/1 flags, action units."""

from __future__ import annotations

import json
import os

import dm_env
import h5py
import numpy as np
import pytest
from dm_env import specs

from antiphon.environments import make_environment
from antiphon.environments.datasets import (
    Dataset,
    DatasetError,
    check_matches_environment,
    describe_preparation,
    load_dataset,
    prepare_for_environment,
    prepare_for_specs,
    save_dataset,
    validate,
)
from antiphon.environments.datasets.recorder import EpisodeRecorder
from antiphon.environments.wrappers import CanonicalActionWrapper, native_action_spec
from antiphon.launch.collect import collect

PENDULUM = "gym:Pendulum-v1"
DATA = os.path.join(os.path.dirname(__file__), "data")

# A hand-built file in d3rlpy's `MDPDataset` layout (no next_observations), Pendulum's shapes:
# episode 0 rows 0-2 ends in a true terminal, episode 1 rows 3-6 is cut by the time limit,
# episode 2 rows 7-8 ends in a true terminal.
ROWS = 9
TERMINAL_ROWS = (2, 8)
TIMEOUT_ROWS = (6,)


def stored_arrays(flag_dtype=np.float32) -> dict[str, np.ndarray]:
    rows = np.arange(ROWS, dtype=np.float32)
    terminals = np.zeros(ROWS, flag_dtype)
    terminals[list(TERMINAL_ROWS)] = 1
    timeouts = np.zeros(ROWS, flag_dtype)
    timeouts[list(TIMEOUT_ROWS)] = 1
    return {
        # Row i observes (i, 10 + i, 100 + i): every derived next observation names its row.
        "observations": np.stack([rows, 10 + rows, 100 + rows], axis=1),
        "actions": ((rows - 4) / 2)[:, None],  # -2, -1.5, ..., 2: Pendulum's native units
        "rewards": -rows,
        "terminals": terminals,
        "timeouts": timeouts,
    }


def observation(row: int) -> list[float]:
    return [row, 10 + row, 100 + row]


def write(path: str, arrays: dict[str, np.ndarray], metadata: dict | None = None) -> str:
    """The arrays as another tool writes them: np.savez, or h5py datasets."""
    if path.endswith(".npz"):
        extra = {} if metadata is None else {"metadata": np.array(json.dumps(metadata))}
        np.savez(path, **arrays, **extra)
    else:
        with h5py.File(path, "w") as f:
            for name, value in arrays.items():
                f.create_dataset(name, data=value)
            if metadata is not None:
                f.attrs["metadata"] = json.dumps(metadata)
    return path


def assert_one_line(error: pytest.ExceptionInfo, *words: str) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, (word, message)
    return message


@pytest.fixture(scope="module")
def pendulum():
    environment = make_environment(PENDULUM, seed=0)
    yield environment
    environment.close()


def normalized_dataset(actions: np.ndarray, metadata: dict) -> Dataset:
    """A dataset with next observations stored, Pendulum's shapes, the given actions."""
    arrays = stored_arrays(np.bool_)
    n = len(actions)
    arrays = {k: v[:n] for k, v in arrays.items()}
    arrays["terminals"][-1] = True
    arrays["timeouts"][-1] = False
    arrays["next_observations"] = arrays["observations"] + 0.5
    arrays["actions"] = np.asarray(actions, np.float32)
    return validate(Dataset(**arrays, metadata=metadata))


# ----------------------------------------------------------------------------------------------
# Derived next observations


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_next_observations_are_derived_within_episodes(tmp_path, suffix):
    stored = stored_arrays()
    path = write(str(tmp_path / f"d3rlpy{suffix}"), stored)
    loaded = load_dataset(path)
    # The timeout episode's last row (6) has no successor: dropped, row 5 becomes the timeout.
    kept = [0, 1, 2, 3, 4, 5, 7, 8]
    np.testing.assert_array_equal(loaded.observations, stored["observations"][kept])
    np.testing.assert_array_equal(
        loaded.next_observations,
        np.array(
            [
                observation(1),
                observation(2),
                observation(2),  # terminal: its own observation, a placeholder never read
                observation(4),  # the next episode starts at row 3: not read across the end
                observation(5),
                observation(6),  # the new timeout bootstraps from the dropped row's observation
                observation(8),
                observation(8),  # terminal placeholder
            ],
            np.float32,
        ),
    )
    np.testing.assert_array_equal(loaded.actions, stored["actions"][kept])
    np.testing.assert_array_equal(loaded.rewards, stored["rewards"][kept])
    np.testing.assert_array_equal(loaded.terminals, [0, 0, 1, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(loaded.timeouts, [0, 0, 0, 0, 0, 1, 0, 0])
    assert loaded.terminals.dtype == loaded.timeouts.dtype == np.bool_
    assert [s.stop - s.start for s in loaded.episode_slices()] == [3, 3, 2]
    assert loaded.metadata["derived_next_observations"] == {
        "from": "observations of the following row, within episodes",
        "terminal_next_observations": "placeholder: the terminal row's own observation",
        "dropped_timeout_transitions": 1,
    }


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_one_step_timeout_episodes_vanish_and_are_counted(tmp_path, suffix):
    # Episodes: [0, 1] timeout, [2] timeout (one step), [3, 4] terminal, [5] timeout (one step).
    n = 6
    arrays = {
        "observations": np.arange(n * 3, dtype=np.float32).reshape(n, 3),
        "actions": np.zeros((n, 1), np.float32),
        "rewards": np.arange(n, dtype=np.float32),
        "terminals": np.array([0, 0, 0, 0, 1, 0], np.int64),
        "timeouts": np.array([0, 1, 1, 0, 0, 1], np.int64),
    }
    loaded = load_dataset(write(str(tmp_path / f"short{suffix}"), arrays, {"policy": "x"}))
    np.testing.assert_array_equal(loaded.rewards, [0, 3, 4])
    np.testing.assert_array_equal(loaded.next_observations, arrays["observations"][[1, 4, 4]])
    np.testing.assert_array_equal(loaded.terminals, [0, 0, 1])
    np.testing.assert_array_equal(loaded.timeouts, [1, 0, 0])
    assert loaded.metadata["policy"] == "x"
    assert loaded.metadata["derived_next_observations"]["dropped_timeout_transitions"] == 3


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_stored_next_observations_are_kept_with_their_timeouts(tmp_path, suffix):
    stored = stored_arrays()
    stored["next_observations"] = stored["observations"] + 0.25
    loaded = load_dataset(write(str(tmp_path / f"full{suffix}"), stored))
    assert len(loaded) == ROWS  # nothing dropped: the file knows every next observation
    np.testing.assert_array_equal(loaded.next_observations, stored["observations"] + 0.25)
    np.testing.assert_array_equal(loaded.timeouts, stored["timeouts"].astype(bool))
    assert "derived_next_observations" not in loaded.metadata


def test_a_file_of_only_one_step_timeouts_is_refused(tmp_path):
    arrays = stored_arrays()
    arrays["terminals"][:] = 0
    arrays["timeouts"][:] = 1
    path = write(str(tmp_path / "empty.npz"), arrays)
    with pytest.raises(DatasetError) as error:
        load_dataset(path)
    assert_one_line(error, path, "'next_observations'", "nothing is left")


# ----------------------------------------------------------------------------------------------
# Flags


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32, np.uint8])
@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_integer_and_float_flags_are_read_as_bools(tmp_path, dtype, suffix):
    stored = stored_arrays(dtype)
    stored["next_observations"] = stored["observations"] * 2
    loaded = load_dataset(write(str(tmp_path / f"flags{suffix}"), stored))
    expected_terminals = np.zeros(ROWS, bool)
    expected_terminals[list(TERMINAL_ROWS)] = True
    expected_timeouts = np.zeros(ROWS, bool)
    expected_timeouts[list(TIMEOUT_ROWS)] = True
    assert loaded.terminals.dtype == loaded.timeouts.dtype == np.bool_
    np.testing.assert_array_equal(loaded.terminals, expected_terminals)
    np.testing.assert_array_equal(loaded.timeouts, expected_timeouts)


@pytest.mark.parametrize(
    "field,value,shown",
    [
        ("terminals", 0.5, "0.5"),
        ("terminals", np.nan, "nan"),
        ("timeouts", 2.0, "2"),
        ("timeouts", -1.0, "-1"),
    ],
)
@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_flags_other_than_zero_or_one_are_refused_naming_the_row(
    tmp_path, field, value, shown, suffix
):
    stored = stored_arrays(np.float32)
    stored[field][4] = value
    path = write(str(tmp_path / f"bad-flags{suffix}"), stored)
    with pytest.raises(DatasetError) as error:
        load_dataset(path)
    message = assert_one_line(error, path, f"'{field}'", f"value {shown} at row 4")
    assert message == (
        f"{path}: field '{field}' has value {shown} at row 4; flags must be bool or 0/1"
        " (integer or float)"
    )


def test_integer_flags_other_than_zero_or_one_are_refused():
    arrays = stored_arrays(np.int64)
    arrays["next_observations"] = arrays["observations"]
    arrays["terminals"][7] = 3
    with pytest.raises(DatasetError) as error:
        validate(Dataset(**arrays), source="ints.npz")
    assert_one_line(error, "ints.npz", "'terminals'", "value 3 at row 7")


# ----------------------------------------------------------------------------------------------
# Action units


def test_native_action_spec_walks_the_wrapper_chain(pendulum):
    native = native_action_spec(pendulum)
    assert isinstance(native, specs.BoundedArray) and native.shape == (1,)
    np.testing.assert_array_equal(native.minimum, [-2.0])
    np.testing.assert_array_equal(native.maximum, [2.0])
    np.testing.assert_array_equal(pendulum.action_spec().minimum, [-1.0])  # canonical outside
    repeated = make_environment(PENDULUM, seed=0, action_repeat=3)
    try:
        np.testing.assert_array_equal(native_action_spec(repeated).maximum, [2.0])
    finally:
        repeated.close()


class _Bare(dm_env.Environment):
    """An environment without antiphon's wrappers, action bounds [0, 4] x [-1, 3]."""

    def reset(self):
        return dm_env.restart(np.zeros(3, np.float32))

    def step(self, action):
        return dm_env.transition(0.0, np.zeros(3, np.float32))

    def observation_spec(self):
        return specs.Array((3,), np.float32)

    def action_spec(self):
        return specs.BoundedArray((2,), np.float32, [0.0, -1.0], [4.0, 3.0])


def test_native_action_spec_without_canonical_wrapper_is_the_action_spec():
    bare = _Bare()
    assert native_action_spec(bare) is not None
    np.testing.assert_array_equal(native_action_spec(bare).maximum, [4.0, 3.0])
    wrapped = CanonicalActionWrapper(bare)
    np.testing.assert_array_equal(native_action_spec(wrapped).minimum, [0.0, -1.0])
    np.testing.assert_array_equal(wrapped.action_spec().minimum, [-1.0, -1.0])


def test_a_d3rlpy_pendulum_file_loads_in_native_units(tmp_path, pendulum):
    stored = stored_arrays()
    path = write(str(tmp_path / "pendulum.npz"), stored)
    dataset, info = prepare_for_environment(load_dataset(path), pendulum, None, source=path)
    kept = [0, 1, 2, 3, 4, 5, 7, 8]
    expected = stored["actions"][kept] / 2
    assert dataset.actions.dtype == np.float32
    np.testing.assert_array_equal(dataset.actions, expected)
    np.testing.assert_array_equal(dataset.actions[[0, -1], 0], [-1.0, 1.0])
    assert info == {
        "action_units": "native",
        "decided_by": "default for non-antiphon data",
        "native_low": [-2.0],
        "native_high": [2.0],
        "rescaled": True,
        "derived_next_observations": True,
        "dropped_timeout_transitions": 1,
    }
    assert describe_preparation(info) == (
        "actions: native units [-2, 2] -> [-1, 1] (no action_units in the metadata; override"
        " with --dataset-action-units); next observations derived from the following rows"
        " (1 timeout transition dropped)"
    )
    assert dataset.metadata["action_units"] == "normalized"
    assert dataset.metadata["native_action_bounds"] == {"low": [-2.0], "high": [2.0]}
    # What it says now holds: saved and read again, it is left as it is.
    save_dataset(dataset, str(tmp_path / "prepared.h5"))
    again, info = prepare_for_environment(
        load_dataset(str(tmp_path / "prepared.h5")), pendulum, source="prepared.h5"
    )
    np.testing.assert_array_equal(again.actions, expected)
    assert (info["action_units"], info["decided_by"]) == ("normalized", "metadata")


def test_random_native_actions_map_to_exactly_half(pendulum):
    rng = np.random.default_rng(0)
    raw = rng.uniform(-2, 2, size=(4, 1)).astype(np.float32)
    raw[0, 0], raw[1, 0] = -2.0, 2.0
    dataset = normalized_dataset(raw, {"environment": PENDULUM, "action_units": "native"})
    prepared, info = prepare_for_environment(dataset, pendulum, source="native.h5")
    np.testing.assert_array_equal(prepared.actions, raw / np.float32(2))
    assert (info["action_units"], info["decided_by"], info["rescaled"]) == (
        "native",
        "metadata",
        True,
    )
    assert describe_preparation(info) == (
        "actions: native units [-2, 2] -> [-1, 1] (action_units in the metadata; override with"
        " --dataset-action-units)"
    )
    # The other fields are untouched.
    for name in ("observations", "rewards", "next_observations", "terminals", "timeouts"):
        np.testing.assert_array_equal(getattr(prepared, name), getattr(dataset, name))


def test_antiphon_normalized_datasets_are_untouched(pendulum):
    actions = np.array([[-1.0], [0.3], [1.0], [-0.7]], np.float32)
    dataset = normalized_dataset(actions, {"environment": PENDULUM, "action_units": "normalized"})
    prepared, info = prepare_for_environment(dataset, pendulum, source="ours.npz")
    np.testing.assert_array_equal(prepared.actions, actions)
    assert info["action_units"] == "normalized" and info["decided_by"] == "metadata"
    assert info["rescaled"] is False
    assert describe_preparation(info) == (
        "actions: normalized units [-1, 1], as stored (action_units in the metadata; override"
        " with --dataset-action-units)"
    )
    # Older antiphon datasets: no action_units, but antiphon's own `policy` record.
    old = normalized_dataset(actions, {"environment": PENDULUM, "policy": {"kind": "snapshot"}})
    prepared, info = prepare_for_environment(old, pendulum, source="old.npz")
    np.testing.assert_array_equal(prepared.actions, actions)
    assert info["decided_by"] == "antiphon metadata without action_units"
    assert prepared.metadata["action_units"] == "normalized"
    # A `policy` that is only a name (Minari's algorithm name) is not antiphon's.
    foreign = normalized_dataset(actions, {"policy": "random"})
    prepared, info = prepare_for_environment(foreign, pendulum, source="foreign.npz")
    np.testing.assert_array_equal(prepared.actions, actions / 2)


def test_the_override_works_both_ways(pendulum):
    small = np.array([[-1.0], [0.5], [1.0], [0.25]], np.float32)
    # Marked normalized, read as native: halved.
    marked = normalized_dataset(small, {"action_units": "normalized"})
    prepared, info = prepare_for_environment(marked, pendulum, "native", source="a.npz")
    np.testing.assert_array_equal(prepared.actions, small / 2)
    assert (info["action_units"], info["decided_by"]) == ("native", "--dataset-action-units")
    assert describe_preparation(info) == (
        "actions: native units [-2, 2] -> [-1, 1] (--dataset-action-units native)"
    )
    # Unmarked (native by default), read as normalized: untouched.
    unmarked = normalized_dataset(small, {"environment": PENDULUM})
    prepared, info = prepare_for_environment(unmarked, pendulum, "normalized", source="b.npz")
    np.testing.assert_array_equal(prepared.actions, small)
    assert (info["action_units"], info["decided_by"]) == ("normalized", "--dataset-action-units")
    with pytest.raises(DatasetError) as error:
        prepare_for_environment(unmarked, pendulum, "normalised", source="b.npz")
    assert_one_line(error, "b.npz", "--dataset-action-units", "'normalised'", "native | normalized")


def test_out_of_range_actions_are_refused_in_one_line_with_a_hint(tmp_path, pendulum):
    stored = stored_arrays()
    path = write(str(tmp_path / "labelled.npz"), stored, {"action_units": "normalized"})
    dataset = load_dataset(path)
    with pytest.raises(DatasetError) as error:
        prepare_for_environment(dataset, pendulum, source=path)
    message = assert_one_line(error)
    assert message == (
        f"{path}: field 'actions' in normalized units (decided by metadata) has values outside"
        " antiphon's normalized action bounds [-1, 1]: first at row 0, -2; the values fit the"
        " environment's native action bounds [-2, 2]: try --dataset-action-units native"
    )
    # Told they are native, they load.
    prepared, _ = prepare_for_environment(dataset, pendulum, "native", source=path)
    np.testing.assert_array_equal(prepared.actions, dataset.actions / 2)

    far = stored_arrays()
    far["actions"][3, 0] = 3.5
    path = write(str(tmp_path / "far.npz"), far)
    with pytest.raises(DatasetError) as error:
        prepare_for_environment(load_dataset(path), pendulum, source=path)
    message = assert_one_line(error)
    assert message == (
        f"{path}: field 'actions' in native units (decided by default for non-antiphon data) has"
        " values outside the environment's native action bounds [-2, 2]: first at row 3, 3.5;"
        " antiphon's normalized action bounds [-1, 1] do not fit them either"
    )


def test_shapes_are_checked_before_units(pendulum):
    dataset = normalized_dataset(np.zeros((4, 1), np.float32), {})
    wide = Dataset(**dict(dataset.arrays(), actions=np.full((4, 2), 5.0, np.float32)))
    with pytest.raises(DatasetError) as error:
        prepare_for_environment(wide, pendulum, source="wide.npz")
    assert_one_line(error, "wide.npz", "'actions'", "per-step shape (2,)", "(1,)")


def test_bounds_per_dimension_and_specs(tmp_path):
    # Native bounds [0, 4] x [-1, 3]: centres (2, 1), half-widths (2, 2).
    env_spec = type(
        "Spec",
        (),
        {
            "observations": specs.Array((3,), np.float32),
            "actions": specs.BoundedArray((2,), np.float32, -1.0, 1.0),
        },
    )()
    native = _Bare().action_spec()
    arrays = stored_arrays(np.bool_)
    arrays = {k: v[:3] for k, v in arrays.items()}
    arrays["terminals"][-1] = True
    arrays["next_observations"] = arrays["observations"]
    arrays["actions"] = np.array([[0.0, -1.0], [4.0, 3.0], [3.0, 2.0]], np.float32)
    dataset = validate(Dataset(**arrays))
    prepared, info = prepare_for_specs(dataset, env_spec, native, source="two.npz")
    np.testing.assert_array_equal(prepared.actions, [[-1, -1], [1, 1], [0.5, 0.5]])
    assert info["native_low"] == [0.0, -1.0] and info["native_high"] == [4.0, 3.0]
    assert describe_preparation(info).startswith(
        "actions: native units [[0, -1], [4, 3]] -> [-1, 1]"
    )


def test_check_matches_environment_names_the_first_offending_row(pendulum):
    from antiphon.core.types import make_environment_spec

    dataset = normalized_dataset(np.array([[0.0], [0.5], [-1.5], [2.0]], np.float32), {})
    with pytest.raises(DatasetError) as error:
        check_matches_environment(dataset, make_environment_spec(pendulum), source="x.h5")
    assert_one_line(error, "x.h5", "'actions'", "[-1, 1]", "first at row 2: -1.5")


# ----------------------------------------------------------------------------------------------
# What antiphon writes says its units


def test_collect_records_normalized_action_units(tmp_path, pendulum):
    dataset = collect(PENDULUM, "random", num_episodes=1, seed=3)
    assert dataset.metadata["action_units"] == "normalized"
    path = str(tmp_path / "collected.npz")
    save_dataset(dataset, path)
    loaded = load_dataset(path)
    prepared, info = prepare_for_environment(loaded, pendulum, source=path)
    np.testing.assert_array_equal(prepared.actions, dataset.actions)
    assert (info["action_units"], info["decided_by"]) == ("normalized", "metadata")


def test_recorder_chunks_say_normalized(tmp_path, pendulum):
    directory = str(tmp_path / "episodes" / "actor-0")
    recorder = EpisodeRecorder(directory, episodes_per_chunk=1)
    recorder.observe_first(None, dm_env.restart(np.zeros(3, np.float32)))
    recorder.observe(None, dm_env.transition(1.0, np.ones(3, np.float32)), np.array([0.5]))
    recorder.observe(None, dm_env.truncation(2.0, np.full(3, 2.0, np.float32)), np.array([-1.0]))
    recorder.commit(2)
    path = os.path.join(directory, "chunk-000000.npz")
    chunk = load_dataset(path)
    assert chunk.metadata == {"action_units": "normalized"}
    np.testing.assert_array_equal(chunk.actions, [[0.5], [-1.0]])
    np.testing.assert_array_equal(chunk.next_observations, [[1, 1, 1], [2, 2, 2]])
    # A chunk written before chunks carried metadata is recognised by the recorder's arrays.
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files if k != "metadata"}
    old = str(tmp_path / "old-chunk.npz")
    np.savez(old, **arrays)
    prepared, info = prepare_for_environment(load_dataset(old), pendulum, source=old)
    np.testing.assert_array_equal(prepared.actions, [[0.5], [-1.0]])
    assert (info["action_units"], info["decided_by"]) == ("normalized", "metadata")


def test_minari_datasets_say_native():
    dataset = load_dataset(os.path.join(DATA, "minari-tiny"))
    assert dataset.metadata["action_units"] == "native"


def test_dm_control_native_units_are_already_the_box():
    environment = make_environment("dmc:cartpole-swingup", seed=0, action_repeat=2)
    try:
        native = native_action_spec(environment)
        np.testing.assert_array_equal(native.minimum, [-1.0])
        np.testing.assert_array_equal(native.maximum, [1.0])
        actions = np.array([[-1.0], [0.123], [1.0], [-0.5]], np.float32)
        arrays = normalized_dataset(actions, {}).arrays()
        arrays["observations"] = np.zeros((4, 5), np.float32)
        arrays["next_observations"] = np.ones((4, 5), np.float32)
        dataset = Dataset(**arrays, metadata={"environment": "dmc:cartpole-swingup"})
        prepared, info = prepare_for_environment(dataset, environment, source="dmc.h5")
    finally:
        environment.close()
    np.testing.assert_array_equal(prepared.actions, actions)
    assert (info["action_units"], info["rescaled"]) == ("native", False)
    assert describe_preparation(info) == (
        "actions: native units [-1, 1] = antiphon's [-1, 1] (no action_units in the metadata;"
        " override with --dataset-action-units)"
    )
