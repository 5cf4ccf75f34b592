"""The node graphs of antiphon programs and the node classes they are made of.

Online program (`build_online_program`):

    replay (Reverb) <- actor x N -> counter <- evaluator
       |                 ^            ^          |
       v                 |            |          |
    learner ----(variables)-----------+----------+

Every node takes only handles and plain values, so the same graph runs on any launcher.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import threading
import time
from typing import Any

import jax
import numpy as np

from antiphon.agents.actors import UniformRandomActor, vectorise_policy
from antiphon.agents.learners import DivergenceError
from antiphon.core import checkpointing
from antiphon.core.counting import Counter
from antiphon.core.logging import NoOpLogger, make_logger
from antiphon.core.loop import EnvironmentLoop, VectorEnvironmentLoop
from antiphon.core.types import EnvironmentSpec, make_environment_spec
from antiphon.launch import program as lp

# ------------------------------------------------------------------------------------------------
# Run directory layout (ARCHITECTURE.md §6)


def checkpoint_dir(run_dir: str, name: str) -> str:
    return os.path.join(run_dir, "checkpoints", name)


def replay_dir(run_dir: str) -> str:
    return os.path.join(run_dir, "replay")


def replay_checkpoint_dir(run_dir: str) -> str:
    # Its own directory: Reverb treats every entry in it as a checkpoint.
    return os.path.join(replay_dir(run_dir), "checkpoints")


def replay_port_file(run_dir: str) -> str:
    return os.path.join(replay_dir(run_dir), "port")


def snapshots_dir(run_dir: str) -> str:
    return os.path.join(run_dir, "snapshots")


def diverged_file(run_dir: str) -> str:
    """Written when the learner stopped on a non-finite update (LearnerNode._diverged)."""
    return os.path.join(run_dir, "diverged.json")


@dataclasses.dataclass(frozen=True)
class OnlineExperiment:
    """Everything an online run needs besides the agent's builder."""

    environment: str  # registry name, e.g. "dmc:cartpole-swingup"
    max_actor_steps: int
    run_dir: str | None = None
    num_actors: int = 1
    seed: int = 0
    action_repeat: int = 1
    eval_every: int = 10_000  # actor steps between evaluations (0: no evaluator)
    eval_episodes: int = 10
    checkpoint_every_seconds: float = 120.0
    replay_checkpoint: bool = True
    log_every_seconds: float = 10.0
    print_logs: bool = False  # per-node lines on the terminal (the progress bar is separate)
    # Every actor episode to run_dir/episodes/ (the source of `medium-replay` datasets).
    record_episodes: bool = False
    # The evaluated policy's parameters at every evaluation, to run_dir/snapshots/ (the source
    # of `medium` and `expert` datasets: `antiphon collect --policy RUN_DIR@medium`).
    policy_snapshots: bool = True

    # A vector reward of these objectives (environments.make_environment), e.g. ("task",
    # "action_cost"); None: the environment's own scalar reward.
    objectives: tuple[str, ...] | None = None

    # Environments per actor (a VectorActor: one batched policy call steps all of them) and how
    # they are stepped: "serial" in the actor's process, or "subprocess" over `env_workers`
    # processes (0: one per environment). The evaluator runs min(E, eval_episodes) at once.
    envs_per_actor: int = 1
    env_backend: str = "serial"
    env_workers: int = 0

    # The step count that limits the run and schedules evaluations.
    step_key = "actor_steps"

    @property
    def max_steps(self) -> int:
        return self.max_actor_steps


@dataclasses.dataclass(frozen=True)
class OfflineExperiment:
    """Everything an offline run needs besides the agent's builder: the dataset, the number of
    learner (SGD) steps and how to evaluate on the real environment."""

    environment: str
    dataset: str  # a path any `antiphon.environments.datasets.load_dataset` format reads
    max_learner_steps: int
    run_dir: str | None = None
    seed: int = 0
    action_repeat: int = 1
    eval_every: int = 10_000  # learner steps between evaluations (0: no evaluator)
    eval_episodes: int = 10
    checkpoint_every_seconds: float = 120.0
    log_every_seconds: float = 10.0
    print_logs: bool = False
    policy_snapshots: bool = True
    # The units of the dataset's actions (environments.datasets.prepare_for_environment):
    # None decides from its metadata; "native" | "normalized" overrides.
    dataset_action_units: str | None = None

    step_key = "learner_steps"

    @property
    def max_steps(self) -> int:
        return self.max_learner_steps


