"""Acme-style contracts. Structural (typing.Protocol), so any object with the methods fits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import dm_env

from antiphon.core.types import NestedArray, Params


@runtime_checkable
class Actor(Protocol):
    """Acts in an environment and records what it saw (through an adder, if it has one)."""

    def select_action(self, observation: NestedArray) -> NestedArray: ...

    def observe_first(self, timestep: dm_env.TimeStep) -> None: ...

    def observe(self, action: NestedArray, next_timestep: dm_env.TimeStep) -> None: ...

    def update(self, wait: bool = False) -> None:
        """Pull fresh parameters from the variable source (blocking only if `wait`)."""
        ...


@runtime_checkable
class VariableSource(Protocol):
    def get_variables(self, names: Sequence[str]) -> list[Params]: ...


@runtime_checkable
class Worker(Protocol):
    def run(self) -> None: ...


@runtime_checkable
class Saveable(Protocol):
    def save(self) -> Any: ...

    def restore(self, state: Any) -> None: ...


@runtime_checkable
class Learner(VariableSource, Worker, Saveable, Protocol):
    def step(self) -> None:
        """One learner update (which may run several SGD steps inside one jitted call)."""
        ...

    def run(self, num_steps: int | None = None) -> None: ...
