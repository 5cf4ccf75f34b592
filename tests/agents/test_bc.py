"""BC's two objectives: likelihood (default) and deterministic mean-squared error."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from dm_env import specs

from antiphon.agents.bc import learning
from antiphon.agents.bc.builder import BCBuilder
from antiphon.agents.bc.config import BCConfig
from antiphon.agents.bc.networks import make_networks
from antiphon.agents.offline import device_transitions
from antiphon.core.types import EnvironmentSpec, Transition
from antiphon.environments.datasets.core import Dataset

OBS_DIM, ACT_DIM = 3, 2
ENV_SPEC = EnvironmentSpec(
    observations=specs.Array((OBS_DIM,), np.float32),
    actions=specs.BoundedArray((ACT_DIM,), np.float32, -1.0, 1.0),
    rewards=specs.Array((), np.float32),
    discounts=specs.BoundedArray((), np.float32, 0.0, 1.0),
)
W = np.array([[0.6, -0.3], [0.2, 0.5], [-0.4, 0.1]], np.float32)


def _dataset(n: int = 512, seed: int = 0) -> Dataset:
    """a = tanh(s W) (+ a little noise): a deterministic behaviour a regression can recover."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, OBS_DIM)).astype(np.float32)
    actions = np.clip(np.tanh(obs @ W) + 0.02 * rng.normal(size=(n, ACT_DIM)), -1, 1)
    timeouts = np.zeros(n, bool)
    timeouts[-1] = True
    return Dataset(
        observations=obs,
        actions=actions.astype(np.float32),
        rewards=np.zeros(n, np.float32),
        next_observations=rng.normal(size=(n, OBS_DIM)).astype(np.float32),
        terminals=np.zeros(n, bool),
        timeouts=timeouts,
    )


@pytest.mark.parametrize("head", ["tanh_gaussian", "gaussian"])
def test_mse_loss_is_the_squared_error_of_the_greedy_action(head):
    config = BCConfig(policy_layer_sizes=(16,), policy_head=head, loss="mse")
    networks = make_networks(ENV_SPEC, config)
    params = networks.init(jax.random.PRNGKey(0), ENV_SPEC)
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(8, OBS_DIM)).astype(np.float32)
    action = rng.uniform(-1, 1, size=(8, ACT_DIM)).astype(np.float32)
    batch = Transition(obs, action, np.zeros(8, np.float32), np.ones(8, np.float32), obs)
    loss, metrics = learning.make_loss(networks, "mse")(params, batch)
    # Both heads' network outputs (mean, std) of an unbounded Gaussian; the greedy action is
    # tanh(mean) for each.
    mean, _ = networks.policy_apply(params, obs)
    expected = np.mean(np.sum((np.tanh(np.asarray(mean)) - action) ** 2, axis=-1))
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["action_mse"]), expected, rtol=1e-5)


def test_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="loss must be one of"):
        BCBuilder(BCConfig(loss="l1"))


def test_deterministic_bc_recovers_a_deterministic_behaviour():
    config = BCConfig(policy_layer_sizes=(32, 32), learning_rate=3e-3, batch_size=64, loss="mse")
    builder = BCBuilder(config)
    networks = builder.make_networks(ENV_SPEC)
    dataset = _dataset()
    data = device_transitions(dataset, config.discount)
    learner = builder.make_learner(networks, data, ENV_SPEC, jax.random.PRNGKey(0))

    def greedy_mse() -> float:
        [params] = learner.get_variables(["policy"])
        greedy = networks.head.mode(networks.policy_apply(params, dataset.observations))
        return float(np.mean(np.sum((np.asarray(greedy) - dataset.actions) ** 2, axis=-1)))

    before = greedy_mse()
    for _ in range(50):  # 400 SGD steps
        learner.step()
    after = greedy_mse()
    assert after < 0.1 * before and after < 0.01, (before, after)
