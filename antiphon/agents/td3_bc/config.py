"""TD3+BC hyperparameters (Fujimoto & Gu 2021). Defaults: the authors' code (Adam 3e-4 for both
networks, batch 256, tau = 0.005, policy noise 0.2 clipped to 0.5, actor and targets updated every
2nd step, alpha = 2.5) with d3rlpy's (256, 256) ReLU MLPs (the authors use the same sizes)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class TD3BCConfig:
    # Actor: L_pi = -lambda mean Q1(s, pi(s)) + mean (pi(s) - a)^2, lambda = alpha / mean |Q1|.
    alpha: float = 2.5
    policy_delay: int = 2  # actor and target updates every `policy_delay` critic steps
    # Critic target: a' = clip(pi_target(s') + clip(N(0, policy_noise), +-noise_clip), -1, 1).
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    tau: float = 0.005  # Polyak averaging of the targets: t <- tau * online + (1 - tau) * t
    # Optimisation.
    discount: float = 0.99  # device_transitions stores gamma * (1 - terminal) in the batch
    batch_size: int = 256
    policy_learning_rate: float = 3e-4
    critic_learning_rate: float = 3e-4
    sgd_steps_per_call: int = 8  # SGD steps per jitted call (batches drawn on the device)
    # Networks.
    policy_layer_sizes: tuple[int, ...] = (256, 256)
    critic_layer_sizes: tuple[int, ...] = (256, 256)
    # The paper's state normalisation s <- (s - mean) / (std + eps) with the dataset's statistics
    # (eps = 1e-3 in the authors' code). The statistics live in the networks' params as entries
    # the optimiser never changes, so the evaluation actor receives them with the policy.
    normalize_observations: bool = False
    normalization_epsilon: float = 1e-3
    # Behaviour policy (evaluation=False): clip(pi(s) + N(0, exploration_sigma), -1, 1).
    exploration_sigma: float = 0.1

    def validate(self) -> None:
        if self.alpha <= 0:
            raise ValueError(f"alpha must be > 0 (got {self.alpha})")
        if self.policy_delay < 1:
            raise ValueError(f"policy_delay must be >= 1 (got {self.policy_delay})")
        if self.policy_noise < 0 or self.noise_clip < 0 or self.exploration_sigma < 0:
            raise ValueError("policy_noise, noise_clip and exploration_sigma must be >= 0")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1] (got {self.tau})")
        if not 0.0 <= self.discount <= 1.0:
            raise ValueError(f"discount must be in [0, 1] (got {self.discount})")
        if self.batch_size < 1 or self.sgd_steps_per_call < 1:
            raise ValueError("batch_size and sgd_steps_per_call must be >= 1")
        if self.policy_learning_rate <= 0 or self.critic_learning_rate <= 0:
            raise ValueError("learning rates must be > 0")
        if self.normalization_epsilon <= 0:
            raise ValueError(
                f"normalization_epsilon must be > 0 (got {self.normalization_epsilon})"
            )
