"""Generated datasets cached on disk: no process and no run generates the same arrays twice.

mnist1d's `make_dataset` takes seconds, and every worker process of every sweep used to pay it
(docs/performance.md, "Trials and workers"). The arrays are stored once per machine as
`<name>-<digest>.npz` under `cache_dir()`, where the digest is of everything that determines
them (generator version and arguments, `CACHE_VERSION`). A file is used only when it loads,
names the same key and its arrays hash to the checksum stored beside them; otherwise it is
regenerated and replaced. A cache folder that cannot be written costs only the cache, never
the run.

It stays a module of its own, apart from `data`: it imports no torch, so processes that only
read or write the cache (its tests' spawned workers) start in a fraction of the time.

Processes that miss the same file at once (a sweep's workers start together on a fresh machine)
take turns under an exclusive lock on `<file>.lock`: the first generates, the others wait and
read what it wrote. The kernel drops the lock when its holder exits, however it exits.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from bsweep.records import atomic_write_bytes

log = logging.getLogger("bsweep")

# Where the cache lives: $BSWEEP_CACHE_DIR, else $XDG_CACHE_HOME/bsweep, else ~/.cache/bsweep.
CACHE_ENV = "BSWEEP_CACHE_DIR"
# Bump when the stored layout or the way arrays are derived from their key changes.
CACHE_VERSION = 1

Arrays = dict[str, np.ndarray]


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bsweep"


def checksum(arrays: Arrays) -> str:
    """SHA-256 over every array's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def cache_path(name: str, key: dict) -> Path:
    text = json.dumps({"cache_version": CACHE_VERSION, **key}, sort_keys=True, default=str)
    return cache_dir() / f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:20]}.npz"


def _read(path: Path, key_text: str) -> Arrays | None:
    try:
        with np.load(path, allow_pickle=False) as f:
            stored = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    meta = stored.pop("__meta__", None)
    if meta is None:
        return None
    try:
        meta = json.loads(str(meta))
    except ValueError:
        return None
    if meta.get("key") != key_text or meta.get("sha256") != checksum(stored):
        return None
    return stored


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive `flock` on `lock_path` (created if missing). Where there is no `fcntl`
    (Windows) or the folder cannot be written, nothing is locked: at worst two processes
    generate the same arrays, as they would without a cache."""
    try:
        import fcntl

        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def cached_arrays(name: str, key: dict, make: Callable[[], Arrays]) -> Arrays:
    """`make()`'s arrays, from the cache when a valid file for (`name`, `key`) is there, else
    made and stored. `key` must hold everything the arrays depend on (JSON-serialisable)."""
    path = cache_path(name, key)
    key_text = json.dumps(key, sort_keys=True, default=str)
    if path.exists() and (arrays := _read(path, key_text)) is not None:
        return arrays
    with _exclusive(path.with_name(path.name + ".lock")):
        if path.exists():  # made by the process this one waited for, or damaged
            arrays = _read(path, key_text)
            if arrays is not None:
                return arrays
            log.warning("data cache %s is damaged or stale; regenerating it", path)
        arrays = make()
        meta = json.dumps({"key": key_text, "sha256": checksum(arrays)})
        buffer = io.BytesIO()
        np.savez(buffer, __meta__=np.array(meta), **arrays)
        try:
            atomic_write_bytes(path, buffer.getvalue())
        except OSError as e:  # a read-only home or a full disk: run on, uncached
            log.warning("could not write the data cache %s (%s); set %s to a writable folder", path, e, CACHE_ENV)
    return arrays
