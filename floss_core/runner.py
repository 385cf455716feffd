"""The job runner: comparisons queued in the store, run by a worker process, locally or on Dask.

An experiment (a comparison spec) is planned as one job per (delay, schedule): one ensemble that trains
all seeds at once (``experiment.run_job``). The worker that claimed the experiment alone writes the store:

* ``local`` executor: jobs run one after another in the worker, or, with ``max_workers > 1``, in a
  ``ProcessPoolExecutor`` (spawned processes, one torch thread each) that hands records back;
* ``dask`` executor: each job is a task ``_dask_job(spec_dict, delay, schedule)`` on a Dask distributed
  cluster; the task returns its records as JSON text, so only plain data travels back.

Crash safety comes from the store: a job's records land in one transaction (``Store.save_runs``), a
worker heartbeats every few seconds, and ``Store.requeue_stale`` puts the unfinished runs of a silent
worker's experiment back in the queue. ``run_experiment`` skips jobs whose runs are all final, so a
rerun trains only what was interrupted and never rewrites a finished run.

Environment: FLOSS_STORE (store path), FLOSS_EXECUTOR / FLOSS_SCHEDULER / FLOSS_WORKERS (defaults of
``worker``), FLOSS_STALE_S (seconds without a heartbeat before a worker counts as dead, default 15),
FLOSS_THREADS (torch threads of a worker running one job at a time; default: torch's own).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, replace
from pathlib import Path

from .experiment import (ComparisonSpec, Job, job_units, plan, run_job, shards_for, spec_from_dict, spec_to_dict,
                         validate_spec)
from . import native
from .store import FINAL_RUN_STATUSES, Store
from .train import Cancelled

log = logging.getLogger("floss_core.runner")

EXECUTORS = ("local", "dask")
HEARTBEAT_S = 2.0         # a worker's heartbeat period
STALE_S = 15.0            # default: no heartbeat for this long = the worker is dead
PROGRESS_EVERY_S = 1.0    # progress writes, at most once per this many seconds
CANCEL_POLL_S = 0.5       # how often a running experiment checks for a cancel request
LOG_NAME = "worker.log"   # detached workers' output, next to the store file


def stale_after() -> float:
    """Seconds without a heartbeat after which a worker is dead: ``$FLOSS_STALE_S``, else 15."""
    text = os.environ.get("FLOSS_STALE_S")
    if not text:
        return STALE_S
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"FLOSS_STALE_S must be a number of seconds > 0, got {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"FLOSS_STALE_S must be a number of seconds > 0, got {text!r}")
    return value


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def _opened(store):
    """A Store as given, or one opened on a path for the duration (and closed after)."""
    if isinstance(store, Store):
        yield store
        return
    with Store(store) as opened:
        yield opened


# ------------------------------------------------------------------------------------ submit
def planned_runs(spec: ComparisonSpec) -> list[dict]:
    """One planned run per delay x schedule x seed, its config shaped like a finished run's
    (``train.train``'s ``config`` plus the comparison's name and preset)."""
    runs = []
    for delay in spec.delays:
        task = asdict(replace(spec.task, delay=delay))
        for schedule in spec.schedules:
            for member, seed in enumerate(spec.seeds):
                config = {"model": asdict(spec.model), "task": task, "train": asdict(spec.train),
                          "floss": asdict(spec.floss), "schedule": asdict(schedule), "seed": seed,
                          "comparison": spec.name, "preset": spec.preset}
                runs.append({"delay": delay, "schedule": schedule.name, "seed": seed, "member": member,
                             "config": config})
    return runs


def total_units(spec: ComparisonSpec, *, batch: bool = True, shards: int = 1) -> int:
    """Work units (flossing + training steps) of the whole comparison, as planned."""
    return sum(job_units(spec, job) for job in plan(spec, batch=batch, shards=shards))


def default_workers() -> int:
    """Worker processes when nobody says: one per CPU core this process may use, at most 8 (each holds
    a torch import, ~0.3 GB). Every process runs one torch thread: on small matrices, processes on
    separate cores scale where threads inside one op do not (bench/RESULTS.md)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def configured_workers() -> int:
    """The worker processes a worker started now would use: $FLOSS_WORKERS (an integer, or auto), else
    one per core (``default_workers``); a malformed value counts as 1 here (the worker itself refuses it)."""
    text = (os.environ.get("FLOSS_WORKERS") or "auto").strip()
    if text == "auto":
        return default_workers()
    try:
        return max(1, int(text))
    except ValueError:
        return 1


