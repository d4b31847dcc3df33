"""A study as its report reads it, each result computed once, on first use.

`bsweep.load_study(path)` returns a `Study` for a notebook; `bsweep report` builds the same
object (`report.write_report`) and renders what it holds, so a number in the notebook is the
number in the report. Attributes are `functools.cached_property`: asking for `answer` judges
what the answer needs and nothing else (no figures are drawn here).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import pandas as pd

from bsweep.analysis import critical, load, predicted, timebase
from bsweep.analysis.answer import answer_lines, answer_table
from bsweep.records import read_bracket_record as read_record
from bsweep.analysis.metrics import FINISHED_STATUSES, summarize_trials
from bsweep.analysis.claims import all_verdicts
from bsweep.analysis.claims.verdict import CLAIM_METRICS
from bsweep.analysis.views import SeedViews

# Why a trial of each status has no result: the report's one line on what it left out.
LEFT_OUT_WHY = {
    "running": "still running",
    "new": "not started",
    "interrupted": "stopped mid-trial; the next sweep resumes or redoes it",
    "failed": "failed; `bsweep status` shows the error",
    "oom": "out of memory",
    "damaged": "record unreadable; `bsweep status` says which file",
}


def judged_summary(
    trials: pd.DataFrame, measurements: pd.DataFrame, bench: pd.DataFrame | None, final_window: int = 3
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Per-trial metrics on the time basis the verdicts use (calibrated when ``bench`` covers
    the study), the measurements on that basis, and the sentence naming the basis. The report
    and every other place that prints verdicts start here, so they cannot disagree."""
    summary = timebase.add_step_blocks(timebase.add_step_memory(
        summarize_trials(trials, measurements, final_window=final_window), bench), bench)
    return timebase.calibrate_times(summary, measurements, bench)


def study_name(trials: pd.DataFrame, study_config: dict, fallback: str) -> str:
    """The study's name: its study.yaml's, else its trials', else `fallback`."""
    name = study_config.get("name") if isinstance(study_config, dict) else None
    if not name and "study" in trials.columns and trials["study"].notna().any():
        name = str(trials["study"].dropna().iloc[0])
    return str(name or fallback)


def left_out(trials: pd.DataFrame) -> dict[str, int]:
    """How many trials of each status have no result and so are in no number: every status
    but the finished ones (complete, diverged), in LEFT_OUT_WHY's order, then others."""
    counts = trials["status"].value_counts()
    statuses = [s for s in LEFT_OUT_WHY if s in counts] + sorted(set(counts.index) - set(LEFT_OUT_WHY))
    return {str(s): int(counts[s]) for s in statuses if s not in FINISHED_STATUSES}


def left_out_line(trials: pd.DataFrame) -> str:
    """One line: how many trials the analysis left out, and why; "" when it left out none."""
    counts = left_out(trials)
    if not counts:
        return ""
    parts = ", ".join(f"{n} {s} ({LEFT_OUT_WHY.get(s, 'no result')})" for s, n in counts.items())
    return f"left out {sum(counts.values())} of {len(trials)} trials: {parts}"


