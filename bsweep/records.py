"""The on-disk contract of a study: where each file lives, written atomically, read back safely.

    results/<study>/study.yaml                       what defines the study (name, target, budget, cadence)
    results/<study>/trials/<trial_id>/config.yaml    the trial's resolved config
    results/<study>/trials/<trial_id>/env.json       torch version, device, threads, host
    results/<study>/trials/<trial_id>/measurements.parquet
    results/<study>/trials/<trial_id>/status.json    running | complete | diverged | failed | oom | interrupted
    results/<study>/trials/<trial_id>/traceback.txt  the traceback of a failed / oom trial
    results/<study>/trials/<trial_id>/claims.jsonl   one line per lease: when a process took the trial
    results/<study>/trials/<trial_id>/checkpoint.pt  the state to resume from (an unfinished trial)
    results/<study>/trials/<trial_id>/.lock          the lease (see below); never deleted

Every file is written to a temporary name in the same folder and renamed over the real one, so a
crash leaves either the old file or the new one, never half of one. `status.json` is written last:
a trial counts as finished only when its status says so *and* its measurements read back.

Leases: one process trains a trial at a time. A process takes a trial's *lease* by taking an
exclusive `fcntl.flock` on the trial's `.lock` file and holds it while it trains. The kernel drops
the lock when the process dies, however it dies (`kill -9` included), so a lease is never stale on
one host; on NFS (v4, or v3 with lockd) Linux maps flock onto POSIX locks that the server drops
when the client stops renewing them. Where the filesystem has no working locks (flock fails with
ENOLCK / EOPNOTSUPP, e.g. Lustre mounted without `-o flock`), or when `BSWEEP_LOCK=file`, the
lease is an `O_CREAT|O_EXCL` file `.claim` holding pid, host and a heartbeat (its mtime, touched
every HEARTBEAT_SECONDS); such a lease is taken over when its pid is dead (same host) or its
heartbeat is older than STALE_SECONDS. The files keep the names `.claim` and `claims.jsonl` they
had when a lease was called a claim, so existing studies resume as before.

A `running` status carries the owner's pid, host and a heartbeat time as well, so readers
(`bsweep status`, the progress watcher) tell a trial being trained (`running`) from one whose
process died (`interrupted`) without touching any lock. It also carries the trial's `progress`
(step, total steps, samples, latest test accuracy), refreshed at measurement points.

The lifecycle of a trial, the same for every launcher (`bsweep.train.trial.train_trials` trains
one trial for Hydra's launchers, several at once for the fused launcher):

    take()      lease -> previous attempt cleared -> a line in claims.jsonl -> config.yaml
    Attempt     env.json -> `running` with a heartbeat that keeps the lease fresh as well ->
                finish(): measurements, then `complete` | `diverged`
                fail():   traceback.txt, then `failed` | `oom` with the error
                leaving it by Ctrl-C, SIGTERM or SystemExit: `interrupted` (its checkpoint
                kept: the next sweep resumes it); by another exception: `failed`
                leases released in every case
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

# `interrupted`: stopped by a signal (Ctrl-C, a preemption); the next sweep resumes it.
STATUSES = ("running", "complete", "diverged", "failed", "oom", "interrupted")
# A diverged trial is a result (the learning rate was too high), so it is kept, not redone.
FINISHED = ("complete", "diverged")

STUDY_FILE = "study.yaml"
CONFIG_FILE = "config.yaml"
ENV_FILE = "env.json"
STATUS_FILE = "status.json"
MEASUREMENTS_FILE = "measurements.parquet"
CHECKPOINT_FILE = "checkpoint.pt"  # the training state to resume from (bsweep.train.trial.FileCheckpoint)
TRACEBACK_FILE = "traceback.txt"
LEASE_LOG_FILE = "claims.jsonl"  # the name from when a lease was called a claim
LOCK_FILE = ".lock"
LEASE_FILE = ".claim"  # the lease-file fallback; named as LEASE_LOG_FILE

# A trial's owner rewrites its heartbeat this often, in seconds: rare enough to cost nothing,
# often enough that a dead owner on another host is noticed within minutes.
HEARTBEAT_SECONDS = 30.0
# A measurement rewrites a running trial's status (its progress) at most this often, in
# seconds: a live display without a file write at every measurement of a fast trial.
PROGRESS_SECONDS = 2.0
# A heartbeat older than this (5 missed beats) means the owner is gone (other hosts; and the
# lease-file fallback). Generous, because a loaded NFS server can delay a rename by seconds.
STALE_SECONDS = 150.0
# The sweep a process works for (set by `bsweep sweep` for its jobs), recorded in each status.
SWEEP_ENV = "BSWEEP_SWEEP_ID"
LOCK_ENV = "BSWEEP_LOCK"  # "flock" (default) or "file": the lease-file fallback
HOST = socket.gethostname()


class DamagedRecord(Exception):
    """A record file exists but cannot be read (truncated, edited, half-copied)."""


def trials_dir(study_dir: Path) -> Path:
    return Path(study_dir) / "trials"


def trial_dir(study_dir: Path, trial_id: str) -> Path:
    return trials_dir(study_dir) / trial_id


def _read_umask() -> int:
    """The process umask. Linux shows it in /proc; elsewhere it can only be read by setting it,
    which races with threads that create files, so this runs once, at import."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Record files get the mode `open()` would give them (0666 less the umask), so colleagues can
