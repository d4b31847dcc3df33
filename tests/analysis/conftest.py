"""Hand-made tidy frames in the shape of ``bsweep.analysis.load``'s output.

``make_study`` builds a whole synthetic study from closed-form learning curves, so tests know
the answers: test accuracy at epoch e is ``ceiling * (1 - exp(-e / tau))``, training seconds
are samples / throughput.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import product

import numpy as np
import pandas as pd
import pytest

N_TRAIN = 1000  # training-set size of the synthetic studies, samples
EVAL_EVERY = 100  # evaluation cadence, samples (identical for every batch size, as in the design)


def trial_row(trial_id: str, **overrides: object) -> dict[str, object]:
    """One row of load_trials() with defaults for every column."""
    row: dict[str, object] = {
        "trial_id": trial_id,
        "study": "synthetic",
        "status": "complete",
        "error": None,
        "data": "mnist1d",
        "model": "cnn",
        "norm": "batch",
        "optim": "sgd",
        "schedule": "constant",
        "batch_size": 32,
        "lr": 0.1,
        "seed": 0,
        "target": 0.8,
        "n_train": N_TRAIN,
        "budget_epochs": 10.0,
        "budget_steps": np.nan,
        "device": "cpu",
        "torch_version": "2.4.0",
    }
    row.update(overrides)
    return row


def measurement_rows(
    trial_id: str, batch_size: int, accs: Sequence[float], throughput: float = 1000.0
) -> list[dict[str, object]]:
    """Measurements every EVAL_EVERY samples, with the given test accuracies (first is step 0)."""
    rows = []
    for i, acc in enumerate(accs):
        samples = i * EVAL_EVERY
        rows.append(
            {
                "trial_id": trial_id,
                "step": samples // batch_size,
                "samples": samples,
                "epoch": samples / N_TRAIN,
                "train_seconds": samples / throughput,
                "train_loss": np.nan if i == 0 else 1.0 - acc,
                "test_loss": 1.0 - acc,
                "test_acc": acc,
                "lr": 0.1,
            }
        )
    return rows


Curve = Callable[[str, int, float, int], float]


def make_study(
    ceiling: Curve,
    tau_epochs: Curve,
    throughput: Callable[[str, int], float] = lambda norm, bs: 1000.0 * bs**0.5,
    batch_sizes: Sequence[int] = (2, 8, 32, 128),
    lrs: Sequence[float] = (0.1,),
    norms: Sequence[str] = ("batch",),
    seeds: Sequence[int] = (0, 1, 2),
    epochs: float = 10.0,
    target: float = 0.8,
    diverges: Callable[[str, int, float, int], bool] = lambda norm, bs, lr, seed: False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A synthetic study: trials and measurements from closed-form curves.

    ``ceiling(norm, batch_size, lr, seed)`` is the accuracy the curve tends to,
    ``tau_epochs(...)`` its time constant in epochs, ``throughput(norm, batch_size)`` samples/s.
    A diverging trial gets status "diverged", accuracy 0.1 and an inf loss at its last row.
    """
    trials, measurements = [], []
    n_evals = int(epochs * N_TRAIN / EVAL_EVERY)
    for norm, bs, lr, seed in product(norms, batch_sizes, lrs, seeds):
        trial_id = f"{norm}-{bs}-{lr}-{seed}"
        diverged = diverges(norm, bs, lr, seed)
        trials.append(
            trial_row(
                trial_id,
                norm=norm,
                batch_size=bs,
                lr=lr,
                seed=seed,
                target=target,
                budget_epochs=epochs,
                status="diverged" if diverged else "complete",
            )
        )
        top, tau, speed = ceiling(norm, bs, lr, seed), tau_epochs(norm, bs, lr, seed), throughput(norm, bs)
        for i in range(n_evals + 1):
            samples = i * EVAL_EVERY
            epoch = samples / N_TRAIN
            acc = 0.1 if diverged else top * (1.0 - np.exp(-epoch / tau))
            loss = np.inf if diverged and i == n_evals else 1.0 - acc
            measurements.append(
                {
                    "trial_id": trial_id,
                    "step": samples // bs,
                    "samples": samples,
                    "epoch": epoch,
                    "train_seconds": samples / speed,
                    "train_loss": np.nan if i == 0 else loss,
                    "test_loss": loss,
                    "test_acc": acc,
                    "lr": lr,
                }
            )
    return pd.DataFrame(trials), pd.DataFrame(measurements)


@pytest.fixture
def study_factory() -> Callable[..., tuple[pd.DataFrame, pd.DataFrame]]:
    return make_study


@pytest.fixture
def trial_row_factory() -> Callable[..., dict[str, object]]:
    return trial_row


@pytest.fixture
def measurement_factory() -> Callable[..., list[dict[str, object]]]:
    return measurement_rows
