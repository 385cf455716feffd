"""Operations that survive faults (issue 16, item 6), against real processes and real SQLite files:

* ``kill -9`` of a worker running its local process pool takes the pool's processes with it;
* a dead worker's row is marked dead, by the next worker and by the dashboard's listing, and its
  experiment is recovered at once (not after the heartbeat goes stale);
* a store this user may not write: one line naming the path and the permission problem, exit 2, for
  every command that writes; one it may only read is still read by ``status`` and ``report``.

Permissions: the tests run as root here, and root's CAP_DAC_OVERRIDE ignores file modes. The commands
under test therefore run in a subprocess that drops CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER
from its capability bounding set before it execs python (``prctl(PR_CAPBSET_DROP)`` in ``preexec_fn``):
after exec, root's capabilities are the bounding set, so the kernel applies the file modes to it as to
any owner (the interpreter under /root stays reachable, which a switch to uid 65534 would not allow).
As a non-root user the modes apply anyway and nothing is dropped.
"""
import ctypes
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from floss_core import runner
from floss_core.experiment import make_spec, run_comparison, spec_to_dict
from floss_core.store import Store
from test_runner import TINY, TINY_ARGS, env, procs, start_worker, wait_for  # noqa: F401  (procs: the fixture)

ROOT = Path(__file__).resolve().parents[1]
# long enough that a kill always lands mid-training: nothing ever waits for it to finish
LONG = dict(TINY, steps=20000, seeds=4, delays=[4, 6])


# ------------------------------------------------------------------------------------ processes (/proc)
def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process from /proc, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0].decode(), int(fields[1])


