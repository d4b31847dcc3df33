"""Plan, validate, then hand the user's overrides to Hydra's own entry, and watch the study folder
(`bsweep.sweep.progress.Watcher`).

Progress is read from the trial records on disk, not from the jobs, so the bar, the failure lines
and the final summary are right for any launcher (in-process, joblib processes, submitit jobs on
a cluster that shares the filesystem) and when another sweep works on the same study at once.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from bsweep import records
from bsweep.sweep.bracket import ONE_STUDY, settings_problems
from bsweep.sweep.executor import cost
from bsweep.interrupt import stop_on_signals
from bsweep.placement import PARALLEL_ENV, cores, launcher_jobs, threads_for
from bsweep.sweep.progress import ENDED, Watcher, status_of, trial_folder
from bsweep.plan import (PLAN_ENV, PlannedTrial, compose_base, expand, fusion_key, parse_command_line, single,
                         structured_all, study_dir, write_plan)
from bsweep.validate import ConfigError, check_all, check_keys, explain



@dataclass
class SweepOutcome:
    planned: list[PlannedTrial]
    states: dict[str, str]  # trial_id -> state after the run
    hydra_exit: int  # Hydra's exit code (non-zero: Hydra itself reported an error)
    before: dict[str, str] = field(default_factory=dict)  # trial_id -> state before the run
    status: dict[str, dict] = field(default_factory=dict)  # trial_id -> its status record
    sweep_id: str | None = None
    notes: list[str] = field(default_factory=list)  # plan-time warnings (threads, cores)
    bracket: dict | None = None  # the bracketing sweeper's record, when this sweep wrote one
    wall_seconds: float | None = None  # the whole `bsweep sweep`, planning to the last status
    processes: int = 1  # trials (or fused chunks) at once in this machine's processes; 0: in jobs of their own
    # Trials the bracketing sweeper added to the plan (more lrs; `bracket_trials`): counted in
    # `states`, `status` and the summary like the planned ones.
    added: list[PlannedTrial] = field(default_factory=list)
    stopped_by: str | None = None  # the signal (SIGINT, SIGTERM) that stopped the sweep early

    @property
    def time_split(self) -> "TimeSplit | None":
        """Where the wall time of this sweep's training went; None when it trained nothing."""
        if self.wall_seconds is None or not self.trained_here:
            return None
        return time_split([self.status[t] for t in self.trained_here], self.wall_seconds, self.processes)

    @property
    def counts(self) -> Counter:
        return Counter(self.states.values())

    def _by_this_sweep(self, tid: str) -> bool:
        return self.sweep_id is not None and self.status.get(tid, {}).get("sweep") == self.sweep_id

    @property
    def trained_here(self) -> list[str]:
        """Trials this sweep trained (whatever their end)."""
        return [t for t, s in self.states.items() if s in ENDED and self._by_this_sweep(t)]

    @property
    def finished_before(self) -> list[str]:
        return [t for t, s in self.before.items() if s in records.FINISHED]

    @property
    def ended_elsewhere(self) -> list[str]:
        """Trials another process (another sweep) ended while this sweep ran."""
        return [t for t, s in self.states.items() if s in ENDED and t not in self.finished_before
                and not self._by_this_sweep(t)]

    @property
    def running_elsewhere(self) -> list[str]:
        return [t for t, s in self.states.items() if s == "running"]

    @property
    def failures(self) -> list[PlannedTrial]:
        """Planned trials that did not end as a result: failed, oom, damaged, interrupted, new."""
        return [p for p in [*self.planned, *self.added]
                if self.states[p.trial_id] not in (*records.FINISHED, "running")]

    @property
    def ok(self) -> bool:
        return self.hydra_exit == 0 and not self.failures


