"""CRR policies, pure functions of (params, observation, state, key).

Evaluation: the greedy action (tanh(mean); for the Gaussian mixture, the heaviest component's
mean), or with `critic_weighted_policy` the critic-weighted policy: K actions a_k ~ pi(s), one
picked with probability softmax(Q(s, a_k) / tau) (params are then [policy, critic]).
Behaviour: a sample of pi.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from antiphon.agents import networks as shared
from antiphon.agents.crr.config import CRRConfig
from antiphon.agents.crr.networks import CRRNetworks


def make_policy(networks: CRRNetworks, config: CRRConfig, evaluation: bool = True):
    if evaluation and config.critic_weighted_policy:

        def cwp_policy(params, observation, state, key):
            policy_params, critic_params = params
            sample_key, pick_key = jax.random.split(key)
            dist = shared.policy_for_one(networks.policy_apply, policy_params, observation)
            actions = networks.head.sample(dist, sample_key, config.cwp_samples)  # [K, A]
            observations = jnp.broadcast_to(observation, (config.cwp_samples, *observation.shape))
            q = networks.q_value(critic_params, observations, actions)
            index = jax.random.categorical(pick_key, q / config.cwp_temperature)
            return actions[index], state

        return cwp_policy

    return shared.make_head_policy(networks.policy_apply, networks.head, evaluation)


def variable_names(config: CRRConfig, evaluation: bool = True) -> list[str] | str:
    """What the policy's params are: "policy", or ["policy", "critic"] for the CWP."""
    return ["policy", "critic"] if evaluation and config.critic_weighted_policy else "policy"
