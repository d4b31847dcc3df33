"""The report: verdict table first, then figures, study config, environment, trial counts.

``build_report`` takes the tidy frames and writes, under ``out_dir``:

    index.html          self-contained: inline CSS, figures as base64 data URIs, no URL, no JS
    report.md           the same content for a terminal or a repository
    figures/<name>.png  (and figures/<name>.svg when asked: vector copies, each costs a
                        second rendering, about as long as the PNG's)

``write_study(study)`` renders a `study.Study`, where every number is computed once;
``build_report`` makes one from frames and ``write_report(study_dir)`` loads one from disk. All
work on a study that is still running or has failed trials, and say so at the top.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import pandas as pd
import yaml

from bsweep.analysis import critical, predicted
from bsweep.analysis.answer import COLUMNS as ANSWER_COLUMNS
from bsweep.analysis.answer import TEXT_COLUMNS as ANSWER_TEXT
from bsweep.analysis.answer import EVIDENCE, answer_items, claim_rows
from bsweep.records import bracket_settings, bracket_table
from bsweep.analysis.load import config_key
from bsweep.analysis.metrics import (
    FINISHED_STATUSES,
    condition_columns,
    nuisance_columns,
)
from bsweep.analysis.study import Study, study_name
from bsweep.analysis.stats import ALPHA, MIN_SEEDS
from bsweep.analysis.report.figures import ReportFigure, critical_specs, draw_figures, draw_specs

# Characters of a failed trial's error message shown in the report (the full text is on disk).
ERROR_CHARS = 200

VERDICT_COLORS = {"holds": "#1a7f37", "does not hold": "#cf222e", "inconclusive": "#9a6700"}

# The report's style sheet, inlined into each page so it stands alone.
CSS = (Path(__file__).parent / "report.css").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- critical batch size

BRACKET_INTRO = (
    "The study ran with hydra/sweeper=bsweep_bracket: where a point's best lr (on any criterion "
    "below) was the lowest or the highest lr tried there, the lr half a decade beyond it (1-3 "
    "grid) was trained at every seed, round after round, until the best lr was interior, the "
    "next lr left the bounds, or the rounds allowed were spent. Tuned verdicts read the "
    "extended grid; an edge left open is named here and in the verdicts' caveats."
)

GRID_INTRO = (
    "Every config key the study's trials vary is scientific (a point of its own in every table, "
    "figure and verdict) unless it is a nuisance key (lr and any key in study.nuisance: tuned "
    "over jointly; seed: averaged over); "
    "keys with one value are fixed. Runtime keys (device, threads, perf, paths), noise.* and "
    "study.eval.* are not part of the grid."
)
CRITICAL_INTRO = (
    "McCandlish et al. (2018) model the steps S and training examples E = B S needed to reach a "
    "target at batch size B, with the learning rate tuned per batch size, as S(B) = S_min (1 + "
    "B_crit / B) and E(B) = E_min (1 + B / B_crit), E_min = S_min B_crit. Below B_crit a larger "
    "batch saves steps almost for free (perfect scaling); around it, it saves steps but costs "
    "examples (diminishing returns); far above it, it saves nothing (maximal parallelism). The "
    "fit uses steps to target at the lr with fewest steps per batch size, over the batch sizes "
    "where every seed reached the target; intervals are 95 % (fit covariance, t with n - 2 "
    "degrees of freedom)."
)


@dataclass(frozen=True)
class CriticalSection:
    """The report's "Critical batch size" section: tables, figures and the reading in words."""

    notes: list[str]
    fit_table: pd.DataFrame
    prediction_table: pd.DataFrame
    noise_table: pd.DataFrame
    reading: list[str]
    figures: list[ReportFigure]
    result: critical.CriticalBatchSize | None = None  # the analysis itself (the answer block reads it)