def planned_jobs(spec: ComparisonSpec, executor: str, max_workers: int | None) -> tuple[bool, int]:
    """(batch, shards) for ``plan``. One local process: every schedule and seed of a delay in one
    ensemble (per-op overheads shared). A local pool of W processes: still every schedule per
    ensemble, but the seeds cut into parts so that W processes (one per core) share the work evenly.
    Dask: one job per schedule. FLOSS_PER_SCHEDULE=1 keeps one job per schedule everywhere (finer
    progress and crash recovery)."""
    if os.environ.get("FLOSS_PER_SCHEDULE") == "1" or executor != "local":
        return False, 1
    workers = max_workers or 1
    return True, shards_for(spec, workers) if workers > 1 else 1


def submit(spec: ComparisonSpec, store, *, worker_id: str | None = None) -> int:
    """Queue a comparison with its planned runs; returns the experiment id.

    Args:
        spec: a ComparisonSpec (from ``make_spec``); validated again here (ValueError, one line).
        store: a ``Store`` or a path.
        worker_id: insert it as already 'running' by this worker (``run_here`` does); None queues it.
    """
    if not isinstance(spec, ComparisonSpec):
        raise TypeError(f"submit takes a ComparisonSpec (see make_spec), got {type(spec).__name__}")
    validate_spec(spec)
    if spec.task.csv_path:  # the worker may run in another directory: store where the file really is
        spec = replace(spec, task=replace(spec.task, csv_path=str(Path(spec.task.csv_path).resolve())))
    with _opened(store) as store:
        return store.add_experiment(spec_to_dict(spec), name=spec.name, runs=planned_runs(spec),
                                    progress_total=total_units(spec), worker_id=worker_id,
                                    status="queued" if worker_id is None else "running")


def cancel(store, experiment_id: int) -> str:
    """Ask an experiment to stop; returns its status afterwards.

    A queued experiment is cancelled at once ('cancelled'); a running one keeps 'running' until its
    worker notices, within a few seconds; a finished one is left alone (its status is returned).
    """
    with _opened(store) as store:
        status = store.experiment(experiment_id)["status"]  # KeyError if absent
        if status in ("queued", "running"):
            store.request_cancel(experiment_id)
            status = store.experiment(experiment_id)["status"]
        return status


