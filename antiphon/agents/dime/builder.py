"""DiME builder (offline, RL + BC): MPO's networks and step with DiME's mixture of experts, on
the offline program (the dataset in device memory, batches drawn in the jitted step)."""

from __future__ import annotations

from antiphon.agents.builders import OfflineBuilder
from antiphon.agents.dime import acting, learning
from antiphon.agents.dime import networks as dime_networks
from antiphon.agents.dime.config import DiMEConfig


class DiMEBuilder(OfflineBuilder):
    name = "dime"
    config_class = DiMEConfig
    networks_module = dime_networks
    learning_module = learning
    acting_module = acting