# read a shared results folder; mkstemp alone makes them 0600.
FILE_MODE = 0o666 & ~_read_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all: a temporary file in the same folder, renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# libyaml's safe dumper when PyYAML has it: the same text as yaml.safe_dump, faster (every trial
# writes one; docs/performance.md, "Planning and sweeping").
_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def write_yaml(path: Path, obj: Any) -> None:
    atomic_write_text(path, yaml.dump(obj, Dumper=_YAML_DUMPER, sort_keys=False))


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def write_measurements(tdir: Path, rows: list[dict]) -> None:
    frame = pd.DataFrame(rows)
    atomic_write_bytes(tdir / MEASUREMENTS_FILE, frame.to_parquet(index=False))


def write_status(tdir: Path, status: str, **details: Any) -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    write_json(tdir / STATUS_FILE, {"status": status, "time": time.time(), **details})


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DamagedRecord(f"{path}: {e}") from None


# libyaml's parser where PyYAML was built with it: every report and bracketing decision reads
# each trial's config.yaml (docs/performance.md, "Planning and sweeping"). Same safe
# constructors, same results.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path) -> dict:
    try:
        obj = yaml.load(path.read_text(), Loader=_YAML_LOADER)  # noqa: S506 (a safe loader)
    except (OSError, yaml.YAMLError) as e:
        raise DamagedRecord(f"{path}: {e}") from None
    if not isinstance(obj, dict):
        raise DamagedRecord(f"{path}: not a mapping")
    return obj


def read_status(tdir: Path) -> dict | None:
    """The trial's status record, or None when the trial has none yet."""
    path = Path(tdir) / STATUS_FILE
    if not path.exists():
        return None
    status = read_json(path)
    if status.get("status") not in STATUSES:
        raise DamagedRecord(f"{path}: unknown status {status.get('status')!r}")
    return status


def read_measurements(tdir: Path) -> pd.DataFrame:
    path = Path(tdir) / MEASUREMENTS_FILE
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise DamagedRecord(f"{path}: {e}") from None


def is_finished(tdir: Path) -> bool:
    """True when the trial is a usable result: `trial_state` says complete or diverged."""
    return trial_state(tdir) in FINISHED


def trial_state(tdir: Path) -> str:
    """One word for a trial folder, the one definition that `bsweep status`, the sweep's skip
    and the reports share: its status; `damaged` when a finished trial's config.yaml or
    measurements do not read back (the next sweep redoes it); `new` when it has no status yet;
    `interrupted` when it says `running` but its owner is gone (see `owner_alive`)."""
    try:
        status = read_status(tdir)
        if status is None:
            return "new"
        if status["status"] in FINISHED:
            read_yaml(Path(tdir) / CONFIG_FILE)
            read_measurements(tdir)
        if status["status"] == "running" and not owner_alive(status):
            return "interrupted"
        return status["status"]
    except DamagedRecord:
        return "damaged"


# --- owners and leases -------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but someone else's
        return True
    except (OverflowError, ValueError):
        return False
    return True


def owner_alive(record: dict, now: float | None = None) -> bool:
    """Whether the process named in a `running` status (or a lease) still works on the trial:
    on this host, its pid is alive; elsewhere (or without a pid), its heartbeat is fresh."""
    now = time.time() if now is None else now
    pid, host = record.get("pid"), record.get("host")
    if host == HOST and isinstance(pid, int):
        return pid_alive(pid)
    beat = record.get("heartbeat", record.get("time"))
    return isinstance(beat, (int, float)) and now - beat < STALE_SECONDS


def owner() -> dict:
    """Who this process is, for status records and leases."""
    return {"pid": os.getpid(), "host": HOST, "sweep": os.environ.get(SWEEP_ENV)}


