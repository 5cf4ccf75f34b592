"""Behaviour cloning hyperparameters: maximum likelihood of dataset actions under a tanh-Gaussian
policy, the same policy network as CRR (so CRR with the `bc` filter is exactly this learner)."""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True)
class BCConfig:
    batch_size: int = 256
    learning_rate: float = 1e-4  # CRR's policy learning rate, so CRR(bc) == BC step for step
    max_gradient_norm: float = 40.0  # global-norm clip; 0: none
    sgd_steps_per_call: int = 8
    policy_layer_sizes: tuple[int, ...] = (256, 256)
    # Dataset actions on the box edge: "censored" (acme) or "clipped"; the same choice as CRR's.
    edge_likelihood: Literal["censored", "clipped"] = "censored"
    discount: float = 0.99  # unused by the loss; device_transitions stores gamma * (1 - terminal)

    def validate(self) -> None:
        if self.batch_size < 1 or self.sgd_steps_per_call < 1:
            raise ValueError("batch_size and sgd_steps_per_call must be >= 1")
        if self.edge_likelihood not in ("censored", "clipped"):
            raise ValueError(
                f"edge_likelihood must be censored or clipped (got {self.edge_likelihood!r})"
            )
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0 (got {self.learning_rate})")
