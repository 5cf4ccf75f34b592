"""D4PG builder: the n-step transition replay, adder, dataset and learner of
`builders.NStepTransitionBuilder`, with D4PG's networks and noisy deterministic policy."""

from __future__ import annotations

from antiphon.agents.builders import TRANSITION_TABLE, NStepTransitionBuilder
from antiphon.agents.d4pg import acting, learning
from antiphon.agents.d4pg import networks as d4pg_networks
from antiphon.agents.d4pg.config import D4PGConfig

REPLAY_TABLE = TRANSITION_TABLE


class D4PGBuilder(NStepTransitionBuilder):
    name = "d4pg"
    config_class = D4PGConfig
    networks_module = d4pg_networks
    learning_module = learning
    acting_module = acting
    learner_class = learning.D4PGLearner

    def make_policy(self, networks, evaluation: bool = False):
        return acting.make_policy(networks, sigma=0.0 if evaluation else self.config.sigma)
