"""Reading a growing study as the bracketing sweeper does: after every point that ends, the whole
study (`load_trials` + `load_measurements`), read fresh against through one `RecordCache`.

The study is written here, in the on-disk format, with claims_quick's shape by default: 144
trials in 24 points of 6 (batch size x norm; lr x seed), 90 measurement rows a trial. Prints the
seconds of every read summed, both ways, measured in the same run, and their ratio.

    python benchmarks/bench_study_reads.py            # 24 points of 6 trials
    python benchmarks/bench_study_reads.py 40 8       # 40 points of 8
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from bsweep import records
from bsweep.analysis.load import RecordCache, load_measurements, load_trials

ROWS = 90  # measurements a trial: claims_quick's trials have ~90 evaluations


def write_point(study: Path, point: int, trials: int) -> None:
    for t in range(trials):
        tdir = records.trial_dir(study, f"{point:05d}{t:07d}")
        tdir.mkdir(parents=True)
        config = {"study": {"name": study.name}, "batch_size": 2 ** (point % 12), "norm": {"kind": "batch"},
                  "lr": 0.01 * (t + 1), "seed": t % 2}
        records.write_yaml(tdir / records.CONFIG_FILE, config)
        records.write_json(tdir / records.ENV_FILE, {"device": "cpu", "threads": 1})
        records.write_measurements(tdir, [{"step": i, "samples": 8 * i, "epoch": i / 90, "train_seconds": i * 0.01,
                                           "test_acc": 0.1 + i / 100, "test_loss": 2.0 - i / 50, "lr": 0.01}
                                          for i in range(ROWS)])
        records.write_status(tdir, "complete")


def main(points: int, per_point: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        study = Path(tmp) / "study"
        cache = RecordCache()
        fresh = cached = 0.0
        for p in range(points):
            write_point(study, p, per_point)
            t0 = time.perf_counter()
            load_trials(study), load_measurements(study)
            t1 = time.perf_counter()
            load_trials(study, cache=cache), load_measurements(study, cache=cache)
            t2 = time.perf_counter()
            fresh, cached = fresh + t1 - t0, cached + t2 - t1
        print(f"{points} reads of a study growing to {points * per_point} trials: fresh {fresh:.2f} s, "
              f"cached {cached:.2f} s, ratio {fresh / cached:.1f}x")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3])) if len(sys.argv) > 2 else main(24, 6)
