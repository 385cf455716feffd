"""Running a claimed experiment: its unfinished jobs trained here, in a local process pool, or on Dask,
their records saved as each job ends, and the experiment's final status set.

* ``local`` executor: jobs run one after another in this process, or, with ``max_workers > 1``, in a
  ``ProcessPoolExecutor`` (spawned processes, one torch thread each) that hands records back; the pool's
  processes die with the process that started them, even on ``kill -9`` (``die_with_parent``);
* ``dask`` executor: each job is a task ``_dask_job(spec_dict, delay, schedule)`` on a Dask distributed
  cluster; the task returns its records as JSON text, so only plain data travels back.

Only the process running the experiment writes the store: a job's records land in one transaction
(``Store.save_runs``), and jobs whose runs are all final are skipped, so a rerun after a crash trains
only what was interrupted and never rewrites a finished run.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
import uuid

from .. import native, settings
from ..experiment import Job, job_units, plan, run_job, spec_from_dict, spec_to_dict
from ..store import FINAL_RUN_STATUSES, Store
from ..configs import Cancelled
from ..plan import job_work
from ..train import STATES
from .queue import _opened, _Progress, planned_jobs, total_units

log = logging.getLogger("floss_core.runner")  # one logger for the whole runner (the worker's log names it)

EXECUTORS = ("local", "dask")


def check_executor(executor: str, scheduler: str | None) -> None:
    """ValueError (one line) unless ``executor`` is known and, for 'dask', a scheduler is given."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if executor == "dask" and not scheduler:
        raise ValueError("executor 'dask' needs a scheduler address, e.g. --scheduler tcp://HOST:8786")


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
    check_executor(executor, scheduler)
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
    pool = executor != "dask" and (max_workers or 1) > 1 and len(pending) > 1
    processes = len(pending) if executor == "dask" else min(max_workers, len(pending)) if pool else 1
    progress = _Progress(store, experiment_id,
                         [(job_units(spec, j), spec.train.steps, [(j.delay, n, s) for n, s in j.member_list(spec)],
                           _snapshots(spec, j)) for j in pending],
                         processes=processes, done=total - sum(job_units(spec, j) for j in pending),
                         prior=_unit_costs(store, spec, pending))
    progress.write(force=True)
    log.info("experiment %s (%s): %d of %d jobs to run on %s%s", experiment_id, spec.name, len(pending),
             len(jobs), executor, f" by {worker_id}" if worker_id else "")

    def save(job: Job, records: list[dict]) -> None:
        # A finished run is never rewritten: only records of runs that were not final are saved.
        keep = [r for r in records if int(r["seed"]) not in skip[(job.delay, r["schedule"])]]
        store.save_runs(experiment_id, keep)
        log.info("experiment %s: %s saved (%s)", experiment_id, job.label,
                 ", ".join(f"seed {r['seed']} {r['status']}" for r in keep))

    def save_early(job: Job, record: dict) -> None:
        # a run over before its ensemble (diverged): stored now, so it counts as finished at once; its
        # ensemble's save rewrites it with its timings completed
        if int(record["seed"]) not in skip[(job.delay, record["schedule"])]:
            store.save_runs(experiment_id, [record])
            log.info("experiment %s: %s seed %s %s at step %s, saved before its ensemble ends", experiment_id,
                     record["schedule"], record["seed"], record["status"], record["diverged_step"])

    try:
        if executor == "dask":
            _run_dask(spec, pending, save, progress, scheduler)
        elif pool:
            _run_pool(spec, pending, save, progress, max_workers, early=save_early)
        else:
            _run_jobs_in_process(spec, pending, save, progress, early=save_early)
        progress.write(force=True)
    except Cancelled:
        return _finish(store, experiment_id, "cancelled", None)
    except KeyError:  # deleted while running: save_runs / set_progress found no experiment
        return "deleted"
    except _JobFailed as e:
        return _finish(store, experiment_id, "failed", str(e))
    # Every job finished (even if a cancel arrived after the last one): the results are complete.
    return _finish(store, experiment_id, "done", None)


