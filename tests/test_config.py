import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from bsweep.config import DATASETS, MODELS, NORMS, OPTIMIZERS, SCHEDULES, Config
from bsweep.plan import CONFIG_DIR, compose_config, expand
from tests.conftest import compose

PRESETS = sorted(p.stem for p in (CONFIG_DIR / "study").glob("*.yaml"))


def test_presets_named_in_the_issue_exist():
    assert {"claims", "claims_quick", "digits_quick", "adam_quick", "norm", "smoke", "default"} <= set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_and_expands(preset):
    cfg = compose([f"study={preset}"])
    assert isinstance(cfg, Config)
    assert cfg.study.name == preset
    assert 0 < cfg.study.target <= 1
    trials = expand([f"study={preset}"])
    assert len({t.trial_id for t in trials}) == len(trials)  # no two grid points share an id


@pytest.mark.parametrize(
    "group,choices",
    [("data", DATASETS + ("custom",)), ("model", MODELS + ("custom",)), ("norm", NORMS),
     ("optim", OPTIMIZERS), ("schedule", SCHEDULES)],
)
def test_config_groups_offer_exactly_the_known_choices(group, choices):
    # `custom`: a `_target_` of the user's own (docs/custom.md)
    assert {p.stem for p in (CONFIG_DIR / group).glob("*.yaml")} == set(choices)


@pytest.mark.parametrize("norm", NORMS)
def test_norm_choice_sets_the_kind(norm):
    assert compose([f"norm={norm}"]).norm.kind == norm


def test_misspelt_key_is_an_error_naming_the_key():
    with pytest.raises(ConfigCompositionException) as e:
        compose_config(["optim.momentun=0.5"])
    assert "momentun" in str(e.value)


def test_wrong_type_is_an_error_naming_the_key():
    with pytest.raises((ConfigCompositionException, ValidationError)) as e:
        compose_config(["batch_size=lots"])
    assert "batch_size" in str(e.value)


def test_unknown_group_option_lists_the_choices():
    with pytest.raises(Exception) as e:
        compose_config(["norm=banana"])
    assert "banana" in str(e.value) and "group" in str(e.value)


def test_claims_grid_spans_batch_one_to_the_training_set():
    trials = expand(["study=claims"])
    sizes = sorted({t.config.batch_size for t in trials})
    n_train = trials[0].config.data.n_train
    assert sizes[0] == 1 and sizes[-1] == n_train
    assert {t.config.norm.kind for t in trials} >= {"batch", "group"}
    assert len({t.config.seed for t in trials}) >= 3
