"""Failure isolation: a trial that raises is `failed` (error + traceback in its folder), running
out of memory is `oom`, the sweep goes on, says so as it happens, and exits non-zero.

The failures are real, not mocks of the trainer: a dataset whose files exist (so the plan-time
check passes) but hold garbage fails inside torchvision's reader; a memory cap
(`resource.setrlimit(RLIMIT_AS)`, in a subprocess) makes a too-wide model fail in torch's CPU
allocator.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bsweep import records
from bsweep.analysis.load import load_trials
from bsweep.cli import app
from bsweep.records import is_oom
from bsweep.validate import DATA_FILES
from tests.conftest import TINY

runner = CliRunner()


def garbage_mnist(root: Path) -> Path:
    """MNIST's four files under root, present (the plan-time check passes) but unreadable."""
    for rel in DATA_FILES["mnist"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"not an idx file\n")
    return root


def test_a_trial_that_raises_is_failed_with_its_traceback_and_the_sweep_goes_on(results, tmp_path):
    data = garbage_mnist(tmp_path / "data")
    args = ["sweep", *TINY, f"results_dir={results}", "norm=batch", "batch_size=16",
            "data=mnist,mnist1d", f"data.root={data}"]
    out = runner.invoke(app, args)
    assert out.exit_code == 1, out.output
    trials = load_trials(results / "smoke").set_index("data")
    assert trials.loc["mnist1d", "status"] == "complete"  # the sweep went on after the failure
    assert trials.loc["mnist", "status"] == "failed"
    bad = trials.loc["mnist", "trial_id"]
    tdir = records.trial_dir(results / "smoke", bad)
    status = json.loads((tdir / records.STATUS_FILE).read_text())
    assert status["error"].startswith("AssertionError") and "Traceback" in status["traceback"]
    assert "read_sn3_pascalvincent_tensor" in (tdir / records.TRACEBACK_FILE).read_text()
    # Reported as it happened (before the summary), then in the summary table, then exit 1.
    live = out.output.index(f"failed: trial {bad} (data=mnist)")
    summary = out.output.index("1 complete, 1 failed")
    assert live < summary
    assert "1 trial(s) did not finish" in out.output
    assert "Traceback (most recent call last)" not in out.output

    # The next sweep redoes the failed trial only.
    good = records.trial_dir(results / "smoke", trials.loc["mnist1d", "trial_id"])
    stamp = (good / records.MEASUREMENTS_FILE).stat().st_mtime_ns
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "1 already finished, 1 to run (1 failed to redo)" in again.output
    assert (good / records.MEASUREMENTS_FILE).stat().st_mtime_ns == stamp
    attempts = [json.loads(line) for line in (tdir / records.LEASE_LOG_FILE).read_text().splitlines()]
    assert [a["previous"] for a in attempts] == ["new", "failed"]
    assert len((good / records.LEASE_LOG_FILE).read_text().splitlines()) == 1


def test_status_lists_failed_trials_with_their_error(results, tmp_path):
    data = garbage_mnist(tmp_path / "data")
    runner.invoke(app, ["sweep", *TINY, f"results_dir={results}", "norm=batch", "batch_size=16",
                        "data=mnist", f"data.root={data}"])
    out = runner.invoke(app, ["status", str(results / "smoke")])
    assert out.exit_code == 0
    assert "1 failed" in out.output and "AssertionError" in out.output
    assert "the next `bsweep sweep` of this study redoes them" in out.output


# A memory cap a little above what the process holds once torch is imported: a small trial fits,
# a model with width 16384 (a 16384 x 16384 x 5 kernel is 5.4 GB of float32) does not.
CAPPED_SWEEP = textwrap.dedent("""
    import resource, sys
    import torch  # imported before the cap: its libraries are mapped already
    from bsweep.cli import main

    def vm_bytes():
        for line in open("/proc/self/status"):
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024

    cap = vm_bytes() + 1536 * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
    sys.argv = ["bsweep", *sys.argv[1:]]
    main()
""")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc for the cap")
def test_out_of_memory_is_recorded_as_oom_and_later_trials_still_run(results, tmp_path):
    script = tmp_path / "capped.py"
    script.write_text(CAPPED_SWEEP)
    proc = subprocess.run(
        [sys.executable, str(script), "sweep", *TINY, f"results_dir={results}", "norm=batch",
         "batch_size=16", "model.width=16384,8"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    trials = load_trials(results / "smoke")
    by_width = {}
    for tid in trials["trial_id"]:
        cfg = records.read_yaml(records.trial_dir(results / "smoke", tid) / records.CONFIG_FILE)
        by_width[cfg["model"]["width"]] = trials.set_index("trial_id").loc[tid]
    assert by_width[16384]["status"] == "oom"
    assert "allocate" in by_width[16384]["error"] or "memory" in by_width[16384]["error"]
    assert by_width[8]["status"] == "complete"  # ran after the OOM, in the same process
    assert "oom: trial" in proc.stdout and "1 complete, 1 oom" in proc.stdout


def test_oom_is_told_apart_from_other_errors():
    assert is_oom(MemoryError())
    assert is_oom(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_oom(RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: "
                                "can't allocate memory: you tried to allocate 2147483648 bytes"))
    assert is_oom(RuntimeError("MPS backend out of memory"))
    assert not is_oom(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_oom(ValueError("nan"))


def test_a_diverged_trial_is_a_result_not_a_failure(results):
    out = runner.invoke(app, ["sweep", *TINY, f"results_dir={results}", "norm=none",
                              "batch_size=16", "lr=1e6"])
    trials = load_trials(results / "smoke")
    assert set(trials["status"]) == {"diverged"}, out.output
    assert out.exit_code == 0, out.output
