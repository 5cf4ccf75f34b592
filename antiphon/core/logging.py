"""One logger interface (`write(values)`, `close()`) and its sinks: terminal, CSV, TensorBoard.

`make_logger` is what nodes use: a time-filtered terminal line plus, under a run directory,
`logs/<label>.csv` and `tb/<label>/`. `ProgressDisplay` is the live progress bar of a run.
"""

from __future__ import annotations

import csv
import logging
import math
import numbers
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from rich.console import Console

_log = logging.getLogger(__name__)

_console: Console | None = None
_console_lock = threading.Lock()


def get_console() -> Console:
    """The process-wide rich console (on stderr).

    Terminal loggers and the progress bar share it so that log lines appear above a live bar
    instead of tearing it.
    """
    global _console
    with _console_lock:
        if _console is None:
            _console = Console(stderr=True)
        return _console


@runtime_checkable
class Logger(Protocol):
    def write(self, values: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


def _to_python(value: Any) -> Any:
    """numpy/jax scalars and 0-d arrays as python numbers; everything else unchanged."""
    if isinstance(value, np.generic):
        return value.item()
    if getattr(value, "shape", None) == () and hasattr(value, "item"):
        return value.item()
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, complex)


def _format_value(value: Any) -> str:
    value = _to_python(value)
    if isinstance(value, bool) or isinstance(value, numbers.Integral):
        return str(value)  # step counts stay exact
    if isinstance(value, numbers.Real):
        return f"{value:.4g}"
    return str(value)


class NoOpLogger:
    """Discards everything."""

    def write(self, values: Mapping[str, Any]) -> None:
        del values

    def close(self) -> None:
        pass


class TimeFilter:
    """Passes a write on only if `time_delta` seconds went by since the last one it passed."""

    def __init__(self, logger: Logger, time_delta: float):
        self._logger = logger
        self._time_delta = time_delta
        self._last = -float("inf")

    def write(self, values: Mapping[str, Any]) -> None:
        now = time.monotonic()
        if self._time_delta > 0 and now - self._last < self._time_delta:
            return
        self._last = now
        self._logger.write(values)

    def close(self) -> None:
        self._logger.close()


class Dispatcher:
    """Writes to several loggers."""

    def __init__(self, loggers: Sequence[Logger]):
        self._loggers = list(loggers)

    def write(self, values: Mapping[str, Any]) -> None:
        for logger in self._loggers:
            logger.write(values)

    def close(self) -> None:
        for logger in self._loggers:
            logger.close()


