"""Ctrl-C and SIGTERM: a trial stops at the next step boundary with a checkpoint, is recorded
`interrupted` (not failed), and the rerun resumes it to the measurements of an uninterrupted run.
Real signals, real subprocesses, real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bsweep import records
from bsweep.cli import app
from bsweep.train.data import load_data
from bsweep.train.engine import Alone, train
from bsweep.train.fused import build_members
from bsweep.interrupt import Interrupted, requested, stop_on_signals
from bsweep.plan import expand, structured
from tests.conftest import EXACT, TINY, compose
from tests.test_checkpoint import InMemory, measurements_of, same_rows

runner = CliRunner()


class SignalAtStep:
    """Real members that send `signum` to this process during their `step`-th update, as a
    terminal's Ctrl-C lands at any moment of a step."""

    def __init__(self, members, step: int, signum: int) -> None:
        self.members, self.step, self.signum, self.updates = members, step, signum, 0

    def __getattr__(self, name: str):
        return getattr(self.members, name)

    def optimizer_step(self) -> None:
        self.updates += 1
        if self.updates == self.step:
            os.kill(os.getpid(), self.signum)
        self.members.optimizer_step()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("width", [1, 3])
def test_a_stop_request_saves_between_measurements_and_the_resume_is_exact(results, signum, width):
    planned = expand([*TINY, f"results_dir={results}", "study.budget.epochs=3", "norm=batch", "batch_size=16",
                      "lr=0.05,0.1,5.0"])  # lr 5 diverges: a frozen member stays frozen
    cfgs = [structured(p.config) for p in planned][:width]
    data = load_data(cfgs[0].data)

    def members():
        return Alone(cfgs[0], data, EXACT) if width == 1 else build_members(cfgs, data, EXACT)

    whole = train(members(), cfgs, data, EXACT)
    measured = {r["step"] for r in whole[0].measurements}
    stop_at = 35  # mid-epoch, between two measurements: the loss window since the last one is state too
    assert stop_at not in measured and stop_at - 1 not in measured
    keep = InMemory()
    keep.every_seconds = float("inf")  # no periodic save: only the one the signal asks for
    with stop_on_signals(fresh=True):
        with pytest.raises(Interrupted) as stopped:
            train(SignalAtStep(members(), stop_at, signum), cfgs, data, EXACT, keep)
        assert requested() == signal.Signals(signum).name
    assert requested() is None  # the sweep's own block clears the request when it ends
    assert stopped.value.saved_step == keep.step == stop_at  # the step the signal came in
    assert keep.saves == 1
    resumed = train(members(), cfgs, data, EXACT, keep)
    assert [r.status for r in resumed] == [r.status for r in whole]
    for a, b in zip(resumed, whole):
        same_rows(a.measurements, b.measurements)


def test_a_second_signal_stops_at_once():
    before = signal.getsignal(signal.SIGINT)
    with stop_on_signals(fresh=True):
        os.kill(os.getpid(), signal.SIGINT)
        assert requested() == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs at the next bytecode; never reached
    assert signal.getsignal(signal.SIGINT) is before


def test_a_process_asked_to_stop_starts_no_trial(results):
    cfg = compose([*TINY, f"results_dir={results}"])
    data = load_data(cfg.data)
    with stop_on_signals(fresh=True):
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(Interrupted) as stopped:
            train(Alone(cfg, data, EXACT), [cfg], data, EXACT, InMemory())
    assert stopped.value.saved_step is None


def take_one(results: Path) -> tuple[records.Held, Path]:
    cfg = compose([*TINY, f"results_dir={results}"])
    sdir = results / "smoke"
    held = records.take(sdir, "t1", {"study": {"name": "smoke"}, "lr": cfg.lr})
    return held, held.tdir


