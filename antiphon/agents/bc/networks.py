"""BC network: the policy shared with CRR (tanh-Gaussian or Gaussian mixture)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import haiku as hk
import jax

from antiphon.agents import networks as shared
from antiphon.agents.bc.config import BCConfig
from antiphon.core.types import EnvironmentSpec, zeros_like_spec


@dataclasses.dataclass(frozen=True)
class BCNetworks:
    policy_init: Callable
    policy_apply: Callable  # (params, obs) -> the distribution's parameters (see `head`)
    head: shared.PolicyHead  # log_prob / sample / mode of policy_apply's output

    def init(self, key: jax.Array, env_spec: EnvironmentSpec):
        return self.policy_init(key, zeros_like_spec(env_spec.observations, (1,)))

    def log_prob(self, policy_params, observation, action) -> jax.Array:
        return self.head.log_prob(self.policy_apply(policy_params, observation), action)


def make_networks(env_spec: EnvironmentSpec, config: BCConfig) -> BCNetworks:
    head = shared.policy_head_from_config(config, env_spec)
    policy_t = hk.without_apply_rng(hk.transform(head.network))
    return BCNetworks(policy_init=policy_t.init, policy_apply=policy_t.apply, head=head)
