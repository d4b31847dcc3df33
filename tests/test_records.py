import json
import os
from pathlib import Path

import pytest

from bsweep import records


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a" / "status.json"
    records.write_status(path.parent, "running")
    records.write_status(path.parent, "complete", steps=3)
    assert json.loads(path.read_text())["status"] == "complete"
    assert [p.name for p in path.parent.iterdir()] == ["status.json"]


def test_finished_needs_a_finished_status_and_readable_config_and_measurements(tmp_path):
    t = tmp_path / "t"
    records.write_status(t, "running")
    assert not records.is_finished(t) and records.trial_state(t) == "running"
    records.write_yaml(t / records.CONFIG_FILE, {"lr": 0.1})
    records.write_measurements(t, [{"step": 0, "test_acc": 0.1}])
    records.write_status(t, "complete")
    assert records.is_finished(t) and records.trial_state(t) == "complete"
    (t / records.MEASUREMENTS_FILE).write_bytes(b"PAR1 truncated")
    assert not records.is_finished(t) and records.trial_state(t) == "damaged"


def test_diverged_is_finished_but_failed_is_not(tmp_path):
    for status, finished in (("diverged", True), ("failed", False), ("oom", False)):
        t = tmp_path / status
        records.write_yaml(t / records.CONFIG_FILE, {"lr": 0.1})
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


class Crash(Exception):
    """A process dying between writing a record's bytes and renaming them into place."""


@pytest.fixture
def crash_before_rename(monkeypatch):
    """Make the rename of any file into a trial folder under pytest's tmp_path raise, as a crash
    between write and rename would stop it (other renames, e.g. pytest's own, go through)."""
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).parent.name == "t":
            raise Crash(f"killed before renaming {src} to {dst}")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


WRITES = {  # each record file's writer, with an old and a new content, and how it reads back
    records.STATUS_FILE: (lambda t, v: records.write_status(t, "complete", version=v),
                          lambda t: records.read_status(t)["version"]),
    records.MEASUREMENTS_FILE: (lambda t, v: records.write_measurements(t, [{"step": s, "test_acc": 0.5} for s in range(v)]),
                                lambda t: len(records.read_measurements(t))),
    records.CONFIG_FILE: (lambda t, v: records.write_yaml(t / records.CONFIG_FILE, {"version": v}),
                          lambda t: records.read_yaml(t / records.CONFIG_FILE)["version"]),
}


@pytest.mark.parametrize("name", sorted(WRITES))
def test_a_write_that_dies_before_its_rename_leaves_the_previous_record_whole(tmp_path, name, request):
    write, read = WRITES[name]
    t = tmp_path / "t"
    write(t, 3)
    request.getfixturevalue("crash_before_rename")
    try:
        write(t, 5)
    except Crash:
        pass
    # the old content, whole: a write in place would show the new one (or half of it)
    assert read(t) == 3, f"{name} changed although its write died before the rename"
    assert sorted(p.name for p in t.iterdir()) == [name]  # and no temporary left beside it
