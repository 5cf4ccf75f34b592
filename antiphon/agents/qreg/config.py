"""Q_sarsa-regularised offline TD3 (Shi, Dadashi, Chi, Castro, Geist, ECML-PKDD 2023;
ALGORITHMS.md §5). Only the paper's abstract and Figure 1 could be read: it estimates the
behaviour policy's Q-function with SARSA on the dataset's own next actions and regularises a TD3
learner towards it, in two algorithms. The exact forms are unknown, so the family of §5.2 is
built behind `reg`, with these defaults until the paper's text is at hand:

- algorithm 1 = `reg="critic"`: the critic is pulled towards Q_sarsa at the policy's actions;
- algorithm 2 = `reg="critic_actor"`: the same plus an actor penalty;
- `reg="target"` (the bootstrap blends in Q_sarsa) and `use_bc` (TD3+BC's term) are switches;
- `reg="none"`: offline TD3 with no regulariser (expected to collapse: why one is needed);
- Q_sarsa is pre-trained for `sarsa_steps` SGD steps, then frozen (`sarsa_mode="pretrain"`), or
  trained alongside from the start (`"cotrain"`).

TD3's defaults (`agents/td3.TD3Config`, the TD3+BC authors' code): Adam 3e-4, batch 256,
tau 0.005 (Q_sarsa's target too), policy noise 0.2 clipped to 0.5, policy delay 2, (256, 256)
ReLU MLPs.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from antiphon.agents.td3 import TD3Config

REGULARISERS = ("none", "critic", "target", "critic_actor")
SARSA_MODES = ("pretrain", "cotrain")


@dataclasses.dataclass(frozen=True)
class QRegConfig(TD3Config):
    # --- the regulariser (learning.py has the losses)
    reg: Literal["none", "critic", "target", "critic_actor"] = "critic"
    # lambda. critic / critic_actor: weight of sum_i mean (Q_i(s, pi(s)) - Q_sarsa(s, pi(s)))^2
    # in the critic loss (both it and the TD loss are squared Q errors: no normalisation needed);
    # target: the blend (1 - lambda) min_i Q'_i + lambda Q_sarsa of the bootstrap, in [0, 1].
    reg_weight: float = 1.0
    # lambda_pi (critic_actor): weight of mean (Q1(s, pi(s)) - Q_sarsa(s, pi(s)))^2 / mean |Q1|
    # in the actor loss, next to -mean Q1(s, pi(s)) (the same units, so one value transfers).
    actor_reg_weight: float = 1.0
    # TD3+BC's actor loss instead of TD3's: -alpha / mean |Q1| * mean Q1 + mean (pi(s) - a)^2.
    use_bc: bool = False
    alpha: float = 2.5
    # --- Q_sarsa: Q(s, a) -> r + gamma d Q'(s', a') with a' the dataset's next action
    sarsa_mode: Literal["pretrain", "cotrain"] = "pretrain"
    sarsa_steps: int = 100_000  # pretrain: SGD steps before TD3 starts (added to --steps)
    sarsa_learning_rate: float = 3e-4
    sarsa_layer_sizes: tuple[int, ...] = (256, 256)
    # Rewards times this before learning; None: 1 / max(1, max |r| per environment step)
    # (agents/offline.py reward_scale; DM Control data is left exactly as it is).
    reward_scale: float | None = None

    def validate(self) -> None:
        """One-line ValueErrors for impossible choices (ranges: `config_checks`)."""
        super().validate()
        if self.reg not in REGULARISERS:
            raise ValueError(f"reg must be one of {', '.join(REGULARISERS)} (got {self.reg!r})")
        if self.sarsa_mode not in SARSA_MODES:
            raise ValueError(f"sarsa_mode must be one of {', '.join(SARSA_MODES)}")
        if self.reg == "target" and not 0.0 <= self.reg_weight <= 1.0:
            raise ValueError(
                f"reg_weight is the bootstrap's blend with reg=target: in [0, 1] "
                f"(got {self.reg_weight})"
            )

    def uses_sarsa(self) -> bool:
        return self.reg != "none"

    def pretraining_steps(self) -> int:
        """SGD steps of Q_sarsa alone before TD3 starts."""
        return self.sarsa_steps if self.uses_sarsa() and self.sarsa_mode == "pretrain" else 0
