"""bsweep's command line: each command parses its arguments and calls one function below it."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:  # the CLI starts without pandas; commands import it when they need it
    import pandas as pd

app = typer.Typer(
    help="Batch-size studies for small CNNs: sweep batch size x learning rate x normalization "
    "with Hydra, then read time-to-accuracy and final accuracy off the results.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# A flag takes no value, so --help shows no type for it; typer (0.2x) labels each `<bool>`.
_option_type = getattr(typer.core.TyperOption, "display_type_rich", None)
if _option_type is not None:
    def _flag_type(self, ctx) -> Optional[str]:
        return None if self.is_flag else _option_type(self, ctx)

    typer.core.TyperOption.display_type_rich = _flag_type
# Rich draws 80 columns when output is not a terminal; tables of trials need more to stay legible.
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

# Commands that take Hydra overrides accept anything after them (`key=value`, `-m`,
# `--config-dir DIR`, `hydra/launcher=joblib`) and pass it to Hydra untouched.
HYDRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}
Overrides = Annotated[
    Optional[list[str]],
    typer.Argument(help="Hydra overrides, e.g. study=claims_quick batch_size=8,64 norm=batch,group", show_default=False),
]


def configs_help(config_dir: Path) -> str:
    """What a command that composes configs can be given, read from `config_dir`: the study
    presets, every other config group with its options, and Hydra's --config-dir and --cfg."""
    groups = {d.name: ", ".join(sorted(p.stem for p in d.glob("*.yaml")))
              for d in sorted(config_dir.iterdir()) if d.is_dir()}
    lines = [f"Study presets (study=NAME): {groups.pop('study', '')}", "", "Config groups (GROUP=OPTION):"]
    lines += [f"  {group}: {options}" for group, options in groups.items()]
    lines += ["", "--config-dir DIR: your own configs, searched before bsweep's "
              "(DIR/study/mine.yaml gives study=mine; docs/custom.md).",
              "--cfg job: print the composed config and train nothing (--cfg hydra: Hydra's, the grid "
              "under hydra.sweeper.params)."]
    return "\n".join(lines)


class _ComposesConfigs(typer.core.TyperCommand):
    """A command that takes Hydra overrides: its --help ends with `configs_help`, read when asked."""

    def format_help(self, ctx, formatter) -> None:
        from bsweep.plan import CONFIG_DIR

        self.epilog = configs_help(CONFIG_DIR)
        super().format_help(ctx, formatter)


StudyDir = Annotated[
    Optional[Path],
    typer.Argument(help="A study folder (results/<study>); default: see each command.", show_default=False),
]
ResultsDir = Annotated[Path, typer.Option("--results-dir", help="Where studies live.")]
Nuisance = Annotated[Optional[list[str]], typer.Option(
    "--nuisance", help="A config key to tune over jointly with lr (repeatable), besides the study's "
    "study.nuisance, e.g. --nuisance optim.momentum.", show_default=False)]


# Every user error starts so: bsweep's own, Hydra's composition errors and typer's usage errors.
ERROR_PREFIX = "error:"


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]{ERROR_PREFIX}[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"bsweep {version('bsweep')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print bsweep's version and exit.")] = False,
) -> None:
    pass  # options of `bsweep` itself; the app's help says what it is


def _user_errors():
    """The exception types that mean a user mistake: shown as one message, no traceback."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from bsweep.validate import ConfigError

    return (ConfigError, HydraException, OmegaConfBaseException)


def _plan_or_fail(fn, overrides: list[str]):
    try:
        return fn(overrides)
    except _user_errors() as e:
        _fail(str(e).strip())


def _hydra_prints_only(argv: list[str]) -> None:
    """`--cfg job`, `--info`, `--hydra-help`...: Hydra prints and trains nothing; let it. Not in
    multirun mode, even for `bsweep sweep`: Hydra refuses --cfg and --info beside --multirun
    (with a traceback); a study's grid lives in hydra.sweeper.params, which --cfg hydra shows."""
    from bsweep.plan import parse_command_line

    if parse_command_line(argv).prints_only:
        from bsweep.sweep.launch import call_hydra, check_composes

        _plan_or_fail(check_composes, argv)  # a mistake: bsweep's one-line error, not Hydra's
        raise typer.Exit(call_hydra(argv))


