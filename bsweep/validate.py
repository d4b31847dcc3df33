"""Check a composed trial config before any training starts; say what is wrong and what is allowed.

OmegaConf already rejects unknown keys and wrong types (the schema in config.py); this module
checks values and combinations the schema cannot express. No torch import: it runs on plans.
"""

from __future__ import annotations

import os
from pathlib import Path

from bsweep.config import (
    DATASETS,
    DEVICES,
    NORMS,
    OPTIMIZERS,
    SCHEDULES,
    Config,
    train_size,
)


class ConfigError(ValueError):
    """A user mistake in the configuration; the message says what is wrong and what is allowed."""


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> list[str]:
    if value in allowed:
        return []
    return [f"{name}={value!r} is not known; choose one of: {', '.join(allowed)}"]


def problems(cfg: Config) -> list[str]:
    """Every problem found in one trial's config (empty when it is fine)."""
    out: list[str] = []
    out += _choice("data.name", cfg.data.name, DATASETS)
    out += _choice("norm.kind", cfg.norm.kind, NORMS)
    out += _choice("optim.name", cfg.optim.name, OPTIMIZERS)
    out += _choice("schedule.name", cfg.schedule.name, SCHEDULES)
    if not (cfg.device in DEVICES or cfg.device.startswith(("cuda:", "mps:"))):
        out.append(f"device={cfg.device!r} is not known; choose one of: {', '.join(DEVICES)}, cuda:N")
    if cfg.data.name in DATASETS:
        n = train_size(cfg.data)
        if not 1 <= cfg.batch_size <= n:
            out.append(f"batch_size={cfg.batch_size} must be between 1 and the training-set size {n}")
    if cfg.data.n_train is not None and cfg.data.n_train <= 0:
        out.append(f"data.n_train={cfg.data.n_train} must be positive (or null for the full split)")
    if cfg.data.n_test is not None and cfg.data.n_test <= 0:
        out.append(f"data.n_test={cfg.data.n_test} must be positive (or null for the full split)")
    if not cfg.lr > 0:
        out.append(f"lr={cfg.lr} must be a number > 0")
    if cfg.norm.kind == "group" and (cfg.norm.groups <= 0 or cfg.model.width % cfg.norm.groups):
        out.append(
            f"norm.groups={cfg.norm.groups} must divide model.width={cfg.model.width}; "
            f"allowed: {', '.join(str(g) for g in range(1, cfg.model.width + 1) if cfg.model.width % g == 0)}"
        )
    if cfg.model.width < 1 or cfg.model.depth < 1:
        out.append(f"model.width={cfg.model.width} and model.depth={cfg.model.depth} must be >= 1")
    if cfg.model.kernel_size < 1 or cfg.model.kernel_size % 2 == 0:
        out.append(f"model.kernel_size={cfg.model.kernel_size} must be odd and >= 1")
    if not 0 < cfg.study.target <= 1:
        out.append(f"study.target={cfg.study.target} must be an accuracy in (0, 1]")
    budget = cfg.study.budget
    if budget.epochs is None and budget.steps is None:
        out.append("study.budget needs epochs or steps (or both); both are null")
    if budget.rule not in ("any", "all"):
        out.append(f"study.budget.rule={budget.rule!r} is not known; choose one of: any, all")
    if budget.epochs is not None and budget.epochs <= 0:
        out.append(f"study.budget.epochs={budget.epochs} must be > 0 (or null)")
    if budget.steps is not None and budget.steps <= 0:
        out.append(f"study.budget.steps={budget.steps} must be > 0 (or null)")
    cadence = cfg.study.eval
    if cadence.growth <= 1 or cadence.first_samples < 1 or cadence.max_gap_samples < 1:
        out.append(
            f"study.eval needs growth > 1 and first_samples, max_gap_samples >= 1 "
            f"(got {cadence.growth}, {cadence.first_samples}, {cadence.max_gap_samples})"
        )
    if not 0 <= cfg.schedule.warmup_fraction < 1:
        out.append(f"schedule.warmup_fraction={cfg.schedule.warmup_fraction} must be in [0, 1)")
    if cfg.threads is not None and cfg.threads < 1:
        out.append(f"threads={cfg.threads} must be >= 1 (or null for torch's default)")
    return out


def _writable(path: Path) -> bool:
    """Whether `path` (which may not exist yet) could be created and written."""
    for parent in (path, *path.parents):
        if parent.exists():
            return parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)
    return False


def check_all(configs: list[Config]) -> None:
    """Raise ConfigError listing every distinct problem across a plan's trials."""
    found: list[str] = []
    for cfg in configs:
        for p in problems(cfg):
            if p not in found:
                found.append(p)
    for results_dir in sorted({c.results_dir for c in configs}):
        if not _writable(Path(results_dir)):
            found.append(f"results_dir={results_dir!r} cannot be written; choose a writable folder")
    if found:
        raise ConfigError("\n".join(found))
