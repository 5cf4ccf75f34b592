"""DiME networks: MPO's (`networks.gaussian_actor_critic_networks`): a diagonal Gaussian policy
on a LayerNorm MLP and a scalar, C51 or mixture-of-Gaussians critic on a LayerNorm MLP."""

from __future__ import annotations

from antiphon.agents import networks as shared
from antiphon.agents.dime.config import DiMEConfig
from antiphon.core.types import EnvironmentSpec

DiMENetworks = shared.ActorCriticNetworks


def make_networks(env_spec: EnvironmentSpec, config: DiMEConfig) -> DiMENetworks:
    return shared.gaussian_actor_critic_networks(env_spec, config)
