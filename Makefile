# The README's two commands: `make demo` and `make test`. Each creates the virtual environment
# when it is missing (or older than pyproject.toml), installs bsweep into it, then runs.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,ray]"
	touch $(STAMP)

install: $(STAMP)

# Runs `bsweep reproduce`: the five studies of every claim on mnist1d, their reports, the verdicts.
demo: $(STAMP)
	$(VENV)/bin/bsweep reproduce

# On an AVX-512 CPU the numerics tests run a second time on AVX2 kernels, the other family CI
# machines have (AVX2-only EPYCs round differently), so a tolerance tuned on one fails here.
# Inductor (perf.compile) gets its own cache there: kernels it compiled for AVX-512 and reused
# under ATEN_CPU_CAPABILITY=avx2 aborted the process or gave wrong losses (torch 2.14.1).
NUMERICS := tests/test_fused.py tests/test_train.py tests/test_perf.py tests/test_fast_loop.py
AVX2_ENV := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 TORCHINDUCTOR_CACHE_DIR=$${TMPDIR:-/tmp}/bsweep-inductor-avx2

# The suite runs in one pytest worker per core (pytest-xdist), slow-marked tests handed out first,
# the longest first of all (tests/conftest.py), and a worker that runs out of tests takes queued ones from the other
# (`--dist worksteal`): under `--dist load` the first round-robin batch had queued the 2-minute
# reproduce test last on one worker while the other sat idle (11 min 30 s in all on the 2-core
# AVX2-only EPYC, 2026-11-28 22:30 UTC). Earlier: 6 min 18 s for 480 tests on the 2-core
# AVX-512 CPU; 12 min 32 s - 13 min 43 s for 508 on the AVX2-only EPYC. Every test writes only
# under its own tmp_path.
test: $(STAMP)
	$(PY) -m pytest -q -n auto --dist worksteal
	@if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then \
	  echo "AVX-512 CPU: the numerics tests again on AVX2 kernels"; \
	  $(AVX2_ENV) $(PY) -m pytest -q $(NUMERICS); \
	fi

# The suite without the tests marked slow.
test-fast: $(STAMP)
	$(PY) -m pytest -q -n auto -m "not slow"

clean:
	rm -rf $(VENV) .pytest_cache
