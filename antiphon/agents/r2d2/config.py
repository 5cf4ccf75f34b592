"""R2D2 / R2D3 hyperparameters (Kapturowski et al. 2019; Paine, Gulcehre et al. 2019;
ALGORITHMS.md §4).

Defaults are acme's R2D2: burn-in 40, trace 80, period 40 (a stored sequence is
burn_in + trace + 1 steps: the extra step is only bootstrapped from), n = 5, gamma 0.997,
priority exponent 0.9, importance exponent 0.6, eta 0.9, value rescaling eps 1e-3, target copy
every 2500 learner steps, batch 64, Adam lr 1e-3 eps 1e-3, parameters pulled every 400 actor
steps. R2D3 is `demos=PATH` with `demo_ratio` > 0 (the paper's best was 1/256).

Gridworlds (MiniGrid, BabyAI: episodes of tens to a few hundred steps) train on shorter
sequences; `GRIDWORLD` is the preset the README and RESULTS.md use:
`--burn-in-length 8 --trace-length 24 --sequence-period 12 --batch-size 32 --discount 0.99
--target-update-period 400 --lstm-size 128 --min-replay-size 200 --max-replay-size 20000`.
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
    max_replay_size: int = 100_000  # sequences in the agent's table
    min_replay_size: int = 1_000  # sequences before the learner starts
    samples_per_insert: float = 4.0  # sampled sequences per inserted one (rate-limited)
    # --- R2D3: demonstrations (a dataset file, `antiphon collect` formats) and their share of
    # each batch (0: R2D2 exactly, the demo table is not even created)
    demos: str = ""
    demo_ratio: float = 0.0
    # --- optimisation
    batch_size: int = 64
    sgd_steps_per_call: int = 1
    learning_rate: float = 1e-3
    adam_epsilon: float = 1e-3
    max_gradient_norm: float = 0.0  # 0: no clipping (acme's R2D2 does not clip)
    target_update_period: int = 2500
    prefetch_size: int = 2
    # --- networks
    lstm_size: int = 256
    torso_size: int = 256
    # --- acting: actor i of N acts epsilon-greedily with 0.4^(1 + 7 i / (N - 1))
    epsilon_base: float = 0.4
    epsilon_exponent: float = 7.0
    evaluation_epsilon: float = 0.01  # greedy with a little noise: gridworld loops end
    variable_update_period: int = 400  # actor steps between parameter pulls

    @property
    def sequence_length(self) -> int:
        """Steps per stored sequence: burn-in, trace, and the step the last one bootstraps from."""
        return self.burn_in_length + self.trace_length + 1

    def validate(self) -> None:
        if not 0.0 <= self.demo_ratio <= 1.0:
            raise ValueError(f"demo_ratio must be in [0, 1] (got {self.demo_ratio})")
        if self.demo_ratio > 0 and not self.demos:
            raise ValueError(f"demo_ratio {self.demo_ratio} needs demonstrations (--demos PATH)")
        if self.sequence_period > self.trace_length:
            raise ValueError(
                f"sequence_period ({self.sequence_period}) > trace_length "
                f"({self.trace_length}) would leave steps no sequence trains on"
            )
        for name in ("trace_length", "sequence_period", "n_step", "batch_size", "lstm_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.burn_in_length < 0:
            raise ValueError(f"burn_in_length must be >= 0 (got {self.burn_in_length})")
        if self.min_replay_size < 1 or self.min_replay_size > self.max_replay_size:
            raise ValueError(
                f"need 1 <= min_replay_size ({self.min_replay_size}) <= max_replay_size "
                f"({self.max_replay_size})"
            )


# The preset for MiniGrid / BabyAI (see the module docstring).
GRIDWORLD = dict(
    burn_in_length=8,
    trace_length=24,
    sequence_period=12,
    batch_size=32,
    discount=0.99,
    target_update_period=400,
    lstm_size=128,
    torso_size=128,
    min_replay_size=200,
    max_replay_size=20_000,
)
