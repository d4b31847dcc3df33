"""Models and datasets of a user's own that are wrong in one way each, for tests/test_custom.py
(importable as tests.custom_targets.NAME, as a user's module would be)."""

from __future__ import annotations

import torch
from torch import nn


def float_labels(seed: int = 0):
    """Labels that are not class numbers."""
    x = torch.randn(64, 1, 16)
    return x[:48], torch.rand(48), x[48:], torch.rand(16)


def three_things():
    return torch.zeros(4, 1, 8), torch.zeros(4, dtype=torch.long), torch.zeros(2, 1, 8)


def needs_a_size(size: int):
    return torch.randn(size, 1, 8), torch.zeros(size, dtype=torch.long), torch.randn(8, 1, 8), torch.zeros(8, dtype=torch.long)


class WrongOutput(nn.Module):
    """Ignores num_classes: 3 logits whatever the data."""

    def __init__(self, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.fc = nn.Linear(input_shape[0] * input_shape[1], 3)

    def forward(self, x):
        return self.fc(x.flatten(1))


def not_a_module(input_shape, num_classes):
    return "a string"


class Configurable(nn.Module):
    """Checks what it is given: plain Python values and a built nested `_target_`."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, widths: list, activation: nn.Module,
                 extra: dict) -> None:
        super().__init__()
        assert type(input_shape) is tuple and type(widths) is list and type(extra) is dict, (input_shape, widths, extra)
        assert isinstance(activation, nn.Module)
        n_in = 1
        for s in input_shape:
            n_in *= s
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(n_in, widths[0]), activation, nn.Linear(widths[0], num_classes))

    def forward(self, x):
        return self.net(x)
