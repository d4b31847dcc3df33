"""The typed schema of a bsweep config: the one place defaults live.

Every group under `configs/` merges into one of these dataclasses, so a misspelt key or a value
of the wrong type is an error from OmegaConf that names the key. `register_configs()` puts the
schema in Hydra's ConfigStore; `configs/config.yaml` lists it first in its defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

# Choices that `validate` and the error messages list. The config groups under configs/ offer
# exactly these (a test pins that), so the CLI can name the alternatives when a user mistypes one.
DATASETS = ("mnist1d", "digits", "mnist", "fashion_mnist", "cifar10")
NORMS = ("none", "batch", "group", "layer", "instance", "weight", "lrn")
# The built-in CNN's presets (configs/model/): one architecture, named by size, so a study that
# varies the preset shows it as `model` rather than pooling the two.
MODELS = ("cnn", "cnn_small")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine", "warmup")
DEVICES = ("auto", "cpu", "cuda", "mps")
LR_SCALINGS = ("none", "linear", "sqrt")
INPUT_NORMS = ("zscore", "minmax", "none")  # data.input_norm (bsweep.train.data.scale_inputs)
ORDERS = ("shuffled", "sorted", "class_batches", "class_halves")  # data.order (bsweep.train.engine.epoch_order)

# Full-split sizes, so plans, validation and analysis can check batch sizes without loading the data.
FULL_SIZES: dict[str, tuple[int, int]] = {
    "mnist1d": (4000, 1000),  # the package's default 5000 samples, 80/20
    "digits": (1437, 360),  # 1797 images, 80/20
    "mnist": (60000, 10000),
    "fashion_mnist": (60000, 10000),
    "cifar10": (50000, 10000),
}


# Where and how a trial runs, not what it is: left out of its id (bsweep.plan) and out of the
# analysis's grid (bsweep.analysis.load).
RUNTIME_KEYS = (
    "device",
    "threads",
    "results_dir",
    "data.root",
    "data.download",
    "study.name",
    "study.description",
    "study.eval.batch_size",
    "study.nuisance",  # how the analysis reads the study, not what a trial trains
    "study.memory_limit_gib",  # C8's prediction, not what a trial trains
    "perf",  # fusion, autocast, memory format: how a trial runs (results equal within tolerance)
    "checkpoint_seconds",  # how often a trial saves its state for a resume: not what it trains
)
# Keys that are not part of a study's grid besides RUNTIME_KEYS: the optional noise measurement
# (it leaves training unchanged) and the evaluation cadence (one measurement grid per study).
NOT_GRID = ("noise", "study.eval", "hydra", "model.target", "model.kwargs", "data.target", "data.kwargs")
# ("model.target" and the like: the typed form of a node's `_target_` and its other keys
# (`bsweep.plan.structured`); a config on disk, which analysis reads, has the keys themselves.)
# The study's nuisance parameters (Deep Learning Tuning Playbook) that every study has: the
# tuned view optimises over lr and averages over seed. `study.nuisance` may add keys to tune
# jointly with lr; every other key that varies across a study's trials is scientific.
NUISANCE_KEYS = ("lr", "seed")
# Config groups whose keys can change a training step's time (the bench records each of their
# keys; analysis matches a trial to a bench row on every one a study varies). The schedule, the
# lr rule and the budget do not change a step's time.
STEP_GROUPS = ("data", "model", "norm", "optim")
# Keys that are a study's subject or its named axes (the report's first columns): never nuisance.
NEVER_NUISANCE = ("batch_size", "data.name", "model.name", "norm.kind", "optim.name", "schedule.name")


def measures_gradients(cfg: "Config") -> bool:
    """The trial measures its own model's gradients at fixed weights (noise scale, C6's
    cosines), so it trains alone: a fused model's gradients are not one trial's."""
    return bool(cfg.noise.enabled or cfg.noise.cosine_at)


def effective_lr(cfg: "Config") -> float:
    """The base learning rate after the config's scaling rule (see Config.lr_scaling)."""
    power = {"none": 0.0, "linear": 1.0, "sqrt": 0.5}[cfg.lr_scaling]
    return cfg.lr * (cfg.batch_size / cfg.base_batch_size) ** power


def train_size(cfg: DataConfig) -> int:
    """Training-set size a config asks for, without loading anything."""
    return cfg.n_train if cfg.n_train is not None else FULL_SIZES[cfg.name][0]