def _make_env(experiment: OnlineExperiment | OfflineExperiment, seed: int):
    from antiphon.environments import make_environment

    return make_environment(
        experiment.environment,
        seed=seed,
        action_repeat=experiment.action_repeat,
        objectives=getattr(experiment, "objectives", None),
    )


def _env_factory(experiment: OnlineExperiment | OfflineExperiment, seed: int):
    """A picklable factory of `_make_env(experiment, seed)` (for subprocess environments)."""
    from antiphon.environments import make_environment

    return functools.partial(
        make_environment,
        experiment.environment,
        seed=seed,
        action_repeat=experiment.action_repeat,
        objectives=getattr(experiment, "objectives", None),
    )


def _make_vector_env(experiment: OnlineExperiment | OfflineExperiment, seeds: list[int]):
    from antiphon.environments.vector import make_vector_environment

    return make_vector_environment(
        [_env_factory(experiment, seed) for seed in seeds],
        backend=getattr(experiment, "env_backend", "serial"),
        num_workers=getattr(experiment, "env_workers", 0) or None,
    )


def _stream_seed(experiment: OnlineExperiment, actor_id: int, env_index: int) -> int:
    """Environment `env_index` of actor `actor_id`: the seed of stream actor_id * E + env_index,
    so with one environment per actor the seeds are those of earlier runs."""
    stream = actor_id * experiment.envs_per_actor + env_index
    return experiment.seed * 1000 + stream + 1


def _logger(
    experiment: OnlineExperiment | OfflineExperiment, label: str, step_key: str | None = None
):
    return make_logger(
        label,
        experiment.run_dir,
        time_delta=experiment.log_every_seconds,
        print_to_terminal=experiment.print_logs,
        step_key=step_key,
    )


# ------------------------------------------------------------------------------------------------
# Nodes


class CounterNode:
    """The program's counter, its step limiter and a board of latest values for progress display.

    Stops the program once the experiment's step count (`actor_steps` online, `learner_steps`
    offline) reaches its limit and, if there is an evaluator, it has evaluated at (or past) it.
    """

    def __init__(self, experiment: OnlineExperiment | OfflineExperiment, wait_for_evaluator: bool):
        self._experiment = experiment
        self._counter = Counter()
        self._status: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._wait_for_evaluator = wait_for_evaluator
        self._stop = threading.Event()
        self._checkpointer = None
        if experiment.run_dir:
            self._checkpointer = checkpointing.Checkpointer(
                checkpoint_dir(experiment.run_dir, "counter"),
                self._counter,
                time_delta_seconds=experiment.checkpoint_every_seconds,
            )
            self._checkpointer.restore()
        self._start_time = time.time()

    def increment(self, **counts: float) -> dict[str, float]:
        return self._counter.increment(**counts)

    def get_counts(self) -> dict[str, float]:
        return self._counter.get_counts()

    def report(self, key: str, value: Any) -> None:
        with self._lock:
            self._status[key] = value

    def status(self) -> dict[str, Any]:
        with self._lock:
            status = dict(self._status)
        status.update(self._counter.get_counts())
        status["elapsed_seconds"] = time.time() - self._start_time
        return status

    def done(self) -> bool:
        counts = self._counter.get_counts()
        if counts.get(self._experiment.step_key, 0) < self._experiment.max_steps:
            return False
        if not self._wait_for_evaluator:
            return True
        with self._lock:
            evaluated_at = self._status.get("evaluated_at_steps", -1)
        return evaluated_at >= self._experiment.max_steps

    def run(self) -> None:
        from antiphon import launch  # the launcher-neutral stop (Launchpad's lp.stop())

        while not self._stop.wait(0.25):
            if self._checkpointer is not None:
                self._checkpointer.save()
            if self.done():
                launch.stop()
                return

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.save(force=True)


