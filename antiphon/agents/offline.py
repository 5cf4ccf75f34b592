"""Shared mechanics of offline learners: the dataset in device memory, batches drawn inside jit.

The whole dataset is one `Transition` pytree of device arrays with N rows (1-step transitions:
`discount = gamma * (1 - terminal)`, so a time-limit truncation still bootstraps). An update
samples K batches of row indices with `jax.random.randint` *inside* the jitted call and runs K SGD
steps with `lax.scan`, so a learner step moves no data between host and device
(ARCHITECTURE.md §5).

`OfflineLearner` is the Learner around an algorithm's pure `sgd_step(state, batch) ->
(state, metrics)` (`learners.GuardedLearner`, with its divergence guard); each algorithm keeps its
losses, state and step in its own `learning.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from antiphon.agents.learners import GuardedLearner, SgdStep, make_scan_update
from antiphon.core.types import Transition


def host_transitions(dataset, discount: float) -> Transition:
    """A `Dataset` (antiphon.environments.datasets) as 1-step transitions of numpy arrays.

    reward = r_t, discount = gamma * (1 - terminal_t): zero only at true terminals.
    """
    return Transition(
        observation=np.asarray(dataset.observations, np.float32),
        action=np.asarray(dataset.actions, np.float32),
        reward=np.asarray(dataset.rewards, np.float32),
        discount=(discount * (1.0 - np.asarray(dataset.terminals, np.float32))).astype(np.float32),
        next_observation=np.asarray(dataset.next_observations, np.float32),
    )


def device_transitions(dataset, discount: float, device: jax.Device | None = None) -> Transition:
    """`host_transitions` on `device` (every offline agent's data but Q_sarsa's)."""
    return jax.device_put(host_transitions(dataset, discount), device)


def sarsa_next_actions(dataset) -> tuple[np.ndarray, np.ndarray]:
    """(next_actions [N, A], keep [N] bool): the logged next action a'_t = a_{t+1} of every row
    whose episode goes on, for SARSA targets r + gamma Q(s', a').

    A true terminal keeps its row (its discount is 0, so a' is never used; it gets zeros). A
    time-limit cut (`timeouts`) and a last row of the file that ends no episode have no logged
    a': they are dropped. Raises `DatasetError` (one line) when rows are not consecutive steps
    of their episodes (s'_t != s_{t+1}: a shuffled file), since a_{t+1} would then belong to
    another state.
    """
    from antiphon.environments.datasets.core import DatasetError

    n = len(dataset)
    terminals = np.asarray(dataset.terminals, bool)
    ends = terminals | np.asarray(dataset.timeouts, bool)
    continues = ~ends
    continues[-1:] = False  # the file's last row: no next row to read a' from
    actions = np.asarray(dataset.actions, np.float32)
    next_actions = np.zeros_like(actions)
    next_actions[:-1][continues[:-1]] = actions[1:][continues[:-1]]
    if n > 1 and continues.any():
        rows = np.flatnonzero(continues)
        gap = np.abs(dataset.next_observations[rows] - dataset.observations[rows + 1])
        scale = 1e-4 * (1.0 + np.abs(dataset.observations[rows + 1]))
        apart = np.flatnonzero(np.any(gap > scale, axis=-1))
        if len(apart):
            row = int(rows[apart[0]])
            raise DatasetError(
                f"{dataset.metadata.get('source', 'the dataset')}: rows are not consecutive steps "
                f"of their episodes ({len(apart)} of {len(rows)} rows have next_observation != "
                f"the next row's observation, first at row {row}); SARSA needs the logged next "
                "action a' of each row"
            )
    return next_actions, continues | terminals


def device_sarsa_transitions(dataset, discount: float, device: jax.Device | None = None):
    """`device_transitions` of the rows with a logged next action (`sarsa_next_actions`), each
    with `extras = {"next_action": a'}`: (s, a, r, gamma (1 - terminal), s', a')."""
    next_actions, keep = sarsa_next_actions(dataset)
    transitions = jax.tree_util.tree_map(lambda x: x[keep], host_transitions(dataset, discount))
    transitions = transitions._replace(extras={"next_action": next_actions[keep]})
    return jax.device_put(transitions, device)


def reward_scale(rewards: np.ndarray, setting: float | None, action_repeat: int = 1) -> float:
    """The factor c an offline learner multiplies the dataset's rewards by (r' = c r).

    `setting` None ("auto"): c = 1 / max(1, max_t |r_t| / action_repeat), so the largest reward
    per environment step has magnitude at most 1. Data already on that scale is left exactly as
    it is: every DM Control task (rewards in [0, 1] per environment step, summed over the action
    repeat). A float is used as given (1.0: off).

    Why: an algorithm's step sizes and temperatures are tuned on some reward scale. CRR's beta
    (the exp filter's temperature) is in reward units, and Adam moves the critic's output by
    about its learning rate per step whatever the scale; on Pendulum's rewards in [-16.3, 0]
    CRR at the authors' 1e-4 let its critic drift far above any reachable return (d3rlpy's CRR
    at 1e-4 failed the same way; benchmarks/RESULTS.md, "gymnasium datasets"). Returns are
    reported in the environment's units; only the learner sees r'.
    """
    if setting is not None:
        if not setting > 0:
            raise ValueError(f"reward_scale must be > 0 (got {setting})")
        return float(setting)
    largest = float(np.max(np.abs(rewards))) if len(rewards) else 0.0
    return 1.0 / max(1.0, largest / max(int(action_repeat), 1))


def sample_batch(data: Transition, key: jax.Array, batch_size: int) -> Transition:
    """`batch_size` rows drawn uniformly with replacement (inside jit: indices never leave the
    device)."""
    return jax.tree_util.tree_map(lambda x: x[0], sample_batches(data, key, 1, batch_size))


def sample_batches(data: Transition, key: jax.Array, num_batches: int, batch_size: int):
    """`num_batches` batches of `batch_size` rows, each row drawn uniformly with replacement:
    a `Transition` whose leaves have leading dimensions [num_batches, batch_size].

    All the indices come from one `randint` call: inside a `lax.scan`, a call per step ran
    jax's threefry as three small XLA loops per step (about 2 % of BC's step on one core).
    """
    size = jax.tree_util.tree_leaves(data)[0].shape[0]
    indices = jax.random.randint(key, (num_batches, batch_size), 0, size)
    return jax.tree_util.tree_map(lambda x: jnp.take(x, indices, axis=0), data)


def make_multi_step_update(sgd_step: SgdStep, batch_size: int, steps_per_call: int):
    """`update(state, data, key) -> (state, mean metrics, finite, next key)`: `steps_per_call` SGD
    steps, each on a fresh batch sampled from `data` on the device.

    A metric is averaged over the steps that computed it: a step marks one it did not compute
    with NaN (TD3+BC's actor metrics on steps without an actor update), and a metric no step of
    the call computed comes out NaN. `finite` is the divergence guard's flag
    (`learners.update_is_finite`).

    The key for the next call is split off inside the call: a separate split per call was a
    second dispatch, about 2 % of BC's step at 8 steps per call."""
    scanned = make_scan_update(sgd_step)

    def update(state, data: Transition, key: jax.Array):
        key, batches = call_batches(data, key, steps_per_call, batch_size)
        state, metrics, finite = scanned(state, batches)
        return state, metrics, finite, key

    return update


def call_batches(data: Transition, key: jax.Array, steps_per_call: int, batch_size: int):
    """(next key, the [K, B, ...] batches) of the call that starts from `key`."""
    key, sample_key = jax.random.split(key)
    return key, sample_batches(data, sample_key, steps_per_call, batch_size)


class OfflineLearner(GuardedLearner):
    """Runs `steps_per_call` SGD steps per `step()` on a dataset held in device memory.

    `variables(state) -> {name: params}` names what `get_variables` serves (e.g. "policy",
    "critic"). The state must have an integer `steps` field (SGD steps taken). The divergence
    guard is `learners.GuardedLearner`'s.
    """

    def __init__(
        self,
        sgd_step: SgdStep,
        state: Any,
        data: Transition,
        variables: Callable[[Any], dict[str, Any]],
        batch_size: int,
        steps_per_call: int,
        key: jax.Array,
        counter=None,
        logger=None,
        log_every_seconds: float = 5.0,
    ):
        super().__init__(
            sgd_step, state, variables, steps_per_call, counter, logger, log_every_seconds
        )
        self._data = data
        self._key = key
        self._batch_size = batch_size
        self._update = jax.jit(make_multi_step_update(sgd_step, batch_size, steps_per_call))

    def _next_inputs(self):
        return self._key

    def _dispatch(self, state, key):
        state_out, metrics, finite, self._key = self._update(state, self._data, key)
        return state_out, metrics, finite

    def _call_batches(self, key):
        return call_batches(self._data, key, self._steps_per_call, self._batch_size)[1]

    # ---- Saveable: the training state and the sampling key
    def _saved(self, state) -> Any:
        return {"state": jax.device_get(state), "key": jax.device_get(self._key)}

    def _restored(self, saved: Any) -> Any:
        # checkpointing.restore_pytree rebuilds the template's structure (our save()).
        self._key = jax.device_put(saved["key"])
        return jax.device_put(saved["state"])


def make_learner(
    sgd_step: SgdStep,
    state: Any,
    data: Transition,
    config: Any,
    key: jax.Array,
    variables: Callable[[Any], dict[str, Any]],
    counter=None,
    logger=None,
) -> OfflineLearner:
    """An OfflineLearner with the batch size and steps per call of `config` (every offline
    agent's config has `batch_size` and `sgd_steps_per_call`)."""
    return OfflineLearner(
        sgd_step,
        state,
        data,
        variables=variables,
        batch_size=config.batch_size,
        steps_per_call=config.sgd_steps_per_call,
        key=key,
        counter=counter,
        logger=logger,
    )
