"""The in-memory offline dataset every format reads into and writes from.

A `Dataset` is a flat table of transitions in episode order (the D4RL layout):

    observations[i], actions[i], rewards[i], next_observations[i], terminals[i], timeouts[i]

`terminals[i]` marks a true terminal (the environment's discount is 0 after step i: nothing
follows); `timeouts[i]` marks a time-limit truncation (the episode was cut, the state is not
terminal and bootstrapping from `next_observations[i]` is correct). Every episode ends with exactly
one of the two, so episode boundaries are `terminals | timeouts`, and the last transition of a
dataset always ends an episode.

Flags (`terminals`, `timeouts`) are bool; `validate` also accepts integer or float 0/1 flags (the
common case in files other tools write: d3rlpy's arrays, converted D4RL files) and converts them,
and refuses any other value (0.5, 2, -1, NaN) naming the field, the value and its row.

`metadata` is a JSON-serialisable dict: `environment` (registry name), `action_repeat`, `policy`
(what produced the data), `episode_returns`, `action_units` and free-form fields.

* `action_units`: "normalized" when the actions are in antiphon's internal [-1, 1] box (what
  `antiphon collect` and the recorder write), "native" when they are in the environment's own
  units (gymnasium, Minari, D4RL). Absent in other tools' files and older antiphon datasets;
  `prepare_for_environment` decides then (the "Action units" section below) and maps native
  actions to [-1, 1].
* `derived_next_observations`: present when the file stored no `next_observations` and they were
  derived (`derive_next_observations`): `{"from": ..., "terminal_next_observations": ...,
  "dropped_timeout_transitions": n}`, the same dict for every format.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from dm_env import specs

FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
FLOAT_FIELDS = ("observations", "actions", "rewards", "next_observations")
BOOL_FIELDS = ("terminals", "timeouts")
DERIVED_NEXT_OBSERVATIONS = "derived_next_observations"  # the metadata key (see the docstring)


class DatasetError(ValueError):
    """A dataset that cannot be used. The message is one line and names the file and field."""


def first_line(error: BaseException) -> str:
    """`Type: first line of the message`, for one-line errors that wrap a library's."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


@contextlib.contextmanager
def one_line_errors(path: Any, what: str = "cannot read the file"):
    """Lets DatasetErrors through and turns anything unforeseen (h5py, TFDS, zip, ...) into one
    that names `path`."""
    try:
        yield
    except DatasetError:
        raise
    except Exception as error:
        raise DatasetError(f"{path}: {what} ({first_line(error)})") from None


@dataclasses.dataclass
class Dataset:
    observations: np.ndarray  # [N, obs_dim] float32
    actions: np.ndarray  # [N, act_dim] float32
    rewards: np.ndarray  # [N] float32
    next_observations: np.ndarray  # [N, obs_dim] float32
    terminals: np.ndarray  # [N] bool
    timeouts: np.ndarray  # [N] bool
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.rewards.shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in FIELDS}

    @property
    def episode_ends(self) -> np.ndarray:
        """Indices of the last transition of each episode."""
        return np.flatnonzero(self.terminals | self.timeouts)

    def episode_slices(self) -> list[slice]:
        ends = self.episode_ends
        starts = np.concatenate([[0], ends[:-1] + 1])
        return [slice(int(s), int(e) + 1) for s, e in zip(starts, ends, strict=True)]

    def episode_returns(self) -> np.ndarray:
        return np.array([float(self.rewards[s].sum()) for s in self.episode_slices()])

    @property
    def num_episodes(self) -> int:
        return int(self.episode_ends.shape[0])

    @property
    def discounts(self) -> np.ndarray:
        """The environment's discount after each step: 0 at true terminals, else 1."""
        return (~self.terminals).astype(np.float32)

    def summary(self) -> dict[str, Any]:
        returns = self.episode_returns()
        return {
            "transitions": len(self),
            "episodes": self.num_episodes,
            "return_mean": float(returns.mean()) if len(returns) else float("nan"),
            "return_std": float(returns.std()) if len(returns) else float("nan"),
            "return_min": float(returns.min()) if len(returns) else float("nan"),
            "return_max": float(returns.max()) if len(returns) else float("nan"),
            "terminals": int(self.terminals.sum()),
            "timeouts": int(self.timeouts.sum()),
        }


