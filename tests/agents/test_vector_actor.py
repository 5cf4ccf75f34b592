"""VectorActor on real environments and real Reverb servers: E environments acted by one
batched policy call per step write, environment by environment, the items E GenericActors with
the same keys and seeds write (D4PG's n-step transitions, R2D2's sequences with their stored
LSTM state), across episode ends at different steps and with idle environments; R2D2's vector
policy gives each stream its own epsilon from the ladder; VectorEnvironmentLoop.run_episodes(n)
runs exactly n episodes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import reverb
import tree

from antiphon.agents.actors import VectorActor, vectorise_policy
from antiphon.agents.builders import TRANSITION_TABLE
from antiphon.agents.d4pg.builder import D4PGBuilder
from antiphon.agents.d4pg.config import D4PGConfig
from antiphon.agents.r2d2 import acting, learning
from antiphon.agents.r2d2 import networks as r2d2_networks
from antiphon.agents.r2d2.builder import AGENT_TABLE, R2D2Builder
from antiphon.agents.r2d2.config import R2D2Config
from antiphon.core.counting import Counter
from antiphon.core.logging import NoOpLogger
from antiphon.core.loop import EnvironmentLoop, VectorEnvironmentLoop
from antiphon.core.types import make_environment_spec, zeros_like_spec
from antiphon.core.variables import VariableClient
from antiphon.environments import make_environment
from antiphon.environments.vector import SerialVectorEnvironment
from antiphon.environments.wrappers import EnvironmentWrapper
from antiphon.replay import adders as adders_lib
from antiphon.replay import tables

SEEDS = (5, 17, 29)
EPISODES_PER_ENV = 2


class FixedParams:
    """A variable source serving one parameter set (the learner's role, without a learner)."""

    def __init__(self, params):
        self._params = params

    def get_variables(self, names):
        return [self._params for _ in names]


class Replay:
    """One Reverb server per environment, each with a FIFO queue table `name`, so every
    environment's items come back separately and in the order they were written."""

    def __init__(self, name: str, signature, count: int):
        self.name = name
        self.servers = [
            tables.start_server([tables.queue_table(name, 10_000, signature)]) for _ in range(count)
        ]

    def client(self, i: int) -> reverb.Client:
        return reverb.Client(f"localhost:{self.servers[i].port}")

    def drain(self, i: int) -> list:
        """All items of server i, oldest first (a queue: reading them removes them)."""
        client = self.client(i)
        size = client.server_info()[self.name].current_size
        if not size:
            return []
        samples = client.sample(
            self.name, size, emit_timesteps=False, unpack_as_table_signature=True
        )
        return [s.data for s in samples]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def run_vector(loop: VectorEnvironmentLoop, episodes_per_env: int) -> list[list[dict]]:
    """Steps the loop until every environment ran `episodes_per_env` episodes (one that is
    done waits idle while the others finish); each environment's results in order."""
    done = [[] for _ in range(loop.num_envs)]
    while any(len(d) < episodes_per_env for d in done):
        for result in loop.step([len(d) < episodes_per_env for d in done]):
            done[result["environment_index"]].append(result)
    return done


def assert_same_items(got: list, want: list, where: str) -> int:
    """Equal item by item (structure, dtypes, shapes; values within 1e-5). Returns the count."""
    assert len(got) == len(want), (where, len(got), len(want))
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        g, w = tuple(g), tuple(w)
        tree.assert_same_structure(g, w)
        for path, gv, wv in zip(
            [p for p, _ in tree.flatten_with_path(w)], tree.flatten(g), tree.flatten(w), strict=True
        ):
            gv, wv = np.asarray(gv), np.asarray(wv)
            assert gv.dtype == wv.dtype and gv.shape == wv.shape, (where, k, path)
            np.testing.assert_allclose(gv, wv, atol=1e-5, rtol=0, err_msg=f"{where} {k} {path}")
    return len(want)


def compare_with_generic_actors(builder, networks, params, make_env, replay, keys):
    """E environments through one VectorActor vs E GenericActors (one EnvironmentLoop each)
    with the same seeds and keys: each environment's items and episode results must agree.
    Returns the vector side's results and items, per environment."""
    num_envs = len(keys)
    source = FixedParams(params)

    environment = SerialVectorEnvironment([make_env(i) for i in range(num_envs)])
    vector_adders = [builder.make_adder(replay.client(i)) for i in range(num_envs)]
    actor = builder.make_vector_actor(
        builder.make_vector_actor_policy(networks, list(range(num_envs)), num_envs),
        keys,
        source,
        adders=vector_adders,
        evaluation=False,
    )
    loop = VectorEnvironmentLoop(environment, actor, logger=NoOpLogger())
    vector_results = run_vector(loop, EPISODES_PER_ENV)
    vector_items = [replay.drain(i) for i in range(num_envs)]
    for adder in vector_adders:
        adder.close()

    for i in range(num_envs):
        adder = builder.make_adder(replay.client(i))
        generic = builder.make_actor(
            builder.make_actor_policy(networks, i, num_envs),
            keys[i],
            source,
            adder=adder,
            evaluation=False,
        )
        single = EnvironmentLoop(make_env(i), generic, logger=NoOpLogger())
        results = [single.run_episode() for _ in range(EPISODES_PER_ENV)]
        adder.close()
        for got, want in zip(vector_results[i], results, strict=True):
            assert got["episode_length"] == want["episode_length"], i
            np.testing.assert_allclose(got["episode_return"], want["episode_return"], atol=1e-5)
        assert_same_items(vector_items[i], replay.drain(i), f"environment {i}")
    return vector_results, vector_items


# ------------------------------------------------------------------------------------------------
# D4PG: n-step transitions.

CARTPOLE = "dmc:cartpole-swingup"
TIME_LIMITS = (0.06, 0.08, 0.11)  # 6, 8 and 11 control steps: episodes end at different steps


def test_d4pg_vector_actor_writes_the_generic_actors_transitions():
    builder = D4PGBuilder(
        D4PGConfig(
            policy_layer_sizes=(16, 16),
            critic_layer_sizes=(16, 16),
            n_step=3,
            discount=0.9,
            sigma=0.3,
        )
    )

    def make_env(i):
        return make_environment(CARTPOLE, seed=SEEDS[i], task_kwargs={"time_limit": TIME_LIMITS[i]})

    spec = make_environment_spec(make_env(0))
    networks = builder.make_networks(spec)
    params = networks.policy_init(
        jax.random.PRNGKey(0), zeros_like_spec(spec.observations, batch_shape=(1,))
    )
    replay = Replay(TRANSITION_TABLE, adders_lib.NStepTransitionAdder.signature(spec), 3)
    try:
        results, items = compare_with_generic_actors(
            builder, networks, params, make_env, replay, [jax.random.PRNGKey(s) for s in SEEDS]
        )
    finally:
        replay.stop()
    lengths = [[r["episode_length"] for r in per_env] for per_env in results]
    assert lengths == [[6, 6], [8, 8], [11, 11]]
    assert [len(per_env) for per_env in items] == [12, 16, 22]  # one transition per step
    # Each episode's last n - 1 transitions are shorter and the truncation keeps discount > 0.
    discounts = np.array([t.discount for t in items[0]])
    np.testing.assert_allclose(discounts[[3, 4, 5]], [0.729, 0.81, 0.9], rtol=1e-6)
    # Exploration noise is drawn (actions are not the deterministic policy's): the keys matter,
    # and the environments' streams differ.
    first = [np.asarray(per_env[0].action) for per_env in items]
    greedy = networks.policy_apply(params, np.asarray(items[0][0].observation)[None])[0]
    assert not np.allclose(first[0], greedy, atol=1e-3)
    assert not np.allclose(first[0], first[1])


# ------------------------------------------------------------------------------------------------
# R2D2: sequences with the stored LSTM state, and the epsilon ladder.

MEMORY = "minigrid:MiniGrid-MemoryS7-v0"
MAX_STEPS = (9, 13, 6)


def r2d2_builder(**overrides) -> R2D2Builder:
    values = dict(
        burn_in_length=2,
        trace_length=4,
        sequence_period=2,
        lstm_size=16,
        torso_size=16,
        n_step=2,
        min_replay_size=1,
        max_replay_size=1000,
    )
    values.update(overrides)
    return R2D2Builder(R2D2Config(**values))


def r2d2_setup(builder, env):
    spec = make_environment_spec(env)
    networks = builder.make_networks(spec)
    observation = zeros_like_spec(spec.observations, batch_shape=(1,))
    params = networks.init(jax.random.PRNGKey(1), observation, networks.initial_state(1))
    return spec, networks, params


def test_r2d2_vector_actor_writes_the_generic_actors_sequences():
    builder = r2d2_builder()

    def make_env(i):
        return make_environment(MEMORY, seed=SEEDS[i], max_steps=MAX_STEPS[i])

    spec, networks, params = r2d2_setup(builder, make_env(0))
    replay = Replay(AGENT_TABLE, builder.signature(spec), 3)
    try:
        results, items = compare_with_generic_actors(
            builder, networks, params, make_env, replay, [jax.random.PRNGKey(s) for s in SEEDS]
        )
    finally:
        replay.stop()
    # Every episode runs to its environment's time limit: they end at different steps.
    lengths = [[r["episode_length"] for r in per_env] for per_env in results]
    assert lengths == [[9, 9], [13, 13], [6, 6]]
    # Sequences of 7 steps every 2 steps, the last one of each episode reaching its final step.
    assert [len(per_env) for per_env in items] == [6, 10, 2]
    length = builder.config.sequence_length
    flat = [item for per_env in items for item in per_env]
    assert all(np.asarray(s.action).shape == (length,) for s in flat)
    # Sequences padded at episode ends, sequences from a second episode starting at the
    # zero state, and sequences starting mid-episode from the state the actor had there.
    valid = [np.asarray(s.extras["valid"]) for s in flat]
    assert any(v[-1] == 0 for v in valid) and any(np.all(v[:-1] == 1) for v in valid)
    starts = [s for per_env in items for s in per_env if s.start_of_episode[0]]
    assert len(starts) == 6
    assert all(not np.any(s.extras["hidden"][0]) for s in starts)
    assert any(not s.start_of_episode[0] and np.any(s.extras["hidden"][0]) for s in flat)


def test_environments_left_out_of_a_step_keep_their_key_and_state():
    """select_actions for a subset (an evaluator with fewer episodes left than environments)
    advances only those environments' keys and LSTM states: each environment still acts as a
    GenericActor that saw only its own steps."""
    builder = r2d2_builder(epsilon_base=0.9, epsilon_exponent=1.0)  # explores: keys matter
    envs = [make_environment(MEMORY, seed=s) for s in SEEDS]
    spec, networks, params = r2d2_setup(builder, envs[0])
    keys = [jax.random.PRNGKey(s) for s in SEEDS]
    source = FixedParams(params)
    vector = builder.make_vector_actor(
        builder.make_vector_actor_policy(networks, [0, 1, 2], 3), keys, source
    )
    generics = [
        builder.make_actor(builder.make_actor_policy(networks, i, 3), keys[i], source)
        for i in range(3)
    ]
    timesteps = [env.reset() for env in envs]
    for i, timestep in enumerate(timesteps):
        vector.observe_first(i, timestep)
        generics[i].observe_first(timestep)
    schedule = [[0, 1, 2], [0, 2], [1], [2], [0, 1, 2], [1, 2], [0], [0, 1, 2]] * 2
    actions_seen = {i: [] for i in range(3)}
    for indices in schedule:
        actions = vector.select_actions(indices, [timesteps[i].observation for i in indices])
        assert actions.shape == (len(indices),)
        for i, action in zip(indices, actions, strict=True):
            want = generics[i].select_action(timesteps[i].observation)
            assert int(action) == int(want), (indices, i)
            actions_seen[i].append(int(action))
            timesteps[i] = envs[i].step(action)
            assert not timesteps[i].last()  # MemoryS7 episodes are longer than this
            vector.observe(i, action, timesteps[i])
            generics[i].observe(action, timesteps[i])
        for i in range(3):
            np.testing.assert_allclose(
                vector._states.hidden[i], np.asarray(generics[i]._state.hidden), atol=1e-5
            )
    assert len(set(map(tuple, actions_seen.values()))) == 3


def _memory_observations(count: int):
    observations = [make_environment(MEMORY, seed=s).reset().observation for s in range(count)]
    return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *observations)


