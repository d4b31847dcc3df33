"""How a trial runs, decided by measuring: bf16 autocast, channels_last and the fusion width.

`perf.amp` and `perf.channels_last` take `on`, `off` or `auto`. `auto` times the training step of
the trial's own model, norm, optimizer and batch size on its own device with each candidate
setting and keeps the fastest, but only where it beats the exact setting (float32, contiguous)
by a margin: bf16 moves results (losses by ~1e-2 relative), so it must pay clearly.

What pays depends on the batch size and the hardware: on a CPU with avx512_bf16, bf16 autocast
slows a batch-1 step and speeds a batch-1024 one (docs/performance.md), so one fixed answer per
device would be wrong at one end of every study.

A choice is remembered per process and, given a study folder, on disk in
`results/<study>/perf/<key>.json` (first writer wins), so all trials of one study at one
(device, model, norm, optimizer, batch size) run the same way, in every worker and on resume.

The fusion width (`perf.fuse`) is measured: members per fused model, from the step time per
member at a few widths. Every timing here runs the engine's own training step (`timed_step`),
through the one timing helper (`bsweep.train.timing`).

Both measurements are also remembered per machine, under `datacache.cache_dir()/perf/` (keyed
by the device's name, its kernels, torch's version and threads, and the step's shape), as
cuDNN and Inductor keep their autotuning: a probe and a width search cost about a second each
per fusion group (docs/performance.md), and the next study on the same machine need not pay
them again. Delete that folder to measure afresh.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch

from bsweep.config import Config, measures_gradients, perf_setting
from bsweep.train.data import TensorData
from bsweep.train.datacache import cache_dir
from bsweep.train.device import cpu_flags, device_name
from bsweep.records import write_json
from bsweep.train.engine import PerfChoice, train_step
from bsweep.train.fused import build_members, custom_obstacle
from bsweep.train.timing import WARM_CALLS, time_interleaved, time_steps, warm_call_seconds

log = logging.getLogger("bsweep")

# bf16 autocast must make the step at least 20 % faster to be chosen: it changes results (8
# mantissa bits; losses move by ~1e-2 relative), which is worth it only for a clear gain.
AMP_MARGIN = 1.20
# channels_last changes only the order of summation, so a small gain is enough: 5 % is above
# the probe's noise at small batch (docs/performance.md).
LAYOUT_MARGIN = 1.05
# Each candidate is timed in up to PROBE_ROUNDS blocks of at least PROBE_BLOCK_SECONDS (and at
# least PROBE_MIN_STEPS steps), interleaved across candidates so a burst of other load hits them
# alike; the best block counts (load only ever slows a block down). 5 rounds of 0.1 s give
# repeat probes the same picks, where fewer, shorter rounds did not (docs/performance.md). After
# 2 rounds the probe stops early when every candidate is CLEAR times away from its margin.
PROBE_BLOCK_SECONDS = 0.1
PROBE_ROUNDS = 5
PROBE_MIN_ROUNDS = 2
PROBE_MIN_STEPS = 2
CLEAR = 1.3
PERF_DIR = "perf"
# Trials that may fuse are timed fused, PROBE_WIDTH members wide: the layout that wins alone
# need not win fused (docs/performance.md). 8 is a width the search tries and a typical lr x
# seed group. A step whose PROBE_WIDTH steps alone take longer than FUSED_PROBE_SECONDS may be
# compute-bound; it is, when two members fused cost at least 1 / FUSION_GAIN of two steps alone
# (`compute_bound`): then it is timed alone and the width search stops there. The time alone is
# only the first test, because a slow machine can pass it at batch sizes where fusing still pays.
PROBE_WIDTH = 8
FUSED_PROBE_SECONDS = 0.05
FUSION_GAIN = 1.15
# Part of a probe's key: decisions made by an older rule (alone only, or before fused models
# kept channels_last weights, or that timed a step alone for being slow alone where two members
# fused would have paid) are made again rather than trusted.
PROBE_VERSION = 3

_MEMO: dict[str, PerfChoice] = {}


def bf16_can_pay(device: torch.device) -> bool:
    """Whether bf16 autocast can be faster here at all. Not on a CPU without native bf16 (the
    avx512_bf16 or amx_bf16 instructions, with torch running its AVX-512 kernels): there bf16 is
    emulated in float32 and only adds conversions, so `perf.amp=auto` is float32 without a probe
    (a probe costs up to a second per batch size and process). GPUs are probed."""
    if device.type != "cpu":
        return True
    if not torch.backends.cpu.get_cpu_capability().upper().startswith("AVX512"):
        return False
    flags = cpu_flags()
    return not flags or bool(flags & {"avx512_bf16", "amx_bf16"})  # unknown flags: measure


def takes_channels_last(cfg: Config, data: TensorData) -> bool:
    """Whether the trial's model has 2-D layers for the channels_last layout: on images, and the
    built-in CNN on signals too (it runs them as images of height 1, `models.SmallCNN`)."""
    return data.x_train.dim() == 4 or cfg.model.target is None


def candidates(cfg: Config, images: bool, bf16: bool = True) -> list[PerfChoice]:
    """Every setting `cfg.perf` allows for this trial; the exact one (if allowed) first.
    `bf16`: whether bf16 can pay on the device (`bf16_can_pay`); if not, `amp=auto` is off."""
    def values(v: str) -> list[bool]:
        return [False, True] if v == "auto" else [v == "on"]

    amp_setting = perf_setting(cfg.perf.amp, "amp")
    amp = [False] if amp_setting == "auto" and not bf16 else values(amp_setting)
    cl = values(perf_setting(cfg.perf.channels_last, "channels_last")) if images else [False]
    compiled = perf_setting(cfg.perf.compile, "compile") == "on"
    return [PerfChoice(a, c, compiled) for a in amp for c in cl]


def margin(c: PerfChoice, exact: PerfChoice) -> float:
    """The speed-up `c` needs over `exact` to be chosen: AMP_MARGIN if it turns bf16 on,
    LAYOUT_MARGIN if it changes the memory format, the product when it does both."""
    return (AMP_MARGIN if c.amp and not exact.amp else 1.0) * (
        LAYOUT_MARGIN if c.channels_last != exact.channels_last else 1.0)


def pick(seconds: dict[PerfChoice, float]) -> PerfChoice:
    """The fastest candidate that beats the most exact one (the first key) by its margin;
    otherwise the exact one."""
    exact = next(iter(seconds))
    best = exact
    for c, t in seconds.items():
        if seconds[exact] / t >= margin(c, exact) and t < seconds[best]:
            best = c
    return best


def decided(seconds: dict[PerfChoice, float]) -> bool:
    """Whether every candidate's speed-up is CLEAR times above or below its margin."""
    exact = next(iter(seconds))
    for c, t in seconds.items():
        if c != exact and 1 / CLEAR < (seconds[exact] / t) / margin(c, exact) < CLEAR:
            return False
    return True


