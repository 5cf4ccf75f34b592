"""The once-per-step n-step adder against a frozen copy of the adder it replaced.

`_ReferenceNStepAdder` is `NStepTransitionAdder` as it was before it appended once per step
(three writer appends per step, the shorter end-of-episode transitions as extra writer steps),
kept verbatim apart from its docstring. Both adders run the same hand-built episodes against a
real Reverb server each; the items they write must be equal field by field (values exactly,
dtypes, shapes, nesting, order) with equal priorities. A counting writer checks the number of
writer appends per environment step.
"""

from __future__ import annotations

import collections
from typing import Any

import dm_env
import numpy as np
import pytest
import reverb
import tensorflow as tf
import tree
from dm_env import specs

from antiphon.core.types import EnvironmentSpec, Transition
from antiphon.replay import adders as adders_lib
from antiphon.replay import tables
from tests.replay import ENV_SPEC, act

# --------------------------------------------------------------------------------------------
# The adder as it was (frozen reference).


class _ReferenceNStepAdder(adders_lib._Adder):
    """Today's-before-the-change n-step adder: 3 appends per step, tails as extra steps."""

    def __init__(
        self,
        client: reverb.Client,
        n_step: int,
        discount: float,
        priority_fns: str | adders_lib.PriorityFns,
        max_in_flight_items: int = 16,
    ):
        if n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {n_step}")
        if not 0.0 <= discount <= 1.0:
            raise ValueError(f"discount must be in [0, 1], got {discount}")
        super().__init__(client, priority_fns, 2 * n_step + 1, max_in_flight_items)
        self._n = n_step
        self._gamma = float(discount)
        self._rewards: collections.deque = collections.deque(maxlen=n_step)
        self._t = 0

    def _add_first(self, timestep: dm_env.TimeStep) -> None:
        self._append({"observation": adders_lib._to_numpy(timestep.observation)}, partial=True)
        self._t = 0

    def _add(self, action: Any, next_timestep: dm_env.TimeStep, extras: Any) -> None:
        self._has_extras = adders_lib._has_leaves(extras)
        step = {"action": action}
        if self._has_extras:
            step["extras"] = extras
        self._append(step, partial=False)
        self._append({"observation": adders_lib._to_numpy(next_timestep.observation)}, partial=True)
        self._t += 1
        self._rewards.append((np.asarray(next_timestep.reward), np.asarray(next_timestep.discount)))
        full = len(self._rewards) == self._n
        if full:
            self._write(self._t - self._n, list(self._rewards), into_open_step=True)
        if next_timestep.last():
            self._append({}, partial=False)
            pending = list(self._rewards)[1:] if full else list(self._rewards)
            for i in range(len(pending)):
                self._write(self._t - len(pending) + i, pending[i:], into_open_step=False)

    def _write(self, first: int, rewards_discounts: list, into_open_step: bool) -> None:
        n_return, total_discount = self._n_step_return(rewards_discounts)
        self._append(
            {"n_step_return": n_return, "total_discount": total_discount}, partial=into_open_step
        )
        history = self._writer.history
        at = adders_lib._at
        transition = Transition(
            observation=at(history["observation"], first),
            action=at(history["action"], first),
            reward=history["n_step_return"][-1],
            discount=history["total_discount"][-1],
            next_observation=at(history["observation"], first + len(rewards_discounts)),
            extras=at(history["extras"], first) if self._has_extras else (),
        )
        self._create_item(transition)

    def _n_step_return(self, rewards_discounts: list) -> tuple[np.ndarray, np.ndarray]:
        n_return = 0.0
        weight = np.float64(1.0)
        for reward, discount in rewards_discounts:
            n_return = n_return + weight * reward
            weight = weight * self._gamma * discount
        return np.asarray(n_return, np.float32), np.asarray(weight, np.float32)

    def _reset_state(self) -> None:
        self._rewards.clear()
        self._t = 0


ADDERS = {"new": adders_lib.NStepTransitionAdder, "reference": _ReferenceNStepAdder}

# --------------------------------------------------------------------------------------------
# Hand-built episodes.

