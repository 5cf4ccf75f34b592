"""R2D2's performance figures (BENCHMARKS.md): sequence adder efficiency, learner efficiency and
learner data wait, on `minigrid:MiniGrid-MemoryS7-v0` observations with the gridworld preset
(`antiphon.agents.r2d2.config.GRIDWORLD`: burn-in 8, trace 24, period 12, so sequences of
L = 33 steps; batch 32; K = `sgd_steps_per_call` = 1) at `--lstm-size` / `--torso-size` 64 (what
the learning runs use; the preset itself says 128).

Data. Before anything is timed, `--episodes` real MemoryS7 episodes are recorded with a uniformly
random policy, and each step gets what an actor stores with it: `acting.core_state_extras` of
the LSTM state the R2D2 network (untrained parameters) carries into the step from the zero state
(hidden and cell [H] float32, valid = 1), computed per episode in one jitted scan of
`networks.step`, the actor's own recurrence. MemoryS7's random episodes mix true terminals (an
object reached, tens of steps) and time-limit truncations (245 steps).

1. Sequence adder efficiency (target >= 0.8): items/s, A ÷ B, both writing the recorded episodes
   into one live prioritised Reverb table (the builder's agent table: signature, sampler,
   priority exponent; no rate limiter, 10M items so it never evicts), served in this process.
   A (adder): `R2D2Builder.make_adder` (a `SequenceAdder`: sequences of L steps every `period`
   steps, end-of-episode zero padding, priority 1), driven as the actor drives it: `add_first`,
   then `add(action, timestep, extras=...)` per step. Its own work: two writer appends per step
   (the observation as a partial step, then action/reward/discount/extras), the float32
   conversions, the final-observation step, padding, the history slicing of each item, a
   flush after each item.
   B (bare): a `reverb.TrajectoryWriter` writing the same items with the least it needs: one
   `append` per step of the same columns (observation dict, action, reward, discount,
   start_of_episode, extras dict; rewards/discounts already float32), the final observation's
   step with zeros, `create_item` over the last L steps whenever a sequence ends there (every
   `period` steps once L are written), at the episode end the same zero padding and last
   sequence as the adder, then `end_episode`. Same flush policy: `flush(block_until_num_items=
   max_in_flight_items)` after each item (the adder's default, as `make_adder` uses it), the
   episode end flushing everything; same `num_keep_alive_refs` (L + 1).
   Checked once, untimed: both sides add the same number of items to the table, and, on a
   second server, the items of two episodes written by each side into two FIFO queue tables are
   read back and compared array by array (`items_identical`).
2. Learner efficiency (target >= 0.6): SGD steps/s, A ÷ B.
   A (learner): `R2D2Learner.step()` in a loop, fed by the real data path: a table pre-filled
   through the builder's adder with `--num-sequences` sequences of the recorded episodes
   (prioritised like the builder's, no rate limiter: replay ready) ->
   `builder.make_dataset_iterator(address, env_spec=spec)` (Reverb dataset, tf.data batch
   [K, B], DevicePrefetcher, priority updaters) -> `builder.make_learner`. Each call also
   sends the previous call's priorities to the table and checks its finiteness.
   B (floor): `learning.make_update`'s pure step (loss, gradients, Adam, periodic target copy,
   returning metrics and priorities) on one fixed [K, B] batch already on the device (one real
   batch of the same pipeline), K steps unrolled in one jitted call as the learner unrolls them;
   nothing else (no data movement, no metric averaging, no finiteness check, no priority
   write-back, no locks).
   C (context, learner_fixed_batch): the same learner class fed that one device batch forever
   (`itertools.repeat`), with its own priority updater on the same table: C ÷ B is the
   learner's own extras, A ÷ C the data path.
   Every timed block ends with `block_until_ready` on the newest state; untimed lead-in calls
   start each block (A: enough to drain the input buffers, so the timed part is in steady state).
3. Learner data wait (target <= 5 %): the learner's `data_wait_fraction` in steady state,
   reading the pre-filled table (replay ready) through the same data path. The property is
   cumulative (time blocked in `next(iterator)` ÷ wall time since the first step), so windows of
   `--window-calls` calls are measured by differencing the wait seconds it implies
   (fraction x time since the first step, whose start this script records). Headline: windows
   of synchronous steps (`step()` then `block_until_ready`), so a window is compute plus real
   starvation; as context, free-running windows (asynchronous dispatch: their waits overlap
   running updates, an upper bound) and the property itself at the end (warm-up included).

Interleaved ABBA (common.interleave / interleave_many), medians and spread over repeats. Writes
benchmarks/results/r2d2_performance.json and .md.

    .venv/bin/python -m benchmarks.r2d2_performance
    .venv/bin/python -m benchmarks.r2d2_performance --figures adder --repeats 5
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import itertools
import time
from typing import Any

import dm_env
import haiku as hk
import jax
import numpy as np
import reverb
import tree

from antiphon.agents.r2d2 import acting, learning
from antiphon.agents.r2d2.builder import AGENT_TABLE, R2D2Builder
from antiphon.agents.r2d2.config import GRIDWORLD, R2D2Config
from antiphon.core.types import EnvironmentSpec, make_environment_spec, zeros_like_spec
from antiphon.environments import make_environment
from antiphon.replay import adders, priorities, tables
from benchmarks import common

NAME = "r2d2_performance"
ENV_NAME = "minigrid:MiniGrid-MemoryS7-v0"
ADDER_TARGET = ">= 0.8"
LEARNER_TARGET = ">= 0.6"
WAIT_TARGET = "<= 0.05"
FIGURES = ("adder", "learner", "wait")
ADDER_TABLE_SIZE = 10_000_000
# The bare writer copies the adder's flush policy: its default, as `R2D2Builder.make_adder` uses.
MAX_IN_FLIGHT = inspect.signature(adders.SequenceAdder).parameters["max_in_flight_items"].default
CONFIG_FIELDS = (
    "burn_in_length",
    "trace_length",
    "sequence_period",
    "n_step",
    "batch_size",
    "sgd_steps_per_call",
    "lstm_size",
    "torso_size",
    "prefetch_size",
    "priority_exponent",
    "target_update_period",
)


def make_config(lstm_size: int = 64, torso_size: int = 64, **overrides: Any) -> R2D2Config:
    """The gridworld preset at the given network sizes (and any other field overridden)."""
    values = dict(GRIDWORLD, lstm_size=lstm_size, torso_size=torso_size)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return R2D2Config(**values)


def config_record(config: R2D2Config) -> dict[str, Any]:
    record = {name: getattr(config, name) for name in CONFIG_FIELDS}
    record["sequence_length"] = config.sequence_length
    return record


# --------------------------------------------------------------------------------------------
# Recorded episodes.


@dataclasses.dataclass
class RecordedEpisode:
    """One episode as the actor hands it to the adder, and the same data as the bare writer's
    columns (what the adder derives from it), all made before timing."""

    first: dm_env.TimeStep
    actions: list[np.ndarray]  # a_t, int32 []
    timesteps: list[dm_env.TimeStep]  # the timestep each a_t led to
    extras: list[dict[str, Any]]  # core_state_extras of the LSTM state before a_t
    observations: list[Any]  # o_0 .. o_T
    rewards: list[np.ndarray]  # float32 []
    discounts: list[np.ndarray]  # float32 []

    @property
    def length(self) -> int:
        return len(self.actions)


def _state_sequence(networks, params):
    """jitted (observations [T, ...]) -> (hidden, cell) [T, H]: the LSTM state `networks.step`
    carries into each step from the zero state, as the actor's policy carries it."""

    def run(params, observations):
        def body(state, observation):
            batched = jax.tree_util.tree_map(lambda x: x[None], observation)
            _, new_state = networks.step(params, batched, state)
            return new_state, (state.hidden[0], state.cell[0])

        _, states = jax.lax.scan(body, networks.initial_state(1), observations)
        return states

    jitted = jax.jit(run)
    return lambda observations: jitted(params, observations)


