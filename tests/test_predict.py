"""`bsweep predict` end to end on a tiny study, and the choices it makes on the way."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from bsweep.cli import app
from bsweep.sweep import predict as pr
from bsweep.sweep.reproduce import predict_overrides
from bsweep.sweep.bracket import nearest_lrs
from bsweep.sweep.verify import first_sizes

runner = CliRunner()
# 384 steps of budget at the pilot's batch 4: the pilot reached smoke's 30 % in 150-184 steps
TINY = ["study=smoke", "data.n_train=256", "data.n_test=128", "study.budget.epochs=6"]


def strict_json(path) -> dict:
    def refuse(constant: str):
        raise ValueError(f"{path} holds {constant}, which is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.mark.slow(seconds=40)
def test_predict_then_verify_on_a_tiny_study(tmp_path):
    results = tmp_path / "results"
    out = runner.invoke(app, ["predict", "--verify", *TINY, f"results_dir={results}"])
    assert out.exit_code == 0, out.output
    folder = results / "smoke" / "predict" / "mnist1d-cnn_small-batch-sgd"
    prediction = strict_json(folder / "predict.json")
    assert (folder / "predict.png").stat().st_size > 0
    # the pilot and its branches stay well inside the 256 training examples
    b0, lr0 = prediction["pilot"]["batch_size"], prediction["pilot"]["lr"]
    assert b0 <= 256 // pr.SPACE and math.isfinite(prediction["pilot"]["steps_to_target"])
    assert prediction["branches"] and all(b["batch_size"] <= 256 // 4 for b in prediction["branches"])
    for b in prediction["branches"]:  # each branch's lr is its rule's
        assert b["lr"] == pytest.approx(lr0 * (b["batch_size"] / b0) ** b["rule"])
    assert {b["from_step"] for b in prediction["branches"]} >= {0}
    assert prediction["noise"]["points"] >= 2 and prediction["bench"][0]["batch_size"] == 1
    assert prediction["optimum"]["batch_size"] in [row["batch_size"] for row in prediction["bench"]]
    assert 0 < prediction["wall_seconds"] and 0 < prediction["core_seconds"]
    assert "predicted from one pilot" in out.output and "fastest to target" in out.output
    # --verify trained ordinary records of the study, 2 seeds a point, and compared
    verify = prediction["verify"]
    assert verify is not None and verify["batch_sizes"] and isinstance(verify["held"], bool)
    assert "verified" in out.output
    trials = list((results / "smoke" / "trials").iterdir())
    assert len(trials) >= 2 * 3 * len(verify["batch_sizes"])
    # `bsweep report` reads them, and shows the prediction beside its answer
    report = runner.invoke(app, ["report", "--no-figures", str(results / "smoke")])
    assert report.exit_code == 0, report.output
    assert "predicted from one pilot" in report.output
    assert "predicted from one pilot" in (results / "smoke" / "report" / "index.html").read_text()


def test_a_mistake_is_one_line_before_anything_trains(tmp_path):
    out = runner.invoke(app, ["predict", "nrom=batch", f"results_dir={tmp_path}"])
    assert out.exit_code == 2 and "error:" in out.output and "Traceback" not in out.output
    assert not list(tmp_path.iterdir())
    # a grid's values: one prediction is one setting, and the error names this command
    out = runner.invoke(app, ["predict", "norm=batch,group", f"results_dir={tmp_path}"])
    assert out.exit_code == 2 and "`bsweep predict` takes one setting" in " ".join(out.output.split())
    assert not list(tmp_path.iterdir())


@pytest.mark.slow(seconds=15)
def test_a_pilot_that_never_reaches_the_target_says_so(tmp_path):
    out = runner.invoke(app, ["predict", *TINY, "study.target=0.999", "study.budget.epochs=0.5",
                              f"results_dir={tmp_path}"])
    assert out.exit_code == 1, out.output
    assert "did not reach the target" in out.output and "Traceback" not in out.output


def test_study_name_defaults_to_predict_unless_named():
    assert pr.with_default_study(["norm=group"])[-1] == "study.name=predict"
    assert pr.with_default_study(["study=claims_quick"]) == ["study=claims_quick"]
    assert pr.with_default_study(["study.name=mine"]) == ["study.name=mine"]


def test_pilot_batch_size_is_where_examples_get_cheap_within_the_training_set():
    # per-example cost falls until batch 64, then flat: the smallest within 2x of the cheapest
    cpu = {b: 1e-3 * max(1.0, b / 64) for b in (1, 2, 4, 8, 16, 32, 64, 128, 256)}
    assert pr.pilot_batch_size(cpu, 100_000)[0] == 32
    # a step that costs the same at every batch size (a GPU's small model): the cap, n / 64
    flat = {2**i: 1e-3 for i in range(12)}
    assert pr.pilot_batch_size(flat, 4000)[0] == 32
    assert pr.pilot_batch_size(flat, 1437)[0] == 16
    # never below the floor, unless the cap is
    steep = {b: 1e-3 * b for b in (1, 2, 4, 8, 16)}
    assert pr.pilot_batch_size(steep, 100_000)[0] == pr.MIN_PILOT_BATCH
    assert pr.pilot_batch_size(steep, 256)[0] == 4


def rows_from_model(b0: int, b_crit: float, starts: dict[int, float]) -> list[dict]:
    """Branches whose steps follow S(B) = S_min (1 + B_crit / B) exactly; `starts`: start step ->
    the pilot's steps from there."""
    rows = []
    for start, left in starts.items():
        s_min = left / (1 + b_crit / b0)
        for k in (2, 4, 8, 16):
            for rule in pr.LR_RULES:
                steps = s_min * (1 + b_crit / (k * b0)) * (1.0 if rule == 0.5 else 1.3)
                rows.append({"from_step": start, "k": k, "batch_size": k * b0, "rule": rule, "steps": steps})
    return rows


