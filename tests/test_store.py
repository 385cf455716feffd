"""Tests for floss_core.store: round trips, atomicity, the queue primitives, concurrency, foreign files."""

import hashlib
import inspect
import json
import math
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from floss_core.store import SCHEMA_VERSION, Store, StoreError, default_store_path

ROOT = Path(__file__).resolve().parents[1]


def make_record(schedule, seed, *, steps=20, names=("train_loss", "test_loss", "test_acc", "lambda1",
                                                    "kappa", "grad_norm"), status="done"):
    """A finished-run record as the training engine produces it, with a NaN in each part."""
    metrics = [{"step": s, "name": n, "value": float(s * 10 + i)}
               for s in range(steps) for i, n in enumerate(names)]
    metrics[-1]["value"] = math.nan
    return {
        "schedule": schedule, "seed": seed, "member": seed % 4,
        "config": {"task": {"name": "copy", "delay": 10}, "schedule": schedule, "seed": seed},
        "status": status, "success": status == "done", "convergence_step": 7 if status == "done" else None,
        "diverged_step": None if status == "done" else 3, "reason": None if status == "done" else "loss NaN",
        "final": {"test_acc": 0.5 + seed / 100, "test_loss": math.nan, "lambda1_before": 0.25,
                  "lambda1_after": -math.inf, "kappa_before": 1e3, "kappa_after": 12.0},
        "floss_seconds": 1.5, "train_seconds": 4.0, "wall_seconds": 6.0, "device": "cpu",
        "versions": {"torch": "2.13.0", "python": "3.11.7"},
        "metrics": metrics,
        "spectra": [{"step": 0, "phase": "init", "exponents": [0.1, -0.2, math.nan]},
                    {"step": steps, "phase": "final", "exponents": [0.01, -0.3, -0.9]}],
        "jacobian": [{"step": steps, "phase": "final", "horizon": h, "log_sv": [1.0, 0.5, math.nan],
                      "log_kappa": 0.5 * h, "log_kappa_k": math.nan, "grad_norm": 2.0 ** -h}
                     for h in (1, 10)],
    }


def planned(schedules=("none", "pre"), seeds=(0, 1), delay=10):
    return [{"schedule": s, "seed": k, "member": k,
             "config": {"task": {"name": "copy", "delay": delay}, "schedule": s, "seed": k}}
            for s in schedules for k in seeds]


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def count(path, sql, params=()):
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, params).fetchone()[0]


# Child processes import floss_core.store: the package face is lazy and the store needs only stdlib +
# pandas, so they load no torch and start fast. They also prove the store pulls in no torch/streamlit.
PRELUDE = textwrap.dedent(f"""
    import json, math, os, sys, time
    sys.path.insert(0, {str(ROOT)!r})
    from floss_core import store
    assert "torch" not in sys.modules and "streamlit" not in sys.modules, "store.py must not import them"
    path = sys.argv[1]

    def wait_for_go():
        print("ready", flush=True)
        while not os.path.exists(path + ".go"):
            time.sleep(0.002)
""") + inspect.getsource(make_record)


