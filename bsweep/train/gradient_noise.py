"""Gradient noise scale: B_simple = tr(Sigma) / |G|^2, measured at fixed weights.

McCandlish et al. 2018, "An Empirical Model of Large-Batch Training", section 2 and appendix A.
G is the true (full-data) gradient, Sigma the covariance of the per-example gradients. The
mean gradient of a batch of B examples drawn i.i.d. has

    E |G_B|^2 = |G|^2 + tr(Sigma) / B,

so squared gradient norms at two batch sizes B_small < B_big give unbiased estimates of both:

    |G|^2      = (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)
    tr(Sigma)  = (|G_small|^2 - |G_big|^2) / (1 / B_small - 1 / B_big)

Their ratio is not unbiased (a ratio of noisy estimates never is), so each is smoothed on its
own over measurement points (``NoiseScaleSmoother``) and the ratio taken of the smoothed values,
as in the paper. B_simple estimates the critical batch size B_crit of the fitted model
S(B) = S_min (1 + B_crit / B) (``bsweep.analysis.critical``): the batch size where a larger batch
stops paying for itself in steps.

Three layers, each usable on its own:

1. pure functions on squared gradient norms (no torch): ``unbiased_grad_norm_sq``,
   ``unbiased_trace_sigma``, ``simple_noise_scale``;
2. ``measure_noise_scale(model, loss_fn, x, y, b_small, b_big, n_pairs, generator)``: the
   gradients at the model's current weights, leaving the model exactly as it was;
3. ``NoiseScaleSmoother`` (EMA of both estimates) and ``NoiseScaleTracker``, which the training
   loop calls at measurement points and which returns the columns to add to the measurement row.

**Cost.** One measurement is ``2 * n_pairs`` forward+backward passes: ``n_pairs`` of ``b_big``
examples and ``n_pairs`` of ``b_small`` examples, i.e. ``n_pairs * (b_big + b_small)`` examples
of compute, about ``n_pairs * (b_big + b_small) / B`` training steps' worth at training batch
size B (less at small B, where a step is overhead-bound). With the tracker's defaults
(b_small 16, b_big 512, 4 pairs, every 4th measurement point) that is 2112 examples per noise
point; on the default evaluation grid (5 % growth) a claims_quick trial has 69-110 measurement
points, so 18-28 noise points, i.e. 38k-59k examples: 10-15 epochs of mnist1d's 4000 training
examples, on top of the trial's own 6+. That is why it is off by default. The time is spent while the training clock is stopped (at a measurement
point), so it never enters ``train_seconds``; the tracker reports it as ``noise_seconds``.

This module is training-side and imports torch; the analysis never imports it (it reads the
``noise_*`` columns of the measurements).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

# Columns a measurement row gains when noise tracking is on (NaN at rows without a noise point).
NOISE_COLUMNS: tuple[str, ...] = (
    "noise_grad_norm_sq",  # unbiased |G|^2 at this point, unsmoothed, (loss units / weight)^2
    "noise_trace_sigma",  # unbiased tr(Sigma) at this point, unsmoothed, same units
    "noise_scale_raw",  # ratio of the two unsmoothed values, examples (NaN if |G|^2 <= 0)
    "noise_scale",  # B_simple from the smoothed |G|^2 and tr(Sigma), examples
    "noise_seconds",  # wall seconds this noise measurement took (outside train_seconds)
)


# --------------------------------------------------------------------------- pure functions


def _check_batch_sizes(b_small: float, b_big: float) -> None:
    if not (0 < b_small < b_big):
        raise ValueError(f"need 0 < b_small < b_big, got b_small={b_small}, b_big={b_big}")


def unbiased_grad_norm_sq(g_small_sq: float, g_big_sq: float, b_small: float, b_big: float) -> float:
    """Unbiased |G|^2 from mean squared gradient norms at batch sizes b_small < b_big.

    Solves E|G_B|^2 = |G|^2 + tr(Sigma)/B at the two batch sizes for |G|^2 (McCandlish A.1).
    Can be negative when the true gradient is small against the noise: it is an unbiased
    estimate, not a norm. Average it over points (``NoiseScaleSmoother``) before dividing.
    """
    _check_batch_sizes(b_small, b_big)
    return (b_big * g_big_sq - b_small * g_small_sq) / (b_big - b_small)


def unbiased_trace_sigma(g_small_sq: float, g_big_sq: float, b_small: float, b_big: float) -> float:
    """Unbiased tr(Sigma) (per-example gradient variance, summed over weights), same inputs."""
    _check_batch_sizes(b_small, b_big)
    return (g_small_sq - g_big_sq) / (1.0 / b_small - 1.0 / b_big)


def simple_noise_scale(trace_sigma: float, grad_norm_sq: float) -> float:
    """B_simple = tr(Sigma) / |G|^2 in examples; NaN when |G|^2 <= 0 or either is not finite.

    A non-positive |G|^2 estimate means the noise swamps the signal at these batch sizes (the
    noise scale is beyond what the pair can resolve): NaN says "unknown", not "infinite".
    """
    if not (math.isfinite(trace_sigma) and math.isfinite(grad_norm_sq)) or grad_norm_sq <= 0:
        return math.nan
    return trace_sigma / grad_norm_sq


# --------------------------------------------------------------------------- smoothing


class NoiseScaleSmoother:
    """Exponential moving averages of |G|^2 and tr(Sigma), each on its own, then their ratio.

    ``weight`` is the weight of the newest point (1 = no smoothing). The averages are
    bias-corrected as in Adam (divided by 1 - (1 - weight)^n), so the first points are not
    pulled towards zero and the first value equals the first estimate.
    """

    def __init__(self, weight: float = 0.3) -> None:
        if not 0 < weight <= 1:
            raise ValueError(f"weight must be in (0, 1], got {weight}")
        self.weight = weight
        self._g2 = 0.0
        self._trace = 0.0
        self._mass = 0.0  # 1 - (1 - weight)^n: the bias correction
        self.count = 0

    def update(self, grad_norm_sq: float, trace_sigma: float) -> float:
        """Add one point's unbiased estimates; return the smoothed B_simple (NaN if unknown).

        A point with a non-finite estimate is skipped (it would poison every later value).
        """
        if math.isfinite(grad_norm_sq) and math.isfinite(trace_sigma):
            keep = 1.0 - self.weight
            self._g2 = keep * self._g2 + self.weight * grad_norm_sq
            self._trace = keep * self._trace + self.weight * trace_sigma
            self._mass = keep * self._mass + self.weight
            self.count += 1
        return self.noise_scale

    @property
    def grad_norm_sq(self) -> float:
        return self._g2 / self._mass if self._mass else math.nan

    @property
    def trace_sigma(self) -> float:
        return self._trace / self._mass if self._mass else math.nan

    @property
    def noise_scale(self) -> float:
        return simple_noise_scale(self.trace_sigma, self.grad_norm_sq)


# --------------------------------------------------------------------------- measuring


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _squared_grad_norm(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
                       params: list[nn.Parameter]) -> torch.Tensor:
    """|grad of the mean loss over (x, y)|^2 as a 0-d float64 tensor on the device (no sync).

    ``torch.autograd.grad`` returns the gradients instead of accumulating them into ``.grad``,
    so the optimizer's gradients are never touched.
    """
    loss = loss_fn(model(x).float(), y)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.stack([g.double().pow(2).sum() for g in grads if g is not None]).sum()


@contextlib.contextmanager
def _left_as_found(model: nn.Module, train_mode: bool):
    """Run the block with the model in train (or eval) mode, then restore every buffer
    (BatchNorm's running statistics, ``num_batches_tracked``) and the train/eval flag; the
    block must take gradients with ``torch.autograd.grad`` so ``.grad`` stays untouched."""
    saved_buffers = [b.detach().clone() for b in model.buffers()]
    was_training = model.training
    model.train(train_mode)
    try:
        # enable_grad: the caller may sit inside a no_grad block (e.g. an evaluation helper).
        with torch.enable_grad():
            yield
    finally:
        with torch.no_grad():
            for buffer, saved in zip(model.buffers(), saved_buffers):
                buffer.copy_(saved)
        model.train(was_training)


def measure_noise_scale(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    b_small: int,
    b_big: int,
    n_pairs: int,
    generator: torch.Generator,
    train_mode: bool = True,
) -> dict[str, float]:
    """Unbiased |G|^2 and tr(Sigma) at the model's current weights, from ``n_pairs`` pairs.

    ``loss_fn(outputs, targets)`` must return the **mean** loss over the batch (as
    ``F.cross_entropy`` does): the formulas assume G_B is the mean of B per-example gradients.

    Each pair draws ``b_big`` example indices from (x, y) with ``generator`` (on x's device),
    **with replacement**: the formulas hold exactly for i.i.d. draws. Without replacement from N
    examples the noise term shrinks to tr(Sigma)/B * (N - B)/(N - 1), which biases the |G|^2
    estimate by -tr(Sigma)/(N - 1), i.e. B_simple up by a relative B_simple/(N - 1): 2.5 % at
    B_simple = 100 of N = 4000, and without bound as the noise scale approaches N. The small batch is the first ``b_small`` of the big
    one: nesting changes no expectation, and the positive correlation lowers the variance of
    the tr(Sigma) estimate, which is a difference of the two.

    Cost: ``2 * n_pairs`` forward+backward passes (``n_pairs * (b_big + b_small)`` examples);
    one host sync at the end.

    Nothing about the model changes: no optimizer step, ``.grad`` untouched (autograd.grad),
    every buffer (BatchNorm running statistics, ``num_batches_tracked``) restored, and the
    train/eval flag restored. Dropout, if any, draws from torch's global RNG.

    ``train_mode`` (default True) runs the passes in train mode, so BatchNorm normalizes with
    the statistics of the batch itself: the gradients measured are the ones training at that
    batch size follows. With BatchNorm the examples of a batch are then not independent, so
    B_simple is an approximation there (exact for group / layer / no norm); eval mode would
    use the running statistics instead, i.e. the gradient of a different function than the one
    being trained.

    Returns ``g_small_sq`` and ``g_big_sq`` (mean squared norms over pairs), ``grad_norm_sq``
    and ``trace_sigma`` (unbiased), ``noise_scale`` (their ratio, unsmoothed), ``n_pairs``,
    ``b_small``, ``b_big`` and ``passes`` (forward+backward passes spent).
    """
    _check_batch_sizes(b_small, b_big)
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    params = [p for p in model.parameters() if p.requires_grad]
    n = x.shape[0]
    g_small = torch.zeros((), dtype=torch.float64, device=x.device)
    g_big = torch.zeros((), dtype=torch.float64, device=x.device)
    with _left_as_found(model, train_mode):
        for _ in range(n_pairs):
            idx = torch.randint(0, n, (b_big,), generator=generator, device=x.device)
            g_big += _squared_grad_norm(model, loss_fn, x[idx], y[idx], params)
            small = idx[:b_small]
            g_small += _squared_grad_norm(model, loss_fn, x[small], y[small], params)
    g_small_sq = g_small.item() / n_pairs
    g_big_sq = g_big.item() / n_pairs
    grad_norm_sq = unbiased_grad_norm_sq(g_small_sq, g_big_sq, b_small, b_big)
    trace_sigma = unbiased_trace_sigma(g_small_sq, g_big_sq, b_small, b_big)
    return {
        "g_small_sq": g_small_sq,
        "g_big_sq": g_big_sq,
        "grad_norm_sq": grad_norm_sq,
        "trace_sigma": trace_sigma,
        "noise_scale": simple_noise_scale(trace_sigma, grad_norm_sq),
        "n_pairs": n_pairs,
        "b_small": b_small,
        "b_big": b_big,
        "passes": 2 * n_pairs,
    }


def measure_microbatch_noise(
    model: nn.Module,
    loss_of: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    micro_batch: int,
    micro_batches: int,
    generator: torch.Generator,
) -> dict[str, float]:
    """Unbiased |G|^2 and tr(Sigma) at the model's current weights from ``micro_batches``
    gradients of ``micro_batch`` examples each, every one taken in train mode exactly as a
    training step at batch ``micro_batch`` takes it (``loss_of(idx)``: the mean training loss on
    training examples ``idx``, so the model's own input layout and loss apply).

    With BatchNorm a gradient of B examples normalizes them by their own statistics, so the
    examples of one batch are not independent and the two-batch-size estimate of
    ``measure_noise_scale`` compares the gradients of two different functions. Here every
    gradient is of the function training follows at ``micro_batch``, and the micro-batches are
    independent (indices drawn with replacement), so with g_i the micro-batch gradients

        E |g_i|^2 = |G|^2 + tr(C),   E |mean_i g_i|^2 = |G|^2 + tr(C) / m,

    C the covariance of one micro-batch gradient: the formulas of ``unbiased_grad_norm_sq`` and
    ``unbiased_trace_sigma`` with b_small = micro_batch and b_big = m micro_batch, and tr(Sigma)
    = micro_batch tr(C) in per-example units (exact without BatchNorm, where C = Sigma / B).

    Cost: ``micro_batches`` forward+backward passes of ``micro_batch`` examples. The model is
    left as found (weights, ``.grad``, buffers, train/eval flag).
    """
    if micro_batches < 2:
        raise ValueError(f"micro_batches must be >= 2, got {micro_batches}")
    params = [p for p in model.parameters() if p.requires_grad]
    device = next(iter(params)).device
    sq_sum = torch.zeros((), dtype=torch.float64, device=device)
    total: torch.Tensor | None = None
    with _left_as_found(model, True):
        for _ in range(micro_batches):
            idx = torch.randint(0, n, (micro_batch,), generator=generator, device=device)
            grads = torch.autograd.grad(loss_of(idx), params, allow_unused=True)
            g = torch.cat([(d if d is not None else torch.zeros_like(p)).double().flatten()
                           for d, p in zip(grads, params)])
            sq_sum += g.square().sum()
            total = g if total is None else total + g
    assert total is not None
    g_small_sq = float(sq_sum) / micro_batches
    g_big_sq = float((total / micro_batches).square().sum())
    b_big = micro_batch * micro_batches
    grad_norm_sq = unbiased_grad_norm_sq(g_small_sq, g_big_sq, micro_batch, b_big)
    trace_sigma = unbiased_trace_sigma(g_small_sq, g_big_sq, micro_batch, b_big)
    return {"grad_norm_sq": grad_norm_sq, "trace_sigma": trace_sigma,
            "noise_scale": simple_noise_scale(trace_sigma, grad_norm_sq),
            "micro_batch": micro_batch, "micro_batches": micro_batches}


# --------------------------------------------------------------------------- training hook


class _TrainData(Protocol):
    x_train: torch.Tensor
    y_train: torch.Tensor


@dataclass
class NoiseConfig:
    """Settings of noise-scale tracking; ``bsweep.config`` should hold the same keys as ``noise``
    (a comment per default says its unit and reason)."""

    enabled: bool = False  # off by default: costs ~n_pairs * (b_big + b_small) examples per point
    b_small: int = 16  # examples; small enough that tr(Sigma)/b_small dominates |G_small|^2
    # examples; large against b_small (the estimates' variance falls with b_big / b_small) yet
    # cheap on CPU; should be of the order of the noise scale (tens to hundreds here)
    b_big: int = 512
    pairs: int = 4  # pairs per noise point; the EMA averages over points as well
    every: int = 4  # measure at every 4th measurement point: on the 5 % grid, every ~22 % in samples
    ema: float = 0.3  # weight of the newest point: averages ~3 points, i.e. ~2x in samples seen


class NoiseScaleTracker:
    """Measures the noise scale at measurement points and returns the row's ``noise_*`` columns.

    Use in the training loop (model and data already on the device)::

        tracker = NoiseScaleTracker.from_config(cfg.noise, seed=cfg.seed) if cfg.noise.enabled else None
        ...
        row = {...}                                    # the measurement row
        if tracker is not None:
            row.update(tracker.update(model, data, step))

    ``update`` measures at its 1st, (1 + every)th, ... call and returns NaN columns at the
    calls in between, so every row has the same columns. Its generator is its own (seeded from
    ``seed``), and the model is left exactly as it was, so turning tracking on changes neither
    the data order nor the trained weights. Cost per noise point: see the module docstring.
    """

    def __init__(
        self,
        b_small: int = NoiseConfig.b_small,
        b_big: int = NoiseConfig.b_big,
        pairs: int = NoiseConfig.pairs,
        every: int = NoiseConfig.every,
        ema: float = NoiseConfig.ema,
        seed: int = 0,
        loss_fn: LossFn = F.cross_entropy,
        train_mode: bool = True,
    ) -> None:
        _check_batch_sizes(b_small, b_big)
        if pairs < 1 or every < 1:
            raise ValueError(f"pairs and every must be >= 1, got pairs={pairs}, every={every}")
        self.b_small, self.b_big, self.pairs, self.every = b_small, b_big, pairs, every
        self.seed = seed
        self.loss_fn = loss_fn
        self.train_mode = train_mode
        self.smoother = NoiseScaleSmoother(ema)
        self._generator: torch.Generator | None = None
        self._calls = 0
        self._last_step: int | None = None

    @classmethod
    def from_config(cls, cfg: Any, seed: int = 0, **kwargs: Any) -> NoiseScaleTracker:
        """From any object with the attributes of ``NoiseConfig`` (a Hydra node or the dataclass)."""
        return cls(cfg.b_small, cfg.b_big, cfg.pairs, cfg.every, cfg.ema, seed=seed, **kwargs)

    def _generator_on(self, device: torch.device) -> torch.Generator:
        if self._generator is None:
            # Offset from the trial seed so the stream differs from the trial's shuffling one
            # (the value is arbitrary; any fixed offset keeps runs reproducible).
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self.seed + 0x5EED)
        return self._generator

    def update(self, model: nn.Module, data: _TrainData, step: int) -> dict[str, float]:
        """The ``NOISE_COLUMNS`` for the measurement row at ``step`` (NaN where not measured)."""
        if self._last_step is not None and step <= self._last_step:
            raise ValueError(f"steps must increase: got {step} after {self._last_step}")
        self._last_step = step
        due = self._calls % self.every == 0
        self._calls += 1
        if not due:
            return {column: math.nan for column in NOISE_COLUMNS}
        start = time.perf_counter()
        x, y = data.x_train, data.y_train
        raw = measure_noise_scale(
            model, self.loss_fn, x, y, self.b_small, self.b_big, self.pairs,
            self._generator_on(x.device), train_mode=self.train_mode,
        )
        smoothed = self.smoother.update(raw["grad_norm_sq"], raw["trace_sigma"])
        return {
            "noise_grad_norm_sq": raw["grad_norm_sq"],
            "noise_trace_sigma": raw["trace_sigma"],
            "noise_scale_raw": raw["noise_scale"],
            "noise_scale": smoothed,
            "noise_seconds": time.perf_counter() - start,  # .item() above already synced
        }


# --------------------------------------------------------------------------- gradient cosines (C6)


def _flat_gradient(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
                   params: list[nn.Parameter]) -> torch.Tensor:
    """The gradient of the mean loss over (x, y), flattened, float64 (``.grad`` untouched)."""
    loss = loss_fn(model(x).float(), y)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).double().flatten() for g, p in zip(grads, params)])


def measure_gradient_cosines(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_sizes: list[int],
    draws: int,
    generator: torch.Generator,
    chunk: int = 1000,
    train_mode: bool = True,
) -> dict[str, Any]:
    """At the model's current weights: the cosine between mini-batch gradients and the full
    training-set gradient G, for each batch size (``draws`` batches each, drawn with
    replacement), and the noise scale those gradients imply.

    G is the mean of the gradients of consecutive chunks of ``chunk`` examples, weighted by
    their size (with BatchNorm in train mode each chunk is normalized by its own statistics:
    G is then the gradient of training at batch ``chunk``, stated, not hidden). Since
    E|g_B|^2 = |G|^2 + tr(Sigma) / B, the least-squares tr(Sigma) over the batch sizes gives
    B_simple = tr(Sigma) / |G|^2 and the predicted E[cos] ~ (1 + B_simple / B)^(-1/2)
    (McCandlish et al. 2018; exact only for i.i.d. examples, so not with BatchNorm).

    Nothing about the model changes (as ``measure_noise_scale``). Returns ``grad_norm_sq``
    (|G|^2), ``trace_sigma``, ``noise_scale`` and ``per_batch``: {B: (mean cosine, its standard
    deviation over draws, mean |g_B|^2)}.
    """
    if draws < 2:
        raise ValueError(f"draws must be >= 2 (a spread over draws), got {draws}")
    params = [p for p in model.parameters() if p.requires_grad]
    n = x.shape[0]
    per_batch: dict[int, tuple[float, float, float]] = {}
    with _left_as_found(model, train_mode):
        full = sum(_flat_gradient(model, loss_fn, x[i:i + chunk], y[i:i + chunk], params) * (min(chunk, n - i) / n)
                   for i in range(0, n, chunk))
        full_norm = full.norm()
        for b in batch_sizes:
            cos, sq = [], []
            for _ in range(draws):
                idx = torch.randint(0, n, (b,), generator=generator, device=x.device)
                g = _flat_gradient(model, loss_fn, x[idx], y[idx], params)
                cos.append(torch.dot(g, full) / (g.norm() * full_norm).clamp_min(1e-300))
                sq.append(g.square().sum())
            cos_t = torch.stack(cos)
            per_batch[int(b)] = (float(cos_t.mean()), float(cos_t.std()), float(torch.stack(sq).mean()))
    g2 = float(full_norm) ** 2
    # least squares through the origin of (mean |g_B|^2 - |G|^2) on 1 / B
    inv = [1.0 / b for b in per_batch]
    excess = [v[2] - g2 for v in per_batch.values()]
    trace = sum(a * e for a, e in zip(inv, excess)) / sum(a * a for a in inv)
    return {"grad_norm_sq": g2, "trace_sigma": trace, "noise_scale": simple_noise_scale(trace, g2),
            "per_batch": per_batch}


def cosine_columns(batch_sizes: list[int]) -> list[str]:
    """The measurement row's columns of a gradient-cosine checkpoint (`GradientCosineTracker`)."""
    per = [f"{name}_b{b}" for b in batch_sizes for name in ("cosine", "cosine_sd")]
    return [*per, "cosine_grad_norm_sq", "cosine_noise_scale", "cosine_draws", "cosine_seconds"]


class GradientCosineTracker:
    """C6's checkpoints: at the first measurement point at or after each share in ``at`` of the
    trial's ``steps``, the gradient cosines of ``measure_gradient_cosines``; NaN columns at the
    other points. Its generator is its own and the model is left as it was, so training is
    unchanged."""

    def __init__(self, at: list[float], steps: int, batch_sizes: list[int], draws: int, n_train: int,
                 seed: int = 0, loss_fn: LossFn = F.cross_entropy) -> None:
        self.pending = sorted(math.ceil(share * steps) for share in at)
        self.batch_sizes = sorted({min(int(b), n_train) for b in batch_sizes})
        self.draws, self.seed, self.loss_fn = draws, seed, loss_fn
        self._generator: torch.Generator | None = None

    def update(self, model: nn.Module, data: _TrainData, step: int) -> dict[str, float]:
        columns = cosine_columns(self.batch_sizes)
        if not self.pending or step < self.pending[0]:
            return {c: math.nan for c in columns}
        while self.pending and self.pending[0] <= step:  # several shares may fall on one point
            self.pending.pop(0)
        start = time.perf_counter()
        x, y = data.x_train, data.y_train
        if self._generator is None:
            self._generator = torch.Generator(device=x.device)
            self._generator.manual_seed(self.seed + 0xC05)  # its own stream, not the trial's
        got = measure_gradient_cosines(model, self.loss_fn, x, y, self.batch_sizes, self.draws, self._generator)
        row = {}
        for b, (mean, sd, _) in got["per_batch"].items():
            row[f"cosine_b{b}"], row[f"cosine_sd_b{b}"] = mean, sd
        row.update({"cosine_grad_norm_sq": got["grad_norm_sq"], "cosine_noise_scale": got["noise_scale"],
                    "cosine_draws": float(self.draws), "cosine_seconds": time.perf_counter() - start})
        return row
