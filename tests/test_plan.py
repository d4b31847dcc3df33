from bsweep.plan import expand, single, trial_id
from tests.conftest import TINY


def test_trial_id_is_stable_and_ignores_where_it_runs():
    a = single([*TINY])
    b = single([*TINY, "results_dir=/elsewhere", "device=cpu", "threads=1", "data.root=/x"])
    assert a.trial_id == b.trial_id == trial_id(a.config)
    assert len(a.trial_id) == 12


def test_trial_id_changes_with_the_science():
    base = single([*TINY]).trial_id
    for o in ("lr=0.07", "batch_size=8", "seed=3", "norm=group", "study.budget.epochs=3"):
        assert single([*TINY, o]).trial_id != base, o


def test_expand_takes_the_study_grid_and_cli_sweeps_on_top():
    grid = expand(["study=smoke"])  # smoke: batch_size 16,64 x norm batch,group
    assert len(grid) == 4
    wider = expand(["study=smoke", "lr=0.01,0.1"])
    assert len(wider) == 8
    assert {t.config.lr for t in wider} == {0.01, 0.1}


def test_cli_override_replaces_the_study_grid_for_that_key():
    trials = expand(["study=smoke", "batch_size=8"])
    assert {t.config.batch_size for t in trials} == {8}
    assert len(trials) == 2  # norm batch,group still swept


def test_expand_gives_exactly_what_hydra_composes_for_each_job():
    from omegaconf import OmegaConf

    from bsweep.plan import compose_config

    trials = expand(["study=smoke", "lr=0.01,0.1", "optim=adam", "study.budget.epochs=2",
                     "data.n_train=null", "seed=0,1"])
    assert len(trials) == 16
    for t in trials[::3]:
        full = compose_config(t.overrides)
        assert OmegaConf.to_container(t.config) == OmegaConf.to_container(full), t.overrides
        assert t.trial_id == trial_id(full)
