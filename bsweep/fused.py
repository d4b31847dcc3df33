"""Fused trials: K trials that differ only in learning rate and/or seed, trained as one model.

Small CNNs at small batch are bound by per-step overhead (Python, dispatch, kernel launches), not
arithmetic, so K trials in one model cost little more than one. The fused model is exact, not an
approximation: member k of a group is the same network, the same data order and the same updates
as `train.train_trial` on member k's config, because every layer keeps the members apart:

- conv: `Conv(K*Cin, K*Cout, groups=K)`; member k owns input and output channel block k;
- batch norm over K*C channels: statistics per channel, so per member (running stats too);
- group norm `GroupNorm(K*G, K*C)`, layer norm `GroupNorm(K, K*C)`, instance norm
  `GroupNorm(K*C, K*C)`: groups are contiguous channel blocks, never crossing members;
- weight norm: a norm per output filter, so per member;
- LRN sums neighbouring channels: applied on the (B*K, C, ...) view, so windows stop at members;
- classifier: a batched matmul over the member dimension (weights (K, classes, features)).

The input of a step is member k's own batch (its own permutation, from its own generator seeded
like `train_trial`) stacked as channel block k. The loss is the sum of the members' mean losses,
so each member's gradient is its own. Parameters live in one flat buffer (each tensor
member-major), and the optimizer (`FusedOptimizer`) is SGD (momentum, nesterov, weight decay)
or Adam written on that buffer with a per-member learning rate, the same arithmetic as
torch.optim's foreach implementations. Divergence is read per member at measurement points; a
diverged (or stopped-at-target) member is frozen: learning rate 0, parameters and optimizer state
reset to finite values, so it cannot disturb anyone, and it is no longer recorded.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bsweep.config import Config, OptimConfig, effective_lr
from bsweep.data import TensorData
from bsweep.models import SmallCNN, make_cnn
from bsweep.perf import PerfChoice, choose
from bsweep.train import (
    WARMUP_STEPS,
    TrialResult,
    autocast_context,
    lr_factor,
    measurement_steps,
    synchronize,
    total_steps,
)

# Widths the auto choice tries (members per fused model), and the cap: beyond 32 the gain per
# member has flattened in every measurement (README "Fused trials") and memory grows linearly.
CANDIDATE_WIDTHS = (1, 2, 4, 8, 16, 32)  # plus the group's own size, when it is not one of these
# Steps timed per candidate width (after 2 untimed), at least, and at least PROBE_SECONDS of them:
# at batch 1 a step is ~0.4 ms, and 8 steps alone gave medians noisy enough to pick width 1
# where width 8 was 3x faster per member.
PROBE_STEPS = 8
PROBE_SECONDS = 0.05
# The search over widths stops once a width is this much slower per member than the best so far
# (large batches, where grouped convolutions lose); a nearer miss is timing noise, not a trend:
# per-member time at batch 1 went 0.41, 0.42, 0.22, 0.13 ms over widths 1, 2, 4, 8.
STOP_RATIO = 1.5


# ----------------------------------------------------------------------------------------------
# Which trials can be fused


def fusion_key(cfg) -> str:
    """Trials with the same key can share a fused model: everything equal but `lr` and `seed`
    (and the trial's free-form tags). Runtime keys (device, threads, perf) are part of the key:
    a group runs in one place."""
    from dataclasses import asdict, is_dataclass

    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        tree = OmegaConf.to_container(cfg, resolve=True)
    else:
        tree = asdict(cfg) if is_dataclass(cfg) else cfg
    tree = json.loads(json.dumps(tree, default=str))
    for key in ("hydra", "lr", "seed", "tags"):
        tree.pop(key, None)
    canonical = json.dumps(tree, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------------------------
# The fused model


class MemberLRN(nn.Module):
    """Local response norm of K members stacked on channels: windows stop at member borders."""

    def __init__(self, k: int, lrn: nn.LocalResponseNorm) -> None:
        super().__init__()
        self.k = k
        self.lrn = nn.LocalResponseNorm(lrn.size, lrn.alpha, lrn.beta, lrn.k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, kc = x.shape[:2]
        y = self.lrn(x.reshape(b * self.k, kc // self.k, *x.shape[2:]))
        return y.reshape(x.shape)


def _fuse_conv(convs: list[nn.Module]) -> nn.Module:
    first = convs[0]
    weight_norm = hasattr(first, "parametrizations")
    w0 = first.parametrizations.weight.original1 if weight_norm else first.weight
    k = len(convs)
    cls = nn.Conv1d if isinstance(first, nn.Conv1d) else nn.Conv2d
    fused = cls(
        first.in_channels * k, first.out_channels * k, first.kernel_size, first.stride,
        first.padding, bias=first.bias is not None, groups=k,
        device=w0.device, dtype=w0.dtype,
    )
    with torch.no_grad():
        if weight_norm:
            fused = nn.utils.parametrizations.weight_norm(fused)
            p = fused.parametrizations.weight
            p.original0.copy_(torch.cat([c.parametrizations.weight.original0 for c in convs]))
            p.original1.copy_(torch.cat([c.parametrizations.weight.original1 for c in convs]))
        else:
            fused.weight.copy_(torch.cat([c.weight for c in convs]))
        if first.bias is not None:
            fused.bias.copy_(torch.cat([c.bias for c in convs]))
    return fused


def _fuse_norm(norms: list[nn.Module]) -> nn.Module:
    first, k = norms[0], len(norms)
    if isinstance(first, nn.Identity):
        return nn.Identity()
    if isinstance(first, nn.LocalResponseNorm):
        return MemberLRN(k, first)
    if isinstance(first, (nn.BatchNorm1d, nn.BatchNorm2d)):
        fused = type(first)(first.num_features * k, eps=first.eps, momentum=first.momentum)
    elif isinstance(first, nn.GroupNorm):
        fused = nn.GroupNorm(first.num_groups * k, first.num_channels * k, eps=first.eps)
    else:
        raise ValueError(f"cannot fuse {type(first).__name__}")
    fused = fused.to(first.weight.device)
    with torch.no_grad():
        fused.weight.copy_(torch.cat([n.weight for n in norms]))
        fused.bias.copy_(torch.cat([n.bias for n in norms]))
        if isinstance(first, (nn.BatchNorm1d, nn.BatchNorm2d)):
            fused.running_mean.copy_(torch.cat([n.running_mean for n in norms]))
            fused.running_var.copy_(torch.cat([n.running_var for n in norms]))
            fused.num_batches_tracked.copy_(first.num_batches_tracked)
    return fused


class FusedCNN(nn.Module):
    """K `SmallCNN`s as one network. Input (B, K*Cin, ...): member k's batch in channel block
    k. Output (K, B, classes): member k's logits in row k."""

    def __init__(self, members: list[SmallCNN]) -> None:
        super().__init__()
        self.k = len(members)
        blocks = [list(m.features) for m in members]
        layers: list[nn.Module] = []
        for i in range(0, len(blocks[0]), 3):  # conv, norm, ReLU
            layers.append(_fuse_conv([b[i] for b in blocks]))
            layers.append(_fuse_norm([b[i + 1] for b in blocks]))
            layers.append(nn.ReLU())
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            self.weight = nn.Parameter(torch.stack([m.classifier.weight for m in members]))
            self.bias = nn.Parameter(torch.stack([m.classifier.bias for m in members]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        b = h.shape[0]
        h = h.reshape(b, self.k, -1).transpose(0, 1)  # (K, B, features), member k's flatten
        return torch.baddbmm(self.bias.unsqueeze(1), h, self.weight.transpose(1, 2))


def flatten_parameters(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Move every parameter of a fused model into one flat buffer, each parameter a view of it.

    Returns (flat, member_of): member_of[i] is the member owning flat[i]. Every fused parameter
    is member-major (its first dimension is K blocks), so its part of the buffer is K equal runs.
    """
    params = [(mod, name, p) for mod in model.modules() for name, p in mod._parameters.items() if p is not None]
    total = sum(p.numel() for _, _, p in params)
    first = params[0][2]
    flat = torch.empty(total, device=first.device, dtype=first.dtype)
    member_of = torch.empty(total, device=first.device, dtype=torch.int64)
    k = model.k
    offset = 0
    for mod, name, p in params:
        n = p.numel()
        flat[offset : offset + n].copy_(p.detach().reshape(-1))
        member_of[offset : offset + n] = torch.arange(k, device=p.device).repeat_interleave(n // k)
        mod._parameters[name] = nn.Parameter(flat[offset : offset + n].view_as(p))
        offset += n
    return flat, member_of


# ----------------------------------------------------------------------------------------------
# The optimizer on the flat buffer


class FusedOptimizer:
    """SGD (momentum, dampening 0, nesterov, coupled weight decay) or Adam (coupled weight decay,
    no amsgrad) on a flat parameter buffer, with a learning rate per element (per member).

    The arithmetic follows torch.optim's foreach implementations step for step, so a member
    updates as it would alone (to float rounding of lr * grad).
    """

    def __init__(self, optim: OptimConfig, flat: torch.Tensor, params: list[nn.Parameter]) -> None:
        self.opt = optim
        self.flat, self.params = flat, params
        self.steps = 0
        self.buf: torch.Tensor | None = None  # SGD momentum / Adam first moment
        self.sq: torch.Tensor | None = None  # Adam second moment
        if self.opt.name not in ("sgd", "adam"):
            raise ValueError(f"unknown optimizer {self.opt.name!r}")

    def grad(self) -> torch.Tensor:
        return torch.cat([p.grad.reshape(-1) for p in self.params])

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        """One update with `lr` per element of the flat buffer."""
        o, p = self.opt, self.flat
        g = self.grad()
        for q in self.params:
            q.grad = None
        if o.weight_decay:
            g.add_(p, alpha=o.weight_decay)
        self.steps += 1
        if o.name == "sgd":
            if o.momentum:
                if self.buf is None:
                    self.buf = g.clone()
                else:
                    self.buf.mul_(o.momentum).add_(g)
                g = g.add(self.buf, alpha=o.momentum) if o.nesterov else self.buf
            p.addcmul_(lr, g, value=-1.0)
            return
        if self.buf is None:
            self.buf, self.sq = torch.zeros_like(p), torch.zeros_like(p)
        self.buf.lerp_(g, 1 - o.beta1)
        self.sq.mul_(o.beta2).addcmul_(g, g, value=1 - o.beta2)
        bc1 = 1 - o.beta1**self.steps
        bc2_sqrt = (1 - o.beta2**self.steps) ** 0.5
        denom = self.sq.sqrt().div_(bc2_sqrt).add_(o.eps)
        p.addcmul_(self.buf.div(denom), lr, value=-1.0 / bc1)

    @torch.no_grad()
    def reset(self, mask: torch.Tensor) -> None:
        """Zero the optimizer state of the elements in `mask` (a frozen member)."""
        for t in (self.buf, self.sq):
            if t is not None:
                t[mask] = 0.0


# ----------------------------------------------------------------------------------------------
# Training a group


@dataclass
class FusedGroup:
    """A fused model ready to train: the model, its flat parameters and its optimizer."""

    model: FusedCNN
    flat: torch.Tensor
    member_of: torch.Tensor
    opt: FusedOptimizer
    base_lr: torch.Tensor  # (K,) float


def build_group(cfgs: list[Config], data: TensorData, compile: bool = False) -> FusedGroup:
    """Initialize every member exactly as `train_trial` would (seeded `make_cnn`), then fuse
    (compiled in place when `compile`, as `train.prepare_model` does)."""
    device = data.x_train.device
    members = []
    for cfg in cfgs:
        torch.manual_seed(cfg.seed)
        members.append(make_cnn(data.input_shape, data.n_classes, cfg.model, cfg.norm).to(device))
    model = FusedCNN(members)
    if compile:
        model.compile(mode="reduce-overhead" if device.type == "cuda" else None)
    flat, member_of = flatten_parameters(model)
    opt = FusedOptimizer(cfgs[0].optim, flat, list(model.parameters()))
    base_lr = torch.tensor([effective_lr(c) for c in cfgs], device=device, dtype=flat.dtype)
    return FusedGroup(model, flat, member_of, opt, base_lr)


def stacked_batch(data: TensorData, idx: torch.Tensor, channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Member k's samples idx[k] as channel block k: x (B, K*Cin, ...), y (K, B)."""
    x = data.x_train[idx.t()]  # (B, K, Cin, ...), contiguous
    x = x.reshape(x.shape[0], -1, *x.shape[3:])
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, data.y_train[idx]


def member_losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(K,) mean cross-entropy of each member on its own batch."""
    k, b, c = logits.shape
    return F.cross_entropy(logits.reshape(k * b, c).float(), y.reshape(k * b), reduction="none").view(k, b).mean(1)


@torch.no_grad()
def evaluate_members(model: FusedCNN, data: TensorData, batch_size: int, amp: bool = False) -> tuple[list[float], list[float]]:
    """Test loss and accuracy of every member (eval mode), as `train.evaluate` computes them."""
    model.eval()
    k = model.k
    dev = data.x_test.device
    loss_sum = torch.zeros(k, device=dev)
    correct = torch.zeros(k, device=dev, dtype=torch.int64)
    reps = [1, k] + [1] * (data.x_test.dim() - 2)
    for i in range(0, len(data.x_test), batch_size):
        x, y = data.x_test[i : i + batch_size], data.y_test[i : i + batch_size]
        with autocast_context(dev, amp):
            logits = model(x.repeat(*reps)).float()  # (K, b, classes)
        kb = logits.shape[0] * logits.shape[1]
        losses = F.cross_entropy(logits.reshape(kb, -1), y.repeat(k), reduction="none")
        loss_sum += losses.view(k, -1).sum(1)
        correct += (logits.argmax(2) == y).sum(1)
    model.train()
    n = len(data.x_test)
    return (loss_sum / n).tolist(), (correct.double() / n).tolist()


def _step(group: FusedGroup, data: TensorData, idx: torch.Tensor, lr_full: torch.Tensor, amp: bool, cl: bool) -> torch.Tensor:
    x, y = stacked_batch(data, idx, cl)
    with autocast_context(x.device, amp):
        logits = group.model(x)
    losses = member_losses(logits, y)
    losses.sum().backward()
    group.opt.step(lr_full)
    return losses.detach()


def train_fused(cfgs: list[Config], data: TensorData, on_measurement=None,
                perf: PerfChoice | None = None) -> list[TrialResult]:
    """Train the trials `cfgs` (equal but for lr and seed) as one fused model.

    Returns one `TrialResult` per member, with the rows `train_trial` would give it; every
    member's `train_seconds` is the group's wall time (shared: calibrated throughput exists for
    time-to-target). `on_measurement(k, row)` is called for every recorded row.
    """
    keys = {fusion_key(c) for c in cfgs}
    if len(keys) != 1:
        raise ValueError("fused trials must differ only in lr and seed")
    cfg = cfgs[0]
    device = data.x_train.device
    perf = perf if perf is not None else choose(cfg, data)
    amp, cl = perf.amp, perf.channels_last
    k = len(cfgs)
    group = build_group(cfgs, data, perf.compile)
    model = group.model
    orders = []
    for c in cfgs:
        g = torch.Generator(device=device)
        g.manual_seed(c.seed)
        orders.append(g)

    n, batch = data.n_train, cfg.batch_size
    steps_per_epoch = n // batch
    steps = total_steps(cfg.study.budget, n, batch)
    to_measure = measurement_steps(cfg.study.eval, batch, steps)
    _warm_up(group, data, batch, cfg.study.eval.batch_size, amp, cl)
    init_flat = group.flat.clone()
    init_buffers = {name: b.clone() for name, b in model.named_buffers()}

    results = [TrialResult(status="complete", total_steps=steps) for _ in cfgs]
    active = [True] * k
    loss_sum = torch.zeros(k, device=device)
    losses_since = 0
    seconds = 0.0
    step = 0
    factor = lr_factor(cfg.schedule, 0, steps)
    active_t = torch.ones(k, device=device, dtype=group.flat.dtype)

    def lr_full_for(f: float) -> torch.Tensor:
        return (group.base_lr * f * active_t)[group.member_of]

    cached_factor, lr_full = factor, lr_full_for(factor)

    def measure() -> None:
        nonlocal loss_sum, losses_since
        test_loss, test_acc = evaluate_members(model, data, cfg.study.eval.batch_size, amp)
        train_loss = (loss_sum / losses_since).tolist() if losses_since else [math.nan] * k
        loss_sum = torch.zeros(k, device=device)
        losses_since = 0
        stopped = []
        for m in range(k):
            if not active[m]:
                continue
            row = {
                "step": step,
                "samples": step * batch,
                "epoch": step * batch / n,
                "train_seconds": seconds,
                "train_loss": train_loss[m],
                "test_loss": test_loss[m],
                "test_acc": test_acc[m],
                "lr": effective_lr(cfgs[m]) * factor,
            }
            results[m].measurements.append(row)
            if on_measurement is not None:
                on_measurement(m, row)
            if step == 0:
                continue
            if not (math.isfinite(row["train_loss"]) and math.isfinite(row["test_loss"])):
                results[m].status = "diverged"
                stopped.append(m)
            elif cfg.study.budget.stop_at_target and row["test_acc"] >= cfg.study.target:
                stopped.append(m)
        if stopped:
            _freeze(group, stopped, init_flat, init_buffers)
            for m in stopped:
                active[m] = False
                active_t[m] = 0.0

    measure()
    next_measure = iter(to_measure[1:])
    measure_at = next(next_measure, None)
    clock = time.perf_counter()
    while step < steps and any(active):
        perms = torch.stack([torch.randperm(n, generator=g, device=device) for g in orders])
        for i in range(min(steps_per_epoch, steps - step)):
            idx = perms[:, i * batch : (i + 1) * batch]
            factor = lr_factor(cfg.schedule, step, steps)
            if factor != cached_factor:
                cached_factor, lr_full = factor, lr_full_for(factor)
            loss_sum += _step(group, data, idx, lr_full, amp, cl)
            losses_since += 1
            step += 1
            if step != measure_at:
                continue
            synchronize(device)
            seconds += time.perf_counter() - clock
            measure()
            cached_factor, lr_full = factor, lr_full_for(factor)  # the active set may have changed
            measure_at = next(next_measure, None)
            if not any(active):
                break
            clock = time.perf_counter()
    return results


@torch.no_grad()
def _freeze(group: FusedGroup, members: list[int], init_flat: torch.Tensor, init_buffers: dict) -> None:
    """Stop members for good: lr 0 (by the caller), parameters, optimizer state and norm
    statistics back to their finite initial values, so NaN or inf cannot reach anyone."""
    mask = torch.zeros_like(group.member_of, dtype=torch.bool)
    for m in members:
        mask |= group.member_of == m
    group.flat[mask] = init_flat[mask]
    group.opt.reset(mask)
    k = group.model.k
    for name, b in group.model.named_buffers():
        if b.dim() == 0 or b.shape[0] % k:
            continue
        rows = b.view(k, -1)
        for m in members:
            rows[m] = init_buffers[name].view(k, -1)[m]


def _warm_up(group: FusedGroup, data: TensorData, batch: int, eval_batch: int, amp: bool, cl: bool) -> None:
    """Untimed steps on a copy, so the real model, optimizer state and RNGs are untouched."""
    shadow = copy.deepcopy(group.model)
    flat, member_of = flatten_parameters(shadow)
    opt = FusedOptimizer(group.opt.opt, flat, list(shadow.parameters()))
    copy_group = FusedGroup(shadow, flat, member_of, opt, group.base_lr)
    k = shadow.k
    idx = torch.arange(batch, device=data.x_train.device).repeat(k, 1)
    lr_full = group.base_lr[member_of]
    for _ in range(WARMUP_STEPS):
        _step(copy_group, data, idx, lr_full, amp, cl)
    evaluate_members(shadow, data, eval_batch, amp)
    synchronize(data.x_train.device)


# ----------------------------------------------------------------------------------------------
# Choosing the fusion width by measuring


_WIDTH_CACHE: dict[tuple, dict[int, float]] = {}


def step_seconds(cfg: Config, data: TensorData, width: int, steps: int = PROBE_STEPS,
                 perf: PerfChoice = PerfChoice()) -> float:
    """Median wall seconds of one fused step of `width` copies of `cfg`'s trial."""
    cfgs = [cfg] * width
    amp, cl = perf.amp, perf.channels_last
    state = torch.random.get_rng_state()
    try:
        group = build_group(cfgs, data, perf.compile)
    finally:
        torch.random.set_rng_state(state)
    device = data.x_train.device
    batch = min(cfg.batch_size, data.n_train)
    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    lr_full = group.base_lr[group.member_of] * 1e-3  # small: the probe must not blow up
    times: list[float] = []
    i = 0
    while i < steps + 2 or sum(times) < PROBE_SECONDS:
        idx = torch.randint(0, data.n_train, (width, batch), generator=gen, device=device)
        synchronize(device)
        t = time.perf_counter()
        _step(group, data, idx, lr_full, amp, cl)
        synchronize(device)
        if i >= 2:
            times.append(time.perf_counter() - t)
        i += 1
    times.sort()
    return times[len(times) // 2]


def width_table(cfg: Config, data: TensorData, max_width: int, perf: PerfChoice = PerfChoice()) -> dict[int, float]:
    """Seconds per member-step at each candidate width up to `max_width` (cached per shape).

    Widths are tried in increasing order (the powers of two below `max_width`, then `max_width`)
    and the search stops once a width is clearly (STOP_RATIO) slower per member than the best.
    """
    key = (fusion_key(cfg), str(data.x_train.device), data.n_train, max_width, torch.get_num_threads(), perf)
    if key in _WIDTH_CACHE:
        return _WIDTH_CACHE[key]
    table: dict[int, float] = {}
    best = math.inf
    for w in sorted({*(c for c in CANDIDATE_WIDTHS if c < max_width), max_width}):
        per_member = step_seconds(cfg, data, w, perf=perf) / w
        table[w] = per_member
        if per_member > STOP_RATIO * best:
            break
        best = min(best, per_member)
    _WIDTH_CACHE[key] = table
    return table


def choose_width(cfg: Config, data: TensorData, n_members: int, perf: PerfChoice = PerfChoice()) -> int:
    """The fusion width for a group of `n_members` trials like `cfg`: forced by `perf.fuse`, or
    measured ("auto"): the candidate width with the lowest seconds per member-step."""
    fuse = str(cfg.perf.fuse).strip().lower()
    if fuse == "off" or n_members <= 1:
        return 1
    if fuse != "auto":
        try:
            width = int(fuse)
        except ValueError:
            raise ValueError(f"perf.fuse={cfg.perf.fuse!r}: use auto, off or a width >= 1") from None
        if width < 1:
            raise ValueError(f"perf.fuse={width}: a width must be >= 1")
        return min(width, n_members)
    # Widths are ranked eagerly even when the group will train compiled: compiling each
    # candidate would cost a compile per width (5-15 s each on the CPU) to rank them.
    table = width_table(cfg, data, n_members, dataclasses.replace(perf, compile=False))
    return min(table, key=table.get)


def split(items: list, width: int) -> list[list]:
    """Chunks of at most `width`, as even as possible (14 at width 8 -> 7 + 7, not 8 + 6)."""
    if not items:
        return []
    chunks = math.ceil(len(items) / width)
    size, extra = divmod(len(items), chunks)
    out, start = [], 0
    for i in range(chunks):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out
