"""bsweep against the plain PyTorch loop a user would write, in the same run, on the same machine.

Baseline: a DataLoader over a TensorDataset (shuffle=True, drop_last=True), one model, one
process, torch.optim with its defaults, torch's default thread count, the same model, optimizer,
batch size, number of steps, and evaluation at the same measurement points (a test DataLoader,
`.item()` per batch, as users write it).

(a) per trial: seconds per step at each batch size of the study, bsweep alone (one trial,
    `train.train_step`) and fused (per member, at the width bsweep's launcher picks for the
    study's group size), against the baseline's;
(b) the whole study: `bsweep sweep study=claims_quick hydra/launcher=bsweep_fused
    hydra.launcher.n_jobs=<cores>` (a fresh results folder, so nothing is skipped) against the
    baseline training the same trials one after another. `--scale` runs that fraction of every
    trial's budget on both sides (epochs and steps scaled; the output says so);
(c) peak resident memory of each side (the largest process of the side).

    .venv/bin/python benchmarks/bench_vs_plain.py --scale 0.1 --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# ----------------------------------------------------------------------------------------------
# The baseline: what a user writes


def plain_trial(cfg, data_cpu, measure_at=None, max_steps=None, time_only=False):
    """Train one trial the plain way. Returns (seconds, steps, final test acc)."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    from bsweep.train.models import make_cnn
    from bsweep.train.device import resolve_device
    from bsweep.train.schedule import measurement_steps, total_steps

    device = resolve_device(cfg.device)  # a user moves the model, and each batch, to the GPU
    torch.manual_seed(cfg.seed)
    model = make_cnn(data_cpu.input_shape, data_cpu.n_classes, cfg.model, cfg.norm).to(device)
    if cfg.optim.name == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.optim.momentum,
                              nesterov=cfg.optim.nesterov, weight_decay=cfg.optim.weight_decay)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.optim.beta1, cfg.optim.beta2),
                               eps=cfg.optim.eps, weight_decay=cfg.optim.weight_decay)
    train = DataLoader(TensorDataset(data_cpu.x_train, data_cpu.y_train), batch_size=cfg.batch_size,
                       shuffle=True, drop_last=True)
    test = DataLoader(TensorDataset(data_cpu.x_test, data_cpu.y_test), batch_size=cfg.study.eval.batch_size)
    steps = max_steps or total_steps(cfg.study.budget, data_cpu.n_train, cfg.batch_size)
    points = set(measurement_steps(cfg.study.eval, cfg.batch_size, steps)) if not time_only else set()

    def evaluate():
        model.eval()
        loss, correct = 0.0, 0
        with torch.no_grad():
            for x, y in test:
                x, y = x.to(device), y.to(device)
                out = model(x)
                loss += F.cross_entropy(out, y, reduction="sum").item()
                correct += (out.argmax(1) == y).sum().item()
        model.train()
        return loss / len(test.dataset), correct / len(test.dataset)

    acc = math.nan
    if points:
        evaluate()
    step = 0
    t = time.perf_counter()
    while step < steps:
        for x, y in train:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step in points:
                _, acc = evaluate()
                if not math.isfinite(loss.item()):
                    return time.perf_counter() - t, step, acc
            if step >= steps:
                break
    return time.perf_counter() - t, step, acc


# ----------------------------------------------------------------------------------------------
# (a) per trial