def test_branch_fit_recovers_the_critical_batch_size_of_exact_branches():
    rows = rows_from_model(32, 300.0, {0: 400.0, 200: 200.0})
    fit = pr.branch_fit(rows, 32, 400.0)
    assert fit["b_crit"] == pytest.approx(300.0, rel=1e-6)
    assert fit["batch_sizes"].count(32) == 2  # the pilot is each start's k = 1 branch
    exponent, text = pr.lr_rule(rows)
    assert exponent == 0.5 and "square-root" in text


def test_a_tie_between_lr_rules_goes_to_the_rule_tried_first():
    rows = [{"from_step": 0, "batch_size": 64, "rule": rule, "steps": 50.0} for rule in pr.LR_RULES]
    assert pr.lr_rule(rows)[0] == pr.LR_RULES[0]


def test_critical_batch_falls_back_to_the_noise_scale_and_says_so():
    fit = {"b_crit": math.nan, "b_crit_lo": math.nan, "b_crit_hi": math.nan, "reason": "too few"}
    noise = {"b_simple": 120.0, "lo": 80.0, "hi": 200.0, "reason": ""}
    crit, weak = pr.critical_of(fit, noise, 32)
    assert crit["source"] == "noise scale" and crit["estimate"] == 120.0
    assert any("no fit" in w for w in weak)


def test_prediction_json_has_no_nan():
    assert pr.plain({"a": math.nan, "b": [math.inf, 1.0], "c": {"d": float("-inf")}}) == \
        {"a": None, "b": [None, 1.0], "c": {"d": None}}


def test_verify_grid_is_a_step_of_four_around_the_prediction():
    assert first_sizes(64, 4000) == [16, 64, 256]
    assert first_sizes(2, 4000) == [2, 8]
    assert nearest_lrs(0.05) == [0.01, 0.03, 0.1]  # log-nearest: 0.03, then 0.1, then 0.01 before 0.3
    assert nearest_lrs(0.1) == [0.03, 0.1, 0.3]


def test_reproduce_gives_the_predictor_the_study_and_leaves_out_the_grid():
    got = predict_overrides("claims_quick", "res", ["batch_size=16,64", "lr=0.05", "data.n_train=256",
                                                    "hydra.sweeper.max_rounds=0"], "group")
    assert got == ["study=claims_quick", "results_dir=res", "norm=group", "data.n_train=256"]


@pytest.mark.slow(seconds=15)
def test_predict_takes_a_model_and_dataset_of_ones_own(tmp_path):
    # the examples/ project: its data has no size in the config; the loaded data's size is used
    from pathlib import Path

    configs = Path(__file__).resolve().parent.parent / "examples" / "configs"
    out = runner.invoke(app, ["predict", "--config-dir", str(configs), "study=custom_quick", "norm=group",
                              f"results_dir={tmp_path}"])
    assert out.exit_code == 0, out.output
    folder = tmp_path / "custom_quick" / "predict" / "waves-TinyConvNet-group-sgd"
    prediction = strict_json(folder / "predict.json")
    assert prediction["setting"]["model.name"] == "examples.tiny_models.TinyConvNet"
    assert prediction["n_train"] < 1200 and prediction["pilot"]["batch_size"] <= prediction["n_train"] // pr.SPACE
