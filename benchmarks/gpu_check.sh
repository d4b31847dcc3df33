#!/usr/bin/env bash
# On a GPU machine (H100 / H200): the CUDA tests, then the benchmark against the plain loop,
# within 8 minutes in all. Output (test log, Markdown section, raw JSON) goes to $OUT
# (default benchmarks/out); append $OUT/BENCHMARKS-gpu.md to BENCHMARKS.md with the card's name.
#
#   bash benchmarks/gpu_check.sh            # uses .venv/bin/python when present
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=${OUT:-benchmarks/out}
mkdir -p "$OUT"
start=$SECONDS
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA'; print(torch.__version__, torch.cuda.get_device_name(0))" || exit 1

# 1. CUDA tests (skipped on CPU machines): no host sync in a step, fused == alone on CUDA,
#    bf16 training; then the fused exactness tests (CPU math, quick). ~1-2 minutes.
timeout 180 "$PY" -m pytest -q tests/test_fast_loop.py tests/test_fused.py -x -p no:cacheprovider \
    2>&1 | tee "$OUT/tests.txt"
tests=${PIPESTATUS[0]}

# 2. The benchmark: per-trial step times (batch 1..1024, with achieved FLOP/s at 1024 as a
#    fraction of the bf16 peak), then the whole claims_quick study at 0.25 of every trial's
#    budget on both sides (the plain loop is the slow side: ~4 min on a GPU). One process for
#    bsweep on the GPU (--jobs 1 is the default with a GPU).
left=$(( 470 - (SECONDS - start) ))
timeout "$left" "$PY" benchmarks/bench_vs_plain.py --scale 0.25 --seconds-per-point 1 \
    --write "$OUT/BENCHMARKS-gpu.md" --json "$OUT/gpu.json" 2>&1 | tee "$OUT/bench.txt"
bench=${PIPESTATUS[0]}
echo "tests exit $tests, benchmark exit $bench, $((SECONDS - start)) s"
[ "$tests" = 0 ] && [ "$bench" = 0 ]