EXTRAS_SPEC = {"logp": tf.TensorSpec((), tf.float32), "state": (tf.TensorSpec((3,), tf.float32),)}
NESTED_OBS_SPEC = EnvironmentSpec(
    observations={
        "pixels": specs.Array((2, 2), np.uint8, name="pixels"),
        "vec": specs.Array((3,), np.float32, name="vec"),
    },
    actions=ENV_SPEC.actions,
    rewards=ENV_SPEC.rewards,
    discounts=ENV_SPEC.discounts,
)
VECTOR_REWARD_SPEC = EnvironmentSpec(
    observations=ENV_SPEC.observations,
    actions=ENV_SPEC.actions,
    rewards=specs.Array((2,), np.float32, name="reward"),
    discounts=ENV_SPEC.discounts,
)


def _obs(spec: EnvironmentSpec, episode: int, t: int) -> Any:
    if spec is NESTED_OBS_SPEC:
        return {
            "pixels": np.full((2, 2), 10 * episode + t, np.uint8),
            "vec": np.array([t, episode, -t], np.float32),
        }
    return np.array([t, 100 * episode], np.float32)


def make_episode(
    length: int,
    end: str = "termination",
    episode: int = 0,
    spec: EnvironmentSpec = ENV_SPEC,
    discounts: dict[int, float] | None = None,
    seed: int = 0,
) -> list[dm_env.TimeStep]:
    """FIRST + `length` timesteps with float32 rewards drawn from `seed`.

    end: "termination" (discount 0), "truncation" (discount 1) or "truncation_discounted"
    (discount 0.97 on the last step). discounts: {step index 1..length-1: environment discount}
    for mid-episode steps (default 1).
    """
    rng = np.random.default_rng(seed)
    discounts = discounts or {}
    steps = [dm_env.restart(_obs(spec, episode, 0))]
    for t in range(1, length + 1):
        reward = rng.uniform(-2, 3, spec.rewards.shape).astype(np.float32)
        observation = _obs(spec, episode, t)
        if t < length:
            discount = np.float32(discounts.get(t, 1.0))
            steps.append(dm_env.transition(reward, observation, discount))
        elif end == "termination":
            steps.append(dm_env.termination(reward, observation))
        elif end == "truncation":
            steps.append(dm_env.truncation(reward, observation))
        else:
            steps.append(dm_env.truncation(reward, observation, np.float32(0.97)))
    return steps


def extras_of(t: int) -> dict[str, Any]:
    return {"logp": np.float32(-t / 3), "state": (np.arange(3, dtype=np.float32) * t,)}


def feed(adder, steps: list[dm_env.TimeStep], with_extras: bool = False, stop: int | None = None):
    """add_first + add per step (act(t) at step t); `stop`: only the first `stop` adds."""
    adder.add_first(steps[0])
    for t, timestep in enumerate(steps[1 : None if stop is None else stop + 1]):
        adder.add(act(t), timestep, extras_of(t) if with_extras else ())


# --------------------------------------------------------------------------------------------
# Running both adders.

TABLES = ("a", "b")


def run(
    adder_cls,
    drive,
    n: int,
    spec: EnvironmentSpec = ENV_SPEC,
    extras_spec: Any = (),
    discount: float = 0.99,
    priority_fns: Any = None,
    max_in_flight_items: int = 16,
    wrap_writer=None,
) -> dict[str, list]:
    """Drive an adder of `adder_cls`; every table's items as (data, priority), oldest first."""
    signature = adders_lib.NStepTransitionAdder.signature(spec, extras_spec)
    priority_fns = priority_fns or {"a": None}
    server = tables.start_server([tables.queue_table(t, 10_000, signature) for t in priority_fns])
    try:
        client = reverb.Client(f"localhost:{server.port}")
        adder = adder_cls(
            client,
            n_step=n,
            discount=discount,
            priority_fns=priority_fns,
            max_in_flight_items=max_in_flight_items,
        )
        if wrap_writer is not None:
            adder._writer = wrap_writer(adder._writer)
        drive(adder)
        adder.close()
        out = {}
        for table in priority_fns:
            size = client.server_info()[table].current_size
            samples = (
                client.sample(table, size, emit_timesteps=False, unpack_as_table_signature=True)
                if size
                else []
            )
            out[table] = [(s.data, s.info.priority) for s in samples]
        return out
    finally:
        server.stop()


