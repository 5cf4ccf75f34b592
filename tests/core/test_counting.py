"""Counter: hierarchy, prefixes, thread safety, save/restore."""

import threading

from antiphon.core.counting import Counter


def test_root_counts_and_returns_updated_counts():
    counter = Counter()
    assert counter.get_counts() == {}
    assert counter.increment(steps=3, episodes=1) == {"steps": 3, "episodes": 1}
    assert counter.increment(steps=2.5) == {"steps": 5.5, "episodes": 1}
    assert counter.get_counts() == {"steps": 5.5, "episodes": 1}


def test_child_prefixes_forward_and_strip():
    parent = Counter()
    actor = Counter(parent, "actor")
    learner = Counter(parent, "learner")
    assert actor.increment(steps=5) == {"steps": 5}
    learner.increment(steps=2)
    parent.increment(steps=100)
    assert parent.get_counts() == {"actor_steps": 5, "learner_steps": 2, "steps": 100}
    # A child sees its own "steps" (not the parent's), plus everything else as is.
    assert actor.get_counts() == {"steps": 5, "learner_steps": 2}
    assert learner.increment(steps=1) == {"steps": 3, "actor_steps": 5}


def test_grandchild_prefixes_compose():
    root = Counter()
    actor = Counter(root, "actor")
    worker = Counter(actor, "w0")
    worker.increment(steps=4)
    assert root.get_counts() == {"actor_w0_steps": 4}
    assert actor.get_counts() == {"w0_steps": 4}
    assert worker.get_counts() == {"steps": 4}


class _RemoteLikeCounter:
    """Only increment/get_counts, like a proxy to a counter in another process."""

    def __init__(self):
        self._inner = Counter()
        self.calls = []

    def increment(self, **counts):
        self.calls.append(("increment", counts))
        return self._inner.increment(**counts)

    def get_counts(self):
        self.calls.append(("get_counts", {}))
        return self._inner.get_counts()


def test_parent_may_be_a_proxy():
    proxy = _RemoteLikeCounter()
    child = Counter(proxy, "actor")
    assert child.increment(steps=2, episodes=1) == {"steps": 2, "episodes": 1}
    assert proxy.calls == [("increment", {"actor_steps": 2, "actor_episodes": 1})]


def test_concurrent_increments_sum_exactly():
    root = Counter()
    child = Counter(root, "actor")
    n_threads, n_each = 8, 2000

    def work(counter):
        for _ in range(n_each):
            counter.increment(steps=1)

    threads = [threading.Thread(target=work, args=(root if i % 2 else child,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    half = n_threads // 2 * n_each
    assert root.get_counts() == {"steps": half, "actor_steps": half}


def test_save_restore_round_trip():
    counter = Counter()
    counter.increment(steps=10, episodes=2, actor_steps=7)
    state = counter.save()
    fresh = Counter()
    fresh.restore(state)
    assert fresh.get_counts() == {"steps": 10, "episodes": 2, "actor_steps": 7}
    # The state's structure does not depend on the keys (so a fresh counter is a template).
    assert set(Counter().save()) == set(state)
    # A plain counts dict is accepted too.
    fresh.restore({"steps": 1})
    assert fresh.get_counts() == {"steps": 1}
