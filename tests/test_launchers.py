"""Launchers: basic (in-process), joblib (local processes), submitit_local (local jobs, as on
SLURM); threads per job, GPU spread, and the lease-file fallback for filesystems without locks.
Whatever the launcher, the records land in the same study folder and read the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bsweep import records
from bsweep.analysis.load import load_measurements, load_trials
from bsweep.cli import app
from bsweep.placement import choose_device, cores, launcher_jobs, threads_for
from tests.conftest import TINY

runner = CliRunner()
JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SUBMITIT_LOCAL = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
SUBMITIT_SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


def envs(study) -> list[dict]:
    return [json.loads((t / records.ENV_FILE).read_text()) for t in records.trials_dir(study).iterdir()]


def test_trials_at_once_per_launcher():
    assert launcher_jobs(None, cores=8) == 1
    assert launcher_jobs({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 8) == 1
    assert launcher_jobs({"_target_": JOBLIB, "n_jobs": 3}, cores=8) == 3
    assert launcher_jobs({"_target_": JOBLIB, "n_jobs": -1}, cores=8) == 8  # joblib: all cores
    assert launcher_jobs({"_target_": JOBLIB, "n_jobs": -2}, cores=8) == 7
    assert launcher_jobs({"_target_": JOBLIB, "n_jobs": 4}, cores=8, n_trials=2) == 2
    assert launcher_jobs({"_target_": SUBMITIT_LOCAL}, cores=8, n_trials=5) == 5  # all at once
    assert launcher_jobs({"_target_": SUBMITIT_SLURM}, cores=8, n_trials=500) == 1  # own allocations


def test_jobs_times_threads_never_exceeds_the_cores():
    for n_cores in (1, 2, 8, 64):
        for jobs in (1, 2, 3, 8, 100):
            for asked in (None, 1, 2, 4, 64):
                got = threads_for(asked, jobs, n_cores)
                assert got >= 1
                assert got * jobs <= max(n_cores, jobs)  # one thread each when jobs > cores
                if asked is not None:
                    assert got <= asked
    assert threads_for(None, 1, 8) == 8 and threads_for(None, 2, 8) == 4 and threads_for(4, 4, 8) == 2


def test_auto_device_spreads_parallel_trials_over_gpus():
    assert [choose_device("auto", j, jobs=4, n_gpus=2) for j in range(4)] == \
        ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]  # several trials share one GPU
    assert choose_device("auto", 5, jobs=8, n_gpus=3) == "cuda:2"
    assert choose_device("auto", 3, jobs=1, n_gpus=2) == "auto"  # one at a time: the default GPU
    assert choose_device("auto", 3, jobs=4, n_gpus=1) == "auto"
    assert choose_device("cpu", 1, jobs=4, n_gpus=2) == "cpu"  # an explicit device is kept
    assert choose_device("cuda:1", 0, jobs=4, n_gpus=2) == "cuda:1"


@pytest.mark.slow
def test_joblib_runs_trials_in_parallel_processes_into_the_same_study(results):
    out = runner.invoke(app, ["sweep", *TINY, f"results_dir={results}", "hydra/launcher=joblib",
                              "hydra.launcher.n_jobs=2", "threads=4"])
    assert out.exit_code == 0, out.output
    assert "2 at a time" in out.output
    expected = threads_for(4, 2, cores())
    assert f"each trial runs {expected} torch thread(s)" in out.output  # told, and capped
    study = results / "smoke"
    trials = load_trials(study)
    assert len(trials) == 4 and set(trials["status"]) == {"complete"}
    found = envs(study)
    assert {e["parallel_jobs"] for e in found} == {2}
    assert {e["threads"] for e in found} == {expected}
    assert os.getpid() not in {e["pid"] for e in found}  # trained in worker processes
    assert "4 trained by this run" in out.output
    status = runner.invoke(app, ["status", str(study)])
    assert "4 complete" in status.output

    # A second joblib sweep of the same study (reused loky workers) trains nothing again.
    again = runner.invoke(app, ["sweep", *TINY, f"results_dir={results}", "hydra/launcher=joblib",
                                "hydra.launcher.n_jobs=2", "lr=0.05,0.1", "norm=batch"])
    assert again.exit_code == 0, again.output
    assert "2 trained by this run; 2 finished before" in again.output


@pytest.mark.slow
def test_the_fused_launcher_trains_groups_in_worker_processes_with_capped_threads(results):
    # 2 groups (norm batch, group; 2 batch sizes each: 4 groups of 1) in 2 spawned workers that
    # asked for 4 threads each: capped like every launcher's jobs, so workers x threads <= cores
    out = runner.invoke(app, ["sweep", *TINY, f"results_dir={results}", "hydra/launcher=bsweep_fused",
                              "hydra.launcher.n_jobs=2", "threads=4", "lr=0.05,0.1"])
    assert out.exit_code == 0, out.output
    study = results / "smoke"
    trials = load_trials(study)
    assert len(trials) == 8 and set(trials["status"]) == {"complete"}
    found = envs(study)
    assert {e["parallel_jobs"] for e in found} == {2}
    assert {e["threads"] for e in found} == {threads_for(4, 2, cores())}
    assert os.getpid() not in {e["pid"] for e in found}  # trained in worker processes
    assert all(e["fused_width"] >= 1 for e in found)
    # where the time went, each fused chunk once, over the 2 processes
    line = next(l for l in out.output.splitlines() if l.startswith("time: "))
    assert "in 2 process(es)" in line and "trained models" in line


def test_the_time_split_counts_each_fused_chunk_once():
    from bsweep.sweep.launch import time_split

    chunk = {"pid": 7, "fused_with": ["b", "a"], "train_seconds": 3.0, "eval_seconds": 1.0}
    statuses = [{**chunk}, {**chunk, "fused_with": ["a", "b"]},  # one chunk of two members
                {"pid": 7, "train_seconds": 2.0, "eval_seconds": 0.5},  # a trial alone
                {"pid": 8, "train_seconds": 2.0, "eval_seconds": 0.5},  # another, same clocks
                {"pid": 8, "status": "failed"}]  # no clock
    split = time_split(statuses, wall_seconds=10.0, processes=2)
    assert (split.chunks, split.train, split.evaluation) == (3, 7.0, 2.0)
    assert split.rest_per_process == (2 * 10.0 - 9.0) / 2
    # trials in jobs of their own (submitit, Ray): no per-process rest to claim
    elsewhere = time_split(statuses, wall_seconds=10.0, processes=0)
    assert elsewhere.line().endswith("summed over 3 trained models in jobs of their own")


@pytest.mark.slow
def test_the_fused_launchers_workers_serve_the_next_sweep_with_its_own_sweep_id(results, tmp_path, monkeypatch):
    # Two sweeps in one process (as `bsweep reproduce` runs five) share the worker processes,
    # and each group still trains with its own sweep's variables (the sweep id in its records);
    # a changed working directory (a spawned worker keeps the one it started in) gets new ones.
    def sweep(name: str) -> list[dict]:
        out = runner.invoke(app, ["sweep", *TINY, f"results_dir={results}", f"study.name={name}",
                                  "hydra/launcher=bsweep_fused", "hydra.launcher.n_jobs=2", "lr=0.05,0.1"])
        assert out.exit_code == 0, out.output
        return [records.read_status(t) for t in records.trials_dir(results / name).iterdir()]

    from bsweep.sweep.workers import worker_pool

    first = sweep("one")
    workers = set(worker_pool(2)._processes)  # the pool's worker pids (a stdlib attribute)
    second = sweep("two")
    assert os.getpid() not in workers and len(workers) == 2
    assert {s["pid"] for s in first} | {s["pid"] for s in second} <= workers
    assert len({s["sweep"] for s in first}) == len({s["sweep"] for s in second}) == 1
    assert {s["sweep"] for s in first} != {s["sweep"] for s in second}
    monkeypatch.chdir(tmp_path)
    third = sweep("three")
    assert not {s["pid"] for s in third} & workers


def _server_pid() -> int | None:
    """The running fork server's pid (multiprocessing keeps it in a private attribute)."""
    import multiprocessing.forkserver

    return multiprocessing.forkserver._forkserver._forkserver_pid


