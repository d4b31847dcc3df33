"""The main job end to end on its five studies, shrunk: sweep -> report -> verdicts, real files."""

import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from bsweep.analysis.answer import answer_lines, claim_lines
from bsweep.analysis.predicted import MARK, load_predictions, prediction_lines, setting_text
from bsweep.analysis.report import read_answer, read_verdicts
from bsweep.analysis.claims import CLAIMS

from bsweep.cli import app
from bsweep.sweep.reproduce import JUDGED_ON, write_reports
from bsweep.sweep.reproduce import STUDIES as ALL_STUDIES

STUDIES = ALL_STUDIES[False]

runner = CliRunner()

# Every study, shrunk to seconds: 2 batch sizes x 1 lr x its other axes x 2 seeds on 256
# samples, no bracketing round (tests/test_bracket.py runs rounds, per point and resumed): the
# five sweeps, benches and reports took 3 min with 3 batch sizes and a round.
SHRUNK = [
    "model=cnn_small", "data.n_train=256", "data.n_test=128", "batch_size=16,64", "lr=0.05",
    "study.budget.epochs=1", "study.budget.steps=8", "study.target=0.2", "hydra.sweeper.max_rounds=0",
]


@pytest.mark.slow(seconds=100)
def test_reproduce_runs_the_study_writes_the_report_and_prints_verdicts(tmp_path):
    results = tmp_path / "results"
    out = runner.invoke(app, ["reproduce", "--jobs", "1", "--results-dir", str(results), *SHRUNK])
    assert out.exit_code == 0, out.output
    study = results / "claims_quick"
    html = (study / "report" / "index.html").read_text()
    assert (study / "report" / "report.md").is_file()
    assert list((study / "report" / "figures").glob("*.png")) and not list((study / "report" / "figures").glob("*.svg"))
    # the verdict table comes before every figure (but the predictions' folded ones in the
    # answer) and names every claim
    measured_only = re.sub(r"<details><summary>figure: predicted.*?</details>", "", html, flags=re.S)
    assert measured_only.index("C1") < measured_only.index("<img")
    for claim in CLAIMS:
        assert claim in out.output and claim in html
    summaries = re.findall(r"(\d+) trials(?: \(\d+ planned, \d+ added by lr bracketing\))?: (\d+) complete", out.output)
    assert len(summaries) == len(STUDIES) and all(a == b for a, b in summaries), summaries
    for name in STUDIES:
        assert (results / name / "report" / "verdicts.csv").is_file()
    # self-contained: nothing loaded from outside the file
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "report:" in out.output
    # fused trials share their seconds: time claims use the isolated step time of `bench`
    assert (study / "bench.parquet").is_file()
    assert "Time basis (C2, C4, time figures): calibrated" in html
    # the last screen: the batch-size study's answer block, then one line per claim, each the
    # line of the study made for it (reproduce.JUDGED_ON), from that report's verdicts.csv
    tables = [read_verdicts(results / name / "report").assign(study=name) for name in STUDIES]
    judged = pd.concat([t[t["claim"].map(lambda c: JUDGED_ON.get(c, 0)) == i] for i, t in enumerate(tables)])
    judged = judged.sort_values("claim", key=lambda c: c.map(list(CLAIMS).index), kind="stable")
    lines = claim_lines(judged.reset_index(drop=True))
    assert [line.split()[0] for line in lines] == list(CLAIMS)
    tail = out.output.splitlines()
    assert tail[-len(lines):] == lines, "\n".join(tail[-len(lines) - 3:])
    answer = answer_lines(read_answer(results / "claims_quick" / "report"))
    # the predictor ran at each norm of the grid; its lines follow the answer's
    # (or says why not: at 64 steps a pilot may miss the target, which depends on the machine)
    predictions = load_predictions(study)
    predicted_norms = {p["setting"]["norm.kind"] for p in predictions}
    for norm in ("batch", "group"):
        assert norm in predicted_norms or "no prediction:" in out.output
    predicted = [line for p in predictions for line in [f"{MARK} for {setting_text(p)}", *prediction_lines(p)]]
    expected = [line for block in answer for line in block] + predicted
    assert answer and expected == tail[-len(lines) - 1 - len(expected):-len(lines) - 1]
    assert html.count(MARK) >= len(predictions)
    assert "What batch size, and why (claims_quick)" in out.output
    assert "the study has no norm=none arm" not in out.output
    # (a second `reproduce` reuses the 12 trials: run_sweep's skip, pinned by test_cli's rerun
    # test; not repeated here, where it cost ~25 s of bench and report)


