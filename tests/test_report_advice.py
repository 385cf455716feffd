"""The adviser's report (floss_core.report.advice): its verdict is the recommendation's statement, its chart the
front, its table every trial; the file name is sanitised. Synthetic trials (no training); the PDF where Debian's
Chromium is installed. A stand-in store (the two reads the report makes) keeps these tests independent of the
store's tables; tests/test_page_advise.py goes through the real store."""
import datetime as dt
import html.parser
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from advice_trials import TARGET, trials  # noqa: E402
from floss_core import advice, report  # noqa: E402
from floss_core.report import advice as RA  # noqa: E402

HAVE_CHROMIUM = os.path.exists("/usr/bin/chromium") or shutil.which("chromium") is not None


class AdviceStore:
    """What the report reads of a store: ``advice(id)`` and ``advice_trials(id)``."""

    def __init__(self, row: dict, trials: list[dict]):
        self.row, self.trials = row, trials

    def advice(self, advice_id: int) -> dict:
        if advice_id != self.row["id"]:
            raise KeyError(f"no advice #{advice_id}")
        return self.row

    def advice_trials(self, advice_id: int) -> list[dict]:
        return self.trials


def done_row(name="xor tiny: least flossing for 75 %", **extra) -> dict:
    ts = trials()
    rec = json.loads(json.dumps(advice.recommend(ts, TARGET), default=str))     # as stored: JSON
    return {"id": 3, "name": name, "status": "done", "result": rec,
            "config": {"size": "tiny", "task": "xor", "delay": 6, "seeds": 8, "trials": 6, "target": TARGET},
            "created_at": dt.datetime(2026, 12, 2, 7, 0, tzinfo=dt.timezone.utc), **extra}


class Cells(html.parser.HTMLParser):
    """The report's trial table as {trial: {data-col: text}} and its verdict paragraph."""

    def __init__(self):
        super().__init__()
        self.rows, self.row, self.col, self.head, self.in_head = {}, None, None, "", False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-trial" in a:
            self.row = self.rows.setdefault(int(a["data-trial"]), {})
        elif tag == "td" and self.row is not None:
            self.col = a.get("data-col")
        elif tag == "p" and a.get("class") == "head":
            self.in_head = True

    def handle_endtag(self, tag):
        if tag == "td":
            self.col = None
        elif tag == "tr":
            self.row = None
        elif tag == "p":
            self.in_head = False

    def handle_data(self, data):
        if self.row is not None and self.col:
            self.row[self.col] = self.row.get(self.col, "") + data
        if self.in_head:
            self.head += data


class Tags(html.parser.HTMLParser):
    @classmethod
    def of(cls, page: str) -> list:
        p = cls()
        p.tags = []
        p.feed(page)
        return p.tags

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_the_report_holds_the_statement_the_chart_and_every_trial():
    row = done_row()
    page = report.advice_report(AdviceStore(row, trials()), 3)
    parsed = Cells()
    parsed.feed(page)
    assert parsed.head == row["result"]["statement"]                  # the verdict: the stored recommendation
    assert parsed.head.startswith("Recommended: pre 50 steps")
    # the front as charts: success against compute, and time to solution against compute
    assert page.count('class="plotly-graph-div"') == 2 and "Pareto front" in page and "Time to solution" in page
    scripts = [a for t, a in Tags.of(page) if t == "script"]                # self-contained: plotly.js inline
    assert scripts and not [a for a in scripts if a.get("src")] and len(page) > 3_000_000
    assert not [t for t, a in Tags.of(page) if t == "link"]
    assert set(parsed.rows) == {t["trial"] for t in trials()}
    assert parsed.rows[1]["role"] == "recommended" and parsed.rows[2]["role"] == "runner-up"
    assert parsed.rows[4]["first_rung_only"] == "yes" and parsed.rows[4].get("on_front", "") == ""
    assert parsed.rows[1]["compute_seconds"] == "1.4 s" and parsed.rows[1]["extra_seconds"] == "+0.4 s (1.40×)"
    assert "Runner-up: pre 100 steps · k 4 · window 20, 7 of 8 seeds" in parsed.head
    assert "75 % success" in page and "6 evaluated, 5 on every seed, 1 stopped after the first rung" in page


def test_a_running_advice_is_reported_so_far_and_a_failed_one_says_why():
    row = done_row(status="running", result=None)
    page = RA.advice_html(row, trials()[:3])
    parsed = Cells()
    parsed.feed(page)
    assert parsed.head.startswith("So far (3 trials, the search is running): ")
    assert parsed.head.endswith(advice.recommend(trials()[:3], TARGET)["statement"])
    failed = RA.advice_html(done_row(status="failed", result=None, error="out of memory"), [])
    assert "The search failed: out of memory" in failed and "No trial evaluated yet." in failed
    assert "No trial finished on every seed" in failed


def test_file_names_cannot_escape_the_output_folder(tmp_path):
    assert RA.advice_filename("../../etc/passwd", 3, "html") == "advice-etc_passwd-3.html"
    assert "/" not in RA.advice_filename("a/b\\c", 3, "pdf")
    with pytest.raises(ValueError, match="unknown format"):
        RA.advice_filename("x", 3, "zip")
    store = AdviceStore(done_row(name="../../../evil"), trials())
    path = report.write_advice_report(store, 3, "html", tmp_path)
    assert path.parent == tmp_path and path.name == "advice-evil-3.html"
    name, blob = report.export_advice(store, 3, "html")
    assert name == path.name and blob == path.read_bytes() and b"Recommended:" in blob


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_CHROMIUM, reason="needs Debian's chromium (apt-get install chromium)")
def test_the_pdf_prints_the_verdict():
    if report.pdf_problem():
        pytest.skip(report.pdf_problem())
    name, blob = report.export_advice(AdviceStore(done_row(), trials()), 3, "pdf")
    assert name.endswith(".pdf") and blob.startswith(b"%PDF")
    if shutil.which("pdftotext"):
        import subprocess

        text = subprocess.run(["pdftotext", "-", "-"], input=blob, capture_output=True, check=True).stdout.decode()
        assert "Recommended: pre 50 steps" in text