@pytest.mark.skipif(sys.platform != "linux", reason="workers fork from a server on Linux only")
def test_workers_fork_from_the_preloaded_server_and_see_this_processs_environment(monkeypatch):
    # Each worker is a fork of one server that imported torch and the engine, not a fresh
    # interpreter importing them again; a variable set after that server started still reaches
    # the workers, as it reaches spawned ones (the server starts again with it).
    from bsweep.sweep import workers

    workers.start_server()
    monkeypatch.setenv("BSWEEP_TEST_VARIABLE", "set after the server started")
    pool = workers.worker_pool(2)
    parents = {pool.submit(os.getppid).result() for _ in range(4)}
    assert parents == {_server_pid()} and os.getpid() not in parents
    assert pool.submit(os.getenv, "BSWEEP_TEST_VARIABLE").result() == "set after the server started"


@pytest.mark.slow
def test_where_workers_cannot_fork_from_a_server_they_spawn(monkeypatch):
    # macOS and Windows: each worker a fresh interpreter of this process's, as before the server
    from bsweep.sweep import workers

    monkeypatch.setattr(workers, "forks_from_server", lambda: False)
    monkeypatch.setenv("BSWEEP_TEST_VARIABLE", "spawned")  # a new pool, whatever ran before
    pool = workers.worker_pool(2)
    assert {pool.submit(os.getppid).result() for _ in range(4)} == {os.getpid()}
    assert pool.submit(os.getenv, "BSWEEP_TEST_VARIABLE").result() == "spawned"