@dataclass
class DatasetConfig:
    """The schema of the built-in datasets' options (configs/data/*.yaml): Hydra types each of
    them with it, so `data.n_trian=5` or `data.n_train=abc` is an error that names the key."""

    name: str = "mnist1d"
    # Training / test set sizes in samples. null = the dataset's own split in full.
    n_train: Optional[int] = None
    n_test: Optional[int] = None
    # Seed of dataset generation (mnist1d) and of the train/test split (digits); fixed across a
    # study so every trial sees the same data.
    data_seed: int = 42
    # torchvision sets only: where the files are, and whether to fetch them when missing.
    root: str = "data"
    download: bool = False
    # How inputs are scaled, with training-set statistics per channel (N3, section 3.6.1-3.6.5):
    # zscore: zero mean, unit variance; minmax: [0, 1], every input positive; none: as the
    # dataset stores them (mnist1d: roughly centred, spread ~1; images: 0-255).
    input_norm: str = "zscore"
    # The order training examples are drawn in (N7, section 3.6.13): shuffled: a new random
    # order every epoch (each trial's own generator); sorted: by class, the same every epoch;
    # class_batches: batches cut from the class-sorted set (one or two classes each), drawn in
    # a new random order every epoch: unshuffled batches without sorted's forgetting;
    # class_halves: each epoch the classes split at random into two halves and every batch
    # drawn from one half, the batches shuffled: skewed batches, every class in random order.
    order: str = "shuffled"


@dataclass
class DataConfig(DatasetConfig):
    """A trial's data as the code reads it: a built-in dataset, or a dataset of the user's own
    (`data._target_`: the import path of a function returning the data, its keyword arguments
    the data node's keys that DatasetConfig does not have; see docs/custom.md). The keys of
    DatasetConfig keep their meaning for both (n_train, n_test, input_norm, order)."""

    target: Optional[str] = None  # the node's `_target_`; None: the built-in `name`
    kwargs: dict[str, Any] = field(default_factory=dict)  # the target's own keyword arguments


@dataclass
class CNNConfig:
    """The schema of the built-in CNN's presets (configs/model/cnn*.yaml)."""

    name: str = "cnn"
    width: int = 32  # channels in every conv layer
    depth: int = 3  # conv -> norm -> ReLU blocks; every block after the first halves the length
    kernel_size: int = 5  # odd, so "same" padding is symmetric


@dataclass
class ModelConfig(CNNConfig):
    """A trial's model as the code reads it: the built-in CNN, or a model of the user's own
    (`model._target_`: the import path of an nn.Module class or factory, its keyword arguments
    the model node's other keys; see docs/custom.md). For a model of the user's own, `name` is
    its `_target_` and the CNN's keys keep their defaults, unused."""

    target: Optional[str] = None  # the node's `_target_`; None: the built-in CNN
    kwargs: dict[str, Any] = field(default_factory=dict)  # the target's own keyword arguments


@dataclass
class NormConfig:
    kind: str = "batch"
    groups: int = 8  # group norm: groups per layer; must divide model.width
    lrn_size: int = 5  # local response norm: neighbouring channels summed over (AlexNet used 5)
    bn_momentum: float = 0.1  # batch norm running-statistics momentum (PyTorch default)


@dataclass
class OptimConfig:
    name: str = "sgd"
    momentum: float = 0.9  # sgd only; 0 = plain SGD
    nesterov: bool = False  # sgd only
    weight_decay: float = 0.0  # L2 coefficient, coupled (torch.optim semantics)
    beta1: float = 0.9  # adam only
    beta2: float = 0.999  # adam only
    eps: float = 1e-8  # adam only


@dataclass
class ScheduleConfig:
    # constant: lr throughout; cosine: lr * cos decay to 0 over the budget; warmup: linear ramp
    # from 0 over the first `warmup_fraction` of the budget's steps, then constant.
    name: str = "constant"
    warmup_fraction: float = 0.0  # of the trial's total steps; also applies before cosine


@dataclass
class BudgetConfig:
    # How long a trial trains. An epoch budget alone favours small batches (many steps), a step
    # budget alone favours large ones (many samples); state both on purpose. With both set,
    # `rule` says how they combine: "any" stops at the first limit reached, "all" trains until
    # both are reached (at least `epochs` epochs and at least `steps` steps).
    epochs: Optional[float] = 20.0  # passes over the training set
    steps: Optional[int] = None  # optimizer steps
    rule: str = "any"  # "any" | "all"
    stop_at_target: bool = False  # stop at the first measurement reaching study.target


@dataclass
class EvalConfig:
    # Measurements happen on a grid in samples seen, the same for every batch size: a geometric
    # grid (ratio `growth`) so that "steps to target" is resolved within (growth - 1) relative
    # error at every batch size, with gaps capped at `max_gap_samples` for dense late curves.
    first_samples: int = 128  # first measurement after this many samples (plus one at step 0)
    growth: float = 1.05  # 5 % relative resolution of steps/samples to target
    max_gap_samples: int = 8000  # at most this many samples between two measurements
    batch_size: int = 256  # evaluation batch: memory and speed only (docs/performance.md); results identical


