"""The job runner: comparisons queued in the store, run by a worker process, locally or on Dask.

``queue`` plans a comparison and puts it in the store (submit, cancel, progress, finished runs read
back), ``executors`` runs a claimed experiment's jobs (here, a local process pool, or Dask), ``worker``
is the loop that claims experiments, with heartbeats and crash recovery, and ``ensure_worker``.
Environment (``floss_core.settings``): FLOSS_EXECUTOR, FLOSS_SCHEDULER, FLOSS_WORKERS, FLOSS_STALE_S,
FLOSS_THREADS, FLOSS_PER_SCHEDULE.
"""
import os  # noqa: F401 - tests/test_cli.py patches runner.os.sched_getaffinity (read by default_workers)

import importlib

# public name -> the module of this package that defines it, loaded on first use: `cancel` and
# `configured_workers` (the CLI's cancel, the dashboard's pages) need no torch; running jobs does
_NAMES = {"run_experiment": "executors", "cancel": "queue", "configured_workers": "queue",
          "default_workers": "queue", "planned_jobs": "queue", "planned_runs": "queue", "stored_records": "queue",
          "submit": "queue", "total_units": "queue", "ensure_worker": "worker", "run_here": "worker",
          "stale_after": "worker", "worker_loop": "worker"}
__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
