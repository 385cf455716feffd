"""The job runner: comparisons queued in the store, run by a worker process, locally or on Dask.

``queue`` plans a comparison and puts it in the store (submit, cancel, progress, finished runs read
back), ``executors`` runs a claimed experiment's jobs (here, a local process pool, or Dask), ``worker``
is the loop that claims experiments, with heartbeats and crash recovery, and ``ensure_worker``.
Environment (``floss_core.settings``): FLOSS_EXECUTOR, FLOSS_SCHEDULER, FLOSS_WORKERS, FLOSS_STALE_S,
FLOSS_THREADS, FLOSS_PER_SCHEDULE.
"""
import os  # noqa: F401 - tests/test_cli.py patches runner.os.sched_getaffinity (read by default_workers)

from .executors import run_experiment
from .queue import (cancel, configured_workers, default_workers, planned_jobs, planned_runs, stored_records, submit,
                    total_units)
from .worker import ensure_worker, run_here, stale_after, worker_loop

__all__ = ["cancel", "configured_workers", "default_workers", "ensure_worker", "planned_jobs", "planned_runs",
           "run_experiment", "run_here", "stale_after", "stored_records", "submit", "total_units", "worker_loop"]
