"""Fused trials: K trials that differ only in learning rate and/or seed, trained as one model.

Small CNNs at small batch are bound by per-step overhead (Python, dispatch, kernel launches), not
arithmetic, so K trials in one model cost little more than one. The fused model is exact, not an
approximation: member k of a group is the same network, the same data order and the same updates
as the trial alone (`engine.Alone`), because every layer keeps the members apart:

- conv: `Conv(K*Cin, K*Cout, groups=K)`; member k owns input and output channel block k;
- batch norm over K*C channels: statistics per channel, so per member (running stats too);
- group norm `GroupNorm(K*G, K*C)`, layer norm `GroupNorm(K, K*C)`, instance norm
  `GroupNorm(K*C, K*C)`: groups are contiguous channel blocks, never crossing members;
- weight norm: a norm per output filter, so per member;
- LRN sums neighbouring channels: applied on the (B*K, C, ...) view, so windows stop at members;
- classifier: a batched matmul over the member dimension (weights (K, classes, features)).

A step's input is member k's own batch stacked as channel block k; the engine sums the members'
mean losses, so each member's gradient is its own. Parameters live in one flat buffer (each
tensor member-major), and `FusedOptimizer` is SGD (momentum, nesterov, weight decay) or Adam on
that buffer with a per-member learning rate, the arithmetic of torch.optim's foreach
implementations. A frozen member (diverged, or stopped at its target) gets learning rate 0 and
its parameters, optimizer state and norm statistics reset to finite values, so it cannot
disturb anyone. `bsweep.train.engine.train` is the loop; this module is only the model.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from bsweep.config import Config, OptimConfig, effective_lr
from bsweep.train.data import TensorData
from bsweep.train.engine import Alone, Members, PerfChoice, as_input, member_losses, prepare
from bsweep.train.models import ChannelLRN, SmallCNN, as_image, channels_last_only, flatten, make_cnn, make_model
from bsweep.plan import fusion_key


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


# ----------------------------------------------------------------------------------------------
# The fused model


class MemberLRN(nn.Module):
    """Local response norm of K members stacked on channels: windows stop at member borders."""

    def __init__(self, k: int, lrn: ChannelLRN) -> None:
        super().__init__()
        self.k = k
        self.lrn = ChannelLRN(lrn.channels, lrn.size, lrn.alpha, lrn.beta, lrn.k).to(lrn.band.device)

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
    if isinstance(first, ChannelLRN):
        return MemberLRN(k, first)
    if isinstance(first, (nn.BatchNorm1d, nn.BatchNorm2d)):
        fused = type(first)(first.num_features * k, eps=first.eps, momentum=first.momentum)
    elif isinstance(first, nn.GroupNorm):
        fused = nn.GroupNorm(first.num_groups * k, first.num_channels * k, eps=first.eps)
    else:
        raise ValueError(f"cannot fuse {type(first).__name__}")
    fused = fused.to(first.weight)  # device and dtype
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
        self.signal = members[0].signal
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
        h = flatten(self.features(as_image(x, self.signal)))
        h = h.view(h.shape[0], self.k, -1).transpose(0, 1)  # (K, B, features), member k's flatten
        return torch.baddbmm(self.bias.unsqueeze(1), h, self.weight.transpose(1, 2))

    def member_forward(self, x: torch.Tensor, m: int) -> torch.Tensor:
        """(B, classes): member m alone on x (its own input channels, (B, Cin, ...)), with its
        slice of every fused weight, as a dense network; eval mode only (batch norm reads its
        running statistics)."""
        assert not self.training, "member_forward evaluates; train through forward"
        h = as_image(x, self.signal)
        for layer in self.features:
            if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
                w = layer.weight  # computed through weight_norm's parametrization, if any
                rows = slice(m * w.shape[0] // self.k, (m + 1) * w.shape[0] // self.k)
                bias = layer.bias[rows] if layer.bias is not None else None
                conv = F.conv1d if isinstance(layer, nn.Conv1d) else F.conv2d
                h = conv(h, w[rows], bias, layer.stride, layer.padding)
            elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
                rows = slice(m * layer.num_features // self.k, (m + 1) * layer.num_features // self.k)
                h = F.batch_norm(h, layer.running_mean[rows], layer.running_var[rows], layer.weight[rows],
                                 layer.bias[rows], False, 0.0, layer.eps)
            elif isinstance(layer, nn.GroupNorm):
                rows = slice(m * layer.num_channels // self.k, (m + 1) * layer.num_channels // self.k)
                h = F.group_norm(h, layer.num_groups // self.k, layer.weight[rows], layer.bias[rows], layer.eps)
            elif isinstance(layer, MemberLRN):
                h = layer.lrn(h)
            else:  # ReLU, Identity
                h = layer(h)
        return F.linear(h.flatten(1), self.weight[m], self.bias[m])


def flatten_parameters(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Move every parameter of a fused model into one flat buffer, each parameter a view of it.

    Returns (flat, member_of): member_of[i] is the member owning flat[i]. Every fused parameter
    is member-major (its first dimension is K blocks), so its part of the buffer is K equal runs.
    """
    params = [(mod, name, p) for mod in model.modules() for name, p in mod._parameters.items() if p is not None]
    flat, member_of, views = flat_parameters([p for _, _, p in params], model.k)
    for (mod, name, _), view in zip(params, views):
        mod._parameters[name] = view
    return flat, member_of


