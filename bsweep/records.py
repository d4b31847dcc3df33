"""The on-disk contract of a study: where each file lives, written atomically, read back safely.

    results/<study>/study.yaml                       what defines the study (name, target, budget, cadence)
    results/<study>/trials/<trial_id>/config.yaml    the trial's resolved config
    results/<study>/trials/<trial_id>/env.json       torch version, device, threads, host
    results/<study>/trials/<trial_id>/measurements.parquet
    results/<study>/trials/<trial_id>/status.json    running | complete | diverged | failed | oom

Every file is written to a temporary name in the same folder and renamed over the real one, so a
crash leaves either the old file or the new one, never half of one. `status.json` is written last:
a trial counts as finished only when its status says so *and* its measurements read back.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

STATUSES = ("running", "complete", "diverged", "failed", "oom")
# A diverged trial is a result (the learning rate was too high), so it is kept, not redone.
FINISHED = ("complete", "diverged")

STUDY_FILE = "study.yaml"
CONFIG_FILE = "config.yaml"
ENV_FILE = "env.json"
STATUS_FILE = "status.json"
MEASUREMENTS_FILE = "measurements.parquet"


class DamagedRecord(Exception):
    """A record file exists but cannot be read (truncated, edited, half-copied)."""


def trials_dir(study_dir: Path) -> Path:
    return Path(study_dir) / "trials"


def trial_dir(study_dir: Path, trial_id: str) -> Path:
    return trials_dir(study_dir) / trial_id


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_yaml(path: Path, obj: Any) -> None:
    atomic_write_text(path, yaml.safe_dump(obj, sort_keys=False))


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def write_measurements(tdir: Path, rows: list[dict]) -> None:
    frame = pd.DataFrame(rows)
    atomic_write_bytes(tdir / MEASUREMENTS_FILE, frame.to_parquet(index=False))


def write_status(tdir: Path, status: str, **details: Any) -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    write_json(tdir / STATUS_FILE, {"status": status, "time": time.time(), **details})


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DamagedRecord(f"{path}: {e}") from None


def read_yaml(path: Path) -> dict:
    try:
        obj = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise DamagedRecord(f"{path}: {e}") from None
    if not isinstance(obj, dict):
        raise DamagedRecord(f"{path}: not a mapping")
    return obj


def read_status(tdir: Path) -> dict | None:
    """The trial's status record, or None when the trial has none yet."""
    path = Path(tdir) / STATUS_FILE
    if not path.exists():
        return None
    status = read_json(path)
    if status.get("status") not in STATUSES:
        raise DamagedRecord(f"{path}: unknown status {status.get('status')!r}")
    return status


def read_measurements(tdir: Path) -> pd.DataFrame:
    path = Path(tdir) / MEASUREMENTS_FILE
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise DamagedRecord(f"{path}: {e}") from None


def is_finished(tdir: Path) -> bool:
    """True when the trial has a finished status and measurements that read back."""
    try:
        status = read_status(tdir)
        if status is None or status["status"] not in FINISHED:
            return False
        read_measurements(tdir)
    except DamagedRecord:
        return False
    return True


def trial_state(tdir: Path) -> str:
    """One word for a trial folder: its status, `damaged`, or `new` when it has no status yet."""
    try:
        status = read_status(tdir)
        if status is None:
            return "new"
        if status["status"] in FINISHED:
            read_measurements(tdir)
        return status["status"]
    except DamagedRecord:
        return "damaged"
