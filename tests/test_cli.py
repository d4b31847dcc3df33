"""End to end through the CLI: real Hydra composition and multirun, real training, real files."""

import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from bsweep import records
from bsweep.analysis.load import load_trials
from bsweep.cli import app
from tests.conftest import TINY

runner = CliRunner()


def bsweep(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.mark.slow
def test_sweep_trains_the_grid_writes_records_and_a_rerun_skips_them(results):
    out = bsweep("sweep", *TINY, f"results_dir={results}")
    assert out.exit_code == 0, out.output
    study = results / "smoke"
    assert out.output.rstrip().splitlines()[-1] == f"next: bsweep report {study}"
    trials = load_trials(study)
    assert len(trials) == 4 and set(trials["status"]) == {"complete"}
    assert set(trials["batch_size"]) == {16, 64} and set(trials["norm"]) == {"batch", "group"}
    tdir = records.trial_dir(study, trials["trial_id"][0])
    for name in ("config.yaml", "status.json", "env.json", "measurements.parquet"):
        assert (tdir / name).is_file(), name
    assert (study / "study.yaml").is_file()
    stamps = {p: p.stat().st_mtime_ns for p in study.glob("trials/*/measurements.parquet")}

    again = bsweep("sweep", *TINY, f"results_dir={results}")
    assert again.exit_code == 0 and "4 already finished, 0 to run" in again.output
    assert {p: p.stat().st_mtime_ns for p in study.glob("trials/*/measurements.parquet")} == stamps

    planned = bsweep("plan", *TINY, f"results_dir={results}", "lr=0.05,0.1")
    assert "4 finished, 4 to run" in planned.output


def test_run_trains_one_trial_and_refuses_a_grid(results):
    out = bsweep("run", *TINY, f"results_dir={results}", "batch_size=8")
    assert out.exit_code == 0, out.output
    trials = load_trials(results / "smoke")
    assert len(trials) == 1 and trials["batch_size"][0] == 8
    grid = runner.invoke(app, ["run", *TINY, f"results_dir={results}", "lr=0.1,0.2"])
    assert grid.exit_code == 2 and "bsweep sweep" in grid.output


def test_status_and_collect_tables(results, tmp_path):
    assert bsweep("sweep", *TINY, f"results_dir={results}", "norm=batch").exit_code == 0
    study = results / "smoke"
    status = bsweep("status", str(study))
    assert "2 complete" in status.output
    listing = bsweep("status", "--results-dir", str(results))
    assert "smoke" in listing.output
    out = bsweep("collect", str(study), "--csv", str(tmp_path / "csv"))
    assert out.exit_code == 0, out.output
    table = pd.read_parquet(study / "trials.parquet")
    needed = {"trial_id", "status", "data", "norm", "batch_size", "lr", "seed", "final_test_acc",
              "best_test_acc", "steps_to_target", "epochs_to_target", "seconds_to_target",
              "samples_per_second"}
    assert needed <= set(table.columns) and len(table) == 2
    assert (table["best_test_acc"] >= table["final_test_acc"] - 1e-9).all()
    assert len(pd.read_csv(tmp_path / "csv" / "measurements.csv")) == len(
        pd.read_parquet(study / "measurements.parquet"))


# Bad inputs: tests/test_validation.py.


def test_python_m_bsweep_reports_errors_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bsweep", "run", *TINY, f"results_dir={tmp_path}", "batch_size=-3"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "batch_size=-3" in proc.stderr and "Traceback" not in proc.stderr + proc.stdout


def test_a_users_own_config_dir_adds_study_presets(results, tmp_path):
    study = tmp_path / "my_configs" / "study"
    study.mkdir(parents=True)
    (study / "mine.yaml").write_text(
        "# @package _global_\n"
        "study: {name: mine, target: 0.3, budget: {epochs: 1}}\n"
        "data: {n_train: 256, n_test: 128}\n"
        "model: {width: 8, depth: 2, kernel_size: 3}\n"
        "hydra: {sweeper: {params: {batch_size: '16,64'}}}\n"
    )
    args = ["--config-dir", str(tmp_path / "my_configs"), "study=mine", f"results_dir={results}"]
    planned = bsweep("plan", *args)
    assert planned.exit_code == 0, planned.output
    assert "2 to run" in planned.output
    out = bsweep("sweep", *args)
    assert out.exit_code == 0, out.output
    assert set(load_trials(results / "mine")["batch_size"]) == {16, 64}


def test_hydra_print_flags_pass_through(results):
    proc = subprocess.run(
        [sys.executable, "-m", "bsweep", "run", "--cfg", "job", "study=smoke", "lr=0.125"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "lr: 0.125" in proc.stdout and "name: smoke" in proc.stdout
    # `bsweep sweep` too: Hydra refuses --cfg beside --multirun (with a traceback), so the
    # sweep asks without it, and the study's grid shows under hydra.sweeper.params
    proc = subprocess.run(
        [sys.executable, "-m", "bsweep", "sweep", "--cfg", "hydra", "-p", "hydra.sweeper.params", "study=claims_quick"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "batch_size: 1,4,16,64,256,1024" in proc.stdout and "Traceback" not in proc.stderr


def test_the_sweep_id_reaches_the_jobs_as_written_whatever_it_looks_like():
    # a uuid prefix can look like a float (1234e5678901 -> inf) or an int with a leading zero
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from bsweep.sweep.launch import env_overrides

    env = {"BSWEEP_SWEEP_ID": "1234e5678901", "OTHER": "012345678901", "PLAIN": "5d7ec0814285"}
    parsed = OverridesParser.create().parse_overrides(env_overrides(env))
    assert {o.key_or_group.split(".")[-1]: o.value() for o in parsed} == env


# What a user sees around the commands (issue 30, item 7).


def _commands() -> list[str]:
    return [c.name or c.callback.__name__ for c in app.registered_commands]


def test_no_help_shows_a_bool_metavar():
    for args in ([], *([c] for c in _commands())):
        out = runner.invoke(app, [*args, "--help"])
        assert out.exit_code == 0, out.output
        assert "<bool>" not in out.output, args


def test_sweep_plan_and_run_help_list_the_presets_and_groups_from_the_configs_folder():
    from bsweep.plan import CONFIG_DIR

    presets = sorted(p.stem for p in (CONFIG_DIR / "study").glob("*.yaml"))
    groups = {d.name: sorted(p.stem for p in d.glob("*.yaml")) for d in CONFIG_DIR.iterdir()
              if d.is_dir() and d.name != "study"}
    assert "smoke" in presets and "norm" in groups
    for command in ("sweep", "plan", "run"):
        text = " ".join(runner.invoke(app, [command, "--help"], terminal_width=200).output.split())
        assert "study=NAME): " + ", ".join(presets) in text, command
        for group, options in groups.items():
            assert f"{group}: {', '.join(options)}" in text, (command, group)
        assert "--config-dir DIR" in text and "--cfg job" in text


def test_version():
    from importlib.metadata import version

    out = runner.invoke(app, ["--version"])
    assert out.exit_code == 0 and out.output.strip() == f"bsweep {version('bsweep')}"


@pytest.mark.parametrize("command", ["sweep", "plan", "run"])
def test_a_config_dir_that_does_not_exist_is_an_error_and_nothing_is_written(results, tmp_path, command):
    out = runner.invoke(app, [command, "--config-dir", str(tmp_path / "nowhere"), *TINY, f"results_dir={results}"])
    assert out.exit_code == 2, out.output
    assert out.output.startswith(f"error: --config-dir {tmp_path / 'nowhere'}: no such folder")
    assert not results.exists()


def test_user_errors_start_with_one_prefix(results):
    # Hydra's own composition message (--cfg goes to Hydra) and typer's usage errors read as bsweep's
    cfg = runner.invoke(app, ["run", "--cfg", "job", "nosuch=1"])
    assert cfg.exit_code == 2 and cfg.output.startswith("error: nosuch is not a config key"), cfg.output
    for args in (["status", "--nosuch"], ["nosuchcommand"], ["reproduce", "--jobs", "x"]):
        proc = subprocess.run([sys.executable, "-m", "bsweep", *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc
        assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1 and "--help" in proc.stderr, proc.stderr


def test_sweep_and_status_point_to_the_tracebacks_that_exist(results, tmp_path):
    from tests.test_failures import garbage_mnist

    data = garbage_mnist(tmp_path / "data")
    out = runner.invoke(app, ["sweep", *TINY, f"results_dir={results}", "norm=batch", "batch_size=16",
                              "data=mnist,mnist1d", f"data.root={data}"])
    assert out.exit_code == 1, out.output
    study = results / "smoke"
    bad = load_trials(study).set_index("data").loc["mnist", "trial_id"]
    traceback = records.trial_dir(study, bad) / records.TRACEBACK_FILE
    assert f"tracebacks: {traceback}. Running the same command again" in out.output
    assert "next:" not in out.output  # no report to read yet: the failure comes first
    status = bsweep("status", str(study))
    assert f"redoes them; tracebacks: {traceback}" in status.output

    # interrupted (its process died): no traceback to point to
    traceback.unlink()
    records.write_json(traceback.parent / records.STATUS_FILE,
                       {"status": "running", "host": "another-host", "pid": 1, "time": 0.0, "heartbeat": 0.0})
    status = bsweep("status", str(study))
    assert "1 interrupted" in status.output and "traceback" not in status.output, status.output


# Mixing into an existing study (issue 30, item 8).


def test_a_sweep_that_adds_another_model_to_a_study_says_so_and_how_to_keep_them_apart(results):
    assert bsweep("sweep", *TINY, f"results_dir={results}", "norm=batch").exit_code == 0
    more_lrs = bsweep("sweep", *TINY, f"results_dir={results}", "norm=batch", "lr=0.1")
    assert more_lrs.exit_code == 0 and "study.name=" not in more_lrs.output  # the same experiment, more lrs
    out = bsweep("sweep", *TINY, f"results_dir={results}", "norm=batch", "model.width=16")
    assert out.exit_code == 0, out.output
    notes = [line for line in out.output.splitlines() if "study.name=" in line]
    assert notes == [f"note: {results / 'smoke'} holds model.width=8; this sweep adds model.width=16, which the "
                     f"report will compare as a scientific key. To keep them apart: study.name=smoke-width16"]
    assert out.output.index(notes[0]) < out.output.index("trials:")  # before training, not after


def test_the_mixing_note_names_what_differs_and_leaves_a_grid_being_extended_alone():
    from bsweep.sweep.launch import mixing_note

    there = [{"model.name": "cnn", "model.width": "8", "optim.name": "sgd"},
             {"model.name": "cnn", "model.width": "16", "optim.name": "sgd"}]
    assert mixing_note("results/s", there, [{"model.name": "cnn", "model.width": "32", "optim.name": "sgd"}]) is None
    assert mixing_note("results/s", there, there) is None and mixing_note("results/s", [], there) is None
    custom = [{"model._target_": "my_pkg.nets.MyNet", "optim.name": "adam"}]
    assert mixing_note("results/s", there, custom) == (
        "results/s holds model._target_=unset, model.name=cnn, optim.name=sgd; this sweep adds "
        "model._target_=my_pkg.nets.MyNet, model.name=unset, optim.name=adam, which the report will compare "
        "as a scientific key. To keep them apart: study.name=s-MyNet")
