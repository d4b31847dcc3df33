"""Reading a study from disk: a `RecordCache` gives what a fresh read gives, as the study changes."""

from __future__ import annotations

import pandas as pd

from bsweep import records
from bsweep.analysis.load import RecordCache, load_measurements, load_trials


def write_trial(study, trial_id: str, lr: float, status: str = "complete", **details: object) -> None:
    tdir = records.trial_dir(study, trial_id)
    tdir.mkdir(parents=True, exist_ok=True)
    records.write_yaml(tdir / records.CONFIG_FILE, {"study": {"name": study.name}, "batch_size": 8, "lr": lr, "seed": 0})
    records.write_measurements(tdir, [{"step": 0, "samples": 0, "epoch": 0.0, "test_acc": lr}])
    records.write_status(tdir, status, **details)


def test_a_cache_reads_what_a_fresh_read_does_and_each_unchanged_finished_trial_once(tmp_path, monkeypatch):
    study = tmp_path / "study"
    reads = []
    read = records.read_measurements
    monkeypatch.setattr(records, "read_measurements", lambda tdir: reads.append(tdir.name) or read(tdir))
    cache = RecordCache()

    def check() -> pd.DataFrame:
        """The cached read, after checking it against a fresh one; `reads`: the cached read's."""
        reads.clear()
        trials, measurements = load_trials(study, cache=cache), load_measurements(study, cache=cache)
        cached_reads = list(reads)
        pd.testing.assert_frame_equal(trials, load_trials(study))
        pd.testing.assert_frame_equal(measurements, load_measurements(study))
        reads[:] = cached_reads
        return trials.set_index("trial_id")

    write_trial(study, "a", 0.1)
    # its owner gone (another host, no heartbeat for long): interrupted, with no file changed
    write_trial(study, "b", 0.2, "running", host="elsewhere", heartbeat=0.0)
    assert check()["status"].to_dict() == {"a": "complete", "b": "interrupted"}
    assert reads.count("a") == 1  # checked once for the row, kept for the measurements
    assert check()["status"].to_dict() == {"a": "complete", "b": "interrupted"}
    assert "a" not in reads  # finished and unchanged: not read again

    # a trial added, `a` redone with another lr, `b` finished
    write_trial(study, "c", 0.3, "diverged")
    write_trial(study, "a", 0.4)
    write_trial(study, "b", 0.2)
    trials = check()
    assert trials["status"].to_dict() == {"a": "complete", "b": "complete", "c": "diverged"}
    assert trials.loc["a", "lr"] == 0.4
    assert load_measurements(study, cache=cache).set_index("trial_id").loc["a", "test_acc"] == 0.4
