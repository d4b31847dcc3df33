import json

import pytest

from bsweep import records


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a" / "status.json"
    records.write_status(path.parent, "running")
    records.write_status(path.parent, "complete", steps=3)
    assert json.loads(path.read_text())["status"] == "complete"
    assert [p.name for p in path.parent.iterdir()] == ["status.json"]


def test_finished_needs_a_finished_status_and_readable_measurements(tmp_path):
    t = tmp_path / "t"
    records.write_status(t, "running")
    assert not records.is_finished(t) and records.trial_state(t) == "running"
    records.write_measurements(t, [{"step": 0, "test_acc": 0.1}])
    records.write_status(t, "complete")
    assert records.is_finished(t) and records.trial_state(t) == "complete"
    (t / records.MEASUREMENTS_FILE).write_bytes(b"PAR1 truncated")
    assert not records.is_finished(t) and records.trial_state(t) == "damaged"


def test_diverged_is_finished_but_failed_is_not(tmp_path):
    for status, finished in (("diverged", True), ("failed", False), ("oom", False)):
        t = tmp_path / status
        records.write_measurements(t, [{"step": 0, "test_acc": 0.1}])
        records.write_status(t, status)
        assert records.is_finished(t) is finished


def test_unreadable_status_is_damaged(tmp_path):
    t = tmp_path / "t"
    t.mkdir()
    (t / records.STATUS_FILE).write_text('{"status": "comp')
    assert records.trial_state(t) == "damaged"
    with pytest.raises(ValueError):
        records.write_status(t, "finished-ish")
