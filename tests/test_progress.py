"""Progress that tells the truth (issue 16, item 2): what each run is doing while it trains (the loop's
``on_state`` -> the runner -> the store's v4 state columns), the finished counts (done or diverged),
cancelled runs counted as such, and one fraction and ETA computed in one place (``runner.queue._Progress``)
that the store, the dashboard's views and the CLI all show. Tiny sizes: every test here runs in seconds."""
import math
import sqlite3
import threading
import time

import pytest

from floss_core import runner, views
from floss_core.cli import main
from floss_core.experiment import make_spec, plan, run_job
from floss_core.runner import queue as runner_queue
from floss_core.runner.queue import _makespan, _Progress
from floss_core.store import MIGRATIONS, Store, _statements
from floss_core.store.queries import eta_of, fraction_of

TINY = dict(hidden=8, steps=30, seeds=2, delays=[4], schedules=["none", "pre"], pre_steps=6, k=4, seq_len=12,
            floss_len=10, floss_transient=2)


def planned(schedules=("none", "pre"), seeds=(0, 1), delay=4):
    return [{"schedule": s, "seed": k, "member": k, "delay": delay,
             "config": {"task": {"name": "xor", "delay": delay}, "schedule": s, "seed": k}}
            for s in schedules for k in seeds]


def record(schedule, seed, status="done", delay=4):
    return {"schedule": schedule, "seed": seed, "delay": delay, "status": status, "success": status == "done",
            "config": {"task": {"name": "xor", "delay": delay}}, "final": {"test_acc": 1.0},
            "metrics": [{"step": 0, "name": "train_loss", "value": 0.5}]}


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "floss.db") as s:
        yield s