def record_episodes(
    env: dm_env.Environment, spec: EnvironmentSpec, config: R2D2Config, num: int, seed: int = 0
) -> list[RecordedEpisode]:
    """`num` episodes of a uniformly random policy, each step's extras from the LSTM state the
    R2D2 network (untrained parameters) carries along the episode (module docstring)."""
    networks = R2D2Builder(config).make_networks(spec)
    observation = zeros_like_spec(spec.observations, batch_shape=(1,))
    params = networks.init(jax.random.PRNGKey(seed), observation, networks.initial_state(1))
    states_of = _state_sequence(networks, params)
    rng = np.random.default_rng(seed)
    num_actions = int(spec.actions.num_values)
    episodes = []
    for _ in range(num):
        first = timestep = env.reset()
        actions, timesteps = [], []
        while not timestep.last():
            action = np.asarray(rng.integers(num_actions), np.int32)
            timestep = env.step(action)
            actions.append(action)
            timesteps.append(timestep)
        observations = [first.observation] + [t.observation for t in timesteps]
        # The states before each action, in one call (padded to a power of two: few compiles).
        extra = (1 << (len(actions) - 1).bit_length()) - len(actions)
        stacked = jax.tree_util.tree_map(
            lambda *x, extra=extra: np.stack(x + (np.zeros_like(x[0]),) * extra),
            *observations[:-1],
        )
        hidden, cell = (np.asarray(x) for x in states_of(stacked))
        extras = [
            acting.core_state_extras(hk.LSTMState(hidden=hidden[t : t + 1], cell=cell[t : t + 1]))
            for t in range(len(actions))
        ]
        episodes.append(
            RecordedEpisode(
                first=first,
                actions=actions,
                timesteps=timesteps,
                extras=extras,
                observations=observations,
                rewards=[np.asarray(t.reward, np.float32) for t in timesteps],
                discounts=[np.asarray(t.discount, np.float32) for t in timesteps],
            )
        )
    return episodes