def per_trial(study: str, seconds_per_point: float, baseline_threads: int, compiled: bool) -> list[dict]:
    import dataclasses

    import torch

    from bsweep.sweep.bench import step_seconds
    from bsweep.train.data import load_data
    from bsweep.train.device import resolve_device, settle
    from bsweep.train.perf import choose, choose_width
    from bsweep.plan import expand, structured

    planned = expand([f"study={study}", "norm=batch", "lr=0.01", "seed=0"])
    lrs_seeds = len(expand([f"study={study}", "norm=batch", "batch_size=1"]))  # members per group
    rows = []
    for p in planned:
        cfg = structured(p.config)
        device = resolve_device(cfg.device)
        data = load_data(cfg.data, device)
        # as bsweep's trials run (threads, denormals, malloc); the plain loop below shares this
        # process and so its malloc setting: (a) compares the loops, (b) the processes as run
        settle(cfg.threads or torch.get_num_threads(), cfg.device)
        perf = choose(cfg, data)  # what bsweep trains with: perf.amp/channels_last measured where auto
        alone = step_seconds(cfg, data, cfg.batch_size, 1, perf, block_seconds=seconds_per_point / 3)
        width = choose_width(cfg, data, lrs_seeds, perf)
        fused = step_seconds(cfg, data, cfg.batch_size, width, perf, block_seconds=seconds_per_point / 3) / width
        extra = {}
        if compiled:  # perf.compile=on (CUDA graphs on CUDA), alone and fused at the same width
            on = dataclasses.replace(perf, compile=True)
            extra["compiled_ms"] = step_seconds(cfg, data, cfg.batch_size, 1, on, block_seconds=seconds_per_point / 3) * 1e3
            extra["compiled_fused_ms_per_member"] = step_seconds(
                cfg, data, cfg.batch_size, width, on, block_seconds=seconds_per_point / 3) / width * 1e3
        mem = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
        flops = step_flops(cfg, data)
        # baseline: torch's default threads, CPU tensors through a DataLoader (on CUDA: .to per batch)
        torch.set_num_threads(baseline_threads or os.cpu_count())
        data_cpu = load_data(cfg.data, "cpu")
        n = max(20, min(3000, int(seconds_per_point / max(alone * 3, 1e-5))))
        plain_trial(cfg, data_cpu, max_steps=5, time_only=True)  # warm-up
        best = min(plain_trial(cfg, data_cpu, max_steps=n, time_only=True)[0] / n for _ in range(2))
        rows.append({"batch_size": cfg.batch_size, **perf.describe(), **extra, "plain_ms": best * 1e3, "bsweep_ms": alone * 1e3,
                     "fused_width": width, "fused_ms_per_member": fused * 1e3,
                     "ratio_alone": best / alone, "ratio_fused": best / fused, "cuda_peak_bytes": mem,
                     "tflops_alone": flops / alone / 1e12, "tflops_fused": flops / fused / 1e12,
                     "peak_fraction": (flops / min(alone, fused) / 1e12 / peak_tflops()) if peak_tflops() else None})
        print(f"  batch {cfg.batch_size:5d}: plain {best * 1e3:8.3f} ms/step, bsweep {alone * 1e3:8.3f} "
              f"({best / alone:5.2f}x), fused x{width} {fused * 1e3:8.3f} per member ({best / fused:5.2f}x)"
              f" [amp {perf.describe()['amp']}, channels_last {perf.describe()['channels_last']}]"
              + (f"; compiled {extra['compiled_ms']:.3f}, fused {extra['compiled_fused_ms_per_member']:.3f} per member"
                 if extra else ""), flush=True)
    return rows


# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from NVIDIA's data sheets.
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def peak_tflops() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    for key, value in BF16_PEAK_TFLOPS.items():
        if key in name:
            return value * (0.76 if "PCIe" in name and key == "H100" else 1.0)  # H100 PCIe: 756
    return None


