"""Datasets of one's own, as bsweep calls them: `data._target_: examples.tiny_data.waves`.

A data target returns (x_train, y_train, x_test, y_test) as tensors or arrays, or (train, test)
as map-style torch Datasets of (input, label). It gets `seed` (data.data_seed) when it asks.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import TensorDataset


def waves(n_samples: int = 1200, length: int = 32, classes: int = 4, noise: float = 0.8,
          test_share: float = 0.25, seed: int = 0):
    """Noisy sine waves, one frequency per class, each of shape (1, length): generated here,
    nothing downloaded. Returns tensors."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(classes, (n_samples,), generator=g)
    t = torch.arange(length) / length
    phase = torch.rand(n_samples, 1, generator=g) * 2 * math.pi
    x = torch.sin(2 * math.pi * (y[:, None] + 1) * t + phase) + noise * torch.randn(n_samples, length, generator=g)
    n_test = int(n_samples * test_share)
    x = x[:, None, :]  # one channel
    return x[n_test:], y[n_test:], x[:n_test], y[:n_test]


def wave_datasets(n_samples: int = 1200, seed: int = 0):
    """The same waves as (train, test) torch Datasets: the other shape a data target may return."""
    x_train, y_train, x_test, y_test = waves(n_samples, seed=seed)
    return TensorDataset(x_train, y_train), TensorDataset(x_test, y_test)
