"""A model and a dataset of the user's own (`_target_`): the examples/ project swept and reported
as the README shows, what bsweep passes to them, and the mistakes it refuses before training."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from bsweep import records
from bsweep.analysis.load import grid_keys, grid_values, load_grid_keys, load_trials
from bsweep.sweep.bench import step_keys
from bsweep.cli import app
from bsweep.config import DataConfig, ModelConfig, NormConfig
from bsweep.train.data import load_data
from bsweep.train.models import make_model
from bsweep.plan import expand, structured
from tests.conftest import EXACT, TINY

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent
EXAMPLES = ["--config-dir", str(REPO / "examples" / "configs")]
WAVES = DataConfig(name="examples.tiny_data.waves", target="examples.tiny_data.waves", kwargs={"n_samples": 400})


@pytest.mark.slow
def test_the_examples_project_sweeps_resumes_and_reports_as_the_readme_shows(results):
    # README: bsweep sweep --config-dir examples/configs study=custom_quick hydra/launcher=bsweep_fused
    args = ["sweep", *EXAMPLES, "study=custom_quick", "hydra/launcher=bsweep_fused",
            f"results_dir={results}", "study.budget.epochs=1", "batch_size=8,32", "lr=0.1"]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "is fused by torch.func.vmap where that stays exact" in " ".join(out.output.split())
    study = results / "custom_quick"
    trials = load_trials(study)
    assert len(trials) == 4 and set(trials["status"]) == {"complete"}
    assert set(trials["model"]) == {"examples.tiny_models.TinyConvNet"}
    assert set(trials["data"]) == {"examples.tiny_data.waves"}
    # the record keeps the model as configured, and the grid sees its keys, not the CNN's
    some = records.read_yaml(records.trial_dir(study, trials["trial_id"][0]) / records.CONFIG_FILE)
    assert some["model"] == {"_target_": "examples.tiny_models.TinyConvNet", "channels": 16}
    keys = load_grid_keys(study)
    assert set(keys.scientific) == {"batch_size", "norm.kind"}
    assert keys.fixed["model.name"] == "examples.tiny_models.TinyConvNet" and "model.width" not in keys.fixed
    assert keys.fixed["data.n_samples"] == 1200 and keys.fixed["data.name"] == "examples.tiny_data.waves"
    # a second run trains nothing again
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "4 already finished, 0 to run" in again.output
    report = runner.invoke(app, ["report", str(study)])
    assert report.exit_code == 0, report.output
    assert (study / "report" / "index.html").is_file()


def test_a_study_of_the_cnn_and_a_model_of_ones_own_varies_model_name():
    planned = expand([*EXAMPLES, *TINY, "model=cnn_small,tiny_convnet", "norm=batch", "batch_size=16"])
    grids = [grid_values(records_config(p.config)) for p in planned]
    keys = grid_keys(grids)
    assert keys.scientific == {"model.name": ["cnn_small", "examples.tiny_models.TinyConvNet"]}
    assert "model._target_" not in keys.fixed


def records_config(cfg) -> dict:
    """A trial's config as its config.yaml holds it (resolved, plain)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def test_bsweep_passes_shape_classes_and_the_studys_norm():
    data = load_data(WAVES)
    assert data.input_shape == (1, 32) and data.n_classes == 4
    spec = ModelConfig(name="x", target="examples.tiny_models.TinyConvNet", kwargs={"channels": 8})
    for kind, layer in (("batch", nn.BatchNorm1d), ("group", nn.GroupNorm), ("none", nn.Identity)):
        net = make_model(data.input_shape, data.n_classes, spec, NormConfig(kind=kind, groups=4))
        assert sum(isinstance(m, layer) for m in net.modules()) == 2
        assert net(data.x_train[:5]).shape == (5, 4)
    weighted = make_model(data.input_shape, data.n_classes, spec, NormConfig(kind="weight"))
    convs = [m for m in weighted.modules() if isinstance(m, nn.Conv1d)]
    assert len(convs) == 2 and all(hasattr(c, "parametrizations") for c in convs)
    assert not hasattr(weighted.classifier, "parametrizations")


def test_a_targets_arguments_are_plain_values_and_nested_targets_are_built():
    spec = ModelConfig(name="x", target="tests.custom_targets.Configurable",
                       kwargs={"widths": [8, 4], "activation": {"_target_": "torch.nn.GELU"}, "extra": {"a": 1}})
    net = make_model((1, 32), 4, spec, NormConfig(kind="none"))  # the model itself asserts the types
    assert isinstance(net.net[2], nn.GELU)


def test_a_dataset_pair_reads_as_the_same_tensors():
    pair = load_data(DataConfig(name="x", target="examples.tiny_data.wave_datasets", kwargs={"n_samples": 400}))
    tensors = load_data(WAVES)
    for a, b in zip((pair.x_train, pair.y_train, pair.x_test, pair.y_test),
                    (tensors.x_train, tensors.y_train, tensors.x_test, tensors.y_test)):
        assert torch.equal(a, b)


def test_a_target_node_is_typed_and_named_as_configured():
    planned = expand([*EXAMPLES, "study=custom_quick", "batch_size=8", "lr=0.1", "norm=batch"])
    cfg = structured(planned[0].config)
    assert cfg.model.target == "examples.tiny_models.TinyConvNet" and cfg.model.kwargs == {"channels": 16}
    assert cfg.data.kwargs == {"n_samples": 1200, "noise": 0.8} and cfg.data.input_norm == "zscore"
    keys = step_keys(cfg)  # bench rows: the names a composed config has
    assert keys["model._target_"] == keys["model.name"] == "examples.tiny_models.TinyConvNet"
    assert keys["model.channels"] == 16
    assert "model.kwargs.channels" not in keys and "model.width" not in keys
    other = expand([*EXAMPLES, "study=custom_quick", "batch_size=8", "lr=0.1", "norm=batch", "model.channels=8"])
    assert other[0].trial_id != planned[0].trial_id


