"""R2D2 / R2D3 hyperparameters (Kapturowski et al. 2019; Paine, Gulcehre et al. 2019;
ALGORITHMS.md §4). Defaults: acme's R2D2 (burn-in 40, trace 80, period 40, n = 5, gamma 0.997,
priority exponent 0.9, importance exponent 0.6, eta 0.9, value rescaling eps 1e-3, target copy
every 2500 learner steps, batch 64) and R2D3's demo ratio 1/256 when demonstrations are given.

Work in progress (issue 23): the losses and the exploration ladder are in learning.py; the
networks, actor, replay tables and builder are not written yet, so the agent is not registered.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class R2D2Config:
    # --- sequences
    burn_in_length: int = 40  # steps unrolled from the stored state without a loss
    trace_length: int = 80  # steps with a loss
    sequence_period: int = 40  # a new sequence every `period` steps (overlap trace - period)
    # --- loss
    discount: float = 0.997
    n_step: int = 5
    value_rescaling_epsilon: float = 1e-3  # h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps x
    # --- prioritised replay
    priority_eta: float = 0.9  # p = eta max_t |delta_t| + (1 - eta) mean_t |delta_t|
    priority_exponent: float = 0.9
    importance_sampling_exponent: float = 0.6
    # --- R2D3: the demonstrations' share of each batch (0: R2D2 exactly)
    demo_ratio: float = 0.0
    # --- optimisation
    batch_size: int = 64
    learning_rate: float = 1e-3
    adam_epsilon: float = 1e-3
    target_update_period: int = 2500
    # --- exploration: actor i of N acts epsilon-greedily with 0.4^(1 + 7 i / (N - 1))
    epsilon_base: float = 0.4
    epsilon_exponent: float = 7.0

    def validate(self) -> None:
        if not 0.0 <= self.demo_ratio <= 1.0:
            raise ValueError(f"demo_ratio must be in [0, 1] (got {self.demo_ratio})")
        if self.sequence_period > self.trace_length:
            raise ValueError(
                f"sequence_period ({self.sequence_period}) > trace_length "
                f"({self.trace_length}) would leave steps no sequence trains on"
            )
