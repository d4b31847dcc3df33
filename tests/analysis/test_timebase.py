"""The time basis (bsweep.analysis.timebase): calibrated seconds, bench rounds, calibrate_times."""

from __future__ import annotations

import pytest


def test_calibrated_seconds_use_the_benchmark_when_there_is_one():
    import pandas as pd

    from bsweep.analysis.timebase import add_calibrated_seconds

    summary = pd.DataFrame({
        "trial_id": ["a", "b", "c"], "status": ["complete"] * 3, "norm": ["batch"] * 3,
        "batch_size": [8, 8, 64], "lr": [0.1, 0.2, 0.1], "seed": [0, 0, 0],
        "steps_to_target": [100.0, float("nan"), 10.0], "last_step": [200, 200, 40],
        "last_seconds": [2.0, 4.0, 4.0], "device": ["cpu"] * 3,
    })
    trials_only = add_calibrated_seconds(summary)
    # median seconds per step at batch 8 over both trials: (0.01 + 0.02) / 2
    assert trials_only["calibrated_seconds_to_target"].tolist()[0] == pytest.approx(1.5)
    assert pd.isna(trials_only["calibrated_seconds_to_target"].tolist()[1])
    bench = pd.DataFrame({"batch_size": [8, 64], "norm": ["batch", "batch"], "device": ["cpu", "cpu"],
                          "seconds_per_step": [0.001, 0.05], "fused_width": [1, 1]})
    calibrated = add_calibrated_seconds(summary, bench)
    assert calibrated["calibrated_seconds_to_target"].tolist()[0] == pytest.approx(0.1)
    assert calibrated["calibrated_seconds_to_target"].tolist()[2] == pytest.approx(0.5)
    assert set(calibrated["seconds_per_step_source"]) == {"benchmark"}


def test_each_trial_gets_its_points_bench_rounds():
    import pandas as pd

    from bsweep.analysis.timebase import add_step_blocks

    summary = pd.DataFrame({
        "trial_id": ["a", "b", "c", "d"], "status": ["complete"] * 4, "norm": ["batch", "batch", "weight", "group"],
        "batch_size": [8, 8, 8, 64], "lr": [0.1, 0.2, 0.1, 0.1], "seed": [0] * 4, "device": ["cpu"] * 4,
    })
    bench = pd.DataFrame({"batch_size": [8, 8, 64, 8], "norm": ["batch", "weight", "group", "batch"],
                          "device": ["cpu"] * 4, "seconds_per_step": [1.0, 2.0, 3.0, 1.0], "fused_width": [1, 1, 1, 2],
                          "block_seconds": [[1.0, 1.5], [2.0, 2.5], None, [9.0, 9.0]]})
    out = add_step_blocks(summary, bench)
    # per point, width-1 rows only; a row without rounds (an older bench's) gives None
    assert out["step_block_seconds"].tolist() == [(1.0, 1.5), (1.0, 1.5), (2.0, 2.5), None]
    assert add_step_blocks(summary, bench.drop(columns="block_seconds"))["step_block_seconds"].isna().all()
    assert add_step_blocks(summary, None)["step_block_seconds"].isna().all()


def _timed_summary():
    import pandas as pd

    summary = pd.DataFrame({
        "trial_id": ["a", "b"], "status": ["complete", "complete"], "norm": ["batch", "batch"],
        "batch_size": [8, 64], "lr": [0.1, 0.1], "seed": [0, 0], "device": ["cpu", "cpu"],
        "steps_to_target": [100.0, 20.0], "seconds_to_target": [9.0, 9.0],
        "samples_per_second": [1.0, 1.0], "last_step": [200, 40], "last_seconds": [18.0, 18.0],
    })
    measurements = pd.DataFrame({"trial_id": ["a", "b"], "step": [100, 20], "train_seconds": [9.0, 9.0]})
    return summary, measurements


def test_calibrate_times_puts_time_on_the_benchmark_basis():
    import pandas as pd

    from bsweep.analysis.timebase import calibrate_times

    summary, measurements = _timed_summary()
    bench = pd.DataFrame({"batch_size": [8, 64, 8], "norm": ["batch"] * 3, "device": ["cpu"] * 3,
                          "seconds_per_step": [0.001, 0.01, 0.0001], "fused_width": [1, 1, 4]})
    s, m, basis = calibrate_times(summary, measurements, bench)
    assert basis.startswith("calibrated")
    assert s["seconds_to_target"].tolist() == pytest.approx([0.1, 0.2])  # width-4 row ignored
    assert s["samples_per_second"].tolist() == pytest.approx([8000, 6400])
    assert s["measured_seconds_to_target"].tolist() == [9.0, 9.0]
    assert m["train_seconds"].tolist() == pytest.approx([0.1, 0.2])


def test_calibrate_times_puts_the_test_sets_halves_on_the_benchmark_basis_too():
    # the tuned view selects lrs on val_seconds_to_target and reports heldout_: measured ones
    # would rank lrs by their fusion group's width and the machine's load
    import pandas as pd

    from bsweep.analysis.timebase import calibrate_times

    summary, measurements = _timed_summary()
    summary["val_steps_to_target"] = [50, 30]
    summary["val_seconds_to_target"] = [4.5, 13.5]
    summary["heldout_steps_to_target"] = [100, float("nan")]
    summary["heldout_seconds_to_target"] = [9.0, float("nan")]
    bench = pd.DataFrame({"batch_size": [8, 64], "norm": ["batch"] * 2, "device": ["cpu"] * 2,
                          "seconds_per_step": [0.001, 0.01], "fused_width": [1, 1]})
    s, _, _ = calibrate_times(summary, measurements, bench)
    assert s["val_seconds_to_target"].tolist() == pytest.approx([0.05, 0.3])
    assert s["heldout_seconds_to_target"].iloc[0] == pytest.approx(0.1) and pd.isna(s["heldout_seconds_to_target"].iloc[1])
    assert s["measured_val_seconds_to_target"].tolist() == [4.5, 13.5]


def test_calibrate_times_keeps_measured_seconds_when_the_benchmark_is_incomplete():
    import pandas as pd

    from bsweep.analysis.timebase import calibrate_times

    summary, measurements = _timed_summary()
    bench = pd.DataFrame({"batch_size": [8], "norm": ["batch"], "device": ["cpu"],
                          "seconds_per_step": [0.001], "fused_width": [1]})
    s, m, basis = calibrate_times(summary, measurements, bench)
    assert "lacks batch sizes 64" in basis and s["seconds_to_target"].tolist() == [9.0, 9.0]
    s, _, basis = calibrate_times(summary, measurements, None)
    assert basis.startswith("measured")
