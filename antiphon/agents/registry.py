"""Agent names -> builder classes. Imports are lazy so the CLI starts fast and `--help` works
without building anything."""

from __future__ import annotations

import difflib
import importlib

_AGENTS: dict[str, str] = {
    "d4pg": "antiphon.agents.d4pg.builder:D4PGBuilder",
    "crr": "antiphon.agents.crr.builder:CRRBuilder",
    "bc": "antiphon.agents.bc.builder:BCBuilder",
    "td3_bc": "antiphon.agents.td3_bc.builder:TD3BCBuilder",
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
