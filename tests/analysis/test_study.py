"""`bsweep.load_study` and `bsweep report` on a real tiny study: one object, one set of numbers.

The study is the smoke grid shrunk (tests/conftest.py TINY): 2 batch sizes x 2 norms, one lr and
one seed, as a user's first sweep over batch sizes is.
"""

import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import bsweep
from bsweep import records
from bsweep.analysis.answer import answer_lines
from bsweep.analysis.report import read_answer, read_verdicts
from bsweep.analysis.claims import CLAIMS
from bsweep.cli import app
from tests.conftest import TINY

runner = CliRunner()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    results = tmp_path_factory.mktemp("study") / "results"
    out = runner.invoke(app, ["sweep", *TINY, f"results_dir={results}"])
    assert out.exit_code == 0, out.output
    return results / "smoke"


def report(*args):
    out = runner.invoke(app, ["report", *map(str, args), "--no-figures"])
    assert out.exit_code == 0, out.output
    return out.output


@pytest.mark.slow(seconds=20)
def test_load_study_holds_what_the_report_prints(smoke, tmp_path):
    study = bsweep.load_study(smoke)
    assert study.name == "smoke" and len(study.trials) == 4 and set(study.trials["status"]) == {"complete"}
    assert set(study.measurements["trial_id"]) == set(study.trials["trial_id"])
    assert len(study.summary) == 4 and "seconds_to_target" in study.summary
    assert list(study.verdicts["claim"].unique()) == list(CLAIMS)
    assert list(study.answer["point"]) == ["norm=batch", "norm=group"]
    assert set(study.critical.fits["norm"]) == {"batch", "group"}
    assert study.left_out == {} and study.left_out_line == ""
    # the report renders the same numbers: its files give the same lines and verdicts
    output = report(smoke, "--out", tmp_path / "report")
    written = read_answer(tmp_path / "report")
    assert answer_lines(written) == answer_lines(study.answer)
    assert all(line in output for line in study.answer_lines())
    assert read_verdicts(tmp_path / "report")["verdict"].tolist() == study.verdicts["verdict"].tolist()
    assert "left out" not in output
    with pytest.raises(FileNotFoundError, match="not a study folder"):
        bsweep.load_study(tmp_path)


def test_import_bsweep_loads_no_pandas():
    # the CLI starts without pandas; load_study imports it when called
    code = "import bsweep, sys; print('pandas' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


@pytest.mark.slow(seconds=20)
def test_one_seed_gives_no_test_no_spread_and_no_lr_rule(smoke, tmp_path):
    output = report(smoke, "--out", tmp_path / "report")
    answer = output[output.index("What batch size, and why"):output.index("Claims")]
    accurate = [line for line in answer.splitlines() if line.strip().startswith("most accurate")]
    assert len(accurate) == 2  # one a norm
    assert all(line.endswith("; 1 seed: no test of the difference; run >= 2 seeds") for line in accurate), accurate
    lr_lines = [line for line in answer.splitlines() if line.strip().startswith("best lr")]
    assert len(lr_lines) == 2 and all("no rule to fit" in line and "B^" not in line for line in lr_lines)
    html = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    first_screen = html[html.index("What batch size, and why"):html.index('id="verdicts"')]
    for text in (answer, first_screen):
        assert "nan" not in text and "±" not in text and "significantly ahead" not in text
    assert first_screen.count("1 seed: no test of the difference; run &gt;= 2 seeds") >= 2


@pytest.mark.slow(seconds=20)
def test_the_report_says_how_many_trials_it_left_out_and_why(smoke, tmp_path):
    study_dir = tmp_path / "smoke"
    shutil.copytree(smoke, study_dir, ignore=shutil.ignore_patterns("report"))
    first, second = sorted(p for p in (study_dir / "trials").iterdir() if p.is_dir())[:2]
    (first / records.CONFIG_FILE).write_text("")  # damaged: an empty config
    records.write_status(second, "failed", error="RuntimeError: boom")
    study = bsweep.load_study(study_dir)
    assert study.left_out == {"failed": 1, "damaged": 1}
    output = report(study_dir)
    lines = [line for line in output.splitlines() if "left out" in line]
    assert lines == ["smoke: left out 2 of 4 trials: 1 failed (failed; `bsweep status` shows the error), "
                     "1 damaged (record unreadable; `bsweep status` says which file)"]
