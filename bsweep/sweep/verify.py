"""`bsweep predict --verify`: a sparse grid chosen from the prediction, and whether it held.

The grid is B*/4, B* and 4 B* (within the training set), each batch size with the three lrs of
the half-decade grid nearest its predicted lr, 2 seeds, stopping at the target, lr bracketed by
the `bsweep_bracket` sweeper on steps to target. While the measured fastest batch size is the
smallest or largest one trained, the next one beyond it (x4) is added, at most MAX_ADDED times.
The trials are ordinary records of the study: `bsweep report` reads them. Each batch size's step
is then timed alone (`bsweep bench`), so the measured answer is the report's own
(`Study.answer`, calibrated seconds), and "within noise" is the verdicts' test.
"""

from __future__ import annotations

import math
from pathlib import Path

from rich.console import Console

from bsweep.config import train_size
from bsweep.plan import structured
from bsweep.sweep.bracket import nearest_lrs

MAX_ADDED = 2
SEEDS = (0, 1)
GRID_STEP = 4  # between the verified batch sizes, as claims_quick's grid


def first_sizes(b_star: int, n_train: int) -> list[int]:
    return sorted({b for b in (b_star // GRID_STEP, b_star, b_star * GRID_STEP) if 1 <= b <= n_train})


def sweep_overrides(overrides: list[str], batch_size: int, lrs: list[float], jobs: int) -> list[str]:
    from bsweep.sweep.executor import NAME
    from bsweep.sweep.predict import with_default_study

    return [*with_default_study(overrides), f"batch_size={batch_size}", "lr=" + ",".join(f"{lr:g}" for lr in lrs),
            "seed=" + ",".join(map(str, SEEDS)), "study.budget.stop_at_target=true", "hydra/sweeper=bsweep_bracket",
            "hydra.sweeper.criteria=[steps_to_target]", f"hydra/launcher={NAME}", f"hydra.launcher.n_jobs={jobs}"]


def measured_answer(study_path: Path, prediction: dict, trial_ids: set[str] | None = None) -> dict:
    """The study's measured answer at the prediction's setting (its report's numbers): the
    fastest batch size, the batch sizes within noise of it, B_crit with its interval, seconds.
    `trial_ids`: only these trials (the verification's, in a study that has others)."""
    import pandas as pd

    from bsweep.analysis.predicted import matches
    from bsweep.analysis.study import Study

    study = Study.load(study_path)
    if trial_ids is not None:
        keep = study.trials["trial_id"].isin(trial_ids)
        study = Study(study.trials[keep], study.measurements[study.measurements["trial_id"].isin(trial_ids)],
                      config=study.config, environment=study.environment, bench=study.bench, path=study.path)
    # the points with their config values: the answer names a point by its label only
    rows = [r for _, r in study.answer_points.iterrows() if matches(prediction, r)]
    if not rows:
        return {"batch_size": math.nan, "within": [], "b_crit": math.nan, "b_crit_lo": math.nan,
                "b_crit_hi": math.nan, "seconds": math.nan}
    r = rows[0]
    ties = [float(t) for t in str(r["time_ties"]).split(",") if t.strip()] if not pd.isna(r["time_ties"]) else []
    return {"batch_size": float(r["time_batch_size"]), "within": sorted([float(r["time_batch_size"]), *ties]),
            "b_crit": float(r["b_crit"]), "b_crit_lo": float(r["b_crit_lo"]), "b_crit_hi": float(r["b_crit_hi"]),
            "seconds": float(r["time_seconds"]), "lr": float(r["time_lr"])}


def calibrate(outcome) -> float:
    """Time the sweep's batch sizes alone (`bsweep bench`), as `bsweep reproduce` does: fused
    trials share their seconds, and the comparison reads calibrated seconds, as the grid's
    report does. Returns the seconds it took."""
    import time

    from bsweep.plan import structured_all, study_dir
    from bsweep.sweep.bench import calibrate

    began = time.perf_counter()
    configs = structured_all([p.config for p in outcome.planned])
    calibrate(study_dir(configs[0]), configs)
    return time.perf_counter() - began


def verify(prediction: dict, overrides: list[str], folder: Path, console: Console) -> dict:
    """Train the sparse grid, compare, and write the comparison into predict.json."""
    from bsweep.analysis.prediction import lr_at, verify_held
    from bsweep.placement import cores
    from bsweep.plan import single, study_dir
    from bsweep.sweep.launch import run_sweep
    from bsweep.sweep.predict import with_default_study, write_prediction

    b_star = prediction["optimum"]["batch_size"]
    if not (isinstance(b_star, (int, float)) and math.isfinite(b_star)):
        prediction["verify"] = {"held": False, "text": "nothing to verify: no predicted optimum"}
        write_prediction(prediction, folder)
        return prediction
    cfg = structured(single(with_default_study(overrides)).config)
    n_train = prediction.get("n_train") or train_size(cfg.data)
    pilot, rule = prediction["pilot"], prediction["lr_rule"]["exponent"]
    sizes, added = first_sizes(int(b_star), n_train), 0
    trained: list[int] = []
    ids: set[str] = set()
    cost = {"wall_seconds": 0.0, "train_seconds": 0.0, "eval_seconds": 0.0}
    while True:
        for b in sizes:
            if b not in trained:
                lrs = nearest_lrs(lr_at(b, pilot["batch_size"], pilot["lr"], rule))
                console.print(f"verifying batch {b}: lrs {', '.join(f'{lr:g}' for lr in lrs)}, seeds 0 and 1",
                              highlight=False)
                outcome = run_sweep(sweep_overrides(overrides, b, lrs, max(1, cores())), console)
                ids |= set(outcome.states)
                trained.append(b)
                split = outcome.time_split
                if split is not None:
                    cost["wall_seconds"] += split.wall
                    cost["train_seconds"] += split.train
                    cost["eval_seconds"] += split.evaluation
                cost["bench_seconds"] = cost.get("bench_seconds", 0.0) + calibrate(outcome)
        measured = measured_answer(study_dir(cfg), prediction, ids)
        fastest = measured["batch_size"]
        beyond = fastest // GRID_STEP if fastest == min(sizes) else fastest * GRID_STEP if fastest == max(sizes) else 0
        if not math.isfinite(fastest) or added >= MAX_ADDED or not 1 <= beyond <= n_train or beyond in sizes:
            break
        sizes, added = sorted([*sizes, int(beyond)]), added + 1
    held = verify_held({"batch_size": b_star, "b_crit": prediction["b_crit"]["estimate"]}, measured)
    prediction["verify"] = {"batch_sizes": trained, "measured": measured, **held, "cost": cost}
    write_prediction(prediction, folder)
    return prediction
