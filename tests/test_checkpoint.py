"""Preemption: a trial saves its state at measurement points and a killed trial resumes from
it, with the measurements of an uninterrupted run (to float rounding)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bsweep import records
from bsweep.cli import app
from bsweep.train.data import load_data
from bsweep.train.engine import Alone, train
from bsweep.train.fused import build_members
from bsweep.plan import expand, structured
from tests.conftest import EXACT, TINY, compose

runner = CliRunner()


class Preempted(Exception):
    pass


class InMemory:
    """The engine's Checkpoint protocol kept in memory, through torch.save as a file would be;
    `stop_after`: the run is 'killed' (raises) right after saving a state at or past this step."""

    every_seconds = 0.0  # save at every measurement point

    def __init__(self, stop_after: int | None = None) -> None:
        self.blob, self.saves, self.stop_after, self.step = None, 0, stop_after, None

    def load(self):
        return None if self.blob is None else torch.load(io.BytesIO(self.blob), weights_only=False)

    def save(self, state: dict) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.blob, self.saves, self.step = buffer.getvalue(), self.saves + 1, state["step"]
        if self.stop_after is not None and state["step"] >= self.stop_after:
            raise Preempted


def same_rows(a: list[dict], b: list[dict]) -> None:
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for key in ra:
            if not key.endswith("_seconds"):  # clocks: not repeatable
                assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-6, nan_ok=True), key


@pytest.mark.parametrize("overrides,stop,epoch_steps", [
    (["norm=batch", "batch_size=16"], 20, 16),  # saved inside the second epoch
    (["norm=group", "batch_size=64", "optim=adam", "schedule=cosine"], 6, 4),
    # the gradient measurements' own state (noise EMA, cosine draws) resumes too
    (["norm=batch", "batch_size=16", "noise.enabled=true", "noise.b_big=64", "noise.cosine_at=[0.5,1.0]",
      "noise.cosine_batch_sizes=[1,4,16]"], 20, 16),
])
def test_a_resumed_trial_measures_what_an_uninterrupted_one_does(overrides, stop, epoch_steps, results):
    cfg = compose([*TINY, f"results_dir={results}", "study.budget.epochs=3", *overrides])
    data = load_data(cfg.data)
    whole = train(Alone(cfg, data, EXACT), [cfg], data, EXACT)[0]
    keep = InMemory(stop_after=stop)
    with pytest.raises(Preempted):
        train(Alone(cfg, data, EXACT), [cfg], data, EXACT, keep)
    assert keep.step > epoch_steps and keep.step % epoch_steps  # past an epoch, mid-epoch
    keep.stop_after = None
    resumed = train(Alone(cfg, data, EXACT), [cfg], data, EXACT, keep)[0]
    assert resumed.status == whole.status
    same_rows(resumed.measurements, whole.measurements)
    assert resumed.measurements[-1]["train_seconds"] > 0


EXAMPLES = str(Path(__file__).resolve().parent.parent / "examples" / "configs")


@pytest.mark.parametrize("model", [[], ["--config-dir", EXAMPLES, "model=tiny_convnet", "norm=group"]])
def test_a_fused_chunk_resumes_too(results, model):  # grouped convs (the CNN), vmap (a model of one's own)
    planned = expand([*TINY, f"results_dir={results}", "study.budget.epochs=3", "norm=batch", "batch_size=16",
                      "lr=0.05,0.1,5.0", *model])  # lr 5 diverges: a frozen member is restored frozen
    cfgs = [structured(p.config) for p in planned]
    data = load_data(cfgs[0].data)
    whole = train(build_members(cfgs, data, EXACT), cfgs, data, EXACT)
    keep = InMemory(stop_after=20)
    with pytest.raises(Preempted):
        train(build_members(cfgs, data, EXACT), cfgs, data, EXACT, keep)
    assert keep.step > 16 and keep.step % 16
    keep.stop_after = None
    resumed = train(build_members(cfgs, data, EXACT), cfgs, data, EXACT, keep)
    assert [r.status for r in resumed] == [r.status for r in whole]
    for a, b in zip(resumed, whole):
        same_rows(a.measurements, b.measurements)


def measurements_of(study) -> dict[str, list[dict]]:
    return {t.name: records.read_measurements(t).to_dict("records") for t in records.trials_dir(study).iterdir()}


@pytest.mark.slow
@pytest.mark.parametrize("how", [
    ["run"],  # a trial alone, in the sweep's process
    ["sweep", "hydra/launcher=bsweep_fused", "lr=0.05,0.1", "perf.fuse=2"],  # a fused chunk of two
])
def test_a_killed_trial_resumes_from_its_checkpoint(tmp_path, how):
    command, *extra = how
    args = [*TINY, "batch_size=16", "norm=batch", "study.budget.epochs=60", "checkpoint_seconds=0", "device=cpu", *extra]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "bsweep", command, *args, f"results_dir={killed}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        saved = list(killed.glob("smoke/trials/*/checkpoint.pt"))
        if saved and saved[0].stat().st_size > 0:
            time.sleep(0.3)  # a few more measurement points in
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == -signal.SIGKILL, f"the trial ended before it could be killed:\n{output}"
    tdirs = list(records.trials_dir(killed / "smoke").iterdir())
    assert {records.read_status(t)["status"] for t in tdirs} == {"running"}
    assert len(list(killed.glob("smoke/trials/*/checkpoint.pt"))) == 1  # a chunk's, in its first member's folder

    out = runner.invoke(app, [command, *args, f"results_dir={killed}"])
    assert out.exit_code == 0, out.output
    for tdir in tdirs:
        assert json.loads((tdir / records.ENV_FILE).read_text())["resumed_from_step"] > 0
        assert not (tdir / records.CHECKPOINT_FILE).exists()  # finished: no longer kept
    whole = tmp_path / "whole"
    out = runner.invoke(app, [command, *args, f"results_dir={whole}", "checkpoint_seconds=null"])
    assert out.exit_code == 0, out.output
    resumed, uninterrupted = measurements_of(killed / "smoke"), measurements_of(whole / "smoke")
    assert set(resumed) == set(uninterrupted)  # checkpoint_seconds is not part of what a trial is
    for tid in resumed:
        same_rows(resumed[tid], uninterrupted[tid])
