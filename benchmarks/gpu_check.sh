#!/usr/bin/env bash
# On a GPU machine (H100 / H200): the CUDA tests, then the benchmark against the plain loop,
# within 8 minutes in all. Output (test log, Markdown section, raw JSON) goes to $OUT
# (default benchmarks/out); append $OUT/BENCHMARKS-gpu.md to BENCHMARKS.md with the card's name.
#
# A GPU machine without bsweep's pure-Python dependencies (hydra-core, omegaconf, antlr4,
# mnist1d, the hydra launchers) and without internet: first, on a machine with PyPI, run
# `bash benchmarks/gpu_wheels.sh` (writes .whl/), carry .whl along, and this script installs
# them into /tmp/site and runs bsweep from this checkout (PYTHONPATH), nothing installed there.
#
#   bash benchmarks/gpu_check.sh            # uses .venv/bin/python when present, else python3
#   GPU_CHECK_ALLOW_CPU=1 SCALE=0.02 SECONDS_PER_POINT=0.2 bash benchmarks/gpu_check.sh  # try the set-up on a CPU
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=${OUT:-benchmarks/out}
SCALE=${SCALE:-0.25}
SECONDS_PER_POINT=${SECONDS_PER_POINT:-1}
mkdir -p "$OUT"
start=$SECONDS
if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
"$PY" -c "import torch, hydra, omegaconf, mnist1d, bsweep.cli; print('torch', torch.__version__, 'hydra', hydra.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))" || exit 1
if [ -z "${GPU_CHECK_ALLOW_CPU:-}" ]; then
    "$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA'" || exit 1
fi

# 1. CUDA tests (skipped on CPU machines): no host sync in a step, fused == alone on CUDA,
#    bf16 training, the auto probe and torch.compile with CUDA graphs; then the fused
#    exactness tests (CPU math, quick). ~1-2 minutes.
timeout 200 "$PY" -m pytest -q tests/test_fast_loop.py tests/test_fused.py tests/test_perf.py -x -p no:cacheprovider \
    2>&1 | tee "$OUT/tests.txt"
tests=${PIPESTATUS[0]}

# 2. The benchmark: per-trial step times (batch 1..1024, the settings perf=auto picks, and with
#    a GPU also perf.compile=on; achieved FLOP/s at 1024 as a fraction of the bf16 peak), then
#    the whole claims_quick study at SCALE of every trial's budget on both sides (the plain loop
#    is the slow side: ~4 min on a GPU at 0.25): bsweep as a user runs it (one process: --jobs 1
#    is the default with a GPU), the plain loop, then bsweep with perf.compile=on (CUDA graphs)
#    and with 4 processes sharing the GPU, to choose the GPU defaults by measurement. Whatever
#    the time limit cuts off is missing from the output; everything measured before it is kept.
left=$(( 470 - (SECONDS - start) ))
timeout "$left" "$PY" benchmarks/bench_vs_plain.py --scale "$SCALE" --seconds-per-point "$SECONDS_PER_POINT" \
    --also "perf.compile=on" --also "hydra.launcher.n_jobs=4" \
    --write "$OUT/BENCHMARKS-gpu.md" --json "$OUT/gpu.json" 2>&1 | tee "$OUT/bench.txt"
bench=${PIPESTATUS[0]}
echo "tests exit $tests, benchmark exit $bench, $((SECONDS - start)) s"
[ "$tests" = 0 ] && [ "$bench" = 0 ]