def assert_same_items(new: dict[str, list], reference: dict[str, list]) -> None:
    assert new.keys() == reference.keys()
    for table in reference:
        assert len(new[table]) == len(reference[table]), table
        for i, ((got, got_p), (want, want_p)) in enumerate(
            zip(new[table], reference[table], strict=True)
        ):
            assert got_p == want_p, (table, i)
            got, want = Transition(*got), Transition(*want)
            tree.assert_same_structure(got, want)
            for path, g, w in zip(
                [p for p, _ in tree.flatten_with_path(want)],
                tree.flatten(got),
                tree.flatten(want),
                strict=True,
            ):
                g, w = np.asarray(g), np.asarray(w)
                where = (table, i, path)
                assert g.dtype == w.dtype and g.shape == w.shape, where
                np.testing.assert_array_equal(g, w, err_msg=str(where))


def both(drive, **kwargs) -> dict[str, list]:
    """Run both adders; assert their items are the same; return the new adder's."""
    new = run(adders_lib.NStepTransitionAdder, drive, **kwargs)
    reference = run(_ReferenceNStepAdder, drive, **kwargs)
    assert_same_items(new, reference)
    return new


# --------------------------------------------------------------------------------------------
# Equivalence on hand-built episodes.


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("end", ["termination", "truncation", "truncation_discounted"])
def test_same_items_for_each_episode_end(n, end):
    items = both(lambda adder: feed(adder, make_episode(7, end, seed=n)), n=n)
    assert len(items["a"]) == 7


@pytest.mark.parametrize("length", [1, 2, 4, 5, 6])
def test_same_items_around_the_episode_length_n(length):
    """Episodes shorter than n, of exactly n steps and just longer (n = 5)."""
    items = both(lambda adder: feed(adder, make_episode(length, seed=length)), n=5)
    assert len(items["a"]) == length


def test_same_items_with_mid_episode_discounts():
    """Discounts 0.5 and 0 inside the episode: both enter every window they fall in."""
    steps = make_episode(9, "truncation", discounts={2: 0.5, 5: 0.0, 6: 0.25}, seed=3)
    both(lambda adder: feed(adder, steps), n=3, discount=0.9)


def test_same_items_with_extras_and_priorities_on_two_tables():
    def priority(transition) -> float:
        return float(np.abs(transition.reward) + transition.extras["state"][0].sum())

    def drive(adder):
        feed(adder, make_episode(6, "termination", seed=1), with_extras=True)
        feed(adder, make_episode(2, "truncation", episode=1, seed=2), with_extras=True)

    items = both(
        drive, n=3, extras_spec=EXTRAS_SPEC, priority_fns={"a": None, "b": priority}, discount=0.9
    )
    assert [p for _, p in items["a"]] == [1.0] * 8
    assert len({p for _, p in items["b"]}) > 1  # the priority function ran on real items


def test_same_items_for_episodes_back_to_back():
    """Terminated, truncated, shorter than n, single-step and long episodes through one adder."""

    def drive(adder):
        feed(adder, make_episode(6, "termination", episode=0, seed=0))
        feed(adder, make_episode(8, "truncation", episode=1, seed=1))
        feed(adder, make_episode(2, "termination", episode=2, seed=2))
        feed(adder, make_episode(1, "truncation_discounted", episode=3, seed=3))
        feed(adder, make_episode(23, "termination", episode=4, seed=4))

    items = both(drive, n=4)
    assert len(items["a"]) == 6 + 8 + 2 + 1 + 23


