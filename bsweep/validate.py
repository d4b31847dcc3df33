"""Check a composed trial config before any training starts; say what is wrong and what is allowed.

OmegaConf already rejects unknown keys and wrong types (the schema in config.py); this module
checks values and combinations the schema cannot express. No torch import: it runs on plans.
"""

from __future__ import annotations

import difflib
import re
import tempfile
from dataclasses import fields, is_dataclass
from pathlib import Path

from bsweep.config import (
    DATASETS,
    DEVICES,
    INPUT_NORMS,
    LR_SCALINGS,
    MODELS,
    NEVER_NUISANCE,
    NORMS,
    NUISANCE_KEYS,
    OPTIMIZERS,
    ORDERS,
    SCHEDULES,
    TARGET_NODES,
    CNNConfig,
    Config,
    DatasetConfig,
    grid_defaults,
    perf_setting,
    train_size,
)


from bsweep.targets import DATA_GIVES, MODEL_GIVES, TargetError, accepts, kwargs_problems, locate


class ConfigError(ValueError):
    """A user mistake in the configuration; the message says what is wrong and what is allowed."""


# The files each torchvision set needs under data.root, as torchvision (MNIST, FashionMNIST) and
# bsweep's own CIFAR reader (data._cifar10) look for them. Checked at plan time, without loading,
# so a missing set stops the sweep before the first trial rather than failing every trial.
_MNIST_RAW = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
DATA_FILES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(f"MNIST/raw/{f}" for f in _MNIST_RAW),
    "fashion_mnist": tuple(f"FashionMNIST/raw/{f}" for f in _MNIST_RAW),
    "cifar10": tuple(f"cifar-10-batches-py/{f}" for f in
                     ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                      "data_batch_5", "test_batch")),
}


def missing_data_files(name: str, root: str) -> list[str]:
    """The files of dataset `name` that are missing under `root` (empty for generated sets)."""
    return [f for f in DATA_FILES.get(name, ()) if not (Path(root) / f).is_file()]


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> list[str]:
    if value in allowed:
        return []
    return [f"{name}={value!r} is not known; choose one of: {', '.join(allowed)}"]