def probe_key(cfg: Config, data: TensorData) -> dict:
    """What the speed of the candidates depends on (not lr, seed or the data's values)."""
    device = data.x_train.device
    return {
        "device": device.type,
        "device_name": device_name(device),
        # the CPU kernels torch runs (ATEN_CPU_CAPABILITY can move them off the CPU's best)
        "kernels": torch.backends.cpu.get_cpu_capability() if device.type == "cpu" else None,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "input_shape": list(data.input_shape),
        "model": asdict(cfg.model),
        "norm": asdict(cfg.norm),
        "optim": cfg.optim.name,
        "batch_size": min(cfg.batch_size, data.n_train),
        "amp": perf_setting(cfg.perf.amp, "amp"),
        "channels_last": perf_setting(cfg.perf.channels_last, "channels_last"),
        "compile": perf_setting(cfg.perf.compile, "compile"),
        # what was (or is) chosen among: a choice remembered from fewer candidates (the CNN on
        # signals had no channels_last before its layers became 2-D) is not this choice
        "candidates": [c.describe() for c in candidates(cfg, takes_channels_last(cfg, data), bf16_can_pay(device))],
        # timed fused or alone (`measure`): whether the trial may fuse, as far as settings say
        # (a model of one's own that vmap cannot batch is told apart by "model" above)
        "may_fuse": str(cfg.perf.fuse).strip().lower() != "off" and not measures_gradients(cfg),
        "probe_width": PROBE_WIDTH,
        "probe": PROBE_VERSION,
    }


def measure(cfg: Config, data: TensorData, choices: list[PerfChoice]) -> tuple[dict[PerfChoice, float], list[dict]]:
    """Seconds per member-step of `cfg`'s trial under each choice, and a row per choice for the
    record. Timed PROBE_WIDTH members fused where the trial may fuse and that step is not
    compute-bound (the trial then trains fused, where the layouts differ most); alone otherwise."""
    if fusion_obstacle(cfg, data) is None and not compute_bound(cfg, data, choices[0]):
        try:
            fused = _probe(cfg, data, choices, PROBE_WIDTH)
        except Exception:  # a model of one's own whose forward vmap cannot batch: it trains alone
            if cfg.model.target is None:
                raise
        else:
            return _per_member(fused, PROBE_WIDTH)
    return _per_member(_probe(cfg, data, choices, 1), 1)