class LearnerNode:
    """Builds the learner on the replay's dataset; checkpoints it; serves its variables."""

    def __init__(
        self,
        builder,
        env_spec: EnvironmentSpec,
        replay_address: str,
        counter,
        experiment: OnlineExperiment,
    ):
        from antiphon.environments import reward_range

        self._experiment = experiment
        self._counter = counter
        networks = builder.make_networks(env_spec)
        self._iterator = builder.make_dataset_iterator(replay_address, env_spec=env_spec)
        self._set_value_bounds(
            builder, reward_range(experiment.environment, experiment.action_repeat), "environment"
        )
        self.learner = builder.make_learner(
            networks,
            self._iterator,
            env_spec,
            jax.random.PRNGKey(experiment.seed),
            counter=Counter(counter, "learner"),
            logger=_logger(experiment, "learner", step_key="learner_steps"),
            value_bounds=self._value_bounds,
        )
        self._setup_checkpointer(builder)

    # The learner warns (once) when more than this share of a call's Q estimates lies outside
    # the reachable range, and the furthest lies more than VALUE_WARNING_EXCESS of the range's
    # width beyond it: a critic a little above a bound its true values sit on (Pendulum's upright
    # states, value ~0) is not diverging.
    VALUE_WARNING_FRACTION = 0.05
    VALUE_WARNING_EXCESS = 0.05

    def _set_value_bounds(self, builder, rewards: tuple[float, float] | None, source: str):
        """Bounds of the discounted return for the value sanity monitor (none when the reward
        range is unknown or the agent has no discount)."""
        from antiphon.agents.actor_critic import return_bounds

        self._value_bounds = None
        self._value_warned = False
        discount = getattr(builder.config, "discount", None)
        if rewards is None or discount is None:
            return
        self._value_bounds = return_bounds(rewards[0], rewards[1], discount)
        self._value_note = (
            f"[{self._value_bounds[0]:.4g}, {self._value_bounds[1]:.4g}], from the {source}'s "
            f"rewards in [{rewards[0]:.4g}, {rewards[1]:.4g}] and discount {discount}"
        )

    def _monitor(self, values: dict[str, float] | None) -> None:
        """Warns once, in plain words, when the critic's estimates leave the reachable range."""
        if not values or self._value_warned:
            return
        fraction = values.get("q_out_of_range", 0.0)
        excess = values.get("q_beyond_range", float("inf"))
        if not (fraction > self.VALUE_WARNING_FRACTION and excess > self.VALUE_WARNING_EXCESS):
            return
        self._value_warned = True
        step = values["learner_steps"] if "learner_steps" in values else self.sgd_steps()
        how_far = (
            f", up to {100 * excess:.0f} % of its width beyond it" if np.isfinite(excess) else ""
        )
        message = (
            f"warning: {100 * fraction:.0f} % of the critic's Q estimates (mean "
            f"{values.get('q_mean', float('nan')):.4g}) are outside the range any discounted "
            f"return can take here, {self._value_note}{how_far}, at learner step "
            f"{step}. The critic is over- or "
            "under-estimating (diverging, or extrapolating to actions the data does not hold); "
            "its actor follows it. Lower the critic's learning rate, or check the reward scale."
        )
        print(f"[learner] {message}", file=sys.stderr, flush=True)
        self._counter.report("value_warning", message)

    def _setup_checkpointer(self, builder) -> None:
        experiment = self._experiment
        self._stop = threading.Event()
        self._has_diverged = False
        self._checkpointer = None
        self._checkpointed_steps = -1
        if experiment.run_dir:
            self._checkpointer = checkpointing.Checkpointer(
                checkpoint_dir(experiment.run_dir, "learner"),
                self.learner,
                time_delta_seconds=experiment.checkpoint_every_seconds,
                metadata={"agent": builder.name},
            )
            self._checkpointer.restore()

    def get_variables(self, names):
        return self.learner.get_variables(names)

    def sgd_steps(self) -> int:
        return int(getattr(self.learner, "sgd_steps", 0))

    def checkpointed_steps(self) -> int:
        """A lower bound on the SGD steps in the newest learner checkpoint (-1: none yet)."""
        return self._checkpointed_steps

    def _save(self, force: bool = False) -> None:
        if self._checkpointer is None:
            return
        if self._checkpointer.save(force=force) is not None:
            # save() wrote the learner's verified state (learners.GuardedLearner.save).
            self._checkpointed_steps = int(
                getattr(self.learner, "verified_sgd_steps", self.sgd_steps())
            )

    def variables_version(self) -> int:
        return self.learner.variables_version()

    def _finished(self) -> bool:
        """True once the learner has taken all its steps (online: never; the counter decides)."""
        return False

    def run(self) -> None:
        try:
            while not self._stop.is_set():
                if self._finished():
                    self._save(force=True)
                    self._stop.wait()  # the counter stops the program after the last evaluation
                    break
                self._monitor(self.learner.step())
                self._save()
        except DivergenceError as error:
            self._diverged(error)
        except Exception:
            if not self._stop.is_set():
                raise  # a real failure; during shutdown Reverb going away ends the stream
        finally:
            if not self._has_diverged:
                try:
                    self._save(force=True)
                except DivergenceError as error:  # found by the last flush
                    self._diverged(error)

    def _diverged(self, error: DivergenceError) -> None:
        """The learner is back at its last finite state: checkpoint it, record what happened in
        run_dir/diverged.json, tell the counter (the launcher's caller reads it) and stop the
        program. Not raised: a restarted learner would diverge again from the same state."""
        from antiphon import launch

        self._has_diverged = True
        self._save(force=True)
        record = {
            "message": str(error),
            "step": error.step,
            "last_finite_step": error.last_finite_step,
            "losses": {k: repr(v) for k, v in error.losses.items()},
            "non_finite": error.groups,
            "checkpoint_step": self._checkpointed_steps,
            "time": time.time(),
        }
        if self._experiment.run_dir:
            checkpointing.write_json(diverged_file(self._experiment.run_dir), record)
        self._counter.report("diverged", record)
        launch.stop()
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        self.learner.stop()
        # Unblocks a learner waiting for a batch (the rate limiter holds samples back once the
        # actors stop inserting).
        close = getattr(self._iterator, "close", None)
        if callable(close):
            close()