def _snapshots(spec, job: Job) -> int:
    """The spectrum snapshots a job takes (``plan.job_work``: adaptive's phases at their most)."""
    return sum(calls for _part, op, _sizes, calls in job_work(spec, job) if op == "snapshot")


def _unit_costs(store: Store, spec, jobs: list) -> dict | None:
    """Seconds per training step (evaluations included), flossing step and snapshot that this machine's
    cost table (``costs``, kept in the store by the idle worker) predicts for ``jobs``, over all of them;
    None without a fresh table for the spec's architecture (the ETA then waits for measurements)."""
    from .. import costs
    from ..configs import resolve_device
    from ..plan import job_seconds

    try:
        device = resolve_device(spec.device).type
        table = store.cost_table(device)
        if not costs.fresh(table, device):
            return None
        model = costs.CostModel(table)
        seconds, counts = dict.fromkeys(("train", "floss", "diag"), 0.0), dict.fromkeys(("train", "floss", "diag"), 0)
        for job in jobs:
            parts = job_seconds(spec, job, model)
            for kind, s, n in (("train", parts["train"] + parts["eval"], spec.train.steps),
                               ("floss", parts["floss"], job_units(spec, job) - spec.train.steps),
                               ("diag", parts["diag"], _snapshots(spec, job))):
                seconds[kind] += s
                counts[kind] += n
        return {k: seconds[k] / counts[k] for k in seconds if counts[k] and seconds[k] > 0}
    except (KeyError, ValueError, TypeError, ArithmeticError) as e:   # a table without this architecture, ...
        log.info("no time prior for the ETA: %s: %s", type(e).__name__, e)
        return None


class _JobFailed(Exception):
    """A job raised; the message names the job and the error."""


def _failed(job: Job, error: BaseException) -> _JobFailed:
    return _JobFailed(f"{job.label}: {type(error).__name__}: {error}")


def _finish(store: Store, experiment_id: int, status: str, error: str | None) -> str:
    """Set an experiment's final status (its unfinished runs cancelled or failed with it); the status."""
    try:
        if status != "done":
            store.mark_unfinished(experiment_id, "cancelled" if status == "cancelled" else "failed")
        store.set_experiment_status(experiment_id, status, error)
    except KeyError:
        return "deleted"
    log.info("experiment %s %s%s", experiment_id, status, f": {error}" if error else "")
    return status


def _mark_running(store: Store, experiment_id: int, spec, job: Job) -> None:
    for name in job.schedules:
        store.set_run_status(experiment_id, name, job.seeds_of(name, spec), "running", delay=job.delay)


def _apply_thread_setting() -> None:
    """One torch thread, as in the pool (so every layout gives the same numbers, and small matrices gain
    nothing from threads inside an op), unless FLOSS_THREADS says otherwise (ValueError if malformed)."""
    import torch

    torch.set_num_threads(settings.get("FLOSS_THREADS"))


# ---- this process
def _run_jobs_in_process(spec, jobs, save, progress: _Progress, early=None) -> None:
    """The jobs one after another in this process, on FLOSS_THREADS torch threads; the caller's thread
    setting is restored after (a library caller's process keeps its own)."""
    import torch

    threads = torch.get_num_threads()
    try:
        _apply_thread_setting()
    except ValueError as e:
        raise _JobFailed(str(e)) from None
    native.keep_freed_memory()
    try:
        for slot, job in enumerate(jobs):
            if progress.should_stop():
                raise Cancelled()
            _mark_running(progress.store, progress.experiment_id, spec, job)
            progress.start(slot)
            trained = [0]

            def on_progress(done, _total, phase, slot=slot, trained=trained):
                trained[0] += phase == "training"
                progress.observe(slot, done, trained[0])
                progress.write()

            try:
                records = run_job(spec, job, on_progress=on_progress, should_stop=progress.should_stop,
                                  on_state=functools.partial(progress.report_states, slot),
                                  on_record=None if early is None else functools.partial(early, job))
            except Cancelled:
                raise
            except Exception as e:  # noqa: BLE001 - any error of a job fails the experiment, with its message
                raise _failed(job, e) from e
            save(job, records)
            progress.finish(slot)
            progress.write(force=True)
    finally:
        torch.set_num_threads(threads)


