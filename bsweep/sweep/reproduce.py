"""`bsweep reproduce`: the claims study end to end: sweep, report, verdicts."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
from rich.console import Console

from bsweep.sweep.launch import SweepOutcome, run_sweep
from bsweep.plan import structured_all
from bsweep.placement import cores
from bsweep.sweep.executor import NAME


@dataclass
class StudyRun:
    """One study of the reproduction: its sweep, folder and report."""

    outcome: SweepOutcome
    study_dir: Path
    report: Path


@dataclass
class Reproduction:
    studies: list[StudyRun]
    verdicts: pd.DataFrame  # every claim once, judged on the study made for it (column `study`)
    answer: pd.DataFrame  # the batch-size study's answer block (`analysis.answer.answer_table`)
    predictions: list[dict]  # `bsweep predict` at each norm of the batch-size study


# Keys `bsweep predict` chooses itself or takes from the study's grid: left out of the
# reproduction's own overrides when it runs the predictor.
NOT_FOR_PREDICT = ("batch_size", "lr", "seed", "norm", "norm.kind")


def predict_overrides(name: str, results_dir: Path, extra: list[str], norm: str) -> list[str]:
    """The predictor's command line for one norm of the study `name` (the study's own target,
    budget and data; `extra` without the keys the predictor picks, nor Hydra's)."""
    own = [o for o in extra if o.split("=", 1)[0].lstrip("+~") not in NOT_FOR_PREDICT and not o.startswith("hydra")]
    return [f"study={name}", f"results_dir={results_dir}", f"norm={norm}", *own]


def run_predictions(outcome: SweepOutcome, results_dir: Path, extra: list[str], console: Console) -> list[dict]:
    """`bsweep predict` at every norm of the batch-size study's grid, beside it in its folder,
    so its report shows the prediction next to what the grid measured."""
    from bsweep.sweep.predict import PilotMissed, predict

    config = outcome.planned[0].config
    norms = sorted({p.config["norm"]["kind"] for p in outcome.planned})
    out = []
    for norm in norms:
        console.print(f"predicting from one pilot: {config['study']['name']}, norm={norm}", highlight=False)
        try:
            prediction, _ = predict(predict_overrides(config["study"]["name"], results_dir, extra, norm),
                                    say=lambda line: console.print(f"  {line}", highlight=False))
        except PilotMissed as missed:  # the grid's answer stands alone; say why there is no prediction
            console.print(f"  no prediction: {missed}", highlight=False)
            continue
        out.append(prediction)
    return out


# Worker processes per GPU. A study of small CNNs keeps a GPU waiting on the host (per-group
# set-up, kernel launches), which processes overlap: on an H100 (16-core host) claims_quick at
# 0.02 of its budget took 34 s in 4 processes against 53 s in one (BENCHMARKS.md, 2026-11-27).
PROCESSES_PER_GPU = 4


def default_jobs() -> int:
    """Parallel processes: one per CPU core on a CPU-only machine (each trial runs one torch
    thread, see Config.threads); PROCESSES_PER_GPU per GPU, at most one per core, with GPUs."""
    import torch

    n_cores = max(1, cores())
    if torch.cuda.is_available():
        return min(n_cores, PROCESSES_PER_GPU * torch.cuda.device_count())
    return n_cores


# Tuned verdicts compare each batch size at its best lr: the lr grid is extended wherever a
# best lr sits on its edge (`hydra/sweeper=bsweep_bracket`), so they rest on bracketed optima.
SWEEPER = "hydra/sweeper=bsweep_bracket"


def launcher_overrides(jobs: int) -> list[str]:
    """The `bsweep_fused` launcher: trials that differ only in lr and seed train as one fused
    model, in `jobs` processes. On the 2-core CPU it ran claims_quick in 3.4 min against 5.9 min
    for the joblib launcher with 2 processes (same trials, same records)."""
    return [f"hydra/launcher={NAME}", f"hydra.launcher.n_jobs={jobs}"]


# The studies `bsweep reproduce` runs (quick, --full), and which one judges which claim: N2, N4,
# N5 and N6 need norm=none, weight and lrn arms, which the batch-size study lacks; C6 needs
# gradient cosines, which cost too much to measure on every trial; N3 and N7 vary the data
# (input scaling, order); every other claim is judged on the batch-size study, whose batch
# sizes reach down to 1 (C1, N1's small-batch end).
STUDIES = {False: ("claims_quick", "norm_quick", "direction_quick", "input_quick", "order_quick"),
           True: ("claims", "norm", "direction_quick", "input_quick", "order_quick")}
