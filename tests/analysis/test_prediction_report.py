"""`bsweep predict`'s predict.json beside a grid's answer: read by `Study.load`, printed under its
point, shown on the report's first screen with its figure, a damaged file skipped with a note.

The predictions are written by hand after predict.json's schema (docs/predict.md), with the
numbers of a plausible mnist1d run; the study is the smoke grid shrunk (tests/conftest.py TINY),
trained once for the module, and the synthetic study of conftest.make_study where the grid must
reach its target (the smoke grid's one epoch does not).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from typer.testing import CliRunner

from bsweep.analysis import load
from bsweep.analysis.answer import answer_lines
from bsweep.analysis.predicted import (FOLDER_KEY, load_predictions, matches, measured_seconds, prediction_items,
                                       prediction_lines)
from bsweep.analysis.report import write_study
from bsweep.analysis.report.prediction_plots import plot_prediction, write_prediction_figure
from bsweep.analysis.study import Study
from bsweep.cli import app
from tests.analysis.conftest import make_study
from tests.analysis.test_report import check_html
from tests.conftest import TINY

# The predicted S(B) = S_min (1 + B_crit / B) and step time t(B) of the hand-made predictions.
S_MIN, B_CRIT = 120.0, 230.0


def step_seconds(b: float) -> float:
    return 0.0009 + 1.2e-5 * b


def predict_json(data: str, model: str, norm: str, weak: list[str] | None = None) -> dict:
    """A predict.json as `bsweep predict` writes it (plain data; "lines" left empty: the report
    renders its own)."""
    sizes = [2.0 ** k for k in range(11)]
    curve = []
    for b in sizes:
        steps = S_MIN * (1 + B_CRIT / b)
        curve.append({"batch_size": b, "steps": steps, "steps_lo": 0.85 * steps, "steps_hi": 1.2 * steps,
                      "step_seconds": step_seconds(b), "seconds": steps * step_seconds(b),
                      "seconds_lo": 0.85 * steps * step_seconds(b), "seconds_hi": 1.2 * steps * step_seconds(b)})
    best = min(curve, key=lambda r: r["seconds"])
    return {
        "version": 1, "study": "smoke",
        "setting": {"data.name": data, "model.name": model, "norm.kind": norm, "optim.name": "sgd"},
        "target": 0.9, "wall_seconds": 41.2, "core_seconds": 55.0, "device": "AMD EPYC 7B13 (avx2 fma)",
        "pilot": {"batch_size": 32, "lr": 0.03, "steps_to_target": 980, "seconds_to_target": 1.31,
                  "why_batch_size": "the bench's fastest samples/s under B_simple", "why_lr": "bracketed probe"},
        "lr_probe": [{"lr": 0.01, "score": 1.23, "kept": False}, {"lr": 0.03, "score": 0.91, "kept": True}],
        "noise": {"b_simple": 250.0, "lo": 150.0, "hi": 400.0, "points": 12, "blocks": 4,
                  "method": "micro-batches of 32 in train mode", "reason": ""},
        "branches": [{"batch_size": 128, "k": 4, "lr": 0.06, "from_step": 490, "steps": 60, "reached": True}],
        "b_crit": {"estimate": B_CRIT, "lo": 120.0, "hi": 440.0, "source": "branches", "noise_ratio": 0.92},
        "lr_rule": {"exponent": 0.5, "text": "lr ~ B^0.5 (square-root rule)"},
        "optimum": {"batch_size": best["batch_size"], "lo": 64, "hi": 256, "lr": 0.06, "seconds": best["seconds"],
                    "seconds_lo": best["seconds_lo"], "seconds_hi": best["seconds_hi"], "within": [64, 128, 256]},
        "regimes": "perfect 1-57, diminishing 57-920, maximal from 920",
        "curve": curve, "bench": [{"batch_size": b, "step_seconds": step_seconds(b)} for b in sizes],
        "weak": weak or [], "lines": [], "verify": None,
    }


def write_prediction(study_dir: Path, folder: str, text: str) -> None:
    (study_dir / "predict" / folder).mkdir(parents=True, exist_ok=True)
    (study_dir / "predict" / folder / "predict.json").write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke grid (norm=batch and norm=group) with three predict folders: one for its
    norm=batch point, one for a dataset it did not train (digits), one damaged."""
    results = tmp_path_factory.mktemp("study") / "results"
    out = CliRunner().invoke(app, ["sweep", *TINY, f"results_dir={results}"])
    assert out.exit_code == 0, out.output
    study_dir = results / "smoke"
    model = str(load.load_trials(study_dir)["model"].iloc[0])
    write_prediction(study_dir, f"mnist1d-{model}-batch-sgd", json.dumps(predict_json("mnist1d", model, "batch")))
    write_prediction(study_dir, "digits-cnn-group-sgd", json.dumps(predict_json("digits", "cnn", "group")))
    write_prediction(study_dir, "zz-half-written", '{"version": 1, "setting": {"norm.kind": "ba')
    return study_dir


