"""The threads launcher: every node runs as a thread of the calling process (the embedded default).

Handles become the node objects themselves, or with `serialize_calls=True` (used by tests) a proxy
that pickles every argument and result, so a program that works here does not depend on sharing
memory between nodes and will also work on the Ray launcher.
"""

from __future__ import annotations

import logging
import os
import pickle
import threading
import time
from typing import Any

from antiphon.launch import program as lp

log = logging.getLogger(__name__)

_current: LaunchedProgram | None = None
_current_lock = threading.Lock()


def stop() -> None:
    """Ask the running program to stop (Launchpad's `lp.stop()`); callable from any node."""
    with _current_lock:
        current = _current
    if current is not None:
        current.request_stop()


class _PicklingProxy:
    """Calls methods of `target` with pickled copies of arguments and results."""

    def __init__(self, target: Any):
        self._target = target

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return pickle.loads(pickle.dumps(attribute))

        def call(*args: Any, **kwargs: Any) -> Any:
            args, kwargs = pickle.loads(pickle.dumps((args, kwargs)))
            return pickle.loads(pickle.dumps(attribute(*args, **kwargs)))

        return call


def pinned_port(port_file: str | None, port: int | None) -> int | None:
    """The Reverb port: `port` if given, else the one persisted in `port_file`, else a new free
    one (persisted there), so a restarted replay node comes back on the same address."""
    if port is not None or port_file is None:
        return port
    if os.path.exists(port_file):
        with open(port_file) as f:
            return int(f.read().strip())
    import portpicker

    port = portpicker.pick_unused_port()
    os.makedirs(os.path.dirname(port_file) or ".", exist_ok=True)
    with open(port_file, "w") as f:
        f.write(str(port))
    return port


class _ReverbService:
    """A running Reverb server for a ReverbNode, with optional periodic checkpoints."""

    def __init__(self, node: lp.ReverbNode, stop_event: threading.Event):
        from antiphon.replay import tables

        self._node = node
        port = pinned_port(node.port_file, node.port)
        self.server = tables.start_server(
            list(node.priority_tables_fn()), port=port, checkpoint_dir=node.checkpoint_dir
        )
        self.address = f"localhost:{self.server.port}"
        self._stop_event = stop_event

    def run(self) -> None:
        period = self._node.checkpoint_every_seconds
        if not period or not self._node.checkpoint_dir:
            return
        while not self._stop_event.wait(period):
            self.checkpoint()

    def checkpoint(self) -> None:
        from antiphon.replay import tables

        if self._node.checkpoint_dir:
            tables.checkpoint(self.address)

    def stop(self) -> None:
        if self._node.checkpoint_dir:
            try:
                self.checkpoint()
            except Exception as e:  # noqa: BLE001 - a failed final checkpoint must not hang shutdown
                log.warning("final replay checkpoint failed: %s", e)
        self.server.stop()


def call_on_nodes(instances: dict[str, Any], method: str) -> None:
    """Call `method()` on every node object that has it (Reverb services excepted: the launcher
    stops them last), logging failures instead of raising: shutdown must reach every node."""
    for label, instance in instances.items():
        if isinstance(instance, _ReverbService):
            continue
        function = getattr(instance, method, None)
        if callable(function):
            try:
                function()
            except Exception as e:  # noqa: BLE001
                log.warning("%s of node %s failed: %r", method, label, e)


class LaunchedProgram:
    def __init__(self, program: lp.Program, serialize_calls: bool = False):
        self.program = program
        self._serialize_calls = serialize_calls
        self._stop_requested = threading.Event()
        self._threads: list[threading.Thread] = []
        self._errors: list[tuple[str, BaseException]] = []
        self._services: list[_ReverbService] = []
        self.instances: dict[str, Any] = {}
        self._shutdown_done = False

    # ---- building
    def start(self) -> LaunchedProgram:
        global _current
        with _current_lock:
            _current = self
        try:
            for node in self.program.ordered_nodes():
                self._build(node)
        except BaseException:
            self.shutdown()
            raise
        return self

    def _build(self, node: lp.Node) -> None:
        if isinstance(node, lp.MultiThreadingColocation):
            for inner in node.nodes:
                self._build(inner)
            node.handle._bind(None)
            return
        if isinstance(node, lp.ReverbNode):
            service = _ReverbService(node, self._stop_requested)
            self._services.append(service)
            self.instances[node.label] = service
            node.handle._bind(service.address)
            self._start_thread(node.label, service.run)
            return
        args = lp.dereference(node.args)
        kwargs = lp.dereference(node.kwargs)
        if isinstance(node, lp.PyNode):
            node.handle._bind(None)
            self._start_thread(node.label, lambda: node.function(*args, **kwargs))
            return
        instance = node.constructor(*args, **kwargs)
        self.instances[node.label] = instance
        node.handle._bind(_PicklingProxy(instance) if self._serialize_calls else instance)
        if callable(getattr(instance, "run", None)):
            self._start_thread(node.label, instance.run)

    def _start_thread(self, label: str, target) -> None:
        def main() -> None:
            try:
                target()
            except BaseException as e:  # noqa: BLE001 - reported by wait()
                if self._stop_requested.is_set():
                    log.debug("node %s raised during shutdown: %r", label, e)
                else:
                    log.error("node %s failed: %r", label, e)
                    self._errors.append((label, e))
                    self.request_stop()

        thread = threading.Thread(target=main, name=f"node-{label}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def client(self, label: str) -> Any:
        """What a handle of node `label` is bound to (here: the node object itself)."""
        return self.instances[label]

    # ---- stopping
    def request_stop(self) -> None:
        self._stop_requested.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested.is_set()

    def wait(self, timeout: float | None = None) -> None:
        """Block until a node asks to stop (or one fails, or `timeout`), then shut down.

        Re-raises the first node failure."""
        self._stop_requested.wait(timeout)
        self.shutdown()
        if self._errors:
            label, error = self._errors[0]
            raise RuntimeError(f"node '{label}' failed: {error!r}") from error

    def shutdown(self, join_timeout: float = 60.0) -> None:
        """Stop every node: ask each to stop, then stop Reverb (unblocking readers and writers)."""
        global _current
        if self._shutdown_done:
            return
        self._shutdown_done = True
        self._stop_requested.set()
        call_on_nodes(self.instances, "stop")
        # Let nodes finish their current step (and final checkpoints) before pulling Reverb away.
        deadline = time.monotonic() + 5.0
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for service in self._services:
            service.stop()
        deadline = time.monotonic() + join_timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("thread %s did not stop within %.0f s", thread.name, join_timeout)
        call_on_nodes(self.instances, "close")
        with _current_lock:
            if _current is self:
                _current = None


def launch(program: lp.Program, serialize_calls: bool = False) -> LaunchedProgram:
    """Start every node of `program` as a thread; returns the running program."""
    return LaunchedProgram(program, serialize_calls=serialize_calls).start()