@app.command(context_settings=HYDRA_ARGS, cls=_ComposesConfigs)
def run(overrides: Overrides = None) -> None:
    """Train one trial at the configured point (no grid)."""
    from bsweep.sweep.launch import run_one

    _hydra_prints_only(overrides or [])
    outcome = _plan_or_fail(run_one, overrides or [])
    _report_outcome(outcome)


@app.command(context_settings=HYDRA_ARGS, cls=_ComposesConfigs)
def sweep(overrides: Overrides = None) -> None:
    """Train the study's grid (Hydra multirun), skipping trials already finished."""
    from bsweep.placement import cores
    from bsweep.sweep.executor import NAME
    from bsweep.sweep.workers import start_server, stop_server

    # The bsweep_fused launcher's workers fork from a server that imports torch; started before
    # this process's own imports and composition, it is ready sooner (docs/performance.md,
    # "Planning and sweeping"). Started here when the command line names that launcher
    # (a config that picks it gets its server after composing, in `run_sweep`, which also
    # stops this one if the launcher runs no workers here). One core: nothing to overlap.
    if cores() > 1 and f"hydra/launcher={NAME}" in (overrides or []):
        start_server()
    try:
        from bsweep.sweep.launch import run_sweep

        _hydra_prints_only(overrides or [])
        outcome = _plan_or_fail(lambda o: run_sweep(o, console), overrides or [])
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once
        stop_server()
        _fail("stopped at once (Ctrl-C): trials that were training are `interrupted` and resume from "
              "their last checkpoint; run the same command again", 130)
    except BaseException:
        stop_server()
        raise
    _report_outcome(outcome)
    _print_next(outcome)


def _print_next(outcome) -> None:
    """The command to run after a sweep that finished: the report of its study (or studies)."""
    import shlex

    from bsweep.sweep.launch import study_dirs_of

    console.print("next: bsweep report " + " ".join(shlex.quote(str(d)) for d in study_dirs_of(outcome.planned)),
                  highlight=False, soft_wrap=True)


def _first_line(text, width: int = 120) -> str:
    line = str(text or "").strip().splitlines()
    return line[0][:width] if line else ""


def _tracebacks_line(tdirs: list[Path], limit: int = 3) -> str:
    """`tracebacks: A/traceback.txt, B/traceback.txt and 2 more` for the trials of `tdirs` that
    have one (a failed or oom trial); empty when none has (an interrupted or damaged trial)."""
    from bsweep import records

    paths = [str(d / records.TRACEBACK_FILE) for d in tdirs if (d / records.TRACEBACK_FILE).is_file()]
    if not paths:
        return ""
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return "tracebacks: " + ", ".join(paths[:limit]) + more