class Clock:
    """A synthetic monotonic clock: progress updates at chosen times."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


# ------------------------------------------------------------------------------------ the store (v4)
def test_version_3_store_is_migrated_to_4_keeping_its_rows(tmp_path):
    path = tmp_path / "v3.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for version in (1, 2, 3):
        for statement in _statements(MIGRATIONS[version]):
            conn.execute(statement)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '3'), ('store_id', 'abc')")
    conn.execute("INSERT INTO experiments (name, config_json, status, created_at, updated_at, progress_step, "
                 "progress_total) VALUES ('old', '{}', 'running', 1, 1, 30, 120)")
    conn.execute("INSERT INTO runs (experiment_id, delay, schedule, seed, status) VALUES (1, 4, 'pre', 0, 'running')")
    conn.close()
    with Store(path, create=False) as s:
        assert s.integrity_check() == "ok"
        exp = s.experiment(1)
        assert exp["fraction"] == 0.25          # no stored fraction yet: step / total, as before
        runs = s.runs(1)
        assert runs.loc[0, "state"] is None and views.run_state_text(runs.iloc[0]) == "starting"
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "5"


def test_set_progress_keeps_one_fraction_and_the_running_runs_states(store):
    eid = store.add_experiment({}, name="e", runs=planned(), progress_total=100)
    store.set_experiment_status(eid, "running")
    store.set_run_status(eid, "pre", [0, 1], "running", delay=4)
    store.set_progress(eid, 30, 100, 12.5, fraction=0.4,
                       runs=[(4, "pre", 0, "pre flossing", 3, 6), (4, "pre", 1, "waiting", 0, 30),
                             (4, "none", 0, "training", 5, 30)])      # none 0 is still queued: ignored
    runs = store.runs(eid).set_index(["schedule", "seed"])
    assert runs.loc[("pre", 0), "state"] == "pre flossing" and runs.loc[("pre", 0), "state_step"] == 3
    assert pd_isna(runs.loc[("none", 0), "state"])
    table = views.runs_table(store.runs(eid)).set_index(["schedule", "seed"])["state"]
    assert table.to_dict() == {("none", 0): "queued", ("none", 1): "queued",
                               ("pre", 0): "pre flossing, step 3 of 6",
                               ("pre", 1): "waiting, step 0 of 30"}
    p, exp = store.progress(eid), store.experiment(eid)
    assert p["fraction"] == exp["fraction"] == 0.4 and p["eta_seconds"] == exp["eta_seconds"] == 12.5
    assert views.experiments_table(store.experiments()).loc[0, "progress"] == 0.4
    # a run marked running again (after a crash) forgets what it was doing
    store.set_run_status(eid, "pre", [0], "running", delay=4)
    assert pd_isna(store.runs(eid, schedule="pre").set_index("seed").loc[0, "state"])


def pd_isna(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def test_fraction_and_eta_are_shown_only_where_they_mean_something():
    assert fraction_of("done", 3, 100, 0.2) == 1.0
    assert fraction_of("running", 30, 100, None) == 0.3 and fraction_of("running", 30, 100, 0.5) == 0.5
    assert math.isnan(fraction_of("queued", 0, None, None))
    assert eta_of("running", 42.0) == 42.0
    assert all(math.isnan(eta_of(status, 42.0)) for status in ("queued", "done", "cancelled", "failed"))
    assert math.isnan(eta_of("running", None))
    # never "None" or "nan" as text
    assert views.eta_text("running", math.nan) == "estimating…"
    assert views.eta_text("running", 0.2) == "finishing…"
    assert views.eta_text("running", 42.0) == "42 s" and views.eta_text("running", 160.0) == "2.7 min"
    assert views.eta_text("done", math.nan) == views.eta_text("queued", 3.0) == "—"
    # an upper bound (stop when solved): said so where there is a time, and only there
    assert views.eta_text("running", 42.0, at_most=True) == "at most 42 s"
    assert views.eta_text("running", math.nan, at_most=True) == "estimating…"
    assert views.eta_text("running", 0.2, at_most=True) == "finishing…"


def test_the_eta_is_an_upper_bound_exactly_when_solved_networks_stop():
    from floss_core.experiment import make_spec, spec_to_dict

    on = spec_to_dict(make_spec("quick", stop_when_solved=True))
    off = spec_to_dict(make_spec("quick", stop_when_solved=False))
    assert views.eta_is_bound({"config": on}) and not views.eta_is_bound({"config": off})
    csv = {**on, "task": {**on["task"], "name": "csv"}}   # judged at the final evaluation: trains the whole budget
    assert not views.eta_is_bound({"config": csv}) and not views.eta_is_bound({"config": None})


def test_counts_say_how_many_finished_and_how_many_were_cancelled(store):
    eid = store.add_experiment({}, name="e", runs=planned(seeds=(0, 1, 2)))
    store.claim_next_experiment("w")
    store.save_runs(eid, [record("none", 0), record("none", 1, "diverged")])
    store.set_run_status(eid, "pre", [0, 1], "running", delay=4)
    running = store.experiment(eid)
    assert (running["n_finished"], running["n_running"], running["n_queued"]) == (2, 2, 2)
    assert views.runs_summary(running) == "running, 2 of 6 runs finished"
    store.request_cancel(eid)
    store.mark_unfinished(eid, "cancelled")       # what the runner does when it sees the request
    store.set_experiment_status(eid, "cancelled")
    e = store.experiment(eid)
    assert (e["n_finished"], e["n_cancelled"], e["n_failed"]) == (2, 4, 0)
    assert views.runs_summary(e) == "cancelled: 2 runs finished, 4 cancelled"
    assert views.experiments_table(store.experiments()).loc[0, "runs"] == "2 / 6 · 4 cancelled"
    assert set(store.runs(eid, schedule="pre")["status"]) == {"cancelled"}


# ------------------------------------------------------------------------------------ the one ETA
def jobs_of(*specs):
    """_Progress jobs from (training steps, flossing units, members)."""
    return [(steps + floss, steps, [(4, "pre", seed) for seed in range(members)]) for steps, floss, members in specs]


def test_constant_rate_work_gives_eta_remaining_over_rate_falling_monotonically(store):
    eid = store.add_experiment({}, name="e", status="running")
    clock = Clock()
    progress = _Progress(store, eid, jobs_of((300, 0, 2)), clock=clock)
    progress.start(0)
    etas = []
    for k in range(1, 30):
        clock.t = 0.5 * k                        # 20 training steps per second
        progress.observe(0, 10 * k, 10 * k)
        progress.write(force=True)
        e = store.experiment(eid)
        assert e["eta_seconds"] == pytest.approx((300 - 10 * k) / 20.0)
        assert e["fraction"] == pytest.approx(10 * k / 300)
        etas.append(e["eta_seconds"])
    assert all(b < a for a, b in zip(etas, etas[1:]))


def test_eta_weighs_flossing_and_training_steps_by_what_each_costs(store):
    """Flossing steps cost 5x a training step here (a real flossing step often costs more): counting
    units alike the ETA would climb once training begins; by kind it is right as soon as both were timed."""
    eid = store.add_experiment({}, name="e", status="running")
    clock = Clock()
    progress = _Progress(store, eid, jobs_of((200, 50, 4)), clock=clock)
    progress.start(0)
    c_floss, c_train = 0.05, 0.01
    true_total = 50 * c_floss + 200 * c_train
    estimates = []
    for floss in range(5, 51, 5):                # pre-flossing first: training not timed yet
        clock.t = floss * c_floss
        progress.observe(0, floss, 0)
        assert progress.estimate()[1] is None    # 'estimating…', not a guess that will climb
    for trained in range(10, 201, 10):
        clock.t = 50 * c_floss + trained * c_train
        progress.observe(0, 50 + trained, trained)
        fraction, eta = progress.estimate()
        assert eta == pytest.approx(true_total - clock.t, abs=1e-9)
        assert fraction == pytest.approx(clock.t / true_total)
        estimates.append((fraction, eta))
    assert all(b[1] < a[1] and b[0] >= a[0] for a, b in zip(estimates, estimates[1:]))


def test_with_the_cost_table_a_kind_not_timed_yet_is_predicted_at_the_speed_measured(store):
    """The cost table predicts 0.01 s a training step, 0.05 s a flossing step, 1 s a snapshot; this
    machine runs twice as slow now: during pre-flossing the ETA is already the true time left."""
    eid = store.add_experiment({}, name="e", status="running")
    clock = Clock()
    prior = {"train": 0.01, "floss": 0.05, "diag": 1.0}
    progress = _Progress(store, eid, [(250, 200, [(4, "pre", 0)], 2)], prior=prior, clock=clock)
    progress.start(0)
    assert progress.estimate()[1] == pytest.approx(200 * 0.01 + 50 * 0.05 + 2 * 1.0)   # nothing timed: as predicted
    for i in range(1, 51):
        clock.t = 0.1 * i
        progress.observe(0, i, 0)
        if i % 10 == 0:
            assert progress.estimate()[1] == pytest.approx((50 - i) * 0.1 + 200 * 0.02 + 2 * 2.0)


def test_snapshots_are_timed_apart_so_training_after_one_does_not_look_slow(store):
    """A spectrum snapshot (1 s here) before flossing, after it and at the end: timed as snapshots, the
    one after flossing does not make the first training steps look slow (the ETA would jump up), and
    the last one is still counted when every step is done."""
    eid = store.add_experiment({}, name="e", status="running")
    clock = Clock()
    progress = _Progress(store, eid, [(120, 100, [(4, "pre", 0)], 3)], clock=clock)
    progress.start(0)
    measuring, flossing, training = [("diagnostics", 0, 100)], [("pre flossing", 0, 20)], [("training", 0, 100)]
    progress.report_states(0, measuring)              # t = 0..1: the first snapshot
    clock.t = 1.0
    progress.report_states(0, flossing)
    for i in range(1, 21):                            # 20 flossing steps of 0.05 s
        clock.t = 1.0 + 0.05 * i
        progress.observe(0, i, 0)
    progress.report_states(0, measuring)              # t = 2..3: the snapshot after flossing
    clock.t = 3.0
    progress.report_states(0, training)
    true_end = 3.0 + 100 * 0.01 + 1.0                 # training, then the last snapshot
    etas = []
    for i in range(10, 101, 10):
        clock.t = 3.0 + 0.01 * i
        progress.observe(0, 20 + i, i)
        fraction, eta = progress.estimate()
        assert eta == pytest.approx(true_end - clock.t) and fraction == pytest.approx(clock.t / true_end)
        etas.append(eta)
    assert etas[-1] == pytest.approx(1.0)             # every step done, the last snapshot still to come
    progress.report_states(0, [("diagnostics", 100, 100)])
    clock.t = true_end
    progress.finish(0)
    assert progress.estimate() == (1.0, 0.0)


def test_time_without_progress_goes_to_the_next_units_and_queued_jobs_wait_for_a_process(store):
    eid = store.add_experiment({}, name="e", status="running")
    clock = Clock()
    # 3 equal jobs, 2 processes: the third starts when the first ends
    progress = _Progress(store, eid, jobs_of((100, 0, 1), (100, 0, 1), (100, 0, 1)), processes=2, clock=clock)
    progress.start(0), progress.start(1)
    clock.t = 1.0                                 # a spectrum snapshot: a second, no unit done
    progress.observe(0, 0, 0), progress.observe(1, 0, 0)
    clock.t = 2.0
    progress.observe(0, 50, 50), progress.observe(1, 50, 50)    # 2 s for 50 steps: 0.04 s a step
    _, eta = progress.estimate()
    assert eta == pytest.approx(50 * 0.04 + 100 * 0.04)          # the running half, then the queued job
    assert _makespan([1.0, 1.0, 1.0], 2) == 2.0 and _makespan([], 2) == 0.0
    # a job that ends early (its flossing stopped) never cost the units it skipped; at the end, 0 left
    for slot in range(3):
        progress.finish(slot)
    assert progress.estimate() == (1.0, 0.0)


def test_a_dask_job_reports_only_when_done_and_still_gives_an_eta(store):
    eid = store.add_experiment({}, name="e", status="running")
    clock = Clock()
    progress = _Progress(store, eid, jobs_of((100, 20, 1), (100, 20, 1)), processes=1, clock=clock)
    progress.start(0)
    assert progress.estimate() == (0.0, None)
    clock.t = 6.0
    progress.finish(0)
    fraction, eta = progress.estimate()
    assert fraction == pytest.approx(0.5) and eta == pytest.approx(6.0)


# ------------------------------------------------------------------------------------ the loop's states
def test_the_loop_reports_what_each_member_is_doing(monkeypatch):
    from floss_core import train as T

    monkeypatch.setattr(T, "STATE_EVERY_S", 0.0)
    spec = make_spec("quick", **{**TINY, "schedules": ["none", "pre", "pre+inter"], "inter_steps": 4,
                                 "inter_at": [10]})
    job = plan(spec)[0]
    seen = []
    records = run_job(spec, job, on_state=seen.append)
    members = job.member_list(spec)                       # none 0, none 1, pre 0, pre 1, pre+inter 0, 1
    assert all(len(states) == len(members) for states in seen)

    def phases(i):    # the member's states in order, repeats dropped
        out = []
        for states in seen:
            if not out or out[-1] != states[i][0]:
                out.append(states[i][0])
        return out

    assert phases(0) == ["diagnostics", "waiting", "training", "waiting", "training", "diagnostics", "done"]
    assert phases(2) == ["diagnostics", "pre flossing", "diagnostics", "training", "waiting", "training",
                         "diagnostics", "done"]
    assert phases(4) == ["diagnostics", "pre flossing", "diagnostics", "training", "diagnostics", "inter flossing",
                         "diagnostics", "training", "diagnostics", "done"]
    flossing = [states[2] for states in seen if states[2][0] == "pre flossing"]
    assert flossing[0] == ("pre flossing", 0, 6) and flossing[-1] == ("pre flossing", 6, 6)
    training = [states[0][1] for states in seen if states[0][0] == "training"]
    assert training[0] == 1 and training[-1] == 30 and training == sorted(training)
    assert ("waiting", 10, 30) in [states[0] for states in seen]      # while pre+inter flosses at step 10
    assert seen[-1] == [("done", 30, 30)] * len(members)
    assert [r["status"] for r in records] == ["done"] * len(members)


def test_an_in_process_run_stores_states_fraction_and_eta_as_it_goes(tmp_path, monkeypatch):
    """The real runner, in this process: every progress write (once per step here) holds what the runs
    are doing; the fraction never moves back and the ETA, once known, is a number of seconds."""
    from floss_core import train as T

    monkeypatch.setattr(runner_queue, "PROGRESS_EVERY_S", 0.0)
    monkeypatch.setattr(T, "STATE_EVERY_S", 0.0)
    writes = []

    class Recording(Store):
        def set_progress(self, experiment_id, step, total, eta_seconds, *, fraction=None, runs=()):
            runs = list(runs)
            writes.append((fraction, eta_seconds, runs))
            super().set_progress(experiment_id, step, total, eta_seconds, fraction=fraction, runs=runs)

    with Recording(tmp_path / "floss.db") as store:
        eid = runner.run_here(make_spec("quick", **TINY), store)
        assert store.experiment(eid)["status"] == "done"
    states = {state for _, _, runs in writes for *_, state, _, _ in runs}
    assert {"training", "pre flossing", "waiting"} <= states
    fractions = [f for f, _, _ in writes]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(eta is not None and eta > 0 for _, eta, _ in writes) and writes[-1][1] == 0.0


def test_cancel_mid_run_counts_finished_and_cancelled_runs_on_status(tmp_path, monkeypatch, capsys):
    """One job per schedule in this process: job none finishes, job pre flosses (for minutes) until the
    cancel; status then says how many finished and how many were cancelled."""
    monkeypatch.setenv("FLOSS_PER_SCHEDULE", "1")
    path = tmp_path / "floss.db"
    spec = make_spec("quick", **{**TINY, "pre_steps": 100_000})
    with Store(path) as store:
        eid = runner.submit(spec, store)
        store.claim_next_experiment("here")
        done = []
        worker = threading.Thread(target=lambda: done.append(runner.run_experiment(path, eid)))
        worker.start()
        try:
            deadline = time.monotonic() + 60
            while not (store.runs(eid, schedule="pre")["state"] == "pre flossing").all():
                assert time.monotonic() < deadline and worker.is_alive(), "job pre never started flossing"
                time.sleep(0.05)
            assert views.runs_summary(store.experiment(eid)) == "running, 2 of 4 runs finished"
        finally:
            runner.cancel(store, eid)
            worker.join(timeout=60)
        assert done == ["cancelled"]
        assert views.runs_summary(store.experiment(eid)) == "cancelled: 2 runs finished, 2 cancelled"
    main(["status", "--store", str(path)])
    out = capsys.readouterr().out
    assert "cancelled: 2 runs finished, 2 cancelled" in out and "None" not in out
    main(["status", str(eid), "--store", str(path)])
    out = capsys.readouterr().out
    assert out.startswith(f"experiment {eid} 'comparison': cancelled: 2 runs finished, 2 cancelled, ")
    assert "ETA —" in out


# ------------------------------------------------------------------------------------ runs over early
DIVERGING = {**TINY, "steps": 200, "floss_lr": 100.0}   # pre's flossing blows up at once; none trains on


def recording_store(path, saves):
    """A real store that notes, at each save_runs, what it saved and how the experiment then stood."""
    class Recording(Store):
        def save_runs(self, experiment_id, records):
            ids = super().save_runs(experiment_id, records)
            saves.append(([(r["schedule"], r["seed"], r["status"]) for r in records],
                          views.runs_summary(self.experiment(experiment_id))))
            return ids

    return Recording(path)


@pytest.mark.filterwarnings("ignore::floss_core.lyapunov.LyapunovAccuracyWarning")   # the blow-up, on purpose
@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_a_diverged_run_is_stored_and_counted_while_its_ensemble_trains_on(tmp_path, workers):
    saves = []
    with recording_store(tmp_path / "floss.db", saves) as store:
        eid = runner.run_here(make_spec("quick", **DIVERGING), store, max_workers=workers)
        runs = store.runs(eid).set_index(["schedule", "seed"])
        assert store.experiment(eid)["status"] == "done"
    early = [(what, summary) for what, summary in saves if all(status == "diverged" for *_, status in what)]
    assert early, saves
    assert all(schedule == "pre" for what, _ in early for schedule, _, _ in what)
    # stored before its ensemble ended: counted as finished while the none runs were still running
    assert early[0][1] in ("running, 1 of 4 runs finished", "running, 2 of 4 runs finished")
    assert saves.index(early[0]) < len(saves) - 1 and len(saves[-1][0]) >= 2
    assert runs.loc[("pre", 0), "status"] == runs.loc[("pre", 1), "status"] == "diverged"
    assert runs.loc[("none", 0), "status"] == "done"
    assert "flossing exponents became non-finite" in runs.loc[("pre", 0), "reason"]
