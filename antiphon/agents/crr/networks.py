"""CRR networks: a tanh-Gaussian (or Gaussian-mixture) policy and a critic that is scalar,
categorical (C51) or a mixture of Gaussians (the foundation's distributional heads)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from antiphon.agents import distributional
from antiphon.agents import networks as shared
from antiphon.agents.crr.config import CRRConfig
from antiphon.core.types import EnvironmentSpec


@dataclasses.dataclass(frozen=True)
class CRRNetworks(shared.ActorCriticNetworks):
    """`networks.ActorCriticNetworks` (init, q_value) plus the policy head:

    policy_apply(params, obs) -> the policy distribution's parameters, which `head` reads
        (tanh_gaussian: (mean, std) of the pre-tanh Gaussian; gaussian_mixture:
        (logits, mean, std)).
    """

    head: shared.PolicyHead  # log_prob / sample / mode of policy_apply's output

    def log_prob(self, policy_params, observation, action) -> jax.Array:
        return self.head.log_prob(self.policy_apply(policy_params, observation), action)


def make_critic(config, env_spec: EnvironmentSpec):
    """(critic_fn, critic_mean, support) for `config.critic_type` in scalar | c51 | mog."""
    del env_spec
    critic_type = config.critic_type
    if critic_type == "c51":
        support = jnp.linspace(config.v_min, config.v_max, config.num_atoms)

        def critic(observation, action):
            x = shared.MLP(config.critic_layer_sizes)(observation, action)
            return shared.CategoricalHead(config.num_atoms)(x)

        return critic, (lambda logits: distributional.categorical_mean(logits, support)), support
    if critic_type == "mog":

        def critic(observation, action):
            # Clipped as D4PG's MoG critic clips it (networks.critic_inputs).
            x = shared.MLP(config.critic_layer_sizes)(observation, jnp.clip(action, -1.0, 1.0))
            return shared.GaussianMixtureHead(
                config.num_components, config.init_scale, config.min_scale
            )(x)

        return critic, distributional.mixture_mean, None

    def critic(observation, action):
        x = shared.MLP(config.critic_layer_sizes)(observation, action)
        return shared.linear_head(x, 1)[..., 0]

    return critic, (lambda q: q), None


def make_networks(env_spec: EnvironmentSpec, config: CRRConfig) -> CRRNetworks:
    head = shared.policy_head_from_config(config, env_spec)
    critic, critic_mean, support = make_critic(config, env_spec)
    return CRRNetworks(
        **shared.transform_policy_and_critic(head.network, critic),
        critic_mean=critic_mean,
        support=support,
        critic_type=config.critic_type,
        head=head,
    )