class OfflineLearnerNode(LearnerNode):
    """The offline learner: loads the dataset into this process's device memory, checks it
    against the environment, trains `max_learner_steps` SGD steps, checkpoints, serves variables.
    """

    def __init__(self, builder, env_spec: EnvironmentSpec, counter, experiment: OfflineExperiment):
        from antiphon.environments.datasets import load_dataset, prepare_for_environment

        self._experiment = experiment
        self._counter = counter
        environment = _make_env(experiment, experiment.seed)
        try:
            dataset, _ = prepare_for_environment(
                load_dataset(experiment.dataset),
                environment,
                experiment.dataset_action_units,
                source=experiment.dataset,
            )
        finally:
            environment.close()
        networks = builder.make_networks(env_spec)
        self._iterator = None
        scale = 1.0
        if hasattr(builder.config, "reward_scale"):
            from antiphon.agents.offline import reward_scale

            # The learner sees c * r; its critic's values and the monitor's bounds are in the
            # same units (returns stay in the environment's).
            scale = reward_scale(
                dataset.rewards, builder.config.reward_scale, experiment.action_repeat
            )
            dataset = dataclasses.replace(dataset, rewards=dataset.rewards * np.float32(scale))
        rewards = (float(dataset.rewards.min()), float(dataset.rewards.max()))
        self._set_value_bounds(builder, rewards, "dataset")
        if scale != 1.0 and self._value_bounds is not None:
            self._value_note += f" (the dataset's rewards times {scale:.4g}, --reward-scale)"
        self.learner = builder.make_learner(
            networks,
            builder.make_device_data(dataset),
            env_spec,
            jax.random.PRNGKey(experiment.seed),
            counter=Counter(counter, "learner"),
            logger=_logger(experiment, "learner", step_key="learner_steps"),
            value_bounds=self._value_bounds,
        )
        self._setup_checkpointer(builder)

    def _finished(self) -> bool:
        return self.sgd_steps() >= self._experiment.max_learner_steps