def _report_outcome(outcome) -> None:
    """The sweep's summary: counts by state, who trained what, a table of every trial that did
    not end as a result; exit 1 when any did not (or Hydra stopped)."""
    from bsweep.sweep.progress import grid_points
    from bsweep.plan import study_dir

    label = {"running": "running elsewhere"}
    counts = outcome.counts
    line = ", ".join(f"{n} {label.get(state, state)}" for state, n in sorted(counts.items()))
    who = [f"{len(outcome.trained_here)} trained by this run",
           f"{len(outcome.finished_before)} finished before"]
    if outcome.ended_elsewhere:
        who.append(f"{len(outcome.ended_elsewhere)} ended by another process")
    where = ", ".join(sorted({str(study_dir(p.config)) for p in outcome.planned}))
    added = f" ({len(outcome.planned)} planned, {len(outcome.added)} added by lr bracketing)" if outcome.added else ""
    console.print(f"{len(outcome.states)} trials{added}: {line} ({'; '.join(who)}). Results in {where}",
                  highlight=False)
    split = outcome.time_split
    if split is not None:
        console.print(split.line(), highlight=False)
    if outcome.bracket:
        from bsweep.records import bracket_summary

        console.print(bracket_summary(outcome.bracket), highlight=False)
    if outcome.running_elsewhere:
        owners = sorted({f"{outcome.status[t].get('host')} pid {outcome.status[t].get('pid')}"
                         for t in outcome.running_elsewhere})
        console.print(
            f"note: {len(outcome.running_elsewhere)} trial(s) are being trained by another process "
            f"({', '.join(owners)}); they were not started twice. `bsweep status {where}` shows "
            f"when they end.", highlight=False)
    failures = outcome.failures
    points = grid_points([*outcome.planned, *outcome.added])
    if failures:
        table = Table(title=f"{len(failures)} trial(s) did not finish")
        for col in ("trial", "point", "state", "error"):
            table.add_column(col, overflow="fold")
        for p in failures:
            state = outcome.states[p.trial_id]
            error = outcome.status.get(p.trial_id, {}).get("error")
            if state == "interrupted":
                error = error or "its process died while training (killed, or the machine went down)"
            elif state == "damaged":
                error = error or "its record cannot be read"
            table.add_row(p.trial_id, points[p.trial_id], state, escape(_first_line(error)))
        console.print(table)
        from bsweep.records import trial_dir

        tracebacks = _tracebacks_line([trial_dir(study_dir(p.config), p.trial_id) for p in failures])
        console.print((f"{tracebacks}. " if tracebacks else "") + "Running the same command again "
                      "redoes these trials and keeps the finished ones.", highlight=False, soft_wrap=True)
    if outcome.stopped_by:
        code = 128 + int(getattr(signal, outcome.stopped_by, 2))  # the shell's code for the signal
        _fail(f"stopped by {outcome.stopped_by}: the trials that were training saved a checkpoint and "
              f"are `interrupted`; run the same command again to resume them", code)
    if not outcome.ok:
        if outcome.hydra_exit:
            _fail(f"Hydra stopped with exit code {outcome.hydra_exit} (its message is above)", 1)
        _fail(f"{len(failures)} trial(s) did not finish (table above); `bsweep status` lists them", 1)


@app.command(context_settings=HYDRA_ARGS, cls=_ComposesConfigs)
def plan(overrides: Overrides = None) -> None:
    """Dry run: list the trials a sweep would train and which are already finished."""
    from bsweep.sweep.launch import plan_and_check, trial_states

    planned = _plan_or_fail(plan_and_check, overrides or [])
    states = trial_states(planned)
    table = Table(title=f"study {planned[0].config.study.name}: {len(planned)} trials")
    for col in ("#", "trial", "overrides", "state"):
        table.add_column(col)
    for i, p in enumerate(planned):
        # overrides are user text: `[lr,seed]` is a list, not rich markup
        table.add_row(str(i), p.trial_id, escape(" ".join(p.overrides)), states[p.trial_id])
    console.print(table)
    finished = sum(s in ("complete", "diverged") for s in states.values())
    console.print(f"{finished} finished, {len(planned) - finished} to run")


def _live_states(study: Path, trials):
    """load_trials' status, with `running` split into running (a live owner) and interrupted
    (its process is gone), as the next sweep will see them."""
    from bsweep import records

    trials = trials.copy()
    running = trials["status"] == "running"
    trials.loc[running, "status"] = [
        records.trial_state(records.trial_dir(study, t)) for t in trials.loc[running, "trial_id"]]
    return trials


# States a sweep redoes.
_REDO = ("failed", "oom", "damaged", "interrupted", "new")


