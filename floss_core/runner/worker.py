"""Workers: the loop that claims queued experiments and runs them, its heartbeat, running one comparison
in the calling process (``run_here``), and starting a detached worker for the dashboard (``ensure_worker``).

Crash safety comes from the store: a worker heartbeats every few seconds from a thread of its own, and
``Store.requeue_stale`` puts the unfinished runs of a silent worker's experiment back in the queue
(``stale_after``: FLOSS_STALE_S seconds without a heartbeat). A worker killed outright (``kill -9``) on
this host is noticed sooner: its pid is gone, so the next worker to start (``requeue_stale`` runs first
thing) or the dashboard's ``Store.alive_workers`` marks its row dead and its experiment goes back to the
queue at once; its pool's processes died with it (``executors.die_with_parent``). A worker leaving
cleanly (also on SIGTERM or Ctrl-C) deregisters and hands back what it was running at once.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from .. import settings
from ..experiment import ComparisonSpec
from ..store import Store
from .executors import _finish, check_executor, run_experiment
from .queue import _opened, submit

log = logging.getLogger("floss_core.runner")  # one logger for the whole runner (the worker's log names it)

HEARTBEAT_S = 2.0         # a worker's heartbeat period
LOG_NAME = "worker.log"   # detached workers' output, next to the store file


def stale_after() -> float:
    """Seconds without a heartbeat after which a worker is dead: ``$FLOSS_STALE_S``, else 15
    (ValueError, one line, if it is not a number of seconds > 0)."""
    return settings.get("FLOSS_STALE_S")


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class _Heartbeat(threading.Thread):
    """Refreshes this worker's heartbeat row every ``interval`` seconds, on its own connection."""

    def __init__(self, store_path: Path, worker_id: str, interval: float):
        super().__init__(name="floss-heartbeat", daemon=True)
        self.store_path, self.worker_id, self.interval = store_path, worker_id, interval
        self.status = "idle"
        self._stop_event = threading.Event()

    def run(self) -> None:
        store = None
        try:
            while not self._stop_event.wait(self.interval):
                try:
                    store = store or Store(self.store_path, create=False)
                    store.heartbeat(self.worker_id, os.getpid(), self.status)
                except Exception as e:  # noqa: BLE001 - keep beating; a missed beat is not fatal
                    log.warning("heartbeat failed: %s", e)
        finally:
            if store is not None:
                store.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@contextlib.contextmanager
def _registered(store: Store, worker_id: str, stale_s: float):
    """Heartbeat as ``worker_id`` while inside; on the way out (also on SIGTERM / Ctrl-C) deregister and
    hand back whatever this worker was still running, so another worker picks it up at once."""
    store.heartbeat(worker_id, os.getpid(), "idle")
    beat = _Heartbeat(store.path, worker_id, min(HEARTBEAT_S, stale_s / 3))
    beat.start()
    try:
        yield beat
    finally:
        beat.stop()  # joined first: a late beat must not resurrect the row removed below
        store.remove_worker(worker_id)
        requeued = store.requeue_stale(max_age_s=stale_s)
        if requeued:
            log.info("worker %s: re-queued experiments %s on the way out", worker_id, requeued)
        requeued = store.requeue_stale_advice(max_age_s=stale_s)
        if requeued:
            log.info("worker %s: re-queued advice %s on the way out", worker_id, requeued)


def worker_loop(store_path=None, *, worker_id: str | None = None, exit_when_idle: bool = False,
                poll_s: float = 1.0, executor: str = "local", scheduler: str | None = None,
                max_workers: int | None = None, stale_s: float | None = None) -> int:
    """Process queued experiments until stopped (or, with ``exit_when_idle``, until the queue is empty).

    Heartbeats every few seconds from a background thread, re-queues experiments (and schedule searches)
    of dead workers (no heartbeat for ``stale_s`` seconds, default ``stale_after()``) at start and
    periodically, claims the oldest queued experiment and runs it with ``run_experiment``; with none
    queued, the oldest queued schedule search (``advise.run_advice``). Returns the number of experiments
    and searches run.

    Raises:
        StoreError: the path is not a floss store (the file is left untouched).
    """
    stale_s = stale_after() if stale_s is None else float(stale_s)
    check_executor(executor, scheduler)
    store = Store(store_path)
    worker_id = worker_id or new_worker_id()
    ran, last_requeue = 0, -math.inf
    costs = _CostTable(store, max_workers) if executor == "local" and not exit_when_idle else None
    log.info("worker %s on %s (executor %s%s)", worker_id, store.path, executor,
             f" at {scheduler}" if scheduler else "")
    try:
        with _registered(store, worker_id, stale_s) as beat:
            while True:
                if time.monotonic() - last_requeue >= stale_s / 2:
                    last_requeue = time.monotonic()
                    requeued = store.requeue_stale(max_age_s=stale_s)
                    if requeued:
                        log.info("re-queued experiments %s of dead workers", requeued)
                    requeued = store.requeue_stale_advice(max_age_s=stale_s)
                    if requeued:
                        log.info("re-queued advice %s of dead workers", requeued)
                experiment_id = store.claim_next_experiment(worker_id)
                if experiment_id is None and _run_queued_advice(store, worker_id, beat, executor=executor,
                                                                scheduler=scheduler, max_workers=max_workers):
                    ran += 1
                    continue
                if experiment_id is None:
                    if exit_when_idle:
                        return ran
                    if costs is not None and costs.measure_next():   # idle: a part of this machine's cost table
                        continue
                    time.sleep(poll_s)
                    continue
                beat.status = "busy"
                store.heartbeat(worker_id, os.getpid(), "busy")
                try:
                    run_experiment(store, experiment_id, executor=executor, scheduler=scheduler,
                                   worker_id=worker_id, max_workers=max_workers)
                except Exception as e:  # noqa: BLE001 - e.g. the store stayed locked: fail it, keep serving
                    log.exception("experiment %s: the worker hit an error", experiment_id)
                    with contextlib.suppress(Exception):
                        _finish(store, experiment_id, "failed", f"worker error: {type(e).__name__}: {e}")
                ran += 1
                beat.status = "idle"
    finally:
        store.close()


