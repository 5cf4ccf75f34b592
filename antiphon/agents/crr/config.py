"""CRR hyperparameters (ALGORITHMS.md §1.5). Defaults: the authors' RCRR learner (Adam 1e-4,
batch 256, global-norm clip 40, hard target copy every 100 steps, m = 4, beta = 1, clip 20),
with acme JAX CRR's (256, 256) ReLU MLPs and tanh-Gaussian policy for the feed-forward case (the
authors' Gaussian-mixture policy head is an option)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from antiphon.agents.bc.config import (
    EdgeLikelihood,
    PolicyHeadKind,
    check_edge_likelihood,
    check_policy_head,
)


@dataclasses.dataclass(frozen=True)
class CRRConfig:
    # Actor weighting f(s, a) of the dataset action's log-likelihood.
    filter: Literal["exp", "binary", "bc"] = "exp"  # exp: min(exp(A/beta), clip); binary: 1[A>0]
    beta: float = 1.0  # temperature of the exp filter
    weight_clip: float = 20.0  # c: the exp filter's upper bound
    baseline: Literal["mean", "max"] = "mean"  # V(s) = mean_j or max_j Q(s, a_j), a_j ~ pi(s)
    num_advantage_samples: int = 4  # m
    # How a dataset action on the box edge (|a| = 1, common: behaviour actions are clipped) enters
    # log pi(a|s): "censored" as mass beyond tanh^-1(0.999) (acme), "clipped" as the density at
    # 1 - 1e-5 (agents/networks.py tanh_gaussian_log_prob).
    edge_likelihood: EdgeLikelihood = "censored"
    # The policy's distribution: acme JAX CRR's "tanh_gaussian" (default), d3rlpy's "gaussian"
    # N(tanh(mean), std), or the authors' "gaussian_mixture" of K diagonal Gaussians (ALGORITHMS.md
    # §1.5). The last two are not squashed: samples are clipped to the box, edge_likelihood unused.
    policy_head: PolicyHeadKind = "tanh_gaussian"
    num_policy_components: int = 5  # K, gaussian_mixture only
    # Critic.
    critic_type: Literal["scalar", "c51", "mog"] = "scalar"
    num_td_samples: int = 1  # N_td next actions a' ~ pi_target(s') per transition
    num_atoms: int = 51  # c51
    v_min: float = -150.0  # c51 support; set it to the task's return range
    v_max: float = 150.0
    num_components: int = 5  # mog
    num_target_samples: int = 128  # mog: M samples of the target mixture
    init_scale: float = 1e-3  # mog
    min_scale: float = 1e-4  # mog
    # Optimisation.
    # Rewards are multiplied by this before learning; None: 1 / max(1, max |r| per environment
    # step) of the dataset (unit scale, what lr 1e-4 and beta 1 were tuned on; DM Control data
    # is left exactly as it is).
    # See agents/offline.py reward_scale.
    reward_scale: float | None = None
    discount: float = 0.99
    batch_size: int = 256
    policy_learning_rate: float = 1e-4
    critic_learning_rate: float = 1e-4
    max_gradient_norm: float = 40.0  # global-norm clip of each network's gradient; 0: none
    target_update_period: int = 100  # hard copy online -> target
    sgd_steps_per_call: int = 8  # SGD steps per jitted call (batches drawn on the device)
    # Networks.
    policy_layer_sizes: tuple[int, ...] = (256, 256)
    critic_layer_sizes: tuple[int, ...] = (256, 256)
    # Acting at evaluation: critic-weighted policy (sample K actions from pi, pick one with
    # probability softmax(Q / tau)). Off: the greedy tanh(mean) action.
    critic_weighted_policy: bool = False
    cwp_samples: int = 16
    cwp_temperature: float = 1.0

    def validate(self) -> None:
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0 (got {self.beta})")
        if self.weight_clip <= 0:
            raise ValueError(f"weight_clip must be > 0 (got {self.weight_clip})")
        if self.num_advantage_samples < 1 or self.num_td_samples < 1:
            raise ValueError("num_advantage_samples and num_td_samples must be >= 1")
        if self.critic_type == "c51" and not self.v_min < self.v_max:
            raise ValueError(f"v_min must be < v_max (got {self.v_min}, {self.v_max})")
        if self.batch_size < 1 or self.sgd_steps_per_call < 1:
            raise ValueError("batch_size and sgd_steps_per_call must be >= 1")
        if not 0.0 <= self.discount <= 1.0:
            raise ValueError(f"discount must be in [0, 1] (got {self.discount})")
        check_edge_likelihood(self.edge_likelihood)
        check_policy_head(self.policy_head, self.num_policy_components)
        if self.cwp_samples < 1 or self.cwp_temperature <= 0:
            raise ValueError("cwp_samples must be >= 1 and cwp_temperature > 0")