# --------------------------------------------------------------------------- on the smoke study


@pytest.mark.slow(seconds=10)
def test_study_load_prints_each_prediction_under_its_point(smoke):
    study = Study.load(smoke)
    model = study.trials["model"].iloc[0]
    assert [p[FOLDER_KEY] for p in study.predictions] == ["digits-cnn-group-sgd", f"mnist1d-{model}-batch-sgd"]
    assert len(study.prediction_notes) == 1 and "zz-half-written/predict.json" in study.prediction_notes[0]
    lines = study.answer_lines()
    batch, group = answer_lines(study.answer)  # the grid's own lines, one block a norm
    mnist = next(p for p in study.predictions if p["setting"]["data.name"] == "mnist1d")
    start = lines.index(batch[-1]) + 1  # right under norm=batch's block, before norm=group's
    assert lines[start:start + len(prediction_lines(mnist))] == prediction_lines(mnist)
    assert lines.index(group[0]) == start + len(prediction_lines(mnist))
    assert "from one pilot (41 s, 55 core-s)" in lines[start]
    # the digits prediction matches no point of an mnist1d grid: printed after, its setting named
    tail = lines[lines.index(group[0]) + len(group):]  # (group's last line is batch's too: no index)
    assert tail[0].startswith("predicted from one pilot for data.name=digits") and "no point" in tail[0]
    assert tail[-1] == study.prediction_notes[0]
    assert not any("nan" in line for line in lines)


@pytest.mark.slow(seconds=15)
def test_the_reports_first_screen_shows_the_prediction_and_its_figure(smoke, tmp_path, monkeypatch):
    from bsweep.analysis.report import build

    monkeypatch.setattr(build, "draw_figures", lambda *a, **k: [])  # the grid's figures are tested elsewhere
    study = Study.load(smoke)
    index = write_study(study, tmp_path / "report")
    html = index.read_text(encoding="utf-8")
    check_html(html)
    first_screen = html[html.index("What batch size, and why"):html.index('id="verdicts"')]
    mark = '<div class="mark">predicted from one pilot</div>'
    assert first_screen.count(mark) == 2  # under norm=batch, and digits' on its own
    assert first_screen.index("norm=batch") < first_screen.index(mark) < first_screen.index("norm=group")
    assert "B_crit 230 [120, 440] from branches from the start" in first_screen
    assert "zz-half-written/predict.json" in first_screen  # the damaged file, as a note
    assert first_screen.count('<img src="data:image/png;base64,') == 2
    model = study.trials["model"].iloc[0]
    figure = tmp_path / "report" / "figures" / f"predicted_mnist1d-{model}-batch-sgd.png"
    assert figure.is_file() and figure.stat().st_size > 10_000
    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    answer = markdown[markdown.index("What batch size, and why"):markdown.index("| claim")]
    assert "*predicted from one pilot*" in answer and f"(figures/{figure.name})" in answer
    # without figures: the lines still, no figure
    index = write_study(study, tmp_path / "bare", figures=False)
    assert "predicted from one pilot" in index.read_text(encoding="utf-8")
    assert not (tmp_path / "bare" / "figures").exists() or not list((tmp_path / "bare" / "figures").glob("predicted_*"))


