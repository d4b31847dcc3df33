"""Ctrl-C and SIGTERM as a request to stop cleanly, not a crash.

Within `stop_on_signals()`, the first SIGINT (a terminal's Ctrl-C, sent to the whole process
group: the sweep and its workers alike) or SIGTERM (a SLURM preemption, `kill`) only records a
request. The training loop sees it at its next step boundary, saves a checkpoint of its trials and
raises `Interrupted`; the record lifecycle writes them `interrupted`; a trial not yet started is
not started; the launchers hand out no more work. A second signal raises KeyboardInterrupt at
once, for a user who will not wait.

A signal handler is process state by nature, so the request lives in this module, read through
`requested()` and nothing else. Off the main thread (a Ray task's thread) handlers cannot be
installed, and the block changes nothing.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Training stopped on a signal at a step boundary; `saved_step`: the step its checkpoint
    holds (None where checkpoints are off). A KeyboardInterrupt, so nothing that catches
    Exception (a trial's own failure) mistakes it for one."""

    def __init__(self, signal_name: str, saved_step: int | None = None) -> None:
        super().__init__(signal_name, saved_step)
        self.signal_name, self.saved_step = signal_name, saved_step

    def __str__(self) -> str:
        saved = f", saved at step {self.saved_step}" if self.saved_step is not None else ""
        return f"stopped by {self.signal_name}{saved}"


class _Request:
    """The process's request: the signal's name, or None; how deep the blocks nest; the
    handlers the outermost block replaced."""

    signal_name: str | None = None
    depth = 0
    previous: dict[int, object] = {}


_REQUEST = _Request()


def requested() -> str | None:
    """The name of the signal that asked this process to stop (SIGINT, SIGTERM), or None."""
    return _REQUEST.signal_name


def _handle(signum: int, frame) -> None:
    if _REQUEST.signal_name is not None:  # the second signal: stop now
        raise KeyboardInterrupt
    _REQUEST.signal_name = signal.Signals(signum).name


@dataclass
class Outcome:
    """What a `stop_on_signals` block saw: the signal that asked it to stop, once it has ended."""

    signal_name: str | None = None


@contextmanager
def stop_on_signals(fresh: bool = False) -> Iterator[Outcome]:
    """Turn SIGINT and SIGTERM into a stop request for the block (see the module). Blocks nest
    and share one request; the outermost restores the handlers it found.

    A request outlives the block: a worker process asked to stop starts no trial a launcher
    hands it afterwards. `fresh`: the command that launches a sweep clears it on entering and
    on leaving, so the next sweep of the same process starts unasked."""
    outcome = Outcome()
    if threading.current_thread() is not threading.main_thread():
        yield outcome
        return
    if fresh:
        _REQUEST.signal_name = None
    if _REQUEST.depth == 0:
        _REQUEST.previous = {s: signal.signal(s, _handle) for s in SIGNALS}
    _REQUEST.depth += 1
    try:
        yield outcome
    finally:
        outcome.signal_name = _REQUEST.signal_name
        _REQUEST.depth -= 1
        if _REQUEST.depth == 0:
            for s, handler in _REQUEST.previous.items():
                signal.signal(s, handler)
            _REQUEST.previous = {}
        if fresh:
            _REQUEST.signal_name = None