def _shown_conditions(frame: pd.DataFrame, exclude: tuple[str, ...]) -> list[str]:
    """Condition columns worth a table column: norm always, the others only when they vary."""
    return [c for c in frame.columns if c not in exclude and (c == "norm" or frame[c].nunique() > 1)]


def _interval(value: float, lo: float, hi: float) -> str:
    if pd.isna(value):
        return ""
    return f"{value:.4g} [{lo:.4g}, {hi:.4g}]" if pd.notna(lo) else f"{value:.4g}"


def _critical_tables(result: critical.CriticalBatchSize) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    fits = result.fits
    keys = _shown_conditions(fits, critical.FIT_COLUMNS)
    fit_table = fits[keys].copy()
    fit_table["batch sizes fitted"] = [
        f"{int(r.n_batch_sizes)} ({r.b_min:g}-{r.b_max:g})" if r.n_batch_sizes else "0"
        for r in fits.itertuples()
    ]
    for name, label in (("s_min", "S_min (steps)"), ("b_crit", "B_crit (examples)"), ("e_min", "E_min (examples)")):
        fit_table[label] = [_interval(v, lo, hi) for v, lo, hi in zip(fits[name], fits[f"{name}_lo"], fits[f"{name}_hi"])]
    fit_table["rms misfit"] = fits["rms_rel_residual"].map(lambda v: "" if pd.isna(v) else f"{v:.1%}")
    fit_table["why no fit"] = fits["reason"]

    p = result.prediction
    keys = _shown_conditions(p, critical.PREDICTION_COLUMNS)
    prediction_table = p[keys].copy()
    prediction_table["predicted optimum"] = p["predicted_batch_size"].map(lambda v: "" if pd.isna(v) else f"{v:.3g}")
    prediction_table["predicted, on the grid"] = p["predicted_grid_batch_size"]
    prediction_table["measured optimum"] = p["measured_batch_size"]
    prediction_table["predicted s"] = p["predicted_seconds"]
    prediction_table["measured s"] = p["measured_seconds"]
    prediction_table["step times from"] = p["step_time_source"]
    prediction_table["why no prediction"] = p["reason"]

    n = result.noise
    keys = _shown_conditions(n, ("noise_scale_at_target", "n_trials", "b_crit", "b_crit_over_noise", "reason"))
    noise_table = n[keys].copy()
    noise_table["noise scale near target"] = n["noise_scale_at_target"]
    noise_table["trials"] = n["n_trials"]
    noise_table["fitted B_crit"] = n["b_crit"]
    noise_table["B_crit / noise scale"] = n["b_crit_over_noise"]
    noise_table["why none"] = n["reason"]
    return fit_table, prediction_table, noise_table


def critical_section(
    summary: pd.DataFrame, measurements: pd.DataFrame, bench: pd.DataFrame | None, figures_dir: Path | None,
    svg: bool = False, analysed: critical.CriticalBatchSize | Exception | None = None,
) -> CriticalSection:
    """Fit the critical-batch-size model (or take `analysed`, the fit or what stopped it, as
    `Study` computed it) and draw its figures (none when `figures_dir` is None); never raises.

    Whatever stops it (no finished trial, too few batch sizes, an error) becomes a note in the
    section, so the rest of the report is unaffected.
    """
    empty = pd.DataFrame()
    try:
        result = analysed if analysed is not None else critical.analyse_critical_batch_size(summary, measurements, bench)
        if isinstance(result, Exception):
            raise result
    except Exception as error:  # noqa: BLE001 - reported in the section, see docstring
        return CriticalSection([f"Could not fit the model: {type(error).__name__}: {error}"],
                               empty, empty, empty, [], [])
    notes = list(result.notes)
    if not result.any_fit:
        reasons = "; ".join(sorted(set(result.fits["reason"].astype(str))))
        notes.append(f"Could not fit the model: {reasons}.")
    fit_table, prediction_table, noise_table = _critical_tables(result)
    if result.noise_curves.empty:
        notes.append("No gradient noise scale was measured in these trials (noise tracking "
                     "is off by default), so B_crit is not compared with it.")
        noise_table = empty
    figures = draw_specs(critical_specs(result), figures_dir, svg) if result.any_fit and figures_dir else []
    return CriticalSection(notes, fit_table, prediction_table if result.any_fit else empty,
                           noise_table, critical.reading(result) if result.any_fit else [], figures, result)


