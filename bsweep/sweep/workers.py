"""The `bsweep_fused` launcher's worker processes on this machine, and the fork server they fork
from: the only module that knows either. The pool and the server outlive one launch and are
this process's state, kept here in `_POOL` and `_SERVER` (docs/performance.md, "Trials and
workers", holds the measurements that justify keeping them)."""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from multiprocessing.context import BaseContext

# The pool outlives one launch: `bsweep reproduce` sweeps five studies in one process, and a
# sweeper without the follow-up hook launches once per round, while a fresh worker pays its
# start-up and its exit. It is reused while the worker count and what workers copied when they
# started (working directory, environment) are unchanged; a launch's own variables
# (`hydra.job.env_set`) travel with each group instead. Python's exit shuts it down.
_POOL: dict = {}
# What a worker imports before its first group: the engine, the fused model and the timing
# helper (bsweep.train.perf), data and placement (bsweep.train.trial); torch with them. Not
# torch._dynamo, which a torch.optim object imports on its first use: fused groups and SGD
# trials alone never build one (`engine.FunctionalSGD`).
WORKER_MODULES = ("bsweep.train.perf", "bsweep.train.trial")
# On Linux workers fork from a server process that imported WORKER_MODULES once
# (multiprocessing's forkserver with a preload), not each from a fresh interpreter: `import
# torch` is paid once per sweep instead of once per worker, and started early (`start_server`)
# it overlaps the launching process's planning. The server only imports: torch's thread pools
# start at first use, in the worker; the threads imports do start (numpy's OpenBLAS server,
# pyarrow's jemalloc background thread) have fork handlers, as PyTorch's DataLoader workers rely
# on when they fork from a busier process. `_SERVER["env"]`: the environment it started with,
# which its children inherit.
_SERVER: dict = {}
# The server's last import, after which it outlives a SIGTERM to the process group.
SERVER_MODULE = "bsweep.sweep.forkserver_signals"


def forks_from_server() -> bool:
    """Whether workers fork from the preloaded server here (Linux), rather than spawn."""
    return sys.platform == "linux" and "forkserver" in multiprocessing.get_all_start_methods()


def start_server() -> None:
    """Start the fork server now if it is not running (or runs with another environment than
    this process's), without waiting for its imports: they overlap whatever the caller does
    until `worker_pool` forks from it. Nothing where workers spawn."""
    if not forks_from_server():
        return
    from multiprocessing import forkserver

    env = dict(os.environ)
    if _SERVER.get("env") != env:
        stop_server()  # a server started elsewhere, or before the environment changed
    get_context("forkserver").set_forkserver_preload([*WORKER_MODULES, SERVER_MODULE])
    forkserver.ensure_running()  # starts it again if it died
    # At exit (after the pools have joined their workers, which the server has reaped) stop the
    # server and wait for it: no process outlives the sweep, and the workers' resource use
    # reaches this process's parent through it (`getrusage(RUSAGE_CHILDREN)`: the benchmark's
    # peak memory). Stopped, not asked to leave: a process with torch imported is slow to tear
    # its modules down. Registered once.
    atexit.unregister(stop_server)
    atexit.register(stop_server)
    _SERVER["env"] = env


def stop_server() -> None:
    """Stop the fork server at once, mid-import too (a sweep that found bad input after
    `start_server`), or nothing where none runs. The stdlib offers no public way, so this uses
    multiprocessing's own stop (`ForkServer._stop`, what its tests use), after a SIGKILL: the
    server ignores SIGTERM (`forkserver_signals`), and the stop alone waits for its imports to
    end and for every worker forked from it (each holds the pipe whose end tells the server to
    leave)."""
    if not forks_from_server():  # (multiprocessing.forkserver is Unix-only)
        return
    from multiprocessing import forkserver

    server = forkserver._forkserver
    pid = getattr(server, "_forkserver_pid", None)
    if pid is not None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server._stop()
    _SERVER.clear()


def _context() -> BaseContext:
    """Where new workers come from: the fork server (started now if need be), else spawn."""
    if forks_from_server():
        start_server()
        return get_context("forkserver")
    return get_context("spawn")


def workers_for(n_jobs: int | None) -> int:
    """The launcher's `n_jobs` as a count of processes: <= 0 or null is one per CPU core."""
    from bsweep.placement import cores

    return n_jobs if n_jobs and n_jobs > 0 else cores()


def _pool_key(workers: int) -> tuple:
    # what a worker takes from this process when it starts, and keeps
    return (workers, os.getcwd(), tuple(sorted(os.environ.items())))


def pool_running(workers: int) -> bool:
    """Whether `worker_pool(workers)` would hand out a pool that is already started."""
    pool = _POOL.get("pool")
    return pool is not None and _POOL["key"] == _pool_key(workers) and not getattr(pool, "_broken", False)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """This process's pool of `workers` worker processes, started now if there is none (or the
    last one broke, or the environment changed), each with WORKER_MODULES imported."""
    if pool_running(workers):
        return _POOL["pool"]
    if "pool" in _POOL:
        _POOL.pop("pool").shutdown(wait=True, cancel_futures=True)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=_context(), initializer=_warm)
    for _ in range(workers):  # a worker starts per waiting task: start them all at once
        pool.submit(int)
    _POOL.update(pool=pool, key=_pool_key(workers))
    return pool


def _warm() -> None:
    """A new worker's imports, before its first group (already done where it forked from the
    server), and its quick exit."""
    import importlib

    for module in WORKER_MODULES:
        importlib.import_module(module)
    # Between groups a worker leaves Ctrl-C to the launching process, which hands out no more
    # work; while it trains a group, Ctrl-C and SIGTERM stop it at a step boundary
    # (`executor.train_group`). SIGTERM otherwise ends it, as the pool expects of a broken worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    atexit.register(_exit_now)


def _exit_now() -> None:
    """A worker's last act once the pool has shut it down (every group's records are written by
    then): flush the logs and leave without tearing down torch's modules one by one, which the
    sweep would wait for."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed stream: nothing left to lose
            pass
    os._exit(0)