class TerminalLogger:
    """One compact line per write: `[label] key=value ...`, numbers to 4 significant digits."""

    def __init__(self, label: str, time_delta: float = 0.0, console: Console | None = None):
        self._label = label
        self._time_delta = time_delta
        self._last = -float("inf")
        self._console = console

    def write(self, values: Mapping[str, Any]) -> None:
        now = time.monotonic()
        if self._time_delta > 0 and now - self._last < self._time_delta:
            return
        self._last = now
        fields = " ".join(f"{k}={_format_value(v)}" for k, v in values.items())
        console = self._console or get_console()
        # markup=False: "[label]" and user strings must not be read as rich markup.
        console.print(f"[{self._label}] {fields}", markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        pass


class CSVLogger:
    """Appends rows to `<directory>/<label>.csv`, flushed after each write.

    The header comes from the first row (or from the existing file, when resuming). A row with
    keys the header lacks makes the file be rewritten once with the union of the keys.
    """

    def __init__(self, directory: str | os.PathLike, label: str):
        os.makedirs(directory, exist_ok=True)
        self._path = os.path.join(os.fspath(directory), f"{label}.csv")
        self._fields: list[str] = []
        self._lock = threading.Lock()
        if os.path.exists(self._path) and os.path.getsize(self._path) > 0:
            with open(self._path, newline="") as f:
                self._fields = next(csv.reader(f), [])
        self._file = open(self._path, "a", newline="")  # held open: one append per write

    @property
    def path(self) -> str:
        return self._path

    def write(self, values: Mapping[str, Any]) -> None:
        row = {str(k): _to_python(v) for k, v in values.items()}
        with self._lock:
            new_keys = [k for k in row if k not in self._fields]
            if not self._fields:
                self._fields = new_keys
                csv.writer(self._file).writerow(self._fields)
            elif new_keys:
                self._rewrite_with(self._fields + new_keys)
            writer = csv.DictWriter(self._file, fieldnames=self._fields, restval="")
            writer.writerow(row)
            self._file.flush()

    def _rewrite_with(self, fields: list[str]) -> None:
        """Rewrites the file under a wider header (atomically: tmp file + replace)."""
        self._file.close()
        with open(self._path, newline="") as f:
            rows = list(csv.DictReader(f))
        tmp = self._path + ".tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, restval="")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self._path)
        self._fields = fields
        self._file = open(self._path, "a", newline="")

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()


class TensorBoardLogger:
    """Scalars to a tensorboardX event file under `<directory>/<label>`; non-numbers skipped.

    The x-axis is `values[step_key]` when present, else the number of writes so far.
    """

    def __init__(self, directory: str | os.PathLike, label: str, step_key: str | None = None):
        from tensorboardX import SummaryWriter  # lazy: protobuf import is slow

        self._writer = SummaryWriter(
            logdir=os.path.join(os.fspath(directory), label), flush_secs=10
        )
        self._step_key = step_key
        self._writes = 0
        self._lock = threading.Lock()

    def write(self, values: Mapping[str, Any]) -> None:
        with self._lock:
            step = self._writes
            self._writes += 1
            if self._step_key is not None and self._step_key in values:
                step_value = _to_python(values[self._step_key])
                if _is_number(step_value):
                    step = int(step_value)
            for key, value in values.items():
                value = _to_python(value)
                # NaN marks a metric not computed in this interval (TD3's actor between its
                # delayed updates, Q_sarsa's pre-training): no point, rather than a NaN one.
                if _is_number(value) and not math.isnan(float(value)):
                    self._writer.add_scalar(str(key), float(value), global_step=step)

    def close(self) -> None:
        with self._lock:
            self._writer.flush()
            self._writer.close()


class _Locked:
    """Serialises writes from several threads onto one logger."""

    def __init__(self, logger: Logger):
        self._logger = logger
        self._lock = threading.Lock()

    def write(self, values: Mapping[str, Any]) -> None:
        with self._lock:
            self._logger.write(values)

    def close(self) -> None:
        with self._lock:
            self._logger.close()


def make_logger(
    label: str,
    run_dir: str | os.PathLike | None,
    time_delta: float = 1.0,
    print_to_terminal: bool = True,
    step_key: str | None = None,
) -> Logger:
    """The standard logger of a node.

    Terminal (at most one line per `time_delta` seconds) and, when `run_dir` is set, every write to
    `run_dir/logs/<label>.csv` and `run_dir/tb/<label>/`. Thread-safe.
    """
    loggers: list[Logger] = []
    if print_to_terminal:
        loggers.append(TimeFilter(TerminalLogger(label), time_delta))
    if run_dir is not None:
        loggers.append(CSVLogger(os.path.join(os.fspath(run_dir), "logs"), label))
        loggers.append(TensorBoardLogger(os.path.join(os.fspath(run_dir), "tb"), label, step_key))
    if not loggers:
        return NoOpLogger()
    return _Locked(Dispatcher(loggers))


def _format_returns(status: Mapping[str, Any]) -> str:
    parts = []
    recent = status.get("recent_return")
    if recent is not None:
        parts.append(f"return {_format_value(recent)}")
    evaluated = status.get("eval_return")
    if evaluated is not None:
        parts.append(f"eval {_format_value(evaluated)}")
    return "  ".join(parts)


class ProgressDisplay:
    """A live progress bar of env steps, refreshed from `poll()` in a background thread.

    `poll()` returns e.g. {"steps": int, "steps_per_second": float, "recent_return": float|None,
    "eval_return": float|None}. When stderr is not a terminal, a plain line is printed every
    `plain_interval` seconds instead (and once at the end). Errors in `poll()` are logged and
    skipped: a display must never take a run down.
    """

    def __init__(
        self,
        total_steps: int,
        poll: Callable[[], Mapping[str, Any]],
        description: str,
        refresh_per_second: float = 2,
        plain_interval: float = 10.0,
        console: Console | None = None,
    ):
        self._total = int(total_steps)
        self._poll = poll
        self._description = description
        self._period = 1.0 / max(refresh_per_second, 1e-3)
        self._plain_interval = plain_interval
        self._console = console or get_console()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_time = 0.0
        self._progress: Any = None
        self._task: Any = None
        self._last_status: Mapping[str, Any] = {}

    def start(self) -> ProgressDisplay:
        if self._thread is not None:
            return self
        self._start_time = time.monotonic()
        self._stop.clear()
        if self._console.is_terminal:
            self._progress = self._make_progress()
            self._task = self._progress.add_task(
                self._description, total=self._total, sps="", returns=""
            )
            self._progress.start()
        self._thread = threading.Thread(target=self._loop, name="progress-display", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._refresh()  # show the final numbers
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        else:
            self._print_plain()

    def __enter__(self) -> ProgressDisplay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _make_progress(self) -> Any:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        return Progress(
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[sps]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[returns]}"),
            console=self._console,
            refresh_per_second=max(1, int(1.0 / self._period)),
        )

    def _loop(self) -> None:
        last_plain = time.monotonic()
        while not self._stop.wait(self._period):
            self._refresh()
            if self._progress is None and time.monotonic() - last_plain >= self._plain_interval:
                last_plain = time.monotonic()
                self._print_plain()

    def _refresh(self) -> None:
        try:
            status = dict(self._poll())
        except Exception as e:  # a flaky remote counter must not kill the display
            _log.debug("ProgressDisplay: poll failed: %s", e)
            return
        self._last_status = status
        if self._progress is not None:
            sps = status.get("steps_per_second")
            self._progress.update(
                self._task,
                completed=min(int(status.get("steps", 0) or 0), self._total),
                sps=f"{_format_value(sps)} steps/s" if sps is not None else "",
                returns=_format_returns(status),
            )

    def _print_plain(self) -> None:
        status = self._last_status
        steps = int(status.get("steps", 0) or 0)
        percent = 100.0 * steps / self._total if self._total > 0 else 0.0
        elapsed = time.monotonic() - self._start_time
        line = f"{self._description}: {steps}/{self._total} steps ({percent:.1f}%)"
        sps = status.get("steps_per_second")
        if sps is not None:
            line += f"  {_format_value(sps)} steps/s"
        line += f"  elapsed {elapsed:.0f}s"
        returns = _format_returns(status)
        if returns:
            line += "  " + returns
        self._console.print(line, markup=False, highlight=False, soft_wrap=True)