def spawn(body, *args):
    return subprocess.Popen([sys.executable, "-c", PRELUDE + textwrap.dedent(body), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def start_together(path, procs):
    """Wait until every child has imported and opened the store, then let them all go at once."""
    for proc in procs:
        assert proc.stdout.readline() == "ready\n", proc.communicate()[1]
    Path(f"{path}.go").touch()


def finish(proc, timeout=60):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return json.loads(out)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "floss.db") as s:
        yield s


# ---------------------------------------------------------------------- opening

def test_default_store_path(monkeypatch, tmp_path):
    monkeypatch.delenv("FLOSS_STORE", raising=False)
    assert default_store_path() == Path("floss_data") / "floss.db"
    monkeypatch.setenv("FLOSS_STORE", str(tmp_path / "x.db"))
    assert default_store_path() == tmp_path / "x.db"


def test_new_store_is_wal_versioned_and_sound(tmp_path):
    path = tmp_path / "deep" / "er" / "floss.db"
    with Store(path) as s:
        assert s.integrity_check() == "ok"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        meta = dict(conn.execute("SELECT key, value FROM meta"))
    assert meta["app"] == "floss_core" and meta["schema_version"] == str(SCHEMA_VERSION) == "5"
    with Store(path, create=False) as s:  # reopening an existing store works and keeps its id
        assert s.last_change()[0] == meta["store_id"]


def test_missing_file_without_create(tmp_path):
    with pytest.raises(StoreError, match="no store"):
        Store(tmp_path / "sub" / "none.db", create=False)
    assert not (tmp_path / "sub").exists()


def _text_file(path):
    path.write_text("schedule,seed\npre,1\n")


def _other_sqlite(path):
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE results (x REAL)")
        conn.execute("INSERT INTO results VALUES (1.5)")
    conn.close()


def _other_app_meta(path):
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO meta VALUES ('app', 'someone_else'), ('schema_version', '1')")
    conn.close()


def _newer_store(path):
    Store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()


@pytest.mark.parametrize("make, message", [
    (_text_file, "is not a Gradient Flossing Lab store"),
    (_other_sqlite, "is not a Gradient Flossing Lab store"),
    (_other_app_meta, "is not a Gradient Flossing Lab store"),
    (_newer_store, "schema version 99.*up to 5"),
])
def test_foreign_files_refused_and_unchanged(tmp_path, make, message):
    path = tmp_path / "foreign.db"
    make(path)
    before = sha(path)
    for create in (True, False):
        with pytest.raises(StoreError, match=message):
            Store(path, create=create)
    assert sha(path) == before


# ---------------------------------------------------------------------- round trips

def test_experiment_and_planned_runs_round_trip(store):
    config = {"task": {"name": "copy", "delay": 10}, "lr": 1e-3, "clip": math.inf, "odd": math.nan,
              "schedules": ["none", "pre"], "seeds": [0, 1]}
    eid = store.add_experiment(config, name="copy d=10", runs=planned())
    exp = store.experiment(eid)
    assert exp["name"] == "copy d=10" and exp["status"] == "queued" and exp["n_runs"] == 4
    assert exp["config"]["clip"] == math.inf and math.isnan(exp["config"]["odd"])
    assert exp["config"]["task"] == {"name": "copy", "delay": 10} and exp["config"]["lr"] == 1e-3
    assert isinstance(exp["created_at"], pd.Timestamp) and exp["cancel_requested"] is False
    assert store.rerun_config(eid)["seeds"] == [0, 1]

    # Stored JSON is strict: a strict parser (no NaN/Infinity constants) reads it.
    raw = count(store.path, "SELECT config_json FROM experiments WHERE id = ?", (eid,))
    json.loads(raw, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))

    runs = store.runs(eid)
    assert list(runs[["schedule", "seed", "member"]].itertuples(index=False, name=None)) == \
        [("none", 0, 0), ("none", 1, 1), ("pre", 0, 0), ("pre", 1, 1)]
    assert (runs["status"] == "queued").all() and runs["success"].isna().all()
    assert (runs["task"] == "copy").all() and (runs["delay"] == 10).all()
    assert list(store.experiments()["id"]) == [eid]


