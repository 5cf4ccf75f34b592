"""D4PG learner: distributional critic (C51 or MoG) + deterministic policy gradient.

One SGD step, for a batch of n-step transitions (o, a, R, D, o'), where D already holds
gamma^n * prod d (see `antiphon.core.types.Transition`):

  critic:  a'  = pi_target(o')
           C51: L_c = CE( Proj_z[R + D z ; softmax(Z_target(o', a'))],  Z(o, a) )
           MoG: L_c = -(1/M) sum_j log p_{Z(o,a)}(R + D z_j),  z_j ~ Z_target(o', a')
  policy:  a_pi = pi(o);  Q = E[Z(o, a_pi)];  g = dQ/da at a_pi, its L2 norm clipped to 1
           L_pi = mean over batch and action dims of 1/2 (a_pi - sg(a_pi + g))^2
           (the deterministic policy gradient written as a regression; rlax.dpg_loss, batched)
  targets: hard copy online -> target every `target_update_period` steps.

`sgd_steps_per_call` steps run inside one jitted call (lax.scan over K batches).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from antiphon.agents import distributional
from antiphon.agents.d4pg.config import D4PGConfig
from antiphon.agents.d4pg.networks import D4PGNetworks
from antiphon.core.types import EnvironmentSpec, Transition


class TrainingState(NamedTuple):
    policy_params: Any
    critic_params: Any
    target_policy_params: Any
    target_critic_params: Any
    policy_opt_state: Any
    critic_opt_state: Any
    steps: jax.Array
    key: jax.Array


def dpg_loss(action: jax.Array, dqda: jax.Array, clip_norm: float | None) -> jax.Array:
    """Elementwise deterministic policy gradient loss, batched ([B, A] -> [B, A]).

    L = 1/2 (a - sg(a + g))^2 with g = dQ/da rescaled per example to L2 norm <= clip_norm; its
    gradient w.r.t. the policy parameters is -g da/dtheta. Equals `rlax.dpg_loss` vmapped over
    the batch (Acme's D4PG then averages over batch and action dimensions).
    """
    if clip_norm is not None:
        norm = jnp.sqrt(jnp.sum(jnp.square(dqda), axis=-1, keepdims=True))
        dqda = dqda * (clip_norm / jnp.maximum(norm, clip_norm))
    target = jax.lax.stop_gradient(action + dqda)
    return 0.5 * jnp.square(target - action)


def make_losses(networks: D4PGNetworks, config: D4PGConfig):
    """The two D4PG losses as pure functions (the math in the module docstring):

    critic_loss(critic_params, target_policy_params, target_critic_params, batch, key)
        -> (loss, {"q_mean": ...})
    policy_loss(policy_params, critic_params, observation) -> loss
    """

    def critic_loss(
        critic_params, target_policy_params, target_critic_params, batch: Transition, key
    ):
        next_action = networks.policy_apply(target_policy_params, batch.next_observation)
        target = networks.critic_apply(target_critic_params, batch.next_observation, next_action)
        online = networks.critic_apply(critic_params, batch.observation, batch.action)
        if networks.critic_type == "c51":
            per_example = distributional.categorical_td_loss(
                online, networks.support, batch.reward, batch.discount, target
            )
        else:
            per_example = distributional.mog_td_loss(
                online, batch.reward, batch.discount, target, key, config.num_target_samples
            )
        q = networks.critic_mean(online)
        return jnp.mean(per_example), {"q_mean": jnp.mean(q)}

    def policy_loss(policy_params, critic_params, observation):
        action = networks.policy_apply(policy_params, observation)

        def total_q(a):  # each Q(o_i, a_i) depends only on a_i, so grad of the sum is per-row dQ/da
            return jnp.sum(
                networks.critic_mean(networks.critic_apply(critic_params, observation, a))
            )

        dqda = jax.grad(total_q)(action)
        return jnp.mean(dpg_loss(action, dqda, clip_norm=1.0 if config.clip_dqda else None))

    return critic_loss, policy_loss


def make_sgd_step(networks: D4PGNetworks, config: D4PGConfig, policy_optimizer, critic_optimizer):
    """Returns the pure function `sgd_step(state, transitions) -> (state, metrics)`."""
    critic_loss, policy_loss = make_losses(networks, config)

    def sgd_step(state: TrainingState, batch: Transition):
        key, critic_key = jax.random.split(state.key)
        (c_loss, c_metrics), c_grads = jax.value_and_grad(critic_loss, has_aux=True)(
            state.critic_params,
            state.target_policy_params,
            state.target_critic_params,
            batch,
            critic_key,
        )
        p_loss, p_grads = jax.value_and_grad(policy_loss)(
            state.policy_params, state.critic_params, batch.observation
        )
        c_updates, critic_opt_state = critic_optimizer.update(c_grads, state.critic_opt_state)
        critic_params = optax.apply_updates(state.critic_params, c_updates)
        p_updates, policy_opt_state = policy_optimizer.update(p_grads, state.policy_opt_state)
        policy_params = optax.apply_updates(state.policy_params, p_updates)
        steps = state.steps + 1
        period = config.target_update_period
        new_state = TrainingState(
            policy_params=policy_params,
            critic_params=critic_params,
            target_policy_params=optax.periodic_update(
                policy_params, state.target_policy_params, steps, period
            ),
            target_critic_params=optax.periodic_update(
                critic_params, state.target_critic_params, steps, period
            ),
            policy_opt_state=policy_opt_state,
            critic_opt_state=critic_opt_state,
            steps=steps,
            key=key,
        )
        metrics = {"critic_loss": c_loss, "policy_loss": p_loss, **c_metrics}
        return new_state, metrics

    return sgd_step


def init_training_state(
    networks: D4PGNetworks, config: D4PGConfig, env_spec: EnvironmentSpec, key: jax.Array
) -> tuple[TrainingState, optax.GradientTransformation, optax.GradientTransformation]:
    policy_optimizer = optax.adam(config.policy_learning_rate)
    critic_optimizer = optax.adam(config.critic_learning_rate)
    init_key, state_key = jax.random.split(key)
    policy_params, critic_params = networks.init(init_key, env_spec)
    state = TrainingState(
        policy_params=policy_params,
        critic_params=critic_params,
        target_policy_params=policy_params,
        target_critic_params=critic_params,
        policy_opt_state=policy_optimizer.init(policy_params),
        critic_opt_state=critic_optimizer.init(critic_params),
        steps=jnp.zeros((), jnp.int32),
        key=state_key,
    )
    return state, policy_optimizer, critic_optimizer


class D4PGLearner:
    """Pulls [K, B, ...] batches of transitions from `iterator` and runs K SGD steps per call.

    Also the variable source of the program: `get_variables(["policy"])`, `variables_version()`.
    """

    def __init__(
        self,
        networks: D4PGNetworks,
        config: D4PGConfig,
        env_spec: EnvironmentSpec,
        iterator: Iterator[Transition],
        key: jax.Array,
        counter=None,
        logger=None,
        log_every_seconds: float = 5.0,
    ):
        self._iterator = iterator
        self._counter = counter
        self._logger = logger
        self._log_every = log_every_seconds
        self._last_log = 0.0
        self._state, policy_opt, critic_opt = init_training_state(networks, config, env_spec, key)
        sgd_step = make_sgd_step(networks, config, policy_opt, critic_opt)

        def update(state, batches):
            state, metrics = jax.lax.scan(sgd_step, state, batches)
            return state, jax.tree_util.tree_map(jnp.mean, metrics)

        donate = (0,) if jax.default_backend() != "cpu" else ()  # CPU ignores donation (warns)
        self._update = jax.jit(update, donate_argnums=donate)
        self._lock = threading.Lock()  # guards _state against concurrent get_variables/save
        self._version = 0
        self._stop = threading.Event()
        self._wait_seconds = 0.0  # time blocked on the data stream
        self._first_step_time: float | None = None

    # ---- Learner
    def step(self) -> dict[str, Any] | None:
        start = time.perf_counter()
        if self._first_step_time is None:
            self._first_step_time = start
        batches = next(self._iterator)
        fetched = time.perf_counter()
        with self._lock:
            self._state, metrics = self._update(self._state, batches)
            self._version += 1
        num_steps = jax.tree_util.tree_leaves(batches)[0].shape[0]
        counts = self._counter.increment(steps=num_steps) if self._counter is not None else {}
        self._wait_seconds += fetched - start
        now = time.time()
        if self._logger is not None and now - self._last_log >= self._log_every:
            self._last_log = now
            values = {k: float(v) for k, v in jax.device_get(metrics).items()}
            values["data_wait_fraction"] = self.data_wait_fraction
            values.update(counts)
            self._logger.write(values)
            return values
        return None

    def run(self, num_steps: int | None = None) -> None:
        done = 0
        while not self._stop.is_set() and (num_steps is None or done < num_steps):
            self.step()
            done += 1

    def stop(self) -> None:
        self._stop.set()

    @property
    def data_wait_fraction(self) -> float:
        """Time blocked on the data stream / wall time since the first step. (Wall time, not
        dispatch time: with asynchronous dispatch an update returns before it has run.)"""
        if self._first_step_time is None:
            return 0.0
        return self._wait_seconds / max(time.perf_counter() - self._first_step_time, 1e-9)

    # ---- VariableSource
    def get_variables(self, names):
        with self._lock:
            state = self._state
        table = {"policy": state.policy_params, "critic": state.critic_params}
        return [jax.device_get(table[name]) for name in names]

    def variables_version(self) -> int:
        return self._version

    # ---- Saveable
    def save(self) -> TrainingState:
        with self._lock:
            return jax.device_get(self._state)

    def restore(self, state: TrainingState) -> None:
        with self._lock:
            self._state = jax.device_put(TrainingState(*state))
            self._version += 1

    @property
    def sgd_steps(self) -> int:
        return int(np.asarray(jax.device_get(self._state.steps)))