@pytest.mark.skipif(sys.platform != "linux", reason="workers fork from a server on Linux only")
def test_bsweep_sweep_stops_the_server_when_no_worker_will_fork_from_it(results, monkeypatch):
    # `bsweep sweep ... hydra/launcher=bsweep_fused` starts the server before it has composed
    # anything (its imports overlap the planning); bad input and Hydra's print-only flags stop
    # it, and so does a sweep whose launcher runs no workers here (a server an earlier sweep of
    # this process started), so nothing goes on computing for a sweep that trains nothing there.
    from bsweep.sweep import workers

    started, start = [], workers.start_server
    monkeypatch.setattr(workers, "start_server", lambda: (started.append(True), start())[1])
    monkeypatch.setattr("bsweep.placement.cores", lambda: 2)  # the early start wants 2+ cores
    fused = [*TINY, f"results_dir={results}", "hydra/launcher=bsweep_fused", "hydra.launcher.n_jobs=2"]
    for argv, code in ([[*fused, "batch_size=0"], 2], [[*fused, "--cfg", "job"], 0]):
        started.clear()
        out = runner.invoke(app, ["sweep", *argv])
        assert out.exit_code == code, out.output
        assert started and _server_pid() is None, argv
    start()
    assert _server_pid() is not None
    out = runner.invoke(app, ["sweep", *TINY, f"results_dir={results}"])  # the basic launcher
    assert out.exit_code == 0, out.output
    assert _server_pid() is None


@pytest.mark.slow
def test_noise_tracked_trials_train_alone_in_parallel_workers(results):
    # noise tracking needs one model's gradients: each trial trains alone, but in the worker
    # processes, two at a time, not one by one in the launching process
    out = runner.invoke(app, ["sweep", *TINY, f"results_dir={results}", "hydra/launcher=bsweep_fused",
                              "hydra.launcher.n_jobs=2", "norm=batch", "lr=0.05,0.1", "noise.enabled=true",
                              "noise.b_small=8", "noise.b_big=64"])
    assert out.exit_code == 0, out.output
    study = results / "smoke"
    found = envs(study)
    assert len(found) == 4 and {e["fused_width"] for e in found} == {1}
    assert os.getpid() not in {e["pid"] for e in found}  # in the workers, not one by one here
    assert {e["parallel_jobs"] for e in found} == {2}
    measurements = load_measurements(study)
    assert measurements["noise_scale"].notna().any()