def from_episodes(
    episodes: list[Mapping[str, np.ndarray]], metadata: dict[str, Any] | None = None
) -> Dataset:
    """Episodes (each a mapping of the six fields) one after another, as one Dataset."""
    if not episodes:
        raise DatasetError("cannot make a dataset from zero episodes")
    arrays = {name: np.concatenate([e[name] for e in episodes]) for name in FIELDS}
    return Dataset(**arrays, metadata=dict(metadata or {}))


def concatenate(datasets: list[Dataset], metadata: dict[str, Any] | None = None) -> Dataset:
    """Datasets one after another (episodes stay whole: each dataset ends an episode)."""
    if not datasets:
        raise DatasetError("cannot concatenate zero datasets")
    arrays = {name: np.concatenate([getattr(d, name) for d in datasets], axis=0) for name in FIELDS}
    return Dataset(**arrays, metadata=dict(metadata or datasets[0].metadata))


def flags_to_bool(value: np.ndarray, source: str, field: str) -> np.ndarray:
    """Per-step flags as bool: bool arrays as they are, integer or float arrays holding only 0
    and 1 converted (losslessly). Anything else (0.5, 2, -1, NaN, strings) is a DatasetError
    naming `source`, `field`, the first offending value and its row."""
    value = np.asarray(value)
    if value.dtype == np.bool_:
        return value
    if value.dtype.kind not in "iuf":
        raise DatasetError(
            f"{source}: field '{field}' has dtype {value.dtype}, expected bool (or 0/1)"
        )
    bad = ~np.isin(value, (0, 1))  # NaN is never in (0, 1)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        offending = value[index].item()
        shown = f"{offending:.6g}" if isinstance(offending, float) else str(offending)
        raise DatasetError(
            f"{source}: field '{field}' has value {shown} at row {index[0]}; flags must be"
            " bool or 0/1 (integer or float)"
        )
    return value.astype(bool)


def derive_next_observations(
    arrays: Mapping[str, np.ndarray],
    metadata: dict[str, Any] | None = None,
    source: str = "dataset",
) -> Dataset:
    """A validated Dataset from the stored fields of a file without `next_observations` (D4RL's
    raw files, d3rlpy's `MDPDataset` arrays): each transition's next observation is the
    following row's observation, within episodes.

    The last transition of an episode has no following row to take it from:

    * an episode that ends in a true terminal keeps that transition, with `next_observations[i]`
      set to `observations[i]` (a placeholder: the discount after a terminal is 0, so TD targets
      never read it);
    * an episode that ends in a timeout loses that transition (bootstrapping from it needs the
      real next observation), and the transition before it becomes the timeout. A
      one-transition timeout episode disappears.

    This is D4RL's own `qlearning_dataset` convention, minus its bug of reading across
    terminals. The metadata records it under `derived_next_observations` (`from`,
    `terminal_next_observations` and `dropped_timeout_transitions`, the number of transitions
    dropped), so nothing is dropped silently. Every reader that derives uses this function.
    """
    # Validate what is there first, so the derivation works on well-formed arrays.
    stored = {name: arrays[name] for name in FIELDS if name != "next_observations"}
    placeholder = dict(stored, next_observations=stored["observations"])
    dataset = validate(Dataset(**placeholder, metadata=dict(metadata or {})), source=source)
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
    if not keep.any():
        raise DatasetError(
            f"{source}: field 'next_observations' is missing and every transition ends a timeout"
            " episode: nothing is left after deriving it"
        )
    derived_metadata = dict(dataset.metadata)
    derived_metadata[DERIVED_NEXT_OBSERVATIONS] = {
        "from": "observations of the following row, within episodes",
        "terminal_next_observations": "placeholder: the terminal row's own observation",
        "dropped_timeout_transitions": int(dataset.timeouts.sum()),
    }
    derived = Dataset(
        observations=observations[keep],
        actions=dataset.actions[keep],
        rewards=dataset.rewards[keep],
        next_observations=next_observations[keep],
        terminals=dataset.terminals[keep],
        timeouts=timeouts[keep],
        metadata=derived_metadata,
    )
    return validate(derived, source=source)


