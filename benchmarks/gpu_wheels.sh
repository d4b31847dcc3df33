#!/usr/bin/env bash
# Run HERE (a machine with PyPI), before benchmarks/gpu_check.sh runs on a GPU machine that has
# torch, pandas, matplotlib, typer, rich and scikit-learn but no internet and not these: the
# pure-Python wheels bsweep needs beyond those, at the versions of .venv, into .whl/ (git-ignored).
# Then carry `.whl` to the GPU machine; gpu_check.sh installs them into /tmp/site.
#
#   bash benchmarks/gpu_wheels.sh        # needs .venv (make install)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
NAMES='hydra-core|omegaconf|antlr4-python3-runtime|mnist1d|hydra-joblib-launcher|hydra-submitit-launcher|submitit'
mapfile -t pins < <("$PY" -m pip freeze | grep -iE "^($NAMES)==")
[ "${#pins[@]}" = 7 ] || { echo "expected 7 pinned packages in $PY's environment, got: ${pins[*]}" >&2; exit 1; }
rm -rf .whl && mkdir -p .whl
# `pip wheel` builds the ones PyPI has only as source (antlr4-python3-runtime 4.9.3) as well.
"$PY" -m pip wheel --quiet --no-deps --wheel-dir .whl "${pins[@]}"
for w in .whl/*.whl; do
    case "$w" in *-none-any.whl) ;; *) echo "$w is not pure Python: it would not install on the GPU machine" >&2; exit 1 ;; esac
done
ls -1 .whl
du -sh .whl