# --------------------------------------------------------------------------- text pieces


def _status_counts(trials: pd.DataFrame) -> pd.DataFrame:
    counts = trials["status"].value_counts().rename_axis("status").reset_index(name="trials")
    return counts.sort_values("status").reset_index(drop=True)


def _notices(trials: pd.DataFrame) -> list[str]:
    """Sentences for the top of the report about unfinished or failed trials."""
    total = len(trials)
    if total == 0:
        return ["No trials found: nothing has run yet in this study."]
    counts = trials["status"].value_counts()
    notes = []
    running = int(counts.get("running", 0))
    if running:
        notes.append(
            f"The study is still running: {running} of {total} trials are not finished. "
            "Numbers and verdicts are provisional and use finished trials only."
        )
    unfinished = {s: int(n) for s, n in counts.items() if s not in (*FINISHED_STATUSES, "running")}
    if unfinished:
        parts = ", ".join(f"{n} {s}" for s, n in sorted(unfinished.items()))
        notes.append(
            f"{sum(unfinished.values())} of {total} trials have no result ({parts}); they are "
            "left out of every number below and listed at the end."
        )
    if not (trials["status"].isin(FINISHED_STATUSES)).any():
        notes.append("No trial has finished yet: every verdict is inconclusive.")
    return notes


def _tuned_lr_table(tuned: pd.DataFrame) -> pd.DataFrame:
    """The tuned view by final accuracy (`Study.views`) as the report's table of best lrs."""
    # Conditions the study holds fixed (one dataset, one model, ...) would only repeat.
    shown = [c for c in condition_columns(tuned) if c == "norm" or tuned[c].nunique() > 1]
    keys = [*shown, "batch_size"]
    others = [c for c in nuisance_columns(tuned) if c != "lr"]  # tuned jointly with lr: their best values
    table = tuned[[*keys, "best_lr", *others, "n_lr", "lr_on_edge", "final_test_acc_mean", "final_test_acc_std",
                   "n_trials"]]
    return table.rename(
        columns={"final_test_acc_mean": "final acc (mean)", "final_test_acc_std": "final acc (std)", "n_trials": "seeds",
                 **{c: "best " + config_key(c) for c in others}}
    )


def _failed_table(trials: pd.DataFrame) -> pd.DataFrame:
    bad = trials[~trials["status"].isin([*FINISHED_STATUSES, "running"])]
    columns = [c for c in ("trial_id", "status", "norm", "batch_size", "lr", "seed", "error") if c in bad.columns]
    table = bad[columns].copy()
    if "error" in table.columns:
        table["error"] = table["error"].fillna("").astype(str).str.slice(0, ERROR_CHARS)
    return table


def _definitions(final_window: int, target: str, split: bool) -> list[str]:
    selection = (
        "The tuned lr is chosen on the validation half of the test set (even positions) and its "
        "numbers are reported on the held-out half (odd positions), so the numbers shown did not "
        "choose it." if split else
        "The tuned lr is chosen and reported on the same test set (the trials predate the "
        "validation / held-out halves), so tuned numbers are slightly optimistic.")
    return [
        f"Target accuracy: {target}. Steps / epochs / samples / seconds to target are read at the "
        "first measurement at or above it; a trial that never reaches it has none.",
        f"Final test accuracy: mean of the last {final_window} measurements after step 0.",
        "Fixed lr: each learning rate on its own. Tuned lr: for each batch size (and norm), the "
        "lr with fewest diverged seeds, then fewest seeds missing the criterion, then the best "
        "mean of the criterion (final accuracy; or time / epochs / steps to target), over every "
        "combination of the nuisance keys (lr, and those the Study grid lists as nuisance). "
        + selection,
        f"A difference counts when it is significant at {ALPHA:g} family-wise over the "
        "comparisons of one curve (seed spread pooled over the curve's batch sizes; Tukey's "
        f"studentized range); points with fewer than {MIN_SEEDS} seeds have no spread and are "
        "left out. A verdict holds when it holds in most of the curves where it could be judged. "
        "Running, failed and out-of-memory trials are left out of every number.",
    ]