def test_finished_runs_round_trip(store):
    eid = store.add_experiment({"task": {"name": "copy"}}, name="e", runs=planned(seeds=(0, 1)))
    records = [make_record("pre", 0), make_record("pre", 1, status="diverged"), make_record("joint", 5)]
    run_ids = store.save_runs(eid, records)

    runs = store.runs(eid)
    assert len(runs) == 5  # 4 planned rows updated in place + 1 new one for 'joint'
    done = runs.set_index(["schedule", "seed"])
    assert list(done.loc[("pre", 0), ["run_id"]]) == [run_ids[0]]
    assert done.loc[("pre", 0), "status"] == "done" and bool(done.loc[("pre", 0), "success"]) is True
    assert done.loc[("pre", 1), "status"] == "diverged" and done.loc[("pre", 1), "diverged_step"] == 3
    assert done.loc[("pre", 1), "reason"] == "loss NaN" and bool(done.loc[("pre", 1), "success"]) is False
    assert done.loc[("none", 0), "status"] == "queued"
    row = done.loc[("pre", 0)]
    assert row["test_acc"] == 0.5 and row["lambda1_before"] == 0.25 and row["kappa_before"] == 1e3
    assert math.isnan(row["test_loss"]) and row["lambda1_after"] == -math.inf
    assert row["convergence_step"] == 7 and row["wall_seconds"] == 6.0 and row["device"] == "cpu"
    assert row["versions"] == {"torch": "2.13.0", "python": "3.11.7"}
    assert row["config"]["task"]["delay"] == 10 and row["member"] == 0
    assert isinstance(row["finished_at"], pd.Timestamp)

    m = store.metrics(eid)
    assert len(m) == 3 * 20 * 6 and set(m.columns) >= {"run_id", "schedule", "seed", "step", "name", "value"}
    one = m[(m.run_id == run_ids[0]) & (m.name == "kappa")].sort_values("step")
    assert list(one["value"]) == [float(s * 10 + 4) for s in range(20)]
    assert math.isnan(m[(m.run_id == run_ids[0]) & (m.name == "grad_norm") & (m.step == 19)]["value"].item())
    assert set(store.metrics(eid, names="lambda1")["name"]) == {"lambda1"}
    assert len(store.metrics(eid, names=["lambda1", "kappa"])) == 3 * 20 * 2

    sp = store.spectra(eid)
    first = sp[(sp.run_id == run_ids[0]) & (sp.phase == "init")]
    assert list(first["index"]) == [1, 2, 3] and list(first["exponent"][:2]) == [0.1, -0.2]
    assert math.isnan(first["exponent"].iloc[2]) and len(sp) == 3 * 2 * 3

    jac = store.jacobian(eid)
    assert len(jac) == 3 * 2
    j = jac[(jac.run_id == run_ids[2]) & (jac.horizon == 10)].iloc[0]
    assert j["log_kappa"] == 5.0 and math.isnan(j["log_kappa_k"]) and j["grad_norm"] == 2.0 ** -10
    assert j["log_sv"][:2] == [1.0, 0.5] and math.isnan(j["log_sv"][2])

    # Saving a run again replaces its rows rather than appending.
    store.save_runs(eid, [make_record("pre", 0, steps=5)])
    assert len(store.metrics(eid)) == 2 * 20 * 6 + 5 * 6
    assert len(store.runs(eid)) == 5


def test_save_is_fast(store):
    eid = store.add_experiment({}, name="big", runs=planned(schedules=("pre",), seeds=(0,)))
    record = make_record("pre", 0, steps=3000)
    start = time.perf_counter()
    store.save_runs(eid, [record])
    assert time.perf_counter() - start < 1.0  # typically ~0.1 s
    assert len(store.metrics(eid)) == 3000 * 6


def test_save_runs_is_atomic(store):
    eid = store.add_experiment({}, name="e", runs=planned(schedules=("pre",), seeds=(0, 1, 2)))
    before = store.last_change()
    bad = make_record("pre", 2)
    bad["metrics"][5]["value"] = "not a number"  # fails float() after the first two runs were written
    with pytest.raises(ValueError):
        store.save_runs(eid, [make_record("pre", 0), make_record("pre", 1), bad])
    assert (store.runs(eid)["status"] == "queued").all()
    for table in ("metrics", "spectra", "jacobian"):
        assert count(store.path, f"SELECT COUNT(*) FROM {table}") == 0
    assert store.last_change() == before
    with pytest.raises(ValueError, match="choose one of"):
        store.save_runs(eid, [make_record("pre", 0, status="finished")])
    with pytest.raises(KeyError):
        store.save_runs(eid + 1, [make_record("pre", 0)])


def test_runs_filters(store):
    a = store.add_experiment({}, name="d10", runs=planned(delay=10))
    b = store.add_experiment({}, name="d20", runs=planned(delay=20, schedules=("pre", "joint")))
    assert len(store.runs()) == 8
    assert set(store.runs(delay=20)["experiment_id"]) == {b}
    assert len(store.runs(task="copy", delay=10)) == 4 and store.runs(task="xor").empty
    assert len(store.runs(schedule="pre")) == 4 and len(store.runs(a, schedule=["pre", "joint"])) == 2
    store.set_run_status(b, "joint", [0], "running")
    assert list(store.runs(status="running")["schedule"]) == ["joint"]
    assert len(store.runs(status=["running", "queued"])) == 8


