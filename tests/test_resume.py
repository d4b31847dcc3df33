"""Sweeps that survive: `kill -9` at any moment and resume, two sweeps of one study at once,
damaged records, interrupted trials. Real subprocesses, real signals, real files."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from bsweep import records
from bsweep.analysis.load import load_trials
from bsweep.cli import app
from tests.conftest import TINY

runner = CliRunner()
# 8 trials of about a second each on one CPU thread: long enough to kill one mid-way.
LONGER = [*TINY, "study.budget.epochs=20", "seed=0,1"]


def sweep_process(results: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bsweep", "sweep", *LONGER, f"results_dir={results}", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def statuses(study: Path) -> dict[str, str]:
    out = {}
    for tdir in sorted(records.trials_dir(study).glob("*")):
        try:
            status = records.read_status(tdir)
        except records.DamagedRecord:
            continue
        if status is not None:
            out[tdir.name] = status["status"]
    return out


def leases(study: Path, tid: str) -> list[dict]:
    path = records.trial_dir(study, tid) / records.LEASE_LOG_FILE
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_records_get_the_mode_open_gives_under_the_umask(tmp_path, umask, mode):
    results = tmp_path / "results"
    done = subprocess.run([sys.executable, "-m", "bsweep", "run", *TINY, f"results_dir={results}"],
                          capture_output=True, text=True, preexec_fn=lambda: os.umask(umask), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    study = results / "smoke"
    [tdir] = records.trials_dir(study).iterdir()
    written = [study / records.STUDY_FILE, *(tdir / name for name in (
        records.CONFIG_FILE, records.STATUS_FILE, records.MEASUREMENTS_FILE, records.ENV_FILE, records.LEASE_LOG_FILE))]
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in written} == {p.name: oct(mode) for p in written}
    # the lease's lock file stays: unlinking a flock file races with a process opening it
    assert (tdir / records.LOCK_FILE).exists() and (tdir / records.LOCK_FILE).stat().st_size == 0


@pytest.mark.slow(seconds=25)
def test_a_sweep_killed_mid_trial_resumes_without_redoing_finished_trials(results):
    study = results / "smoke"
    proc = sweep_process(results)
    deadline = time.monotonic() + 240
    try:
        while True:  # kill once two trials are complete and a third is training
            s = list(statuses(study).values()) if study.exists() else []
            if s.count("complete") >= 2 and "running" in s:
                break
            assert proc.poll() is None, f"the sweep ended before it could be killed:\n{proc.stdout.read()}"
            assert time.monotonic() < deadline, "no trial completed in time"
            time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    killed = {t: records.trial_state(records.trial_dir(study, t)) for t in statuses(study)}
    done = sorted(t for t, s in killed.items() if s == "complete")
    interrupted = sorted(t for t, s in killed.items() if s == "interrupted")
    # The kill lands while a trial trains (it was seen `running`), so one is interrupted, unless
    # that trial finished in the milliseconds between the look and the kill.
    assert len(done) >= 2 and len(interrupted) <= 1, killed
    assert "running" not in killed.values()  # a dead owner's trial never reads as running
    stamps = {t: (records.trial_dir(study, t) / records.MEASUREMENTS_FILE).stat().st_mtime_ns for t in done}

    status = runner.invoke(app, ["status", str(study)])
    assert f"{len(interrupted)} interrupted" in status.output or not interrupted, status.output

    again = runner.invoke(app, ["sweep", *LONGER, f"results_dir={results}"])
    assert again.exit_code == 0, again.output
    assert f"{len(done)} already finished, {8 - len(done)} to run" in again.output
    assert "(1 interrupted to redo)" in again.output or not interrupted
    trials = load_trials(study)
    assert len(trials) == 8 and set(trials["status"]) == {"complete"}
    for t in done:  # finished trials were not redone
        assert (records.trial_dir(study, t) / records.MEASUREMENTS_FILE).stat().st_mtime_ns == stamps[t]
        assert len(leases(study, t)) == 1
    for t in interrupted:
        assert [c["previous"] for c in leases(study, t)] == ["new", "interrupted"]
    for tdir in records.trials_dir(study).iterdir():  # one record per trial, nothing half-written
        assert not list(tdir.glob(".*.tmp")), list(tdir.iterdir())
        assert records.is_finished(tdir)


@pytest.mark.slow
def test_two_sweeps_of_one_study_at_once_train_each_trial_once(results):
    a, b = sweep_process(results), sweep_process(results)
    out_a, _ = a.communicate(timeout=300)
    out_b, _ = b.communicate(timeout=300)
    assert a.returncode == 0, out_a
    assert b.returncode == 0, out_b
    study = results / "smoke"
    trials = load_trials(study)
    assert len(trials) == 8 and set(trials["status"]) == {"complete"}
    sweeps = []
    for tid in trials["trial_id"]:
        lines = leases(study, tid)
        assert len(lines) == 1, (tid, lines)  # trained exactly once
        sweeps.append(lines[0]["sweep"])
    by_sweep = pd.Series(sweeps).value_counts()
    assert len(by_sweep) == 2, f"the two sweeps did not overlap:\n{out_a}\n{out_b}"
    # Each summary is right: what it trained, what the other ended or still trains.
    trained = []
    for out in (out_a, out_b):
        summary = next(line for line in out.splitlines() if line.startswith("8 trials:"))
        n = int(summary.split("(")[1].split(" trained by this run")[0])
        trained.append(n)
        # "N finished before" may be non-zero: a sweep that starts a second late on a loaded
        # machine plans after the other has finished a trial (a race of the test, not of bsweep).
        counts = summary.split(":")[1].split("(")[0]
        assert "failed" not in counts and "interrupted" not in counts
    assert sorted(trained) == sorted(by_sweep.tolist())
    assert "skipped" in out_a + out_b  # at least one trial met a lease or a finished record


def test_a_trial_leased_by_a_live_process_is_skipped_as_running_elsewhere(results):
    """The lease in isolation: this test process holds one trial's lock and `running` status,
    as another sweep would; a sweep leaves that trial alone and says so."""
    from bsweep.sweep.launch import plan_and_check

    planned = plan_and_check([*TINY, f"results_dir={results}", "norm=batch"])
    held_trial = planned[0]
    tdir = records.trial_dir(results / "smoke", held_trial.trial_id)
    held = records.lease(tdir)
    assert held is not None and records.lease(tdir) is None  # exclusive, even within a process
    records.write_status(tdir, "running", **records.owner(), heartbeat=time.time())
    try:
        out = runner.invoke(app, ["sweep", *TINY, f"results_dir={results}", "norm=batch"])
    finally:
        held.release()
    assert out.exit_code == 0, out.output
    assert "2 trials: 1 complete, 1 running elsewhere" in out.output
    assert "were not started twice" in out.output
    assert not (tdir / records.MEASUREMENTS_FILE).exists()
    assert records.lease(tdir) is not None  # released: the next sweep may take it


def test_a_running_status_whose_process_died_is_interrupted_and_redone(results):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    from bsweep.sweep.launch import plan_and_check

    planned = plan_and_check([*TINY, f"results_dir={results}", "norm=batch", "batch_size=16"])
    tdir = records.trial_dir(results / "smoke", planned[0].trial_id)
    records.write_status(tdir, "running", pid=int(dead), host=records.HOST, heartbeat=time.time())
    assert records.trial_state(tdir) == "interrupted"
    # Another host's owner is judged by its heartbeat.
    other = {"pid": 1, "host": "elsewhere.example", "heartbeat": time.time()}
    assert records.owner_alive(other)
    assert not records.owner_alive({**other, "heartbeat": time.time() - records.STALE_SECONDS - 1})
    out = runner.invoke(app, ["sweep", *TINY, f"results_dir={results}", "norm=batch", "batch_size=16"])
    assert out.exit_code == 0 and "(1 interrupted to redo)" in out.output, out.output
    assert records.trial_state(tdir) == "complete"


def test_damaged_records_are_reported_and_redone_and_nothing_else_is_lost(results, tmp_path):
    args = ["sweep", *TINY, f"results_dir={results}"]
    assert runner.invoke(app, args).exit_code == 0
    study = results / "smoke"
    tids = sorted(statuses(study))
    truncated, garbage, emptied, *kept = tids
    path = records.trial_dir(study, truncated) / records.MEASUREMENTS_FILE
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # a half-copied file
    (records.trial_dir(study, garbage) / records.STATUS_FILE).write_text('{"status": "compl')
    (records.trial_dir(study, emptied) / records.CONFIG_FILE).write_bytes(b"")  # a full disk's leftover
    stamps = {t: (records.trial_dir(study, t) / records.MEASUREMENTS_FILE).stat().st_mtime_ns for t in kept}

    status = runner.invoke(app, ["status", str(study)])
    assert status.exit_code == 0 and "1 complete, 3 damaged" in status.output, status.output
    listing = runner.invoke(app, ["status", "--results-dir", str(results)])
    assert "3 damaged" in listing.output
    plan = runner.invoke(app, ["plan", *TINY, f"results_dir={results}"])
    assert "1 finished, 3 to run" in plan.output, plan.output
    collect = runner.invoke(app, ["collect", str(study)])
    assert collect.exit_code == 0, collect.output
    table = pd.read_parquet(study / "trials.parquet").set_index("trial_id")
    assert (table.loc[[truncated, garbage, emptied], "status"] == "damaged").all()
    assert (table.loc[kept, "status"] == "complete").all()

    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "1 already finished, 3 to run (3 damaged to redo)" in again.output
    assert all(records.is_finished(records.trial_dir(study, t)) for t in tids)
    for t in kept:
        assert (records.trial_dir(study, t) / records.MEASUREMENTS_FILE).stat().st_mtime_ns == stamps[t]


WRITER = textwrap.dedent("""
    import os
    import sys
    from pathlib import Path
    from bsweep import records
    t = Path(sys.argv[1])
    rows = [{"step": i, "test_acc": i / 1e4, "note": "x" * 200} for i in range(3000)]
    i = 0
    while True:
        i += 1
        records.write_measurements(t, rows[: 1000 + i % 2000])
        records.write_status(t, "complete", n=i, pid=os.getpid(), pad="y" * (i % 5000))
        if i == 1:  # imported and written once: from here on a kill lands among the writes
            print("writing", flush=True)