def _settings_line(trials: pd.DataFrame) -> str | None:
    """Where the trials ran with bf16 autocast or channels_last (perf.*), by batch size; None
    when every trial ran in float32, contiguous, or no trial says."""
    parts = []
    for col, label in (("amp", "bf16 autocast"), ("channels_last", "channels_last")):
        if col not in trials.columns:
            continue
        on = trials.loc[trials[col].isin(["bf16", "on"]), "batch_size"].dropna()
        if on.empty:
            continue
        sizes = sorted({int(b) for b in on})
        mixed = trials.loc[~trials[col].isin(["bf16", "on"]) & trials[col].notna(), "batch_size"]
        where = "every trial" if mixed.empty else f"batch size {', '.join(map(str, sizes))}"
        parts.append(f"{label} at {where}")
    if not parts:
        return None
    return ("Run settings (perf.*, measured where auto; results within tolerance, see docs/performance.md "
            "\"Performance\"): " + "; ".join(parts) + ". The rest ran in float32, contiguous.")


# --------------------------------------------------------------------------- HTML


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@dataclass(frozen=True)
class ReportContent:
    """Everything the HTML and Markdown renderers show, computed once by `build_report`."""

    name: str
    notices: list[str]
    answer: list  # per scientific point: (name, what the numbers are, [(label, value)]) (`answer_items`)
    claims: list  # per claim: (id, in a few words, verdicts, deciding slice) (`claim_rows`)
    definitions: list[str]
    verdicts: pd.DataFrame
    figures: list[ReportFigure]
    tuned_lrs: pd.DataFrame
    config_text: str
    environment: dict
    counts: pd.DataFrame
    failed: pd.DataFrame
    critical: CriticalSection | None = None
    grid: pd.DataFrame | None = None  # key, role (scientific / nuisance / fixed), values
    bracketing: pd.DataFrame | None = None  # where the lr grid was extended, and why (bracket.json)
    bracket_settings: str = ""
    no_figures: str = "No figures: no trial has finished yet."  # said where the figures would be
    # Per point of `answer`, the predictions of `bsweep predict` for it (`PredictedBlock`); then
    # those of no point, and why any predict.json was skipped.
    predicted: list = field(default_factory=list)
    predicted_elsewhere: list = field(default_factory=list)
    prediction_notes: list[str] = field(default_factory=list)


def _verdict_rows(verdicts: pd.DataFrame) -> list[dict]:
    """The verdict summary a reader takes in at a glance: one row per claim, the verdict under
    each protocol and where the tuned verdict holds (another protocol is named when the claim
    has no tuned one)."""
    rows = []
    for claim, group in verdicts.groupby("claim", sort=False):
        by_protocol = {v.protocol: v for v in group.itertuples(index=False)}
        main = by_protocol.get("tuned lr") or next(iter(by_protocol.values()))
        other = by_protocol.get("fixed lr")
        rows.append({"claim": claim, "statement": main.statement, "main": _coloured(main),
                     "other": _coloured(other) if other is not None and other is not main else None,
                     "label": "" if main.protocol == "tuned lr" else main.protocol, "condition": main.condition})
    return rows


def _coloured(v) -> dict:
    return {"verdict": v.verdict, "colour": VERDICT_COLORS.get(v.verdict, "black")}


