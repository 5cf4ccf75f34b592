"""Demonstrations from minigrid's BabyAI bot (`antiphon collect --policy babyai-bot`): the flat
observation layout datasets store and its exact inverse, a short bot collection that loads back
and replays step for step from the same seed, random MiniGrid data, the bot giving up, and the
one-line refusal of the bot outside BabyAI."""

from __future__ import annotations

import numpy as np
import pytest

from antiphon.environments import minigrid, registry
from antiphon.environments.datasets import load_dataset, save_dataset
from antiphon.launch import cli
from antiphon.launch import collect as collecting

LEVEL = "babyai:GoToRedBallGrey"


def _observations(env_name: str, seed: int, steps: int) -> list[dict[str, np.ndarray]]:
    env = registry.make_environment(env_name, seed=seed)
    rng = np.random.default_rng(seed)
    timestep = env.reset()
    seen = [timestep.observation]
    for _ in range(steps):
        timestep = env.step(int(rng.integers(7)))
        seen.append(timestep.observation)
    return seen


def test_flatten_and_unflatten_are_exact_inverses_with_the_environment_spec():
    env = registry.make_environment(LEVEL, seed=0)
    spec = env.observation_spec()
    assert minigrid.observation_layout(spec) == minigrid.observation_layout()
    assert [(r["key"], r["offset"], r["size"]) for r in minigrid.observation_layout()] == [
        ("image", 0, 147),
        ("direction", 147, 1),
        ("mission", 148, 16),
    ]
    observations = _observations(LEVEL, seed=0, steps=12)
    rows = np.stack([minigrid.flatten_observation(o) for o in observations])
    assert rows.shape == (13, minigrid.OBSERVATION_SIZE) == (13, 164) and rows.dtype == np.float32
    np.testing.assert_array_equal(rows[0, :147], observations[0]["image"].reshape(-1))
    assert rows[0, 147] == observations[0]["direction"]
    np.testing.assert_array_equal(rows[0, 148:], observations[0]["mission"])
    # One row back: the spec's exact shapes and dtypes, bit for bit.
    for row, observation in zip(rows, observations, strict=True):
        back = minigrid.unflatten_observations(row)
        assert set(back) == set(spec)
        for key, part in back.items():
            assert part.dtype == spec[key].dtype and part.shape == spec[key].shape, key
            spec[key].validate(part)
            np.testing.assert_array_equal(part, observation[key])
    # A batch back, and a batch of dicts flattens like its rows.
    batch = minigrid.unflatten_observations(rows)
    assert batch["image"].shape == (13, 7, 7, 3) and batch["image"].dtype == np.uint8
    assert batch["direction"].shape == (13,) and batch["direction"].dtype == np.int32
    assert batch["mission"].shape == (13, 16) and batch["mission"].dtype == np.int32
    np.testing.assert_array_equal(minigrid.flatten_observation(batch), rows)
    # Rows that flatten_observation never wrote are refused, not cast.
    with pytest.raises(ValueError, match="expected"):
        minigrid.unflatten_observations(rows[:, :163])
    bad = rows.copy()
    bad[3, 0] = 0.5
    with pytest.raises(ValueError, match="image"):
        minigrid.unflatten_observations(bad)
    bad = rows.copy()
    bad[0, 147] = -1
    with pytest.raises(ValueError, match="direction"):
        minigrid.unflatten_observations(bad)


def _replay(env_name: str, seed: int, dataset) -> list[bool | None]:
    """Steps a fresh environment with the dataset's actions from the same seed, checking every
    recorded observation, reward and end; returns each episode's `episode_success`."""
    env = registry.make_environment(env_name, seed=seed)
    successes = []
    for episode in dataset.episode_slices():
        timestep = env.reset()
        row = minigrid.flatten_observation(timestep.observation)
        np.testing.assert_array_equal(row, dataset.observations[episode.start])
        for i in range(episode.start, episode.stop):
            np.testing.assert_array_equal(dataset.observations[i], row)
            timestep = env.step(int(dataset.actions[i, 0]))
            row = minigrid.flatten_observation(timestep.observation)
            np.testing.assert_array_equal(row, dataset.next_observations[i])
            assert np.float32(timestep.reward) == dataset.rewards[i]
            assert timestep.last() == (i == episode.stop - 1)
        assert dataset.terminals[episode.stop - 1] == (timestep.discount == 0.0)
        successes.append(env.episode_success)
    return successes


