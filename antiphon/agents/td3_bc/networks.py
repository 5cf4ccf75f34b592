"""TD3+BC networks: TD3's (`agents/td3.py`), a deterministic tanh policy and twin scalar critics
Q1, Q2, all plain ReLU MLPs (the authors' and d3rlpy's architecture), with the optional
observation normaliser in front (`normalize_observations`, the paper's state normalisation)."""

from __future__ import annotations

from antiphon.agents.td3 import (
    NORMALIZER,
    TwinCriticNetworks,
    frozen_mask,
    is_normalizer,
    observation_statistics,
    with_observation_statistics,
)
from antiphon.agents.td3 import make_networks as make_twin_critic_networks
from antiphon.agents.td3_bc.config import TD3BCConfig
from antiphon.core.types import EnvironmentSpec

TD3BCNetworks = TwinCriticNetworks

__all__ = [
    "NORMALIZER",
    "TD3BCNetworks",
    "frozen_mask",
    "is_normalizer",
    "make_networks",
    "observation_statistics",
    "with_observation_statistics",
]


def make_networks(env_spec: EnvironmentSpec, config: TD3BCConfig) -> TD3BCNetworks:
    return make_twin_critic_networks(env_spec, config)
