"""Q_sarsa-regularised TD3 networks: TD3's actor and twin critics (`agents/td3.py`), and
Q_sarsa, one more ReLU MLP critic Q(s, a) -> [B] (with the same observation normaliser in front
when `normalize_observations`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import haiku as hk
import jax

from antiphon.agents import td3
from antiphon.agents.qreg.config import QRegConfig
from antiphon.core.types import EnvironmentSpec, zeros_like_spec


@dataclasses.dataclass(frozen=True)
class QRegNetworks(td3.TwinCriticNetworks):
    """TD3's pure functions, plus sarsa_apply(params, obs [B, D], action [B, A]) -> Q [B]."""

    sarsa_init: Callable = None
    sarsa_apply: Callable = None

    def init_sarsa(self, key: jax.Array, env_spec: EnvironmentSpec):
        obs = zeros_like_spec(env_spec.observations, (1,))
        action = zeros_like_spec(env_spec.actions, (1,))
        return self.sarsa_init(key, obs, action)


def make_networks(env_spec: EnvironmentSpec, config: QRegConfig) -> QRegNetworks:
    twin = td3.make_networks(env_spec, config)
    normalize = config.normalize_observations

    def sarsa(observation, action):
        if normalize:
            observation = td3.ObservationNormalizer()(observation)
        return td3.QNetwork(config.sarsa_layer_sizes, name="q_sarsa")(observation, action)

    sarsa_t = hk.without_apply_rng(hk.transform(sarsa))
    fields = {f.name: getattr(twin, f.name) for f in dataclasses.fields(twin)}
    return QRegNetworks(**fields, sarsa_init=sarsa_t.init, sarsa_apply=sarsa_t.apply)
