"""D4PG networks: a deterministic tanh policy and a distributional critic (C51 or MoG)."""

from __future__ import annotations

import numpy as np

from antiphon.agents import networks as shared
from antiphon.agents.d4pg.config import D4PGConfig
from antiphon.core.types import EnvironmentSpec

# policy_apply(params, obs) -> action in [-1, 1]; critic_apply(params, obs, action) -> C51
# logits [B, L] or MixtureParams; critic_mean turns either into Q [B].
D4PGNetworks = shared.ActorCriticNetworks


def make_networks(env_spec: EnvironmentSpec, config: D4PGConfig) -> D4PGNetworks:
    action_dim = int(np.prod(env_spec.actions.shape))

    def policy(observation):
        return shared.DeterministicPolicy(config.policy_layer_sizes, action_dim)(observation)

    # The MoG critic sees actions clipped to the spec (ALGORITHMS.md §2.1); C51 does not.
    critic = shared.layer_norm_critic(config, clip_action=config.critic_type == "mog")
    return shared.actor_critic_networks(policy, critic, config.critic_type)