class Study:
    """One study's trials, measurements and everything judged from them.

    ``trials`` and ``measurements``: as read from disk (`load.load_trials_and_measurements`);
    ``summary``: one row per trial with its metrics, on the time basis of ``time_basis``;
    ``verdicts``: one row per claim and protocol; ``answer``: the report's first screen, one row
    per scientific point (``answer_lines`` as text); ``critical``: the critical-batch-size fit;
    ``predictions``: what `bsweep predict` predicted for the study (its predict/*/predict.json,
    `predicted.load_predictions`), each shown under the answer's point it matches, and
    ``prediction_notes``: the files it could not read.
    """

    def __init__(self, trials: pd.DataFrame, measurements: pd.DataFrame, *, config: dict | None = None,
                 environment: dict | None = None, name: str = "", bench: pd.DataFrame | None = None,
                 grid: pd.DataFrame | None = None, bracket: dict | None = None, final_window: int = 3,
                 path: Path | None = None, predictions: list[dict] | None = None,
                 prediction_notes: list[str] | None = None) -> None:
        self.trials, self.measurements = trials, measurements
        self.config, self.environment = config or {}, environment or {}
        self.name = name or study_name(trials, self.config, Path(path).name if path else "")
        self.bench, self.grid, self.bracket = bench, grid, bracket
        self.final_window, self.path = final_window, Path(path) if path else None
        self.predictions, self.prediction_notes = list(predictions or []), list(prediction_notes or [])

    @classmethod
    def load(cls, path: Path | str, nuisance: tuple[str, ...] = ()) -> Study:
        """Read the study folder `path` (results/<study>); ``nuisance``: keys tuned over
        besides those of the study's ``study.nuisance``."""
        path = Path(path)
        if not (path / "trials").is_dir():
            raise FileNotFoundError(f"{path} is not a study folder (it has no trials/)")
        trials, measurements = load.load_trials_and_measurements(path, nuisance)
        notes: list[str] = []
        predictions = predicted.load_predictions(path, notes)
        return cls(trials, measurements, config=load.load_study_config(path), environment=load.load_environment(path),
                   bench=timebase.load_bench(path), grid=load.load_grid_keys(path, nuisance).table(),
                   bracket=read_record(path), path=path, predictions=predictions, prediction_notes=notes)

    def __repr__(self) -> str:
        return f"Study({self.name!r}: {len(self.trials)} trials, {len(self.measurements)} measurements)"

    @cached_property
    def _judged(self) -> tuple[pd.DataFrame, pd.DataFrame, str]:
        return judged_summary(self.trials, self.measurements, self.bench, self.final_window)

    @property
    def summary(self) -> pd.DataFrame:
        """One row per trial: its config, status and metrics (to target, final, throughput)."""
        return self._judged[0]

    @property
    def judged_measurements(self) -> pd.DataFrame:
        """The measurements on the time basis the verdicts use (calibrated seconds where the
        study's bench covers it, the measured ones kept as ``measured_train_seconds``)."""
        return self._judged[1]

    @property
    def time_basis(self) -> str:
        """Which seconds the time verdicts read: measured, or calibrated (and why)."""
        return self._judged[2]

    @cached_property
    def views(self) -> SeedViews:
        """The summary's views over seeds (every lr on its own, tuned per criterion), each
        computed once and shared by the verdicts, the answer and the critical-batch-size fit."""
        return SeedViews(self.summary, CLAIM_METRICS)

    @cached_property
    def verdicts(self) -> pd.DataFrame:
        """One row per claim and protocol (columns of `claims.verdict.Verdict`)."""
        return all_verdicts(self.summary, self.judged_measurements, self.views)

    @cached_property
    def _critical(self) -> critical.CriticalBatchSize | Exception:
        # The report turns a failed fit into a note in its section; `critical` raises it.
        try:
            return critical.analyse_critical_batch_size(self.summary, self.judged_measurements, self.bench, self.views)
        except Exception as error:  # noqa: BLE001 - kept for the report, raised by `critical`
            return error

    @property
    def critical(self) -> critical.CriticalBatchSize:
        """The critical-batch-size analysis: S(B) fits per point (``fits``), the prediction of
        the time-optimal batch size, the gradient noise scale; raises what stopped it."""
        if isinstance(self._critical, Exception):
            raise self._critical
        return self._critical

    @cached_property
    def answer(self) -> pd.DataFrame:
        """The report's answer block: per scientific point the fastest and the most accurate
        batch size with their lrs, B_crit, and how the best lr scales (`answer.COLUMNS`)."""
        critical = None if isinstance(self._critical, Exception) else self._critical
        return answer_table(self.summary, critical, self.time_basis, self.views)

    @cached_property
    def answer_points(self) -> pd.DataFrame:
        """``answer`` with a column per condition of the study's points (data, model, norm, ...,
        each swept dotted key) holding each point's value (`predicted.point_conditions`)."""
        return predicted.point_conditions(self.answer, self.views.fixed()) if len(self.answer) else self.answer

    @cached_property
    def matched_predictions(self) -> tuple[list[list[dict]], list[dict]]:
        """Per row of ``answer``, the predictions of its point (`predicted.matches` on the
        point's config values, dataset and model included), and the predictions of no point."""
        if not self.predictions or not len(self.answer):  # nothing to match: skip the views
            return [[] for _ in range(len(self.answer))], list(self.predictions)
        return predicted.assign(self.answer_points, self.predictions)

    def answer_lines(self) -> list[str]:
        """The answer block as the terminal prints it: under each point the lines of the
        predictions made for it ("predicted from one pilot"), then the predictions of no point,
        each under its setting, and the predict.json files that could not be read."""
        per_point, unmatched = self.matched_predictions
        lines = []
        for point, mine in zip(answer_lines(self.answer), per_point):
            lines += point
            for prediction in mine:
                lines += predicted.prediction_lines(prediction)
        for prediction in unmatched:
            lines += [predicted.unmatched_heading(prediction), *predicted.prediction_lines(prediction)]
        return lines + self.prediction_notes

    @property
    def left_out(self) -> dict[str, int]:
        """Trials in no number, by status (running, failed, damaged, ...)."""
        return left_out(self.trials)

    @property
    def left_out_line(self) -> str:
        """How many trials no number uses, and why, in one line ("" when none)."""
        return left_out_line(self.trials)
