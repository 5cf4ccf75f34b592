"""DiME networks: MPO's (`networks.gaussian_actor_critic_networks`): a diagonal Gaussian policy
on a LayerNorm MLP and a scalar, C51 or mixture-of-Gaussians critic on a LayerNorm MLP. Online,
one critic per reward objective: K copies of the critic, their parameters stacked on a leading
axis (initialised independently), evaluated with `jax.vmap`."""

from __future__ import annotations

import dataclasses

import jax

from antiphon.agents import networks as shared
from antiphon.core.types import EnvironmentSpec, zeros_like_spec


@dataclasses.dataclass(frozen=True)
class DiMENetworks(shared.ActorCriticNetworks):
    """ActorCriticNetworks; with num_critics >= 1 `init` returns critic params stacked [K, ...]
    (critic_apply stays the single critic's: vmap it over the leading axis)."""

    num_critics: int = 0  # 0: one critic, unstacked (offline)

    def init(self, key: jax.Array, env_spec: EnvironmentSpec) -> tuple:
        policy_params, critic_params = super().init(key, env_spec)
        if self.num_critics < 1:
            return policy_params, critic_params
        obs = zeros_like_spec(env_spec.observations, (1,))
        action = zeros_like_spec(env_spec.actions, (1,))
        keys = jax.random.split(jax.random.fold_in(key, 1), self.num_critics)
        # Each critic from the critic half of its key (as `init` splits it), no policy re-made.
        critic_keys = jax.vmap(lambda k: jax.random.split(k)[1])(keys)
        stacked = jax.vmap(lambda k: self.critic_init(k, obs, action))(critic_keys)
        return policy_params, stacked


def make_networks(env_spec: EnvironmentSpec, config) -> DiMENetworks:
    base = shared.gaussian_actor_critic_networks(env_spec, config)
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    return DiMENetworks(**fields, num_critics=config.num_stacked_critics())