def refused(results, *overrides: str) -> str:
    out = runner.invoke(app, ["sweep", *TINY, f"results_dir={results}", *overrides])
    assert out.exit_code == 2, out.output
    assert "Traceback" not in out.output
    assert not (results / "smoke" / "trials").exists()  # nothing trained
    return " ".join(out.output.split())


@pytest.mark.parametrize("overrides,message", [
    (["model=custom", "model._target_=no_such_pkg.Net"],
     "model._target_=no_such_pkg.Net: cannot import 'no_such_pkg'"),
    (["model=custom", "model._target_=examples.tiny_models.Nope"],
     "'examples.tiny_models' has no 'Nope'; callables there: PlainMLP, TinyConvNet"),
    (["model=custom", "model._target_=examples.tiny_models.TinyConvNet", "+model.chanels=8"],
     "model.chanels is not an argument of examples.tiny_models.TinyConvNet; it takes: channels"),
    (["model=custom", "model._target_=examples.tiny_models.TinyConvNet", "+model.num_classes=3"],
     "model.num_classes: bsweep passes num_classes to examples.tiny_models.TinyConvNet itself"),
    (["model=custom", "model._target_=tests.custom_targets.WrongOutput", "norm=batch"],
     "for a batch of 2 it returned (2, 3); bsweep needs logits of shape (batch, 10)"),
    (["model=custom", "model._target_=tests.custom_targets.not_a_module", "norm=batch"],
     "returned a str, not a torch.nn.Module"),
    (["model=custom", "model._target_=examples.tiny_models.PlainMLP"],  # smoke sweeps norm
     "norm is swept (batch, group) but examples.tiny_models.PlainMLP takes no norm_layer"),
    (["data=custom", "data._target_=tests.custom_targets.float_labels", "data.n_train=null", "data.n_test=null"],
     "the train labels must be class numbers 0, 1, 2, ... (integers >= 0)"),
    (["data=custom", "data._target_=tests.custom_targets.three_things"],
     "returned a tuple of 3 (Tensor, Tensor, Tensor); return (x_train, y_train, x_test, y_test)"),
    (["data=custom", "data._target_=tests.custom_targets.needs_a_size"],
     "tests.custom_targets.needs_a_size needs size: set data.size=..."),
    (["data=custom", "data._target_=examples.tiny_data.waves", "+data.n_samples=100"],
     "data.n_train=256 but the split has 75 samples"),
    (["model._target_=examples.tiny_models.TinyConvNet"],
     "model._target_: the built-in model options take no _target_; for a model of your own choose model=custom"),
])
def test_a_broken_target_is_one_clear_error_before_training(results, overrides, message):
    assert message in refused(results, *overrides)


def test_one_norm_over_a_model_without_norm_layer_is_fine(results):
    out = runner.invoke(app, ["plan", *TINY, f"results_dir={results}", "model=custom",
                              "model._target_=examples.tiny_models.PlainMLP", "norm=none", "+model.hidden=8"])
    assert out.exit_code == 0, out.output
    assert "4 to run" not in out.output and "2 to run" in out.output  # smoke's 2 batch sizes x 1 norm


@pytest.mark.parametrize("norm,optim,lrs", [("group", "sgd", (0.05, 0.01, 0.1)), ("lrn", "adam", (0.003, 0.01, 0.001)),
                                             ("none", "sgd", (0.05, 0.2, 0.01))])
def test_vmap_fused_members_match_their_trials_alone_in_float64(norm, optim, lrs):
    from bsweep.train.fused import VmapFused, build_members
    from tests.conftest import train_alone, train_fused
    from tests.test_fused import RTOL64, assert_same_rows

    planned = expand([*EXAMPLES, *TINY, "model=tiny_convnet", f"norm={norm}", f"optim={optim}", "batch_size=2",
                      "study.budget.epochs=1", f"lr={lrs[0]}"])
    base = structured(planned[0].config)
    cfgs = [dataclasses.replace(base, lr=lr, seed=seed) for lr, seed in zip(lrs, (0, 1, 0))]
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        data = load_data(base.data)
        data = dataclasses.replace(data, x_train=data.x_train.double(), x_test=data.x_test.double())
        assert isinstance(build_members(cfgs, data, EXACT), VmapFused)
        together = train_fused(cfgs, data)
        for cfg, member in zip(cfgs, together):
            assert_same_rows(train_alone(cfg, data), member, RTOL64)
    finally:
        torch.set_default_dtype(old)
    assert len({m.measurements[-1]["test_loss"] for m in together}) == 3  # the members differ


@pytest.mark.parametrize("norm,width", [("group", 4), ("batch", 1), ("weight", 1)])
def test_a_model_of_ones_own_fuses_only_where_vmap_stays_exact(norm, width):
    from bsweep.train.perf import choose_width

    cfg = structured(expand([*EXAMPLES, "study=custom_quick", "batch_size=8", f"norm={norm}", "perf.fuse=4"])[0].config)
    assert choose_width(cfg, load_data(WAVES), n_members=4) == width  # BatchNorm's running stats, weight norm: alone
