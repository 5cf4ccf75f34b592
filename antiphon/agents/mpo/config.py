"""MPO hyperparameters: MPO, DMPO and MoG-DMPO by `critic_type` (Abdolmaleki et al. 2018;
Shahriari et al. 2022; acme's `agents/jax/mpo` defaults; ALGORITHMS.md §6.1, §6.2, §2)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from antiphon.agents.configs import DistributionalCriticConfig, NStepReplayConfig

CRITIC_TYPES = ("scalar", "c51", "mog")


@dataclasses.dataclass(frozen=True)
class MPOConfig(NStepReplayConfig, DistributionalCriticConfig):
    """The replay and value-distribution groups (`agents/configs.py`, acme's values) and:"""

    # --- learning
    policy_learning_rate: float = 1e-4  # Adam
    critic_learning_rate: float = 1e-4  # Adam
    dual_learning_rate: float = 1e-2  # Adam on the temperatures and trust-region multipliers
    max_gradient_norm: float = 40.0  # global-norm clip of each optimiser's gradient (0: none)
    target_update_period: int = 100  # hard copy of online -> target every this many SGD steps
    num_samples: int = 20  # N actions from the target policy, for improvement and bootstrap
    # --- policy improvement (mpo_losses.mpo_loss)
    epsilon: float = 0.1  # E-step: KL(q || pi_old) bound, sets the temperature
    epsilon_mean: float = 2.5e-3  # M-step: KL bound on the mean (per dimension by default)
    epsilon_stddev: float = 1e-6  # M-step: KL bound on the std
    epsilon_penalty: float = 1e-3  # the action penalty's E-step bound
    per_dim_constraining: bool = True  # one trust region per action dimension
    action_penalization: bool = True  # MO-MPO's out-of-box action cost as a second objective
    # --- networks
    policy_layer_sizes: tuple[int, ...] = (256, 256, 256)
    critic_layer_sizes: tuple[int, ...] = (512, 512, 256)
    policy_init_scale: float = 0.7  # the Gaussian policy's initial std
    policy_min_scale: float = 1e-6  # its std floor
    # --- critic
    critic_type: Literal["scalar", "c51", "mog"] = "mog"  # MPO | DMPO | MoG-DMPO

    def validate(self) -> None:
        """Raise ValueError (one line) on impossible settings. The ranges a field's name implies
        are `config_checks`'; these are the choices and relations between fields."""
        if self.critic_type not in CRITIC_TYPES:
            raise ValueError(f"critic_type must be one of {', '.join(CRITIC_TYPES)}")
        if self.critic_type == "c51" and self.num_atoms < 2:
            raise ValueError("num_atoms must be >= 2")
        DistributionalCriticConfig.validate(self)
        NStepReplayConfig.validate(self)
