"""Tests for floss_core.report: HTML / PDF / zip from a store holding a tiny real comparison.

The fixture runs make_spec('quick', hidden=8, steps=30, seeds=2, delays=[4, 6], ...) for real (a few
seconds) and stores it the way the runner does. PDF and browser tests need Debian's Chromium
(/usr/bin/chromium, installed by .ci/run) and poppler-utils; they are skipped only where it is missing.
"""
import html.parser
import io
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from floss_core import report as R
from floss_core.experiment import make_spec, run_comparison, spec_to_dict, wilson_interval
from floss_core.store import Store

ROOT = Path(__file__).resolve().parents[1]
HAVE_CHROMIUM = os.path.exists("/usr/bin/chromium") or shutil.which("chromium") is not None
needs_chromium = pytest.mark.skipif(not HAVE_CHROMIUM, reason="needs Debian's chromium (apt-get install chromium)")
N_FIGURES = 8  # success vs delay, accuracy curves, seeds solved vs step (Kaplan–Meier), spectra, top-k κ₂,
#               gradient norm vs horizon, full κ₂ vs horizon, cost vs convergence


# ------------------------------------------------------------------------------------ fixture
@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    """A store with one finished two-delay comparison (real training, about 5 s)."""
    spec = make_spec("quick", hidden=8, steps=30, seeds=2, delays=[4, 6], schedules=["none", "pre"], k=4,
                     pre_steps=5, success_acc=0.55, name="tiny sweep")
    records = run_comparison(spec)
    path = tmp_path_factory.mktemp("report") / "floss.db"
    store = Store(path)
    eid = store.add_experiment(spec_to_dict(spec), name=spec.name, status="done")
    store.save_runs(eid, records)
    html = R.render_html(store, eid)
    yield {"store": store, "id": eid, "spec": spec, "records": records, "html": html, "path": path}
    store.close()


def expected_rows(store, eid):
    """Per (delay, schedule), computed here from store.runs() with pandas, independently of report.py."""
    runs = store.runs(eid)
    out = {}
    for (d, s), g in runs.groupby(["delay", "schedule"]):
        ok = g["success"].astype(bool)
        conv = g.loc[ok, "convergence_step"].astype(float)
        out[(int(d), s)] = {"n": len(g), "successes": int(ok.sum()),
                            "median": conv.median() if len(conv) else math.nan,
                            "acc": g["test_acc"].mean(), "l1_before": g["lambda1_before"].mean(),
                            "l1_after": g["lambda1_after"].mean(), "wall": g["wall_seconds"].sum(),
                            "compute": (g["train_seconds"] + g["floss_seconds"]).mean(),
                            "cost": g["floss_seconds"].sum() / g["train_seconds"].sum(),
                            "diag": g["diag_seconds"].mean()}
    return out


class _Tags(html.parser.HTMLParser):
    """Collects tag attributes and the results tables' cells (script bodies are not parsed as tags)."""

    def __init__(self):
        super().__init__()
        self.attrs, self.cells, self._row, self._col = [], {}, None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.attrs.append((tag, a))
        if tag == "tr" and "data-schedule" in a:   # a set side by side: its rows are keyed by their label too
            self._row = ((a["data-set"],) if "data-set" in a else ()) + (int(a["data-delay"]), a["data-schedule"])
        if tag == "td" and self._row and "data-col" in a:
            self._col = a["data-col"]

    def handle_data(self, data):
        if self._col:
            self.cells[(*self._row, self._col)] = self.cells.get((*self._row, self._col), "") + data

    def handle_endtag(self, tag):
        if tag == "td":
            self._col = None
        if tag == "tr":
            self._row = None


def parse(html_text):
    p = _Tags()
    p.feed(html_text)
    return p


# ------------------------------------------------------------------------------------ HTML
def test_html_holds_the_verdict_the_table_values_and_the_figures(fx):
    h, store, eid = fx["html"], fx["store"], fx["id"]
    sentences = R.verdict(R.load(store, eid).summary)
    for s in sentences:
        assert html.escape(s) in h
    cells = parse(h).cells
    exp = expected_rows(store, eid)
    assert {k[:2] for k in cells} == set(exp) == {(4, "none"), (4, "pre"), (6, "none"), (6, "pre")}
    for (d, s), e in exp.items():
        assert cells[(d, s, "successes")] == f"{e['successes']}/{e['n']}"
        med = cells[(d, s, "median_convergence")]
        assert med == "–" if math.isnan(e["median"]) else med.startswith(f"{e['median']:.0f} (")
        assert cells[(d, s, "final_acc")] == f"{e['acc']:.3f}"
        assert cells[(d, s, "lambda1")] == f"{e['l1_before']:.4f} → {e['l1_after']:.4f}"
        # issue 15: the cost columns are training + flossing, flossing against training, and the lab's
        # diagnostics apart (the wall-time column is gone from the table; summary.csv keeps wall_seconds)
        assert cells[(d, s, "compute_s_per_run")] == f"{e['compute']:.2f}"
        assert cells[(d, s, "floss_cost_vs_training")] == f"+{100 * e['cost']:.0f} % ({1 + e['cost']:.1f}×)"
        assert cells[(d, s, "diag_s_per_run")] == f"{e['diag']:.2f}"
        lo, hi = wilson_interval(e["successes"], e["n"])
        assert f"({100 * lo:.0f}%–{100 * hi:.0f}%)" in cells[(d, s, "success_rate")]
        # the verdict quotes the same counts
        if s == "pre":
            base = exp[(d, "none")]
            assert (f"At delay {d}, pre-flossing solved {e['successes']}/{e['n']} seeds vs "
                    f"{base['successes']}/{base['n']} without flossing") in h
    assert h.count('class="plotly-graph-div"') == N_FIGURES
    assert h.count("Plotly.newPlot(") == N_FIGURES
    # the title block
    for text in ("tiny sweep", "Delays</th><td>4, 6", "rnn, 8 units", "2 per schedule", "none, pre", "quick",
                 f"floss_core {R.__version__}"):
        assert text in h, text


