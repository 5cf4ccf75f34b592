"""Programs, nodes and handles: Launchpad's programming model in our own code.

A `Program` is a graph of labelled nodes. `add_node` returns a `Handle`; passing a handle to
another node's constructor makes it an input of that node, and the launcher turns it into a
client before that node is built (the object itself on threads, a proxy on Ray). Node kinds keep
Launchpad's names: `PyClassNode` (serves its public methods; its `run()` is its main loop),
`CourierNode` (the same), `PyNode` (a function run once), `ReverbNode` (tables + server) and
`MultiThreadingColocation` (several nodes in one process).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any


class Handle:
    """A reference to a node; the launcher binds it to a client with `_bind` before use."""

    def __init__(self, node: Node):
        self._node = node
        self._client: Any = None
        self._bound = threading.Event()

    @property
    def node(self) -> Node:
        return self._node

    def _bind(self, client: Any) -> None:
        self._client = client
        self._bound.set()

    def dereference(self) -> Any:
        if not self._bound.is_set():
            raise RuntimeError(f"handle of node '{self._node.label}' is not bound yet")
        return self._client


def _find_handles(value: Any) -> list[Handle]:
    if isinstance(value, Handle):
        return [value]
    if isinstance(value, list | tuple):
        return [h for v in value for h in _find_handles(v)]
    if isinstance(value, dict):
        return [h for v in value.values() for h in _find_handles(v)]
    return []


def dereference(value: Any) -> Any:
    """Replace every Handle inside (nested lists/tuples/dicts of) `value` by its client."""
    if isinstance(value, Handle):
        return value.dereference()
    if isinstance(value, list | tuple):
        return type(value)(dereference(v) for v in value)
    if isinstance(value, dict):
        return {k: dereference(v) for k, v in value.items()}
    return value


class Node:
    label: str = ""

    def __init__(self, *args: Any, **kwargs: Any):
        self.args = args
        self.kwargs = kwargs
        self.handle = Handle(self)

    def input_handles(self) -> list[Handle]:
        return _find_handles(list(self.args)) + _find_handles(self.kwargs)


class PyClassNode(Node):
    """Builds `constructor(*args, **kwargs)`; the handle serves the instance's public methods."""

    def __init__(self, constructor: Callable[..., Any], *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.constructor = constructor


CourierNode = PyClassNode


class PyNode(Node):
    """Runs `function(*args, **kwargs)` once as the node's main loop; its handle is unusable."""

    def __init__(self, function: Callable[..., Any], *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.function = function


class ReverbNode(Node):
    """A Reverb server with the tables from `priority_tables_fn()`; the handle is its address.

    `checkpoint_dir` enables Reverb checkpoints (the directory must hold nothing else: Reverb
    keeps only the lexically greatest entry in it). `port` pins the port; else one is picked and,
    if `port_file` is given, persisted there so a restarted node comes back on the same address.
    """

    def __init__(
        self,
        priority_tables_fn: Callable[[], Sequence[Any]],
        checkpoint_dir: str | None = None,
        port: int | None = None,
        port_file: str | None = None,
        checkpoint_every_seconds: float | None = None,
    ):
        super().__init__()
        self.priority_tables_fn = priority_tables_fn
        self.checkpoint_dir = checkpoint_dir
        self.port = port
        self.port_file = port_file
        self.checkpoint_every_seconds = checkpoint_every_seconds


class MultiThreadingColocation(Node):
    """Several nodes run in one process (one thread each)."""

    def __init__(self, nodes: Sequence[Node]):
        super().__init__()
        self.nodes = list(nodes)

    def input_handles(self) -> list[Handle]:
        return [h for node in self.nodes for h in node.input_handles()]


@dataclasses.dataclass
class Program:
    name: str
    groups: dict[str, list[Node]] = dataclasses.field(default_factory=dict)
    _current_group: str | None = None

    @contextlib.contextmanager
    def group(self, label: str) -> Iterator[None]:
        if self._current_group is not None:
            raise ValueError("program groups cannot be nested")
        self._current_group = label
        try:
            yield
        finally:
            self._current_group = None

    def add_node(self, node: Node, label: str | None = None) -> Handle:
        label = label or self._current_group
        if label is None:
            raise ValueError("add_node needs a label or an enclosing `with program.group(...)`")
        nodes = self.groups.setdefault(label, [])
        node.label = f"{label}" if not nodes else f"{label}_{len(nodes)}"
        if nodes and len(nodes) == 1 and nodes[0].label == label:
            nodes[0].label = f"{label}_0"
        nodes.append(node)
        return node.handle

    def nodes(self) -> list[Node]:
        return [node for nodes in self.groups.values() for node in nodes]

    def ordered_nodes(self) -> list[Node]:
        """Nodes in an order where each node comes after every node whose handle it takes."""
        ordered: list[Node] = []
        state: dict[int, str] = {}

        def visit(node: Node) -> None:
            mark = state.get(id(node))
            if mark == "done":
                return
            if mark == "visiting":
                raise ValueError(f"cycle in program '{self.name}' at node '{node.label}'")
            state[id(node)] = "visiting"
            for handle in node.input_handles():
                visit(handle.node)
            state[id(node)] = "done"
            ordered.append(node)

        for node in self.nodes():
            visit(node)
        return ordered