def episodes_summary(episodes: list[RecordedEpisode]) -> dict[str, Any]:
    lengths = [e.length for e in episodes]
    return {
        "episodes": len(episodes),
        "steps": int(sum(lengths)),
        "length": common.spread(lengths),
        "true_terminals": sum(float(e.timesteps[-1].discount) == 0.0 for e in episodes),
    }


# --------------------------------------------------------------------------------------------
# 1. Sequence adder efficiency.


def write_with_adder(adder: adders.SequenceAdder, episode: RecordedEpisode) -> None:
    adder.add_first(episode.first)
    for action, timestep, extras in zip(
        episode.actions, episode.timesteps, episode.extras, strict=True
    ):
        adder.add(action, timestep, extras=extras)  # the LAST timestep ends the episode


def _zero_steps(episode: RecordedEpisode) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the final observation's step without its observation, a padding step): zeros."""
    zero = {
        "action": np.zeros_like(episode.actions[0]),
        "reward": np.zeros((), np.float32),
        "discount": np.zeros((), np.float32),
        "start_of_episode": np.bool_(False),
        "extras": tree.map_structure(np.zeros_like, episode.extras[0]),
    }
    padding = dict(zero, observation=tree.map_structure(np.zeros_like, episode.observations[0]))
    return zero, padding