def _zero_states(lstm_size: int, count: int):
    return jax.tree_util.tree_map(
        lambda x: np.stack([np.asarray(x)] * count), r2d2_networks.zero_state(lstm_size)
    )


def test_r2d2_vector_policy_gives_each_stream_its_ladder_epsilon():
    # Large epsilons, so neighbouring rungs of the ladder act differently on many keys.
    builder = r2d2_builder(epsilon_base=0.9, epsilon_exponent=7.0)
    spec, networks, params = r2d2_setup(builder, make_environment(MEMORY, seed=0))
    num_actions = spec.actions.num_values
    observations = _memory_observations(3)
    states = _zero_states(builder.config.lstm_size, 3)
    keys = jax.random.split(jax.random.PRNGKey(3), 2000 * 3).reshape(2000, 3, 2)

    # Actor 1 of 2 with three environments: streams 3, 4, 5 of 6.
    policy = builder.make_vector_actor_policy(networks, [3, 4, 5], 6)
    over_keys = jax.jit(jax.vmap(policy, in_axes=(None, None, None, 0)))
    actions, new_states = over_keys(params, observations, states, keys)
    actions = np.asarray(actions)
    assert actions.shape == (2000, 3)
    ladder = learning.epsilon_ladder(6, 0.9, 7.0)

    # acting.make_policy at one epsilon (traced, so one compilation serves every rung), over
    # the same keys as stream i.
    @jax.jit
    def single(epsilon, observation, state, stream_keys):
        def one(key):
            return acting.make_policy(networks, epsilon)(params, observation, state, key)

        return jax.vmap(one)(stream_keys)

    q, _ = networks.step(params, observations, jax.tree_util.tree_map(lambda x: x[:, 0], states))
    greedy = np.argmax(np.asarray(q), axis=-1)
    for i in range(3):
        observation = jax.tree_util.tree_map(lambda x, i=i: x[i], observations)
        state = jax.tree_util.tree_map(lambda x, i=i: x[i], states)
        want, want_state = single(ladder[3 + i], observation, state, keys[:, i])
        np.testing.assert_array_equal(actions[:, i], np.asarray(want))
        np.testing.assert_allclose(
            new_states.hidden[:, i], np.asarray(want_state.hidden), atol=1e-5
        )
        # ... and not another rung's: the comparison tells the epsilons apart.
        for j in {0, 1, 2, 3, 4, 5} - {3 + i}:
            other, _ = single(ladder[j], observation, state, keys[:, i])
            assert np.sum(actions[:, i] != np.asarray(other)) > 20, (i, j)
        # The rate of non-greedy actions is epsilon (A - 1) / A.
        rate = np.mean(actions[:, i] != greedy[i])
        expected = ladder[3 + i] * (num_actions - 1) / num_actions
        assert abs(rate - expected) < 4 * np.sqrt(expected * (1 - expected) / 2000), (i, rate)