def _as_config_error(fn, *args):
    """Run fn; turn Hydra's and OmegaConf's composition errors into one clear ConfigError."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return fn(*args)
    except ConfigError:
        raise
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(explain(e)) from None
    except ValueError as e:  # plan's "only discrete sweeps" and friends
        raise ConfigError(str(e)) from None


def check_config_dirs(argv: list[str]) -> None:
    """Raise ConfigError for a --config-dir that is not a folder: Hydra's composition only
    warns about it, and its multirun then fails with a message of its own."""
    missing = [d for d in parse_command_line(argv).config_dirs if not Path(d).is_dir()]
    if missing:
        raise ConfigError(f"--config-dir {missing[0]}: no such folder (it names a folder of your "
                          f"own configs, e.g. DIR/study/mine.yaml for study=mine)")


# The values Hydra's --cfg and --info take (`--cfg job`), which are not overrides.
PRINT_VALUES = ("job", "hydra", "all", "config", "defaults", "defaults-tree", "plugins", "searchpath")


def check_composes(argv: list[str]) -> None:
    """Raise ConfigError where `argv` does not compose (a missing --config-dir, an unknown key
    or option): for Hydra's print-only flags (--cfg), so a mistake reads as every other one."""
    check_config_dirs(argv)
    argv = [a for i, a in enumerate(argv)
            if not (i and argv[i - 1] in ("--cfg", "-c", "--info", "-i") and a in PRINT_VALUES)]
    _as_config_error(compose_base, argv)


def plan_and_check(overrides: list[str], base: DictConfig | None = None) -> list[PlannedTrial]:
    """Expand the grid and validate every trial (raises ConfigError); `base`: as for `expand`."""
    check_config_dirs(overrides)
    planned = _as_config_error(expand, overrides, base)
    check_planned(planned)
    return planned


def check_planned(planned: list[PlannedTrial]) -> None:
    """Raise ConfigError for every problem of the planned trials: keys the schema lacks, bad
    values, and, where they name one, a model or dataset of the user's own that does not load,
    build or fit its data (tried once here, `bsweep.sweep.preflight`)."""
    check_keys([OmegaConf.to_container(p.config, resolve=False) for p in planned])
    configs = _as_config_error(lambda: structured_all([p.config for p in planned]))
    check_all(configs)
    if any(c.model.target is not None or c.data.target is not None for c in configs):
        from bsweep.sweep.preflight import check_targets  # torch and the user's code: only for them

        check_targets(configs)


def write_study_file(planned: list[PlannedTrial], overrides: list[str]) -> None:
    """study.yaml: the study node, the grid (values per swept key) and the launching command."""
    grid: dict[str, list[str]] = {}
    for p in planned:
        for o in p.overrides:
            key, _, value = o.partition("=")
            grid.setdefault(key, [])
            if value not in grid[key]:
                grid[key].append(value)
    swept = {k: v for k, v in grid.items() if len(v) > 1}
    first = OmegaConf.to_container(planned[0].config, resolve=True)
    for sdir in sorted({study_dir(p.config) for p in planned}):
        records.write_yaml(
            sdir / records.STUDY_FILE,
            {"study": first["study"], "grid": swept, "n_trials": len(planned),
             "command": "bsweep sweep " + " ".join(overrides), "config": first},
        )


# What makes trials of one study comparable as the same experiment: a sweep that adds trials
# differing here from everything the study holds says so (`mixing_notes`).
MIXING_NODES = ("model", "data", "optim")


def _mixing_values(config: dict | DictConfig) -> dict[str, str]:
    """{dotted key: value as text} of a config's MIXING_NODES, as its trial id sees them (paths
    and runtime keys left out), less the keys its study tunes as nuisance (`study.nuisance`)."""
    from bsweep.config import flatten
    from bsweep.plan import trial_identity

    identity = trial_identity(config)
    nuisance = set((identity.get("study") or {}).get("nuisance") or [])
    if isinstance(config, DictConfig):
        nuisance |= set(OmegaConf.select(config, "study.nuisance", default=None) or [])
    values = flatten({k: identity[k] for k in MIXING_NODES if k in identity})
    return {k: str(v) for k, v in values.items() if k not in nuisance}


