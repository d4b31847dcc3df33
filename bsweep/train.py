"""Train one trial and measure it: the training loop, the evaluation cadence and the timer.

The hot loop does no host synchronization: the data is already on the device, the shuffle is a
device-side permutation, the training loss accumulates on the device, and everything that needs
a Python number (divergence, accuracy) is read only at measurement points, where the clock is
stopped anyway.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from bsweep.config import BudgetConfig, Config, EvalConfig, OptimConfig, ScheduleConfig, effective_lr
from bsweep.data import TensorData
from bsweep.models import make_cnn
from bsweep.perf import PerfChoice, choose

# Steps run on a throw-away copy of the model before the clock starts, so one-time costs
# (allocator growth, kernel selection, lazy initialization) do not land in the first interval.
WARMUP_STEPS = 3


@dataclass
class TrialResult:
    status: str  # "complete" or "diverged"
    measurements: list[dict] = field(default_factory=list)
    total_steps: int = 0  # the budget in steps, whether or not the trial used all of it


def resolve_device(name: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; anything else is taken as asked."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def total_steps(budget: BudgetConfig, n_train: int, batch_size: int) -> int:
    """The budget in optimizer steps: the first of the epoch and step limits to be reached
    (rule "any") or the last (rule "all").

    Each epoch is n_train // batch_size steps at exactly `batch_size` (the remainder of the
    permutation is dropped), so every step of a trial uses the same batch size.
    """
    steps_per_epoch = n_train // batch_size
    limits = []
    if budget.epochs is not None:
        limits.append(max(1, math.floor(budget.epochs * steps_per_epoch)))
    if budget.steps is not None:
        limits.append(budget.steps)
    if not limits:
        raise ValueError("study.budget needs epochs or steps (or both)")
    return max(limits) if budget.rule == "all" else min(limits)


def measurement_steps(cadence: EvalConfig, batch_size: int, steps: int) -> list[int]:
    """Steps after which to measure: step 0, the grid in samples seen, and the last step.

    The grid is the same list of sample counts for every batch size (geometric from
    `first_samples` with ratio `growth`, gaps capped at `max_gap_samples`); a trial measures at
    the first step whose samples seen reach each grid point.
    """
    last_samples = steps * batch_size
    points = {0, steps}
    s = float(cadence.first_samples)
    while s < last_samples:
        points.add(math.ceil(s / batch_size))
        s += min(max(s * (cadence.growth - 1.0), 1.0), cadence.max_gap_samples)
    return sorted(p for p in points if p <= steps)


def lr_factor(schedule: ScheduleConfig, step: int, steps: int) -> float:
    """Multiplier on the base learning rate for the update made at `step` (0-based)."""
    warmup = round(schedule.warmup_fraction * steps)
    if step < warmup:
        return (step + 1) / warmup
    if schedule.name == "cosine":
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule.name in ("constant", "warmup"):
        return 1.0
    raise ValueError(f"unknown schedule {schedule.name!r}")


def autocast_context(device: torch.device, amp: bool):
    """bf16 autocast around a forward pass when `amp`; nothing otherwise."""
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def make_optimizer(cfg: OptimConfig, params, lr: float) -> torch.optim.Optimizer:
    params = list(params)
    on_cuda = bool(params) and params[0].is_cuda
    impl = {"fused": True} if on_cuda else {"foreach": True}
    # foreach: one kernel launch per parameter group rather than per tensor (fused=True, one
    # kernel in all, exists for CUDA; torch takes foreach as the faster choice on CPU).
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
            **impl,
        )
    if cfg.name == "adam":
        return torch.optim.Adam(
            params,
            lr=lr,
            betas=(cfg.beta1, cfg.beta2),
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
            **impl,
        )
    raise ValueError(f"unknown optimizer {cfg.name!r}")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def prepare_model(model: nn.Module, device: torch.device, channels_last: bool = False,
                  compile: bool = False) -> nn.Module:
    """The model on `device`, in channels_last memory format when asked (2-D convs only), and
    compiled in place when asked (`nn.Module.compile`: the module stays the same object, its
    copies and its eval mode included; CUDA graphs on CUDA). A new model of the same class and
    shapes reuses the process's compiled graph, so only a process's first trial pays the compile."""
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile:
        model.compile(mode="reduce-overhead" if device.type == "cuda" else None)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest conv kernels once
    return model


def as_input(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorData, batch_size: int, amp: bool = False, channels_last: bool = False) -> tuple[float, float]:
    """Test loss (mean cross-entropy) and test accuracy, with the model in eval mode."""
    model.eval()
    loss_sum = torch.zeros((), device=data.x_test.device)
    correct = torch.zeros((), device=data.x_test.device, dtype=torch.int64)
    for i in range(0, len(data.x_test), batch_size):
        x, y = data.x_test[i : i + batch_size], data.y_test[i : i + batch_size]
        with autocast_context(x.device, amp):
            logits = model(as_input(x, channels_last)).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    model.train()
    n = len(data.x_test)
    return loss_sum.item() / n, correct.item() / n


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               amp: bool = False, channels_last: bool = False) -> torch.Tensor:
    """One optimizer step on the batch (x, y); returns the loss, detached, on the device (no sync)."""
    with autocast_context(x.device, amp):
        logits = model(as_input(x, channels_last))
    loss = F.cross_entropy(logits.float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def _warm_up(cfg: Config, model: nn.Module, data: TensorData, amp: bool, cl: bool) -> None:
    """A few untimed steps on copies, so the real model, optimizer and RNGs are untouched."""
    shadow = copy.deepcopy(model)
    opt = make_optimizer(cfg.optim, shadow.parameters(), effective_lr(cfg))
    x, y = data.x_train[: cfg.batch_size], data.y_train[: cfg.batch_size]
    for _ in range(WARMUP_STEPS):
        train_step(shadow, opt, x, y, amp, cl)
    evaluate(shadow, data, cfg.study.eval.batch_size, amp, cl)
    synchronize(data.x_train.device)


def train_trial(cfg: Config, data: TensorData, on_measurement=None, perf: PerfChoice | None = None) -> TrialResult:
    """Train the model `cfg` describes on `data` (already on its device) and measure it.

    `on_measurement(row)` is called after every measurement (for progress display). `perf`: the
    autocast and memory-format settings, by default `perf.choose` (measured where `auto`).
    Deterministic on CPU for fixed `perf`: the same config and data give the same measurements,
    seconds aside.
    """
    device = data.x_train.device
    if perf is None:
        perf = choose(cfg, data)
    amp, cl = perf.amp, perf.channels_last
    torch.manual_seed(cfg.seed)  # initialization
    model = make_cnn(data.input_shape, data.n_classes, cfg.model, cfg.norm)
    model = prepare_model(model, device, cl, perf.compile)
    opt = make_optimizer(cfg.optim, model.parameters(), effective_lr(cfg))
    # Data order has its own generator on the data's device: shuffling stays device-side.
    order = torch.Generator(device=device)
    order.manual_seed(cfg.seed)

    n, batch = data.n_train, cfg.batch_size
    steps_per_epoch = n // batch
    steps = total_steps(cfg.study.budget, n, batch)
    to_measure = measurement_steps(cfg.study.eval, batch, steps)
    _warm_up(cfg, model, data, amp, cl)

    result = TrialResult(status="complete", total_steps=steps)
    loss_sum = torch.zeros((), device=device)
    losses_since = 0
    seconds = 0.0
    step = 0
    base_lr = effective_lr(cfg)
    lr = base_lr * lr_factor(cfg.schedule, 0, steps)
    for group in opt.param_groups:
        group["lr"] = lr
    x_train, y_train = data.x_train, data.y_train
    tracker = None
    if cfg.noise.enabled:
        from bsweep.noise import NoiseScaleTracker

        tracker = NoiseScaleTracker.from_config(cfg.noise, seed=cfg.seed)

    def measure() -> dict:
        nonlocal loss_sum, losses_since
        test_loss, test_acc = evaluate(model, data, cfg.study.eval.batch_size, amp, cl)
        train_loss = loss_sum.item() / losses_since if losses_since else math.nan
        row = {
            "step": step,
            "samples": step * batch,
            "epoch": step * batch / n,
            "train_seconds": seconds,
            "train_loss": train_loss,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "lr": lr,
        }
        if tracker is not None:  # the clock is stopped here: noise passes are not training time
            row.update(tracker.update(model, data, step))
        loss_sum = torch.zeros((), device=device)
        losses_since = 0
        result.measurements.append(row)
        if on_measurement is not None:
            on_measurement(row)
        return row

    measure()
    next_measure = iter(to_measure[1:])
    measure_at = next(next_measure, None)
    clock = time.perf_counter()
    while step < steps:
        perm = torch.randperm(n, generator=order, device=device)
        for i in range(min(steps_per_epoch, steps - step)):
            idx = perm[i * batch : (i + 1) * batch]
            new_lr = base_lr * lr_factor(cfg.schedule, step, steps)
            if new_lr != lr:  # touch the param groups only when the schedule moves
                lr = new_lr
                for group in opt.param_groups:
                    group["lr"] = lr
            loss = train_step(model, opt, x_train[idx], y_train[idx], amp, cl)
            loss_sum += loss
            losses_since += 1
            step += 1
            if step != measure_at:
                continue
            synchronize(device)
            seconds += time.perf_counter() - clock
            row = measure()
            measure_at = next(next_measure, None)
            if not (math.isfinite(row["train_loss"]) and math.isfinite(row["test_loss"])):
                result.status = "diverged"
                return result
            if cfg.study.budget.stop_at_target and row["test_acc"] >= cfg.study.target:
                return result
            clock = time.perf_counter()
    return result
