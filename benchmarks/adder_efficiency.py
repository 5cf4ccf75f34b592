"""Adder efficiency: items/s through `NStepTransitionAdder` ÷ items/s of a bare TrajectoryWriter.

Both sides write the same items — one n-step `Transition` (n=5) per environment step, T per
episode of T steps — into the same live Reverb table (served from this process, no rate limiter,
never evicting during the run), from synthetic cheetah-run-shaped timesteps (17 float32
observations, 6 float32 actions, episodes of 1000 steps, truncated like DM Control's time limit).
Timesteps and actions are made before timing, so neither side pays for producing data.

A (adder): `add_first` + `add(action, timestep)` per step; the adder computes the n-step return
and discount itself (its real work) and makes one writer append per step (the shorter
end-of-episode transitions' values go in extra columns of the episode's last step).
B (bare): the least a TrajectoryWriter needs to write the same items: one `append` per step of
{observation, action, n_step_return, total_discount} (return and discount precomputed), then
`create_item` referencing o_t, a_t, the return/discount cells and o_{t+n}; at the episode end
the n-1 shorter transitions (extra steps holding only return/discount), then `end_episode`. Same
flush policy as the adder: `flush(block_until_num_items=max_in_flight_items)` after each item
(the adder's default), same `num_keep_alive_refs` (2n + 1).

Interleaved ABBA, `block_episodes` episodes per block, after one warm-up episode each. A
`cProfile`-free breakdown (µs per item in append / create_item / flush on the bare side) follows.

    .venv/bin/python -m benchmarks.adder_efficiency
"""

from __future__ import annotations

import argparse
import inspect
import time
from typing import Any

import dm_env
import numpy as np
import reverb
from dm_env import specs

from antiphon.core.types import EnvironmentSpec, Transition
from antiphon.replay import adders, tables
from benchmarks import common

NAME = "adder_efficiency"
TARGET = ">= 0.8"
TABLE = "priority_table"
OBS_DIM, ACT_DIM, EPISODE_LENGTH, N_STEP, DISCOUNT = 17, 6, 1000, 5, 0.99
# The bare writer copies the adder's flush policy: its default, as `D4PGBuilder.make_adder` uses.
MAX_IN_FLIGHT = (
    inspect.signature(adders.NStepTransitionAdder).parameters["max_in_flight_items"].default
)

ENV_SPEC = EnvironmentSpec(
    observations=specs.Array((OBS_DIM,), np.float32, name="observations"),
    actions=specs.BoundedArray((ACT_DIM,), np.float32, -1.0, 1.0),
    rewards=specs.Array((), np.float64),
    discounts=specs.BoundedArray((), np.float64, 0.0, 1.0),
)


class SyntheticEpisode:
    """One cheetah-run-shaped episode, made up front: timesteps, actions, n-step values."""

    def __init__(self, seed: int, length: int = EPISODE_LENGTH):
        rng = np.random.default_rng(seed)
        obs = rng.standard_normal((length + 1, OBS_DIM)).astype(np.float32)
        self.actions = list(rng.uniform(-1, 1, (length, ACT_DIM)).astype(np.float32))
        rewards = rng.uniform(0, 1, length)
        self.observations = list(obs)
        self.timesteps = [dm_env.restart(obs[0])]
        for t in range(length - 1):
            self.timesteps.append(dm_env.transition(rewards[t], obs[t + 1], discount=1.0))
        self.timesteps.append(dm_env.truncation(rewards[-1], obs[length]))
        # What the bare writer stores per item (values do not matter for speed, shapes do).
        self.returns = list(rng.uniform(0, 5, length).astype(np.float32))
        self.discounts = [np.float32(DISCOUNT**N_STEP)] * length
        self.length = length


def write_with_adder(adder: adders.NStepTransitionAdder, episode: SyntheticEpisode) -> int:
    timesteps, actions = episode.timesteps, episode.actions
    adder.add_first(timesteps[0])
    for t in range(episode.length):
        adder.add(actions[t], timesteps[t + 1])  # the LAST timestep ends the episode (reset)
    return episode.length


def write_bare(
    writer: reverb.TrajectoryWriter,
    episode: SyntheticEpisode,
    n: int = N_STEP,
    timings: dict[str, float] | None = None,
) -> int:
    """The same items as the adder, with one append per step. Returns the number of items."""
    obs, act, ret, disc = episode.observations, episode.actions, episode.returns, episode.discounts
    length = episode.length
    clock = time.perf_counter
    t_append = t_create = t_flush = 0.0
    items = 0

    def item(first_back: int, next_back: int) -> None:
        # first_back/next_back: how far back (in writer steps) o_t and o_{t+n'} lie.
        nonlocal t_create, t_flush, items
        h = writer.history
        t0 = clock()
        writer.create_item(
            TABLE,
            1.0,
            Transition(
                observation=h["observation"][-first_back],
                action=h["action"][-first_back],
                reward=h["n_step_return"][-1],
                discount=h["total_discount"][-1],
                next_observation=h["observation"][-next_back],
            ),
        )
        t1 = clock()
        writer.flush(block_until_num_items=MAX_IN_FLIGHT)
        t_create += t1 - t0
        t_flush += clock() - t1
        items += 1

    # Step i holds o_i, a_i and the return/discount of transition i - n (whose next obs is o_i).
    for i in range(length):
        step = {"observation": obs[i], "action": act[i]}
        if i >= n:
            step["n_step_return"] = ret[i - n]
            step["total_discount"] = disc[i - n]
        t0 = clock()
        writer.append(step)
        t_append += clock() - t0
        if i >= n:
            item(n + 1, 1)
    # Final observation o_T with the last full-length transition's values.
    t0 = clock()
    writer.append(
        {"observation": obs[length], "n_step_return": ret[length - n], "total_discount": disc[0]}
    )
    t_append += clock() - t0
    item(n + 1, 1)
    # The n-1 shorter transitions t = T-n+1 .. T-1, all bootstrapping from o_T.
    for k in range(1, n):
        t0 = clock()
        writer.append({"n_step_return": ret[length - n + k], "total_discount": disc[0]})
        t_append += clock() - t0
        item(n + 1, k + 1)  # o_t is n + 1 steps back, o_T k + 1 steps back
    t0 = clock()
    writer.end_episode(clear_buffers=True)
    t_flush += clock() - t0
    if timings is not None:
        timings["append"] += t_append
        timings["create_item"] += t_create
        timings["flush + end_episode"] += t_flush
        timings["items"] += items
    return items