def mixing_note(study: str, there: list[dict[str, str]], new: list[dict[str, str]]) -> str | None:
    """The line to print when the `new` trials' model, data or optimizer keys (`_mixing_values`)
    take a value that none of the study's trials (`there`) has, on a key the study holds
    constant so far (a key it already varies is a grid being extended); None otherwise."""
    if not there or not new:
        return None
    held = {}
    for values in there:
        for k, v in values.items():
            held.setdefault(k, set()).add(v)
    keys = sorted({k for values in new for k in values} | set(held))
    differ = [k for k in keys if len(held.get(k, ())) <= 1
              and {values.get(k, "unset") for values in new} - held.get(k, {"unset"})]
    if not differ:
        return None
    shown = differ[:3] + (["..."] if len(differ) > 3 else [])

    def side(group: list[dict[str, str]]) -> str:
        return ", ".join(k if k == "..." else f"{k}={'/'.join(sorted({v.get(k, 'unset') for v in group}))}"
                         for k in shown)

    key = differ[0]
    first = sorted({v.get(key, "unset") for v in new} - held.get(key, {"unset"}))[0]
    try:  # a number reads better with its key: smoke-width16
        float(first)
        first = key.rpartition(".")[2] + first
    except ValueError:  # a name or import path: its last part, smoke-custom
        first = first.rpartition(".")[2]
    suffix = "".join(c if c.isalnum() or c in "-_." else "-" for c in first)[:24] or "other"
    return (f"{study} holds {side(there)}; this sweep adds {side(new)}, which the report will compare "
            f"as a scientific key. To keep them apart: study.name={Path(study).name}-{suffix}")


def mixing_notes(planned: list[PlannedTrial]) -> list[str]:
    """`mixing_note` for each study folder the plan adds trials to, read from the config.yaml of
    the trials it holds (a damaged one is left out)."""
    notes = []
    for sdir in sorted({study_dir(p.config) for p in planned}):
        new = [p for p in planned if study_dir(p.config) == sdir and not trial_folder(p).exists()]
        there = []
        folders = sorted(records.trials_dir(sdir).iterdir()) if records.trials_dir(sdir).is_dir() and new else []
        for tdir in folders:
            try:
                there.append(_mixing_values(records.read_yaml(tdir / records.CONFIG_FILE)))
            except records.DamagedRecord:
                continue
        note = mixing_note(str(sdir), there, [_mixing_values(p.config) for p in new])
        notes += [note] if note else []
    return notes


def trial_states(planned: list[PlannedTrial]) -> dict[str, str]:
    return {p.trial_id: records.trial_state(trial_folder(p)) for p in planned}


def env_overrides(env: dict[str, str]) -> list[str]:
    """`hydra.job.env_set` overrides for `env`, each value quoted: Hydra's grammar reads an
    unquoted value by its look, so a sweep id such as 1234e5678901 arrived as "inf" (a float)
    and 012345678901 as 12345678901 (an int)."""
    return [f"++hydra.job.env_set.{k}='{v}'" for k, v in env.items()]


def call_hydra(argv: list[str], env: dict[str, str] | None = None) -> int:
    """Run bsweep's @hydra.main entry with `argv` as its command line; return its exit code.

    `env` reaches every job through Hydra's own `hydra.job.env_set` (set while the job runs,
    whatever the launcher: in-process, a reused joblib worker, a submitit job on a cluster node);
    added after the user's overrides, which stay untouched.
    """
    from bsweep.app import main as hydra_main

    extra = env_overrides(env or {})
    saved_argv = sys.argv
    sys.argv = ["bsweep", *argv, *extra]
    try:
        hydra_main()
        return 0
    except SystemExit as e:  # Hydra reports its own errors, then exits
        return e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = saved_argv


def planned_costs(planned: list[PlannedTrial]) -> dict[str, float]:
    """trial_id -> its predicted seconds (`bsweep.sweep.executor`), predicted once per fusion group (its
    members cost the same); only the ratios weigh the progress display's time left."""
    groups: dict[str, list[PlannedTrial]] = {}
    for p in planned:
        groups.setdefault(fusion_key(p.config), []).append(p)
    costs = {}
    for members in groups.values():
        try:
            seconds = cost(members[:1])
        except Exception:  # a display must never stop a sweep: weigh this group as an average one
            seconds = float("nan")
        costs.update((m.trial_id, seconds) for m in members)
    known = [c for c in costs.values() if c == c]
    fill = sum(known) / len(known) if known else 1.0
    return {t: c if c == c else fill for t, c in costs.items()}


def hydra_node(base: DictConfig) -> dict:
    """The `hydra` node of a `compose_base` result (launcher, sweeper), unresolved."""
    return OmegaConf.to_container(base.hydra, resolve=False)