def dropped_timeout_transitions(dataset: Dataset) -> int:
    """How many timeout transitions `derive_next_observations` dropped (0 when the file stored
    `next_observations`)."""
    derived = dataset.metadata.get(DERIVED_NEXT_OBSERVATIONS)
    if isinstance(derived, Mapping):
        return int(derived.get("dropped_timeout_transitions", 0))
    return 0


def validate(dataset: Dataset, source: str = "dataset") -> Dataset:
    """Checks the layout and returns the dataset with canonical dtypes.

    Raises DatasetError (one line, naming `source` and the field) on: wrong rank, ragged lengths,
    non-numeric dtypes, NaN/inf values, flags other than bool or 0/1 (`flags_to_bool`), an episode
    that never ends, a step that is both a terminal and a timeout.
    """
    arrays = dataset.arrays()
    for name in FIELDS:
        value = arrays[name]
        if not isinstance(value, np.ndarray):
            raise DatasetError(f"{source}: field '{name}' is not an array")
    n = arrays["rewards"].shape[0] if arrays["rewards"].ndim >= 1 else -1
    expected_rank = {
        "observations": 2,
        "actions": 2,
        "rewards": 1,
        "next_observations": 2,
        "terminals": 1,
        "timeouts": 1,
    }
    for name, rank in expected_rank.items():
        value = arrays[name]
        if value.ndim != rank:
            raise DatasetError(
                f"{source}: field '{name}' has shape {value.shape}, expected rank {rank}"
            )
        if value.shape[0] != n:
            raise DatasetError(
                f"{source}: field '{name}' has {value.shape[0]} rows but 'rewards' has {n}"
                " (ragged fields)"
            )
    if n == 0:
        raise DatasetError(f"{source}: the dataset has no transitions")
    if arrays["observations"].shape[1:] != arrays["next_observations"].shape[1:]:
        raise DatasetError(
            f"{source}: field 'next_observations' has shape {arrays['next_observations'].shape}"
            f" but 'observations' has {arrays['observations'].shape}"
        )
    out: dict[str, np.ndarray] = {}
    for name in FLOAT_FIELDS:
        value = arrays[name]
        if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
            raise DatasetError(
                f"{source}: field '{name}' has dtype {value.dtype}, expected a float dtype"
            )
        value = value.astype(np.float32, copy=False)
        bad = ~np.isfinite(value)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise DatasetError(
                f"{source}: field '{name}' has NaN or inf values (first at row {row})"
            )
        out[name] = value
    for name in BOOL_FIELDS:
        out[name] = flags_to_bool(arrays[name], source, name)
    both = out["terminals"] & out["timeouts"]
    if both.any():
        row = int(np.flatnonzero(both)[0])
        raise DatasetError(
            f"{source}: row {row} is both a terminal and a timeout (fields 'terminals', 'timeouts')"
        )
    if not (out["terminals"][-1] or out["timeouts"][-1]):
        raise DatasetError(
            f"{source}: the last episode never ends (fields 'terminals'/'timeouts' are false at the"
            " last row); a truncated file?"
        )
    return Dataset(**out, metadata=dict(dataset.metadata))


def check_shapes_match_environment(dataset: Dataset, env_spec, source: str = "dataset") -> None:
    """Refuses a dataset whose per-step observation or action shape does not fit `env_spec`
    (antiphon's EnvironmentSpec, or anything with `observations` and `actions` specs)."""
    obs_shape = tuple(env_spec.observations.shape)
    act_shape = tuple(env_spec.actions.shape)
    if tuple(dataset.observations.shape[1:]) != obs_shape:
        raise DatasetError(
            f"{source}: field 'observations' has per-step shape {dataset.observations.shape[1:]},"
            f" the environment's observation spec is {obs_shape}"
        )
    if tuple(dataset.actions.shape[1:]) != act_shape:
        raise DatasetError(
            f"{source}: field 'actions' has per-step shape {dataset.actions.shape[1:]},"
            f" the environment's action spec is {act_shape}"
        )


ACTION_TOLERANCE = 1e-4  # in [-1, 1] units: how far outside its bounds an action may be


def first_outside(
    actions: np.ndarray, low: np.ndarray, high: np.ndarray, tolerance: np.ndarray | float = 0.0
) -> tuple[int, float] | None:
    """(row, value) of the first action outside [low - tolerance, high + tolerance], or None."""
    outside = (actions < low - tolerance) | (actions > high + tolerance)
    if not outside.any():
        return None
    row, column = (int(i) for i in np.argwhere(outside)[0])
    return row, float(actions[row, column])


