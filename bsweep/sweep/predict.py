"""`bsweep predict`: the time-optimal batch size from one pilot run, not a grid.

1. **Step times.** The training step is timed alone at every power of two from 1 to half the
   training set (`pilot.step_seconds_by_batch`): t(B) is measured, not modelled.
2. **Pilot batch size B0:** the smallest of those batch sizes whose cost per example is within
   twice the cheapest (the pilot spends its steps where examples are cheap), and at most
   n_train / 64, so the branches at up to 16 B0 stay well inside the training set.
3. **lr probe:** one epoch at B0 per lr: the three of the half-decade (1-3) grid nearest the
   configured lr, extended while the best lr sits on an edge (bracketed); the best reaches the
   target in the fewest steps, else has the lowest training loss over its last quarter.
4. **Pilot:** B0 at that lr until the target, keeping its state at every measurement point.
5. **Branches** (Merrill et al. 2025, "Critical Batch Size Revisited"): from pilot states at
   BRANCH_AT of its steps, train at k B0 (k in BRANCH_FACTORS) until the target, at lr0 k^a for
   each rule a of LR_RULES, keeping the fastest; then a second seed from the initialization (at
   B0 too) and the halfway branches, at each k's fastest rule. Steps from one state to the
   target fall with batch size as S(B) = S_min (1 + B_crit / B) does; the fit of that model to
   the steps of the branches from the initialization (each seed's relative to its own k = 1) is
   the whole run's B_crit, with its interval; the halfway branches give B_crit near the target.
6. **Noise scale:** B_simple = tr(Sigma) / |G|^2 at pilot states in the last half of its run,
   from micro-batches of the training step (`gradient_noise.measure_microbatch_noise`), with a
   batch-means interval (`analysis.prediction.noise_scale_interval`). It is reported beside the
   branches' B_crit (their ratio calibrates it for this run), and stands in for B_crit only when
   the branches give no fit.
7. **Prediction:** S(B) through the pilot's steps, T(B) = S(B) t(B), the time-optimal batch size
   with its interval, its lr by the winning rule, the regimes (`analysis.prediction`).

The result is `results/<study>/predict/<setting>/predict.json` and a figure beside it.
"""

from __future__ import annotations

import json
import math
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bsweep.config import Config
from bsweep.plan import single, structured, study_dir
from bsweep.records import atomic_write_text
from bsweep.sweep.bracket import half_decade_beyond, nearest_lrs
from bsweep.train.data import TensorData, load_data
from bsweep.train.device import device_name, settle
from bsweep.train.perf import choose
from bsweep.train.pilot import Run, noise_at, run_config, step_seconds_by_batch, train_run
from bsweep.train.schedule import total_steps

PREDICT_DIR = "predict"
PREDICT_FILE = "predict.json"
FIGURE_FILE = "predict.png"
VERSION = 1
DEFAULT_STUDY = "predict"

# The pilot's batch size is at most n_train / SPACE, so the largest branch (max(BRANCH_FACTORS)
# B0) uses at most a quarter of the training set per step.
SPACE = 64
BRANCH_FACTORS = (1, 2, 4, 8, 16)
# Where branches start, as shares of the pilot's steps to target: its initialization (steps to
# target from there are what a grid measures) and halfway, a second, shorter window.
BRANCH_AT = (0.0, 0.5)
# Exponents a of the branches' lr rules lr0 (B / B0)^a: square-root and linear scaling (Hoffer
# et al. 2017; Goyal et al. 2017); each branch keeps the faster. In this order: the second rule
# trains only until the first reached the target. (A constant lr, tried as a third rule, was
# the fastest at none of the 20 batch sizes of docs/predict.md's five settings, and cost 18 %
# of the group-norm prediction's core-seconds.)
LR_RULES = (0.5, 1.0)
# A batch size whose cost per example is within this factor of the cheapest is efficient.
KNEE = 2.0
# The pilot's smallest batch size: below it BatchNorm's batch statistics are mostly noise.
MIN_PILOT_BATCH = 8
# The seed of the second branch from the start at each batch size, past the pilot's.
REPLICA_SEED = 100
# The probe's evaluations: every 25 % more samples (the study's cadence resolves steps to target
# to 5 %; the probe ranks lrs, mostly on the training loss that every step records anyway).
PROBE_EVAL_GROWTH = 1.25
# The lr probe extends its grid at most this many half-decades beyond the first three lrs.
PROBE_EXTENSIONS = 3
# Noise points in the pilot's last half, and micro-batches per point.
NOISE_POINTS = 16
MICRO_BATCHES = 16
# Step times: rounds of interleaved blocks of about this many seconds each.
BENCH_ROUNDS = 5
BENCH_BLOCK_SECONDS = 0.02