def _drain(spec, futures: dict, save, progress: _Progress, result, stop, poll=lambda: None) -> None:
    """Wait on {future: (slot, job)}, saving each job as it completes.

    ``result(future)`` gives a job's records, ``stop(futures)`` stops those left (on cancel or error),
    ``poll()`` passes what running jobs report so far to ``progress`` (between completions).
    """
    remaining = dict(futures)
    try:
        while remaining:
            for future in [f for f in remaining if f.done()]:
                slot, job = remaining.pop(future)
                try:
                    records = result(future)
                except Cancelled:
                    raise
                except Exception as e:  # noqa: BLE001
                    raise _failed(job, e) from e
                save(job, records)
                progress.finish(slot)
                progress.write(force=True)
            if not remaining:
                break
            if progress.should_stop():
                raise Cancelled()
            poll()
            progress.write()
            time.sleep(0.1)
    finally:
        if remaining:
            stop(list(remaining))


# ---- local process pool
_POOL_STOP = None      # in a pool process: a multiprocessing Event set by the parent to stop all jobs
_POOL_PROGRESS = None  # in a pool process: shared array, each job's progress from its offset (``_pool_job``)
_POOL_RECORDS = None   # in a pool process: a queue of (offset, record) for runs over before their job


def _pool_init(stop_event, progress_array, parent_pid: int | None = None, records=None) -> None:
    global _POOL_STOP, _POOL_PROGRESS, _POOL_RECORDS
    import torch
    torch.set_num_threads(1)  # several jobs side by side: oversubscribed threads slow torch down badly
    native.keep_freed_memory()
    if native.enabled():
        # Loaded before the death signal is armed: a SIGKILL inside torch's build lock (its FileBaton, taken
        # even when the build is up to date) would leave the lock file, on which later processes wait.
        native.load()
    if parent_pid is not None:
        die_with_parent(parent_pid)   # a parent that died meanwhile is noticed here: this process ends
    _POOL_STOP, _POOL_PROGRESS, _POOL_RECORDS = stop_event, progress_array, records
    if records is not None:
        records.cancel_join_thread()   # never wait at exit for records nobody reads any more


_PR_SET_PDEATHSIG = 1   # linux/prctl.h


def die_with_parent(parent_pid: int, *, use_prctl: bool = True, interval_s: float = 1.0) -> str:
    """End this process when ``parent_pid`` (the process that started it) dies, even by ``kill -9``,
    which runs no cleanup in the parent: a pool's processes must not train on, orphaned, for nobody.

    Linux: the kernel sends SIGKILL at the parent's death (``prctl(PR_SET_PDEATHSIG)``; it fires when the
    thread that started this process ends, and a pool is started and used by one thread of the caller).
    Elsewhere (or ``use_prctl=False``): a daemon thread checks every ``interval_s`` that the parent is
    still ours. Either way, a parent that died before this was set up is caught by the check of
    ``os.getppid()`` here. Returns how: 'prctl' or 'watchdog'.
    """
    how = "watchdog"
    if use_prctl and sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                how = "prctl"
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the signal was asked for
        os._exit(1)
    if how == "watchdog":
        def watch():
            while os.getppid() == parent_pid:
                time.sleep(interval_s)
            os._exit(1)

        threading.Thread(target=watch, name="floss-parent-watchdog", daemon=True).start()
    return how


_SLOT = 3   # a job's part of the shared array: started, units done, training steps done; then per member
             # (state: 1 + its index in train.STATES, 0 before any; step; steps)


