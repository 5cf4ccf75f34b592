"""Regenerates the Minari fixtures next to this file with the real Minari library.

Not part of the test suite (and not importable from antiphon's environment: Minari 0.5 needs
numpy>=2). Run it in a throwaway virtual environment:

    python3.11 -m venv /tmp/minari-venv
    /tmp/minari-venv/bin/pip install "minari[hdf5,create]==0.5.4" pillow
    /tmp/minari-venv/bin/python tests/environments/data/make_minari_fixtures.py

It writes `minari-tiny/` (flat Box observations) and `minari-dict/` (Dict observations), each a
Minari dataset directory (`<dataset>/data/main_data.hdf5` + `<dataset>/data/metadata.json`) with
four episodes: terminals and time-limit truncations mixed.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import gymnasium as gym
import minari
import numpy as np
from gymnasium import spaces

HERE = os.path.dirname(os.path.abspath(__file__))


class TinyEnv(gym.Env):
    """A 3-d position pushed by a 2-d action; terminal once x leaves [-1, 1]."""

    def __init__(self, dict_observations: bool = False):
        self.dict_observations = dict_observations
        box = spaces.Box(-10.0, 10.0, (3,), np.float32)
        if dict_observations:
            self.observation_space = spaces.Dict(
                {"position": box, "goal": spaces.Box(-10.0, 10.0, (2,), np.float32)}
            )
        else:
            self.observation_space = box
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._state = np.zeros(3, np.float32)

    def _obs(self):
        if self.dict_observations:
            return {"position": self._state.copy(), "goal": self._state[:2] * 0.5 + 1.0}
        return self._state.copy()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._state = self.np_random.uniform(-0.5, 0.5, 3).astype(np.float32)
        return self._obs(), {}

    def step(self, action):
        action = np.asarray(action, np.float32)
        self._state = self._state + np.array([action[0], action[1], 0.1], np.float32) * 0.5
        self._state = self._state.astype(np.float32)
        reward = float(1.0 - abs(self._state[0]))
        terminated = bool(abs(self._state[0]) > 1.0)
        return self._obs(), reward, terminated, False, {}


def make(name: str, dict_observations: bool, actions: list[list[float]]) -> None:
    env_id = f"AntiphonTiny{'Dict' if dict_observations else ''}-v0"
    gym.register(
        env_id,
        entry_point=f"{__name__}:TinyEnv",
        kwargs={"dict_observations": dict_observations},
        max_episode_steps=5,
    )
    root = tempfile.mkdtemp()
    os.environ["MINARI_DATASETS_PATH"] = root
    env = minari.DataCollector(gym.make(env_id))
    rng = np.random.default_rng(0)
    for episode in range(4):
        env.reset(seed=episode)
        for _ in range(5):
            action = np.asarray(actions[episode], np.float32) + rng.uniform(-0.05, 0.05, 2)
            _, _, terminated, truncated, _ = env.step(action.astype(np.float32))
            if terminated or truncated:
                break
    dataset_id = f"antiphon/{name}-v0"
    env.create_dataset(
        dataset_id=dataset_id,
        algorithm_name="scripted",
        ref_min_score=0.0,
        ref_max_score=5.0,
        description="antiphon test fixture",
    )
    env.close()
    source = os.path.join(root, "antiphon", f"{name}-v0")
    target = os.path.join(HERE, name)
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    shutil.rmtree(root)


if __name__ == "__main__":
    # Episode 0 and 2 push x out of [-1, 1] (terminal); 1 and 3 stay inside (time-limit cut).
    pushes = [[0.9, 0.0], [0.0, 0.3], [-0.9, 0.1], [0.1, -0.2]]
    make("minari-tiny", False, pushes)
    make("minari-dict", True, pushes)
    for name in ("minari-tiny", "minari-dict"):
        dataset = minari.MinariDataset(os.path.join(HERE, name, "data"))
        for episode in dataset.iterate_episodes():
            print(
                name,
                episode.id,
                len(episode.rewards),
                bool(episode.terminations[-1]),
                bool(episode.truncations[-1]),
            )