@dataclass
class Setup:
    """What every run of one prediction shares."""

    cfg: Config
    data: TensorData
    perf: object
    n_train: int


def setting_of(cfg: Config) -> dict[str, str]:
    """The keys that name a prediction's setting (and match it to a report's point)."""
    return {"data.name": cfg.data.name if cfg.data.target is None else cfg.data.target,
            "model.name": cfg.model.name if cfg.model.target is None else cfg.model.target,
            "norm.kind": cfg.norm.kind, "optim.name": cfg.optim.name}


def setting_folder(cfg: Config) -> str:
    """A folder name for the setting: data-model-norm-optim, a custom target by its last part."""
    parts = [str(v).rsplit(".", 1)[-1] for v in setting_of(cfg).values()]
    return "-".join(p.replace("/", "_") for p in parts)


def with_default_study(overrides: list[str]) -> list[str]:
    """`study.name` is `predict` unless the command line names a study or a study name."""
    if any(o.split("=", 1)[0].lstrip("+~") in ("study", "study.name") for o in overrides):
        return overrides
    return [*overrides, f"study.name={DEFAULT_STUDY}"]


def prepare(overrides: list[str]) -> Setup:
    """Compose and check the config (as `bsweep run` does), set the process up, load the data."""
    from bsweep.sweep.launch import _as_config_error, check_config_dirs, check_planned

    check_config_dirs(overrides)
    planned = _as_config_error(single, with_default_study(overrides), "bsweep predict")
    check_planned([planned])
    cfg = structured(planned.config)
    device = settle(cfg.threads or torch.get_num_threads(), cfg.device)
    data = load_data(cfg.data, device)
    perf = choose(cfg, data, study_dir(cfg))
    return Setup(cfg, data, perf, data.n_train)  # a dataset of one's own has no size in the config


