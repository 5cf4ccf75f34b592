"""MPO hyperparameters: MPO, DMPO and MoG-DMPO by `critic_type` (Abdolmaleki et al. 2018;
Shahriari et al. 2022; acme's `agents/jax/mpo` defaults; ALGORITHMS.md §6.1, §6.2, §2)."""

from __future__ import annotations

import dataclasses
from typing import Literal

CRITIC_TYPES = ("scalar", "c51", "mog")


@dataclasses.dataclass(frozen=True)
class MPOConfig:
    # --- learning
    discount: float = 0.99  # gamma
    n_step: int = 5  # n-step transitions from the adder
    batch_size: int = 256
    policy_learning_rate: float = 1e-4  # Adam
    critic_learning_rate: float = 1e-4  # Adam
    dual_learning_rate: float = 1e-2  # Adam on the temperatures and trust-region multipliers
    max_gradient_norm: float = 40.0  # global-norm clip of each optimiser's gradient (0: none)
    target_update_period: int = 100  # hard copy of online -> target every this many SGD steps
    sgd_steps_per_call: int = 4  # SGD steps inside one jitted learner call (lax.scan)
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
    num_atoms: int = 51  # C51 support size
    v_min: float = -150.0  # C51 support bounds: must cover the task's discounted returns
    v_max: float = 150.0
    num_components: int = 5  # MoG components K
    init_scale: float = 1e-3  # MoG initial component std
    min_scale: float = 1e-4  # MoG std floor
    num_target_samples: int = 128  # MoG return samples M per bootstrap action (N * M pooled)
    # --- acting
    # Actor steps between parameter pulls (acme: 1000 for many actors; D4PG's measured 25 here).
    variable_update_period: int = 25
    # --- replay
    samples_per_insert: float = 32.0  # rate limiter: sampled items per inserted item
    min_replay_size: int = 1000
    max_replay_size: int = 1_000_000
    prefetch_size: int = 4  # batches kept ready on the learner's device

    def validate(self) -> None:
        """Raise ValueError (one line) on impossible settings. The ranges a field's name implies
        are `config_checks`'; these are the choices and relations between fields."""
        if self.critic_type not in CRITIC_TYPES:
            raise ValueError(f"critic_type must be one of {', '.join(CRITIC_TYPES)}")
        if self.critic_type == "c51" and self.num_atoms < 2:
            raise ValueError("num_atoms must be >= 2")
        if not self.v_min < self.v_max:
            raise ValueError("v_min must be < v_max")
        if self.max_replay_size < self.min_replay_size:
            raise ValueError("max_replay_size must be >= min_replay_size")
