"""The in-memory offline dataset every format reads into and writes from.

A `Dataset` is a flat table of transitions in episode order (the D4RL layout):

    observations[i], actions[i], rewards[i], next_observations[i], terminals[i], timeouts[i]

`terminals[i]` marks a true terminal (the environment's discount is 0 after step i: nothing
follows); `timeouts[i]` marks a time-limit truncation (the episode was cut, the state is not
terminal and bootstrapping from `next_observations[i]` is correct). Every episode ends with exactly
one of the two, so episode boundaries are `terminals | timeouts`, and the last transition of a
dataset always ends an episode.

`metadata` is a JSON-serialisable dict: `environment` (registry name), `action_repeat`, `policy`
(what produced the data), `episode_returns`, and free-form fields.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
FLOAT_FIELDS = ("observations", "actions", "rewards", "next_observations")
BOOL_FIELDS = ("terminals", "timeouts")


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


def validate(dataset: Dataset, source: str = "dataset") -> Dataset:
    """Checks the layout and returns the dataset with canonical dtypes.

    Raises DatasetError (one line, naming `source` and the field) on: wrong rank, ragged lengths,
    non-numeric dtypes, NaN/inf values, an episode that never ends, a step that is both a
    terminal and a timeout.
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
        value = arrays[name]
        if value.dtype != np.bool_:
            if not np.issubdtype(value.dtype, np.integer) or not np.isin(value, (0, 1)).all():
                raise DatasetError(
                    f"{source}: field '{name}' has dtype {value.dtype}, expected bool (or 0/1)"
                )
            value = value.astype(bool)
        out[name] = value
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


def check_matches_environment(dataset: Dataset, env_spec, source: str = "dataset") -> None:
    """Refuses a dataset whose observation or action shapes do not fit `env_spec`.

    `env_spec` is antiphon's EnvironmentSpec (flat float observation, bounded action).
    """
    obs_shape = tuple(env_spec.observations.shape)
    act_spec = env_spec.actions
    if tuple(dataset.observations.shape[1:]) != obs_shape:
        raise DatasetError(
            f"{source}: field 'observations' has per-step shape {dataset.observations.shape[1:]},"
            f" the environment's observation spec is {obs_shape}"
        )
    if tuple(dataset.actions.shape[1:]) != tuple(act_spec.shape):
        raise DatasetError(
            f"{source}: field 'actions' has per-step shape {dataset.actions.shape[1:]},"
            f" the environment's action spec is {tuple(act_spec.shape)}"
        )
    low = np.asarray(getattr(act_spec, "minimum", -np.inf), np.float32)
    high = np.asarray(getattr(act_spec, "maximum", np.inf), np.float32)
    tolerance = 1e-4
    if (dataset.actions < low - tolerance).any() or (dataset.actions > high + tolerance).any():
        raise DatasetError(
            f"{source}: field 'actions' has values in [{dataset.actions.min():.3g},"
            f" {dataset.actions.max():.3g}], outside the environment's action bounds"
            f" [{float(np.min(low)):.3g}, {float(np.max(high)):.3g}]"
        )


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
