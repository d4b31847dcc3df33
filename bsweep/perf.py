"""How a trial runs: bf16 autocast and channels_last, as `perf.*` fixes them or as measured.

`perf.amp` and `perf.channels_last` take `on`, `off` or `auto`. `auto` times the training step of
the trial's own model, norm, optimizer and batch size on its own device with each candidate
setting and keeps the fastest, but only where it beats the exact setting (float32, contiguous)
by a margin: bf16 moves results (losses by ~1e-2 relative), so it must pay clearly.

What pays depends on the batch size and the hardware. On the 2-core AMD EPYC CPU of our CI
(avx512_bf16) bf16 autocast took 0.80 against 0.35 ms per step at batch 1 and 16.6 against
29.0 ms at batch 1024 (README, "Performance"), so one fixed answer per device would be wrong at
one end of every study.

A choice is remembered per process and, given a study folder, on disk in
`results/<study>/perf/<key>.json` (first writer wins), so all trials of one study at one
(device, model, norm, optimizer, batch size) run the same way, in every worker and on resume.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from bsweep.config import Config, perf_setting
from bsweep.data import TensorData

# bf16 autocast must make the step at least 20 % faster to be chosen: it changes results (8
# mantissa bits; losses move by ~1e-2 relative), which is worth it only for a clear gain.
AMP_MARGIN = 1.20
# channels_last changes only the order of summation, so a small gain is enough: 5 % is above
# the probe's noise at small batch (repeat probes of one setting on the 2-core CPU agreed to 0.3-4 %
# up to batch 64; at batch 256-4000 they spread by 5-35 %, where the gains measured were larger).
LAYOUT_MARGIN = 1.05
# Each candidate is timed in up to PROBE_ROUNDS blocks of at least PROBE_BLOCK_SECONDS (and at
# least PROBE_MIN_STEPS steps), interleaved across candidates so a burst of other load hits them
# alike; the best block counts (load only ever slows a block down). 5 rounds of 0.1 s: three
# probes in a row agreed on every pick at batch 64-4000 (3 rounds of 0.05 s flipped at batch
# 256-512). After 2 rounds the probe stops early when every candidate is CLEAR times away from
# its margin (bf16 at 0.4-0.9x of float32 at batch 1-64 here): a second a probe otherwise.
PROBE_BLOCK_SECONDS = 0.1
PROBE_ROUNDS = 5
PROBE_MIN_ROUNDS = 2
PROBE_MIN_STEPS = 2
CLEAR = 1.3
PERF_DIR = "perf"

_MEMO: dict[str, "PerfChoice"] = {}


@dataclass(frozen=True)
class PerfChoice:
    """The settings a trial trains with."""

    amp: bool = False  # bf16 autocast of the forward pass
    channels_last: bool = False  # NHWC memory format for 2-D convs
    compile: bool = False  # torch.compile of the model (CUDA graphs on CUDA); never probed

    def describe(self) -> dict[str, str]:
        """As written into a trial's env.json and shown in reports."""
        return {"amp": "bf16" if self.amp else "off", "channels_last": "on" if self.channels_last else "off",
                "compile": "on" if self.compile else "off"}


def candidates(cfg: Config, images: bool) -> list[PerfChoice]:
    """Every setting `cfg.perf` allows for this trial; the exact one (if allowed) first."""
    def values(v: str) -> list[bool]:
        return [False, True] if v == "auto" else [v == "on"]

    amp = values(perf_setting(cfg.perf.amp, "amp"))
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


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def probe_key(cfg: Config, data: TensorData) -> dict:
    """What the speed of the candidates depends on (not lr, seed or the data's values)."""
    device = data.x_train.device
    return {
        "device": device.type,
        "device_name": device_name(device),
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
    }


def measure(cfg: Config, data: TensorData, choices: list[PerfChoice]) -> dict[PerfChoice, float]:
    """Best-block seconds per training step of `cfg`'s trial under each choice (no effect on
    the global RNG)."""
    from bsweep.bench import single_step, steps_per_block, time_block

    device = data.x_train.device
    batch = min(cfg.batch_size, data.n_train)
    # single_step seeds torch's RNGs (CPU and every GPU) to build each model: put them back after
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []):
        steps = [single_step(cfg, data, batch, c) for c in choices]
    per_block = [steps_per_block(step, device, PROBE_BLOCK_SECONDS, PROBE_MIN_STEPS) for step in steps]
    best = [float("inf")] * len(steps)
    for r in range(PROBE_ROUNDS):
        for i, step in enumerate(steps):
            best[i] = min(best[i], time_block(step, device, per_block[i]))
        if r + 1 >= PROBE_MIN_ROUNDS and decided(dict(zip(choices, best))):
            break
    return dict(zip(choices, best))


def _read(path: Path) -> PerfChoice | None:
    try:
        choice = json.loads(path.read_text())["choice"]
        return PerfChoice(bool(choice["amp"]), bool(choice["channels_last"]), bool(choice.get("compile", False)))
    except (OSError, ValueError, KeyError, TypeError):
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


def choose(cfg: Config, data: TensorData, study_dir: Path | None = None) -> PerfChoice:
    """The settings `cfg`'s trial trains with on `data`'s device: fixed ones as given, `auto`
    ones measured once per (device, model, norm, optimizer, batch size) and remembered."""
    options = candidates(cfg, data.x_train.dim() == 4)
    if len(options) == 1:
        return options[0]
    key = probe_key(cfg, data)
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(study_dir) / PERF_DIR / f"{digest}.json" if study_dir is not None else None
    memo_key = f"{digest}:{path}"
    if memo_key in _MEMO:
        return _MEMO[memo_key]
    choice = _read(path) if path is not None and path.exists() else None
    if choice is None:
        seconds = measure(cfg, data, options)
        choice = pick(seconds)
        if path is not None:
            record = {"key": key, "choice": asdict(choice), "time": time.time(),
                      "measured": [{**c.describe(), "ms_per_step": t * 1e3} for c, t in seconds.items()]}
            choice = _store(path, record) or choice
    _MEMO[memo_key] = choice
    return choice