def slow_alone(seconds_alone: float) -> bool:
    """Whether a step that takes `seconds_alone` for one trial alone may be compute-bound:
    PROBE_WIDTH of them (roughly one fused step) take longer than FUSED_PROBE_SECONDS."""
    return PROBE_WIDTH * seconds_alone > FUSED_PROBE_SECONDS


def pair_seconds(device: torch.device, alone: Callable[[], None], pair: Callable[[], None]) -> tuple[float, float]:
    """Seconds per member-step of a step alone and of one of two members fused, timed side by
    side (a burst of load slows both)."""
    one, two = time_interleaved([(alone, device), (pair, device)], WIDTH_BLOCK_SECONDS, WIDTH_BLOCKS, WIDTH_MIN_STEPS)
    return one, two / 2


def fusing_pays(one: float, two: float) -> bool:
    """Whether two members fused (`two` seconds a member) beat one alone (`one`) by FUSION_GAIN."""
    return FUSION_GAIN * two < one


def compute_bound(cfg: Config, data: TensorData, choice: PerfChoice) -> bool:
    """Whether `cfg`'s step is compute-bound under `choice`: slow alone (`slow_alone`), and two
    members fused save too little to pay (`fusing_pays`)."""
    alone, device = timed_step(cfg, data, 1, choice), data.x_train.device
    if not slow_alone(warm_call_seconds(alone, device)):
        return False
    return not fusing_pays(*pair_seconds(device, alone, timed_step(cfg, data, 2, choice)))


def _per_member(seconds: dict[PerfChoice, float], width: int) -> tuple[dict[PerfChoice, float], list[dict]]:
    per_member = {c: t / width for c, t in seconds.items()}
    return per_member, [{**c.describe(), "width": width, "ms_per_member_step": t * 1e3} for c, t in per_member.items()]


def _probe(cfg: Config, data: TensorData, choices: list[PerfChoice], width: int) -> dict[PerfChoice, float]:
    """Best-block seconds per training step, `width` members wide, under each choice."""
    device = data.x_train.device
    best = time_interleaved([(timed_step(cfg, data, width, c), device) for c in choices], PROBE_BLOCK_SECONDS,
                            PROBE_ROUNDS, PROBE_MIN_STEPS,
                            enough=lambda done, best: done >= PROBE_MIN_ROUNDS and decided(dict(zip(choices, best))))
    return dict(zip(choices, best))


def _choice(record: dict | None) -> PerfChoice | None:
    try:
        choice = record["choice"]  # type: ignore[index]
        return PerfChoice(bool(choice["amp"]), bool(choice["channels_last"]), bool(choice.get("compile", False)))
    except (KeyError, TypeError, AttributeError):
        return None