def _run_queued_advice(store: Store, worker_id: str, beat: _Heartbeat, **options) -> bool:
    """With no experiment queued: claim the oldest queued schedule search (``advise``) and run it to its
    end (its trials are experiments held by this worker); False when none is queued."""
    advice_id = store.claim_next_advice(worker_id)
    if advice_id is None:
        return False
    from ..advise import run_advice

    beat.status = "busy"
    store.heartbeat(worker_id, os.getpid(), "busy")
    try:
        run_advice(store, advice_id, worker_id=worker_id, **options)   # a failure is the advice's, not ours
    finally:
        beat.status = "idle"
    return True


class _CostTable:
    """This machine's cost table (``floss_core.costs``), measured by an idle worker one part at a time
    (a few seconds each, so a queued experiment waits at most one part) and saved after each, until the
    store holds all of it; a table of another machine (or floss_core, torch, ...) is measured anew."""

    def __init__(self, store: Store, workers: int | None):
        self.store, self.workers, self.done = store, workers, False

    def measure_next(self) -> bool:
        """Measure and save the next missing part; False when there is none (or measuring failed)."""
        if self.done:
            return False
        try:
            from .. import costs
            from ..configs import resolve_device

            device = resolve_device("auto").type
            table = self.store.cost_table(device)
            if not costs.fresh(table, device):
                table = costs.new_table(device)
            todo = costs.missing(table, costs.parts())
            if not todo:
                self.done = True
                return False
            t0 = time.perf_counter()
            costs.measure_part(table, todo[0], device=device, workers=self.workers)
            latest = self.store.cost_table(device)    # another worker may have saved parts meanwhile
            if costs.fresh(latest, device):
                latest["parts"].update(table["parts"])
                table = latest
            self.store.save_cost_table(table, device)
            log.info("cost table: measured %s in %.1f s (%d parts left)", todo[0], time.perf_counter() - t0,
                     len(todo) - 1)
            return True
        except Exception as e:  # noqa: BLE001 - the estimate waits; the worker keeps serving the queue
            log.warning("cost table: measuring stopped: %s: %s", type(e).__name__, e)
            self.done = True
            return False


def run_here(spec: ComparisonSpec, store, *, executor: str = "local", scheduler: str | None = None,
             max_workers: int | None = None) -> int:
    """Store and run a comparison in this process (``compare --store``); returns the experiment id.

    The experiment is registered as running by this process (with a heartbeat), so no worker takes it;
    if this process is interrupted, what is unfinished is marked cancelled.
    """
    worker_id = new_worker_id()
    with _opened(store) as store, _registered(store, worker_id, stale_after()) as beat:
        beat.status = "busy"
        experiment_id = submit(spec, store, worker_id=worker_id)
        try:
            run_experiment(store, experiment_id, executor=executor, scheduler=scheduler, worker_id=worker_id,
                           max_workers=max_workers)
        except BaseException:
            with contextlib.suppress(Exception):
                _finish(store, experiment_id, "cancelled", "interrupted")
            raise
    return experiment_id


def ensure_worker(store_path=None) -> int | None:
    """Start a detached ``python -m floss_core worker --store PATH`` if no worker is alive.

    Returns the new worker's pid, or None when one is alive already. Never trains in this process.
    The worker inherits the environment (FLOSS_EXECUTOR, FLOSS_SCHEDULER, FLOSS_WORKERS, ...) and writes
    its log to ``worker.log`` next to the store. The check and the start hold a lock file, and the new
    worker is registered before this returns, so concurrent callers start exactly one.
    """
    if settings.get("FLOSS_EXECUTOR") == "dask" and not settings.get("FLOSS_SCHEDULER"):
        raise ValueError("FLOSS_EXECUTOR=dask needs FLOSS_SCHEDULER=tcp://HOST:8786 for the worker")
    stale_s = stale_after()
    store = Store(store_path)
    path = store.path.resolve()
    try:
        with _spawn_lock(path):
            if store.alive_workers(max_age_s=stale_s):
                return None
            worker_id = new_worker_id() + ":detached"
            package_root = str(Path(__file__).resolve().parents[2])  # the folder holding floss_core/
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
            with open(path.parent / LOG_NAME, "ab") as log_file:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "floss_core", "worker", "--store", str(path), "--worker-id", worker_id],
                    stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                    cwd=str(path.parent), start_new_session=True)
            store.heartbeat(worker_id, proc.pid, "idle")  # alive from now on, even while it imports torch
            return proc.pid
    finally:
        store.close()


@contextlib.contextmanager
def _spawn_lock(store_path: Path):
    """Hold an exclusive lock file next to the store while checking for a worker and starting one."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, the heartbeat row alone guards
        yield
        return
    with open(store_path.with_name(store_path.name + ".spawn-lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