def format_bounds(low: Any, high: Any) -> str:
    """`[-2, 2]` for bounds equal in every dimension, else `[[-2, -1], [2, 1]]`-style lists."""
    low = np.asarray(low, np.float64).reshape(-1)
    high = np.asarray(high, np.float64).reshape(-1)
    if low.size and (low == low[0]).all() and (high == high[0]).all():
        return f"[{low[0]:.6g}, {high[0]:.6g}]"
    return f"[[{', '.join(f'{v:.6g}' for v in low)}], [{', '.join(f'{v:.6g}' for v in high)}]]"


def check_matches_environment(dataset: Dataset, env_spec, source: str = "dataset") -> None:
    """Refuses a dataset whose observation or action shapes do not fit `env_spec`, or whose
    actions lie outside the spec's bounds (by more than `ACTION_TOLERANCE`).

    `env_spec` is antiphon's EnvironmentSpec (flat float observation, bounded action), so the
    bounds are antiphon's internal [-1, 1]: a dataset in the environment's own units goes through
    `prepare_for_environment` first.
    """
    check_shapes_match_environment(dataset, env_spec, source)
    act_spec = env_spec.actions
    low = np.asarray(getattr(act_spec, "minimum", -np.inf), np.float32)
    high = np.asarray(getattr(act_spec, "maximum", np.inf), np.float32)
    outside = first_outside(dataset.actions, low, high, ACTION_TOLERANCE)
    if outside is not None:
        row, value = outside
        bounds = format_bounds(
            np.broadcast_to(low, act_spec.shape), np.broadcast_to(high, act_spec.shape)
        )
        raise DatasetError(
            f"{source}: field 'actions' has values in [{dataset.actions.min():.3g},"
            f" {dataset.actions.max():.3g}], outside the environment's action bounds {bounds}"
            f" (first at row {row}: {value:.6g})"
        )


# ----------------------------------------------------------------------------------------------
# Action units: a dataset in antiphon's internal units, checked against its environment
#
#     dataset, info = prepare_for_environment(load_dataset(path), environment, action_units, path)
#     print(describe_preparation(info))
#
# What `antiphon train --dataset` and the offline learner node both call after `load_dataset`.
#
# Action units. Agents act in antiphon's internal box, [-1, 1] in every dimension
# (`wrappers.CanonicalActionWrapper` maps it affinely to the environment's own bounds). Datasets
# come in one of two units:
#
# * "normalized": antiphon's [-1, 1] box. What `antiphon collect` and the recorder write (their
#   metadata says `action_units: "normalized"`). Left as stored.
# * "native": the environment's own units, the bounds `wrappers.native_action_spec` returns
#   (gymnasium, Minari and D4RL store actions as the environment took them: Pendulum's [-2, 2]).
#   Mapped affinely to [-1, 1]: `(a - (high + low) / 2) / ((high - low) / 2)`, the inverse of
#   CanonicalActionWrapper's map (exactly `a / 2` for Pendulum), then clipped to [-1, 1] (only
#   values within the tolerance below can be outside). Where the native bounds are [-1, 1]
#   already (DM Control) this changes nothing.
#
# Which units a dataset is in is decided, in this order, by (`info["decided_by"]`):
#
# 1. the `action_units` argument (`--dataset-action-units native|normalized` on the command line):
#    "--dataset-action-units";
# 2. the metadata's `action_units` key: "metadata";
# 3. antiphon's own metadata without that key (datasets `antiphon collect` wrote before the key
#    existed: their `policy` is a dict whose `kind` is random | snapshot | replay | mixture):
#    "normalized", "antiphon metadata without action_units";
# 4. anything else is another tool's data: "native", "default for non-antiphon data".
#
# Actions outside the bounds of the chosen units (by more than `ACTION_TOLERANCE` of the box's
# half-width) are refused with one line naming the file, the field, the units, the bounds and the
# first offending row and value, and suggesting the other `--dataset-action-units` when the values
# fit the other units' bounds.
#
# The returned dataset's metadata says `action_units: "normalized"` (it is in antiphon's units
# now); data converted from native units also records the bounds under
# `native_action_bounds: {"low": [...], "high": [...]}`.

