"""DiME hyperparameters (Abdolmaleki et al. 2021, "On Multi-objective Policy Optimization as a
Tool for Reinforcement Learning"; ALGORITHMS.md §3). The paper's text could not be read; where
its exact form is unknown the switchable family of §3.3 is built and these are the defaults:

- preferences are the mixture weights alpha_k of the distilled experts (normalised to sum 1);
- every objective with a critic keeps its own constrained E-step (KL(q_k || pi_old) <= eps_k,
  a learned temperature): what makes DiME scale-invariant. `temperature_mode="fixed"` is the
  KL-regularised reading (eta_k fixed, no constraint), for side-by-side runs.

MPO's defaults (acme) for everything MPO has: N = 20 actions, eps 0.1, eps_mu 2.5e-3,
eps_sigma 1e-6 per dimension, action penalty on, clip 40, target copy every 100 steps; Adam 1e-4
online, 3e-4 offline (measured, see the field).
The networks are the offline agents' (256, 256) (CRR, BC, TD3+BC here), on MPO's LayerNorm torso.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from antiphon.agents.configs import DistributionalCriticConfig, NStepReplayConfig

CRITIC_TYPES = ("scalar", "c51", "mog")
# Offline: rl, an expert improved on the critic's Q of the dataset's reward (E-step); bc, the
# behaviour policy, whose samples are the dataset actions; teacher (online too), the samples of
# a teacher policy (`teacher`) at the same states.
OFFLINE_OBJECTIVES = ("rl", "bc", "teacher")
TEACHER = "teacher"
TEMPERATURE_MODES = ("learned", "fixed")
COMBINATIONS = ("dime", "mompo", "linear")


@dataclasses.dataclass(frozen=True)
class DiMEOfflineConfig(DistributionalCriticConfig):
    """`antiphon train --agent dime --dataset PATH`: objectives rl and bc."""

    # --- objectives and preferences
    objectives: tuple[str, ...] = ("rl", "bc")
    # alpha_k, one per objective (normalised). 0.75 / 0.25: the best of 0.25 / 0.5 / 0.75 for rl
    # on gymnasium Pendulum's mixed data (benchmarks/RESULTS.md, "DiME offline").
    preferences: tuple[float, ...] = (0.75, 0.25)
    temperature_mode: Literal["learned", "fixed"] = "learned"
    fixed_temperature: float = 1.0  # eta with temperature_mode="fixed" (in reward units)
    # The teacher objective's policy: RUN_DIR[@expert|@medium|@latest|@step=N] of any antiphon
    # run (D4PG, MPO, CRR, BC, DiME); it only labels, `teacher_samples` actions of its
    # behaviour policy per state, each an equal part of the teacher expert.
    teacher: str = ""
    teacher_samples: int = 4
    # --- policy improvement (mpo_losses)
    epsilon: float = 0.1  # the rl objective's E-step KL bound
    epsilon_mean: float = 2.5e-3  # M-step: KL bound on the mean (per dimension)
    epsilon_stddev: float = 1e-6  # M-step: KL bound on the std
    epsilon_penalty: float = 1e-3  # the action penalty's E-step bound
    per_dim_constraining: bool = True
    action_penalization: bool = True  # part of the rl expert (keeps its samples in the box)
    num_samples: int = 20  # N actions from the target policy, for the E-step and the bootstrap
    # --- critic (policy evaluation of pi on the data)
    critic_type: Literal["scalar", "c51", "mog"] = "scalar"  # and agents/configs.py's support
    # --- optimisation
    # Rewards times this before learning; None: 1 / max(1, max |r| per environment step)
    # (agents/offline.py reward_scale; DM Control data is left exactly as it is).
    reward_scale: float | None = None
    discount: float = 0.99
    batch_size: int = 256
    # Offline 3e-4 (measured: Pendulum mixed, 10k steps, seed 0: -696 at 1e-4, -115 at 3e-4;
    # the paper's offline rate is unknown); online MPO's 1e-4 (DiMEConfig).
    policy_learning_rate: float = 3e-4
    critic_learning_rate: float = 3e-4
    dual_learning_rate: float = 1e-2
    max_gradient_norm: float = 40.0
    target_update_period: int = 100
    sgd_steps_per_call: int = 8
    # --- networks
    policy_layer_sizes: tuple[int, ...] = (256, 256)
    critic_layer_sizes: tuple[int, ...] = (256, 256)
    policy_init_scale: float = 0.7
    policy_min_scale: float = 1e-6

    # The objective names this mode accepts (None: any; the environment checks reward names).
    known_objectives = OFFLINE_OBJECTIVES

    def validate(self) -> None:
        """One-line ValueErrors for impossible choices (ranges: `config_checks`)."""
        known = self.known_objectives
        unknown = [name for name in self.objectives if known and name not in known]
        if unknown or not self.objectives:
            raise ValueError(
                f"objectives must be names from {', '.join(known)} (got "
                f"{','.join(self.objectives) or 'none'})"
            )
        if len(set(self.objectives)) != len(self.objectives):
            raise ValueError(f"objectives must not repeat (got {','.join(self.objectives)})")
        if (TEACHER in self.objectives) != bool(self.teacher):
            raise ValueError(
                "the teacher objective and --teacher RUN_DIR@SNAPSHOT go together (objectives "
                f"{','.join(self.objectives)}, teacher {self.teacher or 'none'})"
            )
        if len(self.preferences) != len(self.objectives):
            raise ValueError(
                f"preferences needs one weight per objective ({len(self.objectives)}: "
                f"{','.join(self.objectives)}), got {len(self.preferences)}"
            )
        if self.critic_type not in CRITIC_TYPES:
            raise ValueError(f"critic_type must be one of {', '.join(CRITIC_TYPES)}")
        if self.temperature_mode not in TEMPERATURE_MODES:
            raise ValueError(f"temperature_mode must be one of {', '.join(TEMPERATURE_MODES)}")
        if self.critic_type == "c51" and not self.v_min < self.v_max:
            raise ValueError(f"v_min must be < v_max (got {self.v_min}, {self.v_max})")

    def num_stacked_critics(self) -> int:
        """Offline: one critic (the dataset's reward), unstacked."""
        return 0

    def reward_objectives(self) -> tuple[str, ...]:
        """The objectives with a critic (the others' experts are given by action samples)."""
        return tuple(name for name in self.objectives if name not in ("bc", TEACHER))

    def mixture_weights(self) -> dict[str, float]:
        """{objective: alpha_k}, normalised to sum 1."""
        total = sum(self.preferences)
        return {name: w / total for name, w in zip(self.objectives, self.preferences, strict=True)}


@dataclasses.dataclass(frozen=True)
class DiMEConfig(DiMEOfflineConfig, NStepReplayConfig):
    """`antiphon train --agent dime --env ENV`: one critic per reward objective of the
    environment's vector reward (`--objectives task,action_cost`), MPO's online defaults."""

    # reward names (environments.REWARD_OBJECTIVES), and "teacher" with --teacher
    objectives: tuple[str, ...] = ("task",)
    preferences: tuple[float, ...] = (1.0,)
    # dime: sum_k alpha_k q_k (own eta_k each); mompo: sum_k q_k, preferences only through
    # `epsilons`; linear: one expert on sum_k alpha_k Q_k (ALGORITHMS.md §3.3).
    combination: Literal["dime", "mompo", "linear"] = "dime"
    # eps_k per objective (empty: `epsilon` for every one); mompo's preferences.
    epsilons: tuple[float, ...] = ()
    # c_k per reward objective: the learner trains on c_k r_k (empty: 1 each). Returns are still
    # logged unscaled. What the scale-invariance check changes (`--reward-scales 1,100`).
    reward_scales: tuple[float, ...] = ()
    critic_type: Literal["scalar", "c51", "mog"] = "mog"
    policy_learning_rate: float = 1e-4
    critic_learning_rate: float = 1e-4
    sgd_steps_per_call: int = 4
    policy_layer_sizes: tuple[int, ...] = (256, 256, 256)
    critic_layer_sizes: tuple[int, ...] = (512, 512, 256)
    # n-step replay: agents/configs.NStepReplayConfig's

    known_objectives = None  # the environment refuses names it does not know

    def validate(self) -> None:
        super().validate()
        if self.combination not in COMBINATIONS:
            raise ValueError(f"combination must be one of {', '.join(COMBINATIONS)}")
        if "bc" in self.objectives:
            raise ValueError("the bc objective learns from a dataset: give --dataset PATH")
        rewards = self.reward_objectives()
        if not rewards:
            raise ValueError("objectives need at least one reward objective (e.g. task)")
        if self.epsilons and len(self.epsilons) != len(rewards):
            raise ValueError(
                f"epsilons needs one bound per reward objective ({len(rewards)}: "
                f"{','.join(rewards)}), got {len(self.epsilons)}"
            )
        if self.reward_scales and len(self.reward_scales) != len(rewards):
            raise ValueError(
                f"reward_scales needs one factor per reward objective ({len(rewards)}: "
                f"{','.join(rewards)}), got {len(self.reward_scales)}"
            )
        NStepReplayConfig.validate(self)

    def num_stacked_critics(self) -> int:
        """Online: one critic per reward objective, stacked."""
        return len(self.reward_objectives())

    def objective_reward_scales(self) -> tuple[float, ...]:
        return self.reward_scales or (1.0,) * len(self.reward_objectives())

    def objective_epsilons(self) -> tuple[float, ...]:
        return self.epsilons or (self.epsilon,) * len(self.reward_objectives())