def candidate_batch_sizes(n_train: int) -> list[int]:
    """Powers of two from 1 to half the training set: where step times are measured."""
    return [2**i for i in range(int(math.log2(max(n_train // 2, 1))) + 1)]


def pilot_batch_size(step_seconds: dict[int, float], n_train: int) -> tuple[int, str]:
    """B0 and why (see the module docstring, 2.): the smallest batch size whose cost per example
    is within KNEE of the cheapest, so the pilot spends few steps where examples are cheap, at
    most n_train / SPACE and at least MIN_PILOT_BATCH (or the cap, if smaller)."""
    per_example = {b: s / b for b, s in step_seconds.items()}
    cheapest = min(per_example.values())
    cap = max(1, 2 ** int(math.log2(max(n_train // SPACE, 1))))
    floor = min(MIN_PILOT_BATCH, cap)
    cheap = [b for b in sorted(per_example) if per_example[b] <= KNEE * cheapest]
    b0 = min(max(cheap[0], floor), cap)
    why = (f"the smallest power of 2 whose cost per example is within {KNEE:g}x of the cheapest "
           f"({per_example[cheap[0]] * 1e6:.3g} us against {cheapest * 1e6:.3g} us at batch "
           f"{min(per_example, key=per_example.get)}), at least {floor} and at most n_train/{SPACE} = {cap}")
    return b0, why


def late_train_loss(run: Run) -> float:
    """The mean training loss over the run's last quarter (a mean over many steps: one
    evaluation's test loss jumps with BatchNorm at a high lr); infinite for a diverged run."""
    late = [r["train_loss"] for r in run.rows if r["step"] >= 0.75 * run.rows[-1]["step"] and r["step"] > 0]
    loss = float(np.mean(late)) if late and run.status != "diverged" else math.inf
    return loss if math.isfinite(loss) else math.inf


def probe_key(run: Run) -> tuple:
    """Fewest steps to target first; where none reached it, the lowest `late_train_loss`."""
    steps = run.steps_to_target
    return (0, steps, late_train_loss(run)) if math.isfinite(steps) else (1, late_train_loss(run), 0.0)


def probe_lr(setup: Setup, b0: int) -> tuple[float, list[dict], str]:
    """The best lr at B0 after one epoch, bracketed on the half-decade grid (module docstring, 3.)."""
    horizon = max(setup.n_train // b0, 50)
    center = setup.cfg.lr
    runs: dict[float, Run] = {}

    def trial(lr: float) -> None:
        if lr not in runs:
            cfg = run_config(setup.cfg, b0, lr, horizon)
            cfg.study.eval.growth = max(cfg.study.eval.growth, PROBE_EVAL_GROWTH)
            runs[lr] = train_run(cfg, setup.data, setup.perf)

    for lr in nearest_lrs(center):  # on the grids' own half-decade lrs
        trial(lr)
    for _ in range(PROBE_EXTENSIONS):
        best = min(runs, key=lambda lr: probe_key(runs[lr]))
        if best == min(runs):
            trial(half_decade_beyond(best, "lower"))
        elif best == max(runs):
            trial(half_decade_beyond(best, "upper"))
        else:
            break
    best = min(runs, key=lambda lr: probe_key(runs[lr]))
    on_edge = best in (min(runs), max(runs))
    table = [{"lr": lr, "steps_to_target": runs[lr].steps_to_target, "late_train_loss": late_train_loss(runs[lr]),
              "status": runs[lr].status, "kept": lr == best, "seconds": runs[lr].seconds} for lr in sorted(runs)]
    why = (f"best of {len(runs)} lrs after {horizon} steps at batch {b0} (fewest steps to target, else lowest "
           f"training loss){'; still on the edge of the lrs tried' if on_edge else ', bracketed'}")
    return best, table, why


def branch(setup: Setup, pilot: Run, start_step: int, batch_size: int, lr: float, max_steps: int,
           seed: int) -> Run:
    """From the pilot's state at `start_step` (0: a fresh initialization from `seed`, the
    pilot's own at the pilot's seed), train at `batch_size` and `lr` until the target. The
    first evaluation waits for half the steps perfect scaling would need (the pilot's steps
    from there over k): before it the target is out of reach, and evaluations would cost more
    than the window's steps."""
    cfg = run_config(setup.cfg, batch_size, lr, max_steps, seed)
    left = pilot.steps_to_target - start_step
    cfg.study.eval.first_samples = max(cfg.study.eval.first_samples, int(0.5 * left * pilot.cfg.batch_size))
    start = None if start_step == 0 else pilot.states[start_step]
    return train_run(cfg, setup.data, setup.perf, start=start)


def branch_points(pilot: Run) -> list[int]:
    """The pilot's kept states nearest below each share of BRANCH_AT of its steps to target
    (share 0: its initialization)."""
    s0, kept = pilot.steps_to_target, [0, *sorted(pilot.states)]
    points = []
    for share in BRANCH_AT:
        below = [s for s in kept if s <= share * s0]
        if below and below[-1] not in points:
            points.append(below[-1])
    return points


def _branch_row(setup: Setup, pilot: Run, start: int, b0: int, k: int, lr0: float, rule: float, budget: int,
                seed: int) -> dict:
    lr = lr0 * k**rule
    run = branch(setup, pilot, start, b0 * k, lr, budget, seed)
    return {"from_step": start, "seed": seed, "k": k, "batch_size": b0 * k, "rule": rule, "lr": lr,
            "steps": run.steps_to_target, "status": run.status, "seconds": run.seconds}


def run_branches(setup: Setup, pilot: Run, b0: int, lr0: float) -> list[dict]:
    """Every branch: steps from its start to the target (NaN: not reached). From the start, at
    the pilot's seed, every rule of LR_RULES (a later one only until the best so far reached the
    target); then a second seed from the start at B0 (its own k = 1) and at each batch size's
    fastest rule, and one branch from each later start at that rule."""
    s0, seed = pilot.steps_to_target, pilot.cfg.seed
    factors = [k for k in BRANCH_FACTORS if k > 1 and b0 * k <= setup.n_train // 4]  # k = 1: the pilot
    from_start = max(int(2 * s0), 8)  # a branch gets twice the pilot's steps from its start at most
    later = [s for s in branch_points(pilot) if s > 0]
    rows, fastest = [], {}
    for k in factors:
        budget = from_start
        for rule in LR_RULES:
            row = _branch_row(setup, pilot, 0, b0, k, lr0, rule, budget, seed)
            if math.isfinite(row["steps"]) and row["steps"] < budget:
                budget, fastest[k] = int(row["steps"]), rule
            rows.append(row)
    # the second seed has its own k = 1 run: each seed's branches are relative to it
    rows.append(_branch_row(setup, pilot, 0, b0, 1, lr0, LR_RULES[0], from_start, seed + REPLICA_SEED))
    for k in factors:
        rule = fastest.get(k, LR_RULES[0])
        rows.append(_branch_row(setup, pilot, 0, b0, k, lr0, rule, from_start, seed + REPLICA_SEED))
        for start in later:
            rows.append(_branch_row(setup, pilot, start, b0, k, lr0, rule, max(int(2 * (s0 - start)), 8), seed + 1))
    return rows


def noise_points(setup: Setup, pilot: Run) -> list[dict]:
    """B_simple's raw estimates at up to NOISE_POINTS kept states in the pilot's last half."""
    s0 = pilot.steps_to_target
    late = [s for s in sorted(pilot.states) if s >= s0 / 2]
    if len(late) > NOISE_POINTS:
        late = [late[int(i)] for i in np.linspace(0, len(late) - 1, NOISE_POINTS)]
    generator = torch.Generator(device=setup.data.x_train.device)
    generator.manual_seed(setup.cfg.seed + 0x5EED)
    cfg = run_config(setup.cfg, pilot.cfg.batch_size, pilot.cfg.lr, 1)
    return [{"step": s, **noise_at(cfg, setup.data, setup.perf, pilot.states[s], MICRO_BATCHES, generator)}
            for s in late]


def process_seconds() -> tuple[float, float]:
    """(wall seconds since this process started, its CPU seconds, children included)."""
    cpu = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for f in ("ru_utime", "ru_stime"))
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        wall = time.time() - (boot + ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, StopIteration):
        wall = math.nan
    return wall, cpu


def output_dir(cfg: Config) -> Path:
    return study_dir(cfg) / PREDICT_DIR / setting_folder(cfg)


def write_prediction(prediction: dict, folder: Path) -> Path:
    """predict.json, written whole (`records.atomic_write_text`); NaN and an unbounded
    interval's infinity are written as null, so any JSON reader reads it."""
    path = folder / PREDICT_FILE
    atomic_write_text(path, json.dumps(plain(prediction), indent=1, allow_nan=False) + "\n")
    return path


def plain(value: object) -> object:
    """`value` with numpy scalars as Python numbers and NaN / infinity as None."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def branch_fit(rows: list[dict], b0: int, pilot_steps: float) -> dict:
    """B_crit from branches. Per start and seed, each batch size's fewest steps to target (over
    the lr rules) relative to that seed's own k = 1 run from the start (a branch at B0; else the
    pilot's steps from there); S(B) = S_min (1 + B_crit / B) fitted to them all
    (`critical.fit_steps_model`). Adds `batch_sizes` and `relative_steps`: the points fitted."""
    from bsweep.analysis.critical import fit_steps_model

    sizes, relative = [], []
    for start, seed in sorted({(r["from_step"], r.get("seed", 0)) for r in rows}):
        group = [r for r in rows if r["from_step"] == start and r.get("seed", 0) == seed]
        own = [r["steps"] for r in group if r["batch_size"] == b0 and math.isfinite(r["steps"])]
        reference = own[0] if own else pilot_steps - start
        sizes.append(b0)
        relative.append(1.0)
        for b in sorted({r["batch_size"] for r in group} - {b0}):
            steps = [r["steps"] for r in group if r["batch_size"] == b and math.isfinite(r["steps"])]
            if steps:
                sizes.append(b)
                relative.append(min(steps) / reference)
    fit = fit_steps_model(sizes, relative)
    return {**fit, "batch_sizes": sizes, "relative_steps": relative}


def lr_rule(rows: list[dict]) -> tuple[float, str]:
    """The rule whose branches reached the target first most often (ties: the rule tried
    first, LR_RULES' order), and a line saying how often each won."""
    wins = {rule: 0 for rule in LR_RULES}
    for key in {(r["from_step"], r.get("seed", 0), r["batch_size"]) for r in rows}:
        tried = {r["rule"]: r["steps"] for r in rows if (r["from_step"], r.get("seed", 0), r["batch_size"]) == key}
        finite = {rule: s for rule, s in tried.items() if math.isfinite(s)}
        if len(tried) >= 2 and finite:
            best = min(finite.values())
            # a later rule trains only up to the best so far, so a tie is the earlier rule's
            wins[next(rule for rule in LR_RULES if finite.get(rule) == best)] += 1
    exponent = min(wins, key=lambda rule: (-wins[rule], LR_RULES.index(rule)))
    name = {0.0: "constant", 0.5: "square-root rule", 1.0: "linear rule"}.get(exponent, "")
    tally = ", ".join(f"B^{rule:g} {n}" for rule, n in wins.items())
    return exponent, f"lr ~ B^{exponent:g} ({name}; faster branch, of {sum(wins.values())}: {tally})"


def noise_estimate(points: list[dict]) -> dict:
    from bsweep.analysis.prediction import noise_scale_interval

    est = noise_scale_interval([p["grad_norm_sq"] for p in points], [p["trace_sigma"] for p in points])
    return {"b_simple": est.estimate, "lo": est.lo, "hi": est.hi, "points": est.points, "blocks": est.blocks,
            "reason": est.reason}


def critical_of(fit: dict, noise: dict, b0: int) -> tuple[dict, list[str]]:
    """B_crit from the branches' fit; from B_simple only where the fit failed (a weak
    prediction, and why)."""
    weak = []
    if math.isfinite(fit["b_crit"]):
        crit = {"estimate": fit["b_crit"], "lo": fit["b_crit_lo"], "hi": fit["b_crit_hi"], "source": "branches"}
    elif math.isfinite(noise["b_simple"]):
        crit = {"estimate": noise["b_simple"], "lo": noise["lo"], "hi": noise["hi"], "source": "noise scale"}
        weak.append(f"the branches gave no fit ({fit['reason']}): B_crit is the gradient noise scale B_simple, "
                    "which can be off by an order of magnitude")
    else:
        crit = {"estimate": math.nan, "lo": math.nan, "hi": math.nan, "source": "none"}
        weak.append(f"no B_crit: the branches gave no fit ({fit['reason']}) and the noise scale none "
                    f"({noise['reason']})")
    if not (crit["lo"] > 0 and math.isfinite(crit["hi"])):
        weak.append(f"B_crit's interval [{crit['lo']:.3g}, {crit['hi']:.3g}] is unbounded")
    elif crit["hi"] > 16 * crit["lo"]:
        weak.append(f"B_crit's interval spans {crit['hi'] / crit['lo']:.0f}x: the measurements scatter")
    if math.isfinite(crit["estimate"]) and crit["estimate"] > 16 * b0 * max(BRANCH_FACTORS):
        weak.append(f"B_crit is far beyond the largest branch ({max(BRANCH_FACTORS) * b0}): extrapolated")
    return crit, weak


def _pilot(setup: Setup, b0: int, lr0: float) -> Run:
    """The pilot: B0 at lr0 until the target, within the config's budget at B0."""
    budget = total_steps(setup.cfg.study.budget, setup.n_train, b0)
    return train_run(run_config(setup.cfg, b0, lr0, budget), setup.data, setup.perf, keep_states=True)


def _weak_optimum(optimum: dict, sizes: list[int]) -> list[str]:
    weak = []
    if optimum.get("reason"):
        weak.append(optimum["reason"])
    if optimum["batch_size"] in (min(sizes), max(sizes)):
        weak.append(f"the fastest batch size is the edge of those timed ({min(sizes)}-{max(sizes)})")
    return weak


def assemble(setup: Setup, bench: dict[int, float], b0: int, why_b0: str, lr0: float, probe: list[dict],
             why_lr: str, pilot: Run, branches: list[dict], noise: list[dict]) -> dict:
    """The prediction (the predict.json schema, docs/predict.md) from every measurement."""
    from bsweep.analysis import prediction as pr

    # S(B0): the mean over the pilot and the second seed's run at B0 (where it reached the target)
    at_b0 = [pilot.steps_to_target] + [r["steps"] for r in branches
                                       if r["from_step"] == 0 and r["k"] == 1 and math.isfinite(r["steps"])]
    s0 = float(np.mean(at_b0))
    # The branches from the initialization measure what a grid does (steps from the start to the
    # target): the whole run's B_crit. The halfway ones measure it near the target, where the
    # noise scale is measured too: their ratio calibrates B_simple for this run.
    fit = branch_fit([r for r in branches if r["from_step"] == 0], b0, pilot.steps_to_target)
    late = branch_fit([r for r in branches if r["from_step"] > 0], b0, pilot.steps_to_target)
    estimate = noise_estimate(noise)
    crit, weak = critical_of(fit, estimate, b0)
    crit["late"] = {k: late[k] for k in ("b_crit", "b_crit_lo", "b_crit_hi", "reason")}
    crit["noise_ratio"] = late["b_crit"] / estimate["b_simple"] if estimate["b_simple"] else math.nan
    exponent, rule_text = lr_rule(branches)
    sizes = sorted(bench)
    bc, lo, hi = crit["estimate"], crit["lo"], crit["hi"]
    curve = pr.predict_curve(b0, s0, bc, lo, hi, bench)
    optimum = pr.time_optimum(b0, s0, bc, lo, hi, bench, sizes)
    weak += _weak_optimum(optimum, sizes)
    if math.isfinite(optimum["batch_size"]):
        optimum["lr"] = pr.lr_at(optimum["batch_size"], b0, lr0, exponent)
    if probe and next(p for p in probe if p["kept"])["lr"] in (probe[0]["lr"], probe[-1]["lr"]):
        weak.append("the pilot's lr is on the edge of the lrs the probe tried")
    cfg = setup.cfg
    return {
        "version": VERSION, "study": cfg.study.name, "setting": setting_of(cfg), "target": cfg.study.target,
        "device": device_name(setup.data.x_train.device), "seed": cfg.seed, "n_train": setup.n_train,
        "pilot": {"batch_size": b0, "lr": lr0, "steps_to_target": s0, "steps_by_seed": at_b0,
                  "seconds_to_target": s0 * bench.get(b0, math.nan), "why_batch_size": why_b0, "why_lr": why_lr},
        "lr_probe": probe,
        "noise": {**estimate, "method": f"micro-batches of {b0} (the pilot's step), {MICRO_BATCHES} a point, "
                  "train mode", "per_point": noise},
        "branches": branches,
        "branch_fit": {k: fit[k] for k in ("b_crit", "b_crit_lo", "b_crit_hi", "rms_rel_residual", "reason",
                                           "batch_sizes", "relative_steps")},
        "b_crit": crit,
        "lr_rule": {"exponent": exponent, "text": rule_text},
        "optimum": optimum,
        "regimes": pr.regimes_text(bc, min(sizes), max(sizes)),
        "curve": curve.to_dict("records"),
        "bench": [{"batch_size": b, "step_seconds": s} for b, s in sorted(bench.items())],
        "weak": weak,
        "verify": None,
    }


def predict(overrides: list[str], say=print) -> tuple[dict, Path]:
    """Run the whole prediction for the config `overrides` compose; write predict.json and
    its figure; return (the prediction, its folder). Raises ConfigError for a bad config."""
    setup = prepare(overrides)
    sizes = candidate_batch_sizes(setup.n_train)
    say(f"timing the training step alone at batch sizes {sizes[0]}-{sizes[-1]}")
    bench = step_seconds_by_batch(setup.cfg, setup.data, setup.perf, sizes, BENCH_BLOCK_SECONDS, BENCH_ROUNDS)
    b0, why_b0 = pilot_batch_size(bench, setup.n_train)
    say(f"pilot batch size {b0}: {why_b0}")
    lr0, probe, why_lr = probe_lr(setup, b0)
    say(f"pilot lr {lr0:g}: {why_lr}")
    pilot = _pilot(setup, b0, lr0)
    folder = output_dir(setup.cfg)
    if not math.isfinite(pilot.steps_to_target):
        best = max((r["test_acc"] for r in pilot.rows), default=math.nan)
        raise PilotMissed(f"the pilot (batch {b0}, lr {lr0:g}) did not reach the target "
                          f"{setup.cfg.study.target:g} within its budget of {pilot.cfg.study.budget.steps} steps "
                          f"(best test accuracy {best:.3f}): lower study.target or raise study.budget")
    say(f"pilot reached the target in {pilot.steps_to_target:g} steps; branching at k x {b0}")
    branches = run_branches(setup, pilot, b0, lr0)
    noise = noise_points(setup, pilot)
    prediction = assemble(setup, bench, b0, why_b0, lr0, probe, why_lr, pilot, branches, noise)
    prediction["wall_seconds"], prediction["core_seconds"] = process_seconds()
    write_prediction(prediction, folder)
    draw(prediction, folder)
    return prediction, folder


class PilotMissed(RuntimeError):
    """The pilot never reached the target: nothing to predict from (a user's setting, said plainly)."""


def draw(prediction: dict, folder: Path) -> None:
    from bsweep.analysis.report.prediction_plots import write_prediction_figure

    write_prediction_figure(prediction, folder / FIGURE_FILE)