def test_one_experiment_holds_a_delay_sweep(store):
    """Runs are keyed by (delay, schedule, seed): the same schedule and seed at two delays are two runs."""
    eid = store.add_experiment({}, name="sweep", runs=planned(delay=10) + planned(delay=20))
    assert len(store.runs(eid)) == 8 and len(store.runs(eid, delay=20)) == 4
    record = make_record("pre", 0)
    record["config"]["task"]["delay"] = 20
    store.save_runs(eid, [record])
    assert store.set_run_status(eid, "pre", [1], "running", delay=10) == 1
    runs = store.runs(eid).set_index(["delay", "schedule", "seed"])
    assert runs.loc[(20, "pre", 0), "status"] == "done" and runs.loc[(10, "pre", 0), "status"] == "queued"
    assert runs.loc[(10, "pre", 1), "status"] == "running" and runs.loc[(20, "pre", 1), "status"] == "queued"
    assert len(store.runs(eid)) == 8


# The version-1 schema as released (MIGRATIONS[1]); a store of that version is upgraded when opened.
def test_version_1_store_is_migrated_keeping_its_rows(tmp_path):
    from floss_core.store import MIGRATIONS, _statements
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for statement in _statements(MIGRATIONS[1]):
        conn.execute(statement)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1'), ('store_id', 'abc')")
    conn.execute("INSERT INTO experiments (name, config_json, created_at, updated_at) VALUES ('old', '{}', 1, 1)")
    conn.execute("INSERT INTO runs (experiment_id, schedule, seed, config_json, status) "
                 "VALUES (1, 'pre', 3, '{\"task\": {\"name\": \"copy\", \"delay\": 40}}', 'done')")
    conn.execute("INSERT INTO metrics VALUES (1, 0, 'train_loss', 0.5)")
    conn.close()
    with Store(path, create=False) as s:
        assert s.integrity_check() == "ok" and s.last_change()[0] == "abc"
        runs = s.runs(1)
        assert list(runs["delay"]) == [40] and list(runs["status"]) == ["done"] and len(s.metrics(1)) == 1
    assert count(path, "SELECT value FROM meta WHERE key = 'schema_version'") == "5"
    with sqlite3.connect(path) as conn:  # the rebuilt runs table is still the parent of metrics
        conn.execute("PRAGMA foreign_keys = ON")
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        conn.execute("DELETE FROM experiments WHERE id = 1")
        assert conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 0
    conn.close()


def test_empty_results_have_columns(store):
    assert store.experiments().empty and "config" in store.experiments().columns
    eid = store.add_experiment({}, name="nothing yet")
    assert list(store.metrics(eid).columns) == ["run_id", "schedule", "seed", "member", "step", "name", "value"]
    assert list(store.spectra(eid).columns)[-2:] == ["index", "exponent"] and store.spectra(eid).empty
    assert "log_sv" in store.jacobian(eid).columns and store.runs(eid).empty
    assert store.progress(eid)["fraction"] is None and store.progress(eid)["runs"] == {}
    assert store.experiment(eid)["progress_total"] is None


def test_ids_from_dataframes_are_accepted(store):
    store.add_experiment({}, name="e", runs=planned())
    eid = store.experiments()["id"].iloc[0]  # a numpy int64, which sqlite3 cannot bind by itself
    assert type(eid).__module__ == "numpy"
    store.save_runs(eid, [make_record("pre", 0)])
    seed = store.runs(eid)["seed"].iloc[1]
    assert store.set_run_status(eid, "none", [seed], "running") == 1
    assert store.experiment(eid)["n_runs"] == 4 and len(store.metrics(eid)) == 120
    assert len(store.runs(delay=store.runs()["delay"].iloc[0])) == 4


# ---------------------------------------------------------------------- queue primitives

def test_claim_takes_oldest_then_none(store):
    first = store.add_experiment({}, name="a")
    second = store.add_experiment({}, name="b")
    assert store.claim_next_experiment("w1") == first
    assert store.claim_next_experiment("w2") == second
    assert store.claim_next_experiment("w1") is None
    exp = store.experiment(first)
    assert exp["status"] == "running" and exp["worker_id"] == "w1"


def test_claim_is_exclusive_across_processes(tmp_path):
    path = tmp_path / "floss.db"
    with Store(path) as s:
        ids = [s.add_experiment({}, name=f"e{i}") for i in range(30)]
    procs = [spawn("""
        s = store.Store(path)
        wait_for_go()
        got = []
        while (eid := s.claim_next_experiment(sys.argv[2])) is not None:
            got.append(eid)
        print(json.dumps(got))
        """, path, f"w{i}") for i in range(2)]
    start_together(path, procs)
    claimed = [finish(p) for p in procs]
    flat = [eid for got in claimed for eid in got]
    assert sorted(flat) == ids  # each experiment claimed exactly once