def step_flops(cfg, data) -> float:
    """FLOPs of one training step (forward + backward), counted by torch's FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bsweep.train.engine import Alone, PerfChoice, train_step

    members = Alone(cfg, data, PerfChoice())
    idx = torch.arange(cfg.batch_size, device=data.x_train.device).unsqueeze(0)
    counter = FlopCounterMode(display=False)
    with counter:
        train_step(members, data, idx, amp=False)
    return float(counter.get_total_flops())


# ----------------------------------------------------------------------------------------------
# (b) + (c) the whole study


def scaled_overrides(overrides: list[str], scale: float) -> list[str]:
    from bsweep.plan import compose_config

    if scale >= 1:
        return []
    cfg = compose_config([o for o in overrides if "," not in o])
    b = cfg.study.budget
    out = []
    if b.epochs is not None:
        out.append(f"study.budget.epochs={b.epochs * scale:g}")
    if b.steps is not None:
        out.append(f"study.budget.steps={max(1, round(b.steps * scale))}")
    return out


def run_measured(cmd: list[str], env=None) -> tuple[float, int, int]:
    """Wall seconds, exit code and peak RSS (KiB, the largest process) of `cmd` in a fresh
    process tree."""
    probe = ("import resource, subprocess, sys, time, json; t = time.perf_counter(); "
             "r = subprocess.run(sys.argv[1:]); "
             "print(json.dumps([time.perf_counter() - t, r.returncode, "
             "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))")
    out = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0 or not out.stdout.strip():
        print(out.stdout[-3000:], out.stderr[-3000:])
    seconds, code, rss = json.loads(out.stdout.strip().splitlines()[-1])
    if code != 0:
        print(out.stdout[-3000:], out.stderr[-3000:])
    return seconds, code, rss


def baseline_study(overrides: list[str], threads: int) -> None:
    """Child process: every trial of the sweep `overrides`, one after another, the plain way."""
    import torch

    from bsweep.train.data import load_data
    from bsweep.plan import expand, structured

    if threads:
        torch.set_num_threads(threads)
    planned = expand(overrides)
    data = None
    for p in planned:
        cfg = structured(p.config)
        if data is None:
            data = load_data(cfg.data, "cpu")
        plain_trial(cfg, data)


def merged(overrides: list[str], later: list[str]) -> list[str]:
    """`overrides` with `later` appended, a later key replacing an earlier one (Hydra refuses
    the same key twice)."""
    keys = {o.split("=", 1)[0] for o in later}
    return [o for o in overrides if o.split("=", 1)[0] not in keys] + later


# The small-batch grid of issue 12: 18 trials at batch 1, 4 and 16, one epoch each, where
# per-step overhead and everything outside training weigh most.
SMALL_GRID = ["data=mnist1d", "norm=batch", "batch_size=1,4,16", "lr=0.01,0.03,0.1", "seed=0,1",
              "study.budget.epochs=1"]


def where_time_went(study_dir: Path, wall: float, workers: int) -> dict:
    """From a finished sweep's status records, as `bsweep sweep` prints it (`launch.time_split`):
    seconds of training and of evaluation summed over the fused chunks (members of a chunk share
    their clocks, so each chunk counts once), and the rest of `workers` x `wall` (start-up,
    planning, data, probes, width search, records, idle) per worker."""
    from bsweep import records
    from bsweep.sweep.launch import time_split

    statuses = []
    for tdir in study_dir.glob("trials/*"):
        try:
            status = records.read_status(tdir)
        except (OSError, ValueError):  # a damaged record: not this benchmark's to judge
            continue
        if status is not None:
            statuses.append(status)
    split = time_split(statuses, wall, workers)
    return {"groups": split.chunks, "train_seconds": split.train, "eval_seconds": split.evaluation,
            "other_seconds": split.rest_per_process}


def floor_seconds(overrides: list[str], workers: int) -> dict:
    """The arithmetic floor of the sweep: FLOPs of every training step and every evaluation
    (torch's FlopCounterMode, per sample) over the FLOP rate one thread reaches on them (a
    training step at batch 1024; an evaluation of one model over the test set), / `workers`."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bsweep.sweep.bench import step_seconds
    from bsweep.train.data import load_data
    from bsweep.train.device import keep_freed_memory
    from bsweep.train.engine import Alone, PerfChoice, evaluate
    from bsweep.plan import expand, structured
    from bsweep.train.schedule import measurement_steps, total_steps
    from bsweep.train.timing import time_steps

    keep_freed_memory()  # the rates bsweep's own processes reach (`bsweep.train.device.settle`)
    torch.set_num_threads(1)
    planned = [structured(p.config) for p in expand(overrides)]
    data = load_data(planned[0].data, "cpu")
    train_flops = eval_flops = 0.0
    per_sample: dict = {}
    for cfg in planned:
        key = (cfg.model.name, cfg.model.width, cfg.norm.kind)
        if key not in per_sample:
            b = 64
            train = step_flops(dataclasses_replace(cfg, batch_size=b), data) / b
            members = Alone(cfg, data, PerfChoice())
            members.model.eval()
            counter = FlopCounterMode(display=False)
            with counter, torch.no_grad():
                members.logits(data.x_test[:b])
            per_sample[key] = (train, counter.get_total_flops() / b)
        train, forward = per_sample[key]
        steps = total_steps(cfg.study.budget, data.n_train, cfg.batch_size)
        evals = len(measurement_steps(cfg.study.eval, cfg.batch_size, steps))
        train_flops += steps * cfg.batch_size * train
        eval_flops += evals * len(data.x_test) * forward
    big = dataclasses_replace(planned[0], batch_size=min(1024, data.n_train))
    seconds = step_seconds(big, data, big.batch_size, 1, PerfChoice(), block_seconds=1.0)
    rate = step_flops(big, data) / seconds
    # evaluation is forward only, which runs faster per FLOP than a training step: its own rate,
    # one model over the test set at the study's evaluation batch
    members = Alone(planned[0], data, PerfChoice())
    evaluate(members, data, planned[0].study.eval.batch_size, False)
    eval_time = time_steps(lambda: evaluate(members, data, planned[0].study.eval.batch_size, False),
                           data.x_train.device, 0.5, 3)
    eval_rate = len(data.x_test) * per_sample[next(iter(per_sample))][1] / eval_time
    return {"train_tflop": train_flops / 1e12, "eval_tflop": eval_flops / 1e12, "gflops_per_thread": rate / 1e9,
            "eval_gflops_per_thread": eval_rate / 1e9,
            "floor_seconds": (train_flops / rate + eval_flops / eval_rate) / workers}