def nuisance_problems(keys: list[str]) -> list[str]:
    """What is wrong with `study.nuisance`: every entry a grid key, lr and seed among them."""
    grid = grid_defaults()
    out = []
    missing = [k for k in NUISANCE_KEYS if k not in keys]
    if missing:
        out.append(f"study.nuisance={keys} must include {' and '.join(missing)}: bsweep tunes lr and "
                   f"averages over seeds; add keys to tune them with lr, e.g. [lr, seed, optim.momentum]")
    for key in keys:
        if key in NEVER_NUISANCE:
            out.append(f"study.nuisance: {key} names what a study compares, so it is scientific or "
                       f"fixed; nuisance keys are tuned away (allowed: lr, seed and keys such as "
                       f"optim.momentum, optim.weight_decay, schedule.warmup_fraction)")
        elif key not in grid:
            close = difflib.get_close_matches(key, list(grid), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            out.append(f"study.nuisance: {key!r} is not a config key a study can vary{hint}")
    return out


# A study is one folder directly under results_dir: a name with a separator, `.` or `..` would
# write elsewhere (`../x`, `/tmp/x`) or one level too deep (`a/b`), where `bsweep status` looks not.
STUDY_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def study_name_problems(name: str) -> list[str]:
    """What is wrong with `study.name` as one folder name under results_dir."""
    if STUDY_NAME.fullmatch(name) and name not in (".", ".."):
        return []
    return [f"study.name={name!r} is not one folder name: use letters, digits, '-', '_' and '.' "
            f"(not '.' or '..'), e.g. study.name=my_study; the study's folder is results_dir/<name>"]


def problems(cfg: Config) -> list[str]:
    """Every problem found in one trial's config (empty when it is fine)."""
    return _point_problems(cfg) + _study_problems(cfg) + _rule_and_noise_problems(cfg) + _runtime_problems(cfg)


def _point_problems(cfg: Config) -> list[str]:
    """The names, sizes and lr of the point trained, and the built-in CNN's keys."""
    out: list[str] = study_name_problems(cfg.study.name)
    if cfg.data.target is None:
        out += _choice("data.name", cfg.data.name, DATASETS)
    out += _choice("norm.kind", cfg.norm.kind, NORMS)
    if cfg.model.target is None:
        out += _choice("model.name", cfg.model.name, MODELS)
    out += target_problems(cfg)
    out += _choice("optim.name", cfg.optim.name, OPTIMIZERS)
    out += _choice("schedule.name", cfg.schedule.name, SCHEDULES)
    if not (cfg.device in DEVICES or cfg.device.startswith(("cuda:", "mps:"))):
        out.append(f"device={cfg.device!r} is not known; choose one of: {', '.join(DEVICES)}, cuda:N")
    if cfg.data.name in DATASETS:
        n = train_size(cfg.data)
        if not 1 <= cfg.batch_size <= n:
            out.append(f"batch_size={cfg.batch_size} must be between 1 and the training-set size {n}")
    if cfg.data.n_train is not None and cfg.data.n_train <= 0:
        out.append(f"data.n_train={cfg.data.n_train} must be positive (or null for the full split)")
    if cfg.data.n_test is not None and cfg.data.n_test <= 0:
        out.append(f"data.n_test={cfg.data.n_test} must be positive (or null for the full split)")
    if not cfg.lr > 0:
        out.append(f"lr={cfg.lr} must be a number > 0")
    if cfg.model.target is None:  # the built-in CNN's keys (a model of one's own: its signature)
        if cfg.norm.kind == "group" and (cfg.norm.groups <= 0 or cfg.model.width % cfg.norm.groups):
            out.append(
                f"norm.groups={cfg.norm.groups} must divide model.width={cfg.model.width}; "
                f"allowed: {', '.join(str(g) for g in range(1, cfg.model.width + 1) if cfg.model.width % g == 0)}"
            )
        if cfg.model.width < 1 or cfg.model.depth < 1:
            out.append(f"model.width={cfg.model.width} and model.depth={cfg.model.depth} must be >= 1")
        if cfg.model.kernel_size < 1 or cfg.model.kernel_size % 2 == 0:
            out.append(f"model.kernel_size={cfg.model.kernel_size} must be odd and >= 1")
    return out


def _study_problems(cfg: Config) -> list[str]:
    """The study's target, memory limit, budget, nuisance keys, cadence and warm-up."""
    out: list[str] = []
    if not 0 < cfg.study.target <= 1:
        out.append(f"study.target={cfg.study.target} must be an accuracy in (0, 1]")
    if cfg.study.memory_limit_gib is not None and not cfg.study.memory_limit_gib > 0:
        out.append(f"study.memory_limit_gib={cfg.study.memory_limit_gib} must be > 0 GiB "
                   "(or null: the device's memory)")
    budget = cfg.study.budget
    if budget.epochs is None and budget.steps is None:
        out.append("study.budget needs epochs or steps (or both); both are null")
    if budget.rule not in ("any", "all"):
        out.append(f"study.budget.rule={budget.rule!r} is not known; choose one of: any, all")
    if budget.epochs is not None and budget.epochs <= 0:
        out.append(f"study.budget.epochs={budget.epochs} must be > 0 (or null)")
    if budget.steps is not None and budget.steps <= 0:
        out.append(f"study.budget.steps={budget.steps} must be > 0 (or null)")
    out += nuisance_problems(list(cfg.study.nuisance))
    cadence = cfg.study.eval
    if cadence.growth <= 1 or cadence.first_samples < 1 or cadence.max_gap_samples < 1:
        out.append(
            f"study.eval needs growth > 1 and first_samples, max_gap_samples >= 1 "
            f"(got {cadence.growth}, {cadence.first_samples}, {cadence.max_gap_samples})"
        )
    if not 0 <= cfg.schedule.warmup_fraction < 1:
        out.append(f"schedule.warmup_fraction={cfg.schedule.warmup_fraction} must be in [0, 1)")
    return out


def _rule_and_noise_problems(cfg: Config) -> list[str]:
    """The lr rule, the inputs' normalization and order, and the gradient measurements."""
    out = _choice("lr_scaling", cfg.lr_scaling, LR_SCALINGS)
    out += _choice("data.input_norm", cfg.data.input_norm, INPUT_NORMS)
    out += _choice("data.order", cfg.data.order, ORDERS)
    if cfg.base_batch_size < 1:
        out.append(f"base_batch_size={cfg.base_batch_size} must be >= 1")
    if cfg.noise.enabled and not 1 <= cfg.noise.b_small < cfg.noise.b_big:
        out.append(
            f"noise.b_small={cfg.noise.b_small} and noise.b_big={cfg.noise.b_big} need "
            f"1 <= b_small < b_big"
        )
    if cfg.noise.enabled and (cfg.noise.pairs < 1 or cfg.noise.every < 1 or not 0 < cfg.noise.ema <= 1):
        out.append("noise.pairs and noise.every must be >= 1 and noise.ema in (0, 1]")
    if cfg.noise.cosine_at and not all(0 < share <= 1 for share in cfg.noise.cosine_at):
        out.append(f"noise.cosine_at={list(cfg.noise.cosine_at)} must be shares of the budget in (0, 1]")
    if cfg.noise.cosine_at and (cfg.noise.cosine_draws < 2 or not cfg.noise.cosine_batch_sizes
                                or min(cfg.noise.cosine_batch_sizes) < 1):
        out.append(f"noise.cosine_draws={cfg.noise.cosine_draws} must be >= 2 and noise.cosine_batch_sizes="
                   f"{list(cfg.noise.cosine_batch_sizes)} a non-empty list of sizes >= 1")
    return out


def _runtime_problems(cfg: Config) -> list[str]:
    """How the trial runs: perf settings, threads, and dataset files on disk."""
    out: list[str] = []
    for name in ("amp", "channels_last", "compile"):
        try:
            perf_setting(getattr(cfg.perf, name), name)
        except ValueError as e:
            out.append(str(e))
    fuse = str(cfg.perf.fuse).strip().lower()
    if fuse not in ("auto", "off") and not (fuse.isdigit() and int(fuse) >= 1):
        out.append(f"perf.fuse={cfg.perf.fuse!r} is not known; choose auto, off or a width >= 1")
    if cfg.threads is not None and cfg.threads < 1:
        out.append(f"threads={cfg.threads} must be >= 1 (or null for torch's default)")
    if cfg.data.name in DATA_FILES and not cfg.data.download:
        missing = missing_data_files(cfg.data.name, cfg.data.root)
        if missing:
            out.append(
                f"data={cfg.data.name}: {len(missing)} of its files are missing under "
                f"data.root={cfg.data.root!r} (first: {missing[0]}); put the files there, point "
                f"data.root=... at them, or set data.download=true"
            )
    return out


def target_problems(cfg: Config) -> list[str]:
    """What is wrong with the config's `_target_`s (model, data): not importable, or keyword
    arguments its signature does not take. Imports the user's module (not bsweep's torch code)."""
    out = []
    for node, spec, gives in (("model", cfg.model, MODEL_GIVES), ("data", cfg.data, DATA_GIVES)):
        if spec.target is None:
            continue
        try:
            fn = locate(spec.target, f"{node}._target_")
        except TargetError as e:
            out.append(str(e))
            continue
        out += kwargs_problems(fn, dict(spec.kwargs), node, spec.target, gives)
    return out


def study_problems(configs: list[Config]) -> list[str]:
    """What is wrong across a study's trials rather than in one: `norm` swept over a model of
    the user's own that takes no `norm_layer`, whose trials would then differ in name only and
    be analysed as different norms."""
    out = []
    norms: dict[str, set[str]] = {}
    for cfg in configs:
        if cfg.model.target is not None:
            norms.setdefault(cfg.model.target, set()).add(cfg.norm.kind)
    for path, kinds in norms.items():
        if len(kinds) < 2:
            continue
        try:
            takes = accepts(locate(path, "model._target_"), "norm_layer")
        except TargetError:
            continue  # said by target_problems
        if not takes:
            out.append(f"norm is swept ({', '.join(sorted(kinds))}) but {path} takes no norm_layer, "
                       f"so its trials would differ in name only; give it a norm_layer argument "
                       f"(a factory norm_layer(channels, dims), docs/custom.md) or fix norm")
    return out


def _writable(path: Path) -> bool:
    """Whether `path` (which may not exist yet) could be created and written: its nearest
    existing ancestor is a folder where a file can really be created (a probe file, removed at
    once; permission bits alone are wrong for root, read-only mounts and ACLs)."""
    for parent in (path, *path.absolute().parents):
        if parent.exists():
            if not parent.is_dir():
                return False
            try:
                with tempfile.TemporaryFile(dir=parent, prefix=".bsweep-probe-"):
                    return True
            except OSError:
                return False
    return False


# Config nodes whose keys are the user's own (free-form labels), not the schema's.
FREE_KEYS = ("tags",)


def unknown_keys(tree: dict, prefix: str = "") -> list[str]:
    """The dotted keys of a composed config (as a container, without its `hydra` node) that the
    schema does not have. Hydra's `+key=value` adds a key even where the schema has none, and
    converting to the schema drops it without a word: `+model.foo=1` would train as if unsaid.
    (Keys under FREE_KEYS are free; so are the keyword arguments of a `_target_` node, which
    `target_problems` checks against the target's signature.)"""
    out = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if dotted == "hydra" or dotted in FREE_KEYS:
            continue
        allowed = _schema_keys(dotted)
        if allowed is None or key not in allowed:
            out.append(dotted)
        elif isinstance(value, dict) and "_target_" in value and _is_builtin_option(dotted, value):
            out.append(f"{dotted}._target_")  # `+model._target_=...` on a built-in option
        elif isinstance(value, dict) and "_target_" not in value:
            out += unknown_keys(value, dotted + ".")
    return out


def _is_builtin_option(dotted: str, node: dict) -> bool:
    """Whether a model or data node is one of bsweep's options (its `name` one of theirs):
    a `_target_` added to it would be trained with the option's keys as its arguments."""
    builtin = {"model": MODELS, "data": DATASETS}.get(dotted, ())
    return node.get("name") in builtin


def not_a_key(dotted: str) -> str:
    """`dotted` is not a key of the schema: say so, with the keys there and a close match."""
    allowed = _schema_keys(dotted) or []
    *parents, leaf = dotted.split(".")
    if leaf == "_target_" and parents and parents[0] in TARGET_NODES:
        node = parents[0]
        return (f"{dotted}: the built-in {node} options take no _target_; for a {node} of your own "
                f"choose {node}=custom ({node}=custom {node}._target_=my_pkg.MyThing, its keyword "
                f"arguments with +{node}.NAME=VALUE) or a {node}/<name>.yaml of your own in a "
                f"--config-dir (docs/custom.md)")
    close = difflib.get_close_matches(leaf, allowed, n=1)
    guess = f" (did you mean {'.'.join([*parents, close[0]])}?)" if close else ""
    there = f"; keys there: {', '.join(allowed)}" if allowed else ""
    return f"{dotted} is not a config key{guess}{there}"


# OmegaConf's mark of a mandatory value not given (`_target_: ???` in configs/model/custom.yaml).
MISSING = "???"


def missing_keys(tree: dict | list, prefix: str = "") -> list[str]:
    """The dotted keys of a config container (unresolved) still holding `???`. The schema merge
    keeps its own default where the composed value is missing, so such a key would train with
    a value the user never chose (model=custom alone: the built-in CNN)."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree)
    out = []
    for key, value in items:
        dotted = f"{prefix}{key}"
        if isinstance(value, (dict, list)) and dotted != "hydra":
            out += missing_keys(value, dotted + ".")
        elif isinstance(value, str) and value == MISSING:
            out.append(dotted)
    return out


def missing_message(dotted: str) -> str:
    """One line for a mandatory key left at `???`: the key and how to give it."""
    node, _, leaf = dotted.partition(".")
    if leaf == "_target_" and node in TARGET_NODES:
        example = {"model": "your.module.Net", "data": "your.module.load"}[node]
        return (f"{dotted} is missing: {node}=custom needs {dotted}={example} "
                f"(the import path of your own {node}, docs/custom.md)")
    return f"{dotted} is missing (??? in the config): give it a value, {dotted}=..."


def missing_problems(tree: dict) -> list[str]:
    """`missing_message` for every `???` left in a composed config (a container)."""
    return [missing_message(key) for key in missing_keys(tree)]


def check_keys(trees: list[dict]) -> None:
    """Raise ConfigError naming every key of the composed configs `trees` (containers) that
    the schema does not have (a key added with `+`, see `unknown_keys`), and every mandatory
    key left at `???` (see `missing_keys`)."""
    found = [f"{not_a_key(key)} (a key added with + must be one the schema has)"
             for key in dict.fromkeys(k for tree in trees for k in unknown_keys(tree))]
    found += list(dict.fromkeys(p for tree in trees for p in missing_problems(tree)))
    if found:
        raise ConfigError("\n".join(found))


def check_all(configs: list[Config]) -> None:
    """Raise ConfigError listing every distinct problem across a plan's trials (typed)."""
    found: list[str] = []
    for cfg in configs:
        for p in problems(cfg):
            if p not in found:
                found.append(p)
    for p in study_problems(configs):
        if p not in found:
            found.append(p)
    for results_dir in sorted({c.results_dir for c in configs}):
        if not _writable(Path(results_dir)):
            found.append(f"results_dir={results_dir!r} cannot be written; choose a writable folder")
    if found:
        raise ConfigError("\n".join(found))


# --- Hydra's and OmegaConf's errors, told plainly ----------------------------------------------


def _schema_keys(dotted: str) -> list[str] | None:
    """The keys the schema allows next to the (dotted) key `dotted` in a composed config, or
    None if unknown. The model and data nodes have their built-in options' keys there
    (CNNConfig, DatasetConfig): `target` and `kwargs` are the typed form of a `_target_` node."""
    node = Config
    for depth, part in enumerate(dotted.split(".")[:-1]):
        if depth == 0 and part in TARGET_NODES:
            node = {"model": CNNConfig, "data": DatasetConfig}[part]
            continue
        match = [f for f in fields(node) if f.name == part]
        if not match:
            return None
        node = match[0].default_factory if match[0].default_factory is not None else None  # type: ignore[misc]
        if node is None or not is_dataclass(node):
            return None
    return [f.name for f in fields(node)]


def explain(e: BaseException) -> str:
    """One clear message for an error Hydra or OmegaConf raised while composing a config: what
    is wrong and what is allowed, without Hydra's search path or a traceback."""
    from hydra.errors import MissingConfigException, OverrideParseException

    text = str(e).strip()
    if isinstance(e, MissingConfigException):
        m = re.search(r"Could not find '(.+)/([^'/]+)'", text)
        options = e.options or re.findall(r"^\t(\S+)$", text, re.M)
        if m:
            group, value = m.groups()
            if group == "hydra/launcher":
                hint = " (the joblib and submitit launchers come with bsweep; others need their plugin)"
            else:
                hint = ""
            options = [o for o in options if not o.endswith("_schema")]  # bsweep/config.py's, not choices
            return f"{group}={value} is not a known {group}; choose one of: {', '.join(options)}{hint}"
        return text.split("\nConfig search path")[0]
    if isinstance(e, OverrideParseException):
        detail = " ".join(text.splitlines()[1:2]).strip()
        return (
            f"{text.splitlines()[0]}: {detail}. A value is key=value; a sweep is key=a,b,c "
            f"(no empty items), range(start,stop[,step]) or choice(a,b)"
        )
    cause = e.__cause__
    override = re.search(r"override (\S+)", text)
    if cause is not None:
        ctext = str(cause).strip()
        first = ctext.splitlines()[0]
        key = re.search(r"full_key: (\S+)", ctext)
        if type(cause).__name__ in ("ConfigAttributeError", "ConfigKeyError") and key:
            return not_a_key(key.group(1))
        where = f"{override.group(1)}: " if override else ""
        conv = re.match(r"Value '(.*)' of type '\w+' could not be converted to (\w+)", first)
        if conv and key:
            kind = {"Float": "a number", "Integer": "a whole number", "Boolean": "true or false"}
            return (f"{where}{conv.group(1)!r} is not {kind.get(conv.group(2), conv.group(2))}; "
                    f"{key.group(1)} takes {kind.get(conv.group(2), conv.group(2))}")
        return f"{where}{first}" + (f" (key {key.group(1)})" if key else "")
    return text.split("\nConfig search path")[0]
