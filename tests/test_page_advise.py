"""The Advise page under AppTest: it renders on an empty store; bad input is an st.error and queues nothing; good
input queues one search (FLOSS_NO_WORKER=1: no worker is started); a store holding a finished search shows its
recommendation (the statement), the chart, every trial and the report's download; a queued one its progress."""
import html
import json
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))                   # the pages import dashboard.py from the repository root
sys.path.insert(0, str(ROOT / "tests"))

from advice_trials import TARGET, trials  # noqa: E402
from floss_core import advice, report  # noqa: E402
from floss_core.store import Store  # noqa: E402

TIMEOUT = 120
PAGE = "pages/9_Advise.py"


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOSS_NO_WORKER", "1")
    path = tmp_path / "store" / "floss.db"
    monkeypatch.setenv("FLOSS_STORE", str(path))
    return path


def advise_page(**query) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params.update({k: str(v) for k, v in query.items()})
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def queued(path) -> list[dict]:
    if not path.exists():
        return []
    with Store(path) as s:
        return [s.advice(int(i)) for i in s.advice_list()["id"]]


def submit(at: AppTest) -> AppTest:
    next(b for b in at.button if b.label == "Queue the search").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def finished(path, name="xor tiny: least flossing") -> int:
    """A finished search with the synthetic trials, written through the store's API as the search writes it."""
    with Store(path) as s:
        config = {"spec": {"task": {"name": "xor", "seq_len": 20}, "delays": [6], "seeds": list(range(8)),
                           "model": {"arch": "rnn", "hidden": 8}, "train": {"steps": 30}, "preset": "quick"},
                  "advise": {"trials": 5, "target": TARGET, "sampler": "tpe", "sampler_seed": 0}}
        advice_id = s.create_advice(config, name)
        ts = trials()
        for t in ts:
            s.save_advice_trial(advice_id, t)
        s.finish_advice(advice_id, "done", advice.recommend(s.advice_trials(advice_id), TARGET))
    return advice_id


def test_the_page_renders_on_an_empty_store(store):
    at = advise_page()
    assert at.title[0].value.startswith("Advise")
    assert "least flossing that buys the success we need" in at.markdown[0].value
    assert not at.error and "No search yet" in at.info[0].value
    assert queued(store) == []


@pytest.mark.parametrize("field, value, message", [
    ("target", 150.0, "'Target success rate (%)' must be above 0 and at most 100, got 150"),
    ("target", 0.0, "'Target success rate (%)' must be above 0 and at most 100, got 0"),
    ("seeds", 0, "'Seeds (networks per schedule tried)' must be at least 1, got 0"),
    ("trials", 0, "'Schedules to try (besides no flossing)' must be at least 1, got 0"),
    ("delay", 500, "delay 500 does not fit: the tiny size's sequences are 20 steps long"),
])
def test_bad_input_is_an_error_and_queues_nothing(store, field, value, message):
    at = advise_page(size="tiny")
    at.number_input(key=f"tiny:a:{field}").set_value(value)
    submit(at)
    assert [e.value for e in at.error] and at.error[0].value.startswith(message), [e.value for e in at.error]
    assert queued(store) == []
    assert not at.success


def test_good_input_queues_one_search(store):
    at = advise_page(size="tiny")
    at.number_input(key="tiny:a:trials").set_value(2)
    at.number_input(key="tiny:a:target").set_value(60.0)
    at.text_input(key="tiny:a:name").set_value("my search")
    submit(at)
    assert not at.error, [e.value for e in at.error]
    (row,) = queued(store)
    assert row["status"] == "queued" and row["name"] == "my search"
    assert row["config"]["advise"]["trials"] == 2 and row["config"]["advise"]["target"] == pytest.approx(0.6)
    assert row["config"]["spec"]["delays"] == [6] and len(row["config"]["spec"]["seeds"]) == 2
    assert any("Queued search #1" in s.value for s in at.success)
    assert at.selectbox(key="advice:pick").value == 1 and at.query_params["advice"] in ("1", ["1"])
    assert any("queued: 0 of 3 trials" in str(p.proto) for p in at.get("progress"))


