"""`antiphon plot` draws the evaluation success rate of goal-reaching runs (MiniGrid, BabyAI)
in its own panel, and no such panel for runs without one."""

from __future__ import annotations

import csv
import os

import matplotlib.image

from antiphon.launch.plotting import _success_rows, plot_run


def _run(tmp_path, name: str, success: bool) -> str:
    run_dir = tmp_path / name
    os.makedirs(run_dir / "logs")
    fields = ["actor_steps", "eval_return_mean", "eval_return_std"]
    fields += ["eval_success_rate"] if success else []
    with open(run_dir / "logs" / "evaluator.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        for i, rate in enumerate([0.0, 0.25, 0.9]):
            row = {"actor_steps": 1000 * i, "eval_return_mean": rate, "eval_return_std": 0.1}
            writer.writerow({**row, **({"eval_success_rate": rate} if success else {})})
    return str(run_dir)


def test_success_panel_only_for_runs_that_report_success(tmp_path):
    with_success = _run(tmp_path, "r2d2", success=True)
    without = _run(tmp_path, "d4pg", success=False)
    assert list(_success_rows([with_success, without])) == [with_success]
    tall = matplotlib.image.imread(plot_run([with_success], str(tmp_path / "a.png")))
    short = matplotlib.image.imread(plot_run([without], str(tmp_path / "b.png")))
    assert tall.shape[0] > short.shape[0] * 1.4  # one more panel under the returns
