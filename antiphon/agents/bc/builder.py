"""BC builder (offline)."""

from __future__ import annotations

from antiphon.agents.bc import acting, learning
from antiphon.agents.bc import networks as bc_networks
from antiphon.agents.bc.config import BCConfig
from antiphon.agents.builders import OfflineBuilder


class BCBuilder(OfflineBuilder):
    name = "bc"
    config_class = BCConfig
    networks_module = bc_networks
    learning_module = learning
    acting_module = acting
