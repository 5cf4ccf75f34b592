"""D4PG hyperparameters (Barth-Maron et al. 2018; Acme's defaults; ALGORITHMS.md §2, §6.3)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from antiphon.agents.configs import DistributionalCriticConfig, NStepReplayConfig


@dataclasses.dataclass(frozen=True)
class D4PGConfig(NStepReplayConfig, DistributionalCriticConfig):
    """The replay and value-distribution groups (`agents/configs.py`, acme's values) and:"""

    # --- learning
    policy_learning_rate: float = 1e-4  # Adam
    critic_learning_rate: float = 1e-4  # Adam
    target_update_period: int = 100  # hard copy of online -> target every this many SGD steps
    clip_dqda: bool = True  # clip each example's dQ/da to L2 norm <= 1 (Acme, rlax.dpg_loss)
    # --- networks
    policy_layer_sizes: tuple[int, ...] = (300, 200)
    critic_layer_sizes: tuple[int, ...] = (400, 300)
    # --- critic
    critic_type: Literal["mog", "c51"] = "mog"
    # --- acting
    sigma: float = 0.3  # std of the Gaussian exploration noise (actions in [-1, 1])

    def validate(self) -> None:
        """Raise ValueError (one line) on impossible settings."""
        NStepReplayConfig.validate(self)
        DistributionalCriticConfig.validate(self)
        checks = [
            (0.0 <= self.discount <= 1.0, "discount must be in [0, 1]"),
            (self.n_step >= 1, "n_step must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.sgd_steps_per_call >= 1, "sgd_steps_per_call must be >= 1"),
            (self.target_update_period >= 1, "target_update_period must be >= 1"),
            (self.critic_type in ("mog", "c51"), "critic_type must be 'mog' or 'c51'"),
            (self.num_atoms >= 2, "num_atoms must be >= 2"),
            (self.num_components >= 1, "num_components must be >= 1"),
            (self.num_target_samples >= 1, "num_target_samples must be >= 1"),
            (self.sigma >= 0.0, "sigma must be >= 0"),
            (self.samples_per_insert > 0, "samples_per_insert must be > 0"),
            (self.min_replay_size >= 1, "min_replay_size must be >= 1"),
            (len(self.policy_layer_sizes) >= 1, "policy_layer_sizes must not be empty"),
            (len(self.critic_layer_sizes) >= 1, "critic_layer_sizes must not be empty"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