@dataclass
class StudyConfig:
    name: str = "default"
    description: str = ""
    # Nuisance parameters (Deep Learning Tuning Playbook): lr and seed always; add a dotted key
    # (e.g. optim.momentum) to have the tuned view pick its best value jointly with lr at every
    # point, instead of showing each value as its own curve. Analysis only: not in trial ids.
    nuisance: list[str] = field(default_factory=lambda: list(NUISANCE_KEYS))
    target: float = 0.8  # test accuracy that defines time-to-accuracy, fixed in advance
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # C8: the memory a training step may use, GiB; the largest batch size that fits it is
    # predicted from `bsweep bench`'s per-step memory. null: the device's (a GPU's memory, a
    # CPU machine's RAM). Analysis only: not in trial ids.
    memory_limit_gib: Optional[float] = None


@dataclass
class NoiseConfig:
    # Gradient noise scale B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018), measured at
    # measurement points from gradients at fixed weights at two batch sizes (bsweep.train.gradient_noise).
    # Training itself is unchanged (the measurement restores weights, grads and BN buffers).
    enabled: bool = False  # off by default: costs ~pairs * (b_small + b_big) examples per point
    b_small: int = 16  # examples; small enough that tr(Sigma)/b_small dominates |G_small|^2
    b_big: int = 512  # examples; large against b_small, of the order of the noise scale
    pairs: int = 4  # gradient pairs per noise point; the EMA averages over points as well
    every: int = 4  # measure at every 4th measurement point (every ~22 % in samples on the 5 % grid)
    ema: float = 0.3  # weight of the newest point: averages ~3 points, i.e. ~2x in samples seen
    # C6: cosines between mini-batch gradients and the full training-set gradient, at the first
    # measurement point at or after each of these shares of the budget in steps (early, middle,
    # end: [0.05, 0.5, 1.0]); empty: off. Independent of `enabled`. Costs about n_train +
    # cosine_draws x sum(cosine_batch_sizes) examples of forward+backward per checkpoint.
    cosine_at: list[float] = field(default_factory=list)
    cosine_batch_sizes: list[int] = field(default_factory=lambda: [1, 4, 16, 64, 256, 1024, 4096])
    cosine_draws: int = 8  # batches per batch size: the spread of the cosine over draws


@dataclass
class PerfConfig:
    # How a trial runs, not what it is (left out of the trial id, like `device`). Every "auto"
    # below is decided by measuring on the machine that trains; docs/performance.md has the
    # numbers and tolerances.
    # Fuse trials that differ only in lr and/or seed into one grouped-conv model (bsweep.train.fused),
    # used by the `bsweep_fused` Hydra launcher: "auto" measures the step time of a few widths
    # for the group's batch size and takes the fastest per trial; "off" trains one by one; an
    # integer forces that many trials per fused model.
    fuse: str = "auto"
    # bf16 autocast of the forward pass. "auto" times a few steps of the trial's model at its
    # batch size with and without, once per study (bsweep.train.perf), and turns bf16 on only where it
    # is >= 20 % faster: it moves losses by ~1e-2 relative (final accuracy by 1.5 points a
    # trial on average, docs/performance.md). Off by default, so a study gives the same result
    # on every machine: "auto" picks bf16 on some CPUs and runs only, so a trial's precision
    # would depend on the machine and the run. Opt in with auto or bf16 where speed matters more.
    amp: str = "off"  # auto | bf16 (= on) | off
    # channels_last memory format for the built-in CNN (its layers are 2-D, on signals too) and
    # 2-D convs of one's own; "auto" measured like amp (needs >= 5 % gain). It changes float
    # rounding only, so it stays auto: batch norm at large batches runs faster with it.
    channels_last: str = "auto"  # auto | on | off
    # torch.compile of the model (forward and backward; the optimizer stays eager), with CUDA
    # graphs on CUDA (mode "reduce-overhead"). Off by default: on CPU it was slower than eager
    # below batch 1024, after seconds of compiling per process (docs/performance.md); not yet
    # measured on a GPU (benchmarks/gpu_check.sh does), so it has no "auto".
    compile: str = "off"  # on | off