def test_claim_is_exclusive_across_connections(tmp_path):
    """Two Store objects (two connections) race for one experiment: exactly one wins."""
    path = tmp_path / "floss.db"
    with Store(path) as s:
        eid = s.add_experiment({}, name="only")
    stores = [Store(path) for _ in range(2)]
    barrier, results = threading.Barrier(2), [None, None]

    def claim(i):
        barrier.wait()
        results[i] = stores[i].claim_next_experiment(f"w{i}")

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(eid) == 1 and results.count(None) == 1
    for s in stores:
        s.close()


def test_status_and_progress(store):
    eid = store.add_experiment({}, name="e", runs=planned())
    assert store.set_run_status(eid, "pre", [0, 1], "running") == 2
    store.set_progress(eid, 30, 120, 42.5)
    store.set_experiment_status(eid, "running")
    p = store.progress(eid)
    assert p["step"] == 30 and p["total"] == 120 and p["fraction"] == 0.25 and p["eta_seconds"] == 42.5
    assert p["runs"] == {"queued": 2, "running": 2} and p["status"] == "running"
    store.save_runs(eid, [make_record("pre", 0)])
    assert store.mark_unfinished(eid, "failed") == 3  # pre/1 (running) + none/0, none/1 (queued)
    assert store.runs(eid).set_index(["schedule", "seed"])["status"].to_dict() == {
        ("none", 0): "failed", ("none", 1): "failed", ("pre", 0): "done", ("pre", 1): "failed"}
    store.set_experiment_status(eid, "failed", error="boom")
    assert store.experiment(eid)["error"] == "boom" and store.progress(eid)["status"] == "failed"
    with pytest.raises(ValueError, match="choose one of"):
        store.set_experiment_status(eid, "exploded")
    with pytest.raises(KeyError):
        store.set_progress(eid + 1, 1, 2, None)


def test_cancel(store):
    running = store.add_experiment({}, name="r", runs=planned())
    queued = store.add_experiment({}, name="q", runs=planned())
    assert store.claim_next_experiment("w") == running
    assert not store.cancel_requested(running)
    store.request_cancel(running)
    assert store.cancel_requested(running) and store.experiment(running)["status"] == "running"
    store.request_cancel(queued)  # no worker will ever see it: cancelled on the spot
    assert store.experiment(queued)["status"] == "cancelled"
    assert (store.runs(queued)["status"] == "cancelled").all()
    assert store.claim_next_experiment("w") is None
    store.delete_experiment(running)
    assert store.cancel_requested(running)  # deleted while running: the worker should stop


def test_heartbeat_and_requeue_stale(store):
    dead = store.add_experiment({}, name="dead", runs=planned())
    live = store.add_experiment({}, name="live", runs=planned())
    ghost = store.add_experiment({}, name="ghost", runs=planned())  # its worker never sent a heartbeat
    idle = store.add_experiment({}, name="idle", runs=planned())     # still queued: not touched
    store.heartbeat("w-dead", 1234, "busy")
    store.heartbeat("w-live", os.getpid(), "busy")   # a live process: a row on this host with a gone pid is dead
    for worker, eid in (("w-dead", dead), ("w-live", live), ("w-ghost", ghost)):
        assert store.claim_next_experiment(worker) == eid
    store.save_runs(dead, [make_record("pre", 0)])
    store.set_run_status(dead, "pre", [1], "running")
    with sqlite3.connect(store.path) as conn:  # the dead worker last beat 100 s ago
        conn.execute("UPDATE workers SET heartbeat_at = heartbeat_at - 100 WHERE worker_id = 'w-dead'")
    conn.close()

    assert [w["worker_id"] for w in store.alive_workers(max_age_s=15)] == ["w-live"]
    assert store.requeue_stale(max_age_s=15) == [dead, ghost]
    runs = store.runs(dead).set_index(["schedule", "seed"])
    assert runs.loc[("pre", 0), "status"] == "done" and runs.loc[("pre", 0), "attempts"] == 0
    assert (runs.drop(("pre", 0))["status"] == "queued").all()
    assert (runs.drop(("pre", 0))["attempts"] == 1).all()
    assert store.experiment(dead)["status"] == "queued" and store.experiment(dead)["attempts"] == 1
    assert store.experiment(dead)["worker_id"] is None
    assert store.experiment(live)["status"] == "running" and store.experiment(idle)["status"] == "queued"
    assert store.requeue_stale(max_age_s=15) == []
    assert store.metrics(dead)["run_id"].nunique() == 1  # the finished run's results survive

    store.heartbeat("w-live", os.getpid(), "idle")
    assert store.alive_workers()[0]["status"] == "idle"
    store.remove_worker("w-live")
    assert store.alive_workers() == []
    with pytest.raises(ValueError, match="idle, busy"):
        store.heartbeat("w", 1, "sleeping")