def sweeper_problems(sweeper: dict, planned: list[PlannedTrial]) -> list[str]:
    """What the bracketing sweeper (`hydra/sweeper=bsweep_bracket`) cannot run with."""
    if not str(sweeper.get("_target_", "")).endswith(".BsweepBracketSweeper"):
        return []
    problems = settings_problems(sweeper.get("lr_min"), sweeper.get("lr_max"), sweeper.get("max_rounds"),
                                 sweeper.get("criteria") or [])
    if len({study_dir(p.config) for p in planned}) > 1:
        problems.append(ONE_STUDY)
    return problems


def launcher_problems(launcher: dict) -> list[str]:
    """What the `bsweep_fused` launcher's backend cannot run with (`hydra.launcher.backend`)."""
    if not is_fused(launcher):
        return []
    from bsweep.sweep.backends import backend_problems

    return backend_problems(launcher)


def placement_notes(launcher: dict, planned: list[PlannedTrial], n_to_run: int) -> tuple[int, list[str]]:
    """(trials at once on this machine, warnings about cores) for the launcher the overrides pick."""
    n_cores = cores()
    jobs = launcher_jobs(launcher, n_cores, max(1, n_to_run))
    notes = []
    if jobs > n_cores:
        notes.append(f"{jobs} trials at once on {n_cores} CPU cores: they will share cores, so "
                     f"measured seconds grow (steps and accuracy do not)")
    asked = {p.config.threads for p in planned}
    for t in sorted(asked, key=lambda x: -1 if x is None else x):
        got = threads_for(t, jobs, n_cores)
        if t is None or got < t:
            notes.append(f"threads={t if t is not None else 'null'} with {jobs} trial(s) at once on "
                         f"{n_cores} cores: each trial runs {got} torch thread(s)")
    if is_fused(launcher):
        for target in sorted({str(p.config.model._target_) for p in planned if "_target_" in p.config.model}):
            notes.append(f"model._target_={target} is fused by torch.func.vmap where that stays exact and "
                         f"measures faster (no BatchNorm running statistics, weight norm or dropout); "
                         f"otherwise one model per trial (docs/custom.md)")
    return jobs, notes


def _settle(planned: list[PlannedTrial], states: dict[str, str]) -> dict[str, str]:
    """Re-read trials that look new or interrupted for a moment: another sweep may have taken
    the lease of one and not yet written its `running` status."""
    for _ in range(4):
        odd = [p for p in planned if states[p.trial_id] in ("new", "interrupted")]
        if not odd:
            break
        time.sleep(0.5)
        for p in odd:
            states[p.trial_id] = records.trial_state(trial_folder(p))
    return states


def _ours_ended(states: dict[str, str], status: dict[str, dict], sweep_id: str) -> dict[str, str]:
    """After Hydra returned, none of this sweep's jobs trains any more: a trial still `running`
    for this sweep (a job that crashed past the runner, a reused worker process still alive) was
    interrupted, not running elsewhere."""
    return {t: "interrupted" if s == "running" and status[t].get("sweep") == sweep_id else s
            for t, s in states.items()}


def ready_server(launcher: dict) -> bool:
    """Start the process the `bsweep_fused` launcher's workers will fork from, when it will run
    several here and they fork (`workers.start_server`), and say whether it did; otherwise stop
    one that runs (`bsweep sweep` starts it before it knows the launcher). Its imports (torch)
    overlap this process's planning and validation, which must end before any worker starts."""
    from bsweep.sweep import workers

    if fused_workers(launcher) > 1 and workers.forks_from_server():
        workers.start_server()
        return True
    workers.stop_server()
    return False


def stop_server() -> None:
    from bsweep.sweep import workers

    workers.stop_server()


def start_workers(launcher: dict) -> None:
    """Start the `bsweep_fused` launcher's worker processes now, when it will run several: where
    they spawn, their start-up (`import torch`) overlaps Hydra's own start and the launcher's
    list of jobs. The launcher takes the pool that is running."""
    workers = fused_workers(launcher)
    if workers > 1:
        from bsweep.sweep.workers import worker_pool

        worker_pool(workers)


def is_fused(launcher: dict) -> bool:
    """Whether the launcher is `bsweep_fused` (whatever its backend)."""
    return str(launcher.get("_target_", "")).endswith("BsweepFusedLauncher")


