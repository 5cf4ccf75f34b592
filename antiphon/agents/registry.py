"""Agent names -> builder classes. Imports are lazy so the CLI starts fast and `--help` works
without building anything."""

from __future__ import annotations

import difflib
import importlib

_AGENTS: dict[str, str] = {
    "d4pg": "antiphon.agents.d4pg.builder:D4PGBuilder",
    "mpo": "antiphon.agents.mpo.builder:MPOBuilder",  # online only (offline = False)
    "crr": "antiphon.agents.crr.builder:CRRBuilder",
    "bc": "antiphon.agents.bc.builder:BCBuilder",
    "td3_bc": "antiphon.agents.td3_bc.builder:TD3BCBuilder",
    "qreg": "antiphon.agents.qreg.builder:QRegBuilder",  # offline: Q_sarsa-regularised TD3
    "dime": "antiphon.agents.dime.builder:DiMEBuilder",  # online; --dataset: offline RL + BC
    "r2d2": "antiphon.agents.r2d2.builder:R2D2Builder",  # online; --demos: R2D3
}


class UnknownAgentError(ValueError):
    pass


def list_agents() -> list[str]:
    return sorted(_AGENTS)


def get_builder_class(name: str):
    if name not in _AGENTS:
        close = difflib.get_close_matches(name, list_agents(), n=3)
        hint = f"; did you mean: {', '.join(close)}?" if close else ""
        raise UnknownAgentError(
            f"unknown agent '{name}'{hint} (available: {', '.join(list_agents())})"
        )
    module, cls = _AGENTS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def declared_spaces() -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Every agent's (observation_kinds, action_kinds) (antiphon.agents.compatibility)."""
    out = {}
    for name in list_agents():
        builder = get_builder_class(name)
        out[name] = (tuple(builder.observation_kinds), tuple(builder.action_kinds))
    return out


def check_environment(builder_class, env_spec, env_name: str) -> None:
    """Raises compatibility.IncompatibleEnvironmentError (one line) when `builder_class`'s agent
    cannot act in `env_spec`'s spaces; names the agents that can."""
    from antiphon.agents.compatibility import check_compatible

    check_compatible(
        builder_class.name,
        builder_class.observation_kinds,
        builder_class.action_kinds,
        env_spec,
        env_name,
        supporting=declared_spaces(),
    )