# The order statuses are listed in: results first, then what still needs doing.
STATUS_ORDER = ("complete", "diverged", "running", "interrupted", "new", "failed", "oom", "damaged")


def _counts_line(statuses: pd.Series) -> str:
    """`2 complete, 1 failed`, always in STATUS_ORDER (then any other state, alphabetically)."""
    counts = statuses.value_counts()
    order = [s for s in STATUS_ORDER if s in counts] + sorted(set(counts.index) - set(STATUS_ORDER))
    return ", ".join(f"{counts[s]} {s}" for s in order)


@app.command()
def status(study: StudyDir = None, results_dir: ResultsDir = Path("results")) -> None:
    """Counts and a table of trials by status (every study under --results-dir when no STUDY); `interrupted`: stopped mid-trial (it resumes); `damaged`: its record cannot be read. A re-run of the sweep redoes both, and failed and oom trials."""
    import pandas as pd

    from bsweep.analysis.load import load_trials

    if study is None:
        studies = sorted(p.parent for p in results_dir.glob("*/trials"))
        if not studies:
            _fail(f"no studies under {results_dir}/ yet; run `bsweep sweep` first")
        table = Table(title=f"studies in {results_dir}/")
        for col in ("study", "trials", "by status"):
            table.add_column(col)
        for s in studies:
            trials = _live_states(s, load_trials(s))
            table.add_row(s.name, str(len(trials)), _counts_line(trials["status"]))
        console.print(table)
        return
    if not (study / "trials").is_dir():
        _fail(f"{study} is not a study folder (it has no trials/); try `bsweep status`")
    trials = _live_states(study, load_trials(study)).sort_values(
        ["norm", "batch_size", "lr", "seed"], na_position="last")
    console.print(f"{study}: {len(trials)} trials: " + _counts_line(trials["status"]), highlight=False)
    table = Table()
    for col in ("trial", "status", "data", "norm", "batch_size", "lr", "seed", "error"):
        table.add_column(col, overflow="fold")
    for _, r in trials.iterrows():
        cells = ["" if pd.isna(r[c]) else str(r[c]) for c in
                 ("trial_id", "status", "data", "norm", "batch_size", "lr", "seed")]
        table.add_row(*cells, "" if pd.isna(r["error"]) else escape(_first_line(r["error"])))
    console.print(table)
    redo = trials[trials["status"].isin(_REDO)]
    if len(redo):
        from bsweep.records import trial_dir

        tracebacks = _tracebacks_line([trial_dir(study, t) for t in redo["trial_id"]])
        console.print(f"{len(redo)} trial(s) not finished: the next `bsweep sweep` of this study redoes "
                      f"them" + (f"; {tracebacks}" if tracebacks else ""), highlight=False, soft_wrap=True)


def _nuisance_or_fail(keys: Optional[list[str]]) -> list[str]:
    """--nuisance keys, checked like `study.nuisance` (lr and seed are always nuisance)."""
    from bsweep.validate import nuisance_problems

    keys = keys or []
    problems = nuisance_problems(["lr", "seed", *keys])
    if problems:
        _fail("\n".join(p.replace("study.nuisance", "--nuisance") for p in problems))
    return keys


def _study_or_latest(study: Optional[Path], results_dir: Path, verb: str) -> Path:
    """The study folder given, or the most recently updated one under results_dir; else fail."""
    from bsweep.analysis.collect import latest_study

    study = study or latest_study(results_dir)
    if study is None or not (study / "trials").is_dir():
        _fail(f"no study to {verb} ({study or results_dir}/ has no trials/)")
    return study