ACTION_UNITS = ("native", "normalized")
OVERRIDE_OPTION = "--dataset-action-units"
ACTION_UNITS_KEY = "action_units"
NATIVE_BOUNDS_KEY = "native_action_bounds"

DECIDED_BY_OVERRIDE = OVERRIDE_OPTION
DECIDED_BY_METADATA = "metadata"
DECIDED_BY_ANTIPHON = "antiphon metadata without action_units"
DECIDED_BY_DEFAULT = "default for non-antiphon data"

# `policy["kind"]` values `antiphon collect` writes (collect.py): how older antiphon datasets,
# written before `action_units` existed, are recognised.
ANTIPHON_POLICY_KINDS = ("random", "snapshot", "replay", "mixture", "babyai-bot")


def is_antiphon_dataset(metadata: Mapping[str, Any]) -> bool:
    """Whether `metadata` is antiphon's own (`antiphon collect`'s `policy` record)."""
    policy = metadata.get("policy")
    return isinstance(policy, Mapping) and policy.get("kind") in ANTIPHON_POLICY_KINDS


def decide_action_units(
    metadata: Mapping[str, Any], action_units: str | None = None, source: str = "dataset"
) -> tuple[str, str]:
    """(units, decided_by): the units of a dataset's actions, decided in the order the comment
    above `ACTION_UNITS` gives."""
    if action_units is not None:
        if action_units not in ACTION_UNITS:
            raise DatasetError(
                f"{source}: {OVERRIDE_OPTION} is {action_units!r}, expected one of"
                f" {' | '.join(ACTION_UNITS)}"
            )
        return action_units, DECIDED_BY_OVERRIDE
    if ACTION_UNITS_KEY in metadata:
        stored = metadata[ACTION_UNITS_KEY]
        if stored not in ACTION_UNITS:
            raise DatasetError(
                f"{source}: field 'metadata.{ACTION_UNITS_KEY}' is {stored!r}, expected one of"
                f" {' | '.join(ACTION_UNITS)} (or override it with {OVERRIDE_OPTION})"
            )
        return stored, DECIDED_BY_METADATA
    if is_antiphon_dataset(metadata):
        return "normalized", DECIDED_BY_ANTIPHON
    return "native", DECIDED_BY_DEFAULT


def _native_bounds(
    native_spec: Any, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray] | None:
    """The spec's (low, high) broadcast to `shape` as float64, or None when it has no finite
    continuous bounds (discrete, integer or unbounded actions: nothing to rescale)."""
    if (
        not isinstance(native_spec, specs.BoundedArray)
        or isinstance(native_spec, specs.DiscreteArray)
        or not np.issubdtype(native_spec.dtype, np.floating)
    ):
        return None
    low = np.broadcast_to(np.asarray(native_spec.minimum, np.float64), shape)
    high = np.broadcast_to(np.asarray(native_spec.maximum, np.float64), shape)
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        return None
    return low, high


def _refuse_outside(
    actions: np.ndarray,
    units: str,
    decided_by: str,
    bounds: tuple[np.ndarray, np.ndarray],
    other_bounds: tuple[np.ndarray, np.ndarray],
    tolerance: np.ndarray,
    other_tolerance: np.ndarray,
    source: str,
) -> None:
    outside = first_outside(actions, bounds[0], bounds[1], tolerance)
    if outside is None:
        return
    row, value = outside
    other = "normalized" if units == "native" else "native"
    names = {
        "native": "the environment's native action bounds",
        "normalized": "antiphon's normalized action bounds",
    }
    if first_outside(actions, other_bounds[0], other_bounds[1], other_tolerance) is None:
        hint = (
            f"the values fit {names[other]} {format_bounds(*other_bounds)}: try"
            f" {OVERRIDE_OPTION} {other}"
        )
    else:
        hint = f"{names[other]} {format_bounds(*other_bounds)} do not fit them either"
    raise DatasetError(
        f"{source}: field 'actions' in {units} units (decided by {decided_by}) has values outside"
        f" {names[units]} {format_bounds(*bounds)}: first at row {row}, {value:.6g}; {hint}"
    )


