import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bsweep.analysis import report
from bsweep.analysis.report import build as report_build
from bsweep.analysis.report import build_report, write_report

VOID_TAGS = {"meta", "img", "br", "hr", "link", "input"}


class TagChecker(HTMLParser):
    """Checks that every opened tag is closed in order, and collects src / href values."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.urls: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [value or "" for name, value in attrs if name in ("src", "href")]
        if tag not in VOID_TAGS:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()


@pytest.fixture(scope="module")
def frames():
    from tests.analysis.conftest import make_study

    trials, measurements = make_study(
        ceiling=lambda n, bs, lr, s: 0.95 - 0.003 * s - (0.3 if n == "batch" and bs <= 4 else 0),
        tau_epochs=lambda n, bs, lr, s: 0.3 * max(1.0, bs / 16),
        batch_sizes=(4, 16, 64),
        lrs=(0.05, 0.1),
        norms=("batch", "group"),
        seeds=(0, 1),
        epochs=3.0,
    )
    config = {"name": "tiny", "target": 0.8, "budget": {"epochs": 3}, "note": "a <b> & c"}
    environment = {"device": "cpu", "torch_version": "2.4.0"}
    return trials, measurements, config, environment


def section(text: str, start: str, end: str) -> str:
    """The part of a page between two headings (the Figures section ends where the critical
    batch size section, with its own figures, begins)."""
    return text[text.index(start) : text.index(end)]


def check_html(text: str) -> TagChecker:
    checker = TagChecker()
    checker.feed(text)
    checker.close()
    assert not checker.errors, checker.errors
    assert not checker.stack, f"unclosed tags: {checker.stack}"
    return checker


@pytest.mark.slow(seconds=20)
def test_report_is_self_contained_and_ordered_and_its_markdown_links_the_same_figures(frames, tmp_path):
    # one test: two sharing a module fixture drew the report once on each xdist worker
    trials, measurements, config, environment = frames
    built = build_report(trials, measurements, config, environment, tmp_path / "report", svg=True)
    text = built.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    checker = check_html(text)
    # Nothing is loaded from outside: every src / href is an embedded data URI or a link within the page.
    assert checker.urls and all(url.startswith(("data:image/png;base64,", "#")) for url in checker.urls)
    assert "http://" not in text and "https://" not in text
    assert "script" not in checker.tags and "link" not in checker.tags
    # The answer first, then the verdict table, figures, config, environment, counts.
    headings = re.findall(r"<h2>(.*?)</h2>", text)
    assert headings[:3] == ["What batch size, and why", "Verdicts", "Figures"]
    assert headings.index("Study config") < headings.index("Environment") < headings.index("Trials by status")
    figures = section(text, "<h2>Figures</h2>", "<h2>Critical batch size</h2>")
    assert len(re.findall(r"<img ", figures)) == 9
    assert "a &lt;b&gt; &amp; c" in text  # config text is escaped, not interpreted
    assert "Every trial of the study finished." in text

    out = built.parent
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert markdown.startswith("# bsweep report: tiny")
    assert markdown.index("## What batch size, and why") < markdown.index("## Verdicts") < markdown.index("## Figures") \
        < markdown.index("## Study config")
    linked = re.findall(r"\]\((figures/[^)]+\.png)\)", markdown)
    assert len(re.findall(r"\]\((figures/[^)]+\.png)\)", section(markdown, "## Figures", "## Critical batch size"))) == 9
    for link in linked:
        png = out / link
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.with_suffix(".svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")
    for claim in ("C1", "C2", "C3", "C4", "C5", "N1", "N2"):
        assert f"| {claim} |" in markdown
    assert "no norm=none arm" in markdown  # N2 says why it is inconclusive


@pytest.mark.slow
def test_report_on_running_study_with_failures_says_so(frames, tmp_path):
    trials, measurements, config, environment = frames
    trials = trials.copy()
    trials.loc[trials.index[:2], "status"] = "running"
    trials.loc[trials.index[2], ["status", "error"]] = ["failed", "RuntimeError: <boom>"]
    trials.loc[trials.index[3], "status"] = "oom"
    index = build_report(trials, measurements, config, environment, tmp_path / "report", figures=False)
    text = index.read_text(encoding="utf-8")
    check_html(text)
    notice = text.index("still running")
    assert notice < text.index("<h2>Verdicts</h2>")
    assert "2 of 24 trials have no result (1 failed, 1 oom)" in text
    assert "RuntimeError: &lt;boom&gt;" in text


def test_report_with_no_finished_trial(frames, tmp_path):
    trials, measurements, config, environment = frames
    trials = trials.assign(status="running")
    index = build_report(trials, measurements.iloc[0:0], {}, {}, tmp_path / "report")
    text = index.read_text(encoding="utf-8")
    check_html(text)
    assert "No trial has finished yet" in text
    assert "No figures: no trial has finished yet." in text
    verdicts = re.findall(r'<td class="verdict"[^>]*>([^<]*)</td>', text)
    assert len(verdicts) == 26 and set(verdicts) == {"inconclusive"}  # 15 claims, 26 protocol rows


def test_write_report_loads_the_study(frames, tmp_path, monkeypatch):
    from bsweep.analysis import load

    trials, measurements, config, environment = frames
    study_dir = tmp_path / "results" / "tiny_study"
    (study_dir / "trials").mkdir(parents=True)
    calls = []

    def loader(value):
        def load_function(path, *args):
            calls.append(Path(path))
            return value

        return load_function

    monkeypatch.setattr(load, "load_trials", loader(trials))
    monkeypatch.setattr(load, "load_measurements", loader(measurements))
    monkeypatch.setattr(load, "load_study_config", loader({}))
    monkeypatch.setattr(load, "load_environment", loader(environment))
    built = {}

    def fake_write(study, out_dir, svg, figures):
        built.update(study=study, out_dir=out_dir)
        return out_dir / "index.html"

    # Drawing is tested above; here only the wiring from disk to the Study the report renders.
    monkeypatch.setattr(report_build, "write_study", fake_write)
    assert write_report(study_dir) == study_dir / "report" / "index.html"
    assert set(calls) == {study_dir}
    assert built["study"].trials is trials and built["study"].measurements is measurements
    assert built["study"].name == "synthetic"  # from the trials when the config has no name
    assert write_report(study_dir, tmp_path / "elsewhere") == tmp_path / "elsewhere" / "index.html"


@pytest.mark.slow
def test_a_figure_that_fails_is_reported_not_fatal(frames, tmp_path, monkeypatch):
    trials, measurements, config, environment = frames

    def broken(ax, view):
        raise RuntimeError("cannot draw")

    monkeypatch.setattr(report.plots, "plot_throughput", broken)
    index = build_report(trials, measurements, config, environment, tmp_path / "report")
    text = index.read_text(encoding="utf-8")
    assert "Could not draw this figure: RuntimeError: cannot draw" in text
    assert len(re.findall(r"<img ", section(text, "<h2>Figures</h2>", "<h2>Critical batch size</h2>"))) == 8


def test_analysis_imports_no_torch_and_no_runner():
    import subprocess
    import sys

    code = (
        "import sys, bsweep.analysis.report, bsweep.analysis.claims, bsweep.analysis.report.plots;"
        "bad = [m for m in sys.modules if m == 'torch' or m.split('.')[0] == 'torch' or "
        "m in ('bsweep.train.engine', 'bsweep.train.fused', 'bsweep.train.trial', 'bsweep.train.data', 'bsweep.train.models')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- critical batch size


@pytest.fixture(scope="module")
def wide_frames():
    """Six batch sizes, so the critical-batch-size model can be fitted, with a noise scale."""
    from tests.analysis.conftest import make_study

    trials, measurements = make_study(
        ceiling=lambda n, bs, lr, s: 0.95,
        tau_epochs=lambda n, bs, lr, s: 0.3 * (1 + bs / 16) * (1 + 0.05 * s),
        batch_sizes=(4, 8, 16, 32, 64, 128),
        lrs=(0.05, 0.1),
        norms=("group",),
        seeds=(0, 1),
        epochs=6.0,
    )
    return trials, measurements.assign(noise_scale=5 + measurements["samples"] / 100.0)


@pytest.mark.slow
def test_critical_section_fits_explains_and_draws(wide_frames, tmp_path):
    trials, measurements = wide_frames
    index = build_report(trials, measurements, {"name": "wide"}, {}, tmp_path / "report")
    text = index.read_text(encoding="utf-8")
    check_html(text)
    headings = re.findall(r"<h2>(.*?)</h2>", text)
    assert headings.index("Figures") + 1 == headings.index("Critical batch size") < headings.index("Tuned learning rates")
    critical = section(text, "<h2>Critical batch size</h2>", "<h2>Tuned learning rates</h2>")
    # epochs to target ~ (1 + B/16): steps ~ (1/B + 1/16), i.e. B_crit ~ 16 (evaluation-grid steps aside).
    b_crit = float(re.search(r"S\(B\) = [\d.]+ x \(1 \+ ([\d.]+) / B\)", critical).group(1))
    assert 10 < b_crit < 25
    assert "What it means for your batch size" in critical and "diminishing returns" in critical
    assert "Time-optimal batch size: predicted vs measured" in critical
    assert "noise scale near target" in critical and "consistent" in critical
    assert len(re.findall(r"<img ", critical)) == 3  # fit + trade-off, time, noise scale
    markdown = (index.parent / "report.md").read_text(encoding="utf-8")
    assert markdown.index("## Figures") < markdown.index("## Critical batch size") < markdown.index("## Tuned")
    for name in ("critical_batch_size", "critical_time_optimal", "critical_noise_scale"):
        assert f"(figures/{name}.png)" in markdown
        assert (index.parent / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_critical_section_says_why_it_cannot_fit(frames, tmp_path):
    trials, measurements, config, environment = frames
    keep = trials["batch_size"].isin([4, 16])
    from bsweep.analysis.metrics import summarize_trials

    section_ = report_build.critical_section(
        summarize_trials(trials[keep], measurements), measurements, None, tmp_path / "figures"
    )
    assert not section_.figures and not section_.reading
    assert any("Could not fit the model" in n and "needs at least 3" in n for n in section_.notes)
    assert any("noise tracking" in n for n in section_.notes)
    # A whole report with nothing finished still gets the section, with its reason.
    index = build_report(trials.assign(status="running"), measurements.iloc[0:0], {}, {}, tmp_path / "r")
    text = index.read_text(encoding="utf-8")
    check_html(text)
    assert "Could not fit the model: no finished trial." in text


def test_report_says_where_bf16_and_channels_last_ran():
    import pandas as pd

    from bsweep.analysis.report.build import _settings_line

    trials = pd.DataFrame({"batch_size": [16, 256, 1024, 1024], "amp": ["off", "bf16", "bf16", "bf16"],
                           "channels_last": ["off"] * 4})
    assert _settings_line(trials) == (
        'Run settings (perf.*, measured where auto; results within tolerance, see docs/performance.md '
        '"Performance"): bf16 autocast at batch size 256, 1024. The rest ran in float32, contiguous.')
    trials["channels_last"] = "on"
    assert "channels_last at every trial" in _settings_line(trials)
    assert _settings_line(trials.assign(amp="off", channels_last="off")) is None
    assert _settings_line(trials.drop(columns=["amp", "channels_last"])) is None  # older studies


@pytest.mark.slow
def test_the_verdicts_file_is_the_reports_table_on_the_calibrated_basis(frames, tmp_path):
    """`bsweep reproduce` prints the verdicts each report wrote (verdicts.csv): with a bench they
    judge time on the calibrated basis, as the report does, not on the measured (shared, fused)
    seconds."""
    import pandas as pd

    from bsweep.analysis import timebase
    from bsweep.analysis.metrics import summarize_trials
    from bsweep.analysis.report import build_report, read_verdicts
    from bsweep.analysis.claims import all_verdicts

    trials, measurements, _, _ = frames
    # isolated step times that make batch 4 by far the fastest to the target
    bench = pd.DataFrame([{"batch_size": bs, "norm": n, "device": "cpu", "fused_width": 1,
                           "seconds_per_step": 1e-4 if bs == 4 else 10.0}
                          for bs in (4, 16, 64) for n in ("batch", "group")])
    index = build_report(trials, measurements, {}, {}, tmp_path / "report", bench=bench, figures=False)
    got = read_verdicts(index.parent)
    measured = all_verdicts(summarize_trials(trials, measurements))
    calibrated = all_verdicts(timebase.calibrate_times(summarize_trials(trials, measurements), measurements, bench)[0])
    c4 = lambda v: v[v["claim"] == "C4"]["condition"].tolist()
    assert c4(calibrated) != c4(measured)  # the bench really changes the C4 verdict here
    assert c4(got) == c4(calibrated)
    assert got["claim"].tolist() == calibrated["claim"].tolist() and got["verdict"].tolist() == calibrated["verdict"].tolist()
