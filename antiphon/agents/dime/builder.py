"""DiME builders. Online (`--env`): MPO's n-step transition replay, adder and dataset
(`builders.NStepTransitionBuilder`) with vector rewards of `config.objectives` and one critic
per objective. Offline (`--dataset`, RL + BC): MPO's networks and step on the offline program
(the dataset in device memory, batches drawn in the jitted step)."""

from __future__ import annotations

from antiphon.agents.builders import NStepTransitionBuilder, OfflineBuilder
from antiphon.agents.dime import acting, learning
from antiphon.agents.dime import networks as dime_networks
from antiphon.agents.dime.config import DiMEConfig, DiMEOfflineConfig


def check_environment_fit(config: DiMEOfflineConfig, env_spec) -> None:
    """Before anything is written: the teacher's snapshot must load for this environment's
    observations and actions (snapshots.SnapshotError, one line, otherwise)."""
    learning.make_teacher(config, env_spec)


class DiMEOfflineBuilder(OfflineBuilder):
    name = "dime"
    config_class = DiMEOfflineConfig
    networks_module = dime_networks
    learning_module = learning
    acting_module = acting
    check_environment_fit = staticmethod(check_environment_fit)


class DiMEBuilder(NStepTransitionBuilder):
    name = "dime"
    config_class = DiMEConfig
    networks_module = dime_networks
    learning_module = learning
    acting_module = acting
    learner_class = learning.DiMELearner
    offline_variant = DiMEOfflineBuilder  # what `antiphon train --agent dime --dataset` builds
    check_environment_fit = staticmethod(check_environment_fit)

    @staticmethod
    def reward_objectives(config: DiMEConfig) -> tuple[str, ...]:
        """The environment's vector reward (environments.make_environment(objectives=...))."""
        return config.reward_objectives()
