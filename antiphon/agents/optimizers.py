"""Optimiser wrappers shared by the learners.

`flatten(inner)` runs a gradient transformation on all the parameters laid end to end in one
vector: the same arithmetic as on the pytree, in a few fused kernels instead of several per
parameter array. For clip-by-global-norm + Adam on BC's 75k policy parameters, one pinned core:
57 us per update against 212 for `optax.flatten`'s vector
(`benchmarks/investigations/xla_cpu_forms.py` and its README)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def ravel(tree) -> jax.Array:
    """The leaves of `tree`, flattened and laid end to end in one vector.

    Written as `dynamic_update_slice`s into one buffer rather than `jnp.concatenate`: XLA CPU
    updates the buffer in place, while a concatenate fusion is re-run by each of its consumers
    (the gradient norm and Adam both read it) with a per-element choice of operand; on one core
    that made the concatenates about 10 % of BC's step (benchmarks/RESULTS.md, session 16).
    """
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        return jnp.zeros((0,), jnp.float32)
    dtypes = {jnp.result_type(leaf) for leaf in leaves}
    if len(dtypes) > 1:
        raise ValueError(f"ravel needs leaves of one dtype (got {sorted(map(str, dtypes))})")
    flat = jnp.zeros((sum(leaf.size for leaf in leaves),), dtypes.pop())
    offset = 0
    for leaf in leaves:
        flat = jax.lax.dynamic_update_slice(flat, jnp.reshape(leaf, (-1,)), (offset,))
        offset += leaf.size
    return flat


def unravel(like, flat: jax.Array):
    """The inverse of `ravel`: `flat` cut back into arrays shaped as `like`'s leaves."""
    leaves, treedef = jax.tree_util.tree_flatten(like)
    pieces, offset = [], 0
    for leaf in leaves:
        pieces.append(jnp.reshape(flat[offset : offset + leaf.size], leaf.shape))
        offset += leaf.size
    return jax.tree_util.tree_unflatten(treedef, pieces)


def flatten(inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """`inner` run on all the parameters as one flat vector (what `optax.flatten` does), with
    the vector built by `ravel`. The updates come back in the parameters' structure."""

    def init(params):
        return inner.init(ravel(params))

    def update(updates, state, params=None):
        flat_params = None if params is None else ravel(params)
        flat_updates, state = inner.update(ravel(updates), state, flat_params)
        return unravel(updates, flat_updates), state

    return optax.GradientTransformation(init, update)


def clipped_adam(learning_rate: float, max_gradient_norm: float) -> optax.GradientTransformation:
    """Adam after clipping the gradient's global norm to `max_gradient_norm` (0: no clip), both
    on one vector of all the parameters (`flatten`). The optimiser of every learner whose config
    has `*_learning_rate` and `max_gradient_norm` fields."""
    if max_gradient_norm and max_gradient_norm > 0:
        inner = optax.chain(optax.clip_by_global_norm(max_gradient_norm), optax.adam(learning_rate))
    else:
        inner = optax.adam(learning_rate)
    return flatten(inner)
