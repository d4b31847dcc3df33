"""What `bsweep predict` predicted from one pilot run, beside what the grid measured.

`bsweep predict` writes ``results/<study>/predict/<setting>/predict.json`` (the schema is in
docs/predict.md). This module reads those files and renders each as the answer block's lines
(`prediction_items`, `prediction_lines`), marked "predicted from one pilot" so that a reader
never takes a prediction for a measurement. A prediction belongs to the answer's point whose
config values equal its setting's (`matches`); the report and `Study.answer_lines` show it
under that point, so every grid that has a prediction checks it.

Pure: no torch, no training code; a damaged file is a note, never an exception.
"""

from __future__ import annotations

import json
import math
from numbers import Real
from pathlib import Path

import numpy as np
import pandas as pd

from bsweep.analysis.answer import EVIDENCE, _label, _varying
from bsweep.analysis.load import SHORT_COLUMNS
from bsweep.analysis.metrics import condition_columns

PREDICT_DIR = "predict"
PREDICT_FILE = "predict.json"
# Added to each loaded prediction: the folder it was read from (names its figure, and says which
# file a line came from); underscored because predict.json itself never has it.
FOLDER_KEY = "_folder"
# The words that mark every prediction shown beside a grid's answer.
MARK = "predicted from one pilot"


# --------------------------------------------------------------------------- reading


def load_predictions(study_dir: Path, notes: list[str] | None = None) -> list[dict]:
    """Every ``<study_dir>/predict/*/predict.json``, sorted by folder, each with FOLDER_KEY set.
    A file that cannot be read or is not a JSON object is skipped; why is appended to `notes`
    (when given), so a half-written file never stops a report."""
    root = Path(study_dir) / PREDICT_DIR
    out: list[dict] = []
    if not root.is_dir():
        return out
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        path = folder / PREDICT_FILE
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError(f"a JSON {type(data).__name__}, not an object")
        except (OSError, UnicodeDecodeError, ValueError) as error:  # JSONDecodeError is a ValueError
            if notes is not None:
                notes.append(f"skipped {folder.name}/{PREDICT_FILE}: unreadable ({type(error).__name__}: {error})")
            continue
        data[FOLDER_KEY] = folder.name
        out.append(data)
    return out


# --------------------------------------------------------------------------- matching


def _missing(value: object) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def _same(a: object, b: object) -> bool:
    """Equal as config values: numbers by value (16 == 16.0, numpy's too), the rest as text."""
    if isinstance(a, Real) and isinstance(b, Real) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return str(a) == str(b)


def _column(key: str, row: pd.Series) -> str | None:
    """The answer row's column for a setting key: the key itself (a dotted scientific key such as
    `model.width`), else its short name (`norm.kind` is the `norm` column); None when it has none."""
    if key in row.index:
        return key
    short = SHORT_COLUMNS.get(key)
    return short if short is not None and short in row.index else None


def matches(prediction: dict, answer_row: pd.Series) -> bool:
    """Whether `prediction` belongs to the answer point `answer_row`: every key of its setting
    that the row has a value for is equal there. Keys the row lacks, or holds no value for, are
    ignored (a study that fixes the optimizer has no optimizer to disagree on)."""
    setting = prediction.get("setting") or {}
    if not isinstance(setting, dict):
        return False
    for key, value in setting.items():
        column = _column(str(key), answer_row)
        if column is None or _missing(answer_row[column]):
            continue
        if not _same(answer_row[column], value):
            return False
    return True


def point_conditions(answer: pd.DataFrame, fixed: pd.DataFrame) -> pd.DataFrame:
    """`answer` (`answer.answer_table`) with a column per condition of `fixed` (the study's
    fixed-lr view, `SeedViews.fixed`: data, model, norm, ..., every swept dotted key), holding each
    point's values. The answer names a point only by its label ("norm=batch"), which leaves out
    what the study holds fixed (the dataset): matching a prediction on the label alone would put
    a digits prediction under an mnist1d grid. The label is rebuilt here with answer.py's own
    functions, so each row finds its values whatever the rows' order."""
    out = answer.copy()
    if not len(fixed) or not len(answer):
        return out
    by = condition_columns(fixed)
    shown = _varying(fixed, by)
    values = {_label(p, shown): {c: p[c] for c in by} for _, p in fixed.drop_duplicates(by).iterrows()}
    for column in by:
        out[column] = [values.get(str(point), {}).get(column) for point in answer["point"]]
    return out


