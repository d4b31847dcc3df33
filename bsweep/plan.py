"""Study config -> the list of trials it asks for, each with a stable id. No torch here.

A trial's id is a hash of its resolved config without the keys that say where or how it runs
(`RUNTIME_KEYS`), so the same point of the grid has the same id on any machine, in any results
folder, with any launcher. Ids are part of the on-disk contract: a key added to the schema after
`ID_KEYS_V1` enters the hash only when a trial sets it away from its default, so adding a key
never changes the id of a trial that leaves it alone.

`expand` reproduces what Hydra's basic sweeper does with `-m`: the study's
`hydra.sweeper.params` first, the user's overrides on top (a key given twice takes the later
value), then the cartesian product. `bsweep sweep` writes the result to a plan file
(`write_plan`) and names it to Hydra in `hydra.job.env_set` (PLAN_ENV): the `bsweep` sweepers
take their jobs from it and the `bsweep_fused` launcher their configs, so the grid is expanded
and composed once.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import itertools
import json
import os
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from bsweep.config import OWN_DATA_KEYS, RUNTIME_KEYS, TARGET_NODES, Config, register_configs
from bsweep.validate import ConfigError, missing_problems

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"



# Every key the id has hashed since the first release (`tags` as a whole): the schema of
# 2026-11, less RUNTIME_KEYS. Never edit this list; new schema keys are hashed off-default only.
ID_KEYS_V1 = frozenset({
    "base_batch_size", "batch_size", "lr", "lr_scaling", "seed", "tags",
    "data.data_seed", "data.n_test", "data.n_train", "data.name",
    "model.depth", "model.kernel_size", "model.name", "model.width",
    "noise.b_big", "noise.b_small", "noise.ema", "noise.enabled", "noise.every", "noise.pairs",
    "norm.bn_momentum", "norm.groups", "norm.kind", "norm.lrn_size",
    "optim.beta1", "optim.beta2", "optim.eps", "optim.momentum", "optim.name", "optim.nesterov",
    "optim.weight_decay", "schedule.name", "schedule.warmup_fraction",
    "study.budget.epochs", "study.budget.rule", "study.budget.steps", "study.budget.stop_at_target",
    "study.eval.first_samples", "study.eval.growth", "study.eval.max_gap_samples", "study.target",
})


# Cached: building the schema node costs more than the rest of a trial id (docs/performance.md,
# "Planning and sweeping"), and a plan takes one id a trial.
@functools.cache
def _schema_defaults_json() -> str:
    return json.dumps(OmegaConf.to_container(OmegaConf.structured(Config), resolve=True))


def schema_defaults() -> dict:
    """The schema's default value of every key, as a plain nested dict (a fresh copy)."""
    return json.loads(_schema_defaults_json())


def _drop_new_defaults(node: dict, defaults: dict, prefix: str = "") -> None:
    """Remove keys outside ID_KEYS_V1 that sit at their schema default (in place), and nodes
    left empty by it."""
    for key in list(node):
        dotted, value = prefix + key, node[key]
        if dotted in ID_KEYS_V1 or key not in defaults:
            continue
        if isinstance(value, dict) and isinstance(defaults[key], dict):
            _drop_new_defaults(value, defaults[key], dotted + ".")
            if not value and not any(k.startswith(dotted + ".") for k in ID_KEYS_V1):
                del node[key]
        elif value == defaults[key]:
            del node[key]


def trial_identity(cfg: DictConfig | dict) -> dict:
    """The part of a resolved config that defines the trial: RUNTIME_KEYS removed, and keys
    newer than ID_KEYS_V1 kept only where they differ from their default."""
    tree = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    tree = json.loads(json.dumps(tree))  # a deep copy with plain types
    tree.pop("hydra", None)
    for dotted in RUNTIME_KEYS:
        *parents, leaf = dotted.split(".")
        node = tree
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    _drop_new_defaults(tree, schema_defaults())
    return tree