def _lock_mode() -> str:
    mode = os.environ.get(LOCK_ENV, "flock")
    if mode not in ("flock", "file"):
        raise ValueError(f"{LOCK_ENV}={mode!r}: choose flock or file")
    return mode


# errno values meaning "this filesystem does not do locks": fall back to lease files.
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class Lease:
    """This process's exclusive right to train one trial, until `release()` (or death)."""

    def __init__(self, tdir: Path, mode: str, fd: int | None, token: str) -> None:
        self.tdir, self.mode, self._fd, self.token = Path(tdir), mode, fd, token

    def beat(self) -> None:
        """Refresh the lease's heartbeat (the lease file's mtime; flock needs none)."""
        if self.mode == "file":
            try:
                os.utime(self.tdir / LEASE_FILE)
            except OSError:
                pass

    def release(self) -> None:
        if self.mode == "flock" and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
        elif self.mode == "file":
            path = self.tdir / LEASE_FILE
            try:  # only our own lease: after a takeover the file is someone else's
                if json.loads(path.read_text()).get("token") == self.token:
                    path.unlink()
            except (OSError, ValueError):
                pass
        self._fd = None

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lease(tdir: Path) -> Lease | None:
    """Take the lease of the trial in `tdir` for this process, or None when a live process holds it."""
    tdir = Path(tdir)
    tdir.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    if _lock_mode() == "flock":
        fd = os.open(tdir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError as e:
            os.close(fd)
            if e.errno not in _NO_LOCKS:
                raise
        else:
            return Lease(tdir, "flock", fd, token)
    return _lease_file(tdir, token)


def _lease_file(tdir: Path, token: str, retry: bool = True) -> Lease | None:
    path = tdir / LEASE_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        try:
            held = json.loads(path.read_text())
            held["heartbeat"] = path.stat().st_mtime
        except (OSError, ValueError):  # half-written by an owner that died at once, or gone
            held = {"heartbeat": _mtime(path)}
        if owner_alive(held) or not retry:
            return None
        # Stale: move it aside (one renamer wins; the others find it gone) and try once more.
        aside = tdir / f"{LEASE_FILE}.stale.{token}"
        try:
            os.rename(path, aside)
            aside.unlink()
        except OSError:
            return None
        return _lease_file(tdir, token, retry=False)
    with os.fdopen(fd, "w") as f:
        json.dump({**owner(), "token": token, "time": time.time()}, f)
    return Lease(tdir, "file", None, token)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


class Heartbeat(threading.Thread):
    """Calls `beat()` every HEARTBEAT_SECONDS until `stop()`; `stop()` returns only after the last
    beat has finished, so nothing it writes can land after the caller's final status."""

    def __init__(self, beat, interval: float | None = None) -> None:
        super().__init__(daemon=True, name="bsweep-heartbeat")
        self._beat = beat
        self._interval = HEARTBEAT_SECONDS if interval is None else interval
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self._interval):
            try:
                self._beat()
            except OSError:  # a full disk or a flaky NFS mount must not kill the trial
                pass

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join()


def append_lease_log(tdir: Path, **fields: Any) -> None:
    """One JSON line per lease: who trained the trial when (a history, not a contract)."""
    with open(Path(tdir) / LEASE_LOG_FILE, "a") as f:
        f.write(json.dumps({**owner(), "time": time.time(), **fields}) + "\n")


def clear_for_rerun(tdir: Path) -> None:
    """Remove what an earlier attempt left (its measurements, traceback, temporary files), so
    a redone trial's folder holds one attempt only. Only under a lease."""
    tdir = Path(tdir)
    for name in (MEASUREMENTS_FILE, TRACEBACK_FILE):
        (tdir / name).unlink(missing_ok=True)
    for tmp in tdir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def ensure_study_file(sdir: Path, config: dict) -> None:
    """Write study.yaml from a trial's resolved config if the study has none yet."""
    path = Path(sdir) / STUDY_FILE
    if not path.exists():
        write_yaml(path, {"study": config["study"], "config": config, "grid": {}})


# --- the lifecycle ------------------------------------------------------------------------------

# Messages of out-of-memory errors that arrive as plain RuntimeError: CUDA's caching allocator
# (older torch), the CPU allocator ("DefaultCPUAllocator: can't allocate memory", seen under a
# memory cap) and MPS ("MPS backend out of memory").
OOM_MESSAGES = ("out of memory", "can't allocate memory", "not enough memory")


def is_oom(e: BaseException) -> bool:
    """Whether `e` says the device ran out of memory: Python's MemoryError, torch's
    OutOfMemoryError (matched by name: records has no torch), or an allocator's message."""
    names = {t.__name__ for t in type(e).__mro__}
    return bool(names & {"MemoryError", "OutOfMemoryError"}) or any(m in str(e) for m in OOM_MESSAGES)


