"""TD3+BC learner: TD3 with a behaviour-cloning term in the actor loss (Fujimoto & Gu 2021,
"A Minimalist Approach to Offline Reinforcement Learning").

One SGD step on a batch of dataset transitions (s, a, r, d, s'), with d = gamma * (1 - terminal),
a deterministic actor pi(s) = tanh(MLP(s)), twin critics Q1, Q2 and target copies pi', Q1', Q2':

  critic (every step; target policy smoothing and clipped double-Q):
      eps ~ clip(N(0, policy_noise^2), -noise_clip, noise_clip)
      a'  = clip(pi'(s') + eps, -1, 1)
      y   = r + d * min(Q1'(s', a'), Q2'(s', a'))
      L_c = mean_batch (Q1(s, a) - sg(y))^2 + mean_batch (Q2(s, a) - sg(y))^2
  actor (every `policy_delay`-th step, on the critic just updated in this step):
      lambda = alpha / sg(mean_batch |Q1(s, pi(s))|)
      L_pi   = -lambda * mean_batch Q1(s, pi(s)) + mean_{batch, action dims} (pi(s) - a)^2
  targets (on the same steps as the actor, after its update):
      theta' <- tau * theta + (1 - tau) * theta'       for pi, Q1 and Q2

Details as in the authors' code (github.com/sfujim/TD3_BC): the critic loss is the SUM over the
two critics of each one's batch-mean squared error (no 1/2, no mean over critics; d3rlpy sums too);
Adam 3e-4 for both networks, no gradient clipping. TD3's mechanics (target smoothing, Polyak
targets, the delayed actor, the observation normaliser) are `agents/td3.py`'s.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from antiphon.agents import actor_critic, offline, td3
from antiphon.agents.td3_bc.config import TD3BCConfig
from antiphon.agents.td3_bc.networks import TD3BCNetworks
from antiphon.core.types import EnvironmentSpec, Transition

TrainingState = actor_critic.ActorCriticState
target_actions = td3.target_actions  # kept importable here: the tests and d3rlpy comparisons


def make_losses(
    networks: TD3BCNetworks, config: TD3BCConfig, value_bounds: tuple[float, float] | None = None
):
    """The two TD3+BC losses as pure functions (the math in the module docstring):

    critic_loss(critic_params, state, batch, key) -> (loss, metrics)
    policy_loss(policy_params, critic_params, state, batch) -> (loss, metrics)
    (`state`: the step's input state, for its target networks; `td3.make_delayed_sgd_step`).
    """

    def critic_loss(critic_params, state, batch, key):
        target = td3.clipped_double_q_target(networks, config, state, batch, key)
        q1, q2 = networks.critic_apply(critic_params, batch.observation, batch.action)
        loss = jnp.mean(jnp.square(q1 - target)) + jnp.mean(jnp.square(q2 - target))
        return loss, {"q_mean": jnp.mean(q1), **actor_critic.value_range_metrics(q1, value_bounds)}

    def policy_loss(policy_params, critic_params, state, batch: Transition):
        del state
        action = networks.policy_apply(policy_params, batch.observation)
        q = networks.q1(critic_params, batch.observation, action)
        lmbda = jax.lax.stop_gradient(config.alpha / jnp.mean(jnp.abs(q)))
        bc_mse = jnp.mean(jnp.square(action - batch.action))
        loss = -lmbda * jnp.mean(q) + bc_mse
        return loss, {"bc_mse": bc_mse, "lambda": lmbda}

    return critic_loss, policy_loss


def make_sgd_step(
    networks: TD3BCNetworks,
    config: TD3BCConfig,
    policy_optimizer,
    critic_optimizer,
    value_bounds: tuple[float, float] | None = None,
):
    """Returns the pure function `sgd_step(state, batch) -> (state, metrics)`."""
    critic_loss, policy_loss = make_losses(networks, config, value_bounds)
    return td3.make_delayed_sgd_step(
        critic_loss, policy_loss, (policy_optimizer, critic_optimizer), config
    )


def init_training_state(
    networks: TD3BCNetworks,
    config: TD3BCConfig,
    env_spec: EnvironmentSpec,
    key: jax.Array,
    observations: jax.Array | None = None,
):
    """(initial state, policy optimiser, critic optimiser): `td3.init_training_state`."""
    return td3.init_training_state(networks, config, env_spec, key, observations)


def make_update(
    networks: TD3BCNetworks,
    config: TD3BCConfig,
    env_spec: EnvironmentSpec,
    data: Transition,
    key,
    value_bounds: tuple[float, float] | None = None,
) -> tuple[offline.SgdStep, actor_critic.ActorCriticState]:
    """(sgd_step, initial state) for `builders.OfflineBuilder`; the observation statistics
    (with `normalize_observations`) come from `data`."""
    state, policy_opt, critic_opt = init_training_state(
        networks, config, env_spec, key, observations=data.observation
    )
    return make_sgd_step(networks, config, policy_opt, critic_opt, value_bounds), state