def trial_id(cfg: DictConfig | dict) -> str:
    """12 hex digits of the SHA-256 of the trial's identity, as canonical JSON."""
    canonical = json.dumps(trial_identity(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def study_dir(cfg: DictConfig | Any) -> Path:
    return Path(cfg.results_dir) / cfg.study.name


@dataclass
class PlannedTrial:
    overrides: list[str]  # the job's overrides, as Hydra would pass them
    config: DictConfig  # resolved, without the hydra node
    trial_id: str


def split_overrides(overrides: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(hydra overrides, plain task overrides, sweep task overrides), each in the given order."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    hydra_o, plain, sweep = [], [], []
    for o in parsed:
        if o.is_hydra_override():
            hydra_o.append(o.input_line)
        elif o.is_sweep_override():
            sweep.append(o.input_line)
        else:
            plain.append(o.input_line)
    return hydra_o, plain, sweep


# Hydra's own command-line flags (`bsweep sweep --hydra-help`). Those that only print (config,
# info, help) go to Hydra alone; --config-dir and --config-name change what is composed.
VALUE_FLAGS = ("--config-dir", "-cd", "--config-name", "-cn", "--config-path", "-cp",
               "--package", "-p", "--experimental-rerun")
PRINT_FLAGS = ("--cfg", "-c", "--info", "-i", "--help", "-h", "--hydra-help", "--version",
               "--shell-completion", "-sc")


@dataclass
class CommandLine:
    overrides: list[str]  # key=value arguments
    config_dirs: list[str]  # from --config-dir / -cd, searched before bsweep's own configs
    config_name: str  # from --config-name / -cn
    prints_only: bool  # a flag that makes Hydra print something and train nothing


def parse_command_line(argv: list[str]) -> CommandLine:
    """Split Hydra's flags from the overrides, as Hydra's own argument parser would."""
    line = CommandLine([], [], "config", False)
    args = iter(argv)
    for arg in args:
        if not arg.startswith("-") or arg in ("-m", "--multirun", "--resolve"):
            if not arg.startswith("-"):
                line.overrides.append(arg)
            continue
        name, has_value, value = arg.partition("=")
        if name in PRINT_FLAGS:
            line.prints_only = True
            continue
        if name in VALUE_FLAGS:
            value = value if has_value else next(args, "")
            if name in ("--config-dir", "-cd"):
                line.config_dirs.append(str(Path(value).resolve()))
            elif name in ("--config-name", "-cn"):
                line.config_name = value
    return line


def job_override_lists(sweeper_params: dict, arguments: list[str],
                       parser: OverridesParser | None = None) -> list[list[str]]:
    """The jobs of a sweep: the cartesian product of `hydra.sweeper.params` and the task
    overrides, each job's overrides written as Hydra's basic sweeper writes them (a swept key
    where it first appears, a plain one as `key=value`). `parser`: one with Hydra's config
    loader, for `glob` sweeps over config groups."""
    lines = [f"{k}={v}" for k, v in sweeper_params.items()] + list(arguments)
    by_key: dict[str, list[str]] = {}
    for o in (parser or OverridesParser.create()).parse_overrides(lines):
        key = o.get_key_element()
        if o.is_sweep_override():
            if not o.is_discrete_sweep():
                raise ValueError(f"{o.input_line}: only discrete sweeps (a,b,c or range) are supported")
            by_key[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            by_key[key] = [f"{key}={o.get_value_element_as_str()}"]
    return [list(combo) for combo in itertools.product(*by_key.values())]


def _searchpath(config_dirs: list[str]) -> list[str]:
    """The override that adds a user's --config-dir folders to Hydra's search path."""
    if not config_dirs:
        return []
    return ["hydra.searchpath=[" + ",".join(f"file://{d}" for d in config_dirs) + "]"]


def compose_config(
    overrides: list[str], with_hydra: bool = False, config_dirs: list[str] = (), config_name: str = "config"
) -> DictConfig:
    """Compose configs/config.yaml with overrides, as `bsweep run` would (no multirun)."""
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name, overrides=[*_searchpath(list(config_dirs)), *overrides],
                       return_hydra_config=with_hydra)


def _is_plain_value(o) -> bool:
    """`key=value` on a key that is not a config group: settable on a composed config directly."""
    return (
        o.is_sweep_override() is False
        and not (o.is_add() or o.is_delete() or o.is_force_add())
        and o.package is None
        and not (CONFIG_DIR / o.key_or_group).is_dir()
    )


def split_job(parser: OverridesParser, job: list[str]) -> tuple[tuple[str, ...], list]:
    """A job's overrides as (the ones that shape the composition, the plain `key=value` ones):
    jobs with the same first part compose to the same config before their plain values are set,
    so one composition serves them all (`apply_values`)."""
    parsed = parser.parse_overrides(job)
    return (tuple(o.input_line for o in parsed if not _is_plain_value(o)),
            [o for o in parsed if _is_plain_value(o)])


def apply_values(cfg: DictConfig, values: list) -> DictConfig:
    """A copy of composed `cfg` with plain overrides (from `split_job`) set, as Hydra sets them."""
    cfg = copy.deepcopy(cfg)
    for o in values:
        OmegaConf.update(cfg, o.key_or_group, o.value(), merge=False)
    return cfg


def compose_base(overrides: list[str]) -> DictConfig:
    """The sweep's config before its sweeps: its hydra and plain overrides composed, the `hydra`
    node kept. `expand` starts from it; `bsweep sweep` reads its launcher and sweeper there."""
    line = parse_command_line(overrides)
    hydra_o, plain, _ = split_overrides(line.overrides)
    return compose_config(hydra_o + plain, True, line.config_dirs, line.config_name)


def task_overrides(overrides: list[str]) -> list[str]:
    """The overrides Hydra hands its sweeper (`hydra.overrides.task`): all but `hydra.*`, in
    the order given."""
    line = parse_command_line(overrides)
    parsed = OverridesParser.create().parse_overrides(line.overrides)
    return [o.input_line for o in parsed if not o.is_hydra_override()]


def sweeper_params(base: DictConfig) -> dict[str, str]:
    """`hydra.sweeper.params` of a composed config (`hydra` node kept), as text."""
    params = base.hydra.sweeper.get("params") or {}
    return {str(k): str(v) for k, v in params.items()}


def expand(overrides: list[str], base: DictConfig | None = None) -> list[PlannedTrial]:
    """Every trial `bsweep sweep OVERRIDES` would launch, in Hydra's order, each job's
    overrides as Hydra's sweeper writes them. `base`: `compose_base(overrides)` when the caller
    has it already.

    Jobs that choose the same config groups share one composition and get their plain
    `key=value` overrides set on a copy, which is what Hydra does after composing (see
    docs/performance.md, "Planning and sweeping"); any override that is not that simple (or
    fails) takes Hydra's full compose.
    """
    line = parse_command_line(overrides)
    search = _searchpath(line.config_dirs)
    base = compose_base(overrides) if base is None else base
    parser = OverridesParser.create()
    composed: dict[tuple[str, ...], DictConfig] = {}
    trials = []
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for job in job_override_lists(sweeper_params(base), task_overrides(overrides), parser):
            structure, values = split_job(parser, job)
            try:
                if structure not in composed:
                    composed[structure] = compose(line.config_name, overrides=[*search, *structure])
                cfg = apply_values(composed[structure], values)
            except Exception:  # let Hydra itself compose it, and say what is wrong
                cfg = compose(line.config_name, overrides=[*search, *job])
            trials.append(PlannedTrial(job, cfg, trial_id(cfg)))
    return trials


# The key of `hydra.job.env_set` that names a sweep's plan file (`write_plan`). Hydra hands
# env_set to the sweeper and launcher in their config, whichever they are, and sets it in each
# job's environment (where nothing reads it).
PLAN_ENV = "BSWEEP_PLAN"


def write_plan(path: Path, trials: list[PlannedTrial], overrides: list[str], base: DictConfig) -> None:
    """The plan handed to Hydra: what it was made from (config name, --config-dir folders,
    sweeper params, task overrides) and each job's overrides, trial id and resolved config."""
    from bsweep.records import write_json

    line = parse_command_line(overrides)
    write_json(path, {
        "config_name": line.config_name, "config_dirs": list(line.config_dirs),
        "params": sweeper_params(base), "arguments": task_overrides(overrides),
        "jobs": [{"overrides": list(t.overrides), "trial_id": t.trial_id,
                  "config": OmegaConf.to_container(t.config, resolve=True)} for t in trials],
    })


def plan_file(hydra_cfg: DictConfig) -> Path | None:
    """The plan file a running Hydra's config (`hydra` node included) names; None without one."""
    env = OmegaConf.select(hydra_cfg, "hydra.job.env_set", default=None) or {}
    return Path(str(env[PLAN_ENV])) if env.get(PLAN_ENV) else None


def read_plan(hydra_cfg: DictConfig) -> dict | None:
    """The plan `bsweep sweep` wrote for this Hydra run, when its config names one that exists
    and it was made from the same config name and --config-dir folders; else None."""
    path = plan_file(hydra_cfg)
    if path is None or not path.is_file():
        return None
    with open(path) as f:
        plan = json.load(f)
    name = str(hydra_cfg.hydra.job.config_name)
    dirs = [str(s.path) for s in hydra_cfg.hydra.runtime.config_sources if s.provider == "command-line"]
    return plan if (plan["config_name"], plan["config_dirs"]) == (name, dirs) else None


def planned_jobs(hydra_cfg: DictConfig, params: dict, arguments: list[str]) -> list[list[str]] | None:
    """The jobs of the plan for this Hydra run (`read_plan`), when it was made from these
    sweeper params and task overrides; else None (the sweeper expands them itself)."""
    plan = read_plan(hydra_cfg)
    given = ({str(k): str(v) for k, v in (params or {}).items()}, list(arguments))
    if plan is None or (plan["params"], plan["arguments"]) != given:
        return None
    return [list(job["overrides"]) for job in plan["jobs"]]


def planned_configs(jobs: list[list[str]], hydra_cfg: DictConfig) -> list[dict | None]:
    """For each job (its override list), the resolved task config the plan for this Hydra run
    holds for it (`read_plan`); None for a job it does not hold (a bracketing round's new lr)."""
    plan = read_plan(hydra_cfg)
    by_job = {tuple(job["overrides"]): job["config"] for job in (plan or {}).get("jobs", [])}
    return [by_job.get(tuple(job)) for job in jobs]


def single(overrides: list[str], command: str = "bsweep run") -> PlannedTrial:
    """The one trial `bsweep run OVERRIDES` trains (the study's grid is not expanded); `command`
    names the command that asked, in the error for a sweep's values."""
    line = parse_command_line(overrides)
    hydra_o, plain, sweep = split_overrides(line.overrides)
    if sweep:
        raise ConfigError(
            f"`{command}` takes one setting, but {' '.join(sweep)} asks for several; "
            f"run it once per setting, or use `bsweep sweep` for a grid"
        )
    cfg = compose_config(hydra_o + plain, False, line.config_dirs, line.config_name)
    return PlannedTrial(plain, cfg, trial_id(cfg))


def fusion_key(cfg) -> str:
    """Trials with the same key can share a fused model: everything equal but `lr` and `seed`
    (and the trial's free-form tags). Runtime keys (device, threads, perf) are part of the key:
    a group runs in one place."""
    if isinstance(cfg, DictConfig):
        tree = OmegaConf.to_container(cfg, resolve=True)
    else:
        tree = asdict(cfg) if is_dataclass(cfg) else cfg
    tree = json.loads(json.dumps(tree, default=str))
    for key in ("hydra", "lr", "seed", "tags"):
        tree.pop(key, None)
    canonical = json.dumps(tree, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def absolute_results_dir(config: dict) -> None:
    """Make a relative results_dir absolute against the directory Hydra was started from, so
    jobs that run elsewhere (submitit, a cluster node, a worker process) write into the same
    study folder."""
    if not os.path.isabs(config["results_dir"]):
        try:
            from hydra.utils import to_absolute_path

            config["results_dir"] = to_absolute_path(config["results_dir"])
        except Exception:  # Hydra not initialized: relative to the current directory
            config["results_dir"] = os.path.abspath(config["results_dir"])


def point(config: Config) -> str:
    """A trial's place in one line, for logs: batch size, lr, norm, seed."""
    return f"bs={config.batch_size} lr={config.lr:g} norm={config.norm.kind} seed={config.seed}"


@functools.cache
def _schema() -> DictConfig:
    # Building the schema node is half of `structured`'s time (docs/performance.md, "Planning
    # and sweeping"); merge copies it, so one node serves every call.
    return OmegaConf.structured(Config)


def structured(config: dict | DictConfig) -> Config:
    """A resolved config (a dict or a composed DictConfig) as the typed schema (defaults for
    keys it lacks); a `_target_` node as its typed form (`typed_targets`)."""
    if isinstance(config, DictConfig):
        config = OmegaConf.to_container(config, resolve=True)
    _refuse_missing(config)
    return OmegaConf.to_object(OmegaConf.merge(_schema(), typed_targets(config)))


def _refuse_missing(config: dict) -> None:
    """Raise ConfigError for a `???` left in `config`: the merge would keep the schema's default
    there (a `_target_` left out: the built-in model or data) and train what nobody asked for.
    The plan says so first (`validate.check_keys`); this guards every other way in."""
    found = missing_problems(config)
    if found:
        raise ConfigError("\n".join(found))


def typed_targets(config: dict) -> dict:
    """`config` with each `_target_` node (model, data) in the schema's shape: `name` and
    `target` the import path, `kwargs` the node's keys the schema does not own (for data, every
    key but DatasetConfig's own; for a model, every key). A shallow copy; `config` is unchanged."""
    config = dict(config)
    for name in TARGET_NODES:
        node = config.get(name)
        if not isinstance(node, dict) or "_target_" not in node:
            continue
        own = OWN_DATA_KEYS if name == "data" else ()
        config[name] = {"name": str(node["_target_"]), "target": node["_target_"],
                        "kwargs": {k: v for k, v in node.items() if k != "_target_" and k not in own},
                        **{k: v for k, v in node.items() if k in own}}
    return config


# What the members of one fusion group may differ in (the keys `fusion_key` leaves out).
MEMBER_KEYS = ("hydra", "lr", "seed", "tags")


def structured_members(configs: list[dict]) -> list[Config]:
    """`structured` of each config of one fusion group. The schema merge (docs/performance.md,
    "Planning and sweeping") runs once: every other member whose
    config differs only in MEMBER_KEYS is a copy of the first with its own lr, seed and tags,
    converted by the same schema; any other member is merged in full."""
    first = structured(configs[0])
    shared = {k: v for k, v in configs[0].items() if k not in MEMBER_KEYS}
    out = [first]
    for config in configs[1:]:
        if {k: v for k, v in config.items() if k not in MEMBER_KEYS} != shared:
            out.append(structured(config))
            continue
        own = {k: config[k] for k in ("lr", "seed", "tags") if k in config}
        _refuse_missing(own)
        typed = OmegaConf.to_object(OmegaConf.merge(_member_schema(), own))
        out.append(dataclasses.replace(copy.deepcopy(first), lr=typed.lr, seed=typed.seed, tags=typed.tags))
    return out


def structured_all(configs: list[dict | DictConfig]) -> list[Config]:
    """`structured` of every config, in order, at `structured_members`' cost: configs that
    differ only in MEMBER_KEYS share one schema merge (paid before any worker starts)."""
    plain = [OmegaConf.to_container(c, resolve=True) if isinstance(c, DictConfig) else c for c in configs]
    groups: dict[str, list[int]] = {}
    for i, config in enumerate(plain):
        shared = {k: v for k, v in config.items() if k not in MEMBER_KEYS}
        groups.setdefault(json.dumps(shared, sort_keys=True, default=repr), []).append(i)
    out: list[Config | None] = [None] * len(plain)
    for indices in groups.values():
        for i, typed in zip(indices, structured_members([plain[i] for i in indices])):
            out[i] = typed
    return out  # type: ignore[return-value]


@dataclasses.dataclass
class _MemberKeys:  # the schema's own types for a member's keys, as Config declares them
    lr: float = Config.lr
    seed: int = Config.seed
    tags: dict[str, Any] = dataclasses.field(default_factory=dict)


@functools.cache  # as `_schema`
def _member_schema() -> DictConfig:
    return OmegaConf.structured(_MemberKeys)
