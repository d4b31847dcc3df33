"""The fused launcher's engines beyond this machine's processes (`hydra.launcher.backend`):
submitit (its local executor stands in for SLURM: the same executor API, jobs as processes) and
Ray (when installed). Each must give the trials, ids and statuses the local backend gives, and
a killed job must leave only its own trials to train again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from bsweep import records
from bsweep.analysis.load import load_trials
from bsweep.cli import app
from tests.conftest import TINY

runner = CliRunner()
# 4 trials in 2 fused groups (batch 16 and 64, each with 2 lrs): each group one job or task
FUSED = ["hydra/launcher=bsweep_fused", "device=cpu", "lr=0.05,0.1", "norm=batch"]
SUBMITIT_LOCAL = ["hydra.launcher.backend=submitit", "hydra.launcher.submitit.cluster=local"]


def sweep(results, *extra: str) -> str:
    out = runner.invoke(app, ["sweep", *TINY, f"results_dir={results}", *FUSED, *extra])
    assert out.exit_code == 0, out.output
    return out.output


def outcome(results) -> dict[str, str]:
    trials = load_trials(results / "smoke")
    return dict(zip(trials["trial_id"], trials["status"]))


@pytest.mark.slow
def test_submitit_runs_a_fused_study_as_the_local_launcher_does(tmp_path):
    sweep(tmp_path / "local")
    out = sweep(tmp_path / "submitit", *SUBMITIT_LOCAL, "perf.fuse=2")  # (ids do not depend on perf.*)
    assert "trained models in jobs of their own" in out  # their start-up is not seen from here
    assert outcome(tmp_path / "submitit") == outcome(tmp_path / "local")
    assert set(outcome(tmp_path / "submitit").values()) == {"complete"}
    study = tmp_path / "submitit" / "smoke"
    # each group trained fused in one submitit job
    assert len(list(study.glob("hydra/multirun/*/.submitit/*/*_result.pkl"))) == 2
    again = sweep(tmp_path / "submitit", *SUBMITIT_LOCAL, "perf.fuse=2")
    assert "4 already finished, 0 to run" in again


@pytest.mark.parametrize("override,message", [
    ("hydra.launcher.backend=slurm", "hydra.launcher.backend='slurm' is not known; choose one of: local, submitit, ray"),
    ("hydra.launcher.submitit.cluster=pbs", "hydra.launcher.submitit.cluster='pbs' is not known; choose slurm or local"),
])
def test_a_bad_backend_is_refused_before_training(results, override, message):
    out = runner.invoke(app, ["sweep", *TINY, f"results_dir={results}", *FUSED, "hydra.launcher.backend=submitit", override])
    assert out.exit_code == 2 and "Traceback" not in out.output, out.output
    assert message in " ".join(out.output.split())
    assert not (results / "smoke" / "trials").exists()


@pytest.mark.slow(seconds=40)
def test_a_killed_job_leaves_only_its_trials_to_train_again(results):
    # long enough (~seconds a chunk) to find a chunk's process at work and kill it
    args = [*TINY, f"results_dir={results}", *FUSED, *SUBMITIT_LOCAL, "study.budget.epochs=60"]
    proc = subprocess.Popen([sys.executable, "-m", "bsweep", "sweep", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed, deadline = None, time.time() + 240
    while killed is None and time.time() < deadline and proc.poll() is None:
        for tdir in records.trials_dir(results / "smoke").glob("*") if (results / "smoke").exists() else []:
            status = records.read_status(tdir) or {}
            if status.get("status") == "running" and status.get("pid") not in (None, proc.pid):
                try:
                    os.kill(status["pid"], signal.SIGKILL)
                except ProcessLookupError:  # it ended between the read and the kill: look again
                    continue
                killed = status["pid"]
                break
        time.sleep(0.2)
    output = proc.communicate(timeout=300)[0]
    assert killed is not None, output
    states = outcome(results)
    # The kill lands at any moment of the job's work, so each trial of its group is left
    # `interrupted` (it said `running`), `new` (taken: its config written, its status not yet;
    # a CI run killed the job between its two members' first `running`), or without a folder
    # (not reached: the job would have handed it back). The other group's job completed.
    done = sum(s == "complete" for s in states.values())
    assert 2 <= done <= 3 and set(states.values()) - {"complete"} <= {"interrupted", "new"}, states
    kept = {t: (records.trial_dir(results / "smoke", t) / records.MEASUREMENTS_FILE).stat().st_mtime_ns
            for t, s in states.items() if s == "complete"}
    again = runner.invoke(app, ["sweep", *args])
    assert again.exit_code == 0, again.output
    assert f"{done} already finished, {4 - done} to run" in again.output
    assert set(outcome(results).values()) == {"complete"}
    for t, mtime in kept.items():  # nothing finished was trained again
        assert (records.trial_dir(results / "smoke", t) / records.MEASUREMENTS_FILE).stat().st_mtime_ns == mtime


@pytest.mark.slow(seconds=25)
def test_ray_runs_a_fused_study_as_the_local_launcher_does(tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is optional: pip install 'bsweep[ray]'")
    sweep(tmp_path / "local")
    try:
        sweep(tmp_path / "ray", "hydra.launcher.backend=ray", "hydra.launcher.n_jobs=2",
              "hydra.launcher.ray.init.num_cpus=2")
        # the local instance the launch started ended with it: nothing of Ray's runs on to print
        # into the output of what follows (a CI run's later tests had caught its raylet's lines)
        assert not ray.is_initialized()
    finally:
        ray.shutdown()
    assert outcome(tmp_path / "ray") == outcome(tmp_path / "local")
    assert set(outcome(tmp_path / "ray").values()) == {"complete"}
