"""The critic of a stochastic-policy learner, trained by policy evaluation with N sampled
actions (MPO, DMPO, MoG-DMPO, DiME; ALGORITHMS.md §6.1, §6.2, §2, §3.4).

For a batch of transitions (o, a, R, D, o'), D already holding gamma^n * prod d
(`antiphon.core.types.Transition`), and N = `config.num_samples`:

  a'_i ~ pi_target(o'), i = 1..N                  (the stochastic policy, not a max over actions)
  scalar: y   = R + D (1/N) sum_i Q_target(o', a'_i);   L_c = 1/2 (Q(o, a) - y)^2
  C51:    p'  = (1/N) sum_i Proj_z[R + D z ; softmax(Z_target(o', a'_i))]
          L_c = CE(p', Z(o, a))
  MoG:    y_ij = R + D z_ij,  z_ij ~ Z_target(o', a'_i), j = 1..M (N * M pooled)
          L_c = -(1/(N M)) sum_ij log p_{Z(o,a)}(y_ij)

`networks` are `networks.ActorCriticNetworks` whose policy gives the (mean, std) of a diagonal
Gaussian; `config` needs `num_samples` and `num_target_samples` (MoG's M per action).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from antiphon.agents import actor_critic, distributional
from antiphon.agents import networks as shared
from antiphon.core.types import Transition


def sample_policy_actions(
    networks: shared.ActorCriticNetworks,
    policy_params,
    observation: jax.Array,
    key: jax.Array,
    num: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(actions [N, B, A], mean [B, A], std [B, A]): N unclipped samples of the policy at each
    observation, stop-gradient (the critic clips what it is fed)."""
    mean, std = networks.policy_apply(policy_params, observation)
    actions = shared.diagonal_gaussian_sample(mean, std, key, num)
    return jax.lax.stop_gradient(actions), mean, std


def critic_per_action(networks: shared.ActorCriticNetworks, critic_params, observation, actions):
    """The critic's output at each of N actions per observation: actions [N, B, A] -> outputs
    with a leading N axis (Q [N, B], logits [N, B, L] or MixtureParams of [N, B, K])."""
    return jax.vmap(lambda a: networks.critic_apply(critic_params, observation, a))(actions)


def critic_target(
    networks: shared.ActorCriticNetworks,
    config,
    target_critic_params,
    next_observation: jax.Array,
    next_actions: jax.Array,
    reward: jax.Array,
    discount: jax.Array,
    key: jax.Array,
) -> jax.Array:
    """The bootstrapped target over the N next actions [N, B, A] (stop-gradient):

    scalar: y [B];  c51: projected probabilities [B, L];  mog: pooled return samples z
    [N * M, B] from the target mixtures (the loss turns them into R + D z).
    """
    next_out = critic_per_action(networks, target_critic_params, next_observation, next_actions)
    if networks.critic_type == "scalar":
        return distributional.expected_scalar_target(reward, discount, next_out)
    if networks.critic_type == "c51":
        return distributional.expected_categorical_target(
            networks.support, reward, discount, next_out
        )
    return distributional.pooled_mixture_samples(next_out, key, config.num_target_samples)


def critic_td_loss(
    networks: shared.ActorCriticNetworks,
    online,
    reward: jax.Array,
    discount: jax.Array,
    target: jax.Array,
) -> jax.Array:
    """Per-example critic loss [B] of the online output at (o, a) against `critic_target`."""
    if networks.critic_type == "scalar":
        return 0.5 * jnp.square(online - target)
    if networks.critic_type == "c51":
        return distributional.categorical_cross_entropy(online, target)
    return distributional.mog_td_loss_from_samples(online, reward, discount, target)


def make_critic_loss(
    networks: shared.ActorCriticNetworks,
    config,
    value_bounds: tuple[float, float] | None = None,
):
    """critic_loss(critic_params, target_policy_params, target_critic_params, batch, key)
    -> (mean loss, {"q_mean", and "q_out_of_range" / "q_beyond_range" with value_bounds})."""

    def critic_loss(
        critic_params, target_policy_params, target_critic_params, batch: Transition, key
    ):
        action_key, sample_key = jax.random.split(key)
        next_actions, _, _ = sample_policy_actions(
            networks, target_policy_params, batch.next_observation, action_key, config.num_samples
        )
        target = critic_target(
            networks,
            config,
            target_critic_params,
            batch.next_observation,
            next_actions,
            batch.reward,
            batch.discount,
            sample_key,
        )
        online = networks.critic_apply(critic_params, batch.observation, batch.action)
        per_example = critic_td_loss(networks, online, batch.reward, batch.discount, target)
        q = networks.critic_mean(online)
        metrics = {"q_mean": jnp.mean(q), **actor_critic.value_range_metrics(q, value_bounds)}
        return jnp.mean(per_example), metrics

    return critic_loss
