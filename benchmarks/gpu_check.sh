#!/usr/bin/env bash
# On a GPU machine (H100 / H200): the CUDA tests, the smoke study and its report with
# device=auto, then the benchmark against the plain loop, within 9 minutes (TOTAL_SECONDS) in
# all. Output (test log, report.md, Markdown section, raw JSON) goes to $OUT (default
# benchmarks/out); append $OUT/BENCHMARKS-gpu.md to BENCHMARKS.md with the card's name.
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
SCALE=${SCALE:-0.03}
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
#    bf16 training, the auto probe and torch.compile with CUDA graphs, two workers sharing the
#    GPU; then the fused exactness tests (CPU math, quick). No -x: one lease, every failure. ~2 min.
timeout 200 "$PY" -m pytest -q -rs tests/test_fast_loop.py tests/test_fused.py tests/test_perf.py \
    "tests/test_launchers.py::test_parallel_trials_can_share_one_gpu" -p no:cacheprovider \
    2>&1 | tee "$OUT/tests.txt"
tests=${PIPESTATUS[0]}

# 2. The user's path end to end on the GPU: the smoke study with device=auto, then its report
#    (report.md comes back). ~30 s.
e2e_dir=$(mktemp -d)
{ timeout 120 "$PY" -m bsweep sweep study=smoke "results_dir=$e2e_dir" device=auto &&
  timeout 60 "$PY" -m bsweep report "$e2e_dir/smoke" &&
  cp "$e2e_dir/smoke/report/report.md" "$OUT/report.md" &&
  "$PY" -c "import json, glob; print(sorted({json.load(open(f)).get('device') for f in glob.glob('$e2e_dir/smoke/trials/*/env.json')}))"
} 2>&1 | tee "$OUT/e2e.txt"
e2e=${PIPESTATUS[0]}

# 3. The benchmark: per-trial step times (batch 1..1024, the settings perf=auto picks; achieved
#    FLOP/s at 1024 as a fraction of the bf16 peak), then the whole claims_quick study at SCALE
#    of every trial's budget on both sides: bsweep as a user runs it (4 processes share the
#    GPU by default), the plain loop (batch 1 dominates it: at 0.1 of the budget it ran past
#    285 s on an H100, hence 0.03), then bsweep in one process and with perf.compile=on (CUDA
#    graphs; compiling per group is slow, so last), to choose the GPU defaults by measurement.
#    Whatever the time limit cuts off is missing from the output; what was measured is kept.
left=$(( ${TOTAL_SECONDS:-540} - (SECONDS - start) ))
timeout "$left" "$PY" benchmarks/bench_vs_plain.py --scale "$SCALE" --seconds-per-point "$SECONDS_PER_POINT" \
    --compile off --also "hydra.launcher.n_jobs=1" --also "perf.compile=on" \
    --write "$OUT/BENCHMARKS-gpu.md" --json "$OUT/gpu.json" 2>&1 | tee "$OUT/bench.txt"
bench=${PIPESTATUS[0]}
echo "tests exit $tests, end to end exit $e2e, benchmark exit $bench, $((SECONDS - start)) s"
[ "$tests" = 0 ] && [ "$e2e" = 0 ] && [ "$bench" = 0 ]
