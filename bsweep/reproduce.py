"""`bsweep reproduce`: the claims study end to end: sweep, report, verdicts."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf
from rich.console import Console

from bsweep.launch import SweepOutcome, run_sweep


@dataclass
class Reproduction:
    outcome: SweepOutcome
    study_dir: Path
    report: Path
    verdicts: pd.DataFrame


# Worker processes per GPU. A study of small CNNs keeps a GPU waiting on the host (per-group
# set-up, kernel launches), which processes overlap: on an H100 (16-core host) claims_quick at
# 0.02 of its budget took 34 s in 4 processes against 53 s in one (BENCHMARKS.md, 2026-11-27).
PROCESSES_PER_GPU = 4


def default_jobs() -> int:
    """Parallel processes: one per CPU core on a CPU-only machine (each trial runs one torch
    thread, see Config.threads); PROCESSES_PER_GPU per GPU, at most one per core, with GPUs."""
    import torch

    cores = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if torch.cuda.is_available():
        return min(cores, PROCESSES_PER_GPU * torch.cuda.device_count())
    return cores


# Tuned verdicts compare each batch size at its best lr: the lr grid is extended wherever a
# best lr sits on its edge (`hydra/sweeper=bsweep_bracket`), so they rest on bracketed optima.
SWEEPER = "hydra/sweeper=bsweep_bracket"


def launcher_overrides(jobs: int) -> list[str]:
    """The `bsweep_fused` launcher: trials that differ only in lr and seed train as one fused
    model, in `jobs` processes. On the 2-core CPU it ran claims_quick in 3.4 min against 5.9 min
    for the joblib launcher with 2 processes (same trials, same records)."""
    return ["hydra/launcher=bsweep_fused", f"hydra.launcher.n_jobs={jobs}"]


def reproduce(
    full: bool, jobs: int, results_dir: Path, extra: list[str], console: Console
) -> Reproduction:
    """Run `claims_quick` (or `claims` when `full`) with fused trials and lr bracketing, time each batch size alone
    (`bsweep bench`), write the report, and judge the claims. Finished trials are reused."""
    from bsweep.analysis.report import study_verdicts, write_report
    from bsweep.bench import run_bench, write_bench
    from bsweep.plan import study_dir

    overrides = [f"study={'claims' if full else 'claims_quick'}", f"results_dir={results_dir}"]
    outcome = run_sweep([*overrides, *launcher_overrides(jobs), SWEEPER, *extra], console)
    sdir = study_dir(outcome.planned[0].config)
    # Fused and parallel trials share their measured seconds; the report's time-based claims
    # (C2, C4) use the isolated step time per batch size and norm instead, measured now, alone.
    configs = [OmegaConf.to_object(p.config) for p in outcome.planned]
    console.print(f"calibrating step times ({len({(c.batch_size, c.norm.kind) for c in configs})} points, one at a time)")
    write_bench(sdir, run_bench(configs, (1,)))
    report = write_report(sdir)
    verdicts = study_verdicts(sdir)  # the report's verdicts: calibrated time basis
    return Reproduction(outcome, sdir, report, verdicts)
