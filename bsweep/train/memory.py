"""Memory of one training step against batch size (claim C8), for `bsweep bench`.

Two numbers per point (model, norm, optimizer, batch size), for one trial alone:

- **accounted** (every device): the parameters, their gradients, the optimizer's state, the
  batch, and every tensor autograd saves for the backward pass (`saved_tensors_hooks`, each
  storage counted once, parameters and the stored dataset left out). It follows from shapes and
  dtypes only, so it is the same on every machine and the verdict reads it. It leaves out the
  backward pass's transient buffers and the allocator's rounding, so it is a lower bound of the
  process's need.
- **peak** (CUDA only): `torch.cuda.max_memory_allocated` over one step, above what was
  allocated before it, plus the parameters and optimizer state already held. NaN elsewhere: a
  CPU allocator has no peak counter of torch's own, and the process's resident set mixes in the
  interpreter, the libraries and the dataset.

Also the memory the step could use: the limit the study sets (`study.memory_limit_gib`), else
the device's (a GPU's total memory; on a CPU the machine's physical memory).
"""

from __future__ import annotations

import copy
import os

import torch

from bsweep.config import Config
from bsweep.train.data import TensorData
from bsweep.train.device import synchronize
from bsweep.train.engine import Alone, PerfChoice, autocast, train_step

GIB = 2**30  # bytes


def device_memory_bytes(device: torch.device) -> int:
    """The memory a step on `device` can use at most: the GPU's, or the machine's RAM."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _nbytes(tensors) -> int:
    return sum(t.untyped_storage().nbytes() for t in tensors)


def step_memory(cfg: Config, data: TensorData, batch_size: int, perf: PerfChoice = PerfChoice()) -> dict[str, float]:
    """{"step_memory_bytes", "peak_memory_bytes", "memory_limit_bytes"} of one training step of
    `cfg`'s trial alone at `batch_size` (see the module docstring). Torch's RNGs are left as they
    were; nothing of the caller's is trained."""
    cfg = copy.deepcopy(cfg)
    cfg.batch_size = min(batch_size, data.n_train)
    device = data.x_train.device
    with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_available() else []):
        members = Alone(cfg, data, perf)
    members.set_lr([cfg.lr * 1e-3])
    idx = torch.arange(cfg.batch_size, device=device).view(1, -1)
    train_step(members, data, idx, perf.amp)  # the optimizer's state exists from the first step on
    params = list(members.model.parameters())
    state = [v for s in members.opt.state.values() for v in s.values() if torch.is_tensor(v) and v.device == device]
    held = _nbytes(params) + _nbytes(state)

    skip = {t.untyped_storage().data_ptr() for t in [*params, data.x_train, data.y_train]}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in skip:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with autocast(device, perf.amp):
            losses = members.losses(data, idx)
    losses.backward()
    grads = _nbytes(p.grad for p in params if p.grad is not None)
    members.optimizer_step()
    accounted = held + grads + sum(saved.values())  # the batch is among the saved tensors

    peak = float("nan")
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        train_step(members, data, idx, perf.amp)
        synchronize(device)
        peak = float(torch.cuda.max_memory_allocated(device) - before + held)
    limit = cfg.study.memory_limit_gib * GIB if cfg.study.memory_limit_gib else device_memory_bytes(device)
    return {"step_memory_bytes": float(accounted), "peak_memory_bytes": peak, "memory_limit_bytes": float(limit)}
