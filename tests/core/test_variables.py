"""VariableClient: period, skip-if-in-flight, versions, errors, first pull."""

import threading
import time

import jax.numpy as jnp
import numpy as np
import pytest

from antiphon.core.variables import VariableClient


class CountingSource:
    def __init__(self):
        self.pulls = 0

    def get_variables(self, names):
        self.pulls += 1
        return [{"w": jnp.full((2,), float(self.pulls))} for _ in names]


class VersionedSource(CountingSource):
    def __init__(self):
        super().__init__()
        self.version = 0
        self.version_calls = 0

    def variables_version(self):
        self.version_calls += 1
        return self.version


class BlockingSource:
    def __init__(self):
        self.release = threading.Event()
        self.started = 0
        self.lock = threading.Lock()

    def get_variables(self, names):
        with self.lock:
            self.started += 1
        assert self.release.wait(10)
        return [np.zeros(1) for _ in names]


class FailingSource:
    def get_variables(self, names):
        raise RuntimeError("learner is gone")


def test_first_wait_fills_params_as_numpy():
    client = VariableClient(CountingSource(), "policy")
    assert client.params is None and client.version == -1
    client.update(wait=True)
    assert isinstance(client.params["w"], np.ndarray)  # host copy, not a device buffer
    np.testing.assert_array_equal(client.params["w"], [1.0, 1.0])
    assert client.version == 0


def test_several_names_give_a_list():
    client = VariableClient(CountingSource(), ["policy", "critic"])
    client.update_and_wait()
    assert isinstance(client.params, list) and len(client.params) == 2


@pytest.mark.parametrize("period", [1, 3])
def test_pulls_every_period_calls(period):
    source = CountingSource()
    client = VariableClient(source, "policy", update_period=period)
    for call in range(1, 4 * period + 1):
        client.update()
        client._join()  # let the background pull finish, so none is ever skipped
        assert source.pulls == call // period
    client.close()


def test_skip_if_in_flight_starts_exactly_one_pull():
    source = BlockingSource()
    client = VariableClient(source, "policy")
    for _ in range(50):
        client.update()
    time.sleep(0.05)
    assert source.started == 1
    source.release.set()
    client._join()
    assert source.started == 1
    # The next call starts a new pull (the period stays due while a pull is in flight).
    client.update()
    client._join()
    assert source.started == 2
    client.close()


def test_unchanged_version_skips_transfer():
    source = VersionedSource()
    client = VariableClient(source, "policy")
    client.update(wait=True)
    assert source.pulls == 1 and client.version == 0
    for _ in range(3):
        client.update()
        client._join()
    assert source.pulls == 1 and source.version_calls == 4
    source.version = 7
    client.update(wait=True)
    assert source.pulls == 2 and client.version == 7
    np.testing.assert_array_equal(client.params["w"], [2.0, 2.0])


def test_background_error_is_raised_on_next_update(caplog):
    client = VariableClient(FailingSource(), "policy")
    client.update()
    client._join()
    assert "background pull" in caplog.text
    with pytest.raises(RuntimeError, match="learner is gone"):
        client.update()
    # Raised once; a synchronous pull raises directly.
    with pytest.raises(RuntimeError, match="learner is gone"):
        client.update(wait=True)