@app.command()
def collect(
    study: StudyDir = None,
    csv: Annotated[Optional[Path], typer.Option("--csv", help="Also write trials.csv and measurements.csv into this folder.")] = None,
    results_dir: ResultsDir = Path("results"),
    nuisance: Nuisance = None,
) -> None:
    """Tidy tables of a study (one row per trial, one per measurement) as Parquet in the study folder; STUDY defaults to the most recently updated study."""
    from bsweep.analysis.collect import TRIALS_TABLE, collect as collect_study
    from bsweep.analysis.metrics import nuisance_columns, point_columns

    study = _study_or_latest(study, results_dir, "collect")
    nuisance = tuple(_nuisance_or_fail(nuisance))
    trials, measurements = collect_study(study, csv, nuisance)
    # every key the study varies gets a column (model.width, nuisance:optim.momentum, ...)
    swept = [c for c in [*point_columns(trials), *nuisance_columns(trials)]
             if c not in ("batch_size", "lr") and trials[c].nunique(dropna=False) > 1]
    cols = {"trial_id": "trial", "status": "status", "norm": "norm", **{c: c for c in swept},
            "batch_size": "batch", "lr": "lr", "seed": "seed", "final_test_acc": "final acc",
            "steps_to_target": "steps to target", "seconds_to_target": "s to target",
            "calibrated_seconds_to_target": "calibrated s"}
    table = Table(title=f"{study}: {len(trials)} trials, {len(measurements)} measurements")
    for label in cols.values():
        table.add_column(label, no_wrap=True)
    order = ["norm", *(c for c in swept if c != "norm"), "batch_size", "lr", "seed"]
    for _, r in trials.sort_values(order).iterrows():
        table.add_row(*(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols))
    console.print(table)
    console.print(f"wrote {study / TRIALS_TABLE}" + (f" and CSV files in {csv}" if csv else ""))