""")


@pytest.mark.slow
def test_kill_9_during_writes_never_leaves_a_record_that_reads_as_valid_but_is_not(tmp_path):
    """A writer rewriting a trial's files as fast as it can, killed at random moments: every
    time, both files read back whole (the old version or the new one, never a torn one)."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    tdir = tmp_path / "trial"
    rng = random.Random(0)
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, str(script), str(tdir)], stdout=subprocess.PIPE, text=True)
        # wait for this writer's own first record, not the previous one's (already there)
        assert proc.stdout.readline() == "writing\n"
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        status = records.read_status(tdir)  # raises DamagedRecord if torn
        assert status["status"] == "complete" and status["pid"] == proc.pid
        frame = records.read_measurements(tdir)
        assert 1000 <= len(frame) <= 3000 and frame["step"].tolist() == list(range(len(frame)))


# Writes a small record, then a large one of the same file, killed inside that second write:
# by the kernel in the middle of write(2) (RLIMIT_FSIZE at 64 KiB, SIGXFSZ back at its default
# action; Python ignores it), or by SIGKILL after the bytes are written, before the rename.
DYING_WRITER = textwrap.dedent("""
    import os
    import resource
    import signal
    import sys
    from pathlib import Path
    from bsweep import records
    t, name, how = Path(sys.argv[1]), sys.argv[2], sys.argv[3]

    def write(version, n):  # random hex: no compression keeps the large version small
        if name == records.MEASUREMENTS_FILE:
            records.write_measurements(t, [{"step": i, "note": os.urandom(100).hex()} for i in range(n)])
        else:
            records.write_status(t, "complete", version=version, pad=os.urandom(100 * n).hex())

    write(1, 10)  # a few KiB
    if how == "mid-write":
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    else:
        os.replace = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
    write(2, 3000)  # ~600 KiB
""")


@pytest.mark.parametrize("how,signum", [("mid-write", signal.SIGXFSZ), ("before-rename", signal.SIGKILL)])
@pytest.mark.parametrize("name", [records.STATUS_FILE, records.MEASUREMENTS_FILE])
def test_a_writer_killed_inside_a_write_leaves_the_previous_record_whole(tmp_path, name, how, signum):
    script = tmp_path / "writer.py"
    script.write_text(DYING_WRITER)
    tdir = tmp_path / "trial"
    done = subprocess.run([sys.executable, str(script), str(tdir), name, how], capture_output=True, text=True)
    # the previous record, whole (a write in place leaves half of the new one, or all of it)
    if name == records.STATUS_FILE:
        assert records.read_status(tdir)["version"] == 1
    else:
        assert len(records.read_measurements(tdir)) == 10
    assert done.returncode == -signum, done.stderr  # and the kill did land inside the write
