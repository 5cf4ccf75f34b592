"""How wide a trained tanh-Gaussian policy is on its own dataset's states.

For each run directory (an offline `antiphon train` run of CRR or BC), per action dimension, over
every 10th dataset state: the latest policy snapshot's action-space spread (the standard deviation
of 16 samples tanh(mean + std * noise), median over states), its pre-tanh standard deviation
(median), the fraction of states where |pre-tanh mean| > 2 (tanh > 0.96: the greedy action sits at
the box edge), and the dataset's fraction of actions on the edge (|a| >= 0.999). The behaviour of
a `medium` dataset adds N(0, 0.1) noise to its actions, so 0.1 is the spread it acted with.

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
    from antiphon.environments.datasets.collect import (
        restore_snapshot,
        run_record,
        select_snapshot,
    )

    record = run_record(run_dir)
    env_spec = make_environment_spec(make_environment(record["env"], seed=0))
    _, networks, params = restore_snapshot(run_dir, select_snapshot(run_dir, "latest"), env_spec)
    arrays = load_dataset(record["dataset"]).arrays()
    mean, std = networks.policy_apply(params, jnp.asarray(arrays["observations"][::stride]))
    actions = arrays["actions"][::stride]
    noise = jax.random.normal(jax.random.PRNGKey(0), (16, *mean.shape))
    samples = np.tanh(np.asarray(mean + std * noise))
    return {
        "action_sample_std_median": np.median(samples.std(axis=0), axis=0).tolist(),
        "pre_tanh_std_median": np.median(np.asarray(std), axis=0).tolist(),
        "policy_at_edge_fraction": (np.abs(np.asarray(mean)) > 2).mean(axis=0).tolist(),
        "data_at_edge_fraction": (np.abs(actions) >= 0.999).mean(axis=0).tolist(),
    }


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
