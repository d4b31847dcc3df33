"""Shared fixtures: compose the real config (configs/), shrunk to run in seconds."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from bsweep.config import Config
from bsweep.train.data import TensorData
from bsweep.train.engine import Alone, PerfChoice, TrialResult, train
from bsweep.train.fused import build_members
from bsweep.plan import compose_config, structured

# Generated datasets (bsweep.train.datacache) cached once per test session, for every process the
# tests start (xdist's workers and the sweeps' subprocesses inherit the variable), and never in
# the user's own cache folder. The process that made the folder removes it at exit: left behind,
# one per run had filled /tmp by the hundred.
if "BSWEEP_CACHE_DIR" not in os.environ:
    os.environ["BSWEEP_CACHE_DIR"] = tempfile.mkdtemp(prefix="bsweep-test-cache-")
    atexit.register(shutil.rmtree, os.environ["BSWEEP_CACHE_DIR"], ignore_errors=True)

# The smoke study (configs/study/smoke.yaml) shrunk further: 256 training samples, 1 epoch.
# float32 and the contiguous layout, whatever a timing probe would pick on this machine: tests
# that compare numbers must not depend on the speed of the CPU they run on (test_perf.py tests
# the probe itself).
TINY = ["study=smoke", "data.n_train=256", "data.n_test=128", "study.budget.epochs=1",
        "perf.amp=off", "perf.channels_last=off"]
EXACT = PerfChoice()


def train_alone(cfg: Config, data: TensorData, perf: PerfChoice = EXACT) -> TrialResult:
    """The trial `cfg` trained alone, as the runner trains it."""
    return train(Alone(cfg, data, perf), [cfg], data, perf)[0]


def train_fused(cfgs: list[Config], data: TensorData, perf: PerfChoice = EXACT) -> list[TrialResult]:
    """The trials `cfgs` (equal but for lr and seed) trained as one fused model."""
    return train(build_members(cfgs, data, perf), cfgs, data, perf)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked slow run first, the longest of them (`slow(seconds=...)`: their time on the
    2-core AVX2-only EPYC, a hint for the order alone) before the rest. The suite runs in one
    pytest-xdist worker per core and its wall time is the busiest worker's: the 2-minute
    reproduce test handed out late kept one core busy ~1.5 min after the other had finished.
    Under the Makefile's `--dist worksteal` the first worker takes the first half of this order
    and an idle worker takes queued tests from the end of the other's queue, so the longest
    start at once and the shortest fill the gaps."""
    def order(item: pytest.Item) -> tuple[bool, float]:
        slow = item.get_closest_marker("slow")
        return slow is None, -(slow.kwargs.get("seconds", 0) if slow else 0)

    items.sort(key=order)  # stable: file order otherwise


def pytest_report_header() -> str:
    import torch

    return f"torch {torch.__version__}, CPU kernels: {torch.backends.cpu.get_cpu_capability()}"


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return tmp_path / "results"


def compose(overrides: list[str]) -> Config:
    """The typed config `bsweep run OVERRIDES` would train."""
    return structured(compose_config(overrides))


@pytest.fixture
def tiny_config(results: Path) -> Config:
    return compose([*TINY, f"results_dir={results}"])
