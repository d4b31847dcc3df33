"""Generated datasets are cached on disk, checked on every read, and never cost a run."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from bsweep.train import datacache
from bsweep.config import DataConfig
from bsweep.train.data import load_data
from tests.datacache_worker import slow_make_in_a_process


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(datacache.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _maker(calls: list):
    def make():
        calls.append(1)
        return {"x": np.arange(12, dtype=np.float32).reshape(3, 4), "y": np.array([0, 1, 2])}
    return make


def test_arrays_are_made_once_then_read_back(cache):
    calls: list = []
    first = datacache.cached_arrays("demo", {"n": 3}, _maker(calls))
    again = datacache.cached_arrays("demo", {"n": 3}, _maker(calls))
    assert len(calls) == 1 and len(list(cache.glob("*.npz"))) == 1
    for name in ("x", "y"):
        np.testing.assert_array_equal(first[name], again[name])
        assert first[name].dtype == again[name].dtype
    datacache.cached_arrays("demo", {"n": 4}, _maker(calls))  # another key: another file
    assert len(calls) == 2 and len(list(cache.glob("*.npz"))) == 2


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
def test_a_damaged_cache_file_is_regenerated(cache, damage, caplog):
    calls: list = []
    datacache.cached_arrays("demo", {"n": 3}, _maker(calls))
    [path] = cache.glob("*.npz")
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip":  # a bit inside the stored float data: still a valid zip, wrong checksum
        at = raw.index(np.arange(12, dtype=np.float32).tobytes()) + 5
        raw[at] ^= 0x01
    else:
        raw = bytearray()
    path.write_bytes(bytes(raw))
    out = datacache.cached_arrays("demo", {"n": 3}, _maker(calls))
    assert len(calls) == 2 and "regenerating" in caplog.text
    np.testing.assert_array_equal(out["x"], np.arange(12, dtype=np.float32).reshape(3, 4))
    calls.clear()
    datacache.cached_arrays("demo", {"n": 3}, _maker(calls))  # the rewritten file is good again
    assert calls == []


def test_processes_that_miss_at_once_generate_once(cache, tmp_path):
    # a sweep's workers start together on a fresh machine: one generates, the others read it
    log, n = tmp_path / "made.log", 3
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(n)
        with ctx.Pool(n) as pool:  # the helper's module imports no torch: the processes start fast
            out = pool.starmap(slow_make_in_a_process, [(str(log), barrier)] * n)
    assert out == [[0, 1, 2]] * n
    assert log.read_text().splitlines() == ["made"]
    assert len(list(cache.glob("*.npz"))) == 1


def test_an_unwritable_cache_costs_only_the_cache(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(datacache.CACHE_ENV, str(blocker / "cache"))
    calls: list = []
    out = datacache.cached_arrays("demo", {"n": 3}, _maker(calls))
    assert len(calls) == 1 and out["y"].tolist() == [0, 1, 2]
    assert "could not write the data cache" in caplog.text


def test_mnist1d_is_generated_once_per_machine_and_equal_from_the_cache(cache, monkeypatch):
    import mnist1d.data

    real, calls = mnist1d.data.make_dataset, []

    def counted(args):  # the real generator, counted
        calls.append(args.num_samples)
        return real(args)

    monkeypatch.setattr(mnist1d.data, "make_dataset", counted)
    cfg = DataConfig(name="mnist1d", n_train=300, n_test=100)
    state = np.random.get_state()
    fresh = load_data(cfg)
    cached = load_data(cfg)
    assert calls == [400]
    for a, b in ((fresh.x_train, cached.x_train), (fresh.y_train, cached.y_train),
                 (fresh.x_test, cached.x_test), (fresh.y_test, cached.y_test)):
        assert bool((a == b).all())
    assert np.random.get_state()[1].tolist() == state[1].tolist()  # numpy's global RNG untouched
    load_data(DataConfig(name="mnist1d", n_train=300, n_test=100, data_seed=7))  # another seed: generated
    assert calls == [400, 400]