class ActorNode:
    """One actor: its own environment(s), adder(s) into replay, parameters from the learner."""

    # In a process of its own (Ray), JAX dispatches this node's policy calls synchronously.
    cpu_sync_dispatch = True

    def __init__(
        self,
        builder,
        replay_address: str,
        learner,
        counter,
        experiment: OnlineExperiment,
        actor_id: int,
    ):
        import reverb

        self._experiment = experiment
        self._counter = counter
        envs = experiment.envs_per_actor
        seeds = [_stream_seed(experiment, actor_id, e) for e in range(envs)]
        self._vector = envs > 1
        self._recorders = []
        if experiment.record_episodes and experiment.run_dir:
            from antiphon.environments.datasets.recorder import EpisodeRecorder, episodes_dir

            names = (
                [f"actor_{actor_id}"]
                if envs == 1
                else [f"actor_{actor_id}_env_{e}" for e in range(envs)]
            )
            self._recorders = [
                EpisodeRecorder(os.path.join(episodes_dir(experiment.run_dir), name))
                for name in names
            ]
        logger = _logger(experiment, f"actor_{actor_id}", step_key="actor_steps")
        if not self._vector:
            environment = _make_env(experiment, seeds[0])
            env_spec = make_environment_spec(environment)
            networks = builder.make_networks(env_spec)
            policy = builder.make_actor_policy(networks, actor_id, experiment.num_actors)
            adder = builder.make_adder(reverb.Client(replay_address))
            self._adders = [adder]
            actor = builder.make_actor(
                policy, jax.random.PRNGKey(seeds[0]), learner, adder=adder, evaluation=False
            )
            self._loop = EnvironmentLoop(
                environment,
                actor,
                counter=Counter(counter, "actor"),
                logger=logger,
                label=f"actor_{actor_id}",
                observers=self._recorders,
            )
        else:
            self._environments = _make_vector_env(experiment, seeds)
            env_spec = make_environment_spec(self._environments)
            networks = builder.make_networks(env_spec)
            policy = builder.make_vector_actor_policy(
                networks,
                [actor_id * envs + e for e in range(envs)],
                experiment.num_actors * envs,
            )
            client = reverb.Client(replay_address)
            self._adders = [builder.make_adder(client) for _ in range(envs)]
            actor = builder.make_vector_actor(
                policy,
                [jax.random.PRNGKey(seed) for seed in seeds],
                learner,
                adders=self._adders,
                evaluation=False,
            )
            self._loop = VectorEnvironmentLoop(
                self._environments,
                actor,
                counter=Counter(counter, "actor"),
                logger=logger,
                label=f"actor_{actor_id}",
                observers=[[r] for r in self._recorders] if self._recorders else (),
            )
        self._stop = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop.is_set():
                if self._vector:
                    results = self._loop.step()
                else:
                    results = [self._loop.run_episode()]
                for result in results:
                    self._counter.report("actor_return", float(result["episode_return"]))
                    if self._recorders:
                        index = result.get("environment_index", 0)
                        self._recorders[index].commit(int(result.get("steps", 0)))
                    if result.get("steps", 0) >= self._experiment.max_actor_steps:
                        return
        finally:
            for recorder in self._recorders:
                recorder.flush()
            if self._vector:
                self._environments.close()

    def stop(self) -> None:
        self._stop.set()
        for adder in self._adders:
            interrupt = getattr(adder, "interrupt", None)
            if callable(interrupt):  # a writer waiting for a lost replay gives up now
                interrupt()


