"""Shared fixtures: compose the real config (configs/), shrunk to run in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bsweep.config import Config
from bsweep.plan import compose_config

# The smoke study (configs/study/smoke.yaml) shrunk further: 256 training samples, 1 epoch.
TINY = ["study=smoke", "data.n_train=256", "data.n_test=128", "study.budget.epochs=1"]


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return tmp_path / "results"


def compose(overrides: list[str]) -> Config:
    """The typed config `bsweep run OVERRIDES` would train."""
    return OmegaConf.to_object(compose_config(overrides))


@pytest.fixture
def tiny_config(results: Path) -> Config:
    return compose([*TINY, f"results_dir={results}"])