def error_line(e: BaseException) -> str:
    """`Type: message`; where the message is empty (a bare assert), where it was raised."""
    message = str(e).strip()
    if message:
        return f"{type(e).__name__}: {message}"
    frames = traceback.extract_tb(e.__traceback__)
    if not frames:
        return type(e).__name__
    last = frames[-1]
    return f"{type(e).__name__} at {Path(last.filename).name}:{last.lineno} in {last.name}"


@dataclass
class Held:
    """A trial this process holds the lease of and has prepared for a new attempt."""

    trial_id: str
    tdir: Path
    lease: Lease
    details: dict = field(default_factory=dict)  # env.json and status extras (fused_with, ...)


def take(sdir: Path, trial_id: str, config: dict, **log: Any) -> Held | str:
    """Take the lease of a trial of the study in `sdir` and prepare its folder for a new attempt (the last
    attempt's files removed, a line in claims.jsonl with `log`, config.yaml, study.yaml when the
    study has none). When it is not ours to train, the reason: its finished status, or
    "running elsewhere" when a live process holds it."""
    tdir = trial_dir(sdir, trial_id)
    if is_finished(tdir):
        return read_status(tdir)["status"]
    held = lease(tdir)
    if held is None:
        return "running elsewhere"
    if is_finished(tdir):  # finished by another process between the check and the lease
        held.release()
        return read_status(tdir)["status"]
    previous = trial_state(tdir)
    clear_for_rerun(tdir)
    append_lease_log(tdir, previous=previous, **log)
    ensure_study_file(sdir, config)
    write_yaml(tdir / CONFIG_FILE, config)
    return Held(trial_id, tdir, held)


class Attempt:
    """Held trials being trained (one alone, or the members of a fused group), from `running`
    to a final status each. While the block runs, a heartbeat rewrites each unfinished trial's
    `running` status and refreshes its lease, so neither goes stale however long it trains.
    Leaving the block with an exception records the unfinished trials as failed (interrupted);
    every lease is released."""

    def __init__(self, held: list[Held], env: dict) -> None:
        self.held, self.env = list(held), env
        self.open = {h.trial_id for h in self.held}
        self.started, self.me = time.time(), owner()
        self._lock = threading.Lock()  # a beat never writes `running` over a final status
        self._heart = Heartbeat(self._beat)
        self._progress: dict[str, dict] = {}  # trial_id -> its `progress` in the running status
        self._progress_written = 0.0

    def __enter__(self) -> "Attempt":
        self.note(self.held)
        self._beat()
        self._heart.start()
        return self

    def _status(self, h: Held, status: str, **fields: Any) -> None:
        write_status(h.tdir, status, **self.me, started=self.started, **h.details, **fields)

    def _beat(self) -> None:
        with self._lock:
            for h in self.held:
                if h.trial_id in self.open:
                    h.lease.beat()
                    progress = self._progress.get(h.trial_id)
                    self._status(h, "running", heartbeat=time.time(), **({"progress": progress} if progress else {}))

    def progress(self, held: list[Held], step: int, total_steps: int, rows: list[dict | None]) -> None:
        """Record how far the trials `held` (trained together; rows[k]: member k's latest
        measurement, or None) have come; written with their running status, at most every
        PROGRESS_SECONDS (the heartbeat writes the latest in between). An `engine.OnMeasure`."""
        for h, row in zip(held, rows):
            if row is not None:
                self._progress[h.trial_id] = {"step": row["step"], "total_steps": total_steps,
                                              "samples": row["samples"], "test_acc": row.get("test_acc")}
        if time.monotonic() - self._progress_written >= PROGRESS_SECONDS:
            self._progress_written = time.monotonic()
            try:
                self._beat()
            except OSError:  # as in the heartbeat: a display must not kill the trial
                pass

    def note(self, held: list[Held], **details: Any) -> None:
        """Add `details` to these trials' env.json and statuses (what they run with)."""
        for h in held:
            h.details.update(details)
            write_json(h.tdir / ENV_FILE, {**self.env, **h.details})

    def finish(self, h: Held, status: str, measurements: list[dict], total_steps: int) -> None:
        """A trained trial: its measurements, then its final status (complete or diverged); its
        checkpoint, no longer needed, removed."""
        with self._lock:
            self.open.discard(h.trial_id)
            write_measurements(h.tdir, measurements)
            (h.tdir / CHECKPOINT_FILE).unlink(missing_ok=True)
            last = measurements[-1]
            self._status(h, status, steps=last["step"], total_steps=total_steps,
                         final_test_acc=last["test_acc"], train_seconds=last["train_seconds"],
                         eval_seconds=last.get("eval_seconds"))

    def fail(self, h: Held, e: BaseException, tb: str) -> str:
        """A trial that raised: traceback.txt, then `oom` or `failed` with the error. Returns
        the status written."""
        status = "oom" if is_oom(e) else "failed"
        with self._lock:
            self.open.discard(h.trial_id)
            atomic_write_text(h.tdir / TRACEBACK_FILE, tb)
            # its own error: the next attempt starts afresh rather than from a state that led here
            (h.tdir / CHECKPOINT_FILE).unlink(missing_ok=True)
            self._status(h, status, error=error_line(e), traceback=tb)
        return status

    def __exit__(self, exc_type, exc, tb) -> None:
        self._heart.stop()
        try:
            if exc is not None:
                for h in self.held:
                    if h.trial_id in self.open:
                        status, error = _left_by(exc)
                        self._status(h, status, error=error)
        finally:
            for h in self.held:
                h.lease.release()


