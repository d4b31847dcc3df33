"""`bsweep report A B ...`: studies side by side, for example the same study on a CPU and on a
GPU, or with two models. Each study keeps its own report (its answer block, its verdicts); the
comparison page puts their answers next to each other, their claims in one table with a column
per study, and overlays their curves: time to target, final error and the best lr against
batch size, one line style per study (colour is the norm, as in every report).

The studies are read as they are on disk; each is judged on its own time basis (its bench when
it has one), so times compare across studies only where both bases say the same device or both
are calibrated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bsweep.analysis.answer import answer_items, claim_rows
from bsweep.analysis.metrics import aggregate_over_seeds, tuned_view
import bsweep.analysis.report.plots as plots
from bsweep.analysis.report.build import read_answer, read_verdicts, render, write_study
from bsweep.analysis.report.figures import FigureSpec, draw_specs
from bsweep.analysis.study import Study

# The column that tells the studies apart in the overlays: a dotted config name, so the views
# keep it as a scientific key (one curve per study) and the plots give it a line style of its own.
STUDY_KEY = "study.name"


@dataclass(frozen=True)
class StudySide:
    """One study of a comparison: its name, its answer block and its claims (as its report),
    and the line saying which trials it left out ("" when none)."""

    name: str
    report: Path
    answer: list
    claims: list
    left_out: str = ""


def _side(study: Study, report_dir: Path) -> StudySide:
    return StudySide(study.path.name, report_dir / "index.html", answer_items(read_answer(report_dir)),
                     claim_rows(read_verdicts(report_dir)), study.left_out_line)


def claims_table(sides: list[StudySide]) -> pd.DataFrame:
    """One row per claim, one column per study: its verdicts there ("tuned holds 1/1, ...")."""
    rows: dict[str, dict] = {}
    for side in sides:
        for claim, short, protocols, _ in side.claims:
            rows.setdefault(claim, {"claim": claim, "in short": short})[side.name] = protocols
    return pd.DataFrame(list(rows.values()), columns=["claim", "in short", *(s.name for s in sides)])


def _overlay_specs(summary: pd.DataFrame) -> list[FigureSpec]:
    fixed = aggregate_over_seeds(summary)
    by_time, by_acc = tuned_view(fixed, "seconds_to_target"), tuned_view(fixed, "final_test_acc")
    return [
        ("compare_seconds", "Time to target vs batch size, each study",
         "Seconds to the target at each batch size's fastest lr, on each study's own time basis; "
         "batch sizes where some seed never reached it are left out. Colour: norm; line style: "
         "study. Bars: ±1 std over seeds.",
         (1, 1), lambda fig: plots.plot_seconds_to_target(fig.subplots(), by_time)),
        ("compare_error", "Final test error vs batch size, each study",
         "Final test error at each batch size's most accurate lr (chosen on the validation half, "
         "reported on the held-out half). Colour: norm; line style: study.",
         (1, 1), lambda fig: plots.plot_final_accuracy(fig.subplots(), by_acc)),
        ("compare_lr", "Best lr vs batch size, each study",
         "The most accurate lr per batch size, with each curve's fitted lr* ~ B^alpha and the "
         "linear and square-root rules through it.",
         (1, 1), lambda fig: plots.plot_best_lr(fig.subplots(), by_acc)),
    ]


def write_comparison(study_dirs: list[Path], out_dir: Path, svg: bool = False,
                     figures: bool = True) -> tuple[Path, list[StudySide]]:
    """Write each study's report (in its own folder) and the comparison page (index.html,
    report.md, figures/) in `out_dir`; return the page and the studies as compared. `figures`:
    False draws none, here or in the studies' reports."""
    names = [Path(d).name for d in study_dirs]
    if len(set(names)) < len(names):
        raise ValueError(f"two studies have the same name ({', '.join(names)}): compare studies with distinct folder names")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sides, summaries = [], []
    for study_dir in map(Path, study_dirs):
        study = Study.load(study_dir)  # judged once: for its report and for the overlays
        report_dir = write_study(study, study_dir / "report", svg, figures).parent
        sides.append(_side(study, report_dir))
        summaries.append(study.summary.assign(**{STUDY_KEY: study_dir.name}))
    drawn = draw_specs(_overlay_specs(pd.concat(summaries, ignore_index=True)), out_dir / "figures", svg) if figures else []
    context = {"sides": sides, "claims": claims_table(sides), "figures": drawn,
               "links": {s.name: Path(s.report).resolve().as_uri() for s in sides}}
    index = out_dir / "index.html"
    index.write_text(render("compare.html.j2", out_dir, **context), encoding="utf-8")
    (out_dir / "report.md").write_text(render("compare.md.j2", out_dir, **context), encoding="utf-8")
    return index, sides