def write_bare(
    writer: reverb.TrajectoryWriter,
    episode: RecordedEpisode,
    table: str,
    length: int,
    period: int,
    max_in_flight: int = MAX_IN_FLIGHT,
) -> int:
    """The adder's items with one append per step (module docstring, B). Returns the items."""
    obs, act, rew, disc, ext = (
        episode.observations,
        episode.actions,
        episode.rewards,
        episode.discounts,
        episode.extras,
    )
    zero, padding = _zero_steps(episode)
    fields = adders.Step._fields
    items = 0

    def item() -> None:
        nonlocal items
        history = writer.history
        trajectory = adders.Step(
            *(tree.map_structure(lambda c: c[-length:], history[f]) for f in fields)
        )
        writer.create_item(table, 1.0, trajectory)
        writer.flush(block_until_num_items=max_in_flight)
        items += 1

    start_flag, other_flag = np.bool_(True), np.bool_(False)
    num_steps = 0
    for t in range(episode.length):
        writer.append(
            {
                "observation": obs[t],
                "action": act[t],
                "reward": rew[t],
                "discount": disc[t],
                "start_of_episode": start_flag if t == 0 else other_flag,
                "extras": ext[t],
            }
        )
        num_steps += 1
        if num_steps >= length and (num_steps - length) % period == 0:
            item()
    writer.append(dict(zero, observation=obs[-1]))  # o_T with zero action/reward/extras
    num_steps += 1
    if num_steps >= length and (num_steps - length) % period == 0:
        item()
    else:
        # The first start s = k * period whose sequence reaches the final step, zero-padded.
        start = max(0, -(-(num_steps - length) // period)) * period
        if start < num_steps:
            for _ in range(start + length - num_steps):
                writer.append(padding)
            item()
    writer.end_episode(clear_buffers=True)  # flushes everything, as the adder's reset does
    return items


def _read_queue(address: str, table: str, num: int) -> list[Any]:
    dataset = reverb.TrajectoryDataset.from_table_signature(
        address, table, max_in_flight_samples_per_worker=1
    )
    return [sample.data for sample in dataset.take(num).as_numpy_iterator()]


def check_same_items(
    builder: R2D2Builder, spec: EnvironmentSpec, episodes: list[RecordedEpisode]
) -> dict[str, Any]:
    """Writes `episodes` with each side into its own FIFO queue table and compares the items."""
    config = builder.config
    signature = builder.signature(spec)
    size = sum(e.length // config.sequence_period + 4 for e in episodes)
    server = tables.start_server(
        [
            tables.queue_table("check_adder", size, signature),
            tables.queue_table("check_bare", size, signature),
        ]
    )
    address = f"localhost:{server.port}"
    client = reverb.Client(address)
    try:
        adder = builder.make_adder(client, table="check_adder")
        for e in episodes:
            write_with_adder(adder, e)
        adder.close()
        writer = client.trajectory_writer(num_keep_alive_refs=config.sequence_length + 1)
        bare_counted = sum(
            write_bare(writer, e, "check_bare", config.sequence_length, config.sequence_period)
            for e in episodes
        )
        writer.close()
        info = client.server_info()
        n_adder, n_bare = info["check_adder"].current_size, info["check_bare"].current_size
        identical = n_adder == n_bare == bare_counted
        if identical:
            for a, b in zip(
                _read_queue(address, "check_adder", n_adder),
                _read_queue(address, "check_bare", n_bare),
                strict=True,
            ):
                flat_a, flat_b = tree.flatten(a), tree.flatten(b)
                if len(flat_a) != len(flat_b) or not all(
                    x.dtype == y.dtype and np.array_equal(x, y)
                    for x, y in zip(flat_a, flat_b, strict=True)
                ):
                    identical = False
                    break
    finally:
        server.stop()
    return {
        "episodes": len(episodes),
        "adder_items": int(n_adder),
        "bare_items": int(n_bare),
        "bare_items_counted": int(bare_counted),
        "items_identical": bool(identical),
    }


def run_adder(
    builder: R2D2Builder,
    spec: EnvironmentSpec,
    episodes: list[RecordedEpisode],
    repeats: int,
    block_episodes: int,
    budget_seconds: float,
) -> dict[str, Any]:
    config = builder.config
    length, period = config.sequence_length, config.sequence_period
    block = episodes[:block_episodes]
    check = check_same_items(builder, spec, episodes[:2])
    table = tables.prioritized_table(
        AGENT_TABLE,
        max_size=ADDER_TABLE_SIZE,
        signature=builder.signature(spec),
        priority_exponent=config.priority_exponent,
        samples_per_insert=None,  # no rate limiter
        min_replay_size=1,
    )
    server = tables.start_server([table])
    client = reverb.Client(f"localhost:{server.port}")
    try:
        adder = builder.make_adder(client)
        writer = client.trajectory_writer(num_keep_alive_refs=length + 1)

        def size() -> int:
            return int(client.server_info()[AGENT_TABLE].current_size)

        # Warm-up, untimed: one pass over the block each; also counts both sides' items.
        before = size()
        for e in block:
            write_with_adder(adder, e)
        adder_written = size() - before
        bare_counted = sum(write_bare(writer, e, AGENT_TABLE, length, period) for e in block)
        bare_written = size() - before - adder_written

        def adder_pass() -> float:
            for e in block:
                write_with_adder(adder, e)
            return adder_written

        def bare_pass() -> float:
            return sum(write_bare(writer, e, AGENT_TABLE, length, period) for e in block)

        result = common.interleave(
            lambda: common.timed(adder_pass),
            lambda: common.timed(bare_pass),
            repeats,
            "adder",
            "bare_writer",
            budget_seconds,
        )
        final_size = size()
        writer.close()
        adder.close()
    finally:
        server.stop()
    steps = sum(e.length for e in block)
    return {
        "what": "items/s: R2D2Builder.make_adder (SequenceAdder, zero padding) ÷ a bare "
        "TrajectoryWriter writing the same items (one append per step), same live prioritised "
        "table, recorded MiniGrid-MemoryS7 episodes with the actor's LSTM-state extras",
        "target": ADDER_TARGET,
        "adder_efficiency": result["ratio"],
        "ratios": result["ratios"],
        "adder_items_per_s": result["adder_per_s"],
        "bare_writer_items_per_s": result["bare_writer_per_s"],
        "rates": result["rates"],
        "repeats": result["repeats"],
        "order": result["order"],
        "block": {"episodes": len(block), "env_steps": steps, "items": adder_written},
        "items_per_block": {
            "adder_written": adder_written,
            "bare_written": bare_written,
            "bare_counted": bare_counted,
            "same": adder_written == bare_written == bare_counted,
        },
        "item_check": check,
        "table_size_at_end": final_size,
        "table_never_evicted": final_size < ADDER_TABLE_SIZE,
        "writer_appends_per_step": {"adder": 2, "bare": 1},
        "max_in_flight_items (both sides)": MAX_IN_FLIGHT,
        "num_keep_alive_refs (both sides)": length + 1,
    }


# --------------------------------------------------------------------------------------------
# Pre-filled replay and the learner on the real data path.


@dataclasses.dataclass
class Replay:
    server: reverb.Server
    client: reverb.Client
    address: str
    num_items: int

    def stop(self) -> None:
        self.server.stop()


def start_filled_replay(
    builder: R2D2Builder, spec: EnvironmentSpec, episodes: list[RecordedEpisode], num_items: int
) -> Replay:
    """The builder's agent table without its rate limiter (replay ready), at least `num_items`
    sequences written through the builder's adder (the recorded episodes, cycled)."""
    config = builder.config
    table = tables.prioritized_table(
        AGENT_TABLE,
        max_size=max(config.max_replay_size, 2 * num_items),
        signature=builder.signature(spec),
        priority_exponent=config.priority_exponent,
        samples_per_insert=None,
        min_replay_size=1,
    )
    server = tables.start_server([table])
    address = f"localhost:{server.port}"
    client = reverb.Client(address)
    adder = builder.make_adder(client)
    written = 0
    for e in itertools.cycle(episodes):
        if written >= num_items:
            break
        write_with_adder(adder, e)
        written = int(client.server_info()[AGENT_TABLE].current_size)
    adder.close()
    return Replay(server, client, address, written)


@dataclasses.dataclass
class LearnerSetup:
    networks: Any
    iterator: Any  # PrioritisedSequences
    learner: learning.R2D2Learner

    def close(self) -> None:
        self.iterator.close()


def make_learner_setup(
    builder: R2D2Builder, spec: EnvironmentSpec, replay: Replay, seed: int = 0
) -> LearnerSetup:
    networks = builder.make_networks(spec)
    iterator = builder.make_dataset_iterator(replay.address, env_spec=spec)
    learner = builder.make_learner(networks, iterator, spec, jax.random.PRNGKey(seed))
    return LearnerSetup(networks, iterator, learner)


# --------------------------------------------------------------------------------------------
# 2. Learner efficiency.


def make_floor(networks, config: R2D2Config, spec: EnvironmentSpec, batches: Any, key: jax.Array):
    """(run, carry): `run(carry)` does K = batches' leading size steps of `make_update`'s step
    on the fixed device `batches`, unrolled in one jitted call; carry = (state, metrics,
    priorities) of the last step."""
    step, state = learning.make_update(networks, config, spec, key)

    def k_steps(state, batches):
        num = jax.tree_util.tree_leaves(batches)[0].shape[0]
        metrics = step_priorities = None
        for k in range(num):
            batch = jax.tree_util.tree_map(lambda x, k=k: x[k], batches)
            state, metrics, step_priorities = step(state, batch)
        return state, metrics, step_priorities

    # The batch is an argument, not a closure constant XLA could fold into the executable.
    jitted = jax.jit(k_steps)

    def run(carry):
        return jitted(carry[0], batches)

    return run, (jax.device_put(state), None, None)


def _timed_block(step, wait, lead_in: int, calls: int, sgd_steps_per_call: int):
    """`lead_in` untimed calls, then `calls` timed ones, `wait()` before the clock starts and
    before it stops; returns (SGD steps, seconds)."""

    def block() -> tuple[int, float]:
        for _ in range(lead_in):
            step()
        wait()
        start = time.perf_counter()
        for _ in range(calls):
            step()
        wait()
        return calls * sgd_steps_per_call, time.perf_counter() - start

    return block


def run_learner(
    builder: R2D2Builder,
    spec: EnvironmentSpec,
    replay: Replay,
    repeats: int,
    timed_calls: int,
    lead_in: int,
    budget_seconds: float,
) -> dict[str, Any]:
    config = builder.config
    k = config.sgd_steps_per_call
    setup = make_learner_setup(builder, spec, replay)
    learner = setup.learner
    fixed_updater = priorities.PriorityUpdater(replay.client, AGENT_TABLE)
    try:
        # One real [K, B] sample of the same pipeline; its data is already on the device.
        sample = next(setup.iterator)
        floor_run, floor_carry = make_floor(
            setup.networks, config, spec, sample.data, jax.random.PRNGKey(1)
        )
        fixed = learning.R2D2Learner(
            setup.networks,
            config,
            spec,
            itertools.repeat(sample),
            jax.random.PRNGKey(0),
            priority_updaters={0: fixed_updater},
        )
        compile_seconds = {}
        for name, fn, wait in (
            ("learner", learner.step, learner.block_until_ready),
            ("learner_fixed_batch", fixed.step, fixed.block_until_ready),
        ):
            start = time.perf_counter()
            fn()
            wait()
            compile_seconds[name] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        floor_carry = jax.block_until_ready(floor_run(floor_carry))
        compile_seconds["floor"] = round(time.perf_counter() - start, 2)

        def floor_step() -> None:
            nonlocal floor_carry
            floor_carry = floor_run(floor_carry)

        def floor_wait() -> None:
            jax.block_until_ready(floor_carry)

        for _ in range(3):  # warm-up past compilation
            learner.step()
            fixed.step()
            floor_step()
        learner.block_until_ready()
        fixed.block_until_ready()
        floor_wait()

        result = common.interleave_many(
            {
                "learner": _timed_block(
                    learner.step, learner.block_until_ready, lead_in, timed_calls, k
                ),
                "learner_fixed_batch": _timed_block(
                    fixed.step, fixed.block_until_ready, 2, timed_calls, k
                ),
                "floor": _timed_block(floor_step, floor_wait, 2, timed_calls, k),
            },
            "floor",
            repeats,
            budget_seconds,
        )
        learner.flush()
        fixed.flush()
        priority_updates = {
            "learner": learner.priority_updates_sent,
            "learner_fixed_batch": fixed.priority_updates_sent,
        }
    finally:
        setup.close()
        fixed_updater.close()
    ratios = result["per_repeat_ratios"]
    data_path = [
        a / b for a, b in zip(ratios["learner"], ratios["learner_fixed_batch"], strict=True)
    ]
    return {
        "what": "SGD steps/s: R2D2Learner.step() on the Reverb -> tf.data -> DevicePrefetcher "
        "path ÷ learning.make_update's step, K unrolled in one jitted call, on a fixed device "
        "batch",
        "target": LEARNER_TARGET,
        "device": jax.devices()[0].device_kind,
        "learner_efficiency": result["ratios_to_reference"]["learner"],
        "ratios": ratios["learner"],
        "learner_sgd_steps_per_s": result["learner_per_s"],
        "floor_sgd_steps_per_s": result["floor_per_s"],
        "learner_fixed_batch_sgd_steps_per_s": result["learner_fixed_batch_per_s"],
        "learner_fixed_batch_over_floor": result["ratios_to_reference"]["learner_fixed_batch"],
        "learner_over_learner_fixed_batch (data path cost)": common.spread(data_path),
        "rates": result["rates"],
        "compile_seconds": compile_seconds,
        "priority_updates_sent": priority_updates,
        "repeats": result["repeats"],
        "timed_sgd_steps_per_block": timed_calls * k,
        "learner_lead_in_calls": lead_in,
        "order": result["order"],
        "replay_items": replay.num_items,
    }


# --------------------------------------------------------------------------------------------
# 3. Learner data wait.


class WaitClock:
    """The learner's cumulative wait seconds, from its public `data_wait_fraction` (wait ÷ wall
    time since its first step): `first_step()` notes when that first step starts."""

    def __init__(self, learner: learning.R2D2Learner):
        self._learner = learner
        self._start: float | None = None

    def first_step(self) -> None:
        self._start = time.perf_counter()
        self._learner.step()

    def wait_seconds(self) -> float:
        fraction = self._learner.data_wait_fraction
        return fraction * (time.perf_counter() - self._start)


def _wait_window(
    setup: LearnerSetup, clock: WaitClock, calls: int, synchronous: bool, k: int
) -> dict[str, float]:
    learner = setup.learner
    learner.block_until_ready()
    wait_before = clock.wait_seconds()
    start = time.perf_counter()
    for _ in range(calls):
        learner.step()
        if synchronous:
            learner.block_until_ready()
    learner.block_until_ready()
    wall = time.perf_counter() - start
    wait = clock.wait_seconds() - wait_before
    return {"wait_fraction": wait / wall, "sgd_steps_per_s": calls * k / wall, "wall_s": wall}


def run_wait(
    builder: R2D2Builder,
    spec: EnvironmentSpec,
    replay: Replay,
    windows: int,
    window_calls: int,
    warmup_calls: int,
) -> dict[str, Any]:
    k = builder.config.sgd_steps_per_call
    setup = make_learner_setup(builder, spec, replay)
    clock = WaitClock(setup.learner)
    try:
        start = time.perf_counter()
        clock.first_step()
        setup.learner.block_until_ready()
        compile_seconds = time.perf_counter() - start
        for _ in range(warmup_calls):  # pipeline running, buffers filled
            setup.learner.step()
        setup.learner.block_until_ready()
        sync, free = [], []
        for i in range(windows):  # interleaved, order reversed every other pair
            for synchronous in (True, False) if i % 2 == 0 else (False, True):
                (sync if synchronous else free).append(
                    _wait_window(setup, clock, window_calls, synchronous, k)
                )
        cumulative = setup.learner.data_wait_fraction
        prefetcher_fraction = setup.iterator.wait_fraction()
    finally:
        setup.close()
    return {
        "what": "fraction of R2D2Learner wall time blocked in next(iterator) (from its "
        "data_wait_fraction), steps made synchronous; replay pre-filled, no rate limiter",
        "target": WAIT_TARGET,
        "device": jax.devices()[0].device_kind,
        "data_wait_fraction": common.spread([w["wait_fraction"] for w in sync]),
        "windows": sync,
        "sgd_steps_per_window": window_calls * k,
        "sgd_steps_per_s": common.spread([w["sgd_steps_per_s"] for w in sync]),
        "free_running": {
            "wait_fraction": common.spread([w["wait_fraction"] for w in free]),
            "sgd_steps_per_s": common.spread([w["sgd_steps_per_s"] for w in free]),
            "windows": free,
        },
        "learner_data_wait_fraction_property (cumulative, incl. first step and warm-up)": (
            cumulative
        ),
        "prefetcher_wait_fraction (cumulative)": prefetcher_fraction,
        "compile_seconds": round(compile_seconds, 2),
        "warmup_calls": warmup_calls,
        "replay_items": replay.num_items,
    }


# --------------------------------------------------------------------------------------------
# Driver and table.


def run(
    figures: tuple[str, ...] = FIGURES,
    lstm_size: int = 64,
    torso_size: int = 64,
    batch_size: int | None = None,
    sgd_steps_per_call: int | None = None,
    episodes: int = 16,
    adder_repeats: int = 9,
    block_episodes: int = 8,
    adder_budget_seconds: float = 40.0,
    num_sequences: int = 2_000,
    learner_repeats: int = 7,
    timed_calls: int = 10,
    lead_in: int = 8,
    learner_budget_seconds: float = 90.0,
    windows: int = 4,
    window_calls: int = 25,
    seed: int = 0,
) -> dict[str, Any]:
    config = make_config(
        lstm_size, torso_size, batch_size=batch_size, sgd_steps_per_call=sgd_steps_per_call
    )
    builder = R2D2Builder(config)
    env = make_environment(ENV_NAME, seed=seed)
    spec = make_environment_spec(env)
    start = time.perf_counter()
    recorded = record_episodes(env, spec, config, max(episodes, block_episodes, 2), seed)
    env.close()
    out: dict[str, Any] = {
        "env": ENV_NAME,
        "config": config_record(config),
        "recorded_episodes": dict(
            episodes_summary(recorded), seconds=round(time.perf_counter() - start, 1)
        ),
    }
    if "adder" in figures:
        out["adder"] = run_adder(
            builder, spec, recorded, adder_repeats, block_episodes, adder_budget_seconds
        )
    if "learner" in figures or "wait" in figures:
        start = time.perf_counter()
        replay = start_filled_replay(builder, spec, recorded, num_sequences)
        out["replay"] = {
            "items": replay.num_items,
            "fill_seconds": round(time.perf_counter() - start, 1),
        }
        try:
            if "learner" in figures:
                out["learner"] = run_learner(
                    builder,
                    spec,
                    replay,
                    learner_repeats,
                    timed_calls,
                    lead_in,
                    learner_budget_seconds,
                )
            if "wait" in figures:
                out["wait"] = run_wait(builder, spec, replay, windows, window_calls, lead_in)
        finally:
            replay.stop()
    return out


def _rate(summary: dict[str, float], unit: str) -> str:
    """common.fmt_rate, with one decimal below 100 (a CPU learner's SGD steps/s)."""
    if summary["median"] < 100:
        return f"{summary['median']:.1f} {unit}"
    return common.fmt_rate(summary, unit)


def rows(figures: dict[str, Any]) -> list[list[str]]:
    c = figures["config"]
    sizes = f"H={c['lstm_size']}, torso {c['torso_size']}"
    out = []
    if "adder" in figures:
        f = figures["adder"]
        r = f["adder_efficiency"]
        check = f["item_check"]["items_identical"] and f["items_per_block"]["same"]
        out.append(
            [
                f"sequence adder efficiency (R2D2, L={c['sequence_length']}, period "
                f"{c['sequence_period']}, MemoryS7, {sizes})",
                common.fmt_ratio(r),
                common.fmt_spread(r),
                ADDER_TARGET,
                common.meets(r["median"], ADDER_TARGET),
                f"adder {common.fmt_rate(f['adder_items_per_s'], 'items/s')}, bare writer "
                f"{common.fmt_rate(f['bare_writer_items_per_s'], 'items/s')}; "
                f"{f['block']['items']} items per block; "
                + ("same items both sides" if check else "**items differ**"),
            ]
        )
    batch = f"B={c['batch_size']}, K={c['sgd_steps_per_call']}, {sizes}"
    if "learner" in figures:
        f = figures["learner"]
        r = f["learner_efficiency"]
        out.append(
            [
                f"learner efficiency (R2D2, {batch}, {f['device']})",
                common.fmt_ratio(r),
                common.fmt_spread(r),
                LEARNER_TARGET,
                common.meets(r["median"], LEARNER_TARGET),
                f"learner {_rate(f['learner_sgd_steps_per_s'], 'SGD steps/s')}, "
                f"floor {_rate(f['floor_sgd_steps_per_s'], 'SGD steps/s')}; "
                "learner on a fixed batch ÷ floor "
                f"{common.fmt_ratio(f['learner_fixed_batch_over_floor'])}, learner ÷ learner "
                "on a fixed batch (data path) "
                f"{common.fmt_ratio(f['learner_over_learner_fixed_batch (data path cost)'])}",
            ]
        )
    if "wait" in figures:
        f = figures["wait"]
        r = f["data_wait_fraction"]
        free = f["free_running"]["wait_fraction"]
        out.append(
            [
                f"learner data wait (R2D2, {batch}, {f['sgd_steps_per_window']} SGD steps x "
                f"{r['n']} windows, {f['device']})",
                common.fmt_ratio(r),
                common.fmt_spread(r),
                WAIT_TARGET,
                common.meets(r["median"], WAIT_TARGET),
                f"{_rate(f['sgd_steps_per_s'], 'SGD steps/s')} (synchronous steps); "
                f"free-running wait fraction {free['median']:.3f} (overlaps compute)",
            ]
        )
    return out


def markdown(record: dict[str, Any]) -> str:
    m, load = record["machine"], record["load"]
    git = record["git"]
    lines = [
        common.markdown_table(record["table_headers"], record["table_rows"]),
        "",
        f"Environment `{record['figures']['env']}`, config {record['figures']['config']}.",
        f"Machine: {m['cpu_model']}, {m['usable_cores']} usable cores, GPU {m['gpu']}, "
        f"JAX backend {m['jax_backend']}; load average {load['loadavg_before']} before, "
        f"{load['loadavg_after']} after"
        + (" (loaded: other work was competing)" if load["loaded"] else "")
        + ".",
        f"Commit {git['commit']}{' (dirty)' if git['dirty'] else ''}, {record['date']}, "
        f"{record['wall_seconds']} s: `{record['command']}`",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figures", nargs="+", choices=FIGURES, default=list(FIGURES))
    parser.add_argument("--lstm-size", type=int, default=64)
    parser.add_argument("--torso-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    parser.add_argument("--sgd-steps-per-call", type=int, default=None, help="default: 1")
    parser.add_argument("--episodes", type=int, default=16, help="random episodes recorded")
    parser.add_argument("--repeats", type=int, default=None, help="both comparisons' repeats")
    parser.add_argument("--adder-repeats", type=int, default=9)
    parser.add_argument("--block-episodes", type=int, default=8, help="episodes per adder block")
    parser.add_argument("--num-sequences", type=int, default=2_000, help="replay pre-fill")
    parser.add_argument("--learner-repeats", type=int, default=7)
    parser.add_argument("--timed-calls", type=int, default=10, help="learner calls per block")
    parser.add_argument("--lead-in", type=int, default=8, help="untimed learner calls per block")
    parser.add_argument("--windows", type=int, default=4, help="data-wait windows of each kind")
    parser.add_argument("--window-calls", type=int, default=25)
    parser.add_argument("--json-name", default=NAME, help="results/<name>.json and .md")
    args = parser.parse_args()
    if args.block_episodes > args.episodes:
        parser.error("--block-episodes must be <= --episodes")
    recorder = common.Recorder(args.json_name)
    figures = run(
        tuple(args.figures),
        lstm_size=args.lstm_size,
        torso_size=args.torso_size,
        batch_size=args.batch_size,
        sgd_steps_per_call=args.sgd_steps_per_call,
        episodes=args.episodes,
        adder_repeats=args.repeats or args.adder_repeats,
        block_episodes=args.block_episodes,
        num_sequences=args.num_sequences,
        learner_repeats=args.repeats or args.learner_repeats,
        timed_calls=args.timed_calls,
        lead_in=args.lead_in,
        windows=args.windows,
        window_calls=args.window_calls,
    )
    record = recorder.finish(figures, rows(figures))
    path = common.write_json(record, args.json_name)
    (common.RESULTS_DIR / f"{args.json_name}.md").write_text(markdown(record))
    print(common.markdown_table(common.TABLE_HEADERS, rows(figures)))
    if "adder" in figures:
        print("\nadder item check:", figures["adder"]["item_check"])
        print("items per block:", figures["adder"]["items_per_block"])
    if "learner" in figures:
        print("compile seconds:", figures["learner"]["compile_seconds"])
    print(f"\nwrote {path} and {path.with_suffix('.md')}")


if __name__ == "__main__":
    main()
