"""The dashboard without a browser: app.py and every page under streamlit's AppTest, against a store
holding a real tiny comparison. FLOSS_NO_WORKER=1 keeps the pages from starting worker processes."""
import math
import re
import sqlite3
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the pages import dashboard.py from the repository root

import dashboard  # noqa: E402
from floss_core.experiment import make_spec, run_comparison, spec_to_dict  # noqa: E402
from floss_core.store import Store  # noqa: E402

APP = str(ROOT / "app.py")
TIMEOUT = 120  # s per script run: generous for a loaded CI machine; a page takes ~1 s


@pytest.fixture(scope="session")
def fixture_store(tmp_path_factory):
    """A store with one finished comparison: xor at d = 4 and 6, none vs pre, 2 seeds of an 8-unit RNN."""
    spec = make_spec("quick", name="fixture", hidden=8, steps=30, seeds=2, delays=[4, 6], schedules=["none", "pre"],
                     k=4, pre_steps=5, eval_every=10, seq_len=20, floss_len=20, floss_transient=5, success_acc=0.55)
    path = tmp_path_factory.mktemp("pages") / "floss.db"
    with Store(path) as s:
        s.save_runs(s.add_experiment(spec_to_dict(spec), name=spec.name, status="done"), run_comparison(spec))
    return path


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("FLOSS_NO_WORKER", "1")
    return monkeypatch


def copy_of(src: Path, tmp_path: Path) -> Path:
    """A private copy of a store (SQLite's backup API: safe with WAL)."""
    dst = tmp_path / "copy.db"
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    return dst