def assign(points: pd.DataFrame, predictions: list[dict]) -> tuple[list[list[dict]], list[dict]]:
    """Per row of `points` (`point_conditions`) the predictions that match it, and those that
    match no row (the report names their setting, so none goes unseen)."""
    per_point: list[list[dict]] = [[] for _ in range(len(points))]
    unmatched = []
    for prediction in predictions:
        hits = [i for i, (_, row) in enumerate(points.iterrows()) if matches(prediction, row)]
        for i in hits:
            per_point[i].append(prediction)
        if not hits:
            unmatched.append(prediction)
    return per_point, unmatched


def measured_seconds(tuned_seconds: pd.DataFrame, conditions: dict) -> pd.DataFrame:
    """The grid's seconds to target per batch size at one point (columns batch_size, seconds,
    seconds_std, seeds), from the view tuned by seconds to target (`SeedViews.tuned`: the fastest
    lr per batch size, mean over seeds, on the study's time basis, calibrated where its bench
    covers it). Only batch sizes where every seed reached the target: a mean over the seeds that
    did would flatter the batch size (as `critical_plots` draws them)."""
    columns = ["batch_size", "seconds", "seconds_std", "seeds"]
    if not len(tuned_seconds) or "seconds_to_target_mean" not in tuned_seconds:
        return pd.DataFrame(columns=columns)
    mask = np.ones(len(tuned_seconds), dtype=bool)
    for column, value in conditions.items():
        if column in tuned_seconds.columns and not _missing(value):
            mask &= tuned_seconds[column].map(lambda v: _same(v, value)).to_numpy(dtype=bool)
    rows = tuned_seconds[mask]
    rows = rows[(rows["n_reached_target"] == rows["n_trials"]) & rows["seconds_to_target_mean"].notna()]
    return pd.DataFrame({"batch_size": rows["batch_size"].astype(float).to_numpy(),
                         "seconds": rows["seconds_to_target_mean"].astype(float).to_numpy(),
                         "seconds_std": rows["seconds_to_target_std"].astype(float).to_numpy(),
                         "seeds": rows["n_trials"].astype(float).to_numpy()}).sort_values("batch_size")


# --------------------------------------------------------------------------- text


def _finite(value: object) -> float | None:
    """`value` as a finite float; None for a missing one (None, NaN, text, inf)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _num(value: object, spec: str = ".3g") -> str:
    """A number as the answer block writes it (thousands grouped from 100 up); "none" when missing,
    never "nan"."""
    v = _finite(value)
    if v is None:
        return "none"
    if spec == ".3g" and abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:{spec}}"


def _with_interval(value: object, lo: object, hi: object, spec: str = ".3g") -> str:
    """"v [lo, hi]"; "v (no interval)" when a bound is missing; "none" without a value."""
    if _finite(value) is None:
        return "none"
    if _finite(lo) is None or _finite(hi) is None:
        return f"{_num(value, spec)} (no interval)"
    return f"{_num(value, spec)} [{_num(lo, spec)}, {_num(hi, spec)}]"


def _sizes(values: object) -> str:
    sizes = [v for v in (values if isinstance(values, (list, tuple)) else []) if _finite(v) is not None]
    return ", ".join(f"{float(v):g}" for v in sizes) or "none"


def setting_text(prediction: dict) -> str:
    """The prediction's setting as "key=value, ..." (its folder when it names none)."""
    setting = prediction.get("setting")
    if isinstance(setting, dict) and setting:
        return ", ".join(f"{k}={v}" for k, v in setting.items())
    return str(prediction.get(FOLDER_KEY, "no setting"))


def _pilot_item(p: dict) -> tuple[str, str]:
    pilot = p.get("pilot") if isinstance(p.get("pilot"), dict) else {}
    wall, core = _finite(p.get("wall_seconds")), _finite(p.get("core_seconds"))
    cost = f"{wall:.0f} s" if wall is not None else "time not recorded"
    cost += f", {core:.0f} core-s" if core is not None else ""
    parts = [f"pilot batch {_num(pilot.get('batch_size'), 'g')} at lr {_num(pilot.get('lr'), 'g')}"]
    if _finite(pilot.get("steps_to_target")) is not None:
        parts[0] += f", {_num(pilot.get('steps_to_target'))} steps to target"
        by_seed = [v for v in pilot.get("steps_by_seed") or [] if _finite(v) is not None]
        if len(by_seed) > 1:
            parts[0] += f" (mean of {len(by_seed)} seeds: {', '.join(_num(v) for v in by_seed)})"
    target = _finite(p.get("target"))
    if target is not None:
        parts.append(f"target {target:.0%} test accuracy")
    if p.get("device"):
        parts.append(str(p["device"]))
    return "predicted", f"from one pilot ({cost}): " + "; ".join(parts)