def _pool_job(spec_dict: dict, delay: int, schedules: list, members: list, at: int) -> list[dict]:
    """Train one job in a pool process, its progress written to the shared array from offset ``at``."""
    if _POOL_STOP.is_set():  # cancelled while this process was still starting
        raise Cancelled()
    spec = spec_from_dict(spec_dict)
    shared = _POOL_PROGRESS
    shared[at] = 1.0

    def on_progress(done, _total, phase):
        shared[at + 1] = done
        if phase == "training":
            shared[at + 2] += 1

    def on_state(states):
        for i, (state, step, steps) in enumerate(states):
            j = at + _SLOT + 3 * i
            shared[j], shared[j + 1], shared[j + 2] = STATES.index(state) + 1, step, steps

    def on_record(record):
        _POOL_RECORDS.put((at, record))

    return run_job(spec, Job(delay, tuple(schedules), tuple(map(tuple, members))), on_progress=on_progress,
                   should_stop=_POOL_STOP.is_set, on_state=on_state,
                   on_record=None if _POOL_RECORDS is None else on_record)


def _pool_poll(spec, jobs, offsets, shared, progress: _Progress, records=None, early=None) -> None:
    """What the pool's jobs wrote to the shared array, passed to ``progress``; a job's runs are marked
    running when a process starts it (until then they are queued, waiting for a free process). The
    records of runs over before their job (``records``, a queue) go to ``early``, unless that job has
    ended meanwhile (its own save holds them)."""
    while records is not None:
        try:
            at, record = records.get_nowait()
        except queue.Empty:
            break
        slot = offsets.index(at)
        if not progress.jobs[slot].finished:
            early(jobs[slot], record)
    for slot, (job, at) in enumerate(zip(jobs, offsets)):
        if progress.jobs[slot].finished or not shared[at]:
            continue
        if not progress.jobs[slot].started:
            _mark_running(progress.store, progress.experiment_id, spec, job)
        progress.observe(slot, int(shared[at + 1]), int(shared[at + 2]))
        codes = [int(shared[at + _SLOT + 3 * i]) for i in range(len(progress.jobs[slot].keys))]
        if all(codes):
            progress.report_states(slot, [(STATES[c - 1], int(shared[at + _SLOT + 3 * i + 1]),
                                           int(shared[at + _SLOT + 3 * i + 2])) for i, c in enumerate(codes)])


def _run_pool(spec, jobs, save, progress: _Progress, max_workers: int, early=None) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads and SQLite
    sizes = [_SLOT + 3 * len(job.member_list(spec)) for job in jobs]
    offsets = [sum(sizes[:i]) for i in range(len(jobs))]
    stop_event, shared = ctx.Event(), ctx.Array("d", sum(sizes), lock=False)
    records = ctx.Queue() if early is not None else None
    spec_dict = spec_to_dict(spec)
    pool = ProcessPoolExecutor(max_workers=min(max_workers, len(jobs)), mp_context=ctx,
                               initializer=_pool_init, initargs=(stop_event, shared, os.getpid(), records))
    try:
        futures = {}
        for slot, job in enumerate(jobs):
            futures[pool.submit(_pool_job, spec_dict, job.delay, list(job.schedules), list(job.members),
                                offsets[slot])] = (slot, job)
        # stop: the jobs poll the event every step and raise Cancelled
        _drain(spec, futures, save, progress, lambda f: f.result(), lambda _left: stop_event.set(),
               poll=lambda: _pool_poll(spec, jobs, offsets, shared, progress, records, early))
    finally:
        # Not waiting: on a cancel the store is updated at once while the jobs notice the event and
        # end (within a step, or as soon as a process that was still importing torch starts).
        stop_event.set()
        pool.shutdown(wait=False, cancel_futures=True)


# ---- Dask
def _dask_job(spec_dict: dict, delay: int, schedules: list, stop_name: str | None = None,
              members: list | None = None) -> str:
    """A Dask task: train one ensemble, return its run records as JSON text (plain data only)."""
    _apply_thread_setting()
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
        for slot, job in enumerate(jobs):
            _mark_running(store, eid, spec, job)
            progress.start(slot)
            key = f"floss-{eid}-{job.delay}-{'-'.join(job.schedules)}-{uuid.uuid4().hex[:6]}"
            futures[client.submit(_dask_job, spec_dict, job.delay, list(job.schedules), stop_name,
                                  list(job.members), key=key)] = (slot, job)

        def stop(left):
            event.set()
            client.cancel(left)

        _drain(spec, futures, save, progress, lambda f: json.loads(f.result()), stop)
    finally:
        client.close()