def local_processes(launcher: dict, jobs: int) -> int:
    """The processes on this machine that train a sweep's trials (`jobs` at once, or the fused
    launcher's workers); 0 where they train in jobs of their own (Hydra's submitit launchers,
    the fused launcher's submitit and ray backends), whose start-up a sweep does not see."""
    if is_fused(launcher):
        return fused_workers(launcher)
    return 0 if "submitit_launcher" in str(launcher.get("_target_", "")) else jobs


def fused_workers(launcher: dict) -> int:
    """The `bsweep_fused` launcher's process count on this machine (1: it trains in this
    process); 0 for any other launcher, and for its submitit and ray backends."""
    if not is_fused(launcher) or launcher.get("backend", "local") != "local":
        return 0
    from bsweep.sweep.workers import workers_for

    return workers_for(launcher.get("n_jobs"))


@dataclass
class TimeSplit:
    wall: float  # seconds
    processes: int
    chunks: int  # trained models: a fused chunk, or a trial alone
    train: float  # training seconds summed over the chunks
    evaluation: float  # evaluation seconds summed over the chunks

    @property
    def rest_per_process(self) -> float:
        """Seconds of each process's wall time outside training and evaluation: start-up,
        planning, data, probes, width search, building models, warm-up, records, idle (NaN for
        trials in jobs of their own)."""
        if not self.processes:
            return float("nan")
        return (self.processes * self.wall - self.train - self.evaluation) / self.processes

    def line(self) -> str:
        head = (f"time: {self.wall:.1f} s; training {self.train:.1f} s and evaluation {self.evaluation:.1f} s "
                f"summed over {self.chunks} trained models")
        if not self.processes:  # submitit jobs, Ray tasks: their start-up is not seen from here
            return head + " in jobs of their own"
        return (f"{head} in {self.processes} process(es); "
                f"the rest {self.rest_per_process:.1f} s a process (start-up, set-up, records, idle)")


def time_split(statuses: list[dict], wall_seconds: float, processes: int) -> TimeSplit:
    """Training and evaluation seconds of finished trials' status records, each fused chunk
    counted once (its members share one clock: the same process, the same `fused_with`)."""
    chunks: dict[tuple, tuple[float, float]] = {}
    for i, s in enumerate(statuses):
        if s.get("train_seconds") is None:
            continue
        key = (s.get("pid"), tuple(sorted(s["fused_with"]))) if s.get("fused_with") else ("alone", i)
        chunks[key] = (float(s["train_seconds"]), float(s.get("eval_seconds") or 0.0))
    return TimeSplit(wall_seconds, max(0, processes), len(chunks), sum(t for t, _ in chunks.values()),
                     sum(e for _, e in chunks.values()))


