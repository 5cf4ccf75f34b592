"""MPO networks (acme's `make_control_networks`): a diagonal Gaussian policy on a LayerNorm MLP
and a scalar, categorical (C51) or mixture-of-Gaussians critic on a LayerNorm MLP."""

from __future__ import annotations

import numpy as np

from antiphon.agents import networks as shared
from antiphon.agents.mpo.config import MPOConfig
from antiphon.core.types import EnvironmentSpec

# policy_apply(params, obs [B, D]) -> (mean, std) [B, A] of the Gaussian over actions;
# critic_apply(params, obs, action) -> Q [B] | C51 logits [B, L] | MixtureParams, on the
# action clipped to [-1, 1]; critic_mean(output) -> Q [B].
MPONetworks = shared.ActorCriticNetworks


def make_networks(env_spec: EnvironmentSpec, config: MPOConfig) -> MPONetworks:
    action_dim = int(np.prod(env_spec.actions.shape))

    def policy(observation):
        return shared.GaussianPolicy(
            config.policy_layer_sizes,
            action_dim,
            init_scale=config.policy_init_scale,
            min_scale=config.policy_min_scale,
        )(observation)

    # Every critic type sees actions clipped to the box: the N sampled actions of an unbounded
    # Gaussian leave it, and the critic must not extrapolate there (acme's ClipToSpec).
    critic = shared.layer_norm_critic(config, clip_action=True)
    return shared.actor_critic_networks(policy, critic, config.critic_type)
