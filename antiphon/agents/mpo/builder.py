"""MPO builder: the n-step transition replay, adder, dataset and learner of
`builders.NStepTransitionBuilder` (as D4PG's), with MPO's networks, learner and Gaussian
policies. Online only: `antiphon train --agent mpo --dataset ...` is refused."""

from __future__ import annotations

from antiphon.agents.builders import NStepTransitionBuilder
from antiphon.agents.mpo import acting, learning
from antiphon.agents.mpo import networks as mpo_networks
from antiphon.agents.mpo.config import MPOConfig


class MPOBuilder(NStepTransitionBuilder):
    name = "mpo"
    config_class = MPOConfig
    networks_module = mpo_networks
    learning_module = learning
    acting_module = acting
    learner_class = learning.MPOLearner
