"""A model of one's own, as bsweep builds it: `model._target_: examples.tiny_models.TinyConvNet`.

bsweep passes `input_shape`, `num_classes` and `norm_layer` because the signature names them;
`channels` comes from the config (model.channels).
"""

from __future__ import annotations

from typing import Callable

from torch import nn


class TinyConvNet(nn.Module):
    """Two conv -> norm -> ReLU blocks over 1-D or 2-D inputs, global average pool, linear."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, channels: int = 16,
                 norm_layer: Callable[[int, int], nn.Module] | None = None) -> None:
        super().__init__()
        dims = len(input_shape) - 1  # (C, L): 1-D convs; (C, H, W): 2-D
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        pool = nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1)
        norm = norm_layer or (lambda c, d: nn.Identity())
        self.features = nn.Sequential(
            conv(input_shape[0], channels, 3, padding=1), norm(channels, dims), nn.ReLU(),
            conv(channels, channels, 3, stride=2, padding=1), norm(channels, dims), nn.ReLU(),
            pool, nn.Flatten(),
        )
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


class PlainMLP(nn.Module):
    """A model that takes no norm_layer: bsweep refuses to sweep `norm` over it."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden: int = 32) -> None:
        super().__init__()
        n_in = 1
        for s in input_shape:
            n_in *= s
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.net(x)
