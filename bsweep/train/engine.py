"""THE training loop: K >= 1 trials ("members") of one shape trained side by side.

K = 1 is a trial alone (`Alone`: the model, torch.optim's arithmetic); K > 1 is a fused model
(`bsweep.train.fused.Fused`). Both implement `Members`, so budget, cadence, warm-up, clock, divergence,
stop-at-target and the measurement rows exist once, here, and a fused member is measured exactly
as it would be alone.

The hot loop does no host synchronization: the data is already on the device, each member's
shuffle is a device-side permutation from its own generator, the training losses accumulate on
the device, and everything that needs a Python number (divergence, accuracy) is read only at
measurement points, where the clock is stopped anyway.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.sgd import sgd

from bsweep.config import Config, OptimConfig, effective_lr, measures_gradients
from bsweep.train.data import TensorData
from bsweep.train.device import synchronize
from bsweep.interrupt import Interrupted, requested
from bsweep.train.models import make_model
from bsweep.train.schedule import lr_factor, measurement_steps, total_steps
from bsweep.train.timing import Stopwatch

# Steps run on a throw-away copy of the members before the clock starts, so one-time costs
# (allocator growth, kernel selection, lazy initialization) do not land in the first interval.
WARMUP_STEPS = 3
# The layout of a checkpoint's state (`train`): a saved state of another layout is not resumed.
# 2: the built-in CNN's layers on signals became 2-D (weights (out, in, 1, k) instead of (out, in, k)).
# 3: a fused model's flat buffer keeps channels_last weights channels_last (`fused.flat_parameters`).
CHECKPOINT_VERSION = 3


@dataclass(frozen=True)
class PerfChoice:
    """How a trial runs (results equal within float tolerance); `bsweep.train.perf` decides it."""

    amp: bool = False  # bf16 autocast of the forward pass
    channels_last: bool = False  # NHWC memory format for 2-D convs
    compile: bool = False  # torch.compile of the model (CUDA graphs on CUDA); never probed

    def describe(self) -> dict[str, str]:
        """As written into a trial's env.json and shown in reports."""
        return {"amp": "bf16" if self.amp else "off", "channels_last": "on" if self.channels_last else "off",
                "compile": "on" if self.compile else "off"}


@dataclass
class TrialResult:
    status: str  # "complete" or "diverged"
    measurements: list[dict] = field(default_factory=list)
    total_steps: int = 0  # the budget in steps, whether or not the trial used all of it


class Members(Protocol):
    """K trials of one shape, trained as one."""

    k: int
    model: nn.Module  # train()/eval() switch every member

    def losses(self, data: TensorData, idx: torch.Tensor) -> torch.Tensor:
        """(K,): member k's mean cross-entropy on its training samples idx[k] ((K, B) indices)."""

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(K, b, classes): every member's logits on the same samples x (evaluation)."""

    def set_lr(self, lrs: list[float], factor: float = 1.0) -> None:
        """Each member's next updates use lrs[k] x factor (lrs[k] 0 for a frozen member; factor
        is the schedule's, which may move every step, so it must not cost a host sync)."""

    def optimizer_step(self) -> None:
        """Update every member from its gradients, and clear them."""

    def freeze(self, members: list[int]) -> None:
        """Stop members for good (diverged or done) so they cannot disturb the others."""

    def copy(self) -> "Members":
        """An independent copy (for warm-up steps that must not touch the real state)."""

    def state(self) -> dict:
        """Everything training changes (weights, buffers, optimizer), as tensors copied off the
        live state: what a checkpoint keeps."""

    def load_state(self, state: dict) -> None:
        """Put a `state()` back into freshly built members of the same configs."""


class Checkpoint(Protocol):
    """Where `train` keeps its state for a resume after preemption (`trial.FileCheckpoint`)."""

    every_seconds: float  # wall seconds between saves, at measurement points (and on a stop request)

    def load(self) -> dict | None:
        """The state saved last for these trials, or None."""

    def save(self, state: dict) -> None:
        """Keep `state` (replacing the last; atomically: a kill mid-write leaves the old one)."""