class EvaluatorNode:
    """Evaluates the greedy policy every `eval_every` steps of the experiment's step count
    (actor steps online, learner steps offline), and at the start and end."""

    cpu_sync_dispatch = True

    def __init__(self, builder, learner, counter, experiment: OnlineExperiment | OfflineExperiment):
        seed = experiment.seed * 1000 + 999
        self._experiment = experiment
        self._environment = _make_env(experiment, seed)
        env_spec = make_environment_spec(self._environment)
        networks = builder.make_networks(env_spec)
        policy = builder.make_policy(networks, evaluation=True)
        self._actor = builder.make_actor(policy, jax.random.PRNGKey(seed), learner, evaluation=True)
        self._counter = counter
        self._logger = make_logger(
            "evaluator",
            experiment.run_dir,
            time_delta=0.0,
            print_to_terminal=experiment.print_logs,
            step_key=experiment.step_key,
        )
        # Episodes are summarised by evaluate(), not logged one by one.
        self._loop = EnvironmentLoop(
            self._environment,
            self._actor,
            should_update=False,
            logger=NoOpLogger(),
            label="evaluator",
        )
        # With several environments per actor, the evaluator runs its episodes as many at once.
        envs = min(getattr(experiment, "envs_per_actor", 1), experiment.eval_episodes)
        self._vector_loop = None
        if envs > 1:
            seeds = [seed] + [10_000_000 + experiment.seed * 1000 + e for e in range(1, envs)]
            self._vector_environment = _make_vector_env(experiment, seeds)
            vector_actor = builder.make_vector_actor(
                vectorise_policy(policy),
                [jax.random.PRNGKey(s) for s in seeds],
                learner,
                evaluation=True,
            )
            self._actor = vector_actor
            self._vector_loop = VectorEnvironmentLoop(
                self._vector_environment,
                vector_actor,
                should_update=False,
                logger=NoOpLogger(),
                label="evaluator",
            )
        self._stop = threading.Event()
        self._start = time.time()

    def _episodes(self):
        if self._vector_loop is not None:
            return self._vector_loop.run_episodes(self._experiment.eval_episodes, self._stop)
        return (
            self._loop.run_episode()
            for _ in range(self._experiment.eval_episodes)
            if not self._stop.is_set()
        )

    def evaluate(self) -> dict[str, float]:
        counts = self._counter.get_counts()
        self._actor.update(wait=True)
        returns, per_objective, successes = [], {}, []
        for episode in self._episodes():
            returns.append(float(episode["episode_return"]))
            if "episode_success" in episode:
                successes.append(float(episode["episode_success"]))
            for key, value in episode.items():
                if key.startswith("episode_return/"):
                    per_objective.setdefault(key.split("/", 1)[1], []).append(float(value))
        # A non-finite episode return (NaN rewards or observations from the environment) makes
        # the whole evaluation non-finite: reported as such, never averaged into the curve.
        finite = bool(np.all(np.isfinite(returns)))
        result = {
            "actor_steps": counts.get("actor_steps", 0),
            "learner_steps": counts.get("learner_steps", 0),
            "eval_return_mean": float(np.mean(returns)) if returns and finite else float("nan"),
            "eval_return_std": float(np.std(returns)) if returns and finite else float("nan"),
            "eval_episodes": len(returns),
            "eval_nonfinite_episodes": int(np.sum(~np.isfinite(returns))) if returns else 0,
            # With several objectives: each one's mean return (the headline is the first's).
            **{f"eval_return_mean/{name}": float(np.mean(v)) for name, v in per_objective.items()},
            # Goal-reaching environments (MiniGrid, BabyAI): the fraction of episodes that did.
            **({"eval_success_rate": float(np.mean(successes))} if successes else {}),
            "wall_seconds": time.time() - self._start,
        }
        if returns:
            self._logger.write(result)
            if finite:
                self._counter.report("eval_return", result["eval_return_mean"])
                self._save_snapshot(result)
            else:
                self._counter.report("eval_nonfinite", result["eval_nonfinite_episodes"])
        return result

    def _save_snapshot(self, result: dict[str, float]) -> None:
        """The policy just evaluated, with its return: `snapshots/policy-<steps>.*`."""
        run_dir = self._experiment.run_dir
        params = getattr(self._actor, "params", None)
        if not (run_dir and self._experiment.policy_snapshots) or params is None:
            return
        name = f"policy-{int(result[self._experiment.step_key]):010d}"
        directory = snapshots_dir(run_dir)
        os.makedirs(directory, exist_ok=True)
        checkpointing.save_pytree(os.path.join(directory, name + ".msgpack"), params)
        checkpointing.write_json(os.path.join(directory, name + ".json"), result)

    def random_policy_baseline(self) -> None:
        """Once per run_dir: the uniform random policy's return, the floor of every curve."""
        run_dir = self._experiment.run_dir
        path = os.path.join(run_dir, "random_policy.json") if run_dir else None
        if path is None or os.path.exists(path):
            return
        actor = UniformRandomActor(self._environment.action_spec(), seed=self._experiment.seed)
        loop = EnvironmentLoop(
            self._environment, actor, should_update=False, logger=NoOpLogger(), label="random"
        )
        returns = []
        for _ in range(self._experiment.eval_episodes):
            if self._stop.is_set():
                return
            returns.append(float(loop.run_episode()["episode_return"]))
        checkpointing.write_json(
            path,
            {
                "return_mean": float(np.mean(returns)),
                "return_std": float(np.std(returns)),
                "episodes": len(returns),
            },
        )

    def run(self) -> None:
        every = self._experiment.eval_every
        limit = self._experiment.max_steps
        key = self._experiment.step_key
        next_eval = 0
        self.random_policy_baseline()
        while not self._stop.is_set():
            steps = self._counter.get_counts().get(key, 0)
            if steps >= next_eval or steps >= limit:
                result = self.evaluate()
                if result[key] >= limit:
                    self._counter.report("evaluated_at_steps", result[key])
                    return
                next_eval = (int(result[key]) // every + 1) * every
            else:
                self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._logger.close()
        if self._vector_loop is not None:
            self._vector_environment.close()


# ------------------------------------------------------------------------------------------------
# Programs


def _check_spaces(builder, env_spec: EnvironmentSpec, env_name: str) -> None:
    if hasattr(builder, "observation_kinds"):  # a user's own builder may declare nothing
        from antiphon.agents.registry import check_environment

        check_environment(type(builder), env_spec, env_name)


def build_online_program(
    builder, experiment: OnlineExperiment, env_spec: EnvironmentSpec
) -> lp.Program:
    """replay + counter + learner + `num_actors` actors + evaluator, on any launcher.

    Raises compatibility.IncompatibleEnvironmentError (one line) if the agent cannot act in
    `env_spec`'s spaces."""
    _check_spaces(builder, env_spec, experiment.environment)
    program = lp.Program(name=f"{builder.name}-online")
    with program.group("replay"):
        replay = program.add_node(
            lp.ReverbNode(
                lambda: builder.make_replay_tables(env_spec),
                checkpoint_dir=(
                    replay_checkpoint_dir(experiment.run_dir)
                    if experiment.run_dir and experiment.replay_checkpoint
                    else None
                ),
                port_file=replay_port_file(experiment.run_dir) if experiment.run_dir else None,
                # Periodic, so a replay node that dies comes back with (almost) all its items.
                checkpoint_every_seconds=experiment.checkpoint_every_seconds,
            )
        )
    with program.group("counter"):
        counter = program.add_node(
            lp.PyClassNode(CounterNode, experiment, wait_for_evaluator=experiment.eval_every > 0)
        )
    with program.group("learner"):
        learner = program.add_node(
            lp.PyClassNode(LearnerNode, builder, env_spec, replay, counter, experiment)
        )
    with program.group("actor"):
        for actor_id in range(experiment.num_actors):
            program.add_node(
                lp.PyClassNode(ActorNode, builder, replay, learner, counter, experiment, actor_id)
            )
    if experiment.eval_every > 0:
        with program.group("evaluator"):
            program.add_node(lp.PyClassNode(EvaluatorNode, builder, learner, counter, experiment))
    return program


def build_offline_program(
    builder, experiment: OfflineExperiment, env_spec: EnvironmentSpec
) -> lp.Program:
    """counter + learner (dataset in its device memory) + evaluator, on any launcher."""
    _check_spaces(builder, env_spec, experiment.environment)
    program = lp.Program(name=f"{builder.name}-offline")
    with program.group("counter"):
        counter = program.add_node(
            lp.PyClassNode(CounterNode, experiment, wait_for_evaluator=experiment.eval_every > 0)
        )
    with program.group("learner"):
        learner = program.add_node(
            lp.PyClassNode(OfflineLearnerNode, builder, env_spec, counter, experiment)
        )
    if experiment.eval_every > 0:
        with program.group("evaluator"):
            program.add_node(lp.PyClassNode(EvaluatorNode, builder, learner, counter, experiment))
    return program
