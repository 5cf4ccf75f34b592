"""Loggers: terminal, CSV, TensorBoard, TimeFilter, make_logger, ProgressDisplay."""

import csv
import io
import os
import threading
import time

import numpy as np
from rich.console import Console

from antiphon.core import logging as alog


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


class ListLogger:
    def __init__(self):
        self.rows = []
        self.closed = False

    def write(self, values):
        self.rows.append(dict(values))

    def close(self):
        self.closed = True


def test_terminal_logger_formats_one_line():
    out = io.StringIO()
    console = Console(file=out, width=200)
    logger = alog.TerminalLogger("actor", console=console)
    logger.write({"steps": 123456, "loss": np.float32(0.123456), "name": "[x]"})
    assert out.getvalue() == "[actor] steps=123456 loss=0.1235 name=[x]\n"


def test_csv_header_rows_resume_and_new_keys(tmp_path):
    logger = alog.CSVLogger(tmp_path, "learner")
    logger.write({"steps": 1, "loss": 0.5})
    logger.write({"loss": np.float32(0.25), "steps": 2})
    path = tmp_path / "learner.csv"
    assert _rows(path) == [["steps", "loss"], ["1", "0.5"], ["2", "0.25"]]  # flushed already
    logger.close()

    resumed = alog.CSVLogger(tmp_path, "learner")
    resumed.write({"steps": 3, "loss": 0.125})
    assert _rows(path)[0] == ["steps", "loss"] and len(_rows(path)) == 4
    resumed.write({"steps": 4, "loss": 0.0, "q": 1.5})
    resumed.write({"steps": 5})
    resumed.close()
    assert _rows(path) == [
        ["steps", "loss", "q"],
        ["1", "0.5", ""],
        ["2", "0.25", ""],
        ["3", "0.125", ""],
        ["4", "0.0", "1.5"],
        ["5", "", ""],
    ]


def _event_files(directory):
    return [f for _, _, fs in os.walk(directory) for f in fs if f.startswith("events.out")]


def test_tensorboard_writes_event_file(tmp_path):
    logger = alog.TensorBoardLogger(tmp_path, "learner", step_key="steps")
    logger.write({"steps": 10, "loss": 0.5, "note": "skipped", "vec": np.zeros(3)})
    logger.close()
    files = _event_files(tmp_path / "learner")
    assert files and os.path.getsize(tmp_path / "learner" / files[0]) > 0


def test_time_filter_drops_close_writes():
    inner = ListLogger()
    logger = alog.TimeFilter(inner, time_delta=0.2)
    for i in range(5):
        logger.write({"i": i})
    assert inner.rows == [{"i": 0}]
    time.sleep(0.25)
    logger.write({"i": 5})
    assert inner.rows == [{"i": 0}, {"i": 5}]
    logger.close()
    assert inner.closed
    passthrough = ListLogger()
    unfiltered = alog.TimeFilter(passthrough, time_delta=0.0)
    for i in range(3):
        unfiltered.write({"i": i})
    assert len(passthrough.rows) == 3


def test_dispatcher_and_noop():
    a, b = ListLogger(), ListLogger()
    d = alog.Dispatcher([a, b])
    d.write({"x": 1})
    d.close()
    assert a.rows == b.rows == [{"x": 1}] and a.closed and b.closed
    alog.NoOpLogger().write({"x": 1})
    assert isinstance(alog.NoOpLogger(), alog.Logger)


def test_make_logger_writes_where_expected(tmp_path, capsys):
    logger = alog.make_logger("evaluator", tmp_path, time_delta=0.0, step_key="steps")
    threads = [
        threading.Thread(target=lambda i=i: logger.write({"steps": i, "episode_return": 1.0}))
        for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    logger.close()
    rows = _rows(tmp_path / "logs" / "evaluator.csv")
    assert rows[0] == ["steps", "episode_return"] and len(rows) == 5
    assert _event_files(tmp_path / "tb" / "evaluator")
    assert "[evaluator] steps=" in capsys.readouterr().err

    quiet = alog.make_logger("x", None, print_to_terminal=False)
    assert isinstance(quiet, alog.NoOpLogger)


def test_progress_display_without_tty():
    out = io.StringIO()
    console = Console(file=out, force_terminal=False)
    steps = iter(range(0, 10_000, 100))

    def poll():
        return {"steps": next(steps), "steps_per_second": 250.0, "recent_return": 3.0}

    with alog.ProgressDisplay(
        1000, poll, "train", refresh_per_second=50, plain_interval=0.05, console=console
    ) as display:
        time.sleep(0.2)
    assert display._thread is None
    lines = out.getvalue().splitlines()
    assert len(lines) >= 2  # periodic lines plus the final one
    assert lines[-1].startswith("train: ") and "/1000 steps" in lines[-1]
    assert "return 3" in lines[-1]


def test_progress_display_live_bar_and_failing_poll():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    calls = []

    def poll():
        calls.append(1)
        if len(calls) % 2:
            raise ConnectionError("counter restarting")
        return {"steps": 500, "steps_per_second": 100.0, "eval_return": 7.5}

    display = alog.ProgressDisplay(1000, poll, "train", refresh_per_second=50, console=console)
    display.start()
    time.sleep(0.15)
    display.stop()
    display.stop()  # idempotent
    assert len(calls) >= 2
    assert "500/1000" in out.getvalue()
