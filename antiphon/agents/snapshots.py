"""Policy snapshots of run directories (`RUN_DIR/snapshots/policy-<steps>.msgpack` and its
.json with the evaluation return), restored as the agent that wrote them: what `antiphon
collect --policy RUN_DIR@WHICH` acts with and what DiME's teacher objective labels with.

WHICH: expert (the best evaluated snapshot) | medium (the snapshot closest to half the best,
before it) | latest | step=N.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from typing import Any


class SnapshotError(ValueError):
    """A run directory or snapshot that cannot be used; one line."""


@dataclasses.dataclass(frozen=True)
class Snapshot:
    path: str  # the .msgpack file
    steps: int
    eval_return: float


def list_snapshots(run_dir: str) -> list[Snapshot]:
    snapshots = []
    for meta_path in sorted(glob.glob(os.path.join(run_dir, "snapshots", "policy-*.json"))):
        with open(meta_path) as f:
            meta = json.load(f)
        steps = int(os.path.basename(meta_path)[len("policy-") : -len(".json")])
        params_path = meta_path[: -len(".json")] + ".msgpack"
        if os.path.exists(params_path):
            snapshots.append(Snapshot(params_path, steps, float(meta["eval_return_mean"])))
    return sorted(snapshots, key=lambda s: s.steps)


def select_snapshot(run_dir: str, which: str = "expert") -> Snapshot:
    snapshots = list_snapshots(run_dir)
    if not snapshots:
        raise SnapshotError(f"{run_dir}: no policy snapshots (snapshots/policy-*.json)")
    # The untrained policy at step 0 is never the expert (nor, below, medium) while a trained
    # snapshot exists: a short or failed run can evaluate it best, and medium-replay (the
    # episodes before medium) would then be empty.
    trained = [s for s in snapshots if s.steps > 0] or snapshots
    best = max(trained, key=lambda s: (s.eval_return, s.steps))
    if which in ("expert", "best"):
        return best
    if which == "latest":
        return snapshots[-1]
    if which == "medium":
        # A trained policy: the untrained snapshot at step 0 is never "medium".
        before = [s for s in snapshots if s.steps <= best.steps and s.steps > 0] or [best]
        return min(before, key=lambda s: (abs(s.eval_return - best.eval_return / 2), s.steps))
    if which.startswith("step="):
        step = int(which[len("step=") :])
        for snapshot in snapshots:
            if snapshot.steps == step:
                return snapshot
        steps = ", ".join(str(s.steps) for s in snapshots)
        raise SnapshotError(f"{run_dir}: no snapshot at step {step} (have: {steps})")
    raise SnapshotError(f"unknown snapshot '{which}' (expert | medium | latest | step=N)")


def run_record(run_dir: str) -> dict[str, Any]:
    """The run directory's config.json record (agent, config, env, dataset, ...)."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        raise SnapshotError(f"{run_dir}: not an antiphon run directory (no config.json)")
    with open(path) as f:
        return json.load(f)


def config_from_record(config_class, fields: dict[str, Any]):
    """A config dataclass from its JSON record (lists back to tuples)."""
    known = {f.name for f in dataclasses.fields(config_class)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items() if k in known}
    return config_class(**values)


def restore_snapshot(run_dir: str, snapshot: Snapshot, env_spec, evaluation: bool = True):
    """(builder, networks, params) of a run's policy snapshot, rebuilt from the run's recorded
    agent and config: the params of its evaluation policy, or with `evaluation=False` of its
    behaviour policy.

    A snapshot holds what the run's evaluation actor read: the policy's params, or for a policy
    that also reads the critic (CRR's critic-weighted policy) the list [policy, critic].
    """
    import jax

    from antiphon.agents.registry import get_builder_class
    from antiphon.core import checkpointing

    record = run_record(run_dir)
    builder_class = get_builder_class(record["agent"])
    if record.get("dataset") and getattr(builder_class, "offline_variant", None):
        builder_class = builder_class.offline_variant  # trained offline under the same name
    builder = builder_class(config_from_record(builder_class.config_class, record["config"]))
    networks = builder.make_networks(env_spec)
    initial = networks.init(jax.random.PRNGKey(0), env_spec)
    # Actor-critic agents' init returns (policy, critic); BC's, the policy alone.
    by_name = (
        dict(zip(("policy", "critic"), initial, strict=False))
        if isinstance(initial, tuple)
        else {"policy": initial}
    )

    # What the policy reads: "policy", or a list of names (agents without `variable_names`
    # read the policy alone).
    variable_names = getattr(builder, "variable_names", lambda evaluation: "policy")

    def pick(values: dict[str, Any], names: str | list[str]):
        return values[names] if isinstance(names, str) else [values[n] for n in names]

    saved = variable_names(True)
    restored = checkpointing.restore_pytree(snapshot.path, pick(by_name, saved))
    restored = (
        {saved: restored} if isinstance(saved, str) else dict(zip(saved, restored, strict=False))
    )
    return builder, networks, pick(restored, variable_names(evaluation))


def parse_snapshot_spec(spec: str, default: str = "expert") -> tuple[str, str]:
    """'RUN_DIR[@WHICH]' -> (run_dir, which); SnapshotError if RUN_DIR is not a directory."""
    run_dir, _, which = spec.partition("@")
    if not os.path.isdir(run_dir):
        raise SnapshotError(f"no such run directory: {run_dir} (expected RUN_DIR[@WHICH])")
    return run_dir, which or default


def snapshot_action_sampler(spec: str, env_spec, num_samples: int, behaviour: bool = True):
    """A pure JAX function `sample(observation [B, D], key) -> actions [num_samples, B, A]`
    acting with the policy snapshot `spec` ('RUN_DIR[@WHICH]') of any antiphon agent: its
    behaviour policy (a sample of pi; D4PG: with its exploration noise), or its evaluation
    policy with `behaviour=False`. The parameters are constants of the function.

    Raises SnapshotError (one line) when the run or snapshot is missing or its networks do not
    fit `env_spec` (another observation or action size).
    """
    import jax
    import jax.numpy as jnp

    from antiphon.core.checkpointing import CheckpointMismatchError

    run_dir, which = parse_snapshot_spec(spec)
    snapshot = select_snapshot(run_dir, which)
    record = run_record(run_dir)
    try:
        builder, networks, params = restore_snapshot(
            run_dir, snapshot, env_spec, evaluation=not behaviour
        )
    except CheckpointMismatchError as e:
        raise SnapshotError(
            f"{spec}: the {record.get('agent')} policy trained on {record.get('env')} does not "
            f"fit this environment's observations or actions ({str(e).split(': ', 1)[-1]})"
        ) from None
    policy = builder.make_policy(networks, evaluation=not behaviour)
    params = jax.device_put(params)

    def act(observation, key):
        return policy(params, observation, (), key)[0]

    def sample(observation: jax.Array, key: jax.Array) -> jax.Array:
        batch = observation.shape[0]
        keys = jax.random.split(key, num_samples * batch).reshape(num_samples, batch, -1)
        observations = jnp.broadcast_to(observation, (num_samples, *observation.shape))
        return jax.vmap(jax.vmap(act))(observations, keys)

    return sample