def page(name: str | None = None, **query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({k: str(v) for k, v in query.items()})
    at.run()
    if name:
        at.switch_page(f"pages/{name}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def count_experiments(path) -> int:
    with Store(path) as s:
        return len(s.experiments())


def success_rates(path) -> dict:
    with Store(path) as s:
        runs = s.runs(1)
    return {(int(d), sc): float(g["success"].astype(bool).mean()) for (d, sc), g in runs.groupby(["delay", "schedule"])}


@pytest.mark.parametrize("name, charts", [(None, 1), ("3_Lyapunov_spectra", 3), ("4_Conditioning", 4),
                                          ("5_Outcomes", 4), ("6_ROI", 2)])
def test_pages_show_the_fixture(fixture_store, env, name, charts):
    env.setenv("FLOSS_STORE", str(fixture_store))
    at = page(name)
    assert not at.error
    assert len(at.get("plotly_chart")) >= charts
    assert at.sidebar.selectbox[0].value == 1
    assert any(str(fixture_store) in c.value for c in at.sidebar.caption)  # the store path is shown
    metrics = {m.label: m.value for m in at.metric}
    if name in (None, "5_Outcomes"):  # key numbers: the success rates of the store's runs
        for (d, schedule), rate in success_rates(fixture_store).items():
            label = f"{schedule}, d={d}: success of 2 seeds" if name is None else f"Success, {schedule} at d={d}"
            assert metrics[label] == f"{rate:.0%}"
    if name is None:   # n and the interval beside every success figure, and the one-sentence answer
        captions = [c.value for c in at.caption]
        assert sum(bool(re.fullmatch(r"\d of 2 solved; 95% interval \d+%–\d+%", c)) for c in captions) == 4
        answer = at.success[0].value
        assert answer.startswith("**What it shows.** At delay 6, pre-flossing solved ") and "Fisher" in answer
    if name == "3_Lyapunov_spectra":
        assert {"λ_1 at the end of training, none", "λ_1 at the end of training, pre"} <= set(metrics)
        assert all(math.isfinite(float(v)) for v in metrics.values())
    if name in (None, "6_ROI"):  # the cost headline: flossing against task training, diagnostics apart
        text = " ".join(m.value for m in at.markdown)
        assert "At delay 6, flossing cost (against task training) pre +" in text
        assert "% of the wall time), measurement overhead, not a cost of the schedule" in text
    if name == "6_ROI":
        diag = next(m for m in at.metric if m.label == "The lab's diagnostics per network at d=6")
        assert diag.value.endswith(" s") and diag.delta.endswith("% of the wall time")   # issue 16: not cut off
        assert "Least training + flossing per solved network at d=6" in metrics


def test_every_page_runs_without_exception(fixture_store, env):
    env.setenv("FLOSS_STORE", str(fixture_store))
    at = page()
    assert set(dashboard.PAGES.values()) >= {f"pages/{p.name}" for p in (ROOT / "pages").glob("[0-9]*_*.py")}
    for path in dashboard.PAGES.values():
        at.switch_page(path).run()
        assert not at.exception, (path, [e.value for e in at.exception])


def test_runs_and_report_pages(fixture_store, env):
    env.setenv("FLOSS_STORE", str(fixture_store))
    runs = page("2_Runs")
    assert "Experiment #1 fixture**: done, 8 of 8 runs finished" in " ".join(m.value for m in runs.markdown)
    assert len(runs.dataframe) == 2  # experiments and runs
    assert len(runs.dataframe[1].value) == 8
    report = page("7_Report")
    assert not report.error and report.get("download_button")
    assert "python -m floss_core compare" in report.code[0].value


def test_experiment_is_carried_by_query_params_and_session(fixture_store, tmp_path, env):
    path = copy_of(fixture_store, tmp_path)
    with Store(path) as s:
        s.add_experiment({"name": "second"}, name="second")
    env.setenv("FLOSS_STORE", str(path))
    at = page(experiment=1)
    assert at.sidebar.selectbox[0].value == 1 and at.query_params["experiment"] == "1"
    at.switch_page("pages/5_Outcomes.py").run()
    assert at.sidebar.selectbox[0].value == 1          # not the newest (#2): the session carries it
    assert page().sidebar.selectbox[0].value == 2      # without a link: the newest experiment


def test_empty_store_offers_the_quick_demo(tmp_path, env):
    path = tmp_path / "floss.db"
    env.setenv("FLOSS_STORE", str(path))
    at = page()
    assert count_experiments(path) == 0
    at.button[0].click().run()
    with Store(path) as s:
        exps = s.experiments()
    assert list(exps["name"]) == ["demo: none vs pre, xor d=20"] and list(exps["status"]) == ["queued"]


def test_launch_refuses_invalid_input_and_queues_valid_input_once(tmp_path, env):
    path = tmp_path / "floss.db"
    env.setenv("FLOSS_STORE", str(path))
    at = page("1_Launch")
    assert not at.error and "flossing" in " ".join(m.value for m in at.markdown)
    at.number_input(key="quick:k").set_value(999).run()
    assert [e.value for e in at.error] == ["k must be in 1..32 (the state dimension), got 999"]
    launch = next(b for b in at.button if b.label == "Launch")
    assert launch.disabled  # nothing can be queued while the error stands
    assert count_experiments(path) == 0
    at.text_input(key="quick:delays").set_value("10, x").run()
    assert "delays must be comma-separated whole numbers" in at.error[0].value
    at.text_input(key="quick:delays").set_value(" ").run()
    assert at.error[0].value.startswith("delays must name at least one value")
    at.text_input(key="quick:delays").set_value("10, 20").run()
    at.multiselect(key="quick:schedules").set_value([]).run()
    assert at.error[0].value.startswith("pick at least one schedule")
    at.multiselect(key="quick:schedules").set_value(["none", "adaptive"])
    at.number_input(key="quick:k").set_value(16)
    at.number_input(key="quick:ak").set_value(20).run()  # more than k
    assert at.error[0].value == "adaptive_k must be in 1..16 (k), got 20"
    at.radio[0].set_value("tiny").run()  # a new size: every widget back to its defaults
    assert not at.error
    # the estimate comes at once from this machine's cost table; without one and without a worker to measure
    # it (FLOSS_NO_WORKER=1) the page says so and offers to measure here
    assert any("has not been measured" in i.value for i in at.info) and not at.metric
    assert any(b.label.startswith("Measure this machine now") for b in at.button)
    from test_costs import fresh_synthetic_table
    with Store(path) as s:
        s.save_cost_table(fresh_synthetic_table())
    at.run()
    # tiny stops each network when solved: the estimate counts the whole budget, an upper bound, and says so
    assert at.metric[0].label == "Estimated time, at most" and at.metric[0].value.endswith("s")
    assert any("each network stops when it solves" in c.value for c in at.caption)
    assert any(c.value.startswith("Assumes 1 worker process (FLOSS_WORKERS") for c in at.caption)
    next(b for b in at.button if b.label == "Launch").click().run()
    assert not at.exception and at.success[0].value == "Queued experiment #1."
    with Store(path) as s:
        exps = s.experiments()
    assert len(exps) == 1 and exps["config"][0]["model"]["hidden"] == 8
    assert exps["config"][0]["floss"]["state_grad"] == "truncated"        # the lab's flossing design by default
    at.selectbox(key="tiny:design").set_value("reference").run()          # the paper's code, one click away
    next(b for b in at.button if b.label == "Launch").click().run()
    with Store(path) as s:
        floss = s.experiments().set_index("id").loc[2, "config"]["floss"]
    assert floss["through_states"] is True and floss["state_grad"] is None and floss["clip"] == 0


def test_launch_csv_upload_is_saved_safely_and_validated(tmp_path, env):
    path = tmp_path / "store" / "floss.db"
    env.setenv("FLOSS_STORE", str(path))
    at = page("1_Launch", size="tiny")
    at.selectbox(key="tiny:task").set_value("csv").run()
    assert at.error[0].value == "upload a CSV series for task 'csv'"
    at.file_uploader[0].set_value(("../../evil name.csv", b"a,b\n1,x\n", "text/csv")).run()
    # issue 15: a non-numeric column is named, with its cell, and not offered; the numeric one is (too short here)
    assert at.warning[0].value == "CSV column 'b', data row 1: 'x' is not a number: the column is not offered."
    assert at.multiselect(key="tiny:columns:a").options == ["a"] and "CSV has 1 rows" in at.error[0].value
    rows = "\n".join(f"{math.sin(i / 5):.4f},{math.cos(i / 7):.4f}" for i in range(400))
    at.file_uploader[0].set_value(("../../evil name.csv", ("a,b\n" + rows).encode(), "text/csv")).run()
    assert not at.error
    assert (path.parent / "uploads" / "evil_name.csv").is_file()
    next(b for b in at.button if b.label == "Launch").click().run()
    with Store(path) as s:
        assert s.experiments()["config"][0]["task"]["csv_path"] == str(path.parent / "uploads" / "evil_name.csv")


def test_launch_csv_columns_gaps_period_and_margin(tmp_path, env):
    path = tmp_path / "store" / "floss.db"
    env.setenv("FLOSS_STORE", str(path))
    days = [f"2020-{1 + i // 28:02d}-{1 + i % 28:02d}" for i in range(300)]
    rows = [f"{d},{'' if i in (40, 41, 90) else f'{math.sin(i / 5):.4f}'},{math.cos(i / 7):.4f}"
            for i, d in enumerate(days)]
    at = page("1_Launch", size="tiny")
    at.selectbox(key="tiny:task").set_value("csv").run()
    at.file_uploader[0].set_value(("weekly.csv", ("date,x,y\n" + "\n".join(rows)).encode(), "text/csv")).run()
    assert any("'date' (dates) is the file's index" in c.value for c in at.caption)
    columns = at.multiselect(key="tiny:columns:x,y")
    assert columns.options == ["x", "y"] and columns.value == ["x", "y"]       # the numeric columns, all chosen
    assert any("3 missing values" in c.value for c in at.caption)
    assert at.error[0].value.startswith("CSV column 'x' has 3 missing values (blank or NA) at data rows 41-42, 91")
    assert next(b for b in at.button if b.label == "Launch").disabled         # refused: nothing can be queued
    at.selectbox(key="tiny:missing").set_value("interpolate")
    at.number_input(key="tiny:period").set_value(28)
    at.number_input(key="tiny:margin").set_value(0.2).run()
    assert not at.error
    next(b for b in at.button if b.label == "Launch").click().run()
    columns = at.multiselect(key="tiny:columns:x,y").set_value(["y"]).run()   # y has no gap
    at.selectbox(key="tiny:missing").set_value("refuse").run()
    assert not at.error
    next(b for b in at.button if b.label == "Launch").click().run()
    with Store(path) as s:
        first, second = (c["task"] for c in s.experiments()["config"])
    assert (first["columns"], first["missing"], first["period"], first["skill_margin"]) == (["x", "y"], "interpolate",
                                                                                            28, 0.2)
    assert (second["columns"], second["missing"]) == (["y"], "refuse")


def test_runs_page_reruns_cancels_and_deletes_with_confirmation(fixture_store, tmp_path, env):
    path = copy_of(fixture_store, tmp_path)
    env.setenv("FLOSS_STORE", str(path))
    at = page("2_Runs", experiment=1)
    next(b for b in at.button if b.label.startswith("Re-run #1")).click().run()
    assert at.success[0].value == "Queued experiment #2."
    assert count_experiments(path) == 2
    at = page("2_Runs", experiment=2)
    assert at.get("progress")  # the queued re-run has a progress bar, and no worker runs it here:
    assert "No worker is alive" in at.warning[0].value and any(b.label == "Start a worker" for b in at.button)
    next(b for b in at.button if b.label == "Cancel #2").click().run()
    with Store(path) as s:
        assert s.experiment(2)["status"] == "cancelled"
    next(b for b in at.button if b.label == "Delete #2...").click().run()
    assert count_experiments(path) == 2 and any("cannot be undone" in w.value for w in at.warning)
    next(b for b in at.button if b.label == "Keep it").click().run()
    assert count_experiments(path) == 2 and not any("cannot be undone" in w.value for w in at.warning)
    next(b for b in at.button if b.label == "Delete #2...").click().run()
    next(b for b in at.button if b.label == "Yes, delete it").click().run()
    assert count_experiments(path) == 1 and not at.exception
    assert at.sidebar.selectbox[0].value == 1


def test_safe_filename_keeps_uploads_inside_their_folder():
    assert dashboard.safe_filename("../../etc/passwd") == "passwd"
    assert dashboard.safe_filename("..\\..\\evil.csv") == "evil.csv"
    assert dashboard.safe_filename("my data (v2).csv") == "my_data_v2_.csv"
    assert dashboard.safe_filename("...") == "upload.csv"
    assert dashboard.ints("10, 20;30", "delays") == [10, 20, 30]
    assert dashboard.duration(42) == "42 s" and dashboard.duration(600) == "10.0 min"
    assert dashboard.duration(0.534) == "0.53 s" and dashboard.duration(math.inf) == "∞"


def test_conditioning_page_leads_with_what_flossing_controls(fixture_store, env):
    env.setenv("FLOSS_STORE", str(fixture_store))
    at = page("4_Conditioning")
    labels = [m.label for m in at.metric]
    # the headline: κ₂ of the flossed top-4 subspace and the gradient norm, then the full κ₂ below them
    first = {"log10 κ₂ of the top-4 at h=100, none", "log10 κ₂ of the top-4 at h=100, pre",
             "log10 gradient norm 100 steps back, none", "log10 gradient norm 100 steps back, pre"}
    assert set(labels[:4]) == first and {"log10 κ₂ at h=100, none", "log10 κ₂ at h=100, pre"} == set(labels[4:6])
    assert all(math.isfinite(float(m.value)) for m in at.metric)
    text = " ".join(m.value for m in at.markdown)
    assert "set by the smallest singular value, which the unflossed bottom exponents drive" in text
    titles = [c.proto.spec for c in at.get("plotly_chart")]
    assert "κ₂ of the top-4 subspace" in titles[0] and "Gradient norm vs steps back" in titles[1]
    assert "Condition number of the long-term Jacobian" in titles[2]


def test_outcomes_page_shows_time_to_solution(fixture_store, env):
    from floss_core import views

    env.setenv("FLOSS_STORE", str(fixture_store))
    at = page("5_Outcomes")
    with Store(fixture_store) as s:
        runs = s.runs(1)
    table = views.survival_table(runs)
    metrics = {m.label: m.value for m in at.metric}
    for r in table[table["delay"] == 6].itertuples():      # the page's delay: the longest
        want = "not reached" if r.median_solve_step == math.inf else f"step {r.median_solve_step:.0f}"
        assert metrics[f"Median time to solution, {r.schedule} at d=6"] == want
    shown = at.dataframe[0].value
    assert list(shown.columns) == list(views.survival_display(table).columns)
    assert shown.values.tolist() == views.survival_display(table).values.tolist()
    assert any("Kaplan–Meier" in c.proto.spec for c in at.get("plotly_chart"))
    assert "censored" in " ".join(m.value for m in at.markdown)


def test_outcomes_page_shows_the_baselines_beside_the_networks_for_a_series(tmp_path, env):
    csv = tmp_path / "series.csv"
    csv.write_text("year,v\n" + "\n".join(f"{1800 + i},{math.sin(i / 2) + 0.01 * i:.4f}" for i in range(160)) + "\n")
    spec = make_spec("quick", name="series", task="csv", csv=str(csv), period=13, hidden=6, steps=4, seeds=2,
                     delays=[2], schedules=["none", "pre"], k=2, pre_steps=2, eval_every=2, seq_len=10,
                     floss_len=10, floss_transient=2)
    path = tmp_path / "floss.db"
    with Store(path) as s:
        s.save_runs(s.add_experiment(spec_to_dict(spec), name=spec.name, status="done"), run_comparison(spec))
    env.setenv("FLOSS_STORE", str(path))
    at = page("5_Outcomes", experiment=1)
    assert "Against naive forecasts" in [h.value for h in at.subheader]
    shown = at.dataframe[-1].value
    assert list(shown["Forecaster"]) == ["none", "pre", "persistence (2 steps back)",
                                         "seasonal persistence (period 13: 13 steps back)"]
    assert list(shown["Solved"][2:]) == ["–", "–"] and all(x.endswith(" of 2") for x in shown["Solved"][:2])
    assert "0.000" in list(shown["Skill"][2:])            # the better baseline's skill against itself
    assert any("at least 0.1" in m.value for m in at.markdown)
    # a store written before issue 15 (csv runs without skill or baselines) still reads: no section, no error
    new_keys = ("test_skill", "test_mse", "persistence_mse", "persistence_r2", "seasonal_mse", "seasonal_r2",
                "baseline", "baseline_mse", "baseline_r2", "success_rule", "forecast_columns", "missing_filled",
                "missing_dropped")
    old = copy_of(path, tmp_path)                          # another path: the dashboard's read cache is per path
    with sqlite3.connect(old) as db:
        db.execute("UPDATE runs SET final_json = json_remove(final_json, "
                   + ", ".join(f"'$.{k}'" for k in new_keys) + ")")
    env.setenv("FLOSS_STORE", str(old))
    at = page("5_Outcomes", experiment=1)
    assert not at.error and "Against naive forecasts" not in [h.value for h in at.subheader]
    with Store(old) as s:
        from floss_core.experiment import summarize
        from floss_core.store import run_records

        rows = summarize(run_records(s.runs(1)))
    assert rows and not any("skill" in r or "baseline" in r for r in rows)


def test_outcomes_page_shows_no_baselines_for_bit_tasks(fixture_store, env):
    env.setenv("FLOSS_STORE", str(fixture_store))
    assert "Against naive forecasts" not in [h.value for h in page("5_Outcomes").subheader]
