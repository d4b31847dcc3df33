"""One record lifecycle for every launcher (`records.take` + `records.Attempt`): a fused group
that raises is retried smaller and fails only the member that fails alone; claims stay fresh
however long a group trains; the unfused runner keeps the same records."""

from __future__ import annotations

import json
import threading
import time

import pytest
import torch
from typer.testing import CliRunner

from bsweep import models, records
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
        lines = [json.loads(line) for line in (tdir / records.CLAIMS_FILE).read_text().splitlines()]
        # claimed in the group of 4, retried in a half of 2 (one good, one faulty member), then
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


@pytest.mark.slow(seconds=15)
@pytest.mark.parametrize("launcher", ["bsweep_fused"])  # the runner keeps records through the same Attempt
def test_claims_stay_fresh_while_trials_train_longer_than_the_stale_window(results, monkeypatch, launcher):
    """With claim files (BSWEEP_LOCK=file, as on filesystems without locks), a claim whose
    heartbeat is older than STALE_SECONDS may be taken over by another host. Shrink the window
    to 1 s (10 beats: room for a slow fsync on a busy CI disk) and train for several windows:
    neither a claim file nor a `running` status may ever look stale."""
    monkeypatch.setenv(records.LOCK_ENV, "file")
    monkeypatch.setattr(records, "HEARTBEAT_SECONDS", 0.1)
    monkeypatch.setattr(records, "STALE_SECONDS", 1.0)
    study = results / "smoke"
    seen: dict[str, float] = {}  # the oldest heartbeat age seen, per file kind
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            now = time.time()
            for path in study.glob("trials/*/.claim"):
                try:
                    age = now - path.stat().st_mtime
                except FileNotFoundError:
                    continue
                seen["claim"] = max(seen.get("claim", 0.0), age)
            for path in study.glob("trials/*/status.json"):
                try:
                    status = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue
                if status["status"] == "running":
                    seen["running"] = max(seen.get("running", 0.0), now - status["heartbeat"])
                    assert records.owner_alive({**status, "host": "another-host"})
            done.wait(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.monotonic()
    try:
        out = runner.invoke(app, ["sweep", *TINY, f"results_dir={results}", "norm=group", "batch_size=1",
                                  "study.budget.epochs=20", "lr=0.01,0.02", "perf.fuse=2",
                                  f"hydra/launcher={launcher}"], catch_exceptions=False)
    finally:
        done.set()
        watcher.join()
    trained = time.monotonic() - started
    assert out.exit_code == 0, out.output
    # long enough that a missing beat would show: 30 epochs took ~8 s on the 2-core AVX-512 CPU
    # (so 20 about 5.5 s), 10 epochs 2.8 s there once malloc stopped faulting pages in, too
    # short to tell; the test took 11 s with 20 epochs on the AVX2-only EPYC (2026-11-29)
    assert trained > 3 * records.STALE_SECONDS
    assert set(seen) == {"claim", "running"}  # the watcher saw both while training
    assert seen["claim"] < records.STALE_SECONDS and seen["running"] < records.STALE_SECONDS, seen
    assert not list(study.glob("trials/*/.claim"))  # released at the end