# --------------------------------------------------------------------------- a grid that reaches its target


@pytest.mark.slow(seconds=10)
def test_the_figure_draws_the_grids_measured_seconds_of_the_same_point(tmp_path, monkeypatch):
    from bsweep.analysis.report import build

    trials, measurements = make_study(
        ceiling=lambda n, bs, lr, s: 0.95 - 0.003 * s, tau_epochs=lambda n, bs, lr, s: 0.3 * max(1.0, bs / 16),
        batch_sizes=(4, 16, 64), lrs=(0.05, 0.1), norms=("batch", "group"), seeds=(0, 1), epochs=3.0)
    drawn = []
    real = build._prediction_figure
    monkeypatch.setattr(build, "draw_figures", lambda *a, **k: [])
    monkeypatch.setattr(build, "_prediction_figure", lambda p, m, *a: drawn.append(m) or real(p, m, *a))
    prediction = {**predict_json("mnist1d", "cnn", "group"), FOLDER_KEY: "mnist1d-cnn-group-sgd"}
    study = Study(trials, measurements, name="synthetic", predictions=[prediction])
    write_study(study, tmp_path / "report")
    assert study.matched_predictions[0] == [[], [prediction]]  # batch: none; group: this one
    measured = drawn[0]
    assert list(measured["batch_size"]) == [4.0, 16.0, 64.0] and (measured["seconds"] > 0).all()
    tuned = study.views.tuned("seconds_to_target")
    group = tuned[(tuned["norm"] == "group") & (tuned["batch_size"] == 16)]
    assert measured["seconds"].iloc[1] == pytest.approx(group["seconds_to_target_mean"].iloc[0])
    assert (tmp_path / "report" / "figures" / "predicted_mnist1d-cnn-group-sgd.png").is_file()


# --------------------------------------------------------------------------- pure parts


def test_a_prediction_matches_a_point_on_the_keys_the_point_has():
    p = predict_json("mnist1d", "cnn", "batch")
    row = pd.Series({"point": "norm=batch", "data": "mnist1d", "model": "cnn", "norm": "batch", "optim": "sgd"})
    assert matches(p, row)
    assert not matches(p, row.copy().replace({"batch": "group"}))
    assert not matches(p, pd.Series({"data": "digits", "norm": "batch"}))
    assert matches(p, pd.Series({"norm": "batch", "model.width": 16}))  # keys the setting lacks: ignored
    assert matches(p, pd.Series({"norm": "batch", "data": None}))  # a row without a value: ignored
    wide = {**p, "setting": {**p["setting"], "model.width": 16}}
    assert matches(wide, pd.Series({"norm": "batch", "model.width": np.int64(16)}))
    assert not matches(wide, pd.Series({"norm": "batch", "model.width": 32.0}))


def test_items_say_none_never_nan_and_name_each_weakness_and_the_check():
    p = predict_json("mnist1d", "cnn", "batch", weak=["B_simple's interval spans 20x", "2 of 3 branches missed"])
    p["b_crit"].update(lo=float("nan"), hi=None)
    p["optimum"].update(seconds_hi=float("nan"), within=[])
    p["noise"] = {"b_simple": None, "lo": None, "hi": None, "reason": "too few points near the target"}
    p["wall_seconds"] = None
    p["verify"] = {"batch_sizes": [32, 128, 512], "held": True, "text": "held: measured B* 128 within [64, 256]"}
    items = prediction_items(p)
    labels = [label for label, _ in items]
    assert labels == ["predicted", "fastest to target", "critical batch", "best lr", "weak", "weak", "verified"]
    text = dict(items)
    assert text["predicted"].startswith("from one pilot (time not recorded")
    assert text["critical batch"].startswith(
        "B_crit 230 (no interval) from branches from the start")
    assert "B_simple none (too few points near the target)" in text["critical batch"]
    assert "(no interval) s; within: none" in text["fastest to target"]
    assert text["verified"] == "held: measured B* 128 within [64, 256]"
    assert not any("nan" in value.lower() for _, value in items)
    empty = prediction_items({})  # a file with nothing in it still reads as words
    assert [v for _, v in empty][1:4] == ["none: the prediction has no optimum (see weak)",
                                          "B_crit none", "none: no lr rule"]