def test_report_of_runs_from_before_the_cost_split_says_not_recorded(fx, tmp_path):
    # the fixture's runs as an old store holds them: no evaluation / diagnostics seconds (NULL)
    old = [{k: v for k, v in r.items() if k not in ("eval_seconds", "diag_seconds")} for r in fx["records"]]
    with Store(tmp_path / "old.db") as store:
        eid = store.add_experiment(spec_to_dict(fx["spec"]), name="old", status="done")
        store.save_runs(eid, old)
        data = R.load(store, eid)
        h = R.render_html(store, eid)
    cells = parse(h).cells
    assert {cells[(d, s, "diag_s_per_run")] for d in (4, 6) for s in ("none", "pre")} == {"not recorded"}
    assert all(cells[(d, s, "compute_s_per_run")] != "not recorded" for d in (4, 6) for s in ("none", "pre"))
    assert "the lab&#x27;s diagnostics were not recorded apart for these runs" in h
    row = next(r for r in data.summary if r["schedule"] == "pre")
    assert math.isnan(row["diag_s_per_run"]) and math.isnan(row["eval_s_per_run"]) and row["floss_cost_vs_training"] > 0


def test_html_is_self_contained(fx):
    h = fx["html"]
    tags = parse(h).attrs
    refs = [(t, k, v) for t, a in tags for k, v in a.items()
            if k in ("src", "href", "srcset", "data", "action", "poster") and v]
    assert not [r for r in refs if re.match(r"\s*(https?:)?//", r[2])], refs
    assert not [t for t, a in tags if t == "link"]            # no external stylesheets or fonts
    assert not [t for t, a in tags if t == "script" and a.get("src")]
    style = "".join(re.findall(r"<style>(.*?)</style>", h, re.S))
    assert "url(" not in style and "@import" not in style and "@font-face" not in style
    assert "@media print" in style and "@page" in style
    head = h[:h.index("</head>")]
    assert re.search(r"<script type='text/javascript'>/\*\*\s*\* plotly\.js v\d", head)  # plotly.js inline
    assert len(head) > 3_000_000  # the whole bundle, not a loader


@pytest.mark.slow
@needs_chromium
def test_html_makes_no_external_request_in_a_browser(fx, tmp_path):
    from playwright.sync_api import sync_playwright

    page_path = tmp_path / "r.html"
    page_path.write_text(fx["html"], encoding="utf-8")
    requests = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=R.find_chromium(), args=R.CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                       else route.abort())
            page.goto(page_path.as_uri(), wait_until="load")
            page.wait_for_function("n => document.querySelectorAll('.plotly-graph-div .main-svg').length >= n",
                                   arg=N_FIGURES, timeout=60_000)
            page.wait_for_timeout(300)
            n_traces = page.evaluate("[...document.querySelectorAll('.plotly-graph-div')]"
                                     ".map(d => d.querySelectorAll('.trace').length)")
        finally:
            browser.close()
    assert requests and all(u.startswith("file:") for u in requests), requests
    assert len(n_traces) == N_FIGURES and all(n > 0 for n in n_traces), n_traces


# ------------------------------------------------------------------------------------ PDF
@pytest.fixture(scope="module")
def pdf_pages(fx, tmp_path_factory):
    """The PDF of the fixture report, its page count and its pages as RGB images (pdftoppm)."""
    if not HAVE_CHROMIUM:
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    from PIL import Image

    out = tmp_path_factory.mktemp("pdf")
    pdf = out / "r.pdf"
    r = _cli(str(fx["id"]), "--store", str(fx["path"]), "--format", "pdf", "--out", str(pdf))  # through the CLI
    assert r.returncode == 0 and r.stdout.strip() == str(pdf), r.stderr
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))
    subprocess.run(["pdftoppm", "-png", "-r", "72", str(pdf), str(out / "p")], check=True)
    images = [Image.open(p).convert("RGB") for p in sorted(out.glob("p-*.png"))]
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return {"pages": pages, "images": images, "text": text, "bytes": pdf.read_bytes()}


def _coloured_pixels(img) -> int:
    """Pixels with a clear hue (chart traces); text, grid lines and white paper are grey."""
    a = np.asarray(img, dtype=int)
    return int(((a.max(axis=2) - a.min(axis=2)) > 40).sum())


@pytest.mark.slow
def test_pdf_has_the_expected_pages_and_visible_charts(pdf_pages):
    # page 1: title, verdict, tables; then the eight charts, two or three per page (as their captions fit);
    # last: command and configuration
    assert pdf_pages["bytes"][:5] == b"%PDF-"
    assert 2 + math.ceil(N_FIGURES / 3) <= pdf_pages["pages"] == len(pdf_pages["images"]) <= 3 + N_FIGURES // 2
    text = pdf_pages["text"]
    assert "Verdict" in text and "Results per schedule" in text and "Reproduce" in text
    assert "python -m floss_core compare" in text
    assert text.index("Verdict") < text.index("Time to solution") < text.index("Charts") < text.index("Reproduce")


