"""Contiguous against channels_last, per member-step of the built-in CNN on mnist1d (float32).

The layout is a `perf.channels_last=auto` decision made per study, norm and batch size; this
prints what that decision sees, for a few (batch size, fusion width) points, as a ratio measured
in the same run (`bsweep.train.timing.time_interleaved`: best of 5 blocks, the layouts interleaved).

    python benchmarks/bench_layout.py batch            # the default points
    python benchmarks/bench_layout.py group 256x1,1024x1
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/bench_layout.py batch
"""

from __future__ import annotations

import sys

import torch

from bsweep.train import device, perf
from bsweep.train.data import data_for
from bsweep.train.engine import PerfChoice
from bsweep.plan import compose_config, structured
from bsweep.train.timing import time_interleaved

POINTS = "1x12,4x12,16x12,64x12,64x1,256x1,256x4,1024x1"  # batch size x fusion width
BLOCK_SECONDS = 0.1  # a block of steps lasts about this long (at least 3 steps)
ROUNDS = 5  # blocks of each layout, interleaved; the best counts


def main(norm: str, points: str) -> None:
    torch.set_num_threads(1)
    device.keep_freed_memory()
    print(f"torch {torch.__version__}, CPU kernels {torch.backends.cpu.get_cpu_capability()}, "
          f"flags {' '.join(sorted(f for f in device.cpu_flags() if f.startswith('avx512'))) or 'no avx512'}")
    for point in points.split(","):
        batch, width = (int(v) for v in point.split("x"))
        cfg = structured(compose_config(["data=mnist1d", f"batch_size={batch}", f"norm={norm}"]))
        data = data_for(cfg.data, torch.device("cpu"))
        steps = [(perf.timed_step(cfg, data, width, PerfChoice(False, cl)), data.x_train.device) for cl in (False, True)]
        contiguous, nhwc = (t / width for t in time_interleaved(steps, BLOCK_SECONDS, ROUNDS))
        print(f"norm={norm} batch {batch} width {width}: contiguous {contiguous * 1e3:.3f} ms, "
              f"channels_last {nhwc * 1e3:.3f} ms per member-step, ratio {contiguous / nhwc:.2f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "batch", sys.argv[2] if len(sys.argv) > 2 else POINTS)
