"""A trial's model: the small CNN of a study or a model of the user's own (`make_model`), and
`make_norm`: the normalization layers of section 3.6."""

from __future__ import annotations

import torch
from torch import nn

from bsweep.config import MODELS, NORMS, ModelConfig, NormConfig
from bsweep.targets import given, locate, target_arguments


def make_norm(cfg: NormConfig, channels: int, dims: int) -> nn.Module:
    """The normalization layer that follows a conv with `channels` outputs over `dims` (1 or 2) axes.

    `weight` normalization is not a layer after the conv but a reparametrization of the conv
    itself (see `make_cnn`), so here it is the identity, like `none`.
    """
    kind = cfg.kind
    if kind in ("none", "weight"):
        return nn.Identity()
    if kind == "batch":
        cls = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
        return cls(channels, momentum=cfg.bn_momentum)
    if kind == "group":
        if channels % cfg.groups:
            raise ValueError(f"norm.groups={cfg.groups} does not divide {channels} channels")
        return nn.GroupNorm(cfg.groups, channels)
    if kind == "layer":  # one group: statistics over all channels and positions of a sample
        return nn.GroupNorm(1, channels)
    if kind == "instance":  # one channel per group: statistics over positions only
        return nn.GroupNorm(channels, channels)
    if kind == "lrn":
        return ChannelLRN(channels, cfg.lrn_size)
    raise ValueError(f"unknown norm {kind!r}; choose one of {', '.join(NORMS)}")


