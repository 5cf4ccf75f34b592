"""Program graph and the threads launcher: ordering, handles, stop, failure propagation."""

import threading
import time

import pytest

from antiphon.launch import program as lp
from antiphon.launch import threads


class Store:
    def __init__(self):
        self.items = []

    def put(self, x):
        self.items.append(x)
        return len(self.items)

    def get(self):
        return list(self.items)


class Producer:
    def __init__(self, store, n, stop_when_done=False):
        self._store, self._n, self._stop_when_done = store, n, stop_when_done
        self.stopped = threading.Event()

    def run(self):
        for i in range(self._n):
            self._store.put(i)
        if self._stop_when_done:
            threads.stop()  # like lp.stop(): any node may end the program
        self.stopped.wait()

    def stop(self):
        self.stopped.set()


class Failing:
    def run(self):
        raise ValueError("boom")


def test_nodes_are_built_after_their_inputs_and_labelled_by_group():
    program = lp.Program("p")
    with program.group("producer"):
        # added before the store, but it takes the store's handle: built after it
        store_node = lp.PyClassNode(Store)
        store = store_node.handle
        program.add_node(lp.PyClassNode(Producer, store, 3))
        program.add_node(lp.PyClassNode(Producer, store, 3))
    with program.group("store"):
        program.add_node(store_node)
    order = [n.label for n in program.ordered_nodes()]
    assert order == ["store", "producer_0", "producer_1"]


def test_group_required_and_no_nesting():
    program = lp.Program("p")
    with pytest.raises(ValueError, match="label"):
        program.add_node(lp.PyClassNode(Store))
    with pytest.raises(ValueError, match="nested"), program.group("a"), program.group("b"):
        pass


def test_handles_become_clients_and_a_node_stops_the_program():
    program = lp.Program("p")
    with program.group("store"):
        store = program.add_node(lp.PyClassNode(Store))
    with program.group("producer"):
        program.add_node(lp.PyClassNode(Producer, store, 5, stop_when_done=True))
    launched = threads.launch(program, serialize_calls=True)
    launched.wait(timeout=30)
    assert launched.stop_requested
    assert launched.instances["store"].get() == [0, 1, 2, 3, 4]
    assert launched.instances["producer"].stopped.is_set()  # shutdown called stop()


def test_a_failing_node_stops_the_program_and_is_reported():
    program = lp.Program("p")
    with program.group("store"):
        store = program.add_node(lp.PyClassNode(Store))
    with program.group("producer"):
        program.add_node(lp.PyClassNode(Producer, store, 1))
    with program.group("bad"):
        program.add_node(lp.PyClassNode(Failing))
    launched = threads.launch(program)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="node 'bad' failed: ValueError\\('boom'\\)"):
        launched.wait(timeout=30)
    assert time.monotonic() - start < 30


def test_pickling_proxy_copies_arguments():
    program = lp.Program("p")
    with program.group("store"):
        store = program.add_node(lp.PyClassNode(Store))
    launched = threads.launch(program, serialize_calls=True)
    proxy = store.dereference()
    payload = [1, 2]
    proxy.put(payload)
    payload.append(3)  # the node must not see the caller's later mutation
    assert proxy.get() == [[1, 2]]
    launched.shutdown()
