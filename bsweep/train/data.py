"""Datasets as tensors on the training device.

Every dataset loads whole into memory (they are small), is scaled with training-set statistics
(standardized by default, `data.input_norm`), and is moved to the device once, so the training loop indexes tensors and never
touches a DataLoader. mnist1d is generated locally and digits ships with scikit-learn; the
torchvision sets read their usual files from `data.root` and download only when asked.
"""

from __future__ import annotations

import pickle
from importlib.metadata import version as _version
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bsweep.config import DATASETS, FULL_SIZES, INPUT_NORMS, DataConfig
from bsweep.train.datacache import cached_arrays
from bsweep.targets import given, locate, target_arguments


class DatasetError(ValueError):
    """A user-facing problem with the data configuration (missing files, bad sizes)."""


@dataclass
class TensorData:
    x_train: torch.Tensor  # float32, (N, C, L) or (N, C, H, W), scaled as data.input_norm says
    y_train: torch.Tensor  # int64, (N,)
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample: (channels, length) or (channels, height, width)."""
        return tuple(self.x_train.shape[1:])

    def to(self, device: torch.device | str) -> "TensorData":
        return TensorData(
            self.x_train.to(device),
            self.y_train.to(device),
            self.x_test.to(device),
            self.y_test.to(device),
            self.n_classes,
        )


def load_data(cfg: DataConfig, device: torch.device | str = "cpu") -> TensorData:
    """Load the configured dataset as scaled tensors on `device` (the training split sorted by
    class unless `data.order` is "shuffled")."""
    if cfg.target is None and cfg.name not in DATASETS:
        raise DatasetError(f"unknown dataset {cfg.name!r}; choose one of {', '.join(DATASETS)}")
    loader = _custom if cfg.target is not None else {
        "mnist1d": _mnist1d,
        "digits": _digits,
        "mnist": _torchvision_mnist,
        "fashion_mnist": _torchvision_mnist,
        "cifar10": _cifar10,
    }[cfg.name]
    x_train, y_train, x_test, y_test = loader(cfg)
    x_train, y_train = _subsample(x_train, y_train, cfg.n_train, cfg.data_seed, "n_train")
    x_test, y_test = _subsample(x_test, y_test, cfg.n_test, cfg.data_seed + 1, "n_test")
    x_train, x_test = scale_inputs(x_train, x_test, cfg.input_norm)
    if cfg.order != "shuffled":  # by class, stable: the engine reads it in this order, or by batches of it
        by_class = np.argsort(y_train, kind="stable")
        x_train, y_train = x_train[by_class], y_train[by_class]
    n_classes = int(max(y_train.max(), y_test.max())) + 1  # a custom set: its labels 0..max
    return TensorData(
        torch.as_tensor(x_train, dtype=torch.float32),
        torch.as_tensor(y_train, dtype=torch.int64),
        torch.as_tensor(x_test, dtype=torch.float32),
        torch.as_tensor(y_test, dtype=torch.int64),
        n_classes,
    ).to(device)


# Datasets already on a device, keyed by (data config, device): a sweep running in one process
# loads each dataset once, not once per trial (docs/performance.md, "Trials and workers").
_DATA_CACHE: dict[tuple, TensorData] = {}


def data_for(cfg: DataConfig, device: torch.device) -> TensorData:
    """`load_data(cfg, device)`, loaded once per process for a run of trials on the same data."""
    key = (repr(cfg), str(device))
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # keep one dataset at a time: device memory is the scarce thing
        _DATA_CACHE[key] = load_data(cfg, device)
    return _DATA_CACHE[key]


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _mnist1d(cfg: DataConfig) -> Arrays:
    n_train = cfg.n_train if cfg.n_train is not None else FULL_SIZES["mnist1d"][0]
    n_test = cfg.n_test if cfg.n_test is not None else FULL_SIZES["mnist1d"][1]
    # make_dataset draws num_samples // 10 per class, already shuffled; generate a multiple of
    # 10 that covers both splits and cut them ourselves so any n_train / n_test is exact.
    ours = {"num_samples": -(-(n_train + n_test) // 10) * 10, "train_split": 1.0, "seed": cfg.data_seed}

    def make() -> dict[str, np.ndarray]:
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        for name, value in ours.items():
            setattr(args, name, value)
        state = np.random.get_state()  # make_dataset reseeds numpy's global RNG; leave it as found
        try:
            d = make_dataset(args)
        finally:
            np.random.set_state(state)
        return {"x": d["x"], "y": d["y"]}

    # Generating (and importing mnist1d) costs seconds in every process, so the arrays are made
    # once per machine and read from disk after (bsweep.train.datacache). The
    # package's other generation arguments are its defaults, fixed by its version.
    key = {"generator": "mnist1d", "version": _version("mnist1d"), **ours}
    d = cached_arrays("mnist1d", key, make)
    x, y = d["x"][:, None, :], d["y"]  # (N, 40) signals -> (N, 1, 40): one channel for Conv1d
    return x[:n_train], y[:n_train], x[n_train : n_train + n_test], y[n_train : n_train + n_test]


def _digits(cfg: DataConfig) -> Arrays:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.images[:, None, :, :].astype(np.float32)  # (1797, 1, 8, 8)
    n_test = cfg.n_test if cfg.n_test is not None else FULL_SIZES["digits"][1]
    if not 0 < n_test < len(x):
        raise DatasetError(f"data.n_test={n_test} must be between 1 and {len(x) - 1} for digits")
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=n_test, random_state=cfg.data_seed, stratify=digits.target
    )
    return x_train, y_train, x_test, y_test


TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}


def _torchvision_mnist(cfg: DataConfig) -> Arrays:
    import torchvision

    cls = getattr(torchvision.datasets, TORCHVISION_CLASSES[cfg.name])
    try:
        train = cls(cfg.root, train=True, download=cfg.download)
        test = cls(cfg.root, train=False, download=cfg.download)
    except RuntimeError as e:  # torchvision says "Dataset not found. You can use download=True"
        raise DatasetError(_missing_message(cfg, str(e))) from None
    return (
        train.data.numpy()[:, None].astype(np.float32),
        train.targets.numpy(),
        test.data.numpy()[:, None].astype(np.float32),
        test.targets.numpy(),
    )


def _cifar10(cfg: DataConfig) -> Arrays:
    """CIFAR-10 from the standard python-pickle batches (`cifar-10-batches-py/`).

    The batches are read directly, in the format torchvision also reads, because torchvision's
    CIFAR10 insists on the official files' checksums; torchvision is used to download them.
    """
    folder = Path(cfg.root) / "cifar-10-batches-py"
    if not folder.is_dir() and cfg.download:
        import torchvision

        torchvision.datasets.CIFAR10(cfg.root, train=True, download=True)
    names_train = [f"data_batch_{i}" for i in range(1, 6)]
    missing = [n for n in [*names_train, "test_batch"] if not (folder / n).is_file()]
    if missing:
        raise DatasetError(_missing_message(cfg, f"missing {', '.join(missing)} in {folder}"))

    def read(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for name in names:
            with open(folder / name, "rb") as f:
                batch = pickle.load(f, encoding="latin1")
            xs.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(batch["labels"], dtype=np.int64))
        return np.concatenate(xs).astype(np.float32), np.concatenate(ys)

    x_train, y_train = read(names_train)
    x_test, y_test = read(["test_batch"])
    return x_train, y_train, x_test, y_test


def _custom(cfg: DataConfig) -> Arrays:
    """A dataset of the user's own: `data.target` called with `data.kwargs` (and `seed`, the
    data_seed, where it takes one), returning (x_train, y_train, x_test, y_test) as tensors or
    arrays, or (train, test) as `torch.utils.data.Dataset`s of (input, label) pairs, which are
    read whole into memory here (bsweep's loop indexes tensors on the device)."""
    fn = locate(cfg.target, "data._target_")
    out = fn(**target_arguments(cfg.kwargs), **given(fn, {"seed": cfg.data_seed}))
    where = f"data._target_={cfg.target}"
    if isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(d, torch.utils.data.Dataset) for d in out):
        x_train, y_train = _read_dataset(out[0], f"{where} (train)")
        x_test, y_test = _read_dataset(out[1], f"{where} (test)")
    elif isinstance(out, (tuple, list)) and len(out) == 4:
        x_train, y_train, x_test, y_test = (_as_array(a, f"{where}, item {i}") for i, a in enumerate(out))
    else:
        raise DatasetError(f"{where} returned {_describe(out)}; return (x_train, y_train, x_test, y_test) "
                           f"as tensors or arrays, or (train, test) as torch Datasets of (input, label)")
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if x.ndim < 2 or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
            raise DatasetError(f"{where}: the {split} split has inputs of shape {x.shape} and labels of "
                               f"shape {y.shape}; want (N, ...) inputs and (N,) labels, N > 0")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise DatasetError(f"{where}: the {split} labels must be class numbers 0, 1, 2, ... "
                               f"(integers >= 0); got {y.dtype} from {y.min()} to {y.max()}")
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise DatasetError(f"{where}: the {split} inputs must be real numbers; got {x.dtype}")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(f"{where}: train inputs have shape {x_train.shape[1:]} a sample, "
                           f"test inputs {x_test.shape[1:]}; they must match")
    return x_train.astype(np.float32), y_train.astype(np.int64), x_test.astype(np.float32), y_test.astype(np.int64)


