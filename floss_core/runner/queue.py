"""The queue side of the runner: what a comparison plans to train, putting it in the store, asking it to
stop, its progress while it runs, and its finished runs read back as records.

A comparison is planned as one run per delay x schedule x seed (``planned_runs``) and trained as jobs,
each one ensemble (``planned_jobs`` says how they are cut for the executor); progress is counted in
work units (flossing + training steps, ``total_units``).
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .. import settings
from ..store import SCORED_RUN_STATUSES, Store, run_records

if TYPE_CHECKING:
    from ..experiment import ComparisonSpec

PROGRESS_EVERY_S = 1.0    # progress writes, at most once per this many seconds
CANCEL_POLL_S = 0.5       # how often a running experiment checks for a cancel request


@contextlib.contextmanager
def _opened(store):
    """A Store as given, or one opened on a path for the duration (and closed after)."""
    if isinstance(store, Store):
        yield store
        return
    with Store(store) as opened:
        yield opened


# ------------------------------------------------------------------------------------ planning
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
    from ..plan import job_units, plan

    return sum(job_units(spec, job) for job in plan(spec, batch=batch, shards=shards))


def default_workers() -> int:
    """Worker processes when nobody says: one per CPU core this process may use, at most 8 (each holds
    a torch import). Every process runs one torch thread: on small matrices, processes on separate
    cores scale where threads inside one op do not (bench/RESULTS.md)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def configured_workers() -> int:
    """The worker processes a worker started now would use: $FLOSS_WORKERS (an integer, or auto), else
    one per core (``default_workers``). A malformed value raises ValueError (one line), as in the CLI."""
    workers = settings.get("FLOSS_WORKERS")
    return default_workers() if workers == "auto" else workers


def planned_jobs(spec: ComparisonSpec, executor: str, max_workers: int | None) -> tuple[bool, int]:
    """(batch, shards) for ``plan``. One local process: every schedule and seed of a delay in one
    ensemble (per-op overheads shared). A local pool of W processes: still every schedule per
    ensemble, but the seeds cut into parts so that W processes (one per core) share the work evenly.
    Dask: one job per schedule. FLOSS_PER_SCHEDULE=1 keeps one job per schedule everywhere (finer
    progress and crash recovery)."""
    from ..plan import shards_for

    if settings.get("FLOSS_PER_SCHEDULE") or executor != "local":
        return False, 1
    workers = max_workers or 1
    return True, shards_for(spec, workers) if workers > 1 else 1


# ------------------------------------------------------------------------------------ queue
def submit(spec: ComparisonSpec, store, *, worker_id: str | None = None) -> int:
    """Queue a comparison with its planned runs; returns the experiment id.

    Args:
        spec: a ComparisonSpec (from ``make_spec``); validated again here (ValueError, one line).
        store: a ``Store`` or a path.
        worker_id: insert it as already 'running' by this worker (``run_here`` does); None queues it.
    """
    from ..experiment import ComparisonSpec, spec_to_dict, validate_spec

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


class _Progress:
    """Throttled progress + ETA writes and throttled cancel polls for one running experiment."""

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


# ------------------------------------------------------------------------------------ reading back
def stored_records(store, experiment_id: int) -> list[dict]:
    """An experiment's finished runs as run records (without curves), ready for ``summarize``."""
    with _opened(store) as store:
        return run_records(store.runs(experiment_id, status=SCORED_RUN_STATUSES))
