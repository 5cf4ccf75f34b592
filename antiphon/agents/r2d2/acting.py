"""R2D2's epsilon-greedy recurrent policy, and what each step stores for the learner.

`policy(params, observation, state, key) -> (action, state)` acts on one unbatched observation
and carries the LSTM state ([1, H] arrays) from step to step; the actor stores the state it had
*before* each step with that step (`core_state_extras`), so a sequence's first step holds the
state the learner unrolls it from, and marks the step a real action (`valid` = 1; the adder's
final-observation step and padding carry zeros there).
"""

from __future__ import annotations

from typing import Any

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np


def make_policy(networks, epsilon: float):
    """Acts greedily on Q, except with probability `epsilon` uniformly at random."""

    def policy(params, observation, state, key):
        batched = jax.tree_util.tree_map(lambda x: jnp.asarray(x)[None], observation)
        q, state = networks.step(params, batched, state)
        explore_key, action_key = jax.random.split(key)
        greedy = jnp.argmax(q[0]).astype(jnp.int32)
        random = jax.random.randint(action_key, (), 0, q.shape[-1], dtype=jnp.int32)
        action = jnp.where(jax.random.uniform(explore_key) < epsilon, random, greedy)
        return action, state

    return policy


def make_vector_policy(networks, epsilons: list[float]):
    """`make_policy` for E environments in one call, environment i exploring at `epsilons[i]`
    (its place on the actors' epsilon ladder): `(params, observations[E], states[E], keys[E])`."""
    epsilon_column = jnp.asarray(np.asarray(epsilons, np.float32))

    def one(params, observation, state, key, epsilon):
        return make_policy(networks, epsilon)(params, observation, state, key)

    batched = jax.vmap(one, in_axes=(None, 0, 0, 0, 0))

    def policy(params, observations, states, keys):
        return batched(params, observations, states, keys, epsilon_column)

    return policy


def core_state_extras(state: hk.LSTMState) -> dict[str, Any]:
    """The per-step extras the sequence adder writes: the LSTM state before the step and the
    valid-action flag."""
    # Index on the host: indexing a jax.Array dispatches an XLA op (~170 us a step).
    return {
        "hidden": np.asarray(state.hidden, np.float32)[0],
        "cell": np.asarray(state.cell, np.float32)[0],
        "valid": np.float32(1.0),
    }


def extras_spec(lstm_size: int) -> dict[str, Any]:
    from dm_env import specs

    return {
        "hidden": specs.Array((lstm_size,), np.float32),
        "cell": specs.Array((lstm_size,), np.float32),
        "valid": specs.Array((), np.float32),
    }
