"""The D4PG data path end to end: real environment -> actor's adder -> Reverb -> the learner's
dataset iterator. Every sampled transition must match an independent recomputation from the
recorded episode (observation, action, n-step return, bootstrap discount, next observation)."""

import jax
import numpy as np
import reverb

from antiphon.agents.d4pg.builder import REPLAY_TABLE, D4PGBuilder
from antiphon.agents.d4pg.config import D4PGConfig
from antiphon.core.types import make_environment_spec
from antiphon.environments import make_environment
from antiphon.replay import tables
from antiphon.replay.adders import NStepTransitionAdder


def test_sampled_transitions_match_the_recorded_episode():
    env = make_environment("dmc:cartpole-swingup", seed=3, action_repeat=4)  # 250-step episodes
    spec = make_environment_spec(env)
    config = D4PGConfig(n_step=3, discount=0.9, batch_size=32, sgd_steps_per_call=2)
    builder = D4PGBuilder(config)
    # The builder's table without its rate limiter (which would hold back a lone writer).
    table = tables.uniform_table(
        REPLAY_TABLE,
        10_000,
        NStepTransitionAdder.signature(spec),
        samples_per_insert=None,
        min_replay_size=1,
    )
    server = tables.start_server([table])
    try:
        adder = builder.make_adder(reverb.Client(f"localhost:{server.port}"))
        rng = np.random.default_rng(0)
        timestep = env.reset()
        adder.add_first(timestep)
        observations, actions, rewards = [timestep.observation], [], []
        while not timestep.last():
            action = rng.uniform(-1, 1, spec.actions.shape).astype(np.float32)
            timestep = env.step(action)
            adder.add(action, timestep)
            observations.append(timestep.observation)
            actions.append(action)
            rewards.append(float(timestep.reward))
        T = len(actions)
        assert T == 250

        iterator = builder.make_dataset_iterator(f"localhost:{server.port}")
        batch = jax.device_get(next(iterator))
        iterator.close()
        assert batch.observation.shape == (2, 32) + spec.observations.shape
        index = {obs.tobytes(): t for t, obs in enumerate(observations[:-1])}
        n, gamma = config.n_step, config.discount
        for k in range(2):
            for b in range(32):
                t = index[np.asarray(batch.observation[k, b]).tobytes()]
                steps = min(n, T - t)  # shorter transitions at the episode's (time-limit) end
                expected_return = sum(gamma**j * rewards[t + j] for j in range(steps))
                np.testing.assert_array_equal(batch.action[k, b], actions[t])
                np.testing.assert_allclose(batch.reward[k, b], expected_return, rtol=1e-5)
                # time limit (discount 1): always bootstrap, with gamma^steps
                np.testing.assert_allclose(batch.discount[k, b], gamma**steps, rtol=1e-6)
                np.testing.assert_array_equal(batch.next_observation[k, b], observations[t + steps])
        assert server.localhost_client().server_info()[REPLAY_TABLE].current_size == T
    finally:
        server.stop()