def test_make_vector_policy_explores_only_where_epsilon_says():
    builder = r2d2_builder()
    spec, networks, params = r2d2_setup(builder, make_environment(MEMORY, seed=0))
    num_actions = spec.actions.num_values
    observations = _memory_observations(3)
    states = _zero_states(builder.config.lstm_size, 3)
    q, _ = networks.step(params, observations, jax.tree_util.tree_map(lambda x: x[:, 0], states))
    greedy = np.argmax(np.asarray(q), axis=-1)

    policy = acting.make_vector_policy(networks, [0.0, 1.0, 0.0])
    keys = jax.random.split(jax.random.PRNGKey(4), 3000 * 3).reshape(3000, 3, 2)
    actions, _ = jax.jit(jax.vmap(policy, in_axes=(None, None, None, 0)))(
        params, observations, states, keys
    )
    actions = np.asarray(actions)
    assert np.all(actions[:, 0] == greedy[0]) and np.all(actions[:, 2] == greedy[2])
    counts = np.bincount(actions[:, 1], minlength=num_actions)
    assert counts.shape == (num_actions,)
    expected = 3000 / num_actions
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected)), counts


# ------------------------------------------------------------------------------------------------
# VectorEnvironmentLoop.run_episodes: exactly n episodes.


class CountingWrapper(EnvironmentWrapper):
    def __init__(self, environment):
        super().__init__(environment)
        self.resets = 0
        self.steps = 0

    def reset(self):
        self.resets += 1
        return self._environment.reset()

    def step(self, action):
        self.steps += 1
        return self._environment.step(action)