def test_delete_cascades(store):
    keep = store.add_experiment({"k": 1}, name="keep", runs=planned())
    drop = store.add_experiment({"k": 2}, name="drop", runs=planned())
    store.save_runs(keep, [make_record("pre", 0)])
    store.save_runs(drop, [make_record("pre", 0), make_record("none", 1)])
    assert store.delete_experiment(drop) and not store.delete_experiment(drop)
    assert list(store.experiments()["id"]) == [keep]
    assert count(store.path, "SELECT COUNT(*) FROM runs WHERE experiment_id = ?", (drop,)) == 0
    for table, per_run in (("metrics", 120), ("spectra", 2), ("jacobian", 2)):
        assert count(store.path, f"SELECT COUNT(*) FROM {table}") == per_run  # only keep's run is left
    assert len(store.runs(keep)) == 4 and store.rerun_config(keep) == {"k": 1}
    with pytest.raises(KeyError):
        store.rerun_config(drop)
    with pytest.raises(KeyError):
        store.experiment(drop)
    assert store.integrity_check() == "ok"


def test_last_change_moves_on_writes_only(store):
    first = store.last_change()
    store.experiments()
    assert store.last_change() == first
    eid = store.add_experiment({}, name="e")
    second = store.last_change()
    assert second != first
    store.set_progress(eid, 1, 10, 5.0)
    assert store.last_change() != second
    third = store.last_change()
    store.requeue_stale()  # nothing stale here, the experiment is queued: no change
    store.heartbeat("w", 1)
    assert store.last_change() == third


# ---------------------------------------------------------------------- concurrency

def test_concurrent_reader_and_two_writers(tmp_path):
    """Two worker processes save runs in a loop while a dashboard-like reader polls every 50 ms."""
    path = tmp_path / "floss.db"
    with Store(path) as s:
        eids = [s.add_experiment({}, name=f"w{i}") for i in range(2)]
    seconds, steps = 3.0, 25
    per_run = steps * 6
    writers = [spawn("""
        s = store.Store(path)
        eid, wid, seconds, steps = int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
        wait_for_go()
        n, stop = 0, time.time() + seconds
        while time.time() < stop:
            s.save_runs(eid, [make_record(wid, n, steps=steps), make_record(wid, n + 1, steps=steps)])
            s.set_progress(eid, n, None, None)
            s.heartbeat(wid, os.getpid(), "busy")
            n += 2
            time.sleep(0.05)
        print(json.dumps({"runs": n}))
        """, path, eid, f"w{i}", seconds, steps) for i, eid in enumerate(eids)]
    reader = spawn("""
        seconds, per_run = float(sys.argv[2]), int(sys.argv[3])
        wait_for_go()
        polls, stop = 0, time.time() + seconds + 0.2
        while time.time() < stop:
            s = store.Store(path, create=False)  # a fresh connection each poll, like an uncached page
            s.last_change()
            for eid in s.experiments()["id"]:
                runs = s.runs(eid)
                m = s.metrics(eid)
                sizes = m.groupby("run_id").size()
                assert (sizes == per_run).all(), f"partial run visible: {sizes[sizes != per_run]}"
                done = set(runs.loc[runs.status == "done", "run_id"])
                assert done <= set(sizes.index), "a done run without its metrics"
                s.spectra(eid); s.jacobian(eid); s.progress(eid)
            s.close()
            polls += 1
            time.sleep(0.05)
        print(json.dumps({"polls": polls}))
        """, path, seconds, per_run)
    start_together(path, [*writers, reader])
    written = [finish(w)["runs"] for w in writers]
    polls = finish(reader)["polls"]
    assert polls >= 3 and all(n >= 4 for n in written)  # low bars: shared CI machines can be slow
    with Store(path) as s:
        for eid, n in zip(eids, written):
            assert len(s.runs(eid)) == n
            assert len(s.metrics(eid)) == n * per_run
            assert len(s.jacobian(eid)) == n * 2
        assert s.integrity_check() == "ok"