@pytest.mark.parametrize("exc,status", [
    (Interrupted("SIGTERM", 40), "interrupted"),
    (KeyboardInterrupt(), "interrupted"),
    (RuntimeError("the machinery broke"), "failed"),
])
def test_an_attempt_left_by_a_signal_is_interrupted_and_keeps_its_checkpoint(results, exc, status):
    held, tdir = take_one(results)
    with pytest.raises(type(exc)):
        with records.Attempt([held], {}):
            (tdir / records.CHECKPOINT_FILE).write_bytes(b"state")
            raise exc
    record = records.read_status(tdir)
    assert record["status"] == status and records.trial_state(tdir) == status
    assert not records.is_finished(tdir)
    assert (tdir / records.CHECKPOINT_FILE).exists()
    if isinstance(exc, Interrupted):
        assert "SIGTERM at step 40" in record["error"]


def statuses(study: Path) -> dict[str, dict]:
    out = {}
    for tdir in records.trials_dir(study).iterdir():
        try:
            out[tdir.name] = records.read_status(tdir) or {}
        except records.DamagedRecord:  # mid-rename on some filesystems: read again next poll
            out[tdir.name] = {}
    return out


def start_and_interrupt(args: list[str], n_trials: int, signum: int) -> tuple[int, str]:
    """Run `bsweep sweep ARGS` in a process group of its own, as a terminal runs a command;
    once all `n_trials` trials show progress, send `signum` to the whole group (a terminal's
    Ctrl-C does); return its exit code and output."""
    proc = subprocess.Popen([sys.executable, "-m", "bsweep", "sweep", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    study = Path(next(a for a in args if a.startswith("results_dir=")).split("=", 1)[1]) / "smoke"
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if study.joinpath("trials").is_dir():
            seen = statuses(study)
            going = [s for s in seen.values() if (s.get("progress") or {}).get("step", 0) > 0]
            if len(going) == n_trials:
                os.killpg(proc.pid, signum)
                break
        time.sleep(0.05)
    output = proc.communicate(timeout=120)[0]
    return proc.returncode, output


LAUNCHERS = {
    "basic": [],
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1"],
    # two fused chunks of two, one per worker process
    "bsweep_fused": ["hydra/launcher=bsweep_fused", "hydra.launcher.n_jobs=2", "perf.fuse=2", "seed=0,1",
                     "lr=0.05,0.1"],
}


@pytest.mark.slow(seconds=60)
@pytest.mark.parametrize("launcher,signum", [("basic", signal.SIGINT), ("joblib", signal.SIGINT),
                                             ("bsweep_fused", signal.SIGTERM)])
def test_ctrl_c_mid_trial_records_interrupted_and_the_rerun_resumes_it(tmp_path, launcher, signum):
    args = [*TINY, "batch_size=16", "norm=batch", "study.budget.epochs=150", "study.target=0.99",
            "checkpoint_seconds=600", "device=cpu", *LAUNCHERS[launcher]]
    n_trials = len(expand(args))
    stopped = tmp_path / "stopped"
    code, output = start_and_interrupt([*args, f"results_dir={stopped}"], n_trials, signum)
    assert code == 128 + signum, output
    assert f"stopped by {signal.Signals(signum).name}" in output
    study = stopped / "smoke"
    seen = statuses(study)
    assert {s["status"] for s in seen.values()} == {"interrupted"}, seen
    assert "failed" not in output
    saved = list(study.glob("trials/*/checkpoint.pt"))  # a fused chunk's in its first member's folder
    assert len(saved) == (2 if launcher == "bsweep_fused" else n_trials)

    again = runner.invoke(app, ["sweep", *args, f"results_dir={stopped}"])
    assert again.exit_code == 0, again.output
    assert f"({n_trials} interrupted to redo)" in again.output
    for tdir in records.trials_dir(study).iterdir():
        resumed_from = json.loads((tdir / records.ENV_FILE).read_text())["resumed_from_step"]
        assert resumed_from > 0  # fewer steps trained than from the start
        assert not (tdir / records.CHECKPOINT_FILE).exists()
    whole = tmp_path / "whole"
    out = runner.invoke(app, ["sweep", *args, f"results_dir={whole}", "checkpoint_seconds=null"])
    assert out.exit_code == 0, out.output
    resumed, uninterrupted = measurements_of(study), measurements_of(whole / "smoke")
    assert set(resumed) == set(uninterrupted)
    for tid in resumed:
        same_rows(resumed[tid], uninterrupted[tid])
