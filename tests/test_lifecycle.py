"""One record lifecycle for every launcher (`records.take` + `records.Attempt`): a fused group
that raises is retried smaller and fails only the member that fails alone; leases stay fresh
however long a group trains; the unfused runner keeps the same records."""

from __future__ import annotations

import itertools
import json
import threading
import time
import traceback

import pytest
import torch
from typer.testing import CliRunner

from bsweep import records
from bsweep.train import engine, models
from bsweep.analysis.load import load_trials
from bsweep.cli import app
from tests.conftest import TINY

runner = CliRunner()
FAULTY_SEED = 13


@pytest.fixture
def fault(monkeypatch):
    """A real exception at a real fault point: building the norm layers of any model seeded
    with FAULTY_SEED (every trial seeds torch just before it builds its model, alone or fused),
    with the message the test asks for."""
    real = models.make_norm
    message = {"text": "injected fault"}

    def make_norm(*args, **kwargs):
        if torch.initial_seed() == FAULTY_SEED:
            raise RuntimeError(message["text"])
        return real(*args, **kwargs)

    monkeypatch.setattr(models, "make_norm", make_norm)
    return message


# (OOM goes through the same `records.Attempt.fail` -> `records.is_oom` for every launcher:
# tests/test_failures.py records a real CPU-allocator OOM through the runner and tests is_oom.)
@pytest.mark.parametrize("error,status", [("injected fault", "failed")])
def test_a_fused_group_that_raises_fails_only_the_member_that_fails_alone(results, fault, error, status):
    fault["text"] = error
    args = ["sweep", *TINY, f"results_dir={results}", "norm=group", "batch_size=16", "lr=0.05,0.1",
            f"seed=0,{FAULTY_SEED}", "perf.fuse=4", "hydra/launcher=bsweep_fused"]
    out = runner.invoke(app, args)
    assert out.exit_code == 1, out.output  # a trial did not finish: the sweep says so
    study = results / "smoke"
    trials = load_trials(study)
    assert len(trials) == 4
    assert set(trials.loc[trials["seed"] == 0, "status"]) == {"complete"}
    assert set(trials.loc[trials["seed"] == FAULTY_SEED, "status"]) == {status}
    for tid, seed in zip(trials["trial_id"], trials["seed"]):
        tdir = records.trial_dir(study, tid)
        lines = [json.loads(line) for line in (tdir / records.LEASE_LOG_FILE).read_text().splitlines()]
        # leased in the group of 4, retried in a half of 2 (one good, one faulty member), then
        # alone: every attempt is a line
        assert [line.get("retry_width") for line in lines] == [None, 2, 1]
        assert lines[1]["after"].startswith("RuntimeError") and error[:20] in lines[1]["after"]
        state = records.read_status(tdir)
        if seed == FAULTY_SEED:
            assert error[:20] in (tdir / records.TRACEBACK_FILE).read_text()
            assert state["error"] == f"RuntimeError: {error}" and "Traceback" in state["traceback"]
            assert not (tdir / records.MEASUREMENTS_FILE).exists()
        else:
            assert not (tdir / records.TRACEBACK_FILE).exists()
            assert state["fused_width"] == 1 and state["fused_with"] == [tid]
    # a re-run trains only what is missing, and fails the same way
    again = runner.invoke(app, args)
    assert "2 already finished, 2 to run" in again.output


@pytest.mark.slow(seconds=10)
@pytest.mark.parametrize("launcher", ["bsweep_fused"])  # the runner keeps records through the same Attempt
def test_leases_stay_fresh_while_trials_train_longer_than_the_stale_window(results, monkeypatch, launcher):
    """With lease files (BSWEEP_LOCK=file, as on filesystems without locks), a lease whose
    heartbeat is older than STALE_SECONDS may be taken over by another host. Shrink the window
    to 1 s (10 beats: room for a slow fsync on a busy CI disk) and hold the trials mid-training
    for three windows: neither a lease file nor a `running` status may ever look stale."""
    monkeypatch.setenv(records.LOCK_ENV, "file")
    monkeypatch.setattr(records, "HEARTBEAT_SECONDS", 0.1)
    monkeypatch.setattr(records, "STALE_SECONDS", 1.0)
    # Three windows inside one evaluation, at the first measurement after step 0: the training
    # outlasts them however fast the machine (a fixed budget alone was too short on a fast one).
    pause, calls, paused = 3 * records.STALE_SECONDS, itertools.count(), []
    real_evaluate = engine.evaluate

    def evaluate(*args, **kwargs):
        if next(calls) == 1:
            time.sleep(pause)
            paused.append(pause)
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(engine, "evaluate", evaluate)
    study = results / "smoke"
    seen: dict[str, float] = {}  # the oldest heartbeat age seen, per file kind
    errors: list[str] = []  # what went wrong in the watcher (an exception there fails no test)
    done = threading.Event()

    def look() -> None:
        now = time.time()
        for path in study.glob("trials/*/.claim"):
            try:
                age = now - path.stat().st_mtime
            except FileNotFoundError:
                continue
            seen["lease"] = max(seen.get("lease", 0.0), age)
        for path in study.glob("trials/*/status.json"):
            try:
                status = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if status["status"] == "running":
                seen["running"] = max(seen.get("running", 0.0), now - status["heartbeat"])
                if not records.owner_alive({**status, "host": "another-host"}):
                    errors.append(f"a running status looks stale to another host: {status}")

    def watch() -> None:
        while not done.is_set():
            try:
                look()
            except BaseException:
                errors.append(traceback.format_exc())
                return
            done.wait(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        out = runner.invoke(app, ["sweep", *TINY, f"results_dir={results}", "norm=group", "batch_size=1",
                                  "study.budget.epochs=2", "lr=0.01,0.02", "perf.fuse=2",
                                  f"hydra/launcher={launcher}", "hydra.launcher.n_jobs=1"],
                            catch_exceptions=False)
    finally:
        done.set()
        watcher.join()
    assert out.exit_code == 0, out.output
    assert not errors, errors[0]
    assert paused == [pause]  # the trials were held (they train in this process: n_jobs=1)
    assert set(seen) == {"lease", "running"}  # the watcher saw both while training
    assert seen["lease"] < records.STALE_SECONDS and seen["running"] < records.STALE_SECONDS, seen
    assert not list(study.glob("trials/*/.claim"))  # released at the end
