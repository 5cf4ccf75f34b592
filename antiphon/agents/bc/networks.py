"""BC network: the tanh-Gaussian policy shared with CRR."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import haiku as hk
import jax
import numpy as np

from antiphon.agents import networks as shared
from antiphon.agents.bc.config import BCConfig
from antiphon.core.types import EnvironmentSpec, zeros_like_spec


@dataclasses.dataclass(frozen=True)
class BCNetworks:
    policy_init: Callable
    policy_apply: Callable  # (params, obs) -> (mean, std) of the pre-tanh Gaussian
    edge_likelihood: str = "censored"  # how dataset actions on |a| = 1 count (see log_prob)

    def init(self, key: jax.Array, env_spec: EnvironmentSpec):
        return self.policy_init(key, zeros_like_spec(env_spec.observations, (1,)))

    def log_prob(self, policy_params, observation, action) -> jax.Array:
        mean, std = self.policy_apply(policy_params, observation)
        return shared.tanh_gaussian_log_prob(mean, std, action, self.edge_likelihood)


def make_networks(env_spec: EnvironmentSpec, config: BCConfig) -> BCNetworks:
    action_dim = int(np.prod(env_spec.actions.shape))

    def policy(observation):
        return shared.TanhGaussianPolicy(config.policy_layer_sizes, action_dim)(observation)

    policy_t = hk.without_apply_rng(hk.transform(policy))
    return BCNetworks(
        policy_init=policy_t.init,
        policy_apply=policy_t.apply,
        edge_likelihood=config.edge_likelihood,
    )
