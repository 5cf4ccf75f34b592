"""Recording offline datasets from policies: `antiphon collect`.

A policy is one of:
  random                      uniform random actions in the action box (uniform over the actions
                              of a discrete action space)
  babyai-bot                  minigrid's BabyAI bot (`minigrid.utils.baby_ai_bot.BabyAIBot`),
                              on `babyai:<Level>` environments only: expert demonstrations
  RUN_DIR[@WHICH]             a policy snapshot of an online run (`runs/x/snapshots/`), WHICH =
                              expert (default: the best evaluated snapshot) | medium (the
                              snapshot whose return is closest to half the best, before it) |
                              step=N | latest
  replay:RUN_DIR[@WHICH]      the episodes the run's actors recorded (`--record-episodes`) up to
                              the step of that snapshot: the run's replay buffer stopped there

The D4RL recipe on one run (`collect_recipe`): random, medium, medium-replay, expert and
medium-expert (medium + expert, 50/50), each written with its metadata.

Every dataset holds actions in antiphon's internal [-1, 1] box, and its metadata says so:
`action_units: "normalized"` (older datasets without the key are recognised by their `policy`
record, see `core.prepare_for_environment`).

MiniGrid / BabyAI environments (dict observations, discrete actions) are recorded too (random,
babyai-bot): each observation is stored flattened to 164 float32 values in the fixed order of
`environments.minigrid` (image, direction, mission), the metadata's `observation_layout` records
it and `minigrid.unflatten_observations` gives the dicts back exactly; an action is stored as its
index, float32 `[N, 1]` (`action_units: "native"`, `action_space: {"kind": "discrete", ...}`).
Datasets from environments that report `episode_success` record it per episode
(`episode_successes`) and as `success_rate`.

Several policies (`collect_mixture`, `antiphon collect --policy A --policy B ...`) write one
file: each policy's episodes one after another, each part recorded in the metadata.

Snapshot policies act greedily plus Gaussian noise `action_noise` (clipped to the box), so that
datasets cover more than one trajectory per start state; the noise is recorded in the metadata.
With `behaviour_policy` a snapshot acts with its agent's behaviour policy instead of its
evaluation policy (CRR, BC: a sample of pi rather than its greedy action; D4PG: with its
exploration noise), still plus `action_noise`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import dm_env
import numpy as np
from dm_env import specs

from antiphon.agents.snapshots import (  # noqa: F401 - collect's own names, as before
    Snapshot,
    SnapshotError,
    config_from_record,
    list_snapshots,
    restore_snapshot,
    run_record,
    select_snapshot,
)
from antiphon.environments.datasets.core import (
    Dataset,
    DatasetError,
    concatenate,
    from_episodes,
)

RECIPE = ("random", "medium", "medium-replay", "expert", "medium-expert")
BABYAI_BOT = "babyai-bot"  # the --policy (and the metadata's policy kind) of minigrid's bot


class CollectError(SnapshotError):
    """Bad collect input; one line."""


def snapshot_policy(
    run_dir: str,
    snapshot: Snapshot,
    env_spec,
    action_noise: float,
    seed: int,
    behaviour_policy: bool = False,
):
    """A numpy policy `observation -> action` acting with the snapshot's parameters: the agent's
    evaluation policy, or with `behaviour_policy` its behaviour policy."""
    import jax
    import jax.numpy as jnp

    builder, networks, params = restore_snapshot(
        run_dir, snapshot, env_spec, evaluation=not behaviour_policy
    )
    policy = builder.make_policy(networks, evaluation=not behaviour_policy)
    rng = np.random.default_rng(seed)
    key = jax.random.PRNGKey(seed)

    @jax.jit
    def act(params, observation, key):
        return policy(params, observation, (), key)[0]

    low = np.asarray(env_spec.actions.minimum, np.float32)
    high = np.asarray(env_spec.actions.maximum, np.float32)

    def select_action(observation):
        nonlocal key
        key, step_key = jax.random.split(key)
        action = np.asarray(act(params, jnp.asarray(observation), step_key))
        if action_noise > 0:
            action = action + action_noise * rng.standard_normal(action.shape).astype(np.float32)
        return np.clip(action, low, high).astype(np.float32)

    return select_action


def _with_episode_returns(dataset: Dataset) -> Dataset:
    """Records the episode count and returns in the metadata (what `antiphon train` and reports
    show)."""
    dataset.metadata["episodes"] = dataset.num_episodes
    dataset.metadata["episode_returns"] = [float(r) for r in dataset.episode_returns()]
    return dataset


def random_policy(env_spec, seed: int):
    """Uniform random actions: in the action box, or over a discrete action space's indices."""
    rng = np.random.default_rng(seed)
    spec = env_spec.actions

    if isinstance(spec, specs.DiscreteArray):

        def select_discrete(observation):
            return np.asarray(rng.integers(spec.num_values), spec.dtype)

        return select_discrete

    def select_action(observation):
        return rng.uniform(spec.minimum, spec.maximum, spec.shape).astype(np.float32)

    return select_action