@pytest.mark.slow
def test_pdf_chart_regions_are_not_blank(pdf_pages):
    # the chart pages, one block after the text, hold charts in their top and bottom halves (the first one at
    # least at the bottom, the last one at least on top: issue 16, the charts and the reproduce section flow on
    # from what comes before them instead of starting a page); the text pages before and after hold none
    halves = []
    for im in pdf_pages["images"]:
        w, h = im.size
        halves.append([_coloured_pixels(im.crop((0, 0, w, h // 2))), _coloured_pixels(im.crop((0, h // 2, w, h)))])
    has_chart = [[c > 50 for c in page] for page in halves]
    charts = [i for i, page in enumerate(has_chart) if any(page)]
    assert charts == list(range(charts[0], charts[-1] + 1)) and charts[-1] < len(has_chart) - 1
    assert math.ceil(N_FIGURES / 3) <= len(charts) <= math.ceil(N_FIGURES / 2) + 1, halves
    assert all(has_chart[i] == [True, True] for i in charts[1:-1]), halves
    assert has_chart[charts[0]][1] and has_chart[charts[-1]][0], halves


def _filled(pdf: Path) -> list[float]:
    """Per page, how far down it is inked: the lowest row holding a dark pixel, as a fraction of the height."""
    from PIL import Image

    out = pdf.parent / f"{pdf.stem}-ink"
    out.mkdir(exist_ok=True)
    subprocess.run(["pdftoppm", "-png", "-r", "30", str(pdf), str(out / "p")], check=True)
    filled = []
    for path in sorted(out.glob("p-*.png")):
        a = np.asarray(Image.open(path).convert("L"))
        rows = np.nonzero((a < 200).any(axis=1))[0]
        filled.append(float(rows.max() + 1) / a.shape[0] if len(rows) else 0.0)
    return filled


def assert_no_mostly_blank_page(pdf: Path):
    """Issue 16: no page but the last is mostly blank. The rule: every page but the last is inked at least
    down to the middle of the page. (A block that may not break, a chart with its caption, is under half a
    page, so flowing content always fills a page past its middle; a forced page break did not.)"""
    pages = int(re.search(r"^Pages:\s+(\d+)", subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True,
                                                             check=True).stdout, re.M).group(1))
    filled = _filled(pdf)
    assert len(filled) == pages
    assert all(f >= 0.5 for f in filled[:-1]), filled


@pytest.mark.slow
def test_no_pdf_page_but_the_last_is_mostly_blank(pdf_pages, tmp_path):
    path = tmp_path / "r.pdf"
    path.write_bytes(pdf_pages["bytes"])
    assert_no_mostly_blank_page(path)


@pytest.mark.slow
@needs_chromium
def test_a_report_with_few_charts_has_no_mostly_blank_page(fx, tmp_path):
    # without the lab's diagnostics there are four charts: the forced page breaks before the charts and before
    # the reproduce section left a page holding a few lines of the survival note (7 % of it inked) and one
    # holding a single chart
    spec = make_spec("quick", hidden=8, steps=30, seeds=2, delays=[4, 6], schedules=["none", "pre"], k=4,
                     pre_steps=5, success_acc=0.55, diagnostics=False, name="no diagnostics")
    with Store(tmp_path / "nd.db") as store:
        eid = store.add_experiment(spec_to_dict(spec), name=spec.name, status="done")
        store.save_runs(eid, run_comparison(spec))
        path = R.write_report(store, eid, "pdf", tmp_path / "nd.pdf")
    text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout
    assert "Reproduce" in text and "Charts" in text
    assert_no_mostly_blank_page(path)


def test_pdf_without_chromium_says_how_to_get_it(fx, monkeypatch):
    monkeypatch.setenv("FLOSS_CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(R.ChromiumMissing, match="apt-get install chromium"):
        R.html_to_pdf(fx["html"])
    assert "apt-get install chromium" in R.pdf_problem()
    name, blob = R.export(fx["store"], fx["id"], "zip")      # HTML and data still work
    assert name.endswith(".zip") and zipfile.ZipFile(io.BytesIO(blob)).testzip() is None


# ------------------------------------------------------------------------------------ zip
def test_zip_round_trips_to_the_store(fx):
    store, eid = fx["store"], fx["id"]
    z = zipfile.ZipFile(io.BytesIO(R.data_zip(store, eid)))
    names = set(z.namelist())
    assert {"runs.csv", "metrics.csv", "spectra.csv", "jacobian.csv", "summary.csv", f"spec-{eid}.json",
            "README.txt"} <= names
    runs = pd.read_csv(z.open("runs.csv"))
    want = store.runs(eid)
    assert list(runs["run_id"]) == list(want["run_id"])
    for col in ("seed", "delay", "convergence_step"):
        assert runs[col].astype("Int64").equals(want[col].astype("Int64").reset_index(drop=True)), col
    assert list(runs["success"]) == list(want["success"].astype(bool))
    for col in ("wall_seconds", "floss_seconds", "train_seconds", "test_acc", "lambda1_before", "lambda1_after",
                "log10_kappa_before", "log10_kappa_after"):
        pd.testing.assert_series_equal(runs[col], want[col].reset_index(drop=True), check_exact=True,
                                       check_names=False, check_dtype=False)
    assert [json.loads(c) for c in runs["config"]] == list(want["config"])

    metrics, want_m = pd.read_csv(z.open("metrics.csv")), store.metrics(eid)
    assert len(metrics) == len(want_m) > 0
    assert list(metrics["name"]) == list(want_m["name"]) and list(metrics["step"]) == list(want_m["step"])
    pd.testing.assert_series_equal(metrics["value"], want_m["value"], check_exact=True, check_names=False)
    spectra, want_s = pd.read_csv(z.open("spectra.csv")), store.spectra(eid)
    pd.testing.assert_series_equal(spectra["exponent"], want_s["exponent"], check_exact=True, check_names=False)
    jac, want_j = pd.read_csv(z.open("jacobian.csv")), store.jacobian(eid)
    pd.testing.assert_series_equal(jac["log_kappa"], want_j["log_kappa"], check_exact=True, check_names=False)
    assert [json.loads(x) for x in jac["log_sv"]] == list(want_j["log_sv"])
    assert json.loads(z.read(f"spec-{eid}.json")) == json.loads(json.dumps(spec_to_dict(fx["spec"])))
    summary = pd.read_csv(z.open("summary.csv"))
    assert list(summary["successes"]) == [r["successes"] for r in R.load(store, eid).summary]

    pytest.importorskip("pyarrow")
    parquet = pd.read_parquet(io.BytesIO(z.read("runs.parquet")))
    pd.testing.assert_series_equal(parquet["wall_seconds"], want["wall_seconds"].reset_index(drop=True),
                                   check_exact=True, check_names=False)
    pm = pd.read_parquet(io.BytesIO(z.read("metrics.parquet")))
    pd.testing.assert_series_equal(pm["value"], want_m["value"], check_exact=True, check_names=False)


def test_time_to_solution_in_the_summary_the_html_and_the_zip(fx, capsys):
    store, eid = fx["store"], fx["id"]
    data = R.load(store, eid)
    keys = ("median_solve_step", "median_solve_lo", "median_solve_hi", "logrank_p", "paired_seeds", "solved_first",
            "baseline_first", "paired_p")
    for row in data.summary:                                        # what compare --json prints
        assert set(keys) <= set(row)
        assert (row["paired_seeds"] == 2) == (row["schedule"] == "pre")   # both seeds pair with 'none'
    from floss_core.cli.comparison import print_summary
    print_summary(data.summary, as_json=True)
    out = json.loads(capsys.readouterr().out)                    # strict JSON: not reached (inf) is null
    pre = out["schedules"]["pre@6"]
    assert set(keys) <= set(pre) and all(not isinstance(v, float) or math.isfinite(v) for v in pre.values())
    # the HTML's time-to-solution table shows the summary's figures
    cells = parse(fx["html"]).cells
    from floss_core import views
    shown = views.survival_display(pd.DataFrame(data.summary))
    for r in shown.to_dict("records"):
        assert cells[(r["delay"], r["schedule"], "km_median")] == r["median step to solution (95% CI)"]
        assert cells[(r["delay"], r["schedule"], "logrank_p")] == r["log-rank p vs none"]
    assert "<h2>Time to solution</h2>" in fx["html"] and "censored" in fx["html"]
    # the zip: the curves, one row per (delay, schedule, step), starting at 0 solved
    z = zipfile.ZipFile(io.BytesIO(R.data_zip(store, eid)))
    curves = pd.read_csv(z.open("survival.csv"))
    assert {"delay", "schedule", "step", "solved", "lo", "hi", "at_risk", "events", "censored"} <= set(curves)
    assert set(zip(curves["delay"], curves["schedule"])) == {(4, "none"), (4, "pre"), (6, "none"), (6, "pre")}
    for (d, s), g in curves.groupby(["delay", "schedule"]):
        n = len(store.runs(eid, delay=int(d), schedule=s))
        assert g["events"].sum() + g["censored"].sum() == n     # every seed ends solved or censored
        assert g["solved"].is_monotonic_increasing and g["solved"].iloc[-1] == pytest.approx(
            1 - math.prod(1 - e / a for e, a in zip(g["events"], g["at_risk"]) if a))


def test_the_report_shows_what_flossing_controls(fx):
    from floss_core.report.figures import figures

    shown = figures(R.load(fx["store"], fx["id"]))
    captions, titles = [c for c, _ in shown], [f.layout.title.text for _, f in shown]
    assert len(shown) == N_FIGURES
    assert any(t.startswith("κ₂ of the top-4 subspace") for t in titles)
    assert any(t.startswith("Gradient norm vs steps back") for t in titles)
    assert any(t.startswith("Condition number κ₂ vs horizon") for t in titles)  # the full κ₂ stays, after them
    assert [t.split(" ")[0] for t in titles].index("κ₂") < [t.split(" ")[0] for t in titles].index("Condition")
    assert any("unflossed bottom exponents" in c for c in captions)
    assert any(t.startswith("Seeds solved vs training step") for t in titles)
    # issue 16 (item 7): the accuracy chart draws the success threshold (the fixture's success_acc 0.55)
    acc = next(f for _, f in shown if f.layout.title.text.startswith("test acc during training"))
    assert [sh.y0 for sh in acc.layout.shapes if sh.line.dash == "dash"] == [0.55]


# ------------------------------------------------------------------------------------ reproduce
def _parse_back(cmd: str) -> dict:
    """Run the command line through floss_core.__main__'s own parser and spec_from_args."""
    from floss_core.cli import COMMANDS, _Parser, spec_from_args

    argv = shlex.split(cmd)
    assert argv[:4] == ["python", "-m", "floss_core", "compare"]
    parser = _Parser(prog="floss_core")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add, _ in COMMANDS.values():
        add(sub)
    return spec_to_dict(spec_from_args(parser.parse_args(argv[3:])))


@pytest.mark.parametrize("options", [
    dict(hidden=8, steps=30, seeds=2, delays=[4, 6], schedules=["none", "pre"], k=4, pre_steps=5, success_acc=0.55,
         name="tiny sweep"),
    dict(),
    dict(task="parity", order=2, arch="gru", hidden=16, gain=1.5, seeds=5, delays=[12], seq_len=50,
         schedules=["none", "pre+inter", "adaptive", "joint"], inter_at=[10, 30], every=100, threshold=0.2, k=8,
         weight=0.5, qr_every=2, inter_steps=7, name="it's \"quoted\"; rm -rf / $HOME", device="cpu"),
    dict(task="xor", channels=3, arch="lstm", hidden=6, k=3, schedules=["inter"], seeds=1, delays=[4, 6, 10]),
])
@pytest.mark.parametrize("preset", ["quick", "paper"])
def test_reproduce_command_parses_back_to_the_stored_spec(preset, options):
    spec = spec_to_dict(make_spec(preset, **options))
    cmd, missing = R.reproduce_command(spec)
    assert missing == []
    assert _parse_back(cmd) == spec
    for flag in ("--preset", "--task", "--delay", "--seeds", "--schedules"):
        assert flag in cmd


def test_reproduce_says_in_one_sentence_what_the_cli_cannot_set(fx):
    # issue 16: every option has a flag now (lr, a seed list: once unreproducible, now on the command); a field
    # no option sets (a stored spec from a preset since changed, say) is named with both values, in one sentence
    assert R.reproduce_command(spec_to_dict(make_spec("quick", lr=0.01, seeds=[3, 7])))[1] == []
    spec = spec_to_dict(make_spec("quick"))
    spec["floss"]["stop_len"] = 77
    r = R.reproduce(spec)
    assert r.missing == ["floss.stop_len"]
    assert r.note == ("The command line cannot set floss.stop_len (77 here, 200 from the command), so this command "
                      "reruns a close variant; to rerun the experiment exactly, queue its configuration below.")
    assert "does not parse" not in r.note and "(the report" not in r.note
    h = fx["html"]
    assert "Checked: this command parses back to exactly the configuration below." in h
    assert "the command does not parse" not in h


def _html_command(h: str) -> str:
    """The text of the page's first command block, as a browser's copy gives it."""
    shown = re.search(r"<pre class='command[^']*' style='font-size: [0-9.]+px'>(.*?)</pre>", h, re.S).group(1)
    return html.unescape(shown)


def _run_in_bash(command: str) -> list[str]:
    """The arguments bash passes to ``python`` when it runs ``command`` (python is a shell function here that
    prints them, so nothing is trained)."""
    out = subprocess.run(["bash", "-c", "python() { printf '%s\\0' \"$@\"; }\n" + command], capture_output=True,
                         timeout=30, check=True).stdout.decode()
    return out.split("\0")[:-1]


NASTY = dict(hidden=8, steps=30, seeds=[3, 7], delays=[4, 6], schedules=["none", "pre", "adaptive"], k=4,
             eval_every=10, every=10, adaptive_k=4, pre_steps=5, bias=False, lr=0.01, floss_design="reference",
             through_states=False, name="it's \"quoted\"; rm -rf / $HOME `ls` \\ done")


def test_the_command_copied_from_the_html_runs_and_parses_back(fx):
    from floss_core.report.html import command_block

    for spec in (spec_to_dict(fx["spec"]), spec_to_dict(make_spec("quick", **NASTY))):
        r = R.reproduce(spec)
        h = fx["html"] if spec == spec_to_dict(fx["spec"]) else command_block(r.lines)
        copied = _html_command(h)
        lines = copied.split("\n")
        assert lines == r.lines and lines[0] == "python -m floss_core compare \\"
        assert all(line.endswith(" \\") for line in lines[:-1]) and not lines[-1].endswith("\\")
        assert all(line.startswith("  --") for line in lines[1:])             # one option per line
        argv = _run_in_bash(copied)
        assert argv[:3] == ["-m", "floss_core", "compare"]
        assert _parse_back("python " + shlex.join(argv)) == spec
        assert shlex.split(r.command)[4:] == argv[3:]                         # the one-line form: the same


def test_the_command_font_fits_its_longest_line():
    from floss_core.report.html import COMMAND_WIDTH_PX, MONO_ADVANCE, command_block, command_font_px

    short = R.reproduce(spec_to_dict(make_spec("quick"))).lines
    assert command_font_px(short) == 12
    long = R.reproduce(spec_to_dict(make_spec("quick", name="a very long experiment name " * 4))).lines
    px = command_font_px(long)
    assert 5 <= px < 12 and px * MONO_ADVANCE * max(map(len, long)) <= COMMAND_WIDTH_PX
    assert "white-space" not in command_block(long) and "class='command'" in command_block(long)
    huge = R.reproduce(spec_to_dict(make_spec("quick", name="x" * 400))).lines
    assert "class='command wrap'" in command_block(huge)     # only a line too long at 5 px wraps


@pytest.mark.slow
@needs_chromium
def test_pdf_prints_every_option_of_the_command_unbroken(tmp_path):
    # issue 16: the PDF broke commands mid-word ("fro m"); each option is now a line of its own, never wrapped
    from floss_core.report.html import _CSS, command_block

    r = R.reproduce(spec_to_dict(make_spec("quick", **{**NASTY, "name": "a long name, " * 6})))
    page = f"<html><head><style>{_CSS}</style></head><body><main>{command_block(r.lines)}</main></body></html>"
    pdf = tmp_path / "c.pdf"
    pdf.write_bytes(R.html_to_pdf(page))
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    printed = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    assert printed == [" ".join(line.split()) for line in r.lines], printed


# ------------------------------------------------------------------------------------ verdict
def row(d, s, wins, n, *, conv=math.nan, wall=10.0, share=math.nan, cost=math.nan, diag=math.nan,
        diag_share=math.nan):
    lo, hi = wilson_interval(wins, n)
    return {"delay": d, "schedule": s, "n": n, "successes": wins, "success_rate": wins / n, "success_lo": lo,
            "success_hi": hi, "median_convergence": conv, "iqr_convergence": math.nan, "diverged": 0,
            "wall_seconds": wall, "floss_share": share, "floss_cost_vs_training": cost, "diag_s_per_run": diag,
            "diag_share": diag_share}


def test_fisher_exact_known_values():
    assert R.fisher_exact(3, 4, 1, 4) == pytest.approx(0.4857142857, abs=1e-9)   # Fisher's tea tasting
    assert R.fisher_exact(9, 9, 0, 9) == pytest.approx(2 / math.comb(18, 9))
    assert R.fisher_exact(8, 9, 2, 9) == pytest.approx(0.01522, abs=1e-5)
    assert R.fisher_exact(1, 2, 1, 2) == 1.0
    assert R.seeds_needed() == 4 and R.min_attainable_p(3, 3) == pytest.approx(0.1)


def test_verdict_claims_a_difference_only_when_the_numbers_support_it():
    strong = R.verdict([row(40, "none", 2, 9, conv=1820, wall=90, cost=0.0, diag=4.0, diag_share=0.4),
                        row(40, "pre", 8, 9, conv=310, wall=126, share=0.3, cost=1.1, diag=4.0, diag_share=36 / 126)])
    assert strong[0].startswith("Pre-flossing solved more seeds than no flossing at delay 40 (8/9 vs 2/9, p = 0.015")
    # issue 15: the cost is flossing against task training, and the lab's diagnostics (36 + 36 of 216 s) apart
    assert "median convergence step 310 vs 1820" in strong[1] and "flossing +110 % training compute, i.e. 2.1×" in strong[1]
    assert "wall time per run" not in strong[1]
    assert strong[0].endswith("At delay 40, flossing cost (against task training) pre-flossing +110 % training compute, "
                              "i.e. 2.1×; the lab's diagnostics took 4 s per network (33 % of the wall time), "
                              "measurement overhead, not a cost of the schedule.")

    small = R.verdict([row(4, "none", 0, 2), row(4, "pre", 2, 2)])
    assert small[0].startswith("No flossing schedule differed") and "at least 4 seeds" in small[0]
    assert "No evidence of a difference" in small[1] and "no outcome could reach p < 0.05" in small[1]

    middling = R.verdict([row(20, "none", 4, 9), row(20, "pre", 6, 9)])
    assert "No evidence of a difference" in middling[1] and "at least" not in middling[0]

    many = R.verdict([row(d, s, 3, 9) for d in (10, 20) for s in ("none", "pre", "inter")])
    assert "4 comparisons; p-values are not corrected" in many[0] and len(many) == 5

    for text in (strong, small, middling, many):
        joined = " ".join(text).lower()
        assert "faster" not in joined and "better" not in joined and "significant" not in joined

    assert "no 'none'" in R.verdict([row(4, "pre", 1, 2)])[0]
    assert R.verdict([]) == ["No finished runs yet, so there is nothing to conclude."]


def test_verdict_of_runs_from_before_the_cost_split_says_not_recorded():
    # an old store: no evaluation / diagnostics seconds (NaN), and a row with no training seconds either
    old = R.verdict([row(20, "none", 1, 3, cost=0.0), row(20, "pre", 2, 3, cost=math.nan)])
    assert "the lab's diagnostics were not recorded apart for these runs" in old[0]
    assert "pre-flossing not recorded" in old[0]
    assert "its flossing's cost against task training not recorded" in old[1]


# ------------------------------------------------------------------------------------ file names
@pytest.mark.parametrize("title", ["../../etc/passwd", "..\\x", "/abs/path", ".hidden", "a/../../b", "..", "",
                                   "-rf", "con:\x00nul", "ünïcødé name"])
def test_file_names_cannot_escape_the_output_folder(title):
    name = R.report_filename(title, 3, "html")
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*-3\.html", name), name
    assert ".." not in name and "/" not in name and "\\" not in name
    assert R.safe_name("../../etc/passwd") == "etc_passwd"
    assert R.safe_name("..\\x") == "x"


def test_a_malicious_title_is_written_inside_the_chosen_folder(fx, tmp_path):
    store = fx["store"]
    spec = make_spec("quick", hidden=8, steps=30, seeds=2, delays=[4, 6], schedules=["none", "pre"], k=4,
                     pre_steps=5, success_acc=0.55, name="../../etc/passwd")
    eid = store.add_experiment(spec_to_dict(spec), name=spec.name, status="done")
    store.save_runs(eid, fx["records"])
    out = tmp_path / "reports"
    out.mkdir()
    path = R.write_report(store, eid, "zip", out)
    assert path.parent == out and path.name == f"etc_passwd-{eid}.zip" and path.exists()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [path.name]
    h = R.render_html(store, eid)
    assert "<h1>../../etc/passwd</h1>" in h  # shown as text, escaped where needed
    store.delete_experiment(eid)


# ------------------------------------------------------------------------------------ sets and errors
def test_a_set_of_experiments_pools_like_one(fx):
    store, spec = fx["store"], fx["spec"]
    ids = []
    for d in (4, 6):
        part = make_spec("quick", hidden=8, steps=30, seeds=2, delays=[d], schedules=["none", "pre"], k=4,
                         pre_steps=5, success_acc=0.55, name=f"d{d}")
        i = store.add_experiment(spec_to_dict(part), name=part.name, status="done")
        store.save_runs(i, [r for r in fx["records"] if r["config"]["task"]["delay"] == d])
        ids.append(i)
    try:
        one, pooled = R.load(store, fx["id"]).summary, R.load(store, ids).summary
        assert one == pooled
        with pytest.raises(ValueError, match="appears in more than one"):
            R.load(store, [fx["id"], ids[0]])
        other = store.add_experiment(spec_to_dict(make_spec(
            "quick", hidden=12, steps=30, seeds=2, delays=[4], schedules=["none", "pre"], k=4, pre_steps=5,
            success_acc=0.55)), name="other")
        # issue 16: a set whose settings differ is no longer refused; it is shown side by side (test_sets_*)
        apart = R.load(store, [ids[0], other])
        assert not apart.pooled and [p.ids for p in apart.parts] == [[ids[0]], [other]]
        assert R.load(store, ids).pooled and [p.ids for p in R.load(store, ids).parts] == [ids]
        store.delete_experiment(other)
    finally:
        for i in ids:
            store.delete_experiment(i)


def test_bad_input_is_one_clear_error(fx):
    store = fx["store"]
    with pytest.raises(ValueError, match="no experiment 999"):
        R.load(store, 999)
    with pytest.raises(ValueError, match="unknown format 'doc'"):
        R.export(store, fx["id"], "doc")
    bad = store.add_experiment({"not": "a spec"}, name="junk")
    with pytest.raises(ValueError, match="not a comparison spec"):
        R.load(store, bad)
    store.delete_experiment(bad)
    queued = store.add_experiment(spec_to_dict(spec := make_spec("quick")), name=spec.name)
    h = R.render_html(store, queued)  # nothing finished yet: still a valid page, no charts
    assert "No finished runs yet" in h and 'class="plotly-graph-div"' not in h
    store.delete_experiment(queued)


# ------------------------------------------------------------------------------------ sets that differ (issue 16)
@pytest.fixture(scope="module")
def fx_set(fx, tmp_path_factory):
    """A store holding the fixture's experiment (#1, 8 hidden units), a real one that differs from it in hidden
    units (#2, 6 units), and #2's runs split by delay into two poolable experiments (#3 d=4, #4 d=6)."""
    path = tmp_path_factory.mktemp("set") / "floss.db"
    store = Store(path)
    a = store.add_experiment(spec_to_dict(fx["spec"]), name=fx["spec"].name, status="done")
    store.save_runs(a, fx["records"])
    options = dict(hidden=6, steps=30, seeds=2, schedules=["none", "pre"], k=4, pre_steps=5, success_acc=0.55)
    other = make_spec("quick", delays=[4, 6], name="six units", **options)
    records = run_comparison(other)
    b = store.add_experiment(spec_to_dict(other), name=other.name, status="done")
    store.save_runs(b, records)
    halves = []
    for d in (4, 6):
        half = make_spec("quick", delays=[d], name=f"six units d{d}", **options)
        i = store.add_experiment(spec_to_dict(half), name=half.name, status="done")
        store.save_runs(i, [r for r in records if r["config"]["task"]["delay"] == d])
        halves.append(i)
    yield {"store": store, "path": path, "a": a, "b": b, "halves": halves}
    store.close()


def test_a_set_that_differs_is_shown_side_by_side_labelled_by_what_differs(fx_set):
    store, a, b = fx_set["store"], fx_set["a"], fx_set["b"]
    data = R.load(store, [a, b])
    assert not data.pooled and [p.ids for p in data.parts] == [[a], [b]]
    labels = [p.label for p in data.parts]
    assert labels == [f"#{a} hidden=8", f"#{b} hidden=6"] and data.differing == ["model.hidden"]
    assert data.settings.to_dict("list") == {"setting": ["model.hidden"], f"#{a}": ["8"], f"#{b}": ["6"]}
    # each part's statistics come from its own runs only: exactly the report of that experiment alone
    for p, eid in zip(data.parts, (a, b)):
        assert p.summary == R.load(store, eid).summary
    assert [r["set"] for r in data.summary] == [labels[0]] * 4 + [labels[1]] * 4

    h = R.render_html(store, [a, b])
    assert "<h2>What differs</h2>" in h and "<td>model.hidden</td><td>8</td><td>6</td>" in h
    intro = R.set_intro([(p.label, p.ids) for p in data.parts], data.differing)
    assert intro.startswith("These 2 experiments differ in model.hidden, so their runs are not pooled")
    assert html.escape(intro) in h
    for p in data.parts:                      # a verdict per experiment, under its label
        assert f"<h3>{html.escape(p.label)}</h3>" in h
        for sentence in R.verdict(p.summary):
            assert html.escape(sentence) in h
    cells = parse(h).cells
    for label, eid in zip(labels, (a, b)):   # the tables: both experiments' rows, labelled, their own numbers
        for (d, sched), e in expected_rows(store, eid).items():
            assert cells[(label, d, sched, "set")].startswith(label)       # shown in the row's first cell
            assert cells[(label, d, sched, "successes")] == f"{e['successes']}/{e['n']}"
            assert cells[(label, d, sched, "final_acc")] == f"{e['acc']:.3f}"
            assert (label, d, sched, "km_median") in cells
    # the charts: the same eight, every series named by its experiment's label
    from floss_core.report.figures import figures
    shown = figures(data)
    assert len(shown) == N_FIGURES and h.count('class="plotly-graph-div"') == N_FIGURES
    for _, fig in shown:
        names = {t.name for t in fig.data if t.showlegend is not False}
        assert all(n.startswith((labels[0] + " · ", labels[1] + " · ")) for n in names), names
        assert {n.split(" · ")[0] for n in names} == set(labels), names
    # the zip keeps them apart too
    z = zipfile.ZipFile(io.BytesIO(R.data_zip(store, [a, b])))
    assert set(pd.read_csv(z.open("summary.csv"))["set"]) == set(labels)
    assert set(pd.read_csv(z.open("survival.csv"))["set"]) == set(labels)
    assert {f"spec-{a}.json", f"spec-{b}.json"} <= set(z.namelist())


def test_a_set_pools_only_the_experiments_whose_settings_match(fx_set):
    store, a, b, halves = fx_set["store"], fx_set["a"], fx_set["b"], fx_set["halves"]
    pair = R.load(store, halves)                       # poolable: as before issue 16, one statistic
    assert pair.pooled and pair.summary == R.load(store, b).summary and pair.settings is None
    assert "What differs" not in R.render_html(store, halves)
    data = R.load(store, [a, *halves])                 # #1 apart; #3 and #4 pooled beside it
    assert [p.ids for p in data.parts] == [[a], halves]
    assert [p.label for p in data.parts] == [f"#{a} hidden=8", f"#{halves[0]}+#{halves[1]} hidden=6"]
    assert data.parts[1].summary == R.load(store, b).summary
    assert "pooled, their settings match" in R.set_intro([(p.label, p.ids) for p in data.parts], data.differing)
    with pytest.raises(ValueError, match="appears in more than one"):   # pooling never counts a run twice
        R.load(store, [b, halves[0]])


def test_the_cli_reports_a_set_that_differs(fx_set, tmp_path, capsys):
    a, b = fx_set["a"], fx_set["b"]
    code, out, err = _main(capsys, str(a), str(b), "--store", str(fx_set["path"]), "--out", str(tmp_path))
    assert code == 0, err
    h = Path(out.strip()).read_text(encoding="utf-8")
    assert f"#{a} hidden=8" in h and f"#{b} hidden=6" in h and "What differs" in h


def test_the_report_page_lets_the_user_pick_a_set_that_differs(fx_set, monkeypatch):
    from streamlit.testing.v1 import AppTest

    sys.path.insert(0, str(ROOT))   # the pages import dashboard.py from the repository root
    monkeypatch.setenv("FLOSS_STORE", str(fx_set["path"]))
    monkeypatch.setenv("FLOSS_NO_WORKER", "1")
    a, b = fx_set["a"], fx_set["b"]
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params["experiment"] = str(a)
    at.run()
    at.switch_page("pages/7_Report.py").run()
    assert not at.exception and not at.error
    at.multiselect[0].set_value([b]).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "What differs" in [h.value for h in at.subheader]
    text = " ".join(m.value for m in at.markdown)
    assert f"#{a} hidden=8" in text and f"#{b} hidden=6" in text
    assert len(at.code) == 2 and all("python -m floss_core compare" in c.value for c in at.code)
    assert at.get("download_button")


@pytest.mark.slow
@needs_chromium
def test_the_pdf_of_a_set_that_differs(fx_set, tmp_path):
    a, b = fx_set["a"], fx_set["b"]
    path = R.write_report(fx_set["store"], [a, b], "pdf", tmp_path / "set.pdf")
    text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout
    assert "What differs" in text and f"#{a} hidden=8" in text and f"#{b} hidden=6" in text
    assert_no_mostly_blank_page(path)


# ------------------------------------------------------------------------------------ CLI
def _cli(*args, env=None):
    """The CLI in a fresh interpreter (slow to start: torch), as a user runs it."""
    return subprocess.run([sys.executable, "-m", "floss_core", "report", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, timeout=300)


def _main(capsys, *args) -> tuple[int, str, str]:
    """The CLI's main() in this process (the PDF fixture runs it in a fresh interpreter)."""
    from floss_core.cli import main

    try:
        main(["report", *args])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_writes_each_format(fx, tmp_path, capsys):
    code, out, err = _main(capsys, str(fx["id"]), "--store", str(fx["path"]), "--format", "zip", "--out", str(tmp_path))
    assert code == 0, err
    path = Path(out.strip())
    assert path == tmp_path / f"tiny_sweep-{fx['id']}.zip" and zipfile.is_zipfile(path)
    code, out, err = _main(capsys, str(fx["id"]), "--store", str(fx["path"]), "--out", str(tmp_path / "x.html"))
    assert code == 0, err
    assert (tmp_path / "x.html").read_text(encoding="utf-8").count('class="plotly-graph-div"') == N_FIGURES


@pytest.mark.parametrize("args, message", [
    (["999"], "no experiment 999"),
    (["x"], "expected an integer"),
    (["1", "--format", "doc"], "invalid choice"),
    (["1", "--out", "/nonexistent/dir/r.html"], "cannot write"),
])
def test_cli_bad_input_is_one_line_and_exit_2(fx, capsys, args, message):
    code, out, err = _main(capsys, *args, "--store", str(fx["path"]))
    assert code == 2 and message in err and err.count("\n") == 1 and out == "", err


def test_cli_missing_store_and_missing_chromium(fx, tmp_path, capsys, monkeypatch):
    code, _, err = _main(capsys, "1", "--store", str(tmp_path / "none.db"))
    assert code == 2 and "no store" in err and err.count("\n") == 1
    assert not (tmp_path / "none.db").exists()
    monkeypatch.setenv("FLOSS_CHROMIUM", "/nonexistent/chromium")
    code, _, err = _main(capsys, str(fx["id"]), "--store", str(fx["path"]), "--format", "pdf", "--out", str(tmp_path))
    assert code == 2 and "apt-get install chromium" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