def _turn_left(params, observation, state, key):
    del params, observation, key
    return jnp.zeros((), jnp.int32), state


def test_run_episodes_runs_exactly_n_episodes():
    # Always turning left in an empty room never reaches the goal: every episode runs to its
    # environment's time limit, so the four environments end at different steps.
    limits = (3, 5, 7, 4)
    environments = [
        CountingWrapper(make_environment("minigrid:MiniGrid-Empty-5x5-v0", seed=i, max_steps=m))
        for i, m in enumerate(limits)
    ]
    client = VariableClient(FixedParams({"unused": np.zeros((), np.float32)}), "policy")
    client.update(wait=True)
    actor = VectorActor(
        vectorise_policy(_turn_left), [jax.random.PRNGKey(i) for i in range(4)], client
    )
    counter = Counter()
    loop = VectorEnvironmentLoop(
        SerialVectorEnvironment(environments), actor, counter=counter, logger=NoOpLogger()
    )

    results = loop.run_episodes(6)
    assert len(results) == 6
    # Episodes end at t = 3 (env 0), 4 (env 3), 5 (env 1), 6 (env 0 again), 7 (env 2),
    # 8 (env 3 again); env 1 is not restarted after its episode: six were started by then.
    assert [r["environment_index"] for r in results] == [0, 3, 1, 0, 2, 3]
    assert [r["episode_length"] for r in results] == [
        limits[r["environment_index"]] for r in results
    ]
    assert all(r["episode_success"] == 0.0 for r in results)
    assert [e.resets for e in environments] == [2, 1, 1, 2]
    assert [e.steps for e in environments] == [6, 5, 7, 8]  # no step beyond the sixth episode
    assert counter.get_counts()["episodes"] == 6
    assert counter.get_counts()["steps"] == sum(r["episode_length"] for r in results)

    # A second call starts afresh and again stops at its count.
    results = loop.run_episodes(2)
    assert [r["environment_index"] for r in results] == [0, 1]
    assert [e.resets for e in environments] == [3, 2, 1, 2]
    assert counter.get_counts()["episodes"] == 8