MINIGRID_KEYS = frozenset({"image", "direction", "mission"})


def observation_recording(
    observation_spec: Any, metadata: dict[str, Any]
) -> tuple[Callable[[Any], np.ndarray], Callable[[Any], Any]]:
    """(to_row, to_policy): what a dataset row and what the policy get from an observation.

    Flat observations: both the float32 array, as before. MiniGrid's dict: the row is
    `minigrid.flatten_observation` (its layout goes into `metadata["observation_layout"]`), the
    policy gets the dict itself. Any other dict is refused: there is no recorded layout for it.
    """
    if isinstance(observation_spec, specs.Array):

        def as_float32(observation):
            return np.asarray(observation, np.float32)

        return as_float32, as_float32
    keys = set(observation_spec) if isinstance(observation_spec, Mapping) else set()
    if keys != MINIGRID_KEYS:
        raise CollectError(
            f"cannot record structured observations with parts {sorted(keys)} (flat arrays and"
            " MiniGrid's image/direction/mission only)"
        )
    from antiphon.environments import minigrid

    layout = minigrid.observation_layout(observation_spec)
    metadata["observation_layout"] = layout

    def flatten(observation):
        return minigrid.flatten_observation(observation, layout)

    return flatten, lambda observation: observation


def record_episodes(
    environment,
    select_action: Callable[[Any], np.ndarray],
    num_episodes: int,
    metadata: dict[str, Any],
    progress: Callable[[int], None] | None = None,
) -> Dataset:
    """Runs `num_episodes` episodes; true terminals (discount 0) and time-limit truncations are
    kept apart in `terminals` / `timeouts`.

    Observations are stored as `observation_recording` says (dicts flattened), actions as
    float32 rows (a discrete action as `[index]`). A policy with `begin_episode()` gets it
    called after every reset (the BabyAI bot plans each episode afresh); one that sets
    `gave_up` ends its episode at that step, as a truncation. An environment with
    `episode_success` has it recorded per episode (`episode_successes`, `success_rate`).
    """
    from antiphon.environments.datasets.recorder import EpisodeAssembler

    to_row, to_policy = observation_recording(environment.observation_spec(), metadata)
    begin_episode = getattr(select_action, "begin_episode", None)
    assembler = EpisodeAssembler()
    episodes: list[dict[str, np.ndarray]] = []
    successes: list[bool] = []
    tracks_success = hasattr(environment, "episode_success")
    for episode in range(num_episodes):
        timestep = environment.reset()
        if begin_episode is not None:
            begin_episode()
        assembler.observe_first(
            environment, timestep._replace(observation=to_row(timestep.observation))
        )
        while not timestep.last():
            action = select_action(to_policy(timestep.observation))
            timestep = environment.step(action)
            if getattr(select_action, "gave_up", False) and not timestep.last():
                # Cut where the policy gave up: a truncation (discount 1), so a failure.
                timestep = timestep._replace(step_type=dm_env.StepType.LAST)
            row = timestep._replace(observation=to_row(timestep.observation))
            assembler.observe(environment, row, np.asarray(action, np.float32).reshape(-1))
        episodes.append(assembler.pop_finished())
        if tracks_success:
            successes.append(bool(environment.episode_success))
        if progress is not None:
            progress(episode + 1)
    if tracks_success:
        metadata["episode_successes"] = successes
        metadata["success_rate"] = float(np.mean(successes))
    return _with_episode_returns(from_episodes(episodes, metadata))


def parse_policy(text: str) -> tuple[str, str | None, str]:
    """'random' | 'babyai-bot' | 'RUN_DIR[@WHICH]' | 'replay:RUN_DIR[@WHICH]' -> (kind, run_dir,
    which)."""
    if text in ("random", BABYAI_BOT):
        return text, None, ""
    kind = "snapshot"
    if text.startswith("replay:"):
        kind, text = "replay", text[len("replay:") :]
    run_dir, _, which = text.partition("@")
    which = which or ("medium" if kind == "replay" else "expert")
    if not os.path.isdir(run_dir):
        raise CollectError(
            f"no such run directory: {run_dir} (policy: random | {BABYAI_BOT} | RUN_DIR[@WHICH]"
            " | replay:RUN_DIR[@WHICH])"
        )
    return kind, run_dir, which