def running(pid: int) -> bool:
    """The process exists and is not a zombie (dead, waiting to be reaped)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def children(pid: int) -> dict[int, str]:
    """{pid: command line} of the running children of ``pid`` (from /proc: psutil is no dependency)."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[1] == pid and stat[0] not in ("Z", "X"):
                try:
                    out[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    pass
    return out


def pool_children(pid: int) -> dict[int, str]:
    """The spawned ProcessPoolExecutor processes among ``pid``'s children."""
    return {c: cmd for c, cmd in children(pid).items() if "spawn_main" in cmd}


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc (Linux)")


def _kill_worker_and_expect_pool_gone(procs, tmp_path, *, wait_for_training: bool):
    path = tmp_path / "floss.db"
    with Store(path) as store:
        eid = runner.submit(make_spec("quick", **LONG), store)
        # the default local executor with a pool of two processes (what FLOSS_WORKERS=auto gives on 2 cores)
        worker = start_worker(procs, path, "--workers", "2", "--exit-when-idle", FLOSS_WORKERS="auto")
        pool = wait_for(lambda: len(pool_children(worker.pid)) >= 2 and pool_children(worker.pid), timeout=120,
                        what="the worker's pool processes")
        if wait_for_training:   # the pool processes have run their initializer and train
            wait_for(lambda: store.experiment(eid)["progress_step"] > 0, timeout=120, what="training to start")
        everyone = children(worker.pid)    # the pool and multiprocessing's resource tracker
        assert set(pool) <= set(everyone)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
        try:   # kill -9 runs nothing in the worker: the kernel (or the processes themselves) must end them
            wait_for(lambda: not any(running(pid) for pid in everyone), timeout=60 if not wait_for_training else 5,
                     interval=0.05, what=f"the dead worker's processes {sorted(everyone)} to end")
        finally:   # a failure leaves no orphans behind
            for pid in everyone:
                if running(pid):
                    os.kill(pid, signal.SIGKILL)
    # and no pool process died inside torch's build lock of the compiled loop, which would leave the next
    # process that loads it waiting (the pool loads it before it asks for the death signal)
    r = subprocess.run([sys.executable, "-c", "from floss_core import native; native.load()"], env=env(),
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    return eid


@needs_proc
@pytest.mark.slow
def test_kill_9_of_a_worker_ends_its_pool_processes(tmp_path, procs):
    """Killed mid-training: the pool's processes die within a few seconds (PR_SET_PDEATHSIG)."""
    _kill_worker_and_expect_pool_gone(procs, tmp_path, wait_for_training=True)


@needs_proc
@pytest.mark.slow
def test_kill_9_while_the_pool_is_still_starting_ends_it_too(tmp_path, procs):
    """Killed while its pool's processes still import torch, before they could ask for the signal: they
    see they were orphaned as soon as they start (their parent's pid is not their parent any more)."""
    _kill_worker_and_expect_pool_gone(procs, tmp_path, wait_for_training=False)


@needs_proc
@pytest.mark.slow
def test_watchdog_ends_an_orphan_where_prctl_is_not_used(procs):
    """The fallback where prctl is unavailable: a thread that polls the parent's pid."""
    child_code = ("import os, sys, time; from floss_core.runner.executors import die_with_parent; "
                  "print(die_with_parent(int(sys.argv[1]), use_prctl=False, interval_s=0.1), flush=True); "
                  "time.sleep(300)")
    parent_code = ("import os, subprocess, sys, time; "
                   f"c = subprocess.Popen([sys.executable, '-c', {child_code!r}, str(os.getpid())]); "
                   "print(c.pid, flush=True); time.sleep(300)")
    parent = subprocess.Popen([sys.executable, "-c", parent_code], env=env(), stdout=subprocess.PIPE, text=True)
    procs.append(parent)
    child = int(parent.stdout.readline())
    assert parent.stdout.readline().strip() == "watchdog"   # the child (same stdout): its watchdog runs
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(timeout=30)
    try:
        wait_for(lambda: not running(child), timeout=5, interval=0.05, what="the orphan to end")
    finally:
        if running(child):
            os.kill(child, signal.SIGKILL)


# ------------------------------------------------------------------------------------ dead workers' rows
def _worker_row(path, worker_id) -> dict:
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM workers WHERE worker_id = ?", (worker_id,)).fetchone()
    conn.close()
    return dict(row) if row else {}


# One process each; a 10-minute stale-heartbeat threshold, so that only the pid check can tell a killed worker
# is dead; and exit when idle, so that no worker measures the cost table while idle, where a kill from the
# fixture could land inside torch's build lock of the compiled loop and leave later processes waiting on it.
HEIR_ARGS = ("--workers", "1", "--stale-after", "600", "--exit-when-idle")


def _killed_busy_worker(procs, path) -> tuple[int, str]:
    """A queued long experiment, claimed by a worker that is then killed -9: (experiment id, worker id)."""
    with Store(path) as store:
        eid = runner.submit(make_spec("quick", **LONG), store)
    worker_id = "victim"
    worker = start_worker(procs, path, "--worker-id", worker_id, *HEIR_ARGS)
    with Store(path) as store:
        wait_for(lambda: store.experiment(eid)["progress_step"] > 0, timeout=120, what="the worker to train")
    assert _worker_row(path, worker_id)["status"] == "busy"
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)
    row = _worker_row(path, worker_id)
    # what kill -9 leaves behind: a 'busy' row with a fresh heartbeat, its experiment 'running'
    assert row["status"] == "busy" and time.time() - row["heartbeat_at"] < 60
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT status, worker_id FROM experiments WHERE id = ?", (eid,)).fetchone() == \
            ("running", worker_id)
    conn.close()
    return eid, worker_id


@pytest.mark.slow
def test_the_next_worker_marks_a_killed_worker_dead_and_takes_over_at_once(tmp_path, procs):
    path = tmp_path / "floss.db"
    eid, victim = _killed_busy_worker(procs, path)
    t0 = time.monotonic()
    heir = start_worker(procs, path, "--worker-id", "heir", *HEIR_ARGS)
    with Store(path) as store:
        wait_for(lambda: store.experiment(eid)["worker_id"] == "heir", timeout=120,
                 what="the next worker to take the experiment over")
        assert time.monotonic() - t0 < 120
        assert _worker_row(path, victim)["status"] == "dead"
        exp = store.experiment(eid)
        assert exp["status"] == "running" and exp["attempts"] == 1   # re-queued once, as crash recovery does
        assert [w["worker_id"] for w in store.alive_workers(max_age_s=600)] == ["heir"]
        store.request_cancel(eid)
        wait_for(lambda: store.experiment(eid)["status"] == "cancelled", timeout=60, what="the cancel")
    out = heir.communicate(timeout=60)[0]
    assert heir.returncode == 0, out


@pytest.mark.slow
def test_the_dashboard_marks_a_killed_worker_dead(tmp_path, procs, monkeypatch):
    """The Runs page asks ``Store.alive_workers()``: the killed worker is not alive, its row is marked dead,
    the page says no worker is alive, and a worker started from there recovers the experiment."""
    from streamlit.testing.v1 import AppTest

    path = tmp_path / "floss.db"
    eid, victim = _killed_busy_worker(procs, path)
    with Store(path) as store:
        assert store.alive_workers() == []      # the page's own call, with its default threshold of 15 s
        assert [(w["worker_id"], w["status"]) for w in store.workers()] == [(victim, "dead")]
    assert _worker_row(path, victim)["status"] == "dead"

    monkeypatch.setenv("FLOSS_STORE", str(path))
    monkeypatch.setenv("FLOSS_NO_WORKER", "1")
    sys.path.insert(0, str(ROOT))
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.query_params["experiment"] = str(eid)
        at.run()
        at.switch_page("pages/2_Runs.py").run()
    finally:
        sys.path.remove(str(ROOT))
    assert not at.exception, [e.value for e in at.exception]
    assert any("No worker is alive" in w.value for w in at.warning)

    with Store(path) as store:   # what "Start a worker" starts: it takes the experiment over at once
        heir = start_worker(procs, path, "--worker-id", "heir", *HEIR_ARGS)
        wait_for(lambda: store.experiment(eid)["worker_id"] == "heir", timeout=120, what="the new worker")
        assert store.experiment(eid)["attempts"] == 1
        store.request_cancel(eid)
        wait_for(lambda: store.experiment(eid)["status"] == "cancelled", timeout=60, what="the cancel")
    out = heir.communicate(timeout=60)[0]
    assert heir.returncode == 0, out


# ------------------------------------------------------------------------------------ permissions
_PR_CAPBSET_DROP = 24
_CAPS = (1, 2, 3)   # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER


def _drop_file_override() -> None:
    """preexec_fn: as root, give up the capabilities that override file modes (see the module's note)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in _CAPS:
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            os._exit(97)


def unprivileged(*args, timeout=180) -> subprocess.CompletedProcess:
    """``python -m floss_core ARGS`` as a user the file modes apply to."""
    return subprocess.run([sys.executable, "-m", "floss_core", *map(str, args)], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=_drop_file_override if os.geteuid() == 0 else None)


_MANY = """
import contextlib, io, json, sys, traceback
from floss_core.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            traceback.print_exc(file=err)
            code = 1
    results.append({"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
print(json.dumps(results))
"""


def unprivileged_many(*argvs) -> list[SimpleNamespace]:
    """Several commands, each through the CLI's ``main`` as ``python -m floss_core`` calls it, in one
    unprivileged process (one torch import for all): [(returncode, stdout, stderr)] in order."""
    r = subprocess.run([sys.executable, "-c", _MANY, json.dumps([[str(a) for a in argv] for argv in argvs])],
                       cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300,
                       preexec_fn=_drop_file_override if os.geteuid() == 0 else None)
    assert r.returncode == 0, r.stderr
    return [SimpleNamespace(**result) for result in json.loads(r.stdout.splitlines()[-1])]


@pytest.fixture(scope="module")
def modes_apply(tmp_path_factory):
    """Skip unless file modes bind the commands run by ``unprivileged`` (they do, as root or not, where
    the capability bounding set may be changed: everywhere but some locked-down containers)."""
    folder = tmp_path_factory.mktemp("probe")
    folder.chmod(0o555)
    try:
        r = subprocess.run([sys.executable, "-c", f"open({str(folder / 'x')!r}, 'w')"], capture_output=True,
                           preexec_fn=_drop_file_override if os.geteuid() == 0 else None)
    finally:
        folder.chmod(0o755)
    if r.returncode == 97:
        pytest.skip("this process may not drop capabilities (no CAP_SETPCAP): root ignores file modes here")
    assert r.returncode != 0 and b"PermissionError" in r.stderr, "a folder of mode 0555 was writable"


def one_line_exit_2(r, *expected):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    for text in expected:
        assert text in r.stderr, (text, r.stderr)
    assert "is not a Gradient Flossing Lab store" not in r.stderr, r.stderr


@pytest.fixture
def finished_store(tmp_path):
    """A store holding one finished tiny comparison, closed (no -wal / -shm left beside it)."""
    folder = tmp_path / "store"
    path = folder / "floss.db"
    spec = make_spec("quick", name="kept", **TINY)
    with Store(path) as s:
        s.save_runs(s.add_experiment(spec_to_dict(spec), name=spec.name, status="done"), run_comparison(spec))
    assert sorted(p.name for p in folder.iterdir()) == ["floss.db"]
    yield path
    for p in (folder, *folder.iterdir()):
        p.chmod(0o755)


@pytest.mark.slow
def test_submit_where_the_folder_is_not_writable_is_one_line_exit_2(tmp_path, modes_apply):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:   # as a user meets it: python -m floss_core submit
        one_line_exit_2(unprivileged("submit", "--store", locked / "x.db", *TINY_ARGS), str(locked / "x.db"),
                        "permission denied", f"may not write to the folder {locked}")
        # every command that creates a store: the same line
        deeper = locked / "sub" / "x.db"
        for r in unprivileged_many(["submit", "--store", deeper, *TINY_ARGS],
                                   ["compare", "--store", locked / "x.db", *TINY_ARGS],
                                   ["worker", "--store", locked / "x.db", "--exit-when-idle"]):
            one_line_exit_2(r, "permission denied", f"may not write to the folder {locked}")
        assert list(locked.iterdir()) == []     # nothing was created
    finally:
        locked.chmod(0o755)


@pytest.mark.slow
def test_a_read_only_store_is_read_by_status_and_report_and_refused_for_writes(finished_store, tmp_path,
                                                                                 modes_apply):
    path, folder = finished_store, finished_store.parent
    out = tmp_path / "out"
    out.mkdir()
    path.chmod(0o444)
    folder.chmod(0o555)
    # as a user meets it: python -m floss_core status / report
    r = unprivileged("status", "--store", path, "--json")
    assert r.returncode == 0, r.stderr
    assert [(e["name"], e["status"], e["finished"]) for e in json.loads(r.stdout)["experiments"]] == \
        [("kept", "done", 4)]
    r = unprivileged("report", "1", "--store", path, "--format", "zip", "--out", out)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).parent == out and Path(r.stdout.strip()).stat().st_size > 0
    assert sorted(p.name for p in folder.iterdir()) == ["floss.db"]   # read immutable: no -shm was made
    before = path.read_bytes()
    # a read-only file or a read-only folder (where WAL's -wal and -shm live), in every combination; the
    # case that leaves a -shm behind (a read-only connection in a writable folder) comes last
    for file_mode, folder_mode in ((0o444, 0o555), (0o644, 0o555), (0o444, 0o755)):
        path.chmod(file_mode)
        folder.chmod(folder_mode)
        where = f"file {oct(file_mode)}, folder {oct(folder_mode)}"
        status, one, submit, cancel, worker = unprivileged_many(
            ["status", "--store", path, "--json"], ["status", "1", "--store", path],
            ["submit", "--store", path, *TINY_ARGS], ["cancel", "1", "--store", path],
            ["worker", "--store", path, "--exit-when-idle"])
        assert status.returncode == 0 and json.loads(status.stdout)["experiments"][0]["name"] == "kept", \
            (where, status.stderr)
        assert one.returncode == 0 and "experiment 1 'kept': done" in one.stdout, (where, one.stderr)
        # writes: refused in one line naming the store and the permission, the file untouched
        for r in (submit, cancel, worker):
            one_line_exit_2(r, f"cannot write the store {path}", "permission denied")
        assert path.read_bytes() == before, where


@pytest.mark.slow
def test_an_unreadable_store_says_permission_denied(finished_store, tmp_path, modes_apply):
    path = finished_store
    path.chmod(0o000)
    for r in unprivileged_many(["status", "--store", path], ["report", "1", "--out", tmp_path, "--store", path],
                               ["submit", *TINY_ARGS, "--store", path]):
        one_line_exit_2(r, f"cannot read the store {path}", "permission denied")


@pytest.mark.slow
def test_a_read_only_copy_with_a_pending_write_ahead_log_is_refused_not_misread(tmp_path, modes_apply):
    """No -shm and a folder that may not hold one, but a -wal with transactions in it: an immutable read would
    silently skip them, so it is refused, saying why."""
    live = tmp_path / "live"
    with Store(live / "floss.db") as s:
        s.add_experiment({}, name="checkpointed")
        conn = sqlite3.connect(live / "floss.db")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        s.add_experiment({}, name="only in the log")   # stays in floss.db-wal while a connection is open
        copy = tmp_path / "copy"
        copy.mkdir()
        for name in ("floss.db", "floss.db-wal"):
            (copy / name).write_bytes((live / name).read_bytes())
        conn.close()
    assert (copy / "floss.db-wal").stat().st_size > 0
    copy.chmod(0o555)
    try:
        r = unprivileged("status", "--store", copy / "floss.db")
        one_line_exit_2(r, str(copy / "floss.db"), "permission denied", "floss.db-wal")
    finally:
        copy.chmod(0o755)
