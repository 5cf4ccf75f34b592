"""TD3+BC builder (offline): networks, learner on a dataset in device memory, policies. The
policy's params carry the observation normaliser's statistics, if any."""

from __future__ import annotations

from antiphon.agents.builders import OfflineBuilder
from antiphon.agents.td3_bc import acting, learning
from antiphon.agents.td3_bc import networks as td3_bc_networks
from antiphon.agents.td3_bc.config import TD3BCConfig


class TD3BCBuilder(OfflineBuilder):
    name = "td3_bc"
    config_class = TD3BCConfig
    networks_module = td3_bc_networks
    learning_module = learning
    acting_module = acting
