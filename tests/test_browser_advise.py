"""The adviser in a real browser (issue 19): `streamlit run app.py` over an empty store; Debian's Chromium opens the
Advise page at the tiny size, queues a search of three schedules, and the background worker the page starts runs it
while the page polls; the page then shows the verdict (the stored statement), the front chart and the trials, and
offers the report. A screenshot lands in test-artifacts/advise.png for a person to look at."""
import pytest

from floss_core.store import Store
from test_browser import ARGS, CHROMIUM, server, settle, shot, sync_api  # noqa: F401  (server: the fixture)

pytestmark = pytest.mark.slow


def test_queue_a_search_and_read_its_verdict_in_chromium(server):
    url, store = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{url}/advise?size=tiny")
            settle(page)
            page.get_by_role("button", name="Queue the search").click()
            page.get_by_text("Queued search #1", exact=False).first.wait_for(timeout=60_000)
            # the worker runs no flossing and three schedules at tiny sizes; the page polls until it is done
            page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 1",
                                   timeout=240_000)
            with Store(store) as s:
                for _ in range(480):
                    row = s.advice(1)
                    if row["status"] not in ("queued", "running"):
                        break
                    page.wait_for_timeout(500)
                trials = s.advice_trials(1)
            assert row["status"] == "done", row
            assert len(trials) == 4 and trials[0]["label"] == "no flossing"
            statement = row["result"]["statement"]
            page.get_by_text(statement[:60], exact=False).first.wait_for(timeout=60_000)
            settle(page, charts=1, timeout_ms=120_000)
            page.get_by_text("HTML", exact=False).first.wait_for()
            shot(page, "advise")
        finally:
            browser.close()
