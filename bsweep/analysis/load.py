"""Disk -> tidy DataFrames: one row per trial, one row per measurement. No torch here.

Reads only the on-disk contract of `bsweep.records`, so it works on a study that is still
running, that has failed or damaged trials, or that was copied off a cluster.

The study's grid is read from the trials themselves: every trial's resolved config is flattened
to dotted keys (`model.width`, `optim.momentum`, ...; runtime keys, `noise.*` and `study.eval.*`
left out, a key an older trial lacks taking its schema default). A key that varies across the
study's trials is *scientific* unless it is a nuisance key (lr, seed, and any other key the
study's `study.nuisance` names: `study_nuisance`);
a key that does not vary is *fixed* (`grid_keys`). Each varying scientific key becomes a column
of the trial table under its dotted name, so metrics, verdicts and plots group by it
(`metrics.point_columns`) instead of pooling it with the seeds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import bsweep.records as records
from bsweep.config import (FULL_SIZES, NOT_GRID, NUISANCE_KEYS, OWN_DATA_KEYS, RUNTIME_KEYS, TARGET_NODES, flatten,
                           grid_defaults, is_under)

TRIAL_COLUMNS = [
    "trial_id", "study", "status", "error", "data", "model", "norm", "optim", "schedule",
    "batch_size", "lr", "seed", "target", "n_train", "budget_epochs", "budget_steps",
    "device", "device_name", "torch_version", "threads", "amp", "channels_last",
]
MEASUREMENT_COLUMNS = [
    "trial_id", "step", "samples", "epoch", "train_seconds", "eval_seconds", "train_loss", "test_loss",
    "test_acc", "val_loss", "val_acc", "heldout_loss", "heldout_acc", "lr",
]


# Grid keys already shown under a short column name (the scientific point's first columns).
SHORT_COLUMNS = {"data.name": "data", "model.name": "model", "norm.kind": "norm", "optim.name": "optim",
                 "schedule.name": "schedule", "batch_size": "batch_size", "lr": "lr", "seed": "seed"}
SCHEMA_DEFAULTS = grid_defaults()
# Column-name prefix of a nuisance key other than lr and seed (`study.nuisance`), so that a
# frame says by its column names alone which columns are scientific (dotted names) and which
# the tuned view optimises over (``nuisance:optim.momentum``).
NUISANCE_PREFIX = "nuisance:"


def config_key(column: str) -> str:
    """A column's config key (a nuisance column's prefix dropped)."""
    return column.removeprefix(NUISANCE_PREFIX)


def grid_values(config: dict) -> dict[str, object]:
    """A trial's place in its study's grid: its config as dotted keys, runtime keys, `noise.*`
    and `study.eval.*` left out, keys it lacks (an older trial) at their schema default."""
    flat = {k: v for k, v in flatten(config).items() if not is_under(k, RUNTIME_KEYS + NOT_GRID)}
    defaults = dict(SCHEMA_DEFAULTS)
    for node in TARGET_NODES:  # a `_target_` node has its own keys: none of the built-in's
        if f"{node}._target_" in flat:
            own = OWN_DATA_KEYS if node == "data" else ()
            defaults = {k: v for k, v in defaults.items() if not is_under(k, (node,)) or k.split(".", 1)[1] in own}
            # its name is its target (as `plan.structured` names it): a study of the built-in
            # CNN and a model of one's own varies model.name, not two half-present keys
            flat[f"{node}.name"] = flat.pop(f"{node}._target_")
    return {**defaults, **flat}


@dataclass
class GridKeys:
    """A study's config keys by role, each with its values (sorted)."""

    scientific: dict[str, list]  # varying keys that define a point (dotted names)
    nuisance: dict[str, list]  # varying keys the tuned view optimises over (lr) or averages (seed)
    fixed: dict[str, object]  # keys with one value across the study, and that value

    def table(self) -> pd.DataFrame:
        """One row per key: key, role, values (as the report shows them)."""
        rows = [(k, role, ", ".join(map(str, v))) for role, keys in (("scientific", self.scientific),
                ("nuisance", self.nuisance)) for k, v in keys.items()]
        rows += [(k, "fixed", str(v)) for k, v in self.fixed.items()]
        return pd.DataFrame(rows, columns=["key", "role", "values"])