def flat_parameters(tensors: list[torch.Tensor], k: int) -> tuple[torch.Tensor, torch.Tensor, list[nn.Parameter]]:
    """`tensors` (each member-major: K equal runs) copied into one flat buffer: (flat,
    member_of, a Parameter viewing each tensor's part of it), member_of[i] the member owning
    flat[i].

    Each view keeps its tensor's memory layout: a channels_last conv weight stays channels_last
    (its first dimension is still the outermost, so its members are still K equal runs). A
    contiguous view of it would put the fused convolutions back in the contiguous layout
    whatever `perf.channels_last` chose, and oneDNN's convolution backward then copies its
    input into the weight's layout at every step."""
    first = tensors[0]
    flat = torch.empty(sum(t.numel() for t in tensors), device=first.device, dtype=first.dtype)
    member_of = torch.empty(flat.numel(), device=first.device, dtype=torch.int64)
    views, offset = [], 0
    for t in tensors:
        n, order = t.numel(), memory_order(t)
        part = flat[offset : offset + n]
        if order is None:
            view = part.view_as(t)
        else:  # (0, 2, 3, 1): the first dimension stays outermost, so members stay K equal runs
            view = part.view([t.shape[d] for d in order]).permute(0, 3, 1, 2)
        view.copy_(t.detach())
        member_of[offset : offset + n] = torch.arange(k, device=t.device).repeat_interleave(n // k)
        views.append(nn.Parameter(view))
        offset += n
    return flat, member_of, views


# A channels_last 4-D tensor's dimensions from the outermost in memory to the innermost
CHANNELS_LAST_ORDER = (0, 2, 3, 1)


def memory_order(t: torch.Tensor) -> tuple[int, ...] | None:
    """The order of t's dimensions in memory when it is channels_last; None when it is in its
    own order. Other layouts are kept in the flat buffer contiguous."""
    return CHANNELS_LAST_ORDER if channels_last_only(t) else None


# ----------------------------------------------------------------------------------------------
# The optimizer on the flat buffer


class FusedOptimizer:
    """SGD (momentum, dampening 0, nesterov, coupled weight decay) or Adam (coupled weight decay,
    no amsgrad) on a flat parameter buffer, with a learning rate per element (per member).

    The arithmetic follows torch.optim's foreach implementations step for step, so a member
    updates as it would alone (to float rounding of lr * grad).
    """

    def __init__(self, optim: OptimConfig, flat: torch.Tensor, params: list[nn.Parameter]) -> None:
        if optim.name not in ("sgd", "adam"):
            raise ValueError(f"unknown optimizer {optim.name!r}")
        self.opt, self.flat, self.params = optim, flat, params
        # each parameter's dimensions in the flat buffer's order (`flat_parameters`); None: its own
        self.orders = [memory_order(q) for q in params]
        self.steps = 0
        self.buf: torch.Tensor | None = None  # SGD momentum / Adam first moment
        self.sq: torch.Tensor | None = None  # Adam second moment

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        """One update with `lr` per element of the flat buffer; clears the gradients."""
        o, p = self.opt, self.flat
        # in each parameter's memory order (autograd gives a gradient its parameter's strides,
        # so the permute is a view and the reshape copies nothing)
        g = torch.cat([(q.grad if o is None else q.grad.permute(*o)).reshape(-1)
                       for q, o in zip(self.params, self.orders)])
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
# K members as one (the engine's `Members`)


def member_nets(cfgs: list[Config], data: TensorData, build) -> list[nn.Module]:
    """Each trial's network on the data's device, built by `build` (make_cnn, make_model) and
    seeded exactly as `engine.Alone` builds it alone; the configs may differ only in lr and seed."""
    if len({fusion_key(c) for c in cfgs}) != 1:
        raise ValueError("fused trials must differ only in lr and seed")
    nets = []
    for cfg in cfgs:
        torch.manual_seed(cfg.seed)
        nets.append(build(data.input_shape, data.n_classes, cfg.model, cfg.norm).to(data.x_train.device))
    return nets


class FlatMembers:
    """What both kinds of fused members share: every parameter a view of one flat buffer
    (member-major; `member_of` names each element's member), a learning rate per member,
    `FusedOptimizer`, freezing, and the state a checkpoint keeps. A subclass sets k, flat,
    member_of and opt, then calls `_remember_start`, and says where its buffers are."""

    k: int
    flat: torch.Tensor
    member_of: torch.Tensor
    opt: "FusedOptimizer"

    def _buffers(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _remember_start(self) -> None:
        # finite values a frozen member goes back to
        self.init_flat = self.flat.clone()
        self.init_buffers = {name: b.clone() for name, b in self._buffers().items()}

    def set_lr(self, lrs: list[float], factor: float = 1.0) -> None:
        # A copy from host memory waits for the device (a stream sync on CUDA): only when the
        # members' lrs change (a member frozen at a measurement point), not when the schedule does.
        if getattr(self, "_lrs", None) != lrs:
            self._lrs = list(lrs)
            self._lr_full = torch.tensor(lrs, dtype=self.flat.dtype).to(self.flat.device)[self.member_of]
        self.lr = self._lr_full * factor

    def optimizer_step(self) -> None:
        self.opt.step(self.lr)

    @torch.no_grad()
    def freeze(self, members: list[int]) -> None:
        mask = torch.zeros_like(self.member_of, dtype=torch.bool)
        for m in members:
            mask |= self.member_of == m
        self.flat[mask] = self.init_flat[mask]
        self.opt.reset(mask)
        for name, b in self._buffers().items():
            if b.dim() == 0 or b.shape[0] % self.k:
                continue  # not per member (a fused BatchNorm's num_batches_tracked)
            rows = b.view(self.k, -1)
            for m in members:
                rows[m] = self.init_buffers[name].view(self.k, -1)[m]

    def state(self) -> dict:
        return {"flat": self.flat.clone(), "buffers": {n: b.clone() for n, b in self._buffers().items()},
                "opt": {"steps": self.opt.steps, "buf": _clone(self.opt.buf), "sq": _clone(self.opt.sq)}}

    @torch.no_grad()
    def load_state(self, state: dict) -> None:
        self.flat.copy_(state["flat"])
        for name, b in self._buffers().items():
            b.copy_(state["buffers"][name])
        saved = state["opt"]
        self.opt.steps, self.opt.buf, self.opt.sq = saved["steps"], _clone(saved["buf"]), _clone(saved["sq"])


def _clone(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.clone()


class Fused(FlatMembers):
    """K trials like `cfgs` as one `FusedCNN` with a `FusedOptimizer`; each member initialized
    exactly as `engine.Alone` initializes it alone (seeded `make_cnn`)."""

    def __init__(self, cfgs: list[Config], data: TensorData, perf: PerfChoice) -> None:
        nets = member_nets(cfgs, data, make_cnn)
        self.k, self.cl, self.optim = len(cfgs), perf.channels_last, cfgs[0].optim
        self._setup(prepare(FusedCNN(nets), data.x_train.device, perf))
        self.set_lr([effective_lr(c) for c in cfgs])

    def _setup(self, model: FusedCNN) -> None:
        self.model = model
        self.flat, self.member_of = flatten_parameters(model)
        self.opt = FusedOptimizer(self.optim, self.flat, list(model.parameters()))
        self._remember_start()

    def _buffers(self) -> dict[str, torch.Tensor]:
        return dict(self.model.named_buffers())

    def batch_logits(self, data: TensorData, idx: torch.Tensor) -> torch.Tensor:
        """(K, B, classes): member k's logits on its samples idx[k]."""
        x = data.x_train[idx.t()]  # (B, K, Cin, ...): member k's samples idx[k] as channel block k
        return self.model(as_input(x.reshape(x.shape[0], -1, *x.shape[3:]), self.cl))

    def losses(self, data: TensorData, idx: torch.Tensor) -> torch.Tensor:
        return member_losses(self.batch_logits(data, idx), data.y_train[idx])

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu":
            # Evaluation batches are large (study.eval.batch_size), where oneDNN's grouped conv
            # is slower than K dense ones (docs/performance.md). Fusion pays at small training
            # batches, not here. On a GPU the fused kernel is one launch instead of K.
            x = as_input(x, self.cl)
            return torch.stack([self.model.member_forward(x, m) for m in range(self.k)])
        return self.model(as_input(x.repeat(1, self.k, *[1] * (x.dim() - 2)), self.cl))

    def copy(self) -> "Fused":
        # deepcopy would turn the parameters' views of the flat buffer into separate tensors
        other = copy.copy(self)
        other._setup(copy.deepcopy(self.model))
        return other


# ----------------------------------------------------------------------------------------------
# Models of the user's own: K members as one through torch.func.vmap


def vmap_obstacle(net: nn.Module) -> str | None:
    """Why K copies of `net` cannot train as one under `torch.func.vmap` and stay exact, or None:
    BatchNorm's running statistics are updated in place (vmap cannot batch that), weight norm's
    parametrizations do not stack, and dropout would draw other random numbers than alone."""
    from torch.nn.utils import parametrize

    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats:
            return f"its {type(m).__name__} keeps running statistics"
        if parametrize.is_parametrized(m):
            return "it has parametrized layers (norm=weight)"
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0:
            return "its dropout would draw other random numbers fused than alone"
    return None


def custom_obstacle(cfg: Config, data: TensorData) -> str | None:
    """`vmap_obstacle` of the trial's model of the user's own, built once on the CPU (torch's
    RNG left as it was)."""
    with torch.random.fork_rng(devices=[]):
        return vmap_obstacle(make_model(data.input_shape, data.n_classes, cfg.model, cfg.norm))


class VmapFused(FlatMembers):
    """K trials of a model of the user's own (`model._target_`), equal but for lr and seed, as
    one: each member built and initialized exactly as `engine.Alone` builds it, their parameters
    stacked (`torch.func.stack_module_state`) into one flat buffer, and the forward pass of all
    members one `torch.func.vmap` of `functional_call` over the stacked weights; `FusedOptimizer`
    updates them. Only for models without a `vmap_obstacle`; `channels_last` and `compile` are
    not applied (the members run as vmap batches them). Members equal their trial alone to float
    rounding, as `Fused`'s do (tests/test_custom.py)."""

    def __init__(self, cfgs: list[Config], data: TensorData, perf: PerfChoice) -> None:
        from torch.func import stack_module_state

        nets = member_nets(cfgs, data, make_model)
        obstacle = vmap_obstacle(nets[0])
        if obstacle:
            raise ValueError(f"{cfgs[0].model.target} cannot be fused: {obstacle}")
        self.k, self.optim = len(cfgs), cfgs[0].optim
        params, buffers = stack_module_state(nets)
        self.model = copy.deepcopy(nets[0]).to("meta")  # the structure; train()/eval() switch all
        self._setup({n: p.detach() for n, p in params.items()}, buffers)
        self.set_lr([effective_lr(c) for c in cfgs])

    def _setup(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor]) -> None:
        # each stacked tensor is (K, ...): member-major
        self.flat, self.member_of, views = flat_parameters(list(params.values()), self.k)
        self.params: dict[str, nn.Parameter] = dict(zip(params, views))
        self.buffers = buffers
        self.opt = FusedOptimizer(self.optim, self.flat, list(self.params.values()))
        self._remember_start()

    def _buffers(self) -> dict[str, torch.Tensor]:
        return self.buffers

    def _forward(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        from torch.func import functional_call, vmap

        def one(p, b, xi):
            return functional_call(self.model, (p, b), (xi,))

        return vmap(one, in_dims=(0, 0, None if shared else 0))(self.params, self.buffers, x)

    def losses(self, data: TensorData, idx: torch.Tensor) -> torch.Tensor:
        return member_losses(self._forward(data.x_train[idx], shared=False), data.y_train[idx])

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x, shared=True)

    def copy(self) -> "VmapFused":
        other = copy.copy(self)  # as Fused.copy: the same lrs, weights and buffers copied, a fresh optimizer
        other._setup(dict(self.params), {n: b.clone() for n, b in self.buffers.items()})
        return other


def build_members(cfgs: list[Config], data: TensorData, perf: PerfChoice) -> Members:
    """The engine's members for `cfgs`: a trial alone for one config, a fused model for more
    (grouped convolutions for the built-in CNN, vmap for a model of the user's own)."""
    if len(cfgs) == 1:
        return Alone(cfgs[0], data, perf)
    return VmapFused(cfgs, data, perf) if cfgs[0].model.target is not None else Fused(cfgs, data, perf)