# ---------------------------------------------------------------------- faults (issue 16, item 6)
def _gone_pid() -> int:
    """The pid of a process of this host that has ended (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_worker_whose_pid_is_gone_is_dead_at_once(store):
    """kill -9 leaves a 'busy' row with a fresh heartbeat; on this host a gone pid is proof of death: the row
    is marked dead and its experiment re-queued at once, long before the heartbeat would go stale."""
    from floss_core.store.queue import pid_alive

    gone = _gone_pid()
    assert not pid_alive(gone) and pid_alive(os.getpid())
    eid = store.add_experiment({}, name="orphaned", runs=planned())
    store.heartbeat("w-gone", gone, "busy")
    store.heartbeat("w-here", os.getpid(), "idle")
    store.heartbeat("w-elsewhere", gone, "idle")   # the same pid on another host says nothing about it
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE workers SET host = 'another-host' WHERE worker_id = 'w-elsewhere'")
    conn.close()
    assert store.claim_next_experiment("w-gone") == eid
    assert [w["worker_id"] for w in store.alive_workers(max_age_s=600)] == ["w-here", "w-elsewhere"]
    assert {w["worker_id"]: w["status"] for w in store.workers(max_age_s=600)} == \
        {"w-gone": "dead", "w-here": "idle", "w-elsewhere": "idle"}
    assert count(store.path, "SELECT status FROM workers WHERE worker_id = 'w-gone'") == "dead"
    assert store.requeue_stale(max_age_s=600) == [eid]
    exp = store.experiment(eid)
    assert exp["status"] == "queued" and exp["attempts"] == 1 and exp["worker_id"] is None
    # a late heartbeat is listed as dead but not written so: the worker may still beat again
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE workers SET heartbeat_at = heartbeat_at - 100 WHERE worker_id = 'w-here'")
    conn.close()
    assert {w["worker_id"]: w["status"] for w in store.workers(max_age_s=15)}["w-here"] == "dead"
    assert count(store.path, "SELECT status FROM workers WHERE worker_id = 'w-here'") == "idle"
    store.heartbeat("w-here", os.getpid(), "busy")
    assert [(w["worker_id"], w["status"]) for w in store.alive_workers()] == [("w-here", "busy"),
                                                                              ("w-elsewhere", "idle")]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="zombies are read from /proc (Linux)")
def test_an_unreaped_zombie_is_not_alive():
    from floss_core.store.queue import pid_alive

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 60
        while Path(f"/proc/{p.pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] != b"Z":
            assert time.monotonic() < deadline, "the child did not end"
            time.sleep(0.02)
        assert not pid_alive(p.pid)   # kill(pid, 0) still succeeds on a zombie
    finally:
        p.wait()


def test_a_read_only_store_reads_and_refuses_writes_in_one_line(store):
    eid = store.add_experiment({"k": 1}, name="kept", runs=planned())
    store.heartbeat("w", _gone_pid(), "busy")
    assert Store(store.path, read_only=None).read_only is False   # None: read-only only if it must be
    with Store(store.path, read_only=True) as ro:
        assert ro.read_only and "read_only=True" in repr(ro)
        assert list(ro.experiments()["name"]) == ["kept"] and len(ro.runs(eid)) == 4
        assert [w["status"] for w in ro.workers()] == ["dead"]      # listed dead, nothing written
        for write in (lambda: ro.add_experiment({}, name="x"), lambda: ro.request_cancel(eid),
                      lambda: ro.heartbeat("w2", 1), ro.requeue_stale, lambda: ro.save_cost_table({})):
            with pytest.raises(StoreError, match=f"cannot write the store {ro.path}") as e:
                write()
            assert "\n" not in str(e.value)
    assert count(store.path, "SELECT status FROM workers") == "busy"
    assert len(store.experiments()) == 1 and not store.cancel_requested(eid)


def test_a_read_only_open_never_migrates(tmp_path):
    from floss_core.store import MIGRATIONS, _statements

    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in _statements(MIGRATIONS[1]):
        conn.execute(statement)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1'), ('store_id', 'abc')")
    conn.close()
    before = sha(path)
    with pytest.raises(StoreError, match="schema version 1 and needs upgrading .* needs write permission"):
        Store(path, read_only=True)
    assert sha(path) == before
