"""Parameter broadcast cost on the Ray launcher, per new parameter version.

A variable source node holding the D4PG networks' parameters (default sizes, `dmc:cheetah-run`
specs) and N reader nodes, each with a `VariableClient`. Per repeat: the source makes a new
version; once the publisher has put it into Ray's object store, every reader pulls it and times
its pull in its own process. Two paths, interleaved:

- broadcast: the launcher's path. One `ray.put` per version at the source (its cost is the
  publisher's own timing), then per reader a small version call plus an object-store fetch.
- direct: what a per-call RPC would cost, for context: each reader calls the source's
  `get_variables` through the node proxy, so the source serialises the parameters once per reader.

    .venv/bin/python -m benchmarks.broadcast_cost --readers 3 --repeats 20
"""

from __future__ import annotations

import argparse
import time

from antiphon import launch
from antiphon.agents.d4pg.builder import D4PGBuilder
from antiphon.agents.d4pg.config import D4PGConfig
from antiphon.core.types import make_environment_spec
from antiphon.environments import make_environment
from antiphon.launch import program as lp
from antiphon.launch.ray import NodeProxy
from benchmarks import common, ray_nodes

NAME = "broadcast_cost"
TASK = "dmc:cheetah-run"


def run(readers: int, repeats: int, names: tuple[str, ...]) -> dict:
    builder = D4PGBuilder(D4PGConfig())
    env_spec = make_environment_spec(make_environment(TASK, seed=0))
    program = lp.Program("broadcast-cost")
    with program.group("learner"):
        source = program.add_node(lp.PyClassNode(ray_nodes.InitialParamsSource, builder, env_spec))
    with program.group("actor"):
        for _ in range(readers):
            program.add_node(lp.PyClassNode(ray_nodes.TimedReader, source, names))
    period = 0.05
    running = launch.launch(
        program, launch_type="ray", local_num_cpus=readers + 1, broadcast_period_seconds=period
    )
    try:
        learner = running.client("learner")
        labels = [f"actor_{i}" for i in range(readers)] if readers > 1 else ["actor"]
        clients = [running.client(label) for label in labels]
        # Direct-RPC readers: the same nodes' handles, but as plain proxies (no broadcast).
        direct_source = NodeProxy(learner._host, "learner")
        num_bytes = learner.num_bytes(list(names))
        for client in clients:  # warm-up: first pull of each path
            client.timed_pull()
        direct_source.get_variables(list(names))
        broadcast_fetch, direct_fetch = [], []
        stats_before = learner.broadcast_stats()
        for _ in range(repeats):
            learner.bump()
            time.sleep(period * 4)  # the publisher has put the new version
            for client in clients:
                version, seconds = client.timed_pull()
                broadcast_fetch.append(seconds)
            for _ in clients:
                start = time.perf_counter()
                direct_source.get_variables(list(names))
                direct_fetch.append(time.perf_counter() - start)
        stats_after = learner.broadcast_stats()
    finally:
        running.shutdown()
    publishes = stats_after["publishes"] - stats_before["publishes"]
    publish_seconds = stats_after["publish_seconds"] - stats_before["publish_seconds"]
    return {
        "bytes_per_version": num_bytes,
        "readers": readers,
        "versions": repeats,
        "publishes": publishes,
        "publish_ms_per_version": 1000 * publish_seconds / max(publishes, 1),
        "broadcast_fetch_ms": common.spread([1000 * s for s in broadcast_fetch]),
        "direct_fetch_ms": common.spread([1000 * s for s in direct_fetch]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.broadcast_cost")
    parser.add_argument("--readers", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    rows = []
    results = {}
    for names in (("policy",), ("policy", "critic")):
        r = run(args.readers, args.repeats, names)
        results["+".join(names)] = r
        rows.append(
            [
                "+".join(names),
                f"{r['bytes_per_version'] / 1e6:.2f} MB",
                f"{r['publishes']} for {r['versions']} versions",
                f"{r['publish_ms_per_version']:.2f} ms",
                f"{r['broadcast_fetch_ms']['median']:.2f} ms",
                f"{r['direct_fetch_ms']['median']:.2f} ms",
            ]
        )
    table = common.markdown_table(
        [
            "variables",
            "size",
            "objects put",
            "publish per version (source)",
            "broadcast pull per reader (median)",
            "direct RPC per reader (median)",
        ],
        rows,
    )
    print(table)
    common.write_json(
        {
            "benchmark": NAME,
            "task": TASK,
            "results": results,
            "machine": common.machine(),
            "git": common.git_commit(),
            "command": f"python -m benchmarks.broadcast_cost --readers {args.readers} "
            f"--repeats {args.repeats}",
        }
    )
    (common.RESULTS_DIR / f"{NAME}.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