def grid_keys(grids: list[dict[str, object]], nuisance: tuple[str, ...] = NUISANCE_KEYS) -> GridKeys:
    """Which keys vary across trials (`grid_values` of each), and which of those are nuisance."""
    seen: dict[str, dict[str, object]] = {}
    for grid in grids:
        for key, value in grid.items():
            seen.setdefault(key, {})[json.dumps(value, sort_keys=True, default=str)] = value
    out = GridKeys({}, {}, {})
    for key in sorted(seen):
        values = list(seen[key].values())
        if len(values) == 1:
            out.fixed[key] = values[0]
        else:
            values = sorted(values, key=lambda v: (str(type(v)), v if isinstance(v, (int, float, str)) else str(v)))
            (out.nuisance if key in nuisance else out.scientific)[key] = values
    return out


def study_nuisance(configs: list[dict], extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The study's nuisance keys: lr and seed, every key in its trials' `study.nuisance`, and
    `extra` (e.g. from `bsweep report --nuisance`), in that order, each once."""
    keys = list(NUISANCE_KEYS)
    for key in [k for c in configs for k in c.get("study", {}).get("nuisance", [])] + list(extra):
        if key not in keys:
            keys.append(key)
    return tuple(keys)


def _read_trial(tdir: Path) -> tuple[dict, pd.DataFrame | None]:
    """The trial's row (with `_grid` and `_nuisance` for `load_trials`) and, when it is
    finished, its measurements as read to check them."""
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
        return row, None
    data = cfg.get("data", {})
    n_train = data.get("n_train") or FULL_SIZES.get(data.get("name"), (np.nan,))[0]
    budget = cfg.get("study", {}).get("budget", {})
    row["_grid"] = grid_values(cfg)
    row["_nuisance"] = cfg.get("study", {}).get("nuisance", [])
    row.update(
        study=cfg.get("study", {}).get("name"),
        data=data.get("name") or data.get("_target_"),
        model=cfg.get("model", {}).get("name") or cfg.get("model", {}).get("_target_"),
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
    measurements = None
    if row["status"] in records.FINISHED:
        try:
            measurements = records.read_measurements(tdir).assign(trial_id=tdir.name)
        except records.DamagedRecord as e:
            row.update(status="damaged", error=str(e))
    return row, measurements


# A trial's record files whose change means it must be read again (see `_stamp`).
_STAMPED = (records.STATUS_FILE, records.MEASUREMENTS_FILE, records.CONFIG_FILE, records.ENV_FILE)


def _stamp(tdir: Path) -> tuple:
    """(mtime, size, inode) of each of the trial's record files, None for a missing one:
    records are written to a temporary file and renamed into place, so a rewrite changes at
    least the inode."""
    out = []
    for name in _STAMPED:
        try:
            st = (tdir / name).stat()
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append(None)
    return tuple(out)


class RecordCache:
    """Each finished trial's row and measurements as `load_trials` and `load_measurements`
    read them, kept while its record files are unchanged (`_stamp`), for a process that reads
    a growing study again and again. The bracketing sweeper reads the study after every point
    that ends; read whole, a study costs seconds a read (docs/performance.md, "Analysis"), on
    cores its workers train on. A trial not finished (running, failed,
    damaged, new) is read afresh every time: a `running` one turns `interrupted` when its owner
    dies, with no file changed."""

    def __init__(self) -> None:
        self._entries: dict[Path, tuple[tuple, dict, pd.DataFrame]] = {}

    def read(self, tdir: Path) -> tuple[dict, pd.DataFrame | None]:
        """The trial's row (a copy: callers change it) and its measurements if finished."""
        stamp = _stamp(tdir)
        hit = self._entries.get(tdir)
        if hit is not None and hit[0] == stamp:
            return dict(hit[1]), hit[2]
        row, measurements = _read_trial(tdir)
        if row["status"] in records.FINISHED:
            self._entries[tdir] = (stamp, dict(row), measurements)
        else:
            self._entries.pop(tdir, None)
        return row, measurements


def trial_dirs(study_dir: Path) -> list[Path]:
    tdir = records.trials_dir(Path(study_dir))
    return sorted(p for p in tdir.iterdir() if p.is_dir()) if tdir.is_dir() else []


def load_trials(study_dir: Path, nuisance: tuple[str, ...] = (), cache: RecordCache | None = None) -> pd.DataFrame:
    """One row per trial folder (TRIAL_COLUMNS, then a column per varying scientific key under
    its dotted name, e.g. `model.width`, then one per varying nuisance key other than lr and
    seed under NUISANCE_PREFIX, e.g. `nuisance:optim.momentum`); status `damaged` for
    unreadable records and `new` for a folder whose trial has not written a status yet.
    `nuisance`: keys to treat as nuisance besides those the trials' `study.nuisance` names;
    `cache`: finished trials read before and unchanged are not read again."""
    cache = RecordCache() if cache is None else cache
    rows = [cache.read(t)[0] for t in trial_dirs(study_dir)]
    keys = study_nuisance([{"study": {"nuisance": r.pop("_nuisance", [])}} for r in rows], nuisance)
    roles = grid_keys([r["_grid"] for r in rows if "_grid" in r], keys)
    extra = [k for k in roles.scientific if k not in SHORT_COLUMNS]
    tuned = [k for k in roles.nuisance if k not in SHORT_COLUMNS]
    for r in rows:
        grid = r.pop("_grid", {})
        r.update({k: grid.get(k) for k in extra})
        r.update({NUISANCE_PREFIX + k: grid.get(k) for k in tuned})
    frame = pd.DataFrame(rows, columns=TRIAL_COLUMNS + extra + [NUISANCE_PREFIX + k for k in tuned])
    for col in ("batch_size", "seed", "n_train"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int64")
    for col in ("lr", "target", "budget_epochs", "budget_steps"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    return frame


def load_measurements(study_dir: Path, cache: RecordCache | None = None) -> pd.DataFrame:
    """Every readable trial's measurements, with its trial_id (MEASUREMENT_COLUMNS); `cache`:
    as for `load_trials` (a finished trial's measurements are the ones its row was checked on)."""
    frames = []
    for tdir in trial_dirs(study_dir):
        if not (tdir / records.MEASUREMENTS_FILE).exists():
            continue
        finished = cache.read(tdir)[1] if cache is not None else None
        if finished is not None:
            frames.append(finished)
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
    # trials from before the test set's halves were recorded lack val_* / heldout_*: NaN
    return frame.reindex(columns=MEASUREMENT_COLUMNS + extra)


def load_trials_and_measurements(study_dir: Path, nuisance: tuple[str, ...] = (),
                                 cache: RecordCache | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`load_trials` and `load_measurements` through one cache (`cache`, or a new one): each
    finished trial's measurements are read once, where its row checks them."""
    cache = RecordCache() if cache is None else cache
    return load_trials(study_dir, nuisance, cache), load_measurements(study_dir, cache)


def load_grid_keys(study_dir: Path, nuisance: tuple[str, ...] = ()) -> GridKeys:
    """The study's scientific, nuisance and fixed keys, from its readable trial configs
    (`nuisance`: as for `load_trials`)."""
    configs = []
    for tdir in trial_dirs(study_dir):
        try:
            configs.append(records.read_yaml(tdir / records.CONFIG_FILE))
        except records.DamagedRecord:
            continue
    return grid_keys([grid_values(c) for c in configs], study_nuisance(configs, nuisance))


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