@app.command()
def report(
    studies: Annotated[Optional[list[Path]], typer.Argument(
        help="Study folders (results/<study>); default: the most recently updated study. With two or "
             "more, each gets its report and a comparison page puts them side by side.",
        show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Report folder (default: STUDY/report; for a comparison, RESULTS/compare-A-B).")] = None,
    results_dir: ResultsDir = Path("results"),
    nuisance: Nuisance = None,
    svg: Annotated[bool, typer.Option("--svg", help="Write each figure as SVG too (a second rendering of each).")] = False,
    figures: Annotated[bool, typer.Option("--figures/--no-figures", help="Draw the figures (most of a report's time); --no-figures: the answer, verdicts and tables alone.")] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print every claim's full verdict table too.")] = False,
) -> None:
    """Write the study's report (index.html, report.md, verdicts.csv, answer.csv, figures as PNG, and SVG with --svg); STUDY defaults to the most recently updated study. Several studies: each report, then a page comparing them."""
    from bsweep.analysis.report import read_answer, read_verdicts, write_report
    from bsweep.analysis.study import Study

    if svg and not figures:
        _fail("--svg writes each figure as SVG too and --no-figures draws none: choose one")
    if studies and len(studies) > 1:
        _compare(studies, out, svg, figures, verbose)
        return
    study = _study_or_latest(studies[0] if studies else None, results_dir, "report on")
    loaded = Study.load(study, tuple(_nuisance_or_fail(nuisance)))  # the report's numbers, and what it left out
    html = write_report(study, out, svg=svg, study=loaded, figures=figures)
    _print_answer(read_answer(html.parent), read_verdicts(html.parent), study.name, verbose, loaded.left_out_line,
                  loaded.predictions)
    console.print(f"report: {html}")


def _compare(studies: list[Path], out: Optional[Path], svg: bool, figures: bool, verbose: bool) -> None:
    """`bsweep report A B ...`: each study's report and answer, then the comparison page."""
    from bsweep.analysis.report.compare import write_comparison
    from bsweep.analysis.report import read_answer, read_verdicts

    for study in studies:
        if not (study / "trials").is_dir():
            _fail(f"{study} is not a study folder (it has no trials/)")
    out = out or studies[0].parent / ("compare-" + "-".join(s.name for s in studies))
    try:
        html, sides = write_comparison(studies, out, svg, figures)
    except ValueError as e:
        _fail(str(e))
    for side in sides:
        _print_answer(read_answer(side.report.parent), read_verdicts(side.report.parent), side.name, verbose,
                      side.left_out)
        console.print(f"report: {side.report}")
    console.print(f"comparison: {html}")


def _print_answer(answer, verdicts, study: str, verbose: bool, left_out: str = "",
                  predictions: list[dict] | None = None) -> None:
    """The report's first screen in the terminal: per point the batch sizes to use and why, then
    one line per claim; with `verbose`, every claim's full verdict table before them; `left_out`:
    the line saying which trials no number uses, and why (first, when there is one);
    `predictions`: the study's predict.json files, each after the answer under its setting."""
    from bsweep.analysis.answer import answer_lines, claim_lines
    from bsweep.analysis.predicted import MARK, prediction_lines, setting_text

    if verbose:
        table = Table(title="Verdicts (the report explains each rule)", show_lines=True)
        columns = [c for c in ("claim", "protocol", "verdict", "condition", "study") if c in verdicts.columns]
        for col in columns:
            table.add_column(col)
        for _, v in verdicts.iterrows():
            table.add_row(*(escape(str(v[c])) for c in columns))
        console.print(table)
    if left_out:
        console.print(f"{escape(study)}: {escape(left_out)}", style="yellow", highlight=False, soft_wrap=True)
    console.print(f"[bold]What batch size, and why[/] ({study})")
    for lines in answer_lines(answer):
        for line in lines:
            console.print(escape(line), highlight=False, soft_wrap=True)
    if not len(answer):
        console.print("no answer yet: no trial has finished", highlight=False)
    for prediction in predictions or []:
        for line in [f"{MARK} for {setting_text(prediction)}", *prediction_lines(prediction)]:
            console.print(escape(line), highlight=False, soft_wrap=True)
    console.print("[bold]Claims[/] (report: rules and numbers; --verbose: every condition)")
    for line in claim_lines(verdicts):
        console.print(escape(line), highlight=False, soft_wrap=True)


@app.command()
def reproduce(
    full: Annotated[bool, typer.Option("--full", help="Run the full `claims` and `norm` grids (hours on a CPU) instead of `claims_quick` and `norm_quick`.")] = False,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", help="Worker processes (default: one per CPU core without a GPU, else 4 per GPU).")] = None,
    results_dir: ResultsDir = Path("results"),
    overrides: Overrides = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print every claim's full verdict table too.")] = False,
    rebench: Annotated[bool, typer.Option("--rebench", help="Time every point's step again, even where this machine measured it for the study before.")] = False,
    figures: Annotated[bool, typer.Option("--figures/--no-figures", help="Draw the reports' figures (most of their time); --no-figures: answers, verdicts and tables alone.")] = True,
) -> None:
    """Reproduce every claim of sections 3.5 and 3.6: run the claims_quick, norm_quick, direction_quick, input_quick and order_quick studies (lr bracketed), write their reports, print the verdicts. Re-running reuses finished trials."""
    from bsweep.sweep.reproduce import default_jobs, reproduce as run_reproduction

    jobs = jobs if jobs is not None else default_jobs()
    if jobs < 1:
        _fail(f"--jobs={jobs} must be >= 1")
    try:
        result = run_reproduction(full, jobs, results_dir, overrides or [], console, rebench, figures)
    except _user_errors() as e:
        _fail(str(e).strip())
    stopped = []
    for run in result.studies:  # every study's summary, also when an earlier one had failures
        try:
            _report_outcome(run.outcome)
        except typer.Exit as e:
            stopped.append(e)
    for run in result.studies:
        console.print(f"report: {run.report}", highlight=False)
    # the last screen: the batch-size study's answer, each claim from the study made for it
    _print_answer(result.answer, result.verdicts, result.studies[0].study_dir.name, verbose,
                  predictions=result.predictions)
    if stopped:
        raise stopped[0]


@app.command(context_settings=HYDRA_ARGS, cls=_ComposesConfigs)
def predict(
    overrides: Overrides = None,
    verify: Annotated[bool, typer.Option("--verify", help="Then train a sparse grid around the prediction (2 seeds, lr bracketed) and say whether it held.")] = False,
) -> None:
    """Predict the time-optimal batch size, its lr and B_crit from one pilot run and short branches (minutes, not a grid); written to results/<study>/predict/. study.name defaults to `predict`."""
    from bsweep.analysis.predicted import MARK, prediction_lines, setting_text
    from bsweep.sweep.predict import PilotMissed, predict as run_prediction
    from bsweep.train.data import DatasetError

    _hydra_prints_only(overrides or [])
    try:
        prediction, folder = run_prediction(overrides or [], say=lambda line: console.print(line, highlight=False))
    except _user_errors() as e:
        _fail(str(e).strip())
    except PilotMissed as e:
        _fail(str(e), code=1)
    except DatasetError as e:  # the data is not where the config says: the user's to fix
        _fail(str(e))
    if verify:
        from bsweep.sweep.verify import verify as run_verification

        prediction = run_verification(prediction, overrides or [], folder, console)
    console.print(f"What batch size, and why ({prediction['study']}), {MARK}: {setting_text(prediction)}",
                  highlight=False)
    for line in prediction_lines(prediction):
        console.print(line, highlight=False)
    console.print(f"wrote {folder}", highlight=False)


@app.command(context_settings=HYDRA_ARGS)
def bench(
    overrides: Overrides = None,
    widths: Annotated[str, typer.Option("--widths", help="Fused widths to time, comma-separated; 1 = one trial alone (the calibrated step time).")] = "1",
) -> None:
    """Calibrated throughput: seconds per step and samples/s against batch size for the configured model, norm and device, each point timed alone; written to results/<study>/bench.parquet."""
    from bsweep.sweep.bench import run_bench, write_bench
    from bsweep.sweep.launch import plan_and_check
    from bsweep.plan import structured_all, study_dir

    try:
        sizes = tuple(int(w) for w in widths.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        _fail(f"--widths={widths!r}: give widths >= 1, e.g. 1,4,16")
    planned = _plan_or_fail(plan_and_check, overrides or [])
    configs = structured_all([p.config for p in planned])
    table = Table(title=f"calibrated throughput, study {configs[0].study.name}")
    for col in ("norm", "batch", "width", "ms/step (per member)", "samples/s"):
        table.add_column(col, justify="right")

    def show(r: dict) -> None:
        console.print(f"  {r['norm']} batch {r['batch_size']} width {r['fused_width']}: "
                      f"{r['seconds_per_step'] * 1e3:.3f} ms/step, {r['samples_per_second']:.0f} samples/s")
        table.add_row(r["norm"], str(r["batch_size"]), str(r["fused_width"]),
                      f"{r['seconds_per_step'] * 1e3:.3f}", f"{r['samples_per_second']:.0f}")

    frame = run_bench(configs, sizes, on_row=show)
    console.print(table)
    path = write_bench(study_dir(configs[0]), frame)
    console.print(f"wrote {path}")


def main() -> None:
    """The `bsweep` command: the app, with typer's usage errors (an unknown option, a missing
    argument) in the same one-line form as every other user error."""
    usage_error = typer.BadParameter.__base__  # click's UsageError, vendored by typer or not
    try:
        code = app(standalone_mode=False)
    except usage_error as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # `bsweep` alone: the help, as typer shows it
            e.show()
            sys.exit(e.exit_code)
        command = e.ctx.command_path if e.ctx is not None else "bsweep"
        err.print(f"[bold red]{ERROR_PREFIX}[/] {escape(e.format_message().rstrip('.'))}; see "
                  f"`{escape(command)} --help`", highlight=False)
        sys.exit(e.exit_code)
    sys.exit(code or 0)