class ChannelLRN(nn.Module):
    """Local response norm across channels, `nn.LocalResponseNorm`'s arithmetic (the same window,
    alpha / size, k and beta, AlexNet's defaults as torch's): y = x / (k + alpha / size *
    sum of x^2 over `size` neighbouring channels)^beta.

    The window sum is one matmul with a (C, C) band matrix instead of torch's zero-padded
    average pool over a 3-D view: about 3x faster on CPU (docs/performance.md). Results agree
    to float32 rounding (2e-6 at activations of scale 3). The backward is written out
    (`_BandLRN`): autograd's own walked back through five elementwise ops and the matmul, and
    took about 1.5x as long."""

    def __init__(self, channels: int, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        self.channels, self.size, self.alpha, self.beta, self.k = channels, size, alpha, beta, k
        offset = torch.arange(channels)[None, :] - torch.arange(channels)[:, None]  # j - i
        # torch pads size // 2 channels before and (size - 1) // 2 after: the same window
        band = (offset >= -(size // 2)) & (offset <= (size - 1) // 2)
        self.register_buffer("band", band.float(), persistent=False)  # 0 / 1: exact in any dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        args = (x, self.band.to(x.dtype), self.alpha / self.size, self.k, self.beta)
        if torch.is_grad_enabled() and x.requires_grad:
            return _BandLRN.apply(*args)
        return x * _BandLRN.terms(*args)[1]

    def extra_repr(self) -> str:
        return f"{self.channels}, size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class _BandLRN(torch.autograd.Function):
    """y = x * d^-beta with d = k + a * (band @ x^2) over the channels (a = alpha / size), and
    its gradient: dL/dx_j = g_j d_j^-beta - 2 a beta x_j sum_i band[i, j] g_i x_i d_i^(-beta-1).
    Elementwise results take x's (and the gradient's) memory layout, channels_last included."""

    @staticmethod
    def terms(x: torch.Tensor, band: torch.Tensor, a: float, k: float, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(d, d^-beta) in x's shape; y = x * d^-beta. Evaluation calls this alone: a Function's
        own overhead costs more than it saves where nothing is kept for a backward."""
        squares = (x * x).reshape(*x.shape[:2], -1)  # (B, C, positions)
        d = torch.matmul(band, squares).mul_(a).add_(k).view(x.shape)
        # d^-beta as exp(-beta log d) (d >= k > 0): torch's pow with a fractional exponent was
        # most of an LRN layer's evaluation, exp and log less than half of it (docs/performance.md);
        # they agree to 1e-7 relative
        return d, d.log().mul_(-beta).exp_()

    @staticmethod
    def forward(ctx, x: torch.Tensor, band: torch.Tensor, a: float, k: float, beta: float) -> torch.Tensor:
        d, r = _BandLRN.terms(x, band, a, k, beta)
        ctx.save_for_backward(x, d, r, band)
        ctx.a_beta = a * beta
        return x * r

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, d, r, band = ctx.saved_tensors
        t = (grad * x).mul_(r).div_(d).reshape(*x.shape[:2], -1)
        u = torch.matmul(band.t(), t).view(x.shape)
        return grad * r - u.mul_(x).mul_(2 * ctx.a_beta), None, None, None, None


def conv_output_length(length: int, kernel_size: int, stride: int, padding: int) -> int:
    return (length + 2 * padding - kernel_size) // stride + 1


class SmallCNN(nn.Module):
    """depth x (conv -> norm -> ReLU), stride 2 after the first block, then flatten -> linear.

    Signals (C, L) run through 2-D layers over a height of 1 (kernels (1, k)): the arithmetic of
    1-D convolutions, and the same initial weights (the fan-in is C x k either way and the
    weights are drawn in the same order), but the 2-D kernels take the channels_last layout,
    where oneDNN's convolution and batch norm run 2-3x faster at large batches (a training step
    of the default CNN at batch 1024: docs/performance.md). `perf.channels_last=auto` times both
    layouts and keeps the faster."""

    def __init__(
        self, input_shape: tuple[int, ...], n_classes: int, model: ModelConfig, norm: NormConfig
    ) -> None:
        super().__init__()
        dims = len(input_shape) - 1  # (C, L): signals, (C, H, W): images
        if dims not in (1, 2):
            raise ValueError(f"input shape {input_shape} is neither (C, L) nor (C, H, W)")
        self.signal = dims == 1
        # A conv followed by a norm that re-centres each channel gets no use from a bias.
        bias = norm.kind in ("none", "weight", "lrn")
        layers: list[nn.Module] = []
        channels, spatial = input_shape[0], list(input_shape[1:])
        k, pad = model.kernel_size, model.kernel_size // 2
        for i in range(model.depth):
            stride = 1 if i == 0 else 2
            if self.signal:
                conv = nn.Conv2d(channels, model.width, (1, k), (1, stride), (0, pad), bias=bias)
            else:
                conv = nn.Conv2d(channels, model.width, k, stride, pad, bias=bias)
            if norm.kind == "weight":
                conv = nn.utils.parametrizations.weight_norm(conv)
            layers += [conv, make_norm(norm, model.width, 2), nn.ReLU()]
            channels = model.width
            spatial = [conv_output_length(s, k, stride, pad) for s in spatial]
        self.features = nn.Sequential(*layers)
        n_features = channels
        for s in spatial:
            n_features *= s
        self.classifier = nn.Linear(n_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(flatten(self.features(as_image(x, self.signal))))


class _FlattenChannelsLast(torch.autograd.Function):
    """flatten(h, 1) of a channels_last h (a copy, in (C, H, W) order, as the classifier reads
    it) whose gradient goes back channels_last, like h.

    A plain flatten sends back a contiguous gradient, and the last ReLU's backward then reads
    two layouts at once, a visible share of a training step at batch 1024 (docs/performance.md).
    The values are the same either way: only the gradient's memory order changes, so training is
    bitwise unchanged."""

    @staticmethod
    def forward(ctx, h: torch.Tensor) -> torch.Tensor:
        ctx.shape = h.shape
        return h.flatten(1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.reshape(ctx.shape).contiguous(memory_format=torch.channels_last)


def flatten(h: torch.Tensor) -> torch.Tensor:
    """(B, features) from a batch of feature maps, its gradient in the maps' own layout."""
    return _FlattenChannelsLast.apply(h) if channels_last_only(h) else torch.flatten(h, 1)


def channels_last_only(t: torch.Tensor) -> bool:
    """Whether t is a 4-D channels_last tensor and not also contiguous (a tensor whose channels
    or spatial dimensions are all of size 1 can be both: its layouts are the same memory)."""
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def as_image(x: torch.Tensor, signal: bool) -> torch.Tensor:
    """A batch of signals (B, C, L) as images of height 1 (B, C, 1, L); images, and signals
    already made images (`engine.as_input`), as they are."""
    return x.unsqueeze(2) if signal and x.dim() == 3 else x


def make_cnn(
    input_shape: tuple[int, ...], n_classes: int, model: ModelConfig, norm: NormConfig
) -> SmallCNN:
    if model.name not in MODELS:
        raise ValueError(f"unknown model {model.name!r}; choose one of {', '.join(MODELS)}")
    return SmallCNN(input_shape, n_classes, model, norm)


class ModelError(ValueError):
    """A model of the user's own that cannot serve as given (what it returned, what it should)."""


def make_model(input_shape: tuple[int, ...], n_classes: int, model: ModelConfig, norm: NormConfig) -> nn.Module:
    """The trial's model: the built-in CNN, or `model.target` called with the config's keyword
    arguments (`targets.target_arguments`: plain values, nested `_target_` nodes built) and,
    where its signature names them, `input_shape` (one sample's shape, a tuple), `num_classes`
    and `norm_layer` (a factory `norm_layer(channels, dims)` of
    the study's `norm`). With norm=weight, norm_layer gives the identity and bsweep
    weight-normalizes the model's layers instead (`weight_normed_layers`)."""
    if model.target is None:
        return make_cnn(input_shape, n_classes, model, norm)
    fn = locate(model.target, "model._target_")
    offered = {"input_shape": tuple(input_shape), "num_classes": n_classes,
               "norm_layer": lambda channels, dims=2: make_norm(norm, channels, dims)}
    net = fn(**target_arguments(model.kwargs), **given(fn, offered))
    if not isinstance(net, nn.Module):
        raise ModelError(f"model._target_={model.target} returned a {type(net).__name__}, not a torch.nn.Module")
    if norm.kind == "weight":
        for layer in weight_normed_layers(net):
            nn.utils.parametrizations.weight_norm(layer)
    return net


def weight_normed_layers(net: nn.Module) -> list[nn.Module]:
    """The layers norm=weight reparametrizes in a model of the user's own: its convs, as in
    the built-in CNN (whose classifier stays plain); a model without convs, its linear layers
    but the last (the classifier)."""
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    return convs or [m for m in net.modules() if isinstance(m, nn.Linear)][:-1]