def _read(path: Path) -> PerfChoice | None:
    try:
        return _choice(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def _store(path: Path, record: dict) -> PerfChoice | None:
    """Write `record` at `path` unless a choice is there already; return the choice on disk
    afterwards (ours or the first writer's). None when the folder cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        try:
            os.link(tmp, path)  # atomic and exclusive: a second writer gets FileExistsError
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    except OSError:
        return None
    return _read(path)


def _digest(key: dict) -> str:
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def machine_path(kind: str, key: dict) -> Path:
    """Where this machine remembers a measurement of `kind` ("choice" or "width") for `key`."""
    return cache_dir() / PERF_DIR / f"{kind}-{_digest(key)}.json"


def _machine_record(path: Path, key: dict) -> dict | None:
    """The record at `path` when it holds `key` (a digest collision or a damaged file: None)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("key") == json.loads(json.dumps(key, default=str)) else None


def _remember(path: Path, record: dict) -> None:
    """Write the machine's record at `path` (last writer wins: both measured the same key; a
    damaged file is replaced). A cache folder that cannot be written costs only the cache."""
    try:
        write_json(path, record)
    except OSError:
        pass


def choose(cfg: Config, data: TensorData, study_dir: Path | None = None) -> PerfChoice:
    """The settings `cfg`'s trial trains with on `data`'s device: fixed ones as given, `auto`
    ones measured once per (device, model, norm, optimizer, batch size) and remembered: by the
    study (every worker and every resume runs the same way) and by the machine."""
    options = candidates(cfg, takes_channels_last(cfg, data), bf16_can_pay(data.x_train.device))
    if len(options) == 1:
        return options[0]
    key = probe_key(cfg, data)
    digest = _digest(key)
    path = Path(study_dir) / PERF_DIR / f"{digest}.json" if study_dir is not None else None
    memo_key = f"{digest}:{path}"
    if memo_key in _MEMO:
        return _MEMO[memo_key]
    choice = _read(path) if path is not None and path.exists() else None
    if choice is None:
        mpath = machine_path("choice", key)
        record = _machine_record(mpath, key)
        choice = _choice(record)
        if choice is None:
            seconds, rows = measure(cfg, data, options)
            choice = pick(seconds)
            record = {"key": key, "choice": asdict(choice), "time": time.time(), "measured": rows}
            _remember(mpath, record)
        if path is not None:
            choice = _store(path, record) or choice
    _MEMO[memo_key] = choice
    return choice


def timed_step(cfg: Config, data: TensorData, width: int, perf: PerfChoice,
               batch_size: int | None = None) -> Callable[[], None]:
    """One training step (`engine.train_step`) of `width` members like `cfg`'s trial (at
    `batch_size`, default the trial's) on random batches, at 1e-3 of the trial's learning rate
    so that repeating it cannot diverge. Torch's RNGs (CPU and every GPU) are left as they were."""
    cfg = copy.deepcopy(cfg)
    cfg.batch_size = min(batch_size or cfg.batch_size, data.n_train)
    device = data.x_train.device
    with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_available() else []):
        members = build_members([cfg] * width, data, perf)  # seeds the global RNG to initialize
    members.set_lr([cfg.lr * 1e-3] * width)
    gen = torch.Generator(device=device)
    gen.manual_seed(0)

    def step() -> None:
        idx = torch.randint(0, data.n_train, (width, cfg.batch_size), generator=gen, device=device)
        train_step(members, data, idx, perf.amp)

    return step


# Widths the auto choice tries (members per fused model), and the cap: beyond 32 the gain per
# member has flattened in every measurement (docs/performance.md, "Fused trials") and memory grows linearly.
CANDIDATE_WIDTHS = (1, 2, 4, 8, 16, 32)  # plus the group's own size, when it is not one of these
# Each width is timed in WIDTH_BLOCKS blocks of at least WIDTH_BLOCK_SECONDS and WIDTH_MIN_STEPS
# steps (best block): a fixed handful of small-batch steps was too noisy to pick a width, so a
# block lasts long enough to hold dozens; the step minimum binds only for slow steps.
WIDTH_BLOCK_SECONDS = 0.025
WIDTH_BLOCKS = 2
WIDTH_MIN_STEPS = 2
# A width whose timing would take longer than this is not tried (nor any wider): where one
# fused step is that slow the step is compute-bound and fusing saves little, while timing the
# wide widths costs a noticeable share of a sweep (docs/performance.md).
WIDTH_SEARCH_SECONDS = 1.0
# The search over widths stops once a width is this much slower per member than the best so far
# (large batches, where grouped convolutions lose); a nearer miss is timing noise, not a trend,
# since per-member time need not fall at every width. A width past the ratio is timed again,
# interleaved with the best width, and the search stops only if it is still past the ratio of
# the best's new timing: one timing taken while every worker was probing had stopped searches
# that should have fused (docs/performance.md).
STOP_RATIO = 1.5
# Part of a remembered search's key: a search made by an older rule (one that stopped on timings
# taken apart from the best width's, searched compute-bound steps, or took a step slow alone for
# compute-bound without timing two members fused) is made again rather than trusted.
WIDTH_SEARCH_VERSION = 5

_WIDTH_CACHE: dict[str, dict[int, float]] = {}