def dataclasses_replace(cfg, **changes):
    import copy as _copy

    out = _copy.deepcopy(cfg)
    for k, v in changes.items():
        setattr(out, k, v)
    return out


def whole_study(name: str, overrides: list[str], scale: float, jobs: int, threads: int,
                variants: list[list[str]], result: dict) -> None:
    """Fill `result` as each side finishes, so a run stopped by a time limit keeps what it
    measured: bsweep as a user runs it (with where its wall time went), then the plain loop,
    then one more bsweep run per extra variant (overrides added to the user's command)."""
    extra = scaled_overrides(overrides, scale)
    result.update({"study": name, "scale": scale, "overrides": extra, "jobs": jobs, "trials": None, "runs": []})
    result["floor"] = floor_seconds([*overrides, *extra], jobs)
    f = result["floor"]
    print(f"  arithmetic floor: {f['floor_seconds']:.1f} s on {jobs} cores ({f['train_tflop']:.2f} TFLOP training "
          f"at {f['gflops_per_thread']:.0f} GFLOP/s per thread + {f['eval_tflop']:.2f} evaluation at "
          f"{f['eval_gflops_per_thread']:.0f})", flush=True)

    def bsweep_run(variant: list[str]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            # `python -m bsweep`: the CLI a user runs, also where bsweep is on PYTHONPATH, not installed
            args = merged(["sweep", *overrides, f"results_dir={tmp}/results", *extra,
                           "hydra/launcher=bsweep_fused", f"hydra.launcher.n_jobs={jobs}"], variant)
            print("  bsweep:  ", " ".join(args), flush=True)
            seconds, code, rss = run_measured([sys.executable, "-m", "bsweep", *args])
            [study_dir] = list(Path(tmp, "results").iterdir()) or [Path(tmp)]
            result["trials"] = len(list(study_dir.glob("trials/*/status.json")))
            workers = int(next(a for a in args if a.startswith("hydra.launcher.n_jobs=")).split("=")[1])
            spent = where_time_went(study_dir, seconds, workers)
        run = {"variant": " ".join(variant) or "(as a user runs it)", "command": " ".join(args[1:]),
               "seconds": seconds, "exit": code, "peak_rss_mib": rss / 1024, "workers": workers, **spent}
        print(f"    train {spent['train_seconds']:.1f} s + evaluation {spent['eval_seconds']:.1f} s over "
              f"{spent['groups']} groups; the rest, per worker: {spent['other_seconds']:.1f} s", flush=True)
        if result.get("plain_seconds"):
            run["ratio"] = result["plain_seconds"] / seconds
        result["runs"].append(run)
        print(f"    {seconds:.1f} s, exit {code}" + (f", {run['ratio']:.2f}x the plain loop" if "ratio" in run else ""), flush=True)

    bsweep_run(variants[0])
    base_cmd = [sys.executable, __file__, "--baseline-child", "--baseline-threads", str(threads), "--",
                *overrides, *extra]
    print("  baseline: the same", result["trials"], "trials one after another, plain loop", flush=True)
    seconds, code, rss = run_measured(base_cmd)
    result.update(plain_seconds=seconds, plain_exit=code, plain_peak_rss_mib=rss / 1024)
    result["runs"][0]["ratio"] = seconds / result["runs"][0]["seconds"]
    print(f"    {seconds:.1f} s, exit {code}; bsweep {result['runs'][0]['ratio']:.2f}x", flush=True)
    for variant in variants[1:]:
        bsweep_run(variant)


# ----------------------------------------------------------------------------------------------


def machine() -> dict:
    import torch

    from bsweep.train.device import cpu_flags, device_name

    flags = sorted(f for f in cpu_flags() if f.startswith("avx512"))
    # the kernels torch runs: an AVX-512 CPU can be told to use its AVX2 ones (the other CI class)
    capability = os.environ.get("ATEN_CPU_CAPABILITY") or torch.backends.cpu.get_cpu_capability()
    info = {"cpu": device_name(torch.device("cpu")), "cores": len(os.sched_getaffinity(0)), "torch": torch.__version__,
            "python": platform.python_version(), "load_before": os.getloadavg(),
            "cpu_flags": ", ".join(flags) or "no AVX-512 (AVX2)", "kernels": capability}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _python() -> str:
    """This interpreter as a user would type it: relative inside the checkout, else its name."""
    exe = Path(sys.executable)
    try:
        return str(exe.relative_to(ROOT))
    except ValueError:
        return exe.name


def markdown(info: dict, rows: list[dict], study: dict | None, args) -> str:
    lines = [f"## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {info.get('gpu') or info['cpu']}", "",
             f"Machine: {info['cpu']}, {info['cores']} cores" + (f", GPU {info['gpu']}" if info.get("gpu") else "")
             + f"; torch {info['torch']}, Python {info['python']}.",
             f"CPU flags: {info['cpu_flags']}; torch's CPU kernels: {info['kernels']}.",
             f"Load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in info['load_before'])}; "
             f"after: {', '.join(f'{x:.2f}' for x in info['load_after'])}. Other work shared the machine: "
             "timings are noisy, ratios come from the same run.", "",
             f"Command: `{' '.join([_python(), 'benchmarks/bench_vs_plain.py', *sys.argv[1:]])}`", ""]
    if rows:
        lines += ["### (a) Seconds per step, one trial (study grid batch sizes, batch norm, SGD)", "",
                  f"Baseline threads: {args.baseline_threads or 'torch default'}; bsweep: 1 thread per process.", "",
                  "| batch | plain loop ms/step | bsweep alone ms/step | speed-up | fused width | fused ms/step per member | speed-up | bsweep's amp, channels_last |"
                  + (" compiled alone ms/step | compiled fused ms/step per member |" if rows[0].get("compiled_ms") else ""),
                  "|---:|---:|---:|---:|---:|---:|---:|---|" + ("---:|---:|" if rows[0].get("compiled_ms") else "")]
        for r in rows:
            lines.append(f"| {r['batch_size']} | {r['plain_ms']:.3f} | {r['bsweep_ms']:.3f} | {r['ratio_alone']:.2f}x "
                         f"| {r['fused_width']} | {r['fused_ms_per_member']:.3f} | {r['ratio_fused']:.2f}x "
                         f"| {r['amp']}, {r['channels_last']} |"
                         + (f" {r['compiled_ms']:.3f} | {r['compiled_fused_ms_per_member']:.3f} |" if r.get("compiled_ms") else ""))
        top = rows[-1]
        lines += ["", f"At batch {top['batch_size']}: {max(top['tflops_alone'], top['tflops_fused']):.3g} TFLOP/s achieved "
                  "(FLOPs of a step counted by torch's FlopCounterMode)"
                  + (f", {top['peak_fraction']:.2%} of the card's dense bf16 peak." if top.get("peak_fraction") else "."), ""]
    if study and study.get("runs"):
        lines += [f"### (b) Whole sweep: {study['study']} ({study['trials']} trials)", ""]
        if study.get("floor"):
            f = study["floor"]
            lines += [f"Arithmetic floor: **{f['floor_seconds']:.1f} s** on {study['jobs']} cores "
                      f"({f['train_tflop']:.3f} TFLOP of training at the {f['gflops_per_thread']:.0f} GFLOP/s one "
                      f"thread reaches in a training step at batch 1024, and {f['eval_tflop']:.3f} TFLOP of "
                      f"evaluation at the {f.get('eval_gflops_per_thread', f['gflops_per_thread']):.0f} GFLOP/s it "
                      "reaches evaluating one model).", ""]
        if study["scale"] < 1:
            lines += [f"**Scaled:** every trial ran {study['scale']:g} of its budget on both sides "
                      f"(`{' '.join(study['overrides'])}`), evaluation cadence unchanged.", ""]
        plain = study.get("plain_seconds")
        floor = (study.get("floor") or {}).get("floor_seconds")
        lines += ["| side | wall seconds | speed vs the plain loop | x the floor | training s | evaluation s | the rest, per worker s | peak RSS (largest process) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|",
                  (f"| plain loop, trials one after another | {plain:.1f} | 1x | {plain / floor if floor else float('nan'):.1f} | | | | {study['plain_peak_rss_mib']:.0f} MiB |"
                   if plain is not None else "| plain loop, trials one after another | not finished (time limit) | | | | | | |")]
        for run in study["runs"]:
            ratio = f"**{run['ratio']:.2f}x**" if "ratio" in run else "-"
            failed = "" if run["exit"] == 0 else f" (exit {run['exit']})"
            lines.append(f"| `bsweep {run['command']}`{failed} | {run['seconds']:.1f} | {ratio} | "
                         f"{run['seconds'] / floor if floor else float('nan'):.1f} | {run['train_seconds']:.1f} | "
                         f"{run['eval_seconds']:.1f} | {run['other_seconds']:.1f} | "
                         f"{run['peak_rss_mib']:.0f} MiB (x{run['workers']} workers) |")
        lines += ["", "Training and evaluation seconds are summed over the fused groups (from the trials' "
                  "`train_seconds` and `eval_seconds`); the rest is everything else a worker's wall time "
                  "held: start-up, planning, data, probes, width search, records, idle.", ""]
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="claims_quick")
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of every trial's budget, both sides")
    ap.add_argument("--jobs", type=int, default=0, help="bsweep worker processes (0: bsweep's default, `bsweep reproduce --jobs`)")
    ap.add_argument("--baseline-threads", type=int, default=0, help="0 = torch's default")
    ap.add_argument("--seconds-per-point", type=float, default=1.5, help="(a): timing per batch size and side")
    ap.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                    help="(a): also time perf.compile=on (auto: with a GPU only; on the CPU it is slower)")
    ap.add_argument("--also", action="append", default=[], metavar="OVERRIDES",
                    help="(b): also run bsweep with these extra overrides (space-separated), e.g. "
                         "'perf.compile=on' or 'hydra.launcher.n_jobs=4'; repeatable")
    ap.add_argument("--small-grid", action="store_true",
                    help="(b): the small-batch grid (" + " ".join(SMALL_GRID) + ") instead of --study")
    ap.add_argument("--skip-per-trial", action="store_true")
    ap.add_argument("--skip-study", action="store_true")
    ap.add_argument("--write", type=Path, help="append the results as a section of this Markdown file")
    ap.add_argument("--json", type=Path, help="also write the raw numbers here")
    ap.add_argument("--baseline-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline_child:
        baseline_study(args.extra, args.baseline_threads)
        return
    info = machine()
    if not args.jobs:
        from bsweep.sweep.reproduce import default_jobs

        args.jobs = default_jobs()
    print(f"machine: {info}", flush=True)
    compiled = args.compile == "on" or (args.compile == "auto" and bool(info.get("gpu")))
    variants = [[]] + [a.split() for a in args.also]
    rows: list[dict] = []
    study: dict = {}

    def finish(*_signal) -> None:
        """Write what was measured, also when a time limit (SIGTERM) cuts the run short."""
        info["load_after"] = os.getloadavg()
        text = markdown(info, rows, study, args)
        print(text, flush=True)
        if args.write:
            with open(args.write, "a") as f:
                f.write(text + "\n")
        if args.json:
            args.json.write_text(json.dumps({"machine": info, "per_trial": rows, "study": study}, indent=2, default=str))
        if _signal:
            sys.exit(124)

    signal.signal(signal.SIGTERM, finish)
    if not args.skip_per_trial:
        print("(a) per trial", flush=True)
        rows.extend(per_trial(args.study, args.seconds_per_point, args.baseline_threads, compiled))
    if not args.skip_study:
        print(f"(b) whole sweep {'small-batch grid' if args.small_grid else args.study}, scale {args.scale:g}" + (" (SCALED: a fraction of every trial's budget, both sides)" if args.scale < 1 else ""), flush=True)
        if args.small_grid:
            whole_study("small-batch grid", SMALL_GRID, args.scale, args.jobs, args.baseline_threads, variants, study)
        else:
            whole_study(args.study, [f"study={args.study}"], args.scale, args.jobs, args.baseline_threads, variants, study)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    finish()

if __name__ == "__main__":
    main()