def _left_by(exc: BaseException) -> tuple[str, str]:
    """(status, error) of a trial whose attempt was left by `exc`: `interrupted` for a signal
    (Ctrl-C, SIGTERM: `bsweep.interrupt`) or an exit, with what resumes it; `failed` for a crash
    of the machinery."""
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        by = getattr(exc, "signal_name", None) or type(exc).__name__
        saved = getattr(exc, "saved_step", None)
        if saved is not None:
            return "interrupted", f"stopped by {by} at step {saved}; the next sweep resumes it there"
        return "interrupted", f"stopped by {by}; the next sweep resumes it from its last checkpoint, if any"
    return "failed", f"{type(exc).__name__}: interrupted"


# --- the bracketing sweeper's record -----------------------------------------------------------
# `hydra/sweeper=bsweep_bracket` (bsweep.sweep.bracket decides) writes its rounds and the edges it
# left open here, in the study folder; `bsweep sweep`, `bsweep status` and the report read it.
BRACKET_FILE = "bracket.json"


def read_bracket_record(study_dir: Path) -> dict | None:
    """The bracketing sweeper's record in `study_dir` (None when the study was not bracketed or
    the file cannot be read)."""
    try:
        record = json.loads((Path(study_dir) / BRACKET_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def bracket_summary(record: dict) -> str:
    """One line: the lrs added, the trials they took, the edges left open."""
    added = [a for r in record.get("rounds", []) for a in r.get("added", [])]
    trials = sum(len(r.get("trial_ids", [])) for r in record.get("rounds", []))
    still = [e for e in record.get("open_edges", []) if e.get("next_lr") is None]
    line = (f"lr bracketing: {len(added)} lr(s) added at {len({a.get('point') for a in added})} point(s), "
            f"{trials} trial(s); "
            + (f"{len(still)} edge(s) not bracketed ({'; '.join(e['point'] + ' ' + e['side'] for e in still)})"
               if still else "every best lr is interior"))
    return line


def bracket_table(record: dict) -> pd.DataFrame:
    """The record as a table: one row per lr added (the point's round on that side, point, side,
    from, to, which criteria asked for it, trials), then one per edge left open (why)."""
    rows = [{"round": a.get("round", r.get("round")), "point": a.get("point"), "side": a.get("side"), "edge lr": a.get("edge_lr"),
             "lr added": a.get("lr"), "why": "best lr (" + ", ".join(a.get("criteria", [])) + ") on this edge",
             "trials": a.get("jobs")}
            for r in record.get("rounds", []) for a in r.get("added", [])]
    rows += [{"round": "-", "point": e.get("point"), "side": e.get("side"), "edge lr": e.get("edge_lr"),
              "lr added": "-", "why": e.get("reason"), "trials": 0}
             for e in record.get("open_edges", []) if e.get("next_lr") is None]
    return pd.DataFrame(rows, columns=["round", "point", "side", "edge lr", "lr added", "why", "trials"])


def bracket_settings(record: dict) -> str:
    """One sentence: the bounds, rounds and criteria the sweeper ran with."""
    return (f"Bounds [{record.get('lr_min', float('nan')):g}, {record.get('lr_max', float('nan')):g}], at most "
            f"{record.get('max_rounds')} lr(s) added per point and side, criteria: "
            f"{', '.join(record.get('criteria', []))}." + ("" if record.get("done", True) else
                                                            " The sweep stopped before bracketing finished."))
