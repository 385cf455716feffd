"""The experiment store: one SQLite file in WAL mode holding queued comparisons, their runs and results.

One file, stdlib ``sqlite3`` + pandas, nothing else (no torch, no streamlit). ``Store`` is assembled
from one module per job:

* ``schema``: the statuses, the SQL of every schema version (``MIGRATIONS``), ``StoreError``,
  ``default_store_path``;
* ``codec``: Python values to column values and back (strict JSON, NaN as NULL);
* ``connection``: opening a file, the connection, read and write transactions, migrating;
* ``writes``: experiments and finished runs; ``queue``: the runner's primitives (claim, statuses,
  progress, cancel, heartbeats, crash recovery); ``queries``: the dashboard's DataFrames; ``advice``: the
  schedule adviser's searches and their trials (schema v5).
"""

from .advice import _Advice
from .connection import BUSY_TIMEOUT_S
from .queries import _Queries, run_records
from .queue import _Queue
from .schema import (APP, EXPERIMENT_STATUSES, FINAL_RUN_STATUSES, MIGRATIONS, RUN_STATUSES, SCHEMA_VERSION,
                     SCORED_RUN_STATUSES, WORKER_STATUSES, StoreError, _statements, default_store_path)
from .writes import _Writes


class Store(_Writes, _Queue, _Queries, _Advice):
    """An experiment store backed by one SQLite file.

    Args:
        path: the database file; ``None`` means ``default_store_path()``.
        create: make the file (and its parent folders) if it does not exist; otherwise a missing file
            raises ``StoreError``.

    Raises:
        StoreError: the file is not a floss store (a text file, another application's database) or
            comes from a newer floss_core. Such files are inspected read-only and left untouched.
    """


__all__ = ["Store", "StoreError", "default_store_path", "SCHEMA_VERSION", "MIGRATIONS", "APP", "BUSY_TIMEOUT_S",
           "EXPERIMENT_STATUSES", "RUN_STATUSES", "FINAL_RUN_STATUSES", "SCORED_RUN_STATUSES",
           "WORKER_STATUSES", "run_records"]