JUDGED_ON = {"N2": 1, "N4": 1, "N5": 1, "N6": 1, "C6": 2, "N3": 3, "N7": 4}  # index into STUDIES; else 0
# N4 compares the largest lr each norm trains at, so the norm study brackets that too (the
# bracketing sweeper's range criterion, `bracket.RANGE_CRITERION`), beside the best lrs. The
# direction study measures at one setting: nothing to bracket.
STUDY_OVERRIDES = {"norm_quick": ["hydra.sweeper.criteria=[final_test_acc,steps_to_target,trained]"],
                   "norm": ["hydra.sweeper.criteria=[final_test_acc,steps_to_target,trained]"],
                   "direction_quick": ["hydra.sweeper.max_rounds=0"]}


def run_study(name: str, jobs: int, results_dir: Path, extra: list[str], console: Console,
              rebench: bool = False) -> tuple[SweepOutcome, Path]:
    """Sweep one study with fused trials and lr bracketing and time each batch size alone
    (`bsweep bench`): (the sweep's outcome, the study's folder). Finished trials are reused, and
    so are step times this machine measured before for the study (`bench.unmeasured`) unless
    `rebench`."""
    from bsweep.sweep.bench import calibrate, unmeasured
    from bsweep.plan import study_dir

    outcome = run_sweep([f"study={name}", f"results_dir={results_dir}", *launcher_overrides(jobs), SWEEPER,
                         *STUDY_OVERRIDES.get(name, []), *extra], console)
    sdir = study_dir(outcome.planned[0].config)
    # Fused and parallel trials share their measured seconds; the report's time-based claims
    # (C2, C4) use the isolated step time per batch size and norm instead, measured now, alone.
    configs = structured_all([p.config for p in outcome.planned])
    todo = configs if rebench else unmeasured(sdir, configs)
    points = len({(c.batch_size, c.norm.kind) for c in configs})
    if todo:
        console.print(f"calibrating step times ({len({(c.batch_size, c.norm.kind) for c in todo})} of {points} points, "
                      "one at a time)")
        calibrate(sdir, todo, again=True)
    else:
        console.print(f"step times: the {points} points this machine measured before ({sdir / 'bench.parquet'}; "
                      "--rebench to time them again)", highlight=False)
    return outcome, sdir


def write_reports(study_dirs: list[Path], jobs: int, figures: bool = True) -> list[Path]:
    """Each study's report (`analysis.report.write_report`; `figures`: False draws none), in up
    to `jobs` processes at once.
    They are written after every sweep and bench: a report (10-30 s of one core, mostly its
    figures) then shares the machine with no timing, and the reports share the cores. On the
    2-core AVX2-only EPYC the five studies' benches and reports took 179 s one after another,
    one core idle; benches 63 s and reports 89 s two at a time after them."""
    from bsweep.analysis.report import write_report

    write = partial(write_report, figures=figures)
    if jobs <= 1 or len(study_dirs) <= 1:
        return [write(d) for d in study_dirs]
    with ProcessPoolExecutor(min(jobs, len(study_dirs)), mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(write, study_dirs))


def reproduce(
    full: bool, jobs: int, results_dir: Path, extra: list[str], console: Console, rebench: bool = False,
    figures: bool = True,
) -> Reproduction:
    """Run every study of STUDIES (`claims` and `norm` instead of the quick ones when `full`),
    each with its report (`figures`: False draws none), and judge every claim on the study made
    for it (JUDGED_ON)."""
    from bsweep.analysis.report import read_answer, read_verdicts

    swept = [run_study(name, jobs, results_dir, extra, console, rebench) for name in STUDIES[full]]
    predictions = run_predictions(swept[0][0], results_dir, extra, console)
    console.print(f"writing {len(swept)} reports")
    reports = write_reports([sdir for _, sdir in swept], jobs, figures)
    runs = [StudyRun(outcome, sdir, report) for (outcome, sdir), report in zip(swept, reports)]
    tables = [read_verdicts(r.report.parent) for r in runs]  # the reports' own, not computed again
    verdicts = pd.concat([table[(table["claim"].map(lambda claim: JUDGED_ON.get(claim, 0)) == i)].assign(
        study=run.study_dir.name) for i, (run, table) in enumerate(zip(runs, tables))])
    order = {claim: k for k, claim in enumerate(dict.fromkeys(tables[0]["claim"]))}
    verdicts = verdicts.sort_values("claim", key=lambda c: c.map(order), kind="stable")
    return Reproduction(runs, verdicts.reset_index(drop=True), read_answer(runs[0].report.parent), predictions)