def collect(
    environment_name: str,
    policy: str,
    num_episodes: int,
    seed: int = 0,
    action_repeat: int | None = None,
    action_noise: float = 0.1,
    progress: Callable[[int], None] | None = None,
    behaviour_policy: bool = False,
) -> Dataset:
    """One dataset from one policy specification (see the module docstring)."""
    from antiphon.core.types import make_environment_spec
    from antiphon.environments import make_environment

    kind, run_dir, which = parse_policy(policy)
    if kind == BABYAI_BOT:
        # Refused before anything is built: the bot plans from a BabyAI level's instructions,
        # one environment step per decision.
        if not environment_name.startswith("babyai:"):
            raise CollectError(
                f"--policy {BABYAI_BOT} needs a BabyAI level (babyai:<Level>, e.g."
                f" babyai:KeyCorridorS3R3), not '{environment_name}'"
            )
        if action_repeat not in (None, 1):
            raise CollectError(
                f"--policy {BABYAI_BOT} decides every environment step; action repeat"
                f" {action_repeat} would repeat its decisions"
            )
    if run_dir is not None:
        record = run_record(run_dir)
        if record.get("env") != environment_name:
            raise CollectError(
                f"{run_dir} trained on '{record.get('env')}', not '{environment_name}'"
            )
        run_repeat = int(record.get("action_repeat", 1))
        if action_repeat is not None and action_repeat != run_repeat:
            raise CollectError(
                f"{run_dir} trained with action repeat {run_repeat}, not {action_repeat}"
            )
        action_repeat = run_repeat
    action_repeat = action_repeat or 1
    metadata: dict[str, Any] = {
        "environment": environment_name,
        "action_repeat": action_repeat,
        # The policies act in antiphon's [-1, 1] box (the environment's CanonicalActionWrapper
        # maps to its own units), so that is what the dataset holds.
        "action_units": "normalized",
        "seed": seed,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if kind == "replay":
        from antiphon.environments.datasets.recorder import read_recorded_episodes

        snapshot = select_snapshot(run_dir, which)
        metadata["policy"] = {
            "kind": "replay",
            "run_dir": os.path.abspath(run_dir),
            "until_actor_steps": snapshot.steps,
            "snapshot_eval_return": snapshot.eval_return,
            "which": which,
        }
        return _with_episode_returns(read_recorded_episodes(run_dir, snapshot.steps, metadata))
    environment = make_environment(environment_name, seed=seed, action_repeat=action_repeat)
    env_spec = make_environment_spec(environment)
    if isinstance(env_spec.actions, specs.DiscreteArray):
        # Indices as the environment takes them (nothing to normalise); see the docstring.
        metadata["action_units"] = "native"
        metadata["action_space"] = {
            "kind": "discrete",
            "num_values": int(env_spec.actions.num_values),
            "stored_as": "float32 [N, 1]: the action index",
        }
    if kind == "snapshot" and not isinstance(env_spec.observations, specs.Array):
        environment.close()
        raise CollectError(
            f"{environment_name} has structured (dict) observations; snapshot policies record"
            f" flat observations only (policy: random | {BABYAI_BOT} here)"
        )
    if kind == "random":
        select_action = random_policy(env_spec, seed)
        metadata["policy"] = {"kind": "random"}
    elif kind == BABYAI_BOT:
        import minigrid as minigrid_package

        from antiphon.environments.minigrid import BabyAIBotPolicy

        select_action = BabyAIBotPolicy(environment)
        metadata["policy"] = {
            "kind": BABYAI_BOT,
            "bot": "minigrid.utils.baby_ai_bot.BabyAIBot",
            "minigrid_version": minigrid_package.__version__,
            "level": environment.gym_env.spec.id,
        }
    else:
        snapshot = select_snapshot(run_dir, which)
        select_action = snapshot_policy(
            run_dir, snapshot, env_spec, action_noise, seed, behaviour_policy
        )
        metadata["policy"] = {
            "kind": "snapshot",
            "run_dir": os.path.abspath(run_dir),
            "snapshot": os.path.basename(snapshot.path),
            "snapshot_steps": snapshot.steps,
            "snapshot_eval_return": snapshot.eval_return,
            "which": which,
            "action_noise": action_noise,
            "acting": "behaviour" if behaviour_policy else "evaluation",
        }
    try:
        dataset = record_episodes(environment, select_action, num_episodes, metadata, progress)
    finally:
        environment.close()
    if kind == BABYAI_BOT:
        # Episodes the bot could not finish (cut there, failures) and why, in the record.
        dataset.metadata["policy"]["bot_errors"] = list(select_action.errors)
    return dataset


def collect_mixture(
    environment_name: str,
    policies: list[str],
    num_episodes: int,
    seed: int = 0,
    action_repeat: int | None = None,
    action_noises: list[float] | None = None,
    progress_factory: Callable[[str, int], Callable[[int], None]] | None = None,
    behaviour_policy: bool = False,
) -> Dataset:
    """`num_episodes` from each policy, one after another, as one dataset: a mixed-quality file
    (for example a trained policy, the same with heavy action noise, and random episodes).

    Part `i` runs its environment with seed `seed + i`, so no two parts replay the same initial
    states. With one policy this is `collect` exactly. The metadata's `policy` lists every part
    with the episode range it wrote.
    """
    noises = list(action_noises) if action_noises is not None else [0.1] * len(policies)
    if len(noises) != len(policies):
        raise CollectError(f"{len(noises)} action noises for {len(policies)} policies")
    parts = []
    for index, (policy, noise) in enumerate(zip(policies, noises, strict=True)):
        parts.append(
            collect(
                environment_name,
                policy,
                num_episodes,
                seed=seed + index,
                action_repeat=action_repeat,
                action_noise=noise,
                progress=progress_factory(policy, num_episodes) if progress_factory else None,
                behaviour_policy=behaviour_policy and policy not in ("random", BABYAI_BOT),
            )
        )
    if len(parts) == 1:
        return parts[0]
    metadata = dict(parts[0].metadata)
    metadata["seed"] = seed
    if all("episode_successes" in part.metadata for part in parts):
        successes = [s for part in parts for s in part.metadata["episode_successes"]]
        metadata["episode_successes"] = successes
        metadata["success_rate"] = float(np.mean(successes))
    metadata["policy"] = {
        "kind": "mixture",
        "parts": [
            {**part.metadata["policy"], "episodes": [i * num_episodes, (i + 1) * num_episodes]}
            for i, part in enumerate(parts)
        ],
    }
    return _with_episode_returns(concatenate(parts, metadata))


def collect_recipe(
    environment_name: str,
    run_dir: str,
    num_episodes: int,
    seed: int = 0,
    action_noise: float = 0.1,
    names: tuple[str, ...] = RECIPE,
    progress_factory: Callable[[str, int], Callable[[int], None]] | None = None,
) -> dict[str, Dataset]:
    """The D4RL recipe from one online run: {name: Dataset} for `names` (see RECIPE)."""
    unknown = [n for n in names if n not in RECIPE]
    if unknown:
        raise CollectError(f"unknown dataset(s) {unknown} (recipe: {', '.join(RECIPE)})")
    out: dict[str, Dataset] = {}
    # Every dataset, random included, sees the environment the run trained on.
    action_repeat = int(run_record(run_dir).get("action_repeat", 1))
    policies = {
        "random": "random",
        "medium": f"{run_dir}@medium",
        "medium-replay": f"replay:{run_dir}@medium",
        "expert": f"{run_dir}@expert",
    }
    for offset, name in enumerate(n for n in RECIPE if n != "medium-expert"):
        if name not in names and not (name in ("medium", "expert") and "medium-expert" in names):
            continue
        progress = progress_factory(name, num_episodes) if progress_factory else None
        dataset = collect(
            environment_name,
            policies[name],
            num_episodes,
            seed=seed * 100 + offset,  # a different start-state stream per dataset
            action_repeat=action_repeat,
            action_noise=action_noise,
            progress=progress,
        )
        dataset.metadata["recipe"] = name
        out[name] = dataset
    if "medium-expert" in names:
        medium, expert = out["medium"], out["expert"]
        metadata = dict(expert.metadata)
        metadata["recipe"] = "medium-expert"
        metadata["policy"] = {
            "kind": "mixture",
            "parts": [medium.metadata["policy"], expert.metadata["policy"]],
        }
        out["medium-expert"] = _with_episode_returns(concatenate([medium, expert], metadata))
    return {name: out[name] for name in RECIPE if name in names}


__all__ = [
    "BABYAI_BOT",
    "CollectError",
    "DatasetError",
    "RECIPE",
    "collect",
    "collect_recipe",
    "list_snapshots",
    "select_snapshot",
]
