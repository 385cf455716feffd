"""End to end in a real browser: `streamlit run app.py`, launch a tiny comparison from the Launch page,
let the background worker the page starts run it, and check the charts the user then sees.

Debian's Chromium (/usr/bin/chromium) driven by the playwright package (no browser download). Screenshots
of every page land in test-artifacts/ for a person to look at.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from floss_core.store import Store

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import dashboard  # noqa: E402  (the page list)

pytestmark = pytest.mark.slow   # end to end through real processes (pytest.ini)
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
# what a page shows last, to wait for before its screenshot: (plotly charts, text); other pages: nothing
WAIT = {"Lyapunov spectra": (3, None), "Conditioning": (3, None), "Outcomes": (2, None), "ROI": (2, None),
        "Report": (0, "Download HTML")}

if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed "
                                                            "(pip install playwright; no browser download needed)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout} s")


@pytest.fixture
def server(tmp_path):
    """A dashboard on a free loopback port over an empty temporary store; stopped with its workers."""
    ARTIFACTS.mkdir(exist_ok=True)
    store = tmp_path / "floss.db"
    port = free_port()
    env = {**os.environ, "FLOSS_STORE": str(store), "OMP_NUM_THREADS": "1"}
    env.pop("FLOSS_NO_WORKER", None)  # the page starts the real background worker
    log = open(ARTIFACTS / "streamlit.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url, store
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        if store.exists():  # the worker the Launch page started for this store, and only that one
            with Store(store) as s:
                pids = {int(w["pid"]) for w in s.alive_workers(max_age_s=3600)}
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass


def settle(page, charts: int = 0, text: str | None = None, timeout_ms: int = 60_000):
    """Wait until the script run is over, ``charts`` plotly charts are drawn and ``text`` is shown; no
    exception on the page."""
    page.wait_for_selector('[data-test-script-state="notRunning"]', timeout=timeout_ms)
    if charts:
        page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= {charts}",
                               timeout=timeout_ms)
    if text:
        page.get_by_text(text, exact=True).first.wait_for(timeout=timeout_ms)
    page.wait_for_timeout(700)
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator(
        '[data-testid="stException"]').first.inner_text()


def shot(page, name: str) -> None:
    """A screenshot of the whole page (the viewport grows to the app's height: it scrolls inside)."""
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": 1400, "height": min(max(height + 50, 900), 5000)})
    page.wait_for_timeout(800)  # plotly re-lays out to the new size
    page.screenshot(path=ARTIFACTS / f"{name}.png")
    page.set_viewport_size({"width": 1400, "height": 900})


def test_launch_watch_and_inspect_a_tiny_comparison(server):
    url, store = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        try:
            page.goto(url)
            settle(page, text="Run the demo comparison")
            shot(page, "0_home_empty")

            page.goto(f"{url}/launch?size=tiny")
            settle(page, text="Launch")
            page.get_by_text("Trainability forecast", exact=False).wait_for(timeout=60_000)
            shot(page, "1_launch")
            page.get_by_role("button", name="Launch", exact=True).click()
            page.get_by_text("Queued experiment #1.").wait_for(timeout=60_000)

            page.goto(f"{url}/runs?experiment=1")
            settle(page, text="Only experiment #1")
            shot(page, "2_runs_live")  # queued or running, with its progress bar (unless it was very quick)
            page.get_by_text(re.compile(r"Experiment #1 .*: done, 8 of 8 runs finished")).wait_for(timeout=150_000)
            settle(page, text="Only experiment #1")
            shot(page, "2_runs")

            page.goto(f"{url}/lyapunov_spectra?experiment=1")
            settle(page, charts=3)
            legend = page.eval_on_selector_all(".js-plotly-plot .legendtext", "els => els.map(e => e.textContent)")
            for trace in ("none · initial", "none · end of training", "pre · initial", "pre · after flossing",
                          "pre · end of training"):
                assert trace in legend, legend
            assert page.locator(".js-plotly-plot .scatterlayer .trace").count() >= 10
            shot(page, "3_spectra")

            for i, (title, path) in enumerate(dashboard.PAGES.items(), start=1):
                if title in ("Launch", "Runs", "Lyapunov spectra"):
                    continue  # shot above
                page.goto(f"{url}/{dashboard.url_path(path)}?experiment=1")
                settle(page, *WAIT.get(title, (0, None)))
                shot(page, f"{i}_{dashboard.url_path(path)}")
                if title == "Report":  # the deferred download runs report.export when clicked
                    with page.expect_download(timeout=120_000) as download:
                        page.get_by_role("button", name="Download HTML").click()
                    html = Path(download.value.path()).read_text(encoding="utf-8")
                    assert download.value.suggested_filename.endswith("-1.html") and "xor tiny" in html
            page.goto(f"{url}/?experiment=1")
            settle(page, charts=1, text="Report")
            shot(page, "0_home")
        finally:
            browser.close()
    with Store(store) as s:
        runs = s.runs(1)
    assert len(runs) == 8 and set(runs["status"]) == {"done"}


def test_your_model_upload_and_floss_in_the_background(server, tmp_path):
    # the "Your model" page flosses in a separate process and polls it; in a real server that process is
    # started from Streamlit's script thread and the polling is a timed fragment, which AppTest does not run
    import torch
    torch.manual_seed(0)
    ckpt = tmp_path / "my_lstm.pt"
    torch.save(torch.nn.LSTM(1, 32).state_dict(), ckpt)     # the page's defaults: lstm, hidden 32, input 1
    url, _ = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        try:
            page.goto(url)
            settle(page, text="Run the demo comparison")
            page.goto(f"{url}/{dashboard.url_path(dashboard.PAGES['Your model'])}")
            settle(page, text="Upload a checkpoint to begin. Any torch.nn.RNN, GRU, LSTM (any number of layers, "
                              "batch_first either way, bias on or off) or their Cell variants; not bidirectional, "
                              "no proj_size.")
            page.locator('input[type="file"]').set_input_files(str(ckpt))
            settle(page, charts=3, timeout_ms=120_000)
            steps = page.get_by_label("Flossing steps")
            steps.fill("5")
            steps.press("Enter")
            settle(page, charts=3)
            page.get_by_role("button", name="Floss", exact=True).click()
            # the page polls the flossing process and shows its progress, then the result (the intro text
            # also says "download the flossed weights": wait for the button itself)
            page.get_by_text(re.compile(r"Flossing\.\.\. step \d+ of 5")).wait_for(timeout=60_000)
            page.get_by_role("button", name="Download the flossed weights").wait_for(timeout=120_000)
            settle(page, text="before")
            assert page.locator('[data-testid="stProgress"]').count() == 0
            shot(page, "8_your_model_flossed")
            with page.expect_download(timeout=60_000) as download:
                page.get_by_role("button", name="Download the flossed weights").click()
            flossed = torch.load(download.value.path(), weights_only=True)
            assert set(flossed) == set(torch.nn.LSTM(1, 32).state_dict())
            assert not torch.equal(flossed["weight_hh_l0"], torch.load(ckpt, weights_only=True)["weight_hh_l0"])
        finally:
            browser.close()


def test_fresh_server_answers_a_deep_link_then_the_demo_concludes(server):
    """Items 1 and 3 of issue 16 as a new user meets them: a deep link as the fresh server's very first request,
    the sidebar's addresses, then the one-click demo through the real worker to its one-sentence answer."""
    url, store = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        try:
            page.goto(f"{url}/outcomes?experiment=1")          # nothing has been requested from this server yet
            settle(page, text="Outcomes")
            body = page.locator("body").inner_text()
            assert "Page not found" not in body and "No finished runs yet" in body, body[:500]
            nav = page.eval_on_selector_all('[data-testid="stSidebarNav"] a', "els => els.map(e => e.href)")
            assert sorted(h.removeprefix(url) for h in nav) == sorted(
                ["/"] + [f"/{dashboard.url_path(path)}" for path in dashboard.PAGES.values()]), nav
            for path in dashboard.PAGES.values():               # every address is its page, lowercase
                page.goto(f"{url}/{dashboard.url_path(path)}")
                settle(page)
                assert "Page not found" not in page.locator("body").inner_text(), path

            page.goto(url)
            settle(page, text="Run the demo comparison")
            started = time.monotonic()
            page.get_by_role("button", name="Run the demo comparison").click()
            page.wait_for_function("() => location.pathname === '/runs' && location.search.includes('experiment=1')",
                                   timeout=60_000)     # st.switch_page: the Runs page of the new experiment
            with Store(store) as s:
                while s.experiment(1)["status"] not in ("done", "failed", "cancelled"):
                    assert time.monotonic() - started < 400, "the demo did not finish"
                    time.sleep(1)
                assert s.experiment(1)["status"] == "done"
            seconds = time.monotonic() - started
            (ARTIFACTS / "demo_seconds.txt").write_text(f"{seconds:.1f}\n")  # measured, not asserted (bench/)

            page.goto(f"{url}/?experiment=1")
            settle(page, charts=1, text="Report")
            answer = page.locator('[data-testid="stAlert"]', has_text="What it shows.").first.inner_text()
            # 16 seeds each; pre-flossing solved 18 of 27 seeds here against 0 of 27 without: the sentence must
            # call the difference evidence (Fisher p < 0.05), with n and the interval beside each rate
            assert re.search(r"pre-flossing solved \d+ of 16 seeds \(\d+%, 95% interval \d+%–\d+%\), against \d+ "
                             r"of 16 seeds", answer), answer
            assert "unlikely to be chance" in answer, answer
            assert page.get_by_text(re.compile(r"^\d+ of 16 solved; 95% interval \d+%–\d+%$")).count() == 2
            shot(page, "demo_0_home")
            for i, (title, path) in enumerate(dashboard.PAGES.items(), start=1):
                page.goto(f"{url}/{dashboard.url_path(path)}?experiment=1")
                settle(page, *WAIT.get(title, (0, None)))
                shot(page, f"demo_{i}_{dashboard.url_path(path)}")
        finally:
            browser.close()
