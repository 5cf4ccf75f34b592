"""Q_sarsa-regularised TD3 builder (offline): the dataset as (s, a, r, d, s', a') rows with the
logged next action (`offline.device_sarsa_transitions`), refused in one line when its rows are
not consecutive steps of their episodes."""

from __future__ import annotations

from antiphon.agents import offline
from antiphon.agents.builders import OfflineBuilder
from antiphon.agents.qreg import acting, learning
from antiphon.agents.qreg import networks as qreg_networks
from antiphon.agents.qreg.config import QRegConfig


class QRegBuilder(OfflineBuilder):
    name = "qreg"
    config_class = QRegConfig
    networks_module = qreg_networks
    learning_module = learning
    acting_module = acting

    def make_device_data(self, dataset):
        if not self.config.uses_sarsa():  # offline TD3: no next actions needed
            return super().make_device_data(dataset)
        return offline.device_sarsa_transitions(dataset, self.config.discount)

    @staticmethod
    def check_dataset(config: QRegConfig, dataset) -> None:
        if config.uses_sarsa():
            offline.sarsa_next_actions(dataset)

    @staticmethod
    def pretraining_steps(config: QRegConfig) -> int:
        return config.pretraining_steps()