def run_sweep(overrides: list[str], console: Console | None = None) -> SweepOutcome:
    """`bsweep sweep`: plan + validate, then Hydra multirun with the overrides untouched."""
    console = console or Console()
    started = time.time()
    check_config_dirs(overrides)
    try:  # composed once: the launcher and sweeper are read here, and the plan starts from it
        base = compose_base(overrides)
    except Exception:  # a malformed override, a missing group: plan_and_check says so below, as always
        base = None
    forked = base is not None and ready_server(hydra_node(base)["launcher"])
    try:
        planned = plan_and_check(overrides, base)
        hydra = hydra_node(base if base is not None else _as_config_error(compose_base, overrides))
        problems = sweeper_problems(hydra["sweeper"], planned) + launcher_problems(hydra["launcher"])
        if problems:
            raise ConfigError("\n".join(problems))
    except BaseException:
        stop_server()  # bad input: no worker will come, and nothing may go on computing
        raise
    before = trial_states(planned)
    counts = Counter(before.values())
    finished = counts["complete"] + counts["diverged"]
    jobs, notes = placement_notes(hydra["launcher"], planned, len(planned) - finished)
    notes += mixing_notes(planned)
    redo = {s: n for s, n in counts.items() if s in ("failed", "oom", "damaged", "interrupted")}
    console.print(
        f"study {planned[0].config.study.name}: {len(planned)} trials, "
        f"{finished} already finished, {len(planned) - finished} to run"
        + (f" ({', '.join(f'{n} {s}' for s, n in sorted(redo.items()))} to redo)" if redo else "")
        + (f", {jobs} at a time" if jobs > 1 else ""),
        highlight=False,
    )
    for note in notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    write_study_file(planned, overrides)
    if finished == len(planned):
        stop_server()
    elif not forked:  # forked workers are made when the launcher asks, by then the server is ready
        start_workers(hydra["launcher"])
    sweep_id = uuid.uuid4().hex[:12]
    since = time.time()
    todo = [p for p in planned if before[p.trial_id] not in records.FINISHED]
    plan_path = plan_file(planned, sweep_id)
    write_plan(plan_path, planned, overrides, base if base is not None else compose_base(overrides))
    watcher = Watcher(planned, todo, console, since, planned_costs(todo))
    watcher.start()
    try:
        with stop_on_signals(fresh=True) as stop:  # Ctrl-C: trials checkpoint and end, none start
            code = call_hydra(["-m", *overrides], {records.SWEEP_ENV: sweep_id, PARALLEL_ENV: str(jobs),
                                                   PLAN_ENV: str(plan_path)})
    finally:
        watcher.stop.set()
        watcher.join()
        plan_path.unlink(missing_ok=True)
    states = trial_states(planned)
    if stop.signal_name is None:  # stopped: nobody is about to take a lease
        states = _settle(planned, states)
    status = {p.trial_id: status_of(p) for p in planned}
    bracket = records.read_bracket_record(study_dir(planned[0].config))
    if bracket is not None and bracket.get("time", 0) < since:
        bracket = None  # an earlier sweep's
    added = bracket_trials(bracket, planned)
    states.update(trial_states(added))
    status.update({p.trial_id: status_of(p) for p in added})
    # an added trial a rerun found finished (the sweeper asks for it again) was finished before
    before.update({p.trial_id: states[p.trial_id] for p in added if status[p.trial_id].get("time", since) < since})
    return SweepOutcome(planned, _ours_ended(states, status, sweep_id), code, before, status,
                        sweep_id, notes, bracket, time.time() - started, local_processes(hydra["launcher"], jobs),
                        added, stop.signal_name)


def plan_file(planned: list[PlannedTrial], sweep_id: str) -> Path:
    """Where a sweep hands its plan to Hydra's sweeper and launcher (`bsweep.plan.write_plan`):
    the first study's hydra folder, absolute (jobs may run elsewhere); removed when Hydra returns."""
    return (study_dir(planned[0].config) / "hydra" / f"plan-{sweep_id}.json").absolute()


def bracket_trials(record: dict | None, planned: list[PlannedTrial]) -> list[PlannedTrial]:
    """The trials the bracketing sweeper's `record` says it added beyond `planned`, each with
    its job's overrides and the config it trained with (its folder's config.yaml; the study's
    first planned config where that is missing, which locates its folder all the same)."""
    known, added = {p.trial_id for p in planned}, []
    sdir = study_dir(planned[0].config)
    for r in (record or {}).get("rounds", []):
        ids = r.get("trial_ids", [])
        for tid, overrides in zip(ids, r.get("trial_overrides") or [[] for _ in ids]):
            if tid in known:
                continue
            known.add(tid)
            path = records.trial_dir(sdir, tid) / records.CONFIG_FILE
            try:
                config = OmegaConf.load(path)
            except (OSError, ValueError):
                config = planned[0].config
            added.append(PlannedTrial(list(overrides), config, tid))
    return added


def run_one(overrides: list[str]) -> SweepOutcome:
    """`bsweep run`: one trial at the configured point (no grid)."""
    check_config_dirs(overrides)
    planned = [_as_config_error(single, overrides)]
    check_planned(planned)
    before = trial_states(planned)
    sweep_id = uuid.uuid4().hex[:12]
    with stop_on_signals(fresh=True) as stop:
        code = call_hydra(overrides, {records.SWEEP_ENV: sweep_id, PARALLEL_ENV: "1"})
    states = trial_states(planned)
    status = {p.trial_id: status_of(p) for p in planned}
    return SweepOutcome(planned, _ours_ended(states, status, sweep_id), code, before, status, sweep_id,
                        stopped_by=stop.signal_name)


def study_dirs_of(planned: list[PlannedTrial]) -> list[Path]:
    return sorted({study_dir(p.config) for p in planned})
