"""MPO networks (acme's `make_control_networks`): a diagonal Gaussian policy on a LayerNorm MLP
and a scalar, categorical (C51) or mixture-of-Gaussians critic on a LayerNorm MLP
(`networks.gaussian_actor_critic_networks`, shared with DiME)."""

from __future__ import annotations

from antiphon.agents import networks as shared
from antiphon.agents.mpo.config import MPOConfig
from antiphon.core.types import EnvironmentSpec

# policy_apply(params, obs [B, D]) -> (mean, std) [B, A] of the Gaussian over actions;
# critic_apply(params, obs, action) -> Q [B] | C51 logits [B, L] | MixtureParams, on the
# action clipped to [-1, 1]; critic_mean(output) -> Q [B].
MPONetworks = shared.ActorCriticNetworks


def make_networks(env_spec: EnvironmentSpec, config: MPOConfig) -> MPONetworks:
    return shared.gaussian_actor_critic_networks(env_spec, config)
