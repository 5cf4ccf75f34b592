"""How wide a trained policy is on its own dataset's states.

For each run directory (an offline `antiphon train` run of CRR or BC), per action dimension, over
every 10th dataset state: the latest policy snapshot's action-space spread (the standard deviation
of 16 samples of pi, median over states) and the dataset's fraction of actions on the edge
(|a| >= 0.999). For a tanh-Gaussian policy also its pre-tanh standard deviation (median) and the
fraction of states where |pre-tanh mean| > 2 (tanh > 0.96: the greedy action sits at the box edge);
for a Gaussian mixture, the fraction where the greedy action is on the edge (|a| >= 0.999). The
behaviour of a `medium` dataset adds N(0, 0.1) noise to its actions, so 0.1 is the spread it acted
with.

    python -m benchmarks.policy_spread runs/offline/cheetah-run-medium-ours-crr-s0
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def spread(run_dir: str, stride: int = 10) -> dict[str, list[float]]:
    import jax
    import jax.numpy as jnp

    from antiphon.core.types import make_environment_spec
    from antiphon.environments import make_environment
    from antiphon.environments.datasets import load_dataset
    from antiphon.launch.collect import (
        restore_snapshot,
        run_record,
        select_snapshot,
    )

    record = run_record(run_dir)
    env_spec = make_environment_spec(make_environment(record["env"], seed=0))
    _, networks, params = restore_snapshot(
        run_dir, select_snapshot(run_dir, "latest"), env_spec, evaluation=False
    )  # the policy alone, also for a critic-weighted run
    arrays = load_dataset(record["dataset"]).arrays()
    dist = networks.policy_apply(params, jnp.asarray(arrays["observations"][::stride]))
    actions = arrays["actions"][::stride]
    samples = np.asarray(networks.head.sample(dist, jax.random.PRNGKey(0), 16))
    figures = {"action_sample_std_median": np.median(samples.std(axis=0), axis=0).tolist()}
    if networks.head.kind == "tanh_gaussian":
        mean, std = dist
        figures["pre_tanh_std_median"] = np.median(np.asarray(std), axis=0).tolist()
        figures["policy_at_edge_fraction"] = (np.abs(np.asarray(mean)) > 2).mean(axis=0).tolist()
    else:
        greedy = np.asarray(networks.head.mode(dist))
        figures["policy_at_edge_fraction"] = (np.abs(greedy) >= 0.999).mean(axis=0).tolist()
    figures["data_at_edge_fraction"] = (np.abs(actions) >= 0.999).mean(axis=0).tolist()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="offline run directories")
    args = parser.parse_args(argv)
    for run_dir in args.runs:
        print(run_dir)
        for name, values in spread(run_dir).items():
            print(f"  {name:24s} " + " ".join(f"{v:5.2f}" for v in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
