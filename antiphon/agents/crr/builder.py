"""CRR builder (offline): networks, learner on a dataset in device memory, evaluation policy."""

from __future__ import annotations

from antiphon.agents.builders import OfflineBuilder
from antiphon.agents.crr import acting, learning
from antiphon.agents.crr import networks as crr_networks
from antiphon.agents.crr.config import CRRConfig


class CRRBuilder(OfflineBuilder):
    name = "crr"
    config_class = CRRConfig
    networks_module = crr_networks
    learning_module = learning
    acting_module = acting

    def variable_names(self, evaluation: bool = True) -> list[str] | str:
        """What the policy reads: "policy", or ["policy", "critic"] for the critic-weighted
        policy (its snapshots hold that list; `antiphon collect` restores by these names)."""
        return acting.variable_names(self.config, evaluation)
