"""bsweep: batch-size studies. `bsweep.load_study(path)` opens a study's results in Python."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `import bsweep` stays free of pandas: the CLI starts without it
    from bsweep.analysis.study import Study


def load_study(path: str | Path, nuisance: tuple[str, ...] = ()) -> Study:
    """The study in folder `path` (results/<study>) as `bsweep report` reads it: ``trials``,
    ``measurements`` and ``summary`` DataFrames, ``verdicts``, ``answer`` and ``critical`` (the
    critical-batch-size fit), each computed on first use. ``nuisance``: keys to tune over
    besides the study's ``study.nuisance`` (as `bsweep report --nuisance`)."""
    from bsweep.analysis.study import Study

    return Study.load(path, tuple(nuisance))
