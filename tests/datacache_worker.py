"""A process of tests/test_datacache.py's concurrent-miss test, in a module of its own so that
the spawned processes import no torch (the test module's own imports load it: ~4 s a process)."""

from __future__ import annotations

import time

import numpy as np

from bsweep.train import datacache


def slow_make_in_a_process(log: str, barrier) -> list[int]:
    """Miss the cache file with the other processes at once (`barrier`); the maker takes a while
    and says in `log` that it ran."""
    def make():
        with open(log, "a") as f:
            f.write("made\n")
        time.sleep(0.5)  # long enough for the others to reach the lock while this one holds it
        return {"y": np.array([0, 1, 2])}

    barrier.wait()
    return datacache.cached_arrays("demo", {"n": 3}, make)["y"].tolist()
