"""`bsweep collect`: a study's records -> the tidy trial and measurement tables, on disk."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bsweep.analysis.load import load_trials_and_measurements
from bsweep.analysis.metrics import summarize_trials
from bsweep.analysis.timebase import add_calibrated_seconds, load_bench

TRIALS_TABLE = "trials.parquet"
MEASUREMENTS_TABLE = "measurements.parquet"


def collect(study_dir: Path, csv_dir: Path | None = None,
            nuisance: tuple[str, ...] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Summarize every trial of the study; write both tables as Parquet in the study folder
    (and as CSV in `csv_dir` when given). Returns (trials, measurements). `nuisance`: keys
    tuned over besides those of the study's `study.nuisance` (`load.load_trials`)."""
    study_dir = Path(study_dir)
    trials, measurements = load_trials_and_measurements(study_dir, nuisance)
    trials = add_calibrated_seconds(summarize_trials(trials, measurements), load_bench(study_dir))
    trials.to_parquet(study_dir / TRIALS_TABLE, index=False)
    measurements.to_parquet(study_dir / MEASUREMENTS_TABLE, index=False)
    if csv_dir is not None:
        csv_dir = Path(csv_dir)
        csv_dir.mkdir(parents=True, exist_ok=True)
        trials.to_csv(csv_dir / "trials.csv", index=False)
        measurements.to_csv(csv_dir / "measurements.csv", index=False)
    return trials, measurements


def latest_study(results_dir: Path) -> Path | None:
    """The study folder under `results_dir` whose trials changed most recently."""
    studies = [p for p in Path(results_dir).glob("*/trials") if p.is_dir()]
    if not studies:
        return None
    return max(studies, key=lambda p: p.stat().st_mtime).parent