def _optimum_item(p: dict) -> tuple[str, str]:
    best = p.get("optimum") if isinstance(p.get("optimum"), dict) else {}
    if _finite(best.get("batch_size")) is None:
        return "fastest to target", f"none: {best.get('reason') or 'the prediction has no optimum (see weak)'}"
    b = _num(best.get("batch_size"), "g")
    interval = (f" [{_num(best.get('lo'), 'g')}, {_num(best.get('hi'), 'g')}]"
                if _finite(best.get("lo")) is not None and _finite(best.get("hi")) is not None else " (no interval)")
    seconds = _with_interval(best.get("seconds"), best.get("seconds_lo"), best.get("seconds_hi"))
    return ("fastest to target", f"batch {b}{interval} at lr {_num(best.get('lr'), '.3g')}: {seconds} s; "
            f"within: {_sizes(best.get('within'))}")


def _critical_item(p: dict) -> tuple[str, str]:
    crit = p.get("b_crit") if isinstance(p.get("b_crit"), dict) else {}
    noise = p.get("noise") if isinstance(p.get("noise"), dict) else {}
    late = crit.get("late") if isinstance(crit.get("late"), dict) else {}
    text = f"B_crit {_with_interval(crit.get('estimate'), crit.get('lo'), crit.get('hi'))}"
    if crit.get("source"):
        text += f" from {'branches from the start' if crit['source'] == 'branches' else crit['source']}"
    if p.get("regimes"):
        text += f": {p['regimes']}"
    near = []
    if _finite(late.get("b_crit")) is not None:
        near.append(f"B_crit {_with_interval(late.get('b_crit'), late.get('b_crit_lo'), late.get('b_crit_hi'))}")
    if _finite(noise.get("b_simple")) is not None:
        bound = "" if _finite(noise.get("hi")) is not None else " (no upper bound: |G|^2 not resolved from 0)"
        near.append(f"B_simple {_with_interval(noise.get('b_simple'), noise.get('lo'), noise.get('hi'))}{bound}")
    elif noise.get("reason"):
        near.append(f"B_simple none ({noise['reason']})")
    if near:
        text += "; near the target " + ", ".join(near)
    return "critical batch", text


def _lr_item(p: dict) -> tuple[str, str]:
    rule = p.get("lr_rule") if isinstance(p.get("lr_rule"), dict) else {}
    if rule.get("text"):
        return "best lr", str(rule["text"])
    exponent = _finite(rule.get("exponent"))
    return "best lr", f"~ B^{exponent:.2f}" if exponent is not None else "none: no lr rule"


def _verify_item(verify: dict) -> tuple[str, str]:
    """The sparse grid's check; its own text when it has one, else its numbers."""
    if verify.get("text"):
        return "verified", str(verify["text"])
    measured = verify.get("measured") if isinstance(verify.get("measured"), dict) else {}
    held = verify.get("held")
    verdict = "held within noise" if held is True else "did not hold" if held is False else "no verdict"
    b_crit = _with_interval(measured.get("b_crit"), measured.get("b_crit_lo"), measured.get("b_crit_hi"))
    return "verified", (f"{verdict}: measured batch {_num(measured.get('batch_size'), 'g')}, B_crit {b_crit}, "
                        f"{_num(measured.get('seconds'))} s")


def prediction_items(prediction: dict) -> list[tuple[str, str]]:
    """(label, value) pairs in the style of `answer.answer_items`, for one prediction: what it
    rests on ("predicted": one pilot, its cost), then the lines one pilot supports (fastest to
    target, critical batch, best lr), one "weak" line per reason it is weak, and "verified" when
    `bsweep predict --verify` checked it. Missing numbers read "none", never "nan"."""
    items = [_pilot_item(prediction), _optimum_item(prediction), _critical_item(prediction), _lr_item(prediction)]
    weak = prediction.get("weak")
    items += [("weak", str(reason)) for reason in (weak if isinstance(weak, list) else [weak] if weak else [])]
    if isinstance(prediction.get("verify"), dict):
        items.append(_verify_item(prediction["verify"]))
    return items


# The width of the answer block's labels (`answer.answer_lines`), so predicted lines align with it.
LABEL_WIDTH = max(map(len, EVIDENCE))


def prediction_lines(prediction: dict) -> list[str]:
    """`prediction_items` as the terminal prints them: each line as `answer.answer_lines` prints
    an item (two spaces, the label padded to the answer's label width, two spaces, the value),
    so they read on their own (`bsweep predict`) and under a grid's point alike."""
    return [f"  {label:<{LABEL_WIDTH}}  {value}" for label, value in prediction_items(prediction)]


def unmatched_heading(prediction: dict) -> str:
    """The line above a prediction that matches no point of the study's answer."""
    return f"{MARK} for {setting_text(prediction)} (no point of this study has that setting)"