def test_a_finished_search_shows_its_statement_chart_and_trials(store):
    store.parent.mkdir(parents=True, exist_ok=True)
    advice_id = finished(store)
    at = advise_page(advice=advice_id)
    assert not at.error, [e.value for e in at.error]
    with Store(store) as s:
        statement = s.advice(advice_id)["result"]["statement"]
    assert statement.startswith("Recommended: pre 50 steps")
    assert [m.value for m in at.success] == [f"**Verdict.** {statement}"]
    metrics = {m.label: m.value for m in at.metric}
    assert "Recommended  \n**pre 50 steps · k 4 · window 20**" in [m.value for m in at.markdown]
    assert metrics["Success"] == "75 %" and metrics["Compute per run"] == "1.4 s"
    assert "+0.4 s per run (1.40×) against no flossing" in [c.value for c in at.caption]
    chart, time_chart = at.get("plotly_chart")   # success vs compute, then time to solution vs compute
    fig = json.loads(chart.proto.spec)
    star = next(t for t in fig["data"] if t.get("name") == "recommended")
    assert star["customdata"][0][0] == 1 and star["x"] == [1.4]
    star = next(t for t in json.loads(time_chart.proto.spec)["data"] if t.get("name") == "recommended")
    assert star["customdata"][0][0] == 1 and star["x"] == [1.4] and star["y"] == [180.0]
    assert "solved nothing" not in " ".join(c.value for c in at.caption)   # every complete trial solved some
    table = at.dataframe[0].value
    assert len(table) == len(trials()) and list(table["Verdict"]).count("recommended") == 1
    assert at.get("download_button")


def test_a_queued_search_shows_its_progress(store):
    store.parent.mkdir(parents=True, exist_ok=True)
    with Store(store) as s:
        advice_id = s.queue_advice({"advise": {"trials": 4, "target": 0.5}}, "waiting")
        s.save_advice_trial(advice_id, trials()[0])
    at = advise_page()
    assert not at.error and not at.success
    assert any("1 of 5 trials" in str(p.proto) for p in at.get("progress"))
    assert any(m.value.startswith("**So far** (1 of 5 trials): No schedule tried reaches") for m in at.warning)
    next(b for b in at.button if b.label == "Cancel this search").click().run()
    with Store(store) as s:
        assert s.advice(advice_id)["status"] == "cancelled"


def test_end_to_end_a_tiny_search_queued_on_the_page_is_run_and_shown(store):
    """The page queues a tiny search; the background worker's loop (here, in this process, until the queue is
    empty) runs it; the page then shows the stored recommendation, its chart and its trials (no flossing and one
    candidate on 2 seeds) and the report quotes the same statement."""
    from floss_core.runner import worker_loop

    at = advise_page(size="tiny")
    at.number_input(key="tiny:a:trials").set_value(1)
    at.number_input(key="tiny:a:target").set_value(50.0)
    submit(at)
    (row,) = queued(store)
    assert worker_loop(store, exit_when_idle=True, max_workers=1) == 1
    with Store(store) as s:
        done, stored = s.advice(row["id"]), s.advice_trials(row["id"])
    assert done["status"] == "done"
    assert [t["trial"] for t in stored] == [0, 1] and stored[0]["schedule"]["name"] == "none"
    at = advise_page(advice=row["id"])
    assert not at.error, [e.value for e in at.error]
    shown = [m.value for kind in (at.success, at.info, at.warning) for m in kind]
    assert f"**Verdict.** {done['result']['statement']}" in shown
    assert len(at.get("plotly_chart")) == 2 and len(at.dataframe[0].value) == 2
    with Store(store) as s:
        name, blob = report.export_advice(s, row["id"], "html")
    assert name.startswith("advice-") and name.endswith(f"-{row['id']}.html") and "/" not in name
    assert done["result"]["statement"] in html.unescape(blob.decode())
