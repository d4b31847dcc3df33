from omegaconf import OmegaConf, open_dict

from bsweep.plan import expand, single, structured, structured_all, structured_members, trial_id
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


def test_known_configs_keep_their_ids():
    # The on-disk contract: results folders written by earlier versions must keep finding their
    # trials. These ids were computed before the schema gained any key beyond ID_KEYS_V1.
    from bsweep.plan import compose_config

    assert trial_id(compose_config([])) == "721f99917d58"
    # (the smoke study's model was named `cnn` like the default one until it got its own name,
    # `cnn_small`: its trials had id a6d03e5f1f1e; the name is part of the science)
    assert trial_id(compose_config(["study=smoke"])) == "5c30c47ac2d7"


def test_the_pinned_key_list_is_todays_schema_and_a_new_key_hashes_only_off_its_default(monkeypatch):
    from bsweep import plan
    from bsweep.plan import ID_KEYS_V1, compose_config, trial_identity

    cfg = compose_config(["study=smoke"])

    def keys(d, p=""):
        for k, v in d.items():
            yield from keys(v, f"{p}{k}.") if isinstance(v, dict) and v and k != "tags" else [p + k]

    assert set(keys(trial_identity(cfg))) <= ID_KEYS_V1
    # Pretend norm.lrn_size and the whole noise node came after the first release.
    later = {k for k in ID_KEYS_V1 if k == "norm.lrn_size" or k.startswith("noise.")}
    monkeypatch.setattr(plan, "ID_KEYS_V1", ID_KEYS_V1 - later)
    tree = trial_identity(cfg)
    assert "lrn_size" not in tree["norm"] and "noise" not in tree  # at the default: not hashed
    without = trial_id(cfg)
    assert without != "5c30c47ac2d7"  # (the pretence changed the id, as expected)
    assert trial_id(compose_config(["study=smoke", "norm.lrn_size=3"])) != without  # off-default: hashed
    assert trial_id(compose_config(["study=smoke", "noise.enabled=true"])) != without
    assert trial_identity(compose_config(["study=smoke", "noise.pairs=2"]))["noise"] == {"pairs": 2}


def test_structured_members_equal_each_structured_alone():
    # A fused group's members are converted once and copied with their own lr, seed and tags;
    # that must be exactly `structured` of each, also for a member that differs elsewhere.
    trials = expand(["study=smoke", *TINY, "lr=0.01,0.1", "seed=0,3", "+tags.run=a"])
    configs = [OmegaConf.to_container(t.config, resolve=True) for t in trials]
    configs[1]["tags"] = {"run": "b", "n": 2}
    configs[2]["batch_size"] = configs[0]["batch_size"] * 2  # not a member of this group
    members = structured_members(configs)
    assert members == [structured(c) for c in configs]
    assert len({id(m) for m in members}) == len(members) and members[0].data is not members[3].data
    assert [m.lr for m in members] == [c["lr"] for c in configs] and isinstance(members[1].seed, int)


def test_structured_all_converts_a_plan_in_order():
    # a plan's configs, interleaved across structures (Hydra's order), as composed DictConfigs:
    # each converted as `structured` would, in the plan's order
    trials = expand(["study=smoke", *TINY, "lr=0.01,0.1", "seed=0,3", "norm=batch,group", "batch_size=8,16"])
    configs = [t.config for t in trials]
    assert structured_all(configs) == [structured(c) for c in configs]
    assert [c.norm.kind for c in structured_all(configs)] == [t.config.norm.kind for t in trials]


def test_structured_refuses_a_missing_value_instead_of_keeping_the_default():
    # every way to a typed config (the runner, the fused launcher) refuses `???`, not only the plan
    import pytest

    from bsweep.plan import compose_config
    from bsweep.validate import ConfigError

    cfg = OmegaConf.to_container(compose_config([*TINY, "model=custom"]), resolve=True)
    with pytest.raises(ConfigError, match=r"model\._target_ is missing: model=custom needs"):
        structured(cfg)
    ok = OmegaConf.to_container(compose_config(TINY), resolve=True)
    with pytest.raises(ConfigError, match="lr is missing"):
        structured_members([ok, {**ok, "lr": "???"}])


def test_the_plan_file_hands_the_jobs_and_configs_to_hydra_as_hydra_would_expand_them(tmp_path):
    # `bsweep sweep` writes the plan; the sweeper takes its jobs and the fused launcher its
    # configs from the file named in hydra.job.env_set, for this run's overrides only.
    from bsweep.plan import (PLAN_ENV, compose_base, compose_config, job_override_lists, planned_configs,
                             planned_jobs, sweeper_params, task_overrides, write_plan)

    overrides = ["study=smoke", "lr=0.10,0.2", "seed=1", "hydra.job.chdir=false"]
    base = compose_base(overrides)
    trials = expand(overrides, base)
    assert [t.overrides for t in trials] == job_override_lists(sweeper_params(base), task_overrides(overrides))
    assert trials[0].overrides[-2:] == ["lr=0.1", "seed=1"]  # as Hydra's basic sweeper writes them
    path = tmp_path / "plan.json"
    write_plan(path, trials, overrides, base)
    running = compose_config([f"++hydra.job.env_set.{PLAN_ENV}={path}"], with_hydra=True)
    with open_dict(running):
        running.hydra.job.config_name = "config"
    args = task_overrides(overrides)
    assert planned_jobs(running, sweeper_params(base), args) == [t.overrides for t in trials]
    assert planned_jobs(running, sweeper_params(base), args[:-1]) is None  # another command line
    configs = planned_configs([trials[1].overrides, ["lr=0.3"]], running)
    assert configs[0] == OmegaConf.to_container(trials[1].config, resolve=True) and configs[1] is None
    assert trial_id(configs[0]) == trials[1].trial_id