def run(repeats: int = 9, block_episodes: int = 3, budget_seconds: float = 30.0) -> dict[str, Any]:
    signature = adders.NStepTransitionAdder.signature(ENV_SPEC)
    table = tables.uniform_table(
        TABLE, max_size=10_000_000, signature=signature, samples_per_insert=None, min_replay_size=1
    )
    server = tables.start_server([table])
    client = reverb.Client(f"localhost:{server.port}")
    episodes = [SyntheticEpisode(seed) for seed in range(block_episodes)]
    try:
        adder = adders.NStepTransitionAdder(client, N_STEP, DISCOUNT, {TABLE: None})
        writer = client.trajectory_writer(num_keep_alive_refs=2 * N_STEP + 1)

        def adder_block():
            return common.timed(lambda: sum(write_with_adder(adder, e) for e in episodes))

        def bare_block():
            return common.timed(lambda: sum(write_bare(writer, e) for e in episodes))

        # Warm-up; also checks that both sides write the same number of items.
        before = client.server_info()[TABLE].current_size
        adder_items = write_with_adder(adder, episodes[0])
        adder_written = client.server_info()[TABLE].current_size - before
        bare_items = write_bare(writer, episodes[0])
        bare_written = client.server_info()[TABLE].current_size - before - adder_written
        result = common.interleave(
            adder_block, bare_block, repeats, "adder", "bare_writer", budget_seconds
        )

        timings = {"append": 0.0, "create_item": 0.0, "flush + end_episode": 0.0, "items": 0}
        start = time.perf_counter()
        for e in episodes:
            write_bare(writer, e, timings=timings)
        total = time.perf_counter() - start
        n_items = timings.pop("items")
        bare_breakdown = {k: round(1e6 * v / n_items, 1) for k, v in timings.items()}
        bare_breakdown["total (incl. Python, history lookups)"] = round(1e6 * total / n_items, 1)

        start = time.perf_counter()
        items = sum(write_with_adder(adder, e) for e in episodes)
        adder_us_per_item = round(1e6 * (time.perf_counter() - start) / items, 1)
        writer.close()
        adder.close()
    finally:
        server.stop()

    return {
        "what": "items/s: NStepTransitionAdder (n=5) ÷ bare TrajectoryWriter writing the same "
        "items (one append per step), same table, synthetic cheetah-run-shaped timesteps",
        "target": TARGET,
        "adder_efficiency": result["ratio"],
        "ratios": result["ratios"],
        "adder_items_per_s": result["adder_per_s"],
        "bare_writer_items_per_s": result["bare_writer_per_s"],
        "rates": result["rates"],
        "repeats": result["repeats"],
        "block_items": block_episodes * EPISODE_LENGTH,
        "order": result["order"],
        "items_per_episode": {
            "adder": adder_items,
            "adder_written": adder_written,
            "bare": bare_items,
            "bare_written": bare_written,
        },
        "shapes": {"observation": [OBS_DIM], "action": [ACT_DIM], "episode_length": EPISODE_LENGTH},
        "writer_appends_per_step": {"adder": 1, "bare": 1},
        "max_in_flight_items (both sides)": MAX_IN_FLIGHT,
        "bare_breakdown_us_per_item": bare_breakdown,
        "adder_us_per_item_one_pass": adder_us_per_item,
    }


def rows(figures: dict[str, Any]) -> list[list[str]]:
    r = figures["adder_efficiency"]
    return [
        [
            "adder efficiency (n-step, n=5)",
            common.fmt_ratio(r),
            common.fmt_spread(r),
            TARGET,
            common.meets(r["median"], TARGET),
            f"adder {common.fmt_rate(figures['adder_items_per_s'], 'items/s')}, bare writer "
            f"{common.fmt_rate(figures['bare_writer_items_per_s'], 'items/s')}",
        ]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--block-episodes", type=int, default=3)
    args = parser.parse_args()
    recorder = common.Recorder(NAME)
    figures = run(args.repeats, args.block_episodes)
    path = common.write_json(recorder.finish(figures, rows(figures)))
    print(common.markdown_table(common.TABLE_HEADERS, rows(figures)))
    print("\nbare writer breakdown (µs per item):", figures["bare_breakdown_us_per_item"])
    print("adder (µs per item):", figures["adder_us_per_item_one_pass"])
    print("items per episode:", figures["items_per_episode"])
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
