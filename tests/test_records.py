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


def crash_renames_into(monkeypatch, folder: Path) -> None:
    """From now on, renaming a file into `folder` raises, as a crash between the write and the
    rename would stop it (other renames go through)."""
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).parent == folder:
            raise Crash(f"killed before renaming {src} to {dst}")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def rows(n: int) -> list[dict]:
    return [{"step": s, "test_acc": 0.5} for s in range(n)]


WRITES = {  # each record file: its writer of version v, and the version it reads back
    records.STATUS_FILE: (lambda t, v: records.write_status(t, "complete", version=v),
                          lambda t: records.read_status(t)["version"]),
    records.MEASUREMENTS_FILE: (lambda t, v: records.write_measurements(t, rows(v)),
                                lambda t: len(records.read_measurements(t))),
    records.CONFIG_FILE: (lambda t, v: records.write_yaml(t / records.CONFIG_FILE, {"version": v}),
                          lambda t: records.read_yaml(t / records.CONFIG_FILE)["version"]),
}


@pytest.mark.parametrize("name", sorted(WRITES))
def test_a_write_that_dies_before_its_rename_leaves_the_previous_record_whole(tmp_path, monkeypatch, name):
    write, read = WRITES[name]
    t = tmp_path / "t"
    write(t, 3)
    crash_renames_into(monkeypatch, t)
    try:
        write(t, 5)
    except Crash:
        pass
    # the old content, whole: a write in place would show the new one (or half of it)
    assert read(t) == 3, f"{name} changed although its write died before the rename"
    assert sorted(p.name for p in t.iterdir()) == [name]  # and no temporary left beside it
