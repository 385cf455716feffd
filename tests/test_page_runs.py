"""The Runs page under Streamlit's AppTest (issue 16, item 2): what each run is doing while its experiment
runs, the finished / cancelled counts, one fraction and ETA shown alike by the progress bar and the
experiments table (never 'None' or 'nan'), and a re-run that selects the new experiment. The stores are
written with the store's own API, as the runner writes them. FLOSS_NO_WORKER=1: no worker is started."""
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the pages import dashboard.py from the repository root

from floss_core.experiment import make_spec, spec_to_dict  # noqa: E402
from floss_core.store import Store  # noqa: E402

APP = str(ROOT / "app.py")
SPEC = make_spec("quick", name="tiny", hidden=8, steps=30, seeds=3, delays=[4], schedules=["none", "pre"], k=4,
                 pre_steps=6, seq_len=12, floss_len=10, floss_transient=2)


def planned():
    return [{"schedule": s, "seed": k, "member": k, "delay": 4,
             "config": {"task": {"name": "xor", "delay": 4}, "schedule": s, "seed": k}}
            for s in ("none", "pre") for k in range(3)]


def record(schedule, seed, status="done"):
    return {"schedule": schedule, "seed": seed, "delay": 4, "status": status, "success": status == "done",
            "convergence_step": 20 if status == "done" else None,
            "config": {"task": {"name": "xor", "delay": 4}}, "final": {"test_acc": 0.97},
            "metrics": [{"step": 0, "name": "train_loss", "value": 0.5}]}


@pytest.fixture
def store(tmp_path, monkeypatch):
    path = tmp_path / "floss.db"
    monkeypatch.setenv("FLOSS_STORE", str(path))
    monkeypatch.setenv("FLOSS_NO_WORKER", "1")
    with Store(path) as s:
        yield s


def running(s: Store, *, eta: float | None) -> int:
    """An experiment mid-run, as the runner leaves it: job none done (one run diverged), job pre flossing
    (seeds 0, 1) while seed 2 waits for its ensemble-mates."""
    eid = s.add_experiment(spec_to_dict(SPEC), name="tiny", runs=planned(), progress_total=200)
    s.claim_next_experiment("w")
    s.save_runs(eid, [record("none", 0), record("none", 1), record("none", 2, "diverged")])
    s.set_run_status(eid, "pre", [0, 1, 2], "running", delay=4)
    s.set_progress(eid, 80, 200, eta, fraction=0.42,
                   runs=[(4, "pre", 0, "pre flossing", 3, 6), (4, "pre", 1, "pre flossing", 3, 6),
                         (4, "pre", 2, "waiting", 0, 30)])
    return eid


def open_page(**query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({k: str(v) for k, v in query.items()})
    at.run()
    at.switch_page("pages/2_Runs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def progress_texts(at: AppTest) -> str:
    """What the page says about progress: its text, the bars and the experiments table."""
    parts = [m.value for m in at.markdown] + [p.proto.text for p in at.get("progress")]
    parts += [a.value for a in (*at.success, *at.warning, *at.info, *at.error)]
    parts.append(at.dataframe[0].value.to_string())
    return "\n".join(parts)


def test_a_running_experiment_shows_each_run_and_one_fraction_and_eta(store):
    eid = running(store, eta=12.0)
    at = open_page(experiment=eid)
    bar = at.get("progress")[0]
    assert bar.proto.text == ("#1 tiny: running, 3 of 6 runs finished · 42 % · ETA at most 12 s · now 2 pre flossing, "
                              "1 waiting")
    assert bar.proto.value == 42                                          # the bar: the stored fraction
    experiments, runs = (df.value for df in at.dataframe)
    row = experiments.iloc[0]
    # the table: the same; "at most": the spec stops networks when solved, and the ETA counts the whole budget
    assert (row["progress"], row["ETA"], row["runs"]) == (0.42, "at most 12 s", "3 / 6")
    states = runs.set_index(["schedule", "seed"])["state"].to_dict()
    assert states == {("none", 0): "done", ("none", 1): "done", ("none", 2): "diverged",
                      ("pre", 0): "pre flossing, step 3 of 6", ("pre", 1): "pre flossing, step 3 of 6",
                      ("pre", 2): "waiting, step 0 of 30"}


def test_before_the_runner_has_an_estimate_the_eta_says_so_never_none(store):
    eid = running(store, eta=None)
    at = open_page(experiment=eid)
    assert at.get("progress")[0].proto.text.startswith("#1 tiny: running, 3 of 6 runs finished · 42 % · ETA estimating…")
    assert at.dataframe[0].value.iloc[0]["ETA"] == "estimating…"
    text = progress_texts(at)
    assert "None" not in text and "nan" not in text.lower()


def test_after_a_cancel_the_page_says_how_many_finished_and_how_many_were_cancelled(store):
    eid = running(store, eta=12.0)
    store.request_cancel(eid)
    store.mark_unfinished(eid, "cancelled")     # what the runner does when it notices
    store.set_experiment_status(eid, "cancelled")
    at = open_page(experiment=eid)
    assert not at.get("progress")
    assert "**Experiment #1 tiny**: cancelled: 3 runs finished, 3 cancelled" in [m.value for m in at.markdown]
    experiments, runs = (df.value for df in at.dataframe)
    assert (experiments.iloc[0]["runs"], experiments.iloc[0]["ETA"]) == ("3 / 6 · 3 cancelled", "—")
    assert sorted(runs["state"]) == ["cancelled"] * 3 + ["diverged", "done", "done"]
    assert "None" not in progress_texts(at) and "nan" not in progress_texts(at).lower()


def test_re_run_queues_the_experiment_again_and_selects_it(store):
    eid = store.add_experiment(spec_to_dict(SPEC), name="tiny", runs=planned(), status="done")
    store.save_runs(eid, [record(s, k) for s in ("none", "pre") for k in range(3)])
    at = open_page(experiment=eid)
    assert at.sidebar.selectbox[0].value == eid
    next(b for b in at.button if b.label == f"Re-run #{eid} with the same config").click().run()
    assert not at.exception, [e.value for e in at.exception]
    new = eid + 1
    assert [e["id"] for e in store.experiments().to_dict("records")] == [eid, new]
    assert at.success[0].value == f"Queued experiment #{new}."
    # selected everywhere: the sidebar, the address, the session, and so the page itself
    assert at.sidebar.selectbox[0].value == new and at.query_params["experiment"] == str(new)
    assert at.session_state["experiment"] == new
    assert any(c.label == f"Only experiment #{new}" for c in at.checkbox)
    assert any(b.label == f"Cancel #{new}" and not b.disabled for b in at.button)   # queued: it can be cancelled
    assert at.get("progress")[0].proto.text.startswith(f"#{new} tiny: queued, 0 of 6 runs finished")
    # and it stays selected on the next refresh
    at.run()
    assert at.sidebar.selectbox[0].value == new