@pytest.mark.slow
def test_submitit_local_runs_jobs_as_separate_processes_into_the_same_study(results, tmp_path, monkeypatch):
    # A relative results_dir, as users write it: jobs run in their own processes and still
    # write into the study folder under the directory the sweep was started from.
    monkeypatch.chdir(tmp_path)
    out = runner.invoke(app, ["sweep", *TINY, "results_dir=results", "norm=batch",
                              "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5"])
    assert out.exit_code == 0, out.output
    study = tmp_path / "results" / "smoke"
    trials = load_trials(study)
    assert len(trials) == 2 and set(trials["status"]) == {"complete"}
    assert os.getpid() not in {e["pid"] for e in envs(study)}
    assert {e["parallel_jobs"] for e in envs(study)} == {2}
    assert (study / "hydra" / "multirun").is_dir()  # submitit's own logs stay in the study
    assert "2 trained by this run" in out.output
    assert runner.invoke(app, ["collect", str(study)]).exit_code == 0


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two or more GPUs")
def test_parallel_trials_use_different_gpus(results):
    out = runner.invoke(app, ["sweep", *TINY, f"results_dir={results}", "hydra/launcher=joblib",
                              "hydra.launcher.n_jobs=2", "device=auto"])
    assert out.exit_code == 0, out.output
    assert {e["device"] for e in envs(results / "smoke")} == {"cuda:0", "cuda:1"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_parallel_trials_can_share_one_gpu(results):
    out = runner.invoke(app, ["sweep", *TINY, f"results_dir={results}", "hydra/launcher=joblib",
                              "hydra.launcher.n_jobs=2", "device=auto"])
    assert out.exit_code == 0, out.output
    assert all(e["device"].startswith("cuda") for e in envs(results / "smoke"))


# --- the lease-file fallback (filesystems without working locks) --------------------------------


@pytest.fixture
def lease_files(monkeypatch):
    monkeypatch.setenv(records.LOCK_ENV, "file")


def test_lease_file_is_exclusive_and_released(tmp_path, lease_files):
    held = records.lease(tmp_path / "t")
    assert held is not None and held.mode == "file"
    assert records.lease(tmp_path / "t") is None
    held.release()
    assert not (tmp_path / "t" / records.LEASE_FILE).exists()
    assert records.lease(tmp_path / "t") is not None


def test_a_lease_file_of_a_dead_process_is_taken_over(tmp_path, lease_files):
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout)
    tdir = tmp_path / "t"
    tdir.mkdir()
    (tdir / records.LEASE_FILE).write_text(json.dumps({"pid": dead, "host": records.HOST}))
    held = records.lease(tdir)
    assert held is not None
    assert json.loads((tdir / records.LEASE_FILE).read_text())["pid"] == os.getpid()


def test_a_lease_file_from_another_host_is_stale_only_after_its_heartbeat_stops(tmp_path, lease_files):
    tdir = tmp_path / "t"
    tdir.mkdir()
    path = tdir / records.LEASE_FILE
    path.write_text(json.dumps({"pid": 1, "host": "node-17.cluster"}))
    assert records.lease(tdir) is None  # fresh heartbeat (mtime): a live owner elsewhere
    old = time.time() - records.STALE_SECONDS - 5
    os.utime(path, (old, old))
    assert records.lease(tdir) is not None  # heartbeat stopped: taken over


def test_a_sweep_works_with_lease_files(results, lease_files):
    out = runner.invoke(app, ["sweep", *TINY, f"results_dir={results}", "norm=batch"])
    assert out.exit_code == 0, out.output
    for tdir in records.trials_dir(results / "smoke").iterdir():
        assert records.is_finished(tdir) and not (tdir / records.LEASE_FILE).exists()


def _jobs(overrides: list[str]):
    from omegaconf import OmegaConf

    from bsweep.plan import expand, fusion_key
    from bsweep.sweep.executor import Job

    groups: dict = {}
    for i, p in enumerate(expand(overrides)):
        job = Job(i, p.overrides, OmegaConf.to_container(p.config, resolve=True))
        groups.setdefault(fusion_key(job.config), []).append(job)
    return list(groups.values())


def test_a_group_that_would_outlast_the_other_workers_is_split_and_the_costliest_go_first():
    from bsweep.sweep.executor import balance, cost

    lone = _jobs(["data=mnist1d", "batch_size=1", "lr=0.01,0.03,0.1", "seed=0,1", "study.budget.epochs=1"])
    assert [len(g) for g in balance(lone, 1)] == [6]
    assert [len(g) for g in balance(lone, 2)] == [3, 3]  # two workers: neither idles
    assert [len(g) for g in balance(lone, 4)] == [2, 2, 1, 1]
    grid = _jobs(["data=mnist1d", "batch_size=1,4,16", "lr=0.01,0.03,0.1", "seed=0,1", "study.budget.epochs=1"])
    order = balance(grid, 2)
    assert [len(g) for g in order] == [6, 6, 6]  # each fits the fair share: no narrower fusion
    assert [g[0].config["batch_size"] for g in order] == [1, 4, 16]  # costliest first
    assert cost(order[0]) > cost(order[1]) > cost(order[2])


