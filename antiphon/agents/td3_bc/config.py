"""TD3+BC hyperparameters (Fujimoto & Gu 2021): TD3's (`agents/td3.TD3Config`: the authors'
code's Adam 3e-4, batch 256, tau 0.005, policy noise 0.2 clipped to 0.5, delay 2, (256, 256)
ReLU MLPs) and the BC term's weight alpha = 2.5."""

from __future__ import annotations

import dataclasses

from antiphon.agents.td3 import TD3Config


@dataclasses.dataclass(frozen=True)
class TD3BCConfig(TD3Config):
    # Actor: L_pi = -lambda mean Q1(s, pi(s)) + mean (pi(s) - a)^2, lambda = alpha / mean |Q1|.
    alpha: float = 2.5