def test_a_short_bot_collection_loads_back_and_replays_from_the_same_seed(tmp_path, capsys):
    path = str(tmp_path / "demos" / "bot.npz")  # the suffix picks the format
    argv = ["collect", "--env", LEVEL, "--policy", "babyai-bot", "--episodes", "3"]
    assert cli.main([*argv, "--seed", "7", "--out", path, "--no-progress"]) == 0
    assert "3/3 successes" in capsys.readouterr().out
    dataset = load_dataset(path)
    metadata = dataset.metadata
    assert metadata["environment"] == LEVEL and metadata["seed"] == 7
    assert metadata["episodes"] == dataset.num_episodes == 3
    assert metadata["policy"]["kind"] == "babyai-bot" and metadata["policy"]["bot_errors"] == []
    assert metadata["policy"]["level"] == "BabyAI-GoToRedBallGrey-v0"
    assert metadata["episode_successes"] == [True, True, True] and metadata["success_rate"] == 1.0
    assert metadata["action_units"] == "native" and metadata["action_space"]["num_values"] == 7
    assert metadata["observation_layout"] == minigrid.observation_layout()
    assert dataset.observations.shape == (len(dataset), 164)
    assert dataset.actions.shape == (len(dataset), 1) and dataset.actions.dtype == np.float32
    assert set(np.unique(dataset.actions)) <= set(range(7))
    assert dataset.terminals.sum() == 3 and not dataset.timeouts.any()
    # The learner's view: dict observations, exactly what the environment showed.
    observations = minigrid.unflatten_observations(
        dataset.observations, metadata["observation_layout"]
    )
    assert observations["image"].dtype == np.uint8 and observations["mission"].dtype == np.int32
    assert _replay(LEVEL, 7, dataset) == metadata["episode_successes"]
    # The same episodes again (the bot is deterministic), and through hdf5 unchanged.
    again = collecting.collect(LEVEL, "babyai-bot", 3, seed=7)
    np.testing.assert_array_equal(again.actions, dataset.actions)
    save_dataset(again, str(tmp_path / "bot.hdf5"))
    from_hdf5 = load_dataset(str(tmp_path / "bot.hdf5"))
    for name, value in dataset.arrays().items():
        np.testing.assert_array_equal(getattr(from_hdf5, name), value, err_msg=name)
    assert from_hdf5.metadata["observation_layout"] == metadata["observation_layout"]


def test_random_minigrid_data_holds_discrete_actions_and_failures(tmp_path):
    env_name = "minigrid:MiniGrid-Empty-5x5-v0"
    dataset = collecting.collect(env_name, "random", 2, seed=1)
    assert dataset.actions.shape == (len(dataset), 1)
    assert set(np.unique(dataset.actions)) <= set(range(7)) and len(np.unique(dataset.actions)) > 1
    assert dataset.metadata["policy"] == {"kind": "random"}
    assert len(dataset.metadata["episode_successes"]) == 2
    path = str(tmp_path / "random.npz")
    save_dataset(dataset, path)
    loaded = load_dataset(path)
    np.testing.assert_array_equal(loaded.observations, dataset.observations)
    assert _replay(env_name, 1, loaded) == loaded.metadata["episode_successes"]


def test_an_episode_the_bot_gives_up_on_is_cut_as_a_failure(monkeypatch):
    from minigrid.utils import baby_ai_bot

    real_replan = baby_ai_bot.BabyAIBot.replan
    calls = {"n": 0}

    def replan(self, action_taken=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise baby_ai_bot.DisappearedBoxError("A box was opened.")
        return real_replan(self, action_taken)

    monkeypatch.setattr(baby_ai_bot.BabyAIBot, "replan", replan)
    dataset = collecting.collect(LEVEL, "babyai-bot", 2, seed=7)
    first, second = dataset.episode_slices()
    assert first.stop - first.start == 3  # two bot actions, then `done` where it gave up
    assert dataset.actions[first.stop - 1, 0] == 6 and dataset.timeouts[first.stop - 1]
    assert dataset.terminals[second.stop - 1]  # the next episode gets a fresh bot
    assert dataset.metadata["episode_successes"] == [False, True]
    (error,) = dataset.metadata["policy"]["bot_errors"]
    assert error.startswith("episode 0: DisappearedBoxError: ") and "A box was opened." in error


@pytest.mark.parametrize(
    "env_name", ["minigrid:MiniGrid-Empty-5x5-v0", "gym:CartPole-v1"], ids=["minigrid", "gym"]
)
def test_the_bot_outside_babyai_is_refused_in_one_line(env_name, tmp_path, capsys):
    out = tmp_path / "x.npz"
    code = cli.main(
        ["collect", "--env", env_name, "--policy", "babyai-bot", "--out", str(out), "--no-progress"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err
    assert err.startswith("antiphon collect: error: --policy babyai-bot needs a BabyAI level")
    assert not out.exists()
    with pytest.raises(collecting.CollectError, match="action repeat 2"):
        collecting.collect(LEVEL, "babyai-bot", 1, action_repeat=2)