def test_a_study_of_many_groups_is_not_split_to_pack_tighter():
    from bsweep.sweep.executor import balance

    groups = _jobs(["study=claims_quick"])
    assert len(groups) == 12 and [len(g) for g in balance(groups, 2)] == [12] * 12


def test_a_group_wider_than_its_width_trains_one_chunk_and_hands_the_others_back(results):
    # perf.fuse=1: one member per chunk. The worker trains the first and returns the other two
    # untrained, for whichever worker is free next (run_jobs queues them by predicted cost).
    from bsweep.sweep.executor import train_group

    [group] = _jobs([*TINY, f"results_dir={results}", "norm=batch", "batch_size=16", "lr=0.01,0.05,0.1",
                     "perf.fuse=1"])
    out, rest = train_group(group, 1, 0, {})
    assert list(out) == [group[0].index] and out[group[0].index]["status"] == "complete"
    assert [[job.index for job in chunk] for chunk in rest] == [[group[1].index], [group[2].index]]
    again, none = train_group(rest[0], 1, 1, {}, width=1)
    assert list(again) == [group[1].index] and none == []
    trials = load_trials(results / "smoke").set_index("trial_id")["status"]
    assert sorted(trials) == ["complete", "complete"]  # the third is not leased until it trains


@pytest.mark.slow
def test_two_workers_share_one_groups_chunks_and_each_trial_trains_once(results):
    # ~1 s of training a chunk: one worker must not drain all five before the other has started
    # (~4-5 s of imports on the 2-core AVX2 CPU); at 1 epoch it did once trials alone stopped
    # importing torch._dynamo
    out = runner.invoke(app, ["sweep", *TINY, f"results_dir={results}", "hydra/launcher=bsweep_fused",
                              "hydra.launcher.n_jobs=2", "norm=batch", "batch_size=16",
                              "lr=0.01,0.02,0.05,0.1,0.2", "perf.fuse=1", "study.budget.epochs=60"])
    assert out.exit_code == 0, out.output
    study = results / "smoke"
    assert sorted(load_trials(study)["status"]) == ["complete"] * 5
    assert len({e["pid"] for e in envs(study)}) == 2
    for tdir in records.trials_dir(study).iterdir():  # one lease each: nobody trained a trial twice
        assert len((tdir / "claims.jsonl").read_text().splitlines()) == 1


def test_the_fused_launcher_takes_the_plans_configs_and_they_are_the_ones_hydra_composes(results, tmp_path, monkeypatch):
    # `bsweep sweep` composed every job while planning; the launcher reuses those configs. The
    # same sweep with the launcher composing each job through Hydra writes the same trials.
    from bsweep import plan

    taken, planned_configs = [], plan.planned_configs

    def counting(jobs, hydra_cfg):
        cfgs = planned_configs(jobs, hydra_cfg)
        taken.extend(cfg is not None for cfg in cfgs)
        return cfgs

    def written(where: Path) -> dict[str, str]:
        return {t.name: (t / "config.yaml").read_text() for t in records.trials_dir(where / "smoke").iterdir()}

    sweep = [*TINY, "hydra/launcher=bsweep_fused", "lr=0.05,0.1"]
    monkeypatch.setattr(plan, "planned_configs", counting)
    out = runner.invoke(app, ["sweep", *sweep, f"results_dir={results}"])
    assert out.exit_code == 0, out.output
    assert taken and all(taken)
    monkeypatch.setattr(plan, "planned_configs", lambda jobs, _: [None] * len(jobs))
    out = runner.invoke(app, ["sweep", *sweep, f"results_dir={tmp_path / 'again'}"])
    assert out.exit_code == 0, out.output
    mine, hydras = written(results), written(tmp_path / "again")
    assert len(mine) == 8
    assert {k: v.replace(str(results), "R") for k, v in mine.items()} == \
        {k: v.replace(str(tmp_path / "again"), "R") for k, v in hydras.items()}