def width_table(cfg: Config, data: TensorData, max_width: int, perf: PerfChoice = PerfChoice()) -> dict[int, float]:
    """Seconds per member-step at each candidate width up to `max_width` (cached per shape).

    Widths are tried in increasing order (the powers of two below `max_width`, then `max_width`)
    and the search stops once a width is clearly (STOP_RATIO) slower per member than the best,
    or at width 2 when that step is compute-bound (slow alone, and two members fused, timed
    beside it, save less than FUSION_GAIN).
    """
    key = {**probe_key(cfg, data), "perf": asdict(perf), "max_width": max_width, "search_seconds": WIDTH_SEARCH_SECONDS,
           "search": WIDTH_SEARCH_VERSION}
    memo_key = _digest(key)
    if memo_key in _WIDTH_CACHE:
        return _WIDTH_CACHE[memo_key]
    mpath = machine_path("width", key)
    record = _machine_record(mpath, key)
    if record is not None:
        try:
            _WIDTH_CACHE[memo_key] = {int(w): float(t) for w, t in record["seconds_per_member_step"].items()}
            return _WIDTH_CACHE[memo_key]
        except (KeyError, TypeError, ValueError, AttributeError):
            pass
    table: dict[int, float] = {}
    device = data.x_train.device
    best, best_width, best_step = math.inf, 0, None
    paired: dict[int, Callable[[], None]] = {}  # width 2 where it was timed beside width 1
    for w in sorted({*(c for c in CANDIDATE_WIDTHS if c < max_width), max_width}):
        calls = WARM_CALLS + 1 + WIDTH_BLOCKS * WIDTH_MIN_STEPS  # steps_per_block's, at the least
        if table and calls * w * best > WIDTH_SEARCH_SECONDS and w not in paired:
            break
        if w in paired:
            step = paired.pop(w)
        else:
            step = timed_step(cfg, data, w, perf)
            table[w] = time_steps(step, device, WIDTH_BLOCK_SECONDS, WIDTH_BLOCKS, WIDTH_MIN_STEPS) / w
        if w == 1 and slow_alone(table[1]) and max_width >= 2:
            paired[2] = timed_step(cfg, data, 2, perf)
            one, table[2] = pair_seconds(device, step, paired[2])
            table[1] = min(table[1], one)
            if not fusing_pays(table[1], table[2]):
                # one trial alone fills the core: wider steps cost as much per member, and
                # searching would pick a width by timing noise (docs/performance.md)
                break
        if table[w] > STOP_RATIO * best:
            # A trend, or a burst of load (at a sweep's start every worker searches at once):
            # time this width again side by side with the best, so that a burst slows both.
            again, best_again = time_interleaved([(step, device), (best_step, device)], WIDTH_BLOCK_SECONDS,
                                                 WIDTH_BLOCKS, WIDTH_MIN_STEPS)
            table[w] = min(table[w], again / w)
            if again / w > STOP_RATIO * best_again / best_width:
                break
        if table[w] < best:
            best, best_width, best_step = table[w], w, step
    _WIDTH_CACHE[memo_key] = table
    _remember(mpath, {"key": key, "seconds_per_member_step": table, "time": time.time()})
    return table


def choose_width(cfg: Config, data: TensorData, n_members: int, perf: PerfChoice = PerfChoice()) -> int:
    """The fusion width for a group of `n_members` trials like `cfg`: 1 with `perf.fuse=off`,
    noise tracking or a model of the user's own, forced by `perf.fuse`, or measured ("auto"):
    the candidate width with the lowest seconds per member-step."""
    fuse = str(cfg.perf.fuse).strip().lower()
    if n_members <= 1:
        return 1
    obstacle = fusion_obstacle(cfg, data)
    if obstacle is not None:
        if cfg.model.target is not None and fuse != "off" and not measures_gradients(cfg):
            _say_once(f"model._target_={cfg.model.target} trains unfused: {obstacle}")
        return 1
    if fuse != "auto":
        if not fuse.isdigit() or int(fuse) < 1:
            raise ValueError(f"perf.fuse={cfg.perf.fuse!r} is not known; choose auto, off or a width >= 1")
        return min(int(fuse), n_members)
    # Widths are ranked eagerly even when the group will train compiled: compiling each
    # candidate would cost a compile per width (seconds each on the CPU) to rank them.
    try:
        table = width_table(cfg, data, n_members, dataclasses.replace(perf, compile=False))
    except Exception as e:  # a model of one's own whose forward vmap cannot batch
        if cfg.model.target is None:
            raise
        _say_once(f"model._target_={cfg.model.target} trains unfused: vmap raised {type(e).__name__}: {e}")
        return 1
    return min(table, key=table.get)


def fusion_obstacle(cfg: Config, data: TensorData) -> str | None:
    """Why `cfg`'s trial never trains fused, or None when it may."""
    if str(cfg.perf.fuse).strip().lower() == "off":
        return "perf.fuse=off"
    if measures_gradients(cfg):  # noise scale and gradient cosines measure one model's gradients
        return "it measures its gradients"
    if cfg.model.target is not None:  # fused by vmap only where that stays exact (fused.VmapFused)
        return custom_obstacle(cfg, data)
    return None


_SAID: set[str] = set()


def _say_once(message: str) -> None:
    """Log `message` once per process (a worker chooses a width for every group)."""
    if message not in _SAID:
        _SAID.add(message)
        log.warning(message)