def _verdict_details(verdicts: pd.DataFrame) -> list[dict]:
    """Each claim and protocol's evidence (condition, caveat, numbers, rule); the first of a
    claim carries its anchor, where the answer block links."""
    out, seen = [], set()
    for v in verdicts.itertuples(index=False):
        out.append({**v._asdict(), "colour": VERDICT_COLORS.get(v.verdict, "black"), "anchor": v.claim not in seen})
        seen.add(v.claim)
    return out


def _tabular(frame: pd.DataFrame) -> dict:
    """A table for the templates: its column names and its cells as text (`_cell`)."""
    return {"columns": [str(c) for c in frame.columns],
            "rows": [[_cell(v) for v in record] for record in frame.itertuples(index=False)]}


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# The report's layout lives in templates/ (Jinja2); this module computes what they show.
_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("bsweep.analysis.report", "templates"),
    autoescape=jinja2.select_autoescape(["html.j2"]),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)
_TEMPLATES.filters.update(tabular=_tabular, data_uri=_png_data_uri, md=_md_escape)


def render(template: str, out_dir: Path, **context: object) -> str:
    """Render one of templates/ for a page written in `out_dir` (figures link relative to it)."""
    env = _TEMPLATES.overlay()
    env.filters["relative"] = lambda path: Path(path).relative_to(out_dir).as_posix()
    return env.get_template(template).render(css=CSS, evidence=EVIDENCE, **context)


def _render(c: ReportContent, template: str, out_dir: Path) -> str:
    claims = pd.DataFrame(c.claims, columns=["claim", "in short", "verdict", "decided by"])
    verdict_table = c.verdicts[["claim", "protocol", "verdict", "condition", "caveat"]].rename(
        columns={"condition": "where / why"})
    return render(
        template, out_dir, c=c, verdict_rows=_verdict_rows(c.verdicts),
        verdict_details=_verdict_details(c.verdicts), claims=claims, verdict_table=verdict_table,
        environment=pd.DataFrame(sorted(c.environment.items()), columns=["key", "value"]),
        critical_intro=CRITICAL_INTRO, bracket_intro=BRACKET_INTRO, grid_intro=GRID_INTRO,
    )


class _PlainDumper(yaml.SafeDumper):
    """Writes a repeated sub-dict out again instead of as a YAML anchor (&id001), for readers."""

    def ignore_aliases(self, data: object) -> bool:
        return True


# --------------------------------------------------------------------------- predictions


@dataclass(frozen=True)
class PredictedBlock:
    """One prediction as the first screen shows it under its point: its setting in words, its
    lines (`predicted.prediction_items`) and its figure (None when figures are off)."""

    setting: str
    items: list[tuple[str, str]]
    figure: ReportFigure | None = None


def _prediction_figure(prediction: dict, measured: pd.DataFrame | None, figures_dir: Path, svg: bool) -> ReportFigure:
    """Draw one prediction's figure into the report's figures folder; a failure is listed, as
    `draw_specs` lists one, and never stops the report."""
    from bsweep.analysis.report.prediction_plots import write_prediction_figure  # matplotlib: only when drawn

    # Its predict folder names it; a prediction made in memory has none, and its setting is unique.
    name = prediction.get(predicted.FOLDER_KEY) or predicted.setting_text(prediction)
    stem = "predicted_" + re.sub(r"[^A-Za-z0-9._-]+", "_", str(name))
    title = f"Time to target, {predicted.MARK}: {predicted.setting_text(prediction)}"
    caption = ("Line and band: seconds to target predicted from one pilot run, T(B) = S(B) t(B), with its "
               "interval; star: the predicted fastest batch size B* with its interval (shaded). "
               + ("No point of this study has this setting: nothing measured to compare." if measured is None else
                  "No batch size of this setting reached the target at every seed: nothing measured to compare."
                  if not len(measured) else
                  "Points: the grid's seconds to target at the fastest lr per batch size (mean ± std over seeds, "
                  "on the report's time basis); diamond: the grid's fastest."))
    png = figures_dir / f"{stem}.png"
    try:
        write_prediction_figure(prediction, png, measured, svg)
    except Exception as error:  # noqa: BLE001 - reported in the page, see docstring
        return ReportFigure(stem, title, caption, None, None, f"{type(error).__name__}: {error}")
    return ReportFigure(stem, title, caption, png, png.with_suffix(".svg") if svg else None)


