"""What a sweep shows while it runs (issue 30, item 7): the time left from planned costs, and
each running group's progress from its status record. Synthetic costs and hand-made records;
no wall time."""

import io

import pytest
from rich.console import Console

from bsweep import records
from bsweep.sweep.launch import planned_costs
from bsweep.plan import expand
from bsweep.sweep.progress import Watcher, eta_seconds, format_seconds, fraction_done, running_lines, summary_line
from tests.conftest import TINY


def test_the_time_left_weighs_what_remains_by_its_planned_cost():
    # costliest first, as the fused launcher hands them out: 8 s of 16 planned are done in 8 s
    costs = [8.0, 4.0, 2.0, 1.0, 1.0]
    assert eta_seconds(8.0, costs, [1, 0, 0, 0, 0]) == pytest.approx(8.0)  # counting trials said 32 s
    assert eta_seconds(14.0, costs, [1, 1, 0.5, 0, 0]) == pytest.approx(14.0 * 3 / 13)  # 13 done, 3 left
    assert eta_seconds(16.0, costs, [1] * 5) == 0.0


def test_the_time_left_counts_running_trials_before_any_has_ended():
    assert eta_seconds(5.0, [2.0, 2.0], [0.25, 0.0]) == pytest.approx(5.0 * 3.5 / 0.5)
    assert eta_seconds(5.0, [2.0, 2.0], [0.0, 0.0]) is None  # no work seen: no guess, and no `ETA ?`
    assert eta_seconds(0.0, [], []) is None


def test_fraction_done_reads_the_progress_of_a_running_status_and_tolerates_its_absence():
    running = {"status": "running", "progress": {"step": 30, "total_steps": 120, "samples": 480, "test_acc": None}}
    assert fraction_done(running, ended=False) == 0.25
    assert fraction_done({"status": "running"}, ended=False) == 0.0  # a writer without progress
    assert fraction_done({"status": "running", "progress": {"step": 3}}, ended=False) == 0.0
    assert fraction_done({"status": "failed", "progress": {"step": 3, "total_steps": 4}}, ended=False) == 0.0
    assert fraction_done(None, ended=False) == 0.0
    assert fraction_done({"status": "complete"}, ended=True) == 1.0


def test_lines_in_words():
    assert [format_seconds(s) for s in (0, 9.4, 65, 3599, 3725)] == ["0 s", "9 s", "1 min 05 s", "59 min 59 s", "1 h 02 min"]
    assert summary_line(1, 4, 12.2, None) == "progress: 1/4 trials ended, 12 s elapsed"
    assert summary_line(1, 4, 12.2, 30.0) == "progress: 1/4 trials ended, 12 s elapsed, ETA 30 s"


def test_running_lines_group_fused_members_and_skip_trials_without_progress():
    def running(step, acc, **extra):
        return {"status": "running", "pid": 7, "host": "h",
                "progress": {"step": step, "total_steps": 400, "samples": step * 16, "test_acc": acc}, **extra}

    fused = ["a", "b"]
    statuses = {
        "a": running(100, 0.41, fused_with=fused), "b": running(100, 0.523, fused_with=fused),
        "c": running(20, None),
        "d": {"status": "running", "pid": 8, "host": "h"},  # no progress yet: nothing shown
        "e": {"status": "complete", "progress": {"step": 400, "total_steps": 400}},
    }
    points = {"a": "batch_size=16 lr=0.1", "b": "batch_size=16 lr=0.2", "c": "batch_size=64 lr=0.1",
              "d": "batch_size=256 lr=0.1", "e": "batch_size=8 lr=0.1"}
    assert running_lines(statuses, points) == [
        "  training batch_size=16 (2 trials): step 100/400, 1600 samples, test acc 0.410-0.523",
        "  training batch_size=64 lr=0.1: step 20/400, 320 samples",
    ]


def _running(tdir, step, total, acc):
    records.write_status(tdir, "running", **records.owner(), heartbeat=0.0,
                         progress={"step": step, "total_steps": total, "samples": step * 64, "test_acc": acc})


def test_the_watcher_counts_this_sweeps_work_only_and_shows_running_trials_every_so_often(results):
    planned = expand([*TINY, f"results_dir={results}"])
    a, b, c, d = planned
    since = 1000.0
    def failed(p, time, error):
        records.write_json(records.trial_dir(results / "smoke", p.trial_id) / records.STATUS_FILE,
                           {"status": "failed", "time": time, "error": error})

    failed(a, since - 999, "old")  # failed in an earlier sweep: this one redoes it
    failed(b, since + 1, "boom\nmore")
    _running(records.trial_dir(results / "smoke", c.trial_id), 50, 100, 0.4)
    records.write_status(records.trial_dir(results / "smoke", d.trial_id), "running", **records.owner())
    out = io.StringIO()
    watcher = Watcher(planned, planned, Console(file=out, width=200), since,
                       {a.trial_id: 3.0, b.trial_id: 1.0, c.trial_id: 1.0, d.trial_id: 1.0})
    said = []
    assert watcher._poll(said.append) == 1  # b; a's old failure is not this sweep's end
    assert len(said) == 1 and "failed" in said[0] and b.trial_id in said[0] and "boom" in said[0]
    watcher.start_time = watcher.plain_at = watcher.work_started = 0.0  # a clock of the test's own
    # done: b (1) and half of c (0.5); left: a (3), half of c, d (1): 10 s x 4.5 / 1.5
    assert watcher.plain_lines(10.0, last_ended=0) == ["progress: 1/4 trials ended, 10 s elapsed, ETA 30 s"]
    assert watcher.plain_lines(20.0, last_ended=1) == []  # nothing ended, not yet due
    point = " ".join(o for o in c.overrides if o.startswith(("batch_size", "norm")))
    assert watcher.plain_lines(41.0, last_ended=1) == [
        "progress: 1/4 trials ended, 41 s elapsed, ETA 2 min 03 s",
        f"  training {point}: step 50/100, 3200 samples, test acc 0.400",
    ]


def test_planned_costs_put_small_batches_first_and_one_price_on_a_fusion_group(results):
    planned = expand([*TINY, f"results_dir={results}", "lr=0.05,0.1"])
    costs = planned_costs(planned)
    by = {}
    for p in planned:
        by.setdefault((p.config.batch_size, p.config.norm.kind), set()).add(costs[p.trial_id])
    assert all(len(v) == 1 for v in by.values())  # lr differs inside a fusion group, the cost not
    assert min(by[(16, "batch")]) > min(by[(64, "batch")]) > 0