def test_same_items_with_nested_observations_and_vector_rewards():
    both(
        lambda adder: feed(adder, make_episode(7, spec=NESTED_OBS_SPEC)), n=3, spec=NESTED_OBS_SPEC
    )
    both(
        lambda adder: feed(adder, make_episode(7, spec=VECTOR_REWARD_SPEC)),
        n=3,
        spec=VECTOR_REWARD_SPEC,
    )


def test_same_items_after_reset_mid_episode():
    def drive(adder):
        feed(adder, make_episode(8, episode=0, seed=0), stop=5)  # 5 of 8 steps, then abandoned
        adder.reset()
        feed(adder, make_episode(6, episode=1, seed=1))

    items = both(drive, n=3)
    assert len(items["a"]) == 3 + 6  # t = 0..2 were complete when the episode was abandoned


def test_same_items_when_the_writer_loses_its_server_mid_episode():
    """A transport error inside `add`: both reconnect, drop the rest of the episode, carry on."""

    class FailingWriter:
        def __init__(self, writer):
            self.writer, self.fail = writer, False

        def append(self, *args, **kwargs):
            if self.fail:
                raise RuntimeError("UNAVAILABLE: simulated lost server")
            return self.writer.append(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.writer, name)

    wrapped = []

    def wrap(writer):
        wrapped.append(FailingWriter(writer))
        return wrapped[-1]

    def drive(adder):
        feed(adder, make_episode(5, episode=0, seed=0))
        steps = make_episode(7, episode=1, seed=1)
        feed(adder, steps, stop=4)  # t = 0, 1 complete
        wrapped[-1].fail = True
        for t in range(4, 7):  # dropped, not raised
            adder.add(act(t), steps[t + 1])
        assert adder.reconnects == 1
        feed(adder, make_episode(4, episode=2, seed=2))

    # max_in_flight_items=0: every item is confirmed before the next step, so none is in flight
    # (and lost with the old writer) when the server goes away.
    items = both(drive, n=3, max_in_flight_items=0, wrap_writer=wrap)
    observations = [Transition(*data).observation[1] for data, _ in items["a"]]
    assert observations == [0.0] * 5 + [100.0] * 2 + [200.0] * 4


# --------------------------------------------------------------------------------------------
# One writer append per environment step.


class CountingWriter:
    """Records every `append` (its partial_step flag) and forwards everything to the writer."""

    def __init__(self, writer):
        self.writer = writer
        self.appends: list[bool] = []

    def append(self, data, *, partial_step: bool = False):
        self.appends.append(partial_step)
        return self.writer.append(data, partial_step=partial_step)

    def __getattr__(self, name):
        return getattr(self.writer, name)


def appends_per_call(adder_cls) -> tuple[list[int], bool]:
    """Writer appends of add_first and of each add over three episodes; any partial append."""
    writers: list[CountingWriter] = []
    counts: list[int] = []

    def wrap(writer):
        writers.append(CountingWriter(writer))
        return writers[-1]

    def counted(call, *args):
        before = len(writers[0].appends)
        call(*args)
        counts.append(len(writers[0].appends) - before)

    def drive(adder):
        for episode, (length, end) in enumerate(
            [(7, "termination"), (2, "truncation"), (5, "truncation")]
        ):
            steps = make_episode(length, end, episode=episode, seed=episode)
            counted(adder.add_first, steps[0])
            for t, timestep in enumerate(steps[1:]):
                counted(adder.add, act(t), timestep, extras_of(t))

    run(adder_cls, drive, n=3, extras_spec=EXTRAS_SPEC, wrap_writer=wrap)
    return counts, any(writers[0].appends)


def test_one_writer_append_per_environment_step():
    counts, any_partial = appends_per_call(adders_lib.NStepTransitionAdder)
    assert len(counts) == 3 + (7 + 2 + 5)  # add_first and add calls
    assert counts == [1] * len(counts)  # including every episode's last step
    assert not any_partial  # each append is a whole writer step


def test_the_append_count_sees_the_reference_adders_extra_appends():
    """The counting writer is able to fail: the reference adder appends 2-4 times per step."""
    counts, any_partial = appends_per_call(_ReferenceNStepAdder)
    assert max(counts) > 1 and any_partial