def prediction_blocks(study: Study, figures_dir: Path | None, svg: bool = False) -> tuple[list, list]:
    """Per answer point, a `PredictedBlock` per prediction made for it, and the blocks of the
    predictions of no point. Each figure draws the grid's measured seconds of the prediction's
    (first) point beside the prediction, so the first screen checks the predictor."""
    per_point, unmatched = study.matched_predictions
    if not study.predictions:
        return per_point, []
    points, any_point = study.answer_points, len(study.answer) > 0
    by = condition_columns(study.views.fixed()) if any_point else []  # no finished trial: no views to ask
    by_time = study.views.tuned("seconds_to_target") if figures_dir is not None and any_point else None
    drawn: dict[int, ReportFigure] = {}

    def block(prediction: dict, conditions: dict | None) -> PredictedBlock:
        figure = None
        if figures_dir is not None:
            if id(prediction) not in drawn:  # one figure a prediction, under its first point
                measured = (predicted.measured_seconds(by_time, conditions)
                            if by_time is not None and conditions else None)
                drawn[id(prediction)] = _prediction_figure(prediction, measured, figures_dir, svg)
            figure = drawn[id(prediction)]
        return PredictedBlock(predicted.setting_text(prediction), predicted.prediction_items(prediction), figure)

    blocks = [[block(p, {c: points.iloc[i][c] for c in by if c in points}) for p in mine]
              for i, mine in enumerate(per_point)]
    return blocks, [block(p, None) for p in unmatched]


# --------------------------------------------------------------------------- entry points


# The report's verdict table, machine-readable, beside index.html (columns as `Verdict`).
VERDICTS_FILE = "verdicts.csv"


def read_verdicts(report_dir: Path) -> pd.DataFrame:
    """The verdicts a report wrote (`VERDICTS_FILE`), as the report shows them."""
    return pd.read_csv(Path(report_dir) / VERDICTS_FILE, keep_default_na=False)


# The report's answer block, machine-readable (columns `answer.COLUMNS`, one row per point).
ANSWER_FILE = "answer.csv"


def read_answer(report_dir: Path) -> pd.DataFrame:
    """The answer block a report wrote (`ANSWER_FILE`); empty when it has none (an older report)."""
    path = Path(report_dir) / ANSWER_FILE
    if not path.is_file():
        return pd.DataFrame(columns=ANSWER_COLUMNS)
    frame = pd.read_csv(path, keep_default_na=False,
                        na_values={c: [""] for c in ANSWER_COLUMNS if c not in ANSWER_TEXT},
                        dtype={c: str for c in ANSWER_TEXT})
    frame["time_on_edge"] = frame["time_on_edge"].astype(str).eq("True")
    return frame


def build_report(
    trials: pd.DataFrame,
    measurements: pd.DataFrame,
    study_config: dict,
    environment: dict,
    out_dir: Path,
    final_window: int = 3,
    name: str | None = None,
    bench: pd.DataFrame | None = None,
    grid: pd.DataFrame | None = None,
    bracket: dict | None = None,
    svg: bool = False,
    figures: bool = True,
) -> Path:
    """Write index.html, report.md and figures/ under ``out_dir`` for the study these frames
    make (`write_study`); return the HTML's path. The study's name defaults to its config's,
    its trials', then the folder above ``out_dir``.

    ``bench``: calibrated step times (``results/<study>/bench.parquet``) for the critical batch
    size section's prediction; without it, the trials' own seconds per step are used.
    """
    name = name or study_name(trials, study_config, Path(out_dir).parent.name)
    study = Study(trials, measurements, config=study_config, environment=environment, name=name, bench=bench,
                  grid=grid, bracket=bracket, final_window=final_window)
    return write_study(study, out_dir, svg, figures)