def prepare_for_specs(
    dataset: Dataset,
    env_spec: Any,
    native_spec: Any,
    action_units: str | None = None,
    source: str = "dataset",
) -> tuple[Dataset, dict[str, Any]]:
    """`prepare_for_environment` from specs: `env_spec` is the environment's antiphon
    EnvironmentSpec (actions in [-1, 1]), `native_spec` its action spec in native units
    (`wrappers.native_action_spec(environment)`)."""
    check_shapes_match_environment(dataset, env_spec, source)
    units, decided_by = decide_action_units(dataset.metadata, action_units, source)
    shape = tuple(dataset.actions.shape[1:])
    native = _native_bounds(native_spec, shape)
    info: dict[str, Any] = {
        "action_units": units,
        "decided_by": decided_by,
        "native_low": None if native is None else native[0].tolist(),
        "native_high": None if native is None else native[1].tolist(),
        "rescaled": False,
        "derived_next_observations": DERIVED_NEXT_OBSERVATIONS in dataset.metadata,
        "dropped_timeout_transitions": dropped_timeout_transitions(dataset),
    }
    metadata = dict(dataset.metadata)
    metadata[ACTION_UNITS_KEY] = "normalized"
    actions = dataset.actions
    if native is not None:
        low, high = native
        center = (high + low) / 2
        half = (high - low) / 2
        box = (np.full(shape, -1.0), np.full(shape, 1.0))
        box_tolerance = np.full(shape, ACTION_TOLERANCE)
        native_tolerance = ACTION_TOLERANCE * half
        if units == "native":
            _refuse_outside(
                actions, units, decided_by, native, box, native_tolerance, box_tolerance, source
            )
            safe_half = np.where(half > 0, half, 1.0)
            mapped = np.where(half > 0, (actions.astype(np.float64) - center) / safe_half, 0.0)
            actions = np.clip(mapped, -1.0, 1.0).astype(np.float32)
            info["rescaled"] = not (np.array_equal(low, box[0]) and np.array_equal(high, box[1]))
            metadata[NATIVE_BOUNDS_KEY] = {"low": low.tolist(), "high": high.tolist()}
        else:
            _refuse_outside(
                actions, units, decided_by, box, native, box_tolerance, native_tolerance, source
            )
    prepared = dataclasses.replace(dataset, actions=actions, metadata=metadata)
    check_matches_environment(prepared, env_spec, source)
    return prepared, info


def prepare_for_environment(
    dataset: Dataset,
    environment: Any,
    action_units: str | None = None,
    source: str = "dataset",
) -> tuple[Dataset, dict[str, Any]]:
    """The dataset in antiphon's internal units, checked against `environment`, and an info dict
    for the start line (`describe_preparation` turns it into one line).

    `environment` is the dm_env `antiphon.environments.make_environment` built (with its default
    wrappers: the native action bounds are read from its CanonicalActionWrapper).
    `action_units` is None (decide from the metadata) or "native" | "normalized" (the
    `--dataset-action-units` override). `source` names the file in error messages.

    The info dict: `action_units` (the units the file was read in), `decided_by` (see the
    comment above `ACTION_UNITS`), `native_low` / `native_high` (lists; None for actions without
    finite bounds), `rescaled` (whether the actions changed), `derived_next_observations` (bool) and
    `dropped_timeout_transitions` (int). Raises DatasetError (one line) on a dataset that does
    not fit the environment.
    """
    from antiphon.core.types import make_environment_spec
    from antiphon.environments.wrappers import native_action_spec

    return prepare_for_specs(
        dataset,
        make_environment_spec(environment),
        native_action_spec(environment),
        action_units,
        source,
    )


_REASONS = {
    DECIDED_BY_METADATA: "action_units in the metadata",
    DECIDED_BY_ANTIPHON: "antiphon metadata without action_units",
    DECIDED_BY_DEFAULT: "no action_units in the metadata",
}