def _describe(value: object) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} ({', '.join(type(v).__name__ for v in value)})"
    return f"a {type(value).__name__}"


def _as_array(value: object, where: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as e:
        raise DatasetError(f"{where}: {_describe(value)} is not an array ({e})") from None


def _read_dataset(ds: "torch.utils.data.Dataset", where: str) -> tuple[np.ndarray, np.ndarray]:
    """A map-style Dataset of (input, label) read whole, in its index order."""
    try:
        n = len(ds)  # type: ignore[arg-type]
        items = [ds[i] for i in range(n)]
    except Exception as e:
        raise DatasetError(f"{where}: reading the Dataset by index raised {type(e).__name__}: {e}; "
                           f"it must be a map-style Dataset (len and [i])") from None
    if not all(isinstance(it, (tuple, list)) and len(it) >= 2 for it in items):
        raise DatasetError(f"{where}: each item must be (input, label); item 0 is {_describe(items[0]) if items else 'missing'}")
    try:
        x = np.stack([_as_array(it[0], where) for it in items])
        y = np.asarray([int(it[1]) for it in items])
    except (TypeError, ValueError) as e:
        raise DatasetError(f"{where}: its items do not stack into inputs and integer labels ({e})") from None
    return x, y


def _missing_message(cfg: DataConfig, detail: str) -> str:
    return (
        f"dataset {cfg.name!r} not found under data.root={cfg.root!r} ({detail}). "
        f"Put the files there, point data.root=... at them, or set data.download=true."
    )


def _subsample(
    x: np.ndarray, y: np.ndarray, n: int | None, seed: int, key: str
) -> tuple[np.ndarray, np.ndarray]:
    if n is None or n == len(x):
        return x, y
    if not 0 < n <= len(x):
        raise DatasetError(f"data.{key}={n} but the split has {len(x)} samples; allowed 1..{len(x)}")
    idx = np.random.default_rng(seed).permutation(len(x))[:n]
    return x[idx], y[idx]


def scale_inputs(x_train: np.ndarray, x_test: np.ndarray, how: str = "zscore") -> tuple[np.ndarray, np.ndarray]:
    """Scale both splits per channel with statistics of the training set only: "zscore" (zero
    mean, unit variance), "minmax" (the training set's range to [0, 1]) or "none"."""
    axes = (0, *range(2, x_train.ndim))
    if how == "zscore":
        mean = x_train.mean(axis=axes, keepdims=True)
        std = x_train.std(axis=axes, keepdims=True) + 1e-8  # 1e-8 guards a constant channel
        return (x_train - mean) / std, (x_test - mean) / std
    if how == "minmax":
        low = x_train.min(axis=axes, keepdims=True)
        span = x_train.max(axis=axes, keepdims=True) - low + 1e-8
        return (x_train - low) / span, (x_test - low) / span
    if how == "none":
        return x_train, x_test
    raise DatasetError(f"data.input_norm={how!r} is not known; choose one of: {', '.join(INPUT_NORMS)}")
