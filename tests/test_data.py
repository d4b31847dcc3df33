import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from bsweep.config import DataConfig
from bsweep.train.data import DatasetError, load_data


def test_mnist1d_is_generated_locally_with_the_requested_split():
    d = load_data(DataConfig(name="mnist1d", n_train=300, n_test=120))
    assert d.x_train.shape == (300, 1, 40) and d.x_test.shape == (120, 1, 40)
    assert d.n_classes == 10 and d.x_train.dtype == torch.float32
    assert abs(float(d.x_train.mean())) < 1e-4 and abs(float(d.x_train.std()) - 1) < 1e-2


def test_mnist1d_default_split_matches_the_package_default():
    from mnist1d.data import make_dataset

    ref = make_dataset()  # the package's own 4000/1000 split
    d = load_data(DataConfig(name="mnist1d", n_train=4000, n_test=1000))
    assert torch.equal(d.y_train, torch.as_tensor(ref["y"]))
    assert torch.equal(d.y_test, torch.as_tensor(ref["y_test"]))


def test_data_is_deterministic_and_seeded():
    a = load_data(DataConfig(name="mnist1d", n_train=100, n_test=50))
    b = load_data(DataConfig(name="mnist1d", n_train=100, n_test=50))
    c = load_data(DataConfig(name="mnist1d", n_train=100, n_test=50, data_seed=7))
    assert torch.equal(a.x_train, b.x_train)
    assert not torch.equal(a.x_train, c.x_train)


def test_digits_ships_with_scikit_learn():
    d = load_data(DataConfig(name="digits", n_train=1437, n_test=360))
    assert d.x_train.shape == (1437, 1, 8, 8) and d.x_test.shape == (360, 1, 8, 8)
    assert d.n_classes == 10


def _write_idx(path: Path, array: np.ndarray) -> None:
    """The IDX format of the MNIST files: magic (0, 0, type 0x08=ubyte, ndim), dims, bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _write_mnist_like(root: Path, folder: str, n_train: int, n_test: int) -> None:
    rng = np.random.default_rng(0)
    raw = root / folder / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_torchvision_mnist_sets_load_from_their_files_on_disk(tmp_path, name, folder):
    _write_mnist_like(tmp_path, folder, n_train=40, n_test=20)
    d = load_data(DataConfig(name=name, root=str(tmp_path), n_train=None, n_test=None))
    assert d.x_train.shape == (40, 1, 28, 28) and d.x_test.shape == (20, 1, 28, 28)
    assert d.y_train.tolist() == [i % 10 for i in range(40)]
    sub = load_data(DataConfig(name=name, root=str(tmp_path), n_train=16, n_test=8))
    assert sub.n_train == 16 and len(sub.x_test) == 8


def test_cifar10_loads_from_the_python_pickle_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    d = load_data(DataConfig(name="cifar10", root=str(tmp_path), n_train=None, n_test=None))
    assert d.x_train.shape == (20, 3, 32, 32) and d.x_test.shape == (4, 3, 32, 32)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_missing_torchvision_set_says_where_it_looked_and_how_to_fix_it(tmp_path, name):
    with pytest.raises(DatasetError) as e:
        load_data(DataConfig(name=name, root=str(tmp_path), download=False))
    assert str(tmp_path) in str(e.value) and "download=true" in str(e.value)


def test_subsample_larger_than_the_split_is_an_error():
    with pytest.raises(DatasetError, match="n_test"):
        load_data(DataConfig(name="digits", n_train=None, n_test=5000))


def test_input_scalings_and_the_sorted_order():
    import numpy as np

    from bsweep.config import DataConfig
    from bsweep.train.data import DatasetError, load_data

    small = dict(n_train=200, n_test=50)
    z = load_data(DataConfig(**small))
    assert abs(float(z.x_train.mean())) < 1e-5 and abs(float(z.x_train.std()) - 1) < 1e-2
    mm = load_data(DataConfig(input_norm="minmax", **small))
    assert float(mm.x_train.min()) == 0.0 and float(mm.x_train.max()) == pytest.approx(1.0, abs=1e-6)
    # the test split is scaled with the training split's statistics: it may leave [0, 1]
    assert float(mm.x_test.min()) >= -0.5
    raw = load_data(DataConfig(input_norm="none", **small))
    assert not torch.equal(raw.x_train, z.x_train)
    ordered = load_data(DataConfig(order="sorted", **small))
    labels = ordered.y_train.numpy()
    assert (np.diff(labels) >= 0).all() and sorted(labels.tolist()) == sorted(z.y_train.tolist())
    with pytest.raises(DatasetError, match="input_norm"):
        load_data(DataConfig(input_norm="l2", **small))


def test_each_epoch_reads_the_sorted_set_in_order_and_the_shuffled_one_in_a_fresh_order():
    from bsweep.train.engine import epoch_order

    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    first, second = epoch_order("sorted", 6, gens, torch.device("cpu")), epoch_order("sorted", 6, gens, torch.device("cpu"))
    assert first.tolist() == second.tolist() == [list(range(6))] * 2
    a, b = epoch_order("shuffled", 50, gens, torch.device("cpu")), epoch_order("shuffled", 50, gens, torch.device("cpu"))
    assert not torch.equal(a[0], a[1]) and not torch.equal(a, b)  # per member, and per epoch
    assert sorted(a[0].tolist()) == list(range(50))


def test_class_halves_draws_each_batch_from_half_the_classes_and_every_example_once():
    from bsweep.train.engine import epoch_order

    labels = torch.arange(10).repeat_interleave(12)  # 10 classes of 12, stored by class
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    a = epoch_order("class_halves", len(labels), gens, torch.device("cpu"), 8, labels)
    b = epoch_order("class_halves", len(labels), gens, torch.device("cpu"), 8, labels)
    for order in (*a, *b):
        assert sorted(order.tolist()) == list(range(len(labels)))  # every example once
        classes = [set(labels[batch].tolist()) for batch in order[: 15 * 8].view(15, 8)]
        assert sum(len(c) <= 5 for c in classes) >= 14  # one batch at the seam may mix the halves
        assert len(set().union(*classes)) == 10  # every class every epoch
    assert not torch.equal(a[0], a[1]) and not torch.equal(a, b)  # per member, and per epoch
    same = [torch.Generator().manual_seed(0)]
    assert torch.equal(epoch_order("class_halves", 120, same, torch.device("cpu"), 8, labels)[0],
                       a[0])  # one member's generator alone gives the same epoch (fused == alone)