def perf_setting(value: object, name: str) -> str:
    """`perf.<name>` (amp, channels_last or compile) as auto | on | off; a ValueError says what
    is allowed. true/false are accepted too, since YAML may turn on/off into booleans."""
    v = str(value).strip().lower()
    if v == "auto" and name != "compile":
        return "auto"
    if v in ("on", "true") or (name == "amp" and v == "bf16"):
        return "on"
    if v in ("off", "false"):
        return "off"
    allowed = {"amp": "auto, bf16 (or on) or off", "compile": "on or off"}.get(name, "auto, on or off")
    raise ValueError(f"perf.{name}={value!r} is not known; choose {allowed}")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    norm: NormConfig = field(default_factory=NormConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    perf: PerfConfig = field(default_factory=PerfConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    # The keys a user sweeps.
    batch_size: int = 32
    lr: float = 0.05
    seed: int = 0
    # Learning-rate scaling rule (Goyal et al. 2017: linear; Hoffer et al. 2017: sqrt): the lr in
    # effect is lr * (batch_size / base_batch_size) ** {none: 0, linear: 1, sqrt: 0.5}, so a grid
    # over `lr` means the same base learning rate at every batch size. Measurements record the
    # effective lr; the trial's config keeps `lr` as given.
    lr_scaling: str = "none"
    base_batch_size: int = 32  # samples; the batch size at which the effective lr equals `lr`
    # Where and how to run: not part of a trial's identity (see RUNTIME_KEYS).
    device: str = "auto"
    # torch intra-op threads per process; null = torch's default (all cores). 1 by default: a
    # small-batch step with 2 threads spin-waits under any other load, many times slower
    # (docs/performance.md); use parallel processes (hydra/launcher=joblib) for the cores.
    threads: Optional[int] = 1
    results_dir: str = "results"
    # Wall seconds between a trial's saves of its whole state (trials/<id>/checkpoint.pt, at
    # measurement points), so a preempted or killed trial resumes there instead of at step 0;
    # null: never. 300: a trial longer than a few minutes loses at most ~5 min; a save of the
    # default CNN and its optimizer takes milliseconds.
    checkpoint_seconds: Optional[float] = 300.0
    # Free-form notes a user wants recorded with the trial (kept in its id).
    tags: dict[str, Any] = field(default_factory=dict)


# Each typed node with a `target` and its composed form: the `_target_` key and its keyword
# arguments as the node's own keys (what configs and config.yaml files hold).
TARGET_NODES = ("model", "data")

# The data node's keys that bsweep reads for a dataset of the user's own as well; its other
# keys are the target's keyword arguments.
OWN_DATA_KEYS = ("n_train", "n_test", "data_seed", "input_norm", "order")


def dotted(cfg: "Config") -> dict[str, object]:
    """A typed config as {dotted key: value} under the names a composed config has: a
    `_target_` node's `target` as `<node>._target_` and its kwargs as `<node>.<kwarg>`; and
    its `<node>.name`, the target (what analysis matches points on, `analysis.load`)."""
    from dataclasses import asdict

    tree = asdict(cfg)
    for name in TARGET_NODES:
        node = tree[name]
        target, kwargs = node.pop("target"), node.pop("kwargs")
        if target is not None:
            tree[name] = {"_target_": target, "name": target, **kwargs,
                          **{k: v for k, v in node.items() if name == "data" and k in OWN_DATA_KEYS}}
    return flatten(tree)


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """A nested config as {dotted key: value}; lists and empty dicts stay whole values."""
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def is_under(key: str, names: tuple[str, ...]) -> bool:
    """Whether dotted `key` is one of `names` or inside one of them."""
    return any(key == n or key.startswith(n + ".") for n in names)


def grid_defaults() -> dict[str, object]:
    """Every key that may define a study's grid (dotted), at its schema default: the schema
    less RUNTIME_KEYS and NOT_GRID."""
    from dataclasses import asdict

    return {k: v for k, v in flatten(asdict(Config())).items() if not is_under(k, RUNTIME_KEYS + NOT_GRID)}


@dataclass
class ComposedConfig(Config):
    """The root schema Hydra composes into. `model` and `data` are typed by their options
    instead (the built-in ones by CNNConfig and DatasetConfig, through their defaults lists),
    so that a model or dataset of the user's own may carry its own keyword arguments."""

    data: Any = None
    model: Any = None


def register_configs() -> None:
    """Put the schemas into Hydra's ConfigStore under the names configs/ uses: the root's
    (`configs/config.yaml`) and the built-in options' (`configs/model/cnn.yaml` and the like)."""
    from hydra.core.config_store import ConfigStore  # here, so readers of results need no Hydra

    cs = ConfigStore.instance()
    cs.store(name="bsweep_schema", node=ComposedConfig)
    cs.store(group="model", name="cnn_schema", node=CNNConfig)
    cs.store(group="data", name="dataset_schema", node=DatasetConfig)
