"""R2D2's recurrent Q-network for MiniGrid / BabyAI observations (ALGORITHMS.md §4.6, sized for
gridworlds): conv torso over the egocentric view, the heading and the mission's words embedded,
an LSTM, and a dueling head

    Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a')

Observations are the dict of `environments.minigrid` (image uint8 [7, 7, 3], direction int32,
mission int32 [16]); the LSTM state is (hidden, cell), each [B, lstm_size]. `unroll` runs a
time-major sequence [T, B, ...] from a given state (the learner: burn-in and trace from the
stored state); `step` one time step (the actor), returning the state it carries on with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import haiku as hk
import jax
import jax.numpy as jnp

NUM_DIRECTIONS = 4
OBJECT_CODES, COLOUR_CODES, STATE_CODES = 11, 6, 3  # minigrid.core.constants
MISSION_VOCABULARY = 128  # environments.minigrid.MISSION_VOCABULARY (0 pads)


class GridTorso(hk.Module):
    """(image, direction, mission) -> features [B, torso_size]."""

    def __init__(self, torso_size: int = 256, mission_embedding: int = 32, name: str = "torso"):
        super().__init__(name=name)
        self._torso_size = torso_size
        self._mission_embedding = mission_embedding

    def __call__(self, observation: dict) -> jax.Array:
        # MiniGrid's cells are integer codes (object < 11, colour < 6, state < 3): one-hot, so
        # a key (5) and a ball (6) differ as much as a wall and the goal do.
        image = observation["image"].astype(jnp.int32)
        image = jnp.concatenate(
            [
                jax.nn.one_hot(image[..., 0], OBJECT_CODES),
                jax.nn.one_hot(image[..., 1], COLOUR_CODES),
                jax.nn.one_hot(image[..., 2], STATE_CODES),
            ],
            axis=-1,
        )
        x = jax.nn.relu(hk.Conv2D(16, 2, padding="VALID")(image))
        x = jax.nn.relu(hk.Conv2D(32, 2, padding="VALID")(x))
        x = jax.nn.relu(hk.Conv2D(64, 2, padding="VALID")(x))
        x = hk.Flatten()(x)
        direction = jax.nn.one_hot(observation["direction"], NUM_DIRECTIONS)
        words = observation["mission"]
        embedded = hk.Embed(MISSION_VOCABULARY, self._mission_embedding)(words)
        present = (words > 0).astype(jnp.float32)[..., None]
        mission = jnp.sum(embedded * present, axis=-2) / jnp.maximum(
            jnp.sum(present, axis=-2), 1.0
        )  # mean over the mission's words (bag of words)
        features = jnp.concatenate([x, direction, mission], axis=-1)
        return jax.nn.relu(hk.Linear(self._torso_size)(features))


class DuelingHead(hk.Module):
    def __init__(self, num_actions: int, hidden: int = 128, name: str = "dueling"):
        super().__init__(name=name)
        self._num_actions = num_actions
        self._hidden = hidden

    def __call__(self, x: jax.Array) -> jax.Array:
        value = hk.nets.MLP([self._hidden, 1], name="value")(x)
        advantage = hk.nets.MLP([self._hidden, self._num_actions], name="advantage")(x)
        return value + advantage - jnp.mean(advantage, axis=-1, keepdims=True)


def zero_state(lstm_size: int, batch_size: int = 1) -> hk.LSTMState:
    """The LSTM state an episode (and every demonstration sequence) starts from."""
    zeros = jnp.zeros((batch_size, lstm_size), jnp.float32)
    return hk.LSTMState(hidden=zeros, cell=zeros)


@dataclasses.dataclass(frozen=True)
class R2D2Networks:
    """Pure functions of (params, ...):

    init(key, observation_batch [B, ...], state) -> params
    initial_state(batch_size) -> LSTMState of zeros
    step(params, observation [B, ...], state) -> (Q [B, A], state)
    unroll(params, observations [T, B, ...], state) -> (Q [T, B, A], final state)
    """

    init: Callable
    initial_state: Callable
    step: Callable
    unroll: Callable


def make_recurrent_q_network(
    num_actions: int, lstm_size: int = 256, torso_size: int = 256
) -> R2D2Networks:
    def core() -> tuple[GridTorso, hk.LSTM, DuelingHead]:
        return GridTorso(torso_size), hk.LSTM(lstm_size, name="lstm"), DuelingHead(num_actions)

    def step_fn(observation, state):
        torso, lstm, head = core()
        hidden, state = lstm(torso(observation), state)
        return head(hidden), state

    def unroll_fn(observations, state):
        torso, lstm, head = core()
        features = hk.BatchApply(torso)(observations)  # [T, B, F]
        hidden, state = hk.dynamic_unroll(lstm, features, state)
        return hk.BatchApply(head)(hidden), state

    step_t = hk.without_apply_rng(hk.transform(step_fn))
    unroll_t = hk.without_apply_rng(hk.transform(unroll_fn))

    def initial_state(batch_size: int) -> hk.LSTMState:
        return zero_state(lstm_size, batch_size)

    return R2D2Networks(
        init=step_t.init,
        initial_state=initial_state,
        step=step_t.apply,
        unroll=unroll_t.apply,
    )


def make_networks(env_spec, config) -> R2D2Networks:
    """The agent's networks for `env_spec` (discrete actions) at the config's sizes."""
    return make_recurrent_q_network(
        int(env_spec.actions.num_values), lstm_size=config.lstm_size, torso_size=config.torso_size
    )