def autocast(device: torch.device, amp: bool):
    """bf16 autocast around a forward pass when `amp`; nothing otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()


def as_input(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """A batch as the model takes it: channels_last when asked, signals (B, C, L) then as
    channels_last images of height 1 (the built-in CNN's layout for them, `models.as_image`).
    Left to the first convolution, a fused batch of signals (member k's in channel block k)
    came out of it contiguous, and every later layer copied it back to channels_last."""
    if not channels_last:
        return x
    return (x.unsqueeze(2) if x.dim() == 3 else x).contiguous(memory_format=torch.channels_last)


def member_losses(logits: torch.Tensor, y: torch.Tensor, reduce: str = "mean") -> torch.Tensor:
    """Cross-entropy of each member on its own samples: (K,) means, or (K, b) with reduce
    "none". bf16 logits are upcast; float32 and float64 are kept, so a float64 run stays
    float64 throughout."""
    k, b, c = logits.shape
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    losses = F.cross_entropy(logits.reshape(k * b, c), y.reshape(k * b), reduction="none").view(k, b)
    return losses.mean(1) if reduce == "mean" else losses


def train_step(members: Members, data: TensorData, idx: torch.Tensor, amp: bool) -> torch.Tensor:
    """One optimizer step of every member on its batch idx[k]; (K,) losses, detached (no sync)."""
    with autocast(data.x_train.device, amp):  # cross-entropy runs in float32 under autocast
        losses = members.losses(data, idx)
    # member k's loss depends on member k's parameters only; one member needs no sum (at batch
    # 1 every op counts)
    (losses if members.k == 1 else losses.sum()).backward()
    members.optimizer_step()
    return losses.detach()


@torch.no_grad()
def evaluate(members: Members, data: TensorData, batch_size: int, amp: bool) -> dict[str, list[float]]:
    """Every member's mean cross-entropy and accuracy, in eval mode, on the whole test set and
    on each half of it: {"test_loss": [K floats], "test_acc": ..., "val_loss", "val_acc",
    "heldout_loss", "heldout_acc"}.

    The halves are the even positions (validation) and the odd ones (held-out): the tuned view
    picks each point's lr on one and reports the other (`bsweep.analysis.metrics.tuned_view`).
    Interleaved positions need no random split to agree on across machines, and split a test
    set stored in class order half and half per class."""
    members.model.eval()
    k, device = members.k, data.x_test.device
    # [:, 0] sums over even positions (validation half), [:, 1] over odd ones (held-out half)
    loss_sum = torch.zeros(k, 2, device=device, dtype=torch.float64)
    correct = torch.zeros(k, 2, device=device, dtype=torch.int64)
    for i in range(0, len(data.x_test), batch_size):
        x, y = data.x_test[i : i + batch_size], data.y_test[i : i + batch_size]
        with autocast(device, amp):
            logits = members.logits(x)
        losses = member_losses(logits, y.expand(k, -1), reduce="none").double()
        hits = logits.argmax(2) == y
        for half in (0, 1):  # the batch's samples at global positions of parity `half`
            part = slice((half - i) % 2, None, 2)
            loss_sum[:, half] += losses[:, part].sum(1)
            correct[:, half] += hits[:, part].sum(1)
    members.model.train()
    n = len(data.x_test)
    sizes = torch.tensor([(n + 1) // 2, n // 2], device=device, dtype=torch.float64)
    halves_loss, halves_acc = (loss_sum / sizes).T.tolist(), (correct.double() / sizes).T.tolist()
    return {"test_loss": (loss_sum.sum(1) / n).tolist(), "test_acc": (correct.sum(1).double() / n).tolist(),
            "val_loss": halves_loss[0], "val_acc": halves_acc[0],
            "heldout_loss": halves_loss[1], "heldout_acc": halves_acc[1]}


class FunctionalSGD:
    """`torch.optim.SGD` as `SGD.step` computes it: the same function (`torch.optim.sgd.sgd`,
    torch's functional API), the same arguments, the same momentum buffers, so every update is
    the same to the bit (tests/test_train.py), and the same `state_dict` layout, so a checkpoint
    of either resumes in the other.

    Not the `torch.optim.SGD` object itself: its `add_param_group` and `step` import
    torch._dynamo at their first call (torch 2.11-2.14), seconds of every process that trains a
    trial alone (docs/performance.md), for a compiler that never runs on the optimizer here.
    Only what `Alone` and `bench.step_memory` use: `param_groups` (lr), `state`, `step`, `zero_grad`,
    `state_dict` and `load_state_dict`.
    """

    def __init__(self, params, lr: float, momentum: float, nesterov: bool, weight_decay: float,
                 fused: bool) -> None:
        self.params = list(params)
        # torch.optim.SGD's own group keys and defaults (foreach on CPU, fused on CUDA)
        self.param_groups = [{"lr": lr, "momentum": momentum, "dampening": 0, "weight_decay": weight_decay,
                              "nesterov": nesterov, "maximize": False, "foreach": None if fused else True,
                              "differentiable": False, "fused": True if fused else None}]
        self.state: dict[int, dict[str, torch.Tensor]] = {}  # by parameter index, as in state_dict

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        buffers = [self.state.get(i, {}).get("momentum_buffer") for i in live] if group["momentum"] else []
        sgd([self.params[i] for i in live], [self.params[i].grad for i in live], buffers,
            weight_decay=group["weight_decay"], momentum=group["momentum"], lr=group["lr"],
            dampening=group["dampening"], nesterov=group["nesterov"], maximize=group["maximize"],
            has_sparse_grad=False, foreach=group["foreach"], fused=group["fused"], grad_scale=None, found_inf=None)
        for i, buffer in zip(live, buffers):
            self.state[i] = {"momentum_buffer": buffer}

    def zero_grad(self) -> None:
        """torch.optim's default (`set_to_none=True`): the next backward allocates fresh grads."""
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict:
        return {"state": {i: dict(s) for i, s in self.state.items()},
                "param_groups": [{**self.param_groups[0], "params": list(range(len(self.params)))}]}

    def load_state_dict(self, state_dict: dict) -> None:
        """A state of this class or of `torch.optim.SGD` over the same parameters (tensors moved
        to each parameter's device and dtype, as torch.optim does)."""
        saved = state_dict["param_groups"][0]
        self.param_groups[0].update({k: v for k, v in saved.items() if k != "params"})
        self.state = {int(i): {k: v.to(dtype=self.params[int(i)].dtype, device=self.params[int(i)].device)
                               for k, v in s.items()} for i, s in state_dict["state"].items()}


def make_optimizer(cfg: OptimConfig, params, lr: float) -> "FunctionalSGD | torch.optim.Optimizer":
    params = list(params)
    # fused=True (one kernel for every tensor) exists for CUDA; on CPU torch takes foreach (one
    # kernel launch per parameter group rather than per tensor) as the faster choice.
    cuda = bool(params) and params[0].is_cuda
    if cfg.name == "sgd":
        return FunctionalSGD(params, lr, cfg.momentum, cfg.nesterov, cfg.weight_decay, fused=cuda)
    if cfg.name == "adam":  # torch.optim's own object: it imports torch._dynamo (see FunctionalSGD)
        return torch.optim.Adam(params, lr=lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                                weight_decay=cfg.weight_decay, **({"fused": True} if cuda else {"foreach": True}))
    raise ValueError(f"unknown optimizer {cfg.name!r}")


def prepare(model: nn.Module, device: torch.device, perf: PerfChoice) -> nn.Module:
    """The model on `device`, channels_last when asked (2-D convs only), and compiled in place
    when asked (`nn.Module.compile`: the module stays the same object, its copies and eval mode
    included; CUDA graphs on CUDA). A new model of the same class and shapes reuses the
    process's compiled graph, so only a process's first trial pays the compile."""
    model = model.to(device)
    if perf.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if perf.compile:
        model.compile(mode="reduce-overhead" if device.type == "cuda" else None)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest conv kernels once
    return model


class Alone:
    """One trial (K = 1): the model as `make_model` builds it and torch.optim's update
    (`FunctionalSGD`, or `torch.optim.Adam`), the reference that fused members are tested against
    (and torch's fused CUDA optimizer kernels)."""

    k = 1

    def __init__(self, cfg: Config, data: TensorData, perf: PerfChoice) -> None:
        torch.manual_seed(cfg.seed)  # initialization
        model = make_model(data.input_shape, data.n_classes, cfg.model, cfg.norm)
        self.model = prepare(model, data.x_train.device, perf)
        self.cl = perf.channels_last
        self.opt = make_optimizer(cfg.optim, self.model.parameters(), effective_lr(cfg))

    def losses(self, data: TensorData, idx: torch.Tensor) -> torch.Tensor:
        i = idx[0]
        return F.cross_entropy(self.model(as_input(data.x_train[i], self.cl)), data.y_train[i]).view(1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(as_input(x, self.cl)).unsqueeze(0)

    def set_lr(self, lrs: list[float], factor: float = 1.0) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lrs[0] * factor

    def optimizer_step(self) -> None:
        self.opt.step()
        self.opt.zero_grad()  # set_to_none, torch.optim's default

    def freeze(self, members: list[int]) -> None:
        pass  # the only member stopped: the loop ends

    def copy(self) -> "Alone":
        return copy.deepcopy(self)

    def state(self) -> dict:
        return {"model": copy.deepcopy(self.model.state_dict()), "opt": copy.deepcopy(self.opt.state_dict())}

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])


def epoch_order(order: str, n: int, generators: list[torch.Generator], device: torch.device,
                batch: int = 1, labels: torch.Tensor | None = None) -> torch.Tensor:
    """(K, n): the order each member reads the training set in this epoch (stored by class
    unless "shuffled", see `load_data`): "shuffled", a fresh permutation from the member's own
    generator; "sorted", the stored order, the same for every member and epoch;
    "class_batches", the stored order cut into batches of `batch` (each one or two classes),
    the batches in a fresh order from the member's generator (the n % batch left over last);
    "class_halves", the classes split at random into two halves each epoch, each half's
    examples shuffled and cut into batches, the batches in a fresh order: every batch holds
    examples of half the classes (one batch at the seam mixes both), so SGD still sees every
    class in random order while a batch's statistics are never the whole data's (`labels`:
    the training labels)."""
    if order == "sorted":
        return torch.arange(n, device=device).expand(len(generators), n)
    if order == "class_halves":
        assert labels is not None, "class_halves needs the training labels"
        return torch.stack([_class_halves(labels[:n], g, batch) for g in generators])
    if order == "class_batches":
        whole = n // batch
        rest = torch.arange(whole * batch, n, device=device)
        within = torch.arange(batch, device=device)
        return torch.stack([torch.cat([(torch.randperm(whole, generator=g, device=device)[:, None] * batch + within).flatten(),
                                       rest]) for g in generators])
    return torch.stack([torch.randperm(n, generator=g, device=device) for g in generators])


def _class_halves(labels: torch.Tensor, g: torch.Generator, batch: int) -> torch.Tensor:
    """One member's "class_halves" epoch (see `epoch_order`), drawn from its generator `g`."""
    device, n = labels.device, len(labels)
    classes = torch.unique(labels)
    first = classes[torch.randperm(len(classes), generator=g, device=device)[: len(classes) // 2]]
    in_first = torch.isin(labels, first)
    halves = [torch.nonzero(mask).flatten() for mask in (in_first, ~in_first)]
    order = torch.cat([h[torch.randperm(len(h), generator=g, device=device)] for h in halves])
    whole = n // batch
    batches = order[: whole * batch].view(whole, batch)[torch.randperm(whole, generator=g, device=device)]
    return torch.cat([batches.flatten(), order[whole * batch:]])


def window_statistics(window: torch.Tensor, n: int, k: int, before: bool) -> tuple[list[float], list[float]]:
    """Per member, from one window's (1 + steps, K) training losses (row 0: the step before the
    window, when `before`; rows 1..n: the window's steps): the mean of the window's `n` steps, and their step-to-step
    jitter sqrt(mean((l[t] - l[t-1])^2) / 2) over every difference the rows hold, which for
    independent steps is the standard deviation of one step's loss (a difference of two has
    twice the variance). NaN where there is nothing to average."""
    if n == 0:
        return [math.nan] * k, [math.nan] * k
    losses = window[: n + 1]
    mean = losses[1:].mean(0).tolist()
    known = losses if before else losses[1:]
    if len(known) < 2:
        return mean, [math.nan] * k
    return mean, (known.diff(dim=0).square().mean(0) / 2).sqrt().tolist()


def warm_up(members: Members, data: TensorData, batch: int, amp: bool) -> None:
    """A few untimed steps on a copy: the real members, their optimizer state and every RNG are
    untouched. No evaluation: the first one (step 0) runs before the training clock starts, and
    its one-time costs land in `eval_seconds` alone (an evaluation of the copy had cost every
    fused chunk time, to warm a clock that no verdict reads)."""
    shadow = members.copy()
    idx = torch.arange(batch, device=data.x_train.device).repeat(members.k, 1)
    for _ in range(WARMUP_STEPS):
        train_step(shadow, data, idx, amp)
    synchronize(data.x_train.device)


# Called at each measurement point with (step, total steps, each member's latest row or None
# for a member stopped before it): what a progress display shows of a running trial.
OnMeasure = Callable[[int, int, "list[dict | None]"], None]


def train(members: Members, cfgs: list[Config], data: TensorData, perf: PerfChoice,
          checkpoint: Checkpoint | None = None, on_measure: OnMeasure | None = None) -> list[TrialResult]:
    """Train `members` (member k is the trial `cfgs[k]`; the configs equal but for lr and seed)
    on `data` and measure each; one `TrialResult` per member.

    Member k's data order comes from a generator seeded with its own seed, so it sees the same
    batches alone or fused. `train_seconds` is the group's training wall time, evaluation and
    warm-up excluded. Deterministic on CPU for fixed `perf`: the same configs and data give the
    same measurements, seconds aside.

    With `checkpoint`, the loop saves its whole state at a measurement point once
    `checkpoint.every_seconds` of wall time have passed since the last save, and starts from the
    saved state when there is one: a resumed run continues the same batches, RNG streams and
    clocks (the seconds lost to the preemption are not counted), so its measurements equal an
    uninterrupted run's to float rounding.

    A stop request (`bsweep.interrupt`: Ctrl-C, SIGTERM) ends the loop at the next step
    boundary: with `checkpoint`, the whole state is saved there first (the loss window since the
    last measurement included), then `Interrupted` is raised.
    """
    if requested() is not None:  # stopped before this group began: nothing to save
        raise Interrupted(requested())
    warm_up(members, data, cfgs[0].batch_size, perf.amp)
    loop = _Loop(members, cfgs, data, perf, on_measure)
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None and saved.get("version") == CHECKPOINT_VERSION:
        skip = loop.restore(saved)
    else:
        skip = 0
        loop.set_lr()
        loop.measure()
    loop.set_lr()
    loop.run(skip, checkpoint)
    return loop.results


def _trackers(cfg: Config, k: int, steps: int, n: int) -> list:
    """The gradient measurements a trial asks for (noise scale, C6's cosines); a trial alone."""
    if not measures_gradients(cfg):
        return []
    from bsweep.train.gradient_noise import GradientCosineTracker, NoiseScaleTracker

    assert k == 1, "gradient measurements need a trial alone"
    trackers: list = []
    if cfg.noise.enabled:
        trackers.append(NoiseScaleTracker.from_config(cfg.noise, seed=cfg.seed))
    if cfg.noise.cosine_at:
        trackers.append(GradientCosineTracker(list(cfg.noise.cosine_at), steps, list(cfg.noise.cosine_batch_sizes),
                                              cfg.noise.cosine_draws, n, seed=cfg.seed))
    return trackers


class _Loop:
    """The state `train` carries from step to step, and the steps of the loop over it."""

    def __init__(self, members: Members, cfgs: list[Config], data: TensorData, perf: PerfChoice,
                 on_measure: OnMeasure | None) -> None:
        cfg, k, device = cfgs[0], members.k, data.x_train.device
        self.members, self.cfg, self.data, self.perf, self.on_measure = members, cfg, data, perf, on_measure
        self.k, self.device, self.n, self.batch = k, device, data.n_train, cfg.batch_size
        self.steps = total_steps(cfg.study.budget, self.n, self.batch)
        self.orders = [torch.Generator(device=device) for _ in cfgs]
        for g, c in zip(self.orders, cfgs):
            g.manual_seed(c.seed)
        self.trackers = _trackers(cfg, k, self.steps, self.n)
        self.results = [TrialResult(status="complete", total_steps=self.steps) for _ in cfgs]
        self.active = [True] * k
        self.base_lr = [effective_lr(c) for c in cfgs]
        self.watch = Stopwatch(device)
        self.eval_watch = Stopwatch(device)  # evaluation's own seconds: where a study's wall time goes
        self.step, self.factor = 0, lr_factor(cfg.schedule, 0, self.steps)
        self.at = measurement_steps(cfg.study.eval, self.batch, self.steps)
        # Every step's training loss since the last measurement, one row per step (a row write
        # costs what the running sum it replaces did): their mean is the row's train_loss, and
        # their step-to-step differences its train_loss_jitter (C7: how much training oscillates).
        # Row 0 holds the step before the window, so a window of one step (large batches measure
        # after every step) still has a difference.
        gaps = [b - a for a, b in zip(self.at, self.at[1:])]
        self.window = torch.zeros(1 + max(gaps, default=1), k, device=device, dtype=torch.float64)
        self.losses_since, self.before = 0, False
        self.latest: list[dict | None] = [None] * k  # each member's last row, for `on_measure`

    def set_lr(self) -> None:
        self.members.set_lr([lr if on else 0.0 for lr, on in zip(self.base_lr, self.active)], self.factor)

    def measure(self) -> None:
        """Evaluate, record a row per active member, and freeze the ones that are done."""
        cfg, step, k = self.cfg, self.step, self.k
        self.eval_watch.start()
        scores = evaluate(self.members, self.data, cfg.study.eval.batch_size, self.perf.amp)
        self.eval_watch.stop()
        train_loss, jitter = window_statistics(self.window, self.losses_since, k, self.before)
        if self.losses_since:
            self.window[0].copy_(self.window[self.losses_since])
            self.before = True
        self.losses_since = 0
        stopped = []
        for m in (m for m in range(k) if self.active[m]):
            row = {"step": step, "samples": step * self.batch, "epoch": step * self.batch / self.n,
                   "train_seconds": self.watch.seconds, "eval_seconds": self.eval_watch.seconds,
                   "train_loss": train_loss[m], "train_loss_jitter": jitter[m],
                   **{name: values[m] for name, values in scores.items()}, "lr": self.base_lr[m] * self.factor}
            for tracker in self.trackers:  # the clock is stopped here: gradient passes are not training time
                row.update(tracker.update(self.members.model, self.data, step))
            self.results[m].measurements.append(row)
            self.latest[m] = row
            if step == 0:
                continue
            if not (math.isfinite(row["train_loss"]) and math.isfinite(row["test_loss"])):
                self.results[m].status = "diverged"
                stopped.append(m)
            # both halves: the tuned view reads time to target on the held-out one
            elif cfg.study.budget.stop_at_target and min(row["val_acc"], row["heldout_acc"]) >= cfg.study.target:
                stopped.append(m)
        if stopped:
            self.members.freeze(stopped)
            for m in stopped:
                self.active[m] = False
            self.set_lr()
        if self.on_measure is not None:
            self.on_measure(step, self.steps, list(self.latest))

    def snapshot(self, epoch_start: list[torch.Tensor], at_index: int) -> dict:
        """The loop's whole state at a step boundary (clock stopped)."""
        return {"version": CHECKPOINT_VERSION, "step": self.step, "factor": self.factor, "active": list(self.active),
                "results": copy.deepcopy(self.results), "members": self.members.state(),
                "window": self.window[: self.losses_since + 1].clone(), "losses_since": self.losses_since,
                "before": self.before, "train_seconds": self.watch.seconds, "eval_seconds": self.eval_watch.seconds,
                "orders_at_epoch_start": epoch_start, "index_in_epoch": at_index,
                "trackers": copy.deepcopy(self.trackers), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None}

    def restore(self, saved: dict) -> int:
        """Put a `snapshot` back; returns the steps of its epoch already trained."""
        self.members.load_state(saved["members"])
        self.step, self.factor, self.active, self.results = saved["step"], saved["factor"], saved["active"], saved["results"]
        # saved at a measurement point, an earlier version kept only the window's row 0
        rows = saved["window"] if "window" in saved else saved["window0"][None]
        self.window[: len(rows)].copy_(rows)
        self.losses_since = saved.get("losses_since", 0)
        self.before, self.trackers = saved["before"], saved["trackers"]
        self.watch.seconds, self.eval_watch.seconds = saved["train_seconds"], saved["eval_seconds"]
        for g, state in zip(self.orders, saved["orders_at_epoch_start"]):
            g.set_state(state)
        torch.set_rng_state(saved["torch_rng"])
        if saved["cuda_rng"] is not None:
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        return saved["index_in_epoch"]

    def run(self, skip: int, checkpoint: Checkpoint | None) -> None:
        """Train from the current step to the budget's end (or until every member stopped),
        measuring on the cadence; `skip`: steps of the first epoch already trained."""
        cfg, n, batch, steps, members, window = self.cfg, self.n, self.batch, self.steps, self.members, self.window
        pending = iter([s for s in self.at[1:] if s > self.step])
        measure_at = next(pending, None)
        last_save = time.monotonic()
        self.watch.start()
        while self.step < steps and any(self.active):
            epoch_start = [g.get_state() for g in self.orders] if checkpoint is not None else []
            perms = epoch_order(cfg.data.order, n, self.orders, self.device, batch, self.data.y_train)
            first, skip = skip, 0
            for i in range(first, min(n // batch, steps - self.step + first)):
                new_factor = lr_factor(cfg.schedule, self.step, steps)
                if new_factor != self.factor:  # touch the optimizer only when the schedule moves
                    self.factor = new_factor
                    self.set_lr()
                losses = train_step(members, self.data, perms[:, i * batch : (i + 1) * batch], self.perf.amp)
                window[1 + self.losses_since].copy_(losses)
                self.losses_since += 1
                self.step += 1
                if self.step == measure_at:
                    self.watch.stop()
                    self.measure()
                    measure_at = next(pending, None)
                    if not any(self.active):
                        break
                    if (checkpoint is not None and time.monotonic() - last_save >= checkpoint.every_seconds
                            and self.step < steps):
                        checkpoint.save(self.snapshot(epoch_start, i + 1))
                        last_save = time.monotonic()
                    self.watch.start()
                if requested() is not None and self.step < steps:  # a plain read: no cost worth a sync
                    self.watch.stop()
                    saved_step = None
                    if checkpoint is not None:
                        checkpoint.save(self.snapshot(epoch_start, i + 1))
                        saved_step = self.step
                    raise Interrupted(requested(), saved_step)
