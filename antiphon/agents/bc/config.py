"""Behaviour cloning hyperparameters: maximum likelihood of dataset actions under a tanh-Gaussian
(or Gaussian-mixture) policy, the same policy network as CRR (so CRR with the `bc` filter is
exactly this learner)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Literal

# How a dataset action on the box edge (|a| = 1) enters the tanh-Gaussian likelihood
# (agents/networks.py tanh_gaussian_log_prob). CRR's policy loss is this likelihood, weighted, so
# its config takes the same choice.
EdgeLikelihood = Literal["censored", "clipped"]
# The policy's distribution (agents/networks.py make_policy_head): acme JAX CRR's tanh-Gaussian,
# d3rlpy's Gaussian with a tanh-bounded mean, or the CRR authors' mixture of diagonal Gaussians.
PolicyHeadKind = Literal["tanh_gaussian", "gaussian", "gaussian_mixture"]
# BC's objective: the likelihood of dataset actions (acme, the CRR paper's BC) or the squared
# error of the greedy action (d3rlpy's and CORL's deterministic BC).
BCLoss = Literal["likelihood", "mse"]


def check_edge_likelihood(value: str) -> None:
    choices = typing.get_args(EdgeLikelihood)
    if value not in choices:
        raise ValueError(f"edge_likelihood must be one of {choices} (got {value!r})")


def check_policy_head(kind: str, num_components: int) -> None:
    choices = typing.get_args(PolicyHeadKind)
    if kind not in choices:
        raise ValueError(f"policy_head must be one of {choices} (got {kind!r})")
    if num_components < 1:
        raise ValueError(f"num_policy_components must be >= 1 (got {num_components})")


@dataclasses.dataclass(frozen=True)
class BCConfig:
    batch_size: int = 256
    learning_rate: float = 1e-4  # CRR's policy learning rate, so CRR(bc) == BC step for step
    max_gradient_norm: float = 40.0  # global-norm clip; 0: none
    sgd_steps_per_call: int = 8
    policy_layer_sizes: tuple[int, ...] = (256, 256)
    edge_likelihood: EdgeLikelihood = "censored"  # "censored" (acme) | "clipped"
    policy_head: PolicyHeadKind = "tanh_gaussian"  # | "gaussian" | "gaussian_mixture"
    num_policy_components: int = 5  # gaussian_mixture: K
    # "likelihood": -log pi(a|s); "mse": ||mode(pi(.|s)) - a||^2 (deterministic BC; the head's
    # mode is the greedy action, so acting is unchanged)
    loss: BCLoss = "likelihood"
    discount: float = 0.99  # unused by the loss; device_transitions stores gamma * (1 - terminal)

    def validate(self) -> None:
        if self.batch_size < 1 or self.sgd_steps_per_call < 1:
            raise ValueError("batch_size and sgd_steps_per_call must be >= 1")
        check_edge_likelihood(self.edge_likelihood)
        check_policy_head(self.policy_head, self.num_policy_components)
        if self.loss not in typing.get_args(BCLoss):
            raise ValueError(f"loss must be one of {typing.get_args(BCLoss)} (got {self.loss!r})")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0 (got {self.learning_rate})")
