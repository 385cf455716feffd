"""Tests for floss_core.runner and its CLI: queue -> worker subprocess -> store, crash recovery with
kill -9, cancel, the Dask and process-pool executors, bad input refused at submit, ensure_worker."""

import hashlib
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from floss_core import runner
from floss_core.runner import executors
from floss_core.cli import main
from floss_core.experiment import make_spec, plan, run_comparison
from floss_core.store import Store

ROOT = Path(__file__).resolve().parents[1]
# Tiny comparisons: two seeds, schedules none and pre, each job well under a second of training.
TINY = dict(hidden=8, steps=20, seeds=2, delays=[4], schedules=["none", "pre"], pre_steps=5, k=4, seq_len=12,
            floss_len=10, floss_transient=2)
TINY_ARGS = ["--hidden", "8", "--steps", "20", "--seeds", "2", "--delay", "4", "--schedules", "none,pre",
             "--pre-steps", "5", "--k", "4", "--seq-len", "12"]


def env(**extra):
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **extra}


@pytest.fixture
def procs():
    """Subprocesses started by a test; whatever is still running at the end is killed."""
    started = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=30)


def start_worker(procs, store_path, *args, **extra_env):
    p = subprocess.Popen([sys.executable, "-m", "floss_core", "worker", "--store", str(store_path), *args],
                         env=env(**extra_env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    procs.append(p)
    return p


def delay_statuses(store, eid) -> dict:
    return {(r.schedule, int(r.delay), int(r.seed)): r.status for r in store.runs(eid).itertuples()}


def finish(p, timeout=120) -> str:
    out, _ = p.communicate(timeout=timeout)
    assert p.returncode == 0, out
    return out


def wait_for(predicate, timeout=60.0, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def statuses(store, eid) -> dict:
    return {(r.schedule, r.seed): r.status for r in store.runs(eid).itertuples()}


def _reference(batch: bool, shards: int = 1):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_comparison(make_spec("quick", **TINY), batch=batch, shards=shards)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference():
    """The tiny comparison run in this process, on one torch thread like the workers: one ensemble
    holding both schedules, as a single worker runs it."""
    return _reference(True)


@pytest.fixture(scope="module")
def reference_per_schedule():
    """The same, one ensemble per schedule, as a process pool or a Dask cluster runs it."""
    return _reference(False)


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def assert_matches(store, eid, records, keys=("schedule", "seed"), layout=()):
    """The stored runs hold exactly the numbers of these in-process records (CPU runs are reproducible);
    ``layout``: final fields that describe the execution layout (e.g. ensemble_size), not a result."""
    runs = store.runs(eid).set_index(list(keys))
    metrics = store.metrics(eid)
    spectra = store.spectra(eid)
    assert len(runs) == len(records)
    for r in records:
        r = {**r, "delay": r["config"]["task"]["delay"]}
        row = runs.loc[tuple(r[k] for k in keys)]
        assert row["status"] == r["status"] and bool(row["success"]) == r["success"]
        step = row["convergence_step"]
        assert (None if pd.isna(step) else int(step)) == r["convergence_step"]
        for key, value in r["final"].items():
            if key in layout:
                continue
            if value is None:         # e.g. final.stopped_at of a run that trained its whole budget
                assert row[key] is None or pd.isna(row[key]), (r["schedule"], r["seed"], key, row[key])
                continue
            assert same(float(row[key]), float(value)), (r["schedule"], r["seed"], key, row[key], value)
        stored = metrics[metrics["run_id"] == row["run_id"]]
        # (a flossing phase logs several values at one training step: compare as sorted lists; repr: nan == nan)
        assert sorted((m.name, m.step, repr(float(m.value))) for m in stored.itertuples()) == \
            sorted((m["name"], m["step"], repr(float(m["value"]))) for m in r["metrics"])
        assert len(stored) > 0
        got = spectra[spectra["run_id"] == row["run_id"]]["exponent"].tolist()
        assert all(same(x, y) for x, y in zip(got, [x for s in r["spectra"] for x in s["exponents"]], strict=True))


# ------------------------------------------------------------------------------------ queue -> worker
@pytest.mark.slow
def test_submit_then_worker_subprocess_stores_what_an_in_process_run_gives(tmp_path, procs, reference, capsys):
    path = tmp_path / "floss.db"
    with Store(path) as store:
        eid = runner.submit(make_spec("quick", **TINY), store)
        assert store.experiment(eid)["status"] == "queued" and len(store.runs(eid)) == 4
        assert set(store.runs(eid)["delay"]) == {4} and set(store.runs(eid)["task"]) == {"xor"}

    out = finish(start_worker(procs, path, "--exit-when-idle"))
    assert f"experiment {eid} done" in out

    with Store(path) as store:
        exp = store.experiment(eid)
        assert exp["status"] == "done" and exp["error"] is None and exp["n_finished"] == 4
        assert exp["progress_step"] == exp["progress_total"] > 0
        assert set(store.runs(eid)["status"]) == {"done"} and not store.metrics(eid).empty
        assert store.alive_workers() == []  # the worker deregistered on its way out
        assert_matches(store, eid, reference)

    capsys.readouterr()
    main(["status", "--store", str(path), "--json"])
    listing = json.loads(capsys.readouterr().out)["experiments"]
    assert [(e["id"], e["status"], e["progress"], e["runs"], e["finished"]) for e in listing] == [(eid, "done", 1.0, 4, 4)]
    wins = {s: sum(r["success"] for r in reference if r["schedule"] == s) for s in ("none", "pre")}
    assert {s: h["successes"] for s, h in listing[0]["headline"].items()} == wins
    assert all(h["finished"] == 2 for h in listing[0]["headline"].values())
    main(["status", str(eid), "--store", str(path), "--json"])
    one = json.loads(capsys.readouterr().out)
    assert one["experiment"]["id"] == eid
    assert sorted((r["schedule"], r["seed"], r["status"]) for r in one["runs"]) == \
        [("none", 0, "done"), ("none", 1, "done"), ("pre", 0, "done"), ("pre", 1, "done")]
    main(["status", "--store", str(path)])
    assert "done" in capsys.readouterr().out


# ------------------------------------------------------------------------------------ crash safety
@pytest.mark.slow
def test_kill_9_mid_experiment_then_a_new_worker_reruns_only_the_interrupted_runs(tmp_path, procs):
    path = tmp_path / "floss.db"
    # One worker runs one ensemble per delay (every schedule inside): job d=4 finishes, the kill lands
    # while job d=6 floss-trains.
    spec = make_spec("quick", **{**TINY, "delays": [4, 6], "pre_steps": 80})
    done4 = {(s, d, seed): "done" for s in ("none", "pre") for d in (4,) for seed in (0, 1)}
    with Store(path) as store:
        eid = runner.submit(spec, store)
        worker = start_worker(procs, path, "--stale-after", "2")
        wait_for(lambda: delay_statuses(store, eid) == {**done4, **{(s, 6, seed): "running" for s in ("none", "pre")
                                                                    for seed in (0, 1)}},
                 what="job d=4 done and job d=6 running")
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
        before = store.runs(eid, delay=4).set_index(["schedule", "seed"])
        before_metrics = store.metrics(eid)
        before_metrics = before_metrics[before_metrics["run_id"].isin(before["run_id"])].reset_index(drop=True)
        assert store.experiment(eid)["status"] == "running"  # nobody knows yet that the worker is dead
        assert store.integrity_check() == "ok"
        wait_for(lambda: not store.alive_workers(max_age_s=2), timeout=30, what="the dead worker to go stale")

    out = finish(start_worker(procs, path, "--exit-when-idle", FLOSS_STALE_S="2"))
    assert f"experiment {eid} done" in out and "1 of 2 jobs to run" in out

    with Store(path) as store:
        assert store.integrity_check() == "ok"
        exp = store.experiment(eid)
        assert exp["status"] == "done" and exp["attempts"] == 1
        runs = store.runs(eid)
        assert set(runs["status"]) == {"done"}
        assert list(runs[runs["delay"] == 6]["attempts"]) == [1] * 4
        assert list(runs[runs["delay"] == 4]["attempts"]) == [0] * 4
        after = store.runs(eid, delay=4).set_index(["schedule", "seed"])
        # the finished runs were not rewritten: same rows, same timestamps, same curves
        assert list(after["run_id"]) == list(before["run_id"])
        assert list(after["finished_at"]) == list(before["finished_at"])
        metrics = store.metrics(eid)
        assert metrics[metrics["run_id"].isin(before["run_id"])].reset_index(drop=True).equals(before_metrics)
        # and the rerun is a clean one: every number equals an uninterrupted in-process run's
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
                assert_matches(store, eid, run_comparison(spec), keys=("schedule", "delay", "seed"))
        finally:
            torch.set_num_threads(threads)


@pytest.mark.slow
def test_cancel_stops_a_running_experiment_within_seconds(tmp_path, procs, capsys):
    path = tmp_path / "floss.db"
    spec = make_spec("quick", **{**TINY, "pre_steps": 100_000})  # job pre would floss for many minutes
    with Store(path) as store:
        eid = runner.submit(spec, store)
        # one job per schedule, so that job none finishes before job pre starts flossing
        worker = start_worker(procs, path, "--exit-when-idle", FLOSS_PER_SCHEDULE="1")
        wait_for(lambda: statuses(store, eid)[("pre", 0)] == "running", what="job pre running")
        wait_for(lambda: store.experiment(eid)["progress_step"] > 25, what="flossing under way")
        t0 = time.monotonic()
        main(["cancel", str(eid), "--store", str(path)])
        assert "cancel requested" in capsys.readouterr().out
        wait_for(lambda: store.experiment(eid)["status"] == "cancelled", timeout=20, interval=0.05,
                 what="the experiment to be cancelled")  # one cheap query per poll: 50 ms resolution
        latency = time.monotonic() - t0
        finish(worker, timeout=60)  # and the worker drains the (now empty) queue and exits
        assert latency < 5, f"cancel took {latency:.1f} s"
        assert statuses(store, eid) == {("none", 0): "done", ("none", 1): "done",
                                        ("pre", 0): "cancelled", ("pre", 1): "cancelled"}
        none = store.metrics(eid)
        assert set(none["schedule"]) == {"none"} and len(none) > 0  # finished results intact
        main(["cancel", str(eid), "--store", str(path)])
        assert "already cancelled" in capsys.readouterr().out


def test_cancel_of_a_queued_experiment_is_immediate(tmp_path):
    with Store(tmp_path / "floss.db") as store:
        eid = runner.submit(make_spec("quick", **TINY), store)
        assert runner.cancel(store, eid) == "cancelled"
        assert set(store.runs(eid)["status"]) == {"cancelled"}
        assert store.claim_next_experiment("w") is None


# ------------------------------------------------------------------------------------ executors
@pytest.mark.slow
def test_dask_local_cluster_stores_the_same_results_as_a_local_run(tmp_path, capsys):
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    path = tmp_path / "floss.db"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        threads = torch.get_num_threads()
        try:
            main(["compare", *TINY_ARGS, "--store", str(path), "--executor", "dask",
                  "--scheduler", cluster.scheduler_address, "--json"])
        finally:
            torch.set_num_threads(threads)
    eid = json.loads(capsys.readouterr().out)["experiment_id"]
    with Store(path) as store:
        assert store.experiment(eid)["status"] == "done"
        # the CLI's spec lacks floss_len: compare with a local run of exactly the stored spec
        spec_dict = store.rerun_config(eid)
    from floss_core.experiment import spec_from_dict
    torch.set_num_threads(1)
    try:
        local = run_comparison(spec_from_dict(spec_dict), batch=False)  # one job per schedule, as on Dask
    finally:
        torch.set_num_threads(threads)
    with Store(path) as store:
        assert_matches(store, eid, local)


@pytest.mark.slow
def test_process_pool_matches_the_in_process_run(tmp_path):
    # a pool of 2 cuts the runs in two even parts, each one ensemble
    spec = make_spec("quick", **TINY)
    assert [j.members for j in plan(spec, shards=2)] == [(("none", 0), ("pre", 0)), (("none", 1), ("pre", 1))]
    assert runner.planned_jobs(spec, "local", 2) == (True, 2)
    with Store(tmp_path / "floss.db") as store:
        eid = runner.run_here(spec, store, max_workers=2)
        assert store.experiment(eid)["status"] == "done"
        assert_matches(store, eid, _reference(True, shards=2))
        assert store.alive_workers() == []


@pytest.mark.slow
def test_every_execution_layout_stores_bit_identical_results(tmp_path):
    """1, 2 and 3 worker processes and a Dask cluster cut the 9 runs differently (9; 5 + 4; 3 + 3 + 3; one
    ensemble per schedule), yet every stored number equals the one ensemble of all 9 in this process:
    a network's computation does not depend on who shares its ensemble or process."""
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    spec = make_spec("quick", hidden=8, steps=24, seeds=3, delays=[4], schedules=["none", "pre", "pre+inter"],
                     pre_steps=8, inter_steps=4, inter_at=[10], k=4, seq_len=12, floss_len=10, floss_transient=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one_ensemble = run_comparison(spec, batch=True, shards=1)
        assert len(one_ensemble) == 9
        with Store(tmp_path / "floss.db") as store:
            for workers in (1, 2, 3):
                eid = runner.run_here(spec, store, max_workers=workers)
                assert store.experiment(eid)["status"] == "done"
                assert_matches(store, eid, one_ensemble, layout=("ensemble_size",))
                sizes = store.runs(eid)["ensemble_size"].astype(int)      # the layout itself is stored, per run
                assert sorted(set(sizes)) == sorted({9 // workers, -(-9 // workers)})
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                              dashboard_address=None) as cluster:
                eid = runner.run_here(spec, store, executor="dask", scheduler=cluster.scheduler_address)
            assert store.experiment(eid)["status"] == "done"
            assert_matches(store, eid, one_ensemble, layout=("ensemble_size",))
    finally:
        torch.set_num_threads(threads)


def test_an_in_process_run_uses_one_thread_and_gives_the_caller_its_setting_back(tmp_path, monkeypatch):
    seen = []
    real = executors.run_job
    monkeypatch.setattr(executors, "run_job", lambda *a, **k: (seen.append(torch.get_num_threads()), real(*a, **k))[1])
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with Store(tmp_path / "floss.db") as store:
            eid = runner.run_here(make_spec("quick", **TINY), store, max_workers=1)
            assert store.experiment(eid)["status"] == "done"
        assert seen and set(seen) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------ bad input
def _bad_csv(tmp_path):
    path = tmp_path / "series.csv"
    path.write_text("time,value\n0,1.0\n1,banana\n2,\x00\x01\n")
    return path


@pytest.mark.parametrize("args, field", [
    (["--delay", "0"], "delay"),
    (["--delay", "-4"], "delay"),
    (["--hidden", "8", "--k", "9"], "k"),
    (["--seeds", "0"], "seeds"),
    (["--task", "xorr"], "task"),
    (["--steps", "-5"], "steps"),
    (["--task", "csv", "--csv", "{csv}"], "csv"),
])
def test_bad_input_is_refused_at_submit_and_nothing_is_queued(tmp_path, capsys, args, field):
    path = tmp_path / "floss.db"
    Store(path).close()
    args = [a.replace("{csv}", str(_bad_csv(tmp_path))) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        main(["submit", "--store", str(path), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and field in err.lower() and "Traceback" not in err, err
    with Store(path) as store:
        assert store.experiments().empty and store.runs().empty


def _text(path):
    path.write_text("not a database\n")


def _newer(path):
    Store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()


@pytest.mark.parametrize("make", [_text, _newer])
@pytest.mark.parametrize("command", [["submit", *TINY_ARGS], ["status"], ["cancel", "1"], ["worker", "--exit-when-idle"],
                                     ["compare", *TINY_ARGS]])
def test_foreign_or_newer_store_is_refused_untouched(tmp_path, capsys, make, command):
    path = tmp_path / "floss.db"
    make(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--store", str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "Traceback" not in err
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    # nothing of ours next to it (SQLite itself may leave empty -wal/-shm beside a WAL-mode file it read)
    assert {p.name for p in tmp_path.iterdir()} <= {"floss.db", "floss.db-wal", "floss.db-shm"}


def test_submit_prints_the_id_and_status_of_a_missing_store_is_one_line(tmp_path, capsys):
    path = tmp_path / "floss.db"
    main(["submit", *TINY_ARGS, "--store", str(path), "--json"])
    assert json.loads(capsys.readouterr().out) == {"experiment_id": 1}
    main(["submit", *TINY_ARGS, "--store", str(path)])
    assert capsys.readouterr().out.strip() == "2"
    with pytest.raises(SystemExit):
        main(["status", "--store", str(tmp_path / "none.db")])
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "none.db").exists()
    with pytest.raises(SystemExit):
        main(["status", "7", "--store", str(path)])
    assert "no experiment 7" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ ensure_worker
@pytest.mark.slow
def test_ensure_worker_starts_exactly_one_detached_worker(tmp_path, monkeypatch):
    path = tmp_path / "data" / "floss.db"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with Store(path) as store:
        eid = runner.submit(make_spec("quick", **TINY), store)
    pid = runner.ensure_worker(path)
    try:
        assert isinstance(pid, int) and os.getpgid(pid) == pid  # its own session: survives the caller
        assert runner.ensure_worker(path) is None  # registered at once, before it even imported torch
        with Store(path) as store:
            wait_for(lambda: store.experiment(eid)["status"] == "done", timeout=120, what="the worker to run it")
            assert [w["pid"] for w in store.alive_workers()] == [pid]
            assert runner.ensure_worker(path) is None
        assert (path.parent / "worker.log").read_text().count(f"experiment {eid} done") == 1
        os.kill(pid, signal.SIGTERM)  # a clean stop deregisters
        wait_for(lambda: _gone(pid), timeout=30, what="the worker to exit")
        with Store(path) as store:
            assert store.alive_workers() == []
    finally:
        if not _gone(pid):
            os.killpg(pid, signal.SIGKILL)
            wait_for(lambda: _gone(pid), timeout=30)


def _gone(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == pid
