"""Wall-clock timing on a device, in one place: the training clock and the step-time blocks that
the perf probe, the width search and `bsweep bench` use. Every reading synchronizes the device
first, so queued GPU work is counted where it ran."""

from __future__ import annotations

import time
from typing import Callable

import torch

from bsweep.train.device import synchronize

# Seconds of timed steps per block, and blocks per point: the best block is kept (a busy machine
# only ever slows a block down, so the minimum is the closest to "isolated").
BLOCK_SECONDS = 0.25
BLOCKS = 3
WARM_CALLS = 3  # untimed calls before timing: allocator growth, kernel choice, lazy init


class Stopwatch:
    """Accumulates seconds between `start()` and `stop()`; the device is synchronized at each."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.seconds, self._since = device, 0.0, None

    def start(self) -> None:
        synchronize(self.device)
        self._since = time.perf_counter()

    def stop(self) -> float:
        synchronize(self.device)
        if self._since is not None:
            self.seconds += time.perf_counter() - self._since
            self._since = None
        return self.seconds


def steps_per_block(step: Callable[[], None], device: torch.device, block_seconds: float,
                    min_steps: int = 3, max_steps: int = 2000) -> int:
    """Warm `step` up, then how many calls fill about `block_seconds`."""
    one = max(warm_call_seconds(step, device), 1e-6)
    return max(min_steps, min(max_steps, int(block_seconds / one)))


def warm_call_seconds(step: Callable[[], None], device: torch.device) -> float:
    """Seconds of one call of `step()` after WARM_CALLS untimed ones."""
    for _ in range(WARM_CALLS):
        step()
    return time_block(step, device, 1)


def time_block(step: Callable[[], None], device: torch.device, n: int) -> float:
    """Mean seconds per call over `n` calls of `step()`."""
    watch = Stopwatch(device)
    watch.start()
    for _ in range(n):
        step()
    return watch.stop() / n


def time_steps(step: Callable[[], None], device: torch.device, block_seconds: float = BLOCK_SECONDS,
               blocks: int = BLOCKS, min_steps: int = 3) -> float:
    """Best-of-`blocks` mean seconds per call of `step()`, each block about `block_seconds`."""
    n = steps_per_block(step, device, block_seconds, min_steps)
    return min(time_block(step, device, n) for _ in range(blocks))


def time_interleaved(steps: list[tuple[Callable[[], None], torch.device]], block_seconds: float, rounds: int,
                     min_steps: int = 3, enough: Callable[[int, list[float]], bool] | None = None) -> list[float]:
    """Best-of-`rounds` mean seconds per call of each (step, its device), the blocks interleaved
    round by round (`interleaved_blocks`). `enough(rounds done, best so far)` may end the rounds
    early."""
    return [min(blocks) for blocks in interleaved_blocks(steps, block_seconds, rounds, min_steps, enough)]


def interleaved_blocks(steps: list[tuple[Callable[[], None], torch.device]], block_seconds: float, rounds: int,
                       min_steps: int = 3, enough: Callable[[int, list[float]], bool] | None = None) -> list[list[float]]:
    """Mean seconds per call of each (step, its device) in each round, in round order: one block
    of every step per round, so a burst of other load slows one block of every step rather than
    every block of a few, and two steps' blocks of one round ran close in time (a paired
    comparison, `bsweep bench`). Each round starts one step further along, so no step always
    follows the same neighbour or opens every round. `enough(rounds done, best so far)` may end
    the rounds early."""
    calls = [steps_per_block(step, device, block_seconds, min_steps) for step, device in steps]
    blocks: list[list[float]] = [[] for _ in steps]
    for r in range(rounds):
        for j in range(len(steps)):
            i = (r + j) % len(steps)
            step, device = steps[i]
            blocks[i].append(time_block(step, device, calls[i]))
        if enough is not None and enough(r + 1, [min(b) for b in blocks]):
            break
    return blocks
