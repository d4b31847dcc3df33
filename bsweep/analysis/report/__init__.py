"""The report of a study, and the page that compares several.

`build.py` computes what a report shows and writes index.html, report.md, verdicts.csv and
answer.csv from the templates/ and report.css; `figures.py` says what each figure shows and draws
it with `plots.py` and `critical_plots.py`; `compare.py` puts studies side by side.
"""

from bsweep.analysis.report.build import (
    ANSWER_FILE,
    VERDICTS_FILE,
    build_report,
    read_answer,
    read_verdicts,
    write_report,
    write_study,
)

__all__ = ["ANSWER_FILE", "VERDICTS_FILE", "build_report", "read_answer", "read_verdicts", "write_report",
           "write_study"]