def test_lines_align_with_the_answer_blocks_labels():
    lines = prediction_lines(predict_json("mnist1d", "cnn", "batch"))
    grid = "  fastest to target  batch 64 at lr 0.1: 2.5 s"  # as answer.answer_lines writes an item
    assert lines[1][:len("  fastest to target  ")] == grid[:len("  fastest to target  ")]
    assert lines[0].startswith("  predicted          from one pilot (41 s, 55 core-s): pilot batch 32 at lr 0.03")
    assert lines[3] == "  best lr            lr ~ B^0.5 (square-root rule)"


def test_load_predictions_sorts_by_folder_and_notes_what_it_skips(tmp_path):
    write_prediction(tmp_path, "b", json.dumps(predict_json("mnist1d", "cnn", "group")))
    with_nan = predict_json("mnist1d", "cnn", "batch")
    with_nan["b_crit"].update(lo=float("nan"), hi=float("nan"))  # json writes NaN, as the predictor may
    write_prediction(tmp_path, "a", json.dumps(with_nan))
    write_prediction(tmp_path, "c", "[1, 2]")  # JSON, but not an object
    (tmp_path / "predict" / "d").mkdir()  # a folder the predictor has not written yet
    notes: list[str] = []
    loaded = load_predictions(tmp_path, notes)
    assert [p[FOLDER_KEY] for p in loaded] == ["a", "b"]
    assert dict(prediction_items(loaded[0]))["critical batch"].startswith("B_crit 230 (no interval)")
    assert len(notes) == 1 and notes[0].startswith("skipped c/predict.json")
    assert load_predictions(tmp_path / "nowhere") == []


def test_the_figure_is_a_log_log_prediction_with_its_band_and_the_grid(tmp_path):
    p = predict_json("mnist1d", "cnn", "batch")
    measured = pd.DataFrame({"batch_size": [4, 16, 64, 256], "seconds": [9.0, 2.6, 0.95, 0.9],
                             "seconds_std": [1.0, 0.3, 0.1, np.nan]})
    fig = plot_prediction(p, measured)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert "predicted from one pilot" in ax.get_title() and ax.get_xscale() == "log" and ax.get_yscale() == "log"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "predicted band" in labels and any(label.startswith("predicted B* = 128 [64, 256]") for label in labels)
    assert any(label.startswith("grid: measured") for label in labels)
    png = write_prediction_figure(p, tmp_path / "fig" / "p.png", measured, svg=True)
    assert png.is_file() and png.with_suffix(".svg").is_file()
    # a prediction with no curve: axes that say so, not an error
    write_prediction_figure({"setting": {"norm.kind": "group"}, "curve": []}, tmp_path / "empty.png")
    assert (tmp_path / "empty.png").is_file()


def test_measured_seconds_keeps_the_batch_sizes_every_seed_reached():
    tuned = pd.DataFrame({"norm": ["batch", "batch", "batch", "group"], "batch_size": [4, 16, 64, 16],
                          "seconds_to_target_mean": [3.0, 1.0, 2.0, 5.0], "seconds_to_target_std": [0.3, 0.1, 0.2, 0.5],
                          "n_reached_target": [2, 2, 1, 2], "n_trials": [2, 2, 2, 2]})
    got = measured_seconds(tuned, {"norm": "batch", "data": "mnist1d"})  # a column the view lacks: ignored
    assert list(got["batch_size"]) == [4.0, 16.0] and list(got["seconds"]) == [3.0, 1.0]
    assert measured_seconds(tuned.iloc[:0], {"norm": "batch"}).empty
