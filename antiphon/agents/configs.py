"""Hyperparameter groups several agents' configs share, defined once (agents derive their
config dataclass from the groups they use and add their own fields).

- `NStepReplayConfig`: what `builders.NStepTransitionBuilder` reads (n-step transitions in a
  rate-limited uniform table, batches prefetched to the learner, actors' parameter pulls).
- `DistributionalCriticConfig`: the value distribution's parameters of a C51 or mixture-of-
  Gaussians critic (`agents/distributional.py`).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class NStepReplayConfig:
    discount: float = 0.99  # gamma
    n_step: int = 5  # n-step transitions from the adder
    batch_size: int = 256
    sgd_steps_per_call: int = 4  # SGD steps inside one jitted learner call (lax.scan)
    # Actor steps between parameter pulls. Acme uses 1000 for many actors; with one or two actors
    # that leaves the behaviour policy stale for a whole episode (measured: it stalls learning).
    variable_update_period: int = 25
    samples_per_insert: float = 32.0  # rate limiter: sampled items per inserted item
    min_replay_size: int = 1000
    max_replay_size: int = 1_000_000
    prefetch_size: int = 4  # batches kept ready on the learner's device

    def validate(self) -> None:
        if self.max_replay_size < self.min_replay_size:
            raise ValueError("max_replay_size must be >= min_replay_size")


@dataclasses.dataclass(frozen=True)
class DistributionalCriticConfig:
    num_atoms: int = 51  # C51 support size
    v_min: float = -150.0  # C51 support bounds: must cover the task's discounted returns
    v_max: float = 150.0
    num_components: int = 5  # MoG components K
    init_scale: float = 1e-3  # MoG initial component std
    min_scale: float = 1e-4  # MoG std floor
    num_target_samples: int = 128  # MoG return samples M per bootstrap action

    def validate(self) -> None:
        if not self.v_min < self.v_max:
            raise ValueError("v_min must be < v_max")
