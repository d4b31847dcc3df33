"""Disk -> tidy DataFrames: one row per trial, one row per measurement. No torch here.

Reads only the on-disk contract of `bsweep.records`, so it works on a study that is still
running, that has failed or damaged trials, or that was copied off a cluster.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bsweep import records
from bsweep.config import FULL_SIZES

TRIAL_COLUMNS = [
    "trial_id", "study", "status", "error", "data", "model", "norm", "optim", "schedule",
    "batch_size", "lr", "seed", "target", "n_train", "budget_epochs", "budget_steps",
    "device", "device_name", "torch_version", "threads", "amp", "channels_last",
]
MEASUREMENT_COLUMNS = [
    "trial_id", "step", "samples", "epoch", "train_seconds", "train_loss", "test_loss",
    "test_acc", "lr",
]


def _trial_row(tdir: Path) -> dict:
    row: dict = {"trial_id": tdir.name, "status": "new", "error": None}
    try:
        status = records.read_status(tdir)
        if status is not None:
            row["status"] = status["status"]
            row["error"] = status.get("error")
            if status["status"] == "running" and not records.owner_alive(status):
                row["status"] = "interrupted"  # its process is gone; the next sweep redoes it
        cfg = records.read_yaml(tdir / records.CONFIG_FILE)
    except records.DamagedRecord as e:
        row.update(status="damaged", error=str(e))
        return row
    data = cfg.get("data", {})
    n_train = data.get("n_train") or FULL_SIZES.get(data.get("name"), (np.nan,))[0]
    budget = cfg.get("study", {}).get("budget", {})
    row.update(
        study=cfg.get("study", {}).get("name"),
        data=data.get("name"),
        model=cfg.get("model", {}).get("name"),
        norm=cfg.get("norm", {}).get("kind"),
        optim=cfg.get("optim", {}).get("name"),
        schedule=cfg.get("schedule", {}).get("name"),
        batch_size=cfg.get("batch_size"),
        lr=cfg.get("lr"),
        seed=cfg.get("seed"),
        target=cfg.get("study", {}).get("target"),
        n_train=n_train,
        budget_epochs=budget.get("epochs"),
        budget_steps=budget.get("steps"),
    )
    env_path = tdir / records.ENV_FILE
    if env_path.exists():
        try:
            env = records.read_json(env_path)
            row.update({k: env.get(k) for k in ("device", "device_name", "torch_version", "threads",
                                                  "amp", "channels_last")})
        except records.DamagedRecord:
            pass
    if row["status"] in records.FINISHED:
        try:
            records.read_measurements(tdir)
        except records.DamagedRecord as e:
            row.update(status="damaged", error=str(e))
    return row


def trial_dirs(study_dir: Path) -> list[Path]:
    tdir = records.trials_dir(Path(study_dir))
    return sorted(p for p in tdir.iterdir() if p.is_dir()) if tdir.is_dir() else []


def load_trials(study_dir: Path) -> pd.DataFrame:
    """One row per trial folder (TRIAL_COLUMNS); status `damaged` for unreadable records and
    `new` for a folder whose trial has not written a status yet."""
    rows = [_trial_row(t) for t in trial_dirs(study_dir)]
    frame = pd.DataFrame(rows, columns=TRIAL_COLUMNS)
    for col in ("batch_size", "seed", "n_train"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int64")
    for col in ("lr", "target", "budget_epochs", "budget_steps"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    return frame


def load_measurements(study_dir: Path) -> pd.DataFrame:
    """Every readable trial's measurements, with its trial_id (MEASUREMENT_COLUMNS)."""
    frames = []
    for tdir in trial_dirs(study_dir):
        if not (tdir / records.MEASUREMENTS_FILE).exists():
            continue
        try:
            m = records.read_measurements(tdir)
        except records.DamagedRecord:
            continue
        frames.append(m.assign(trial_id=tdir.name))
    if not frames:
        return pd.DataFrame(columns=MEASUREMENT_COLUMNS)
    frame = pd.concat(frames, ignore_index=True)
    extra = [c for c in frame.columns if c not in MEASUREMENT_COLUMNS]  # e.g. noise_* columns
    return frame[MEASUREMENT_COLUMNS + extra]


def load_study_config(study_dir: Path) -> dict:
    """The study's study.yaml as a dict ({} when the study has none yet)."""
    path = Path(study_dir) / records.STUDY_FILE
    return records.read_yaml(path) if path.exists() else {}


def load_environment(study_dir: Path) -> dict:
    """The environment of the study's trials: each key's distinct values, joined when several."""
    values: dict[str, set] = {}
    for tdir in trial_dirs(study_dir):
        path = tdir / records.ENV_FILE
        if not path.exists():
            continue
        try:
            env = records.read_json(path)
        except records.DamagedRecord:
            continue
        for k, v in env.items():
            if k not in ("pid", "host"):
                values.setdefault(k, set()).add(str(v))
    return {k: ", ".join(sorted(v)) for k, v in values.items()}