@pytest.mark.slow
def test_report_command_on_a_study_with_a_running_trial_says_so(tmp_path):
    results = tmp_path / "results"
    assert runner.invoke(app, ["sweep", "study=smoke", f"results_dir={results}", "data.n_train=256",
                               "study.budget.epochs=1", "seed=0,1"]).exit_code == 0
    study = results / "smoke"
    # a trial that started and has not finished yet (as seen while a sweep runs)
    from bsweep import records
    records.write_status(records.trial_dir(study, "0123456789ab"), "running")
    out = runner.invoke(app, ["report", str(study)])
    assert out.exit_code == 0, out.output
    html = (study / "report" / "index.html").read_text()
    assert "running" in html.lower()
    # the terminal gets the answer block and one line per claim; --verbose the whole table too
    title = "Verdicts (the report explains each rule)"
    assert "What batch size, and why (smoke)" in out.output and title not in out.output
    assert out.output.splitlines()[-2].startswith("N7 ")
    figures = sorted(p.name for p in (study / "report" / "figures").glob("*.png"))
    assert figures and html.count("<img ") == len(figures), figures
    verdicts = (study / "report" / "verdicts.csv").read_text()
    # --no-figures: the same verdicts and answer, the page without a figure and saying why
    verbose = runner.invoke(app, ["report", str(study), "--verbose", "--no-figures", "--out", str(tmp_path / "bare")])
    assert verbose.exit_code == 0 and title in verbose.output
    assert verbose.output.index(title) < verbose.output.index("What batch size, and why")
    bare = (tmp_path / "bare" / "index.html").read_text()
    assert "<img " not in bare and "No figures: this report was written with --no-figures." in bare
    assert not (tmp_path / "bare" / "figures").exists()
    assert (tmp_path / "bare" / "verdicts.csv").read_text() == verdicts
    assert "No figures: this report was written with --no-figures." in (tmp_path / "bare" / "report.md").read_text()


@pytest.mark.slow(seconds=25)
def test_report_on_two_studies_writes_each_report_and_a_page_comparing_them(tmp_path):
    results = tmp_path / "results"
    for name, norm in (("cpu_run", "batch"), ("other_run", "group")):
        out = runner.invoke(app, ["sweep", "study=smoke", f"results_dir={results}", "data.n_train=256",
                                  "data.n_test=128", "study.budget.epochs=1", f"study.name={name}", f"norm={norm}",
                                  "seed=0,1"])
        assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["report", str(results / "cpu_run"), str(results / "other_run")])
    assert out.exit_code == 0, out.output
    page = results / "compare-cpu_run-other_run" / "index.html"
    html = page.read_text()
    for name in ("cpu_run", "other_run"):
        assert (results / name / "report" / "index.html").is_file()
        assert f"What batch size, and why ({name})" in out.output
        assert f"<h3>{name} " in html
    # the claims in one table, a column per study; the curves overlaid, one line style a study
    claims = html[html.index("Claims, study by study"):html.index("<h2>Figures</h2>")]
    assert "<th>cpu_run</th><th>other_run</th>" in claims and all(f"<td>{c}</td>" in claims for c in ("C1", "N7"))
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == 3
    assert f"comparison: {page}" in out.output.replace("\n", "")
    assert (page.parent / "report.md").read_text().startswith("# bsweep comparison: cpu_run vs other_run")
    # the same name twice is refused before anything is written
    again = runner.invoke(app, ["report", str(results / "cpu_run"), str(results / "cpu_run")])
    assert again.exit_code != 0 and "same name" in again.output
    # reproduce writes its studies' reports side by side, in worker processes: the same files
    # (without figures here, as `bsweep reproduce --no-figures` does: they are drawn above)
    verdicts = {name: (results / name / "report" / "verdicts.csv").read_text() for name in ("cpu_run", "other_run")}
    for name in verdicts:
        (results / name / "report" / "verdicts.csv").unlink()
    paths = write_reports([results / "cpu_run", results / "other_run"], jobs=2, figures=False)
    assert paths == [results / name / "report" / "index.html" for name in verdicts]
    assert all((results / name / "report" / "verdicts.csv").read_text() == text for name, text in verdicts.items())
    assert all("<img " not in path.read_text() for path in paths)