def describe_preparation(info: Mapping[str, Any]) -> str:
    """One line for the start line, e.g. `actions: native units [-2, 2] -> [-1, 1] (no
    action_units in the metadata; override with --dataset-action-units)`."""
    units = info["action_units"]
    if info.get("native_low") is None:
        what = f"actions: {units} units, as stored (no finite native bounds)"
    elif units == "native":
        bounds = format_bounds(info["native_low"], info["native_high"])
        if info.get("rescaled"):
            what = f"actions: native units {bounds} -> [-1, 1]"
        else:
            what = f"actions: native units {bounds} = antiphon's [-1, 1]"
    else:
        what = "actions: normalized units [-1, 1], as stored"
    decided_by = info["decided_by"]
    if decided_by == DECIDED_BY_OVERRIDE:
        why = f"({OVERRIDE_OPTION} {units})"
    else:
        why = f"({_REASONS.get(decided_by, decided_by)}; override with {OVERRIDE_OPTION})"
    line = f"{what} {why}"
    if info.get("derived_next_observations"):
        dropped = int(info.get("dropped_timeout_transitions", 0))
        line += (
            f"; next observations derived from the following rows ({dropped} timeout"
            f" transition{'' if dropped == 1 else 's'} dropped)"
        )
    return line


# ----------------------------------------------------------------------------------------------
# Helpers shared by the file formats


def metadata_to_json(metadata: dict[str, Any], source: str = "dataset") -> str:
    """The metadata dict as JSON; numpy scalars and arrays become numbers and lists."""

    def convert(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, (set, frozenset)):
            return sorted(value)
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")

    try:
        return json.dumps(metadata, default=convert, allow_nan=True)
    except (TypeError, ValueError) as error:
        raise DatasetError(
            f"{source}: field 'metadata' cannot be stored as JSON ({error})"
        ) from None


def metadata_from_json(text: Any, source: str = "dataset") -> dict[str, Any]:
    """Parses a JSON metadata string (str, bytes or a 0-d array of either) into a dict."""
    if isinstance(text, np.ndarray):
        text = text.item() if text.size == 1 else text
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise DatasetError(
            f"{source}: field 'metadata' is a {type(text).__name__}, not a JSON string"
        )
    try:
        value = json.loads(text)
    except ValueError as error:
        raise DatasetError(f"{source}: field 'metadata' is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise DatasetError(
            f"{source}: field 'metadata' is JSON {type(value).__name__}, not an object"
        )
    return value


def _sort_key(key: Any) -> tuple[int, Any]:
    # Minari stores tuple spaces as `_index_<i>` groups: order those numerically.
    text = str(key)
    if text.startswith("_index_") and text[7:].isdigit():
        return (0, int(text[7:]))
    return (1, text)


def flatten_structure(
    value: Any, source: str, field: str
) -> tuple[np.ndarray, list[tuple[str, int]] | None]:
    """A per-step array `[T, ...]`, or a (nested) dict of them, as one `[T, D]` array.

    The policy for structured observations/actions in episode formats (RLDS, Minari): every leaf
    is reshaped to `[T, -1]` (scalars become width 1) and the leaves are concatenated in sorted
    key order, recursively (gymnasium's `Dict` spaces keep their keys sorted, so this is the
    layout of `gymnasium.wrappers.FlattenObservation`). Leaves must hold numbers or booleans;
    strings, bytes and complex numbers are refused. Returns the array and, for a dict, the
    `(key path, width)` list describing the columns (None for a plain array).
    """
    leaves: list[tuple[str, np.ndarray]] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            if not node:
                raise DatasetError(f"{source}: field '{path}' is an empty dict")
            for key in sorted(node, key=_sort_key):
                walk(node[key], f"{path}/{key}")
            return
        leaves.append((path, np.asarray(node)))

    walk(value, field)
    structured = isinstance(value, Mapping)
    length = None
    columns = []
    for path, leaf in leaves:
        if leaf.ndim == 0:
            raise DatasetError(f"{source}: field '{path}' is a scalar, expected one row per step")
        kind = leaf.dtype.kind
        if kind not in "biuf":
            raise DatasetError(
                f"{source}: field '{path}' has dtype {leaf.dtype}, expected numbers or booleans"
            )
        if length is None:
            length = leaf.shape[0]
        elif leaf.shape[0] != length:
            first = leaves[0][0]
            raise DatasetError(
                f"{source}: field '{path}' has {leaf.shape[0]} rows but '{first}' has {length}"
                " (ragged fields)"
            )
        columns.append(leaf.reshape(leaf.shape[0], -1))
    if not structured:
        return columns[0], None
    widths = [
        (path[len(field) + 1 :], int(column.shape[1]))
        for (path, _), column in zip(leaves, columns, strict=True)
    ]
    # numpy promotes mixed leaves (bool/int/float) to a float dtype that holds them exactly.
    return np.concatenate(columns, axis=1), widths