def write_study(study: Study, out_dir: Path, svg: bool = False, figures: bool = True) -> Path:
    """Write the report of `study` (index.html, report.md, verdicts.csv, answer.csv, figures/)
    under ``out_dir``; return the HTML's path. Every number comes from `study`, computed once
    there. ``svg``: each figure as SVG too (a second rendering); ``figures``: False draws none
    (the tables and verdicts alone, in a fraction of the time: the figures are most of it)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    trials, summary, measurements = study.trials, study.summary, study.judged_measurements
    finished = summary["status"].isin(FINISHED_STATUSES).any()
    # Without a finished trial every figure would be empty axes; say so instead.
    drawn = draw_figures(summary, measurements, out_dir / "figures", svg) if finished and figures else []
    critical = critical_section(summary, measurements, study.bench, out_dir / "figures" if figures else None, svg,
                                analysed=study._critical)
    predicted_here, predicted_elsewhere = prediction_blocks(study, out_dir / "figures" if figures else None, svg)
    targets = sorted(summary["target"].dropna().unique()) if "target" in summary.columns else []
    target_text = ", ".join(f"{t:.1%}" for t in targets) or "not set"
    content = ReportContent(
        name=study.name,
        notices=_notices(trials),
        answer=answer_items(study.answer),
        claims=claim_rows(study.verdicts),
        definitions=[*_definitions(study.final_window, target_text, "val_final_test_acc" in summary.columns),
                     f"Time basis (C2, C4, time figures): {study.time_basis.rstrip('.')}.",
                     *filter(None, [_settings_line(trials)])],
        verdicts=study.verdicts,
        figures=drawn,
        tuned_lrs=_tuned_lr_table(study.views.tuned("final_test_acc")),
        config_text=yaml.dump(study.config, Dumper=_PlainDumper, sort_keys=False, allow_unicode=True),
        environment={str(k): str(v) for k, v in study.environment.items()},
        counts=_status_counts(trials),
        failed=_failed_table(trials),
        critical=critical,
        grid=study.grid,
        bracketing=bracket_table(study.bracket) if study.bracket else None,
        bracket_settings=bracket_settings(study.bracket) if study.bracket else "",
        **({} if figures else {"no_figures": "No figures: this report was written with --no-figures."}),
        predicted=predicted_here,
        predicted_elsewhere=predicted_elsewhere,
        prediction_notes=list(study.prediction_notes),
    )
    index = out_dir / "index.html"
    index.write_text(_render(content, "report.html.j2", out_dir), encoding="utf-8")
    (out_dir / "report.md").write_text(_render(content, "report.md.j2", out_dir), encoding="utf-8")
    study.verdicts.to_csv(out_dir / VERDICTS_FILE, index=False)  # for scripts, and `bsweep reproduce`
    study.answer.to_csv(out_dir / ANSWER_FILE, index=False)
    return index


def write_report(study_dir: Path, out_dir: Path | None = None, nuisance: tuple[str, ...] = (),
                 svg: bool = False, study: Study | None = None, figures: bool = True) -> Path:
    """Load a study from disk (`Study.load`) and write its report (default:
    ``<study_dir>/report``); ``nuisance``: keys tuned over besides those of the study's
    ``study.nuisance``; ``svg``: the figures as SVG too; ``study``: the `Study` when the caller
    has it already (then ``nuisance`` is the one it was loaded with); ``figures``: as for
    `write_study`."""
    study = study if study is not None else Study.load(study_dir, nuisance)
    return write_study(study, Path(out_dir) if out_dir is not None else Path(study_dir) / "report", svg, figures)