# ------------------------------------------------------------------------------------ running
class _Progress:
    """Throttled progress + ETA writes and throttled cancel polls for one experiment."""

    def __init__(self, store: Store, experiment_id: int, total: int, done: int):
        self.store, self.experiment_id, self.total = store, experiment_id, total
        self.start_done, self.done = done, done
        self.t0 = time.monotonic()
        self.last_write = -math.inf
        self.last_poll, self.cancelled = -math.inf, False

    def update(self, done: int, *, force: bool = False) -> None:
        self.done = done
        now = time.monotonic()
        if not force and now - self.last_write < PROGRESS_EVERY_S:
            return
        self.last_write = now
        rate = (done - self.start_done) / max(now - self.t0, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else None
        self.store.set_progress(self.experiment_id, min(done, self.total), self.total, eta)

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self.cancelled and now - self.last_poll >= CANCEL_POLL_S:
            self.last_poll = now
            self.cancelled = self.store.cancel_requested(self.experiment_id)
        return self.cancelled


def _label(job: Job) -> str:
    return job.label


def run_experiment(store, experiment_id: int, *, executor: str = "local", scheduler: str | None = None,
                   worker_id: str | None = None, max_workers: int | None = None) -> str:
    """Run a claimed experiment's unfinished jobs, write their results, and set its final status.

    Jobs whose runs are all final are skipped (after a crash only interrupted ones rerun). Each finished
    job's records are saved in one transaction; progress (step, total, ETA) is written about once a
    second; a cancel request stops it within a few seconds, marking unfinished runs 'cancelled'.
    A job that raises fails the experiment with the error message (diverged runs are results, not errors).

    Args:
        store: a ``Store`` or a path. Only this process writes it.
        executor: 'local' (this process, or a process pool when ``max_workers > 1``) or 'dask'.
        scheduler: the Dask scheduler address (tcp://HOST:8786) for executor 'dask'.
        worker_id: for log lines only.
    Returns:
        the experiment's final status: done, failed or cancelled ('deleted' if it vanished meanwhile).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if executor == "dask" and not scheduler:
        raise ValueError("executor 'dask' needs a scheduler address, e.g. --scheduler tcp://HOST:8786")
    with _opened(store) as store:
        return _run_experiment(store, experiment_id, executor, scheduler, worker_id, max_workers)


def _run_experiment(store: Store, experiment_id, executor, scheduler, worker_id, max_workers) -> str:
    try:
        spec = spec_from_dict(store.rerun_config(experiment_id))
    except KeyError:
        return "deleted"
    except (ValueError, TypeError) as e:  # e.g. the CSV file was removed after submit
        return _finish(store, experiment_id, "failed", f"invalid spec: {e}")

    runs = store.runs(experiment_id)
    final = {(int(r.delay), r.schedule, int(r.seed)) for r in runs.itertuples() if r.status in FINAL_RUN_STATUSES}
    batch, shards = planned_jobs(spec, executor, max_workers)
    jobs = plan(spec, batch=batch, shards=shards)
    pending = [job for job in jobs
               if not all((job.delay, n, s) in final for n, s in job.member_list(spec))]
    skip = {(d, s.name): {seed for seed in spec.seeds if (d, s.name, seed) in final}
            for d in spec.delays for s in spec.schedules}
    total = total_units(spec, batch=batch, shards=shards)
    progress = _Progress(store, experiment_id, total, total - sum(job_units(spec, j) for j in pending))
    progress.update(progress.done, force=True)
    log.info("experiment %s (%s): %d of %d jobs to run on %s%s", experiment_id, spec.name, len(pending),
             len(jobs), executor, f" by {worker_id}" if worker_id else "")

    def save(job: Job, records: list[dict]) -> None:
        # A finished run is never rewritten: only records of runs that were not final are saved.
        keep = [r for r in records if int(r["seed"]) not in skip[(job.delay, r["schedule"])]]
        store.save_runs(experiment_id, keep)
        log.info("experiment %s: %s saved (%s)", experiment_id, _label(job),
                 ", ".join(f"seed {r['seed']} {r['status']}" for r in keep))

    try:
        if executor == "dask":
            _run_dask(spec, pending, save, progress, scheduler)
        elif (max_workers or 1) > 1 and len(pending) > 1:
            _run_pool(spec, pending, save, progress, max_workers)
        else:
            _run_here(spec, pending, save, progress, store, experiment_id)
        progress.update(total, force=True)
    except Cancelled:
        return _finish(store, experiment_id, "cancelled", None)
    except KeyError:  # deleted while running: save_runs / set_progress found no experiment
        return "deleted"
    except _JobFailed as e:
        return _finish(store, experiment_id, "failed", str(e))
    # Every job finished (even if a cancel arrived after the last one): the results are complete.
    return _finish(store, experiment_id, "done", None)


class _JobFailed(Exception):
    """A job raised; the message names the job and the error."""


def _failed(job: Job, error: BaseException) -> _JobFailed:
    return _JobFailed(f"{_label(job)}: {type(error).__name__}: {error}")


def _finish(store: Store, experiment_id: int, status: str, error: str | None) -> str:
    try:
        if status != "done":
            store.mark_unfinished(experiment_id, "cancelled" if status == "cancelled" else "failed")
        store.set_experiment_status(experiment_id, status, error)
    except KeyError:
        return "deleted"
    log.info("experiment %s %s%s", experiment_id, status, f": {error}" if error else "")
    return status


def _apply_thread_setting() -> None:
    """One torch thread, as in the pool and on Dask (so every layout gives the same numbers, and small
    matrices gain nothing from threads inside an op), unless FLOSS_THREADS says otherwise."""
    import torch

    text = os.environ.get("FLOSS_THREADS")
    threads = 1
    if text:
        try:
            threads = int(text)
        except ValueError:
            threads = 0
        if threads < 1:
            raise _JobFailed(f"FLOSS_THREADS must be an integer >= 1, got {text!r}")
    torch.set_num_threads(threads)


def _run_here(spec, jobs, save, progress: _Progress, store: Store, experiment_id: int) -> None:
    import torch

    threads = torch.get_num_threads()
    _apply_thread_setting()
    native.keep_freed_memory()
    try:
        _run_jobs_here(spec, jobs, save, progress, store, experiment_id)
    finally:
        torch.set_num_threads(threads)      # a library caller's process keeps its own setting


def _run_jobs_here(spec, jobs, save, progress: _Progress, store: Store, experiment_id: int) -> None:
    for job in jobs:
        if progress.should_stop():
            raise Cancelled()
        _mark_running(store, experiment_id, spec, job)
        offset = progress.done

        def on_progress(done, _total, _phase, offset=offset):
            progress.update(offset + done)

        try:
            records = run_job(spec, job, on_progress=on_progress, should_stop=progress.should_stop)
        except Cancelled:
            raise
        except Exception as e:  # noqa: BLE001 - any error of a job fails the experiment, with its message
            raise _failed(job, e) from e
        save(job, records)
        progress.update(offset + job_units(spec, job), force=True)


def _drain(spec, futures: dict, save, progress: _Progress, result, stop, in_flight=lambda slot: 0) -> None:
    """Wait on {future: (slot, job)}, saving each job as it completes.

    ``result(future)`` gives a job's records, ``stop(futures)`` stops those left (on cancel or error),
    ``in_flight(slot)`` the units a running job reports so far (for progress between completions).
    """
    remaining = dict(futures)
    base = progress.done
    finished_units = 0
    try:
        while remaining:
            for future in [f for f in remaining if f.done()]:
                _slot, job = remaining.pop(future)
                try:
                    records = result(future)
                except Cancelled:
                    raise
                except Exception as e:  # noqa: BLE001
                    raise _failed(job, e) from e
                save(job, records)
                finished_units += job_units(spec, job)
                progress.update(base + finished_units, force=True)
            if not remaining:
                break
            if progress.should_stop():
                raise Cancelled()
            progress.update(base + finished_units + sum(in_flight(slot) for slot, _ in remaining.values()))
            time.sleep(0.1)
    finally:
        if remaining:
            stop(list(remaining))


# ---- local process pool
_POOL_STOP = None      # in a pool process: a multiprocessing Event set by the parent to stop all jobs
_POOL_PROGRESS = None  # in a pool process: shared array, units done per job slot


def _pool_init(stop_event, progress_array) -> None:
    global _POOL_STOP, _POOL_PROGRESS
    import torch
    torch.set_num_threads(1)  # several jobs side by side: oversubscribed threads make torch ~100x slower
    native.keep_freed_memory()
    _POOL_STOP, _POOL_PROGRESS = stop_event, progress_array


def _mark_running(store: Store, experiment_id: int, spec, job: Job) -> None:
    for name in job.schedules:
        store.set_run_status(experiment_id, name, job.seeds_of(name, spec), "running", delay=job.delay)


def _pool_job(spec_dict: dict, delay: int, schedules: list, members: list, slot: int) -> list[dict]:
    if _POOL_STOP.is_set():  # cancelled while this process was still starting
        raise Cancelled()
    spec = spec_from_dict(spec_dict)

    def on_progress(done, _total, _phase):
        _POOL_PROGRESS[slot] = done

    return run_job(spec, Job(delay, tuple(schedules), tuple(map(tuple, members))), on_progress=on_progress,
                   should_stop=_POOL_STOP.is_set)


def _run_pool(spec, jobs, save, progress: _Progress, max_workers: int) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads and SQLite
    stop_event, shared = ctx.Event(), ctx.Array("d", len(jobs), lock=False)
    spec_dict = spec_to_dict(spec)
    store, eid = progress.store, progress.experiment_id
    pool = ProcessPoolExecutor(max_workers=min(max_workers, len(jobs)), mp_context=ctx,
                               initializer=_pool_init, initargs=(stop_event, shared))
    try:
        futures = {}
        for slot, job in enumerate(jobs):
            _mark_running(store, eid, spec, job)
            futures[pool.submit(_pool_job, spec_dict, job.delay, list(job.schedules), list(job.members),
                                slot)] = (slot, job)
        # stop: the jobs poll the event every step and raise Cancelled
        _drain(spec, futures, save, progress, lambda f: f.result(), lambda _left: stop_event.set(),
               in_flight=lambda slot: int(shared[slot]))
    finally:
        # Not waiting: on a cancel the store is updated at once while the jobs notice the event and
        # end (within a step, or as soon as a process that was still importing torch starts).
        stop_event.set()
        pool.shutdown(wait=False, cancel_futures=True)


# ---- Dask
def _dask_job(spec_dict: dict, delay: int, schedules: list, stop_name: str | None = None,
              members: list | None = None) -> str:
    """A Dask task: train one ensemble, return its run records as JSON text (plain data only)."""
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("FLOSS_THREADS") or 1)))
    native.keep_freed_memory()
    should_stop = None
    if stop_name:
        from distributed import Event

        event, last = Event(stop_name), [time.monotonic()]

        def should_stop():  # a scheduler round trip: ask at most once a second
            if time.monotonic() - last[0] < 1.0:
                return False
            last[0] = time.monotonic()
            return event.is_set()

    records = run_job(spec_from_dict(spec_dict), Job(delay, tuple(schedules), tuple(map(tuple, members or ()))),
                      should_stop=should_stop)
    return json.dumps(records)  # NaN / Infinity survive json's own round trip


def _run_dask(spec, jobs, save, progress: _Progress, scheduler: str) -> None:
    try:
        from distributed import Client, Event
    except ImportError:
        raise _JobFailed("executor 'dask' needs the optional dependency: "
                         "pip install -r requirements-dask.txt") from None
    store, eid = progress.store, progress.experiment_id
    spec_dict = spec_to_dict(spec)
    try:
        client = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError) as e:
        raise _JobFailed(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
    stop_name = f"floss-stop-{uuid.uuid4().hex}"
    try:  # progress is coarse: a remote job reports only when it is done
        event = Event(stop_name, client=client)
        futures = {}
        for job in jobs:
            _mark_running(store, eid, spec, job)
            key = f"floss-{eid}-{job.delay}-{'-'.join(job.schedules)}-{uuid.uuid4().hex[:6]}"
            futures[client.submit(_dask_job, spec_dict, job.delay, list(job.schedules), stop_name,
                                  list(job.members), key=key)] = (0, job)

        def stop(left):
            event.set()
            client.cancel(left)

        _drain(spec, futures, save, progress, lambda f: json.loads(f.result()), stop)
    finally:
        client.close()


# ------------------------------------------------------------------------------------ workers
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


def worker_loop(store_path=None, *, worker_id: str | None = None, exit_when_idle: bool = False,
                poll_s: float = 1.0, executor: str = "local", scheduler: str | None = None,
                max_workers: int | None = None, stale_s: float | None = None) -> int:
    """Process queued experiments until stopped (or, with ``exit_when_idle``, until the queue is empty).

    Heartbeats every few seconds from a background thread, re-queues experiments of dead workers (no
    heartbeat for ``stale_s`` seconds, default ``stale_after()``) at start and periodically, claims the
    oldest queued experiment and runs it with ``run_experiment``. Returns the number of experiments run.

    Raises:
        StoreError: the path is not a floss store (the file is left untouched).
    """
    stale_s = stale_after() if stale_s is None else float(stale_s)
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if executor == "dask" and not scheduler:
        raise ValueError("executor 'dask' needs a scheduler address, e.g. --scheduler tcp://HOST:8786")
    store = Store(store_path)
    worker_id = worker_id or new_worker_id()
    ran, last_requeue = 0, -math.inf
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
                experiment_id = store.claim_next_experiment(worker_id)
                if experiment_id is None:
                    if exit_when_idle:
                        return ran
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
    if (os.environ.get("FLOSS_EXECUTOR") or "local") == "dask" and not os.environ.get("FLOSS_SCHEDULER"):
        raise ValueError("FLOSS_EXECUTOR=dask needs FLOSS_SCHEDULER=tcp://HOST:8786 for the worker")
    stale_s = stale_after()
    store = Store(store_path)
    path = store.path.resolve()
    try:
        with _spawn_lock(path):
            if store.alive_workers(max_age_s=stale_s):
                return None
            worker_id = new_worker_id() + ":detached"
            package_root = str(Path(__file__).resolve().parents[1])
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


# ------------------------------------------------------------------------------------ reading back
def stored_records(store, experiment_id: int) -> list[dict]:
    """An experiment's finished runs as run records (without curves), ready for ``summarize``."""
    with _opened(store) as store:
        runs = store.runs(experiment_id, status=["done", "diverged"])
    base = list(runs.columns[:runs.columns.get_loc("config") + 1])
    records = []
    for row in runs.to_dict("records"):
        final = {k[6:] if k.startswith("final_") and k[6:] in base else k: row[k]
                 for k in runs.columns if k not in base and not _missing(row[k])}
        records.append({
            "run_id": row["run_id"], "schedule": row["schedule"], "seed": int(row["seed"]),
            "member": int(row["member"]), "config": row["config"], "status": row["status"],
            "success": bool(row["success"]) if not _missing(row["success"]) else False,
            "convergence_step": None if _missing(row["convergence_step"]) else int(row["convergence_step"]),
            "diverged_step": None if _missing(row["diverged_step"]) else int(row["diverged_step"]),
            "reason": row["reason"], "final": final, "floss_seconds": row["floss_seconds"],
            "train_seconds": row["train_seconds"], "wall_seconds": row["wall_seconds"], "device": row["device"],
        })
    return records


def _missing(value) -> bool:
    import pandas as pd
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))
