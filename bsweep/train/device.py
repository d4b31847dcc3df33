"""Where training runs: the device, waiting for it, and what it is called. Named once here, so a
trial's env.json, the perf decisions and the bench table agree on the machine."""

from __future__ import annotations

import functools
import gc
import os
import platform
import socket
import sys
from pathlib import Path

import torch


def resolve_device(name: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; anything else is taken as asked."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so a clock read after it counts that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name (/proc/cpuinfo: `platform.processor()` says only
    "x86_64" on Linux, which cannot tell an AVX-512 EPYC from an AVX2 one)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (/proc/cpuinfo: avx512f, avx512_bf16, ...); empty where unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def environment(device: torch.device) -> dict:
    """What a trial's env.json records about where it ran."""
    return {
        "device": str(device),
        "device_name": device_name(device),
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def settle(threads: int, device: str) -> torch.device:
    """Set this process up to train: `threads` torch threads, denormals flushed, the device."""
    torch.set_num_threads(threads)
    # Denormal floats make CPU kernels up to 100x slower late in training; flushing them to zero
    # changed nothing measurable (test accuracy identical in our runs) and keeps step time flat.
    torch.set_flush_denormal(True)
    keep_freed_memory()
    return resolve_device(device)


# glibc's malloc serves a block over its mmap threshold (128 KiB to start) with fresh pages from
# the kernel and gives the top of its heap back once 128 KiB lie free there, so a CPU step or
# evaluation whose activations are 0.1-30 MiB each faults its pages in again on every call.
# These two settings halve an evaluation's time on CPU (docs/performance.md). Freed memory then
# stays with the process up to its peak, as torch's CUDA caching allocator keeps it on a GPU.
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest allowed on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD_BYTES = 1 << 30  # give the heap's top back only past 1 GiB free
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)


@functools.cache
def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed blocks of up to 32 MiB for the next allocation instead of
    returning them to the kernel; False where the C library is not glibc (musl, macOS, Windows)."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # TypeError: Windows has no CDLL(None)
        return False
    # mallopt returns 1 on success; setting either threshold turns glibc's dynamic one off
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


def free_memory(device: torch.device) -> None:
    """Give back what a failed attempt left, before the next one starts."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
