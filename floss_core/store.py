"""The experiment store: one SQLite file in WAL mode holding queued comparisons, their runs and results.

One file, stdlib ``sqlite3`` + pandas, nothing else. A worker process writes results, the dashboard
reads them, possibly at the same moment:

* WAL mode lets readers keep reading while a writer commits; every connection waits up to
  ``BUSY_TIMEOUT_S`` for a lock instead of failing with "database is locked".
* Every write is one ``BEGIN IMMEDIATE`` transaction, so it takes the write lock up front (a deferred
  transaction that upgrades from read to write can fail without waiting) and a run's results land whole
  or not at all.
* Experiment ids are plain ints; numpy ints taken from a DataFrame are accepted too.
* A ``Store`` object belongs to one process and holds one connection behind a lock (threads may share it;
  after a fork the child quietly opens its own). Other processes open their own ``Store``.

Values: NaN in REAL columns becomes NULL (SQLite has no NaN) and reads back as NaN in DataFrames. JSON
columns are strict JSON: non-finite floats are written as the strings "NaN", "Infinity", "-Infinity"
and decoded back to floats on read (so those three strings are reserved inside configs).
Timestamps are stored as Unix seconds (REAL) and returned as UTC ``pandas.Timestamp`` in query results.

Tables (schema version 2, see ``MIGRATIONS``): meta, experiments, runs (one per delay x schedule x seed),
metrics (long: one row per step x name), spectra (one Lyapunov spectrum per row), jacobian (one horizon
per row), workers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from . import settings

APP = "floss_core"
BUSY_TIMEOUT_S = 30.0  # how long a connection waits for another process's write lock
EXPERIMENT_STATUSES = ("queued", "running", "done", "failed", "cancelled")
RUN_STATUSES = ("queued", "running", "done", "failed", "diverged", "cancelled")
FINAL_RUN_STATUSES = ("done", "failed", "diverged", "cancelled")   # a run in one of these never trains again
SCORED_RUN_STATUSES = ("done", "diverged")   # the runs that count in success rates and summaries
WORKER_STATUSES = ("idle", "busy")

# MIGRATIONS[v] turns a version v-1 store into a version v store; MIGRATIONS[0] is the empty file.
# Never edit a released entry: append a new script (ALTER TABLE ..., CREATE INDEX ...) instead.
MIGRATIONS: list[str] = [
    "",
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    INSERT INTO meta (key, value) VALUES ('app', 'floss_core'), ('change_counter', '0');

    CREATE TABLE experiments (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so caches keyed on ids stay valid
        name             TEXT NOT NULL,
        config_json      TEXT NOT NULL,                      -- the full comparison spec
        status           TEXT NOT NULL DEFAULT 'queued'
                         CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
        created_at       REAL NOT NULL,                      -- Unix seconds
        updated_at       REAL NOT NULL,
        progress_step    INTEGER NOT NULL DEFAULT 0,
        progress_total   INTEGER,
        eta_seconds      REAL,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        error            TEXT,
        worker_id        TEXT,
        attempts         INTEGER NOT NULL DEFAULT 0           -- times re-queued after a worker died
    );
    CREATE INDEX experiments_status ON experiments (status, id);

    CREATE TABLE runs (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        experiment_id    INTEGER NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
        schedule         TEXT NOT NULL,
        seed             INTEGER NOT NULL,
        member           INTEGER NOT NULL DEFAULT 0,         -- index in the ensemble dimension
        config_json      TEXT NOT NULL DEFAULT '{}',
        status           TEXT NOT NULL DEFAULT 'queued'
                         CHECK (status IN ('queued', 'running', 'done', 'failed', 'diverged', 'cancelled')),
        success          INTEGER,
        convergence_step INTEGER,
        diverged_step    INTEGER,
        reason           TEXT,
        final_json       TEXT,                               -- {"test_acc": ..., "lambda1_after": ..., ...}
        floss_seconds    REAL,
        train_seconds    REAL,
        wall_seconds     REAL,
        device           TEXT,
        versions_json    TEXT,
        started_at       REAL,
        finished_at      REAL,
        attempts         INTEGER NOT NULL DEFAULT 0,          -- times re-queued after a worker died
        UNIQUE (experiment_id, schedule, seed)
    );

    CREATE TABLE metrics (
        run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step   INTEGER NOT NULL,
        name   TEXT NOT NULL,
        value  REAL                                          -- NULL = NaN
    );
    CREATE INDEX metrics_run_name ON metrics (run_id, name, step);

    CREATE TABLE spectra (
        run_id         INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step           INTEGER NOT NULL,
        phase          TEXT NOT NULL,                        -- init, pre_before, pre_after, ..., final
        exponents_json TEXT NOT NULL                         -- [lambda_1, ..., lambda_k], descending
    );
    CREATE INDEX spectra_run ON spectra (run_id);

    CREATE TABLE jacobian (
        run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step        INTEGER NOT NULL,
        phase       TEXT NOT NULL,
        horizon     INTEGER NOT NULL,
        log_sv_json TEXT NOT NULL,
        log_kappa   REAL,
        log_kappa_k REAL,
        grad_norm   REAL
    );
    CREATE INDEX jacobian_run ON jacobian (run_id);

    CREATE TABLE workers (
        worker_id    TEXT PRIMARY KEY,
        pid          INTEGER,
        host         TEXT,
        started_at   REAL NOT NULL,
        heartbeat_at REAL NOT NULL,
        status       TEXT NOT NULL
    );
    """,
    # v2: a run is identified by (experiment, delay, schedule, seed), so one experiment can hold a delay
    # sweep. SQLite cannot change a UNIQUE constraint in place: rebuild the table (its documented
    # 12-step procedure; _migrate turns foreign keys off around it, so metrics etc. keep their rows).
    """
    CREATE TABLE runs_v2 (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        experiment_id    INTEGER NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
        delay            INTEGER NOT NULL DEFAULT 0,         -- the task delay of this run (0: unknown)
        schedule         TEXT NOT NULL,
        seed             INTEGER NOT NULL,
        member           INTEGER NOT NULL DEFAULT 0,
        config_json      TEXT NOT NULL DEFAULT '{}',
        status           TEXT NOT NULL DEFAULT 'queued'
                         CHECK (status IN ('queued', 'running', 'done', 'failed', 'diverged', 'cancelled')),
        success          INTEGER,
        convergence_step INTEGER,
        diverged_step    INTEGER,
        reason           TEXT,
        final_json       TEXT,
        floss_seconds    REAL,
        train_seconds    REAL,
        wall_seconds     REAL,
        device           TEXT,
        versions_json    TEXT,
        started_at       REAL,
        finished_at      REAL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        UNIQUE (experiment_id, delay, schedule, seed)
    );
    INSERT INTO runs_v2 (id, experiment_id, delay, schedule, seed, member, config_json, status, success,
                         convergence_step, diverged_step, reason, final_json, floss_seconds, train_seconds,
                         wall_seconds, device, versions_json, started_at, finished_at, attempts)
    SELECT id, experiment_id, COALESCE(CAST(json_extract(config_json, '$.task.delay') AS INTEGER), 0),
           schedule, seed, member, config_json, status, success, convergence_step, diverged_step, reason,
           final_json, floss_seconds, train_seconds, wall_seconds, device, versions_json, started_at,
           finished_at, attempts
    FROM runs;
    DROP TABLE runs;
    ALTER TABLE runs_v2 RENAME TO runs;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS) - 1


class StoreError(Exception):
    """The file is not a usable Gradient Flossing Lab store (foreign, newer, missing or closed)."""


def default_store_path() -> Path:
    """Where the store lives unless told otherwise: ``$FLOSS_STORE``, else ``./floss_data/floss.db``."""
    return Path(settings.get("FLOSS_STORE") or Path("floss_data") / "floss.db")


class Store:
    """An experiment store backed by one SQLite file.

    Args:
        path: the database file; ``None`` means ``default_store_path()``.
        create: make the file (and its parent folders) if it does not exist; otherwise a missing file
            raises ``StoreError``.

    Raises:
        StoreError: the file is not a floss store (a text file, another application's database) or
            comes from a newer floss_core. Such files are inspected read-only and left untouched.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, create: bool = True):
        self.path = Path(path) if path is not None else default_store_path()
        self._lock = threading.RLock()
        version = _inspect(self.path, create=create)  # read-only: a foreign file is never written
        if version is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn: sqlite3.Connection | None = self._connect()
        if version is None or version < SCHEMA_VERSION:
            try:
                self._migrate()
            except BaseException:
                self.close()
                raise

    # ------------------------------------------------------------------ connection plumbing

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions, every BEGIN below is written out.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA foreign_keys = ON")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            conn.close()
            raise StoreError(f"{self.path}: could not switch to WAL mode (got {mode!r}); "
                             "is it on a network file system?")
        conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL: survives application crashes
        self._pid = os.getpid()
        return conn

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"store {self.path} is closed")
        if os.getpid() != self._pid:
            # A connection must not cross a fork; the child leaves the parent's alone and opens its own.
            self._conn = self._connect()
        return self._conn

    @contextlib.contextmanager
    def _write(self, *, count: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; bumps meta.change_counter if it changed any row (and ``count``)."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                before = conn.total_changes
                yield conn
                if count and conn.total_changes != before:
                    conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 "
                                 "WHERE key = 'change_counter'")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every query inside sees the same snapshot."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def _migrate(self) -> None:
        # Table rebuilds (v2) need foreign keys off, or DROP TABLE would cascade into metrics & co.
        # The pragma is a no-op inside a transaction, so it is switched here and checked before COMMIT.
        self._connection().execute("PRAGMA foreign_keys = OFF")
        try:
            self._migrate_locked()
        finally:
            if self._conn is not None:
                self._conn.execute("PRAGMA foreign_keys = ON")

    def _migrate_locked(self) -> None:
        with self._write() as conn:
            # Re-check inside the write lock: another process may have created the store meanwhile.
            version = _schema_version(conn, self.path)
            if version is None:
                version = 0
            if version > SCHEMA_VERSION:
                raise _newer_error(self.path, version)
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _statements(MIGRATIONS[target]):
                    conn.execute(statement)
                conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                             "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(target),))
            broken = conn.execute("PRAGMA foreign_key_check").fetchall()
            if broken:  # raising rolls the whole migration back: the file stays as it was
                raise StoreError(f"{self.path}: migration to schema {SCHEMA_VERSION} would break "
                                 f"{len(broken)} references, e.g. {broken[0]}; the file was left unchanged")
            if version == 0:
                conn.execute("INSERT INTO meta (key, value) VALUES ('store_id', ?)", (uuid.uuid4().hex,))

    def close(self) -> None:
        """Close the connection; the Store cannot be used afterwards."""
        with self._lock:
            if self._conn is not None and os.getpid() == self._pid:
                self._conn.close()
            self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # ------------------------------------------------------------------ experiments and runs

    def add_experiment(self, config: dict, *, name: str, status: str = "queued",
                       runs: list[dict] | None = None, progress_total: int | None = None,
                       worker_id: str | None = None) -> int:
        """Insert an experiment and its planned runs in one transaction; returns the experiment id.

        Args:
            config: the full comparison spec (a dict or a dataclass), stored as JSON.
            name: a label for the dashboard.
            status: one of ``EXPERIMENT_STATUSES``.
            runs: planned runs ``{"schedule": str, "seed": int, "member": int, "config": dict}`` and
                optionally "delay" (default: ``config["task"]["delay"]``, else 0); each becomes a run row
                with status 'queued' that ``save_runs`` later fills in.
            progress_total: work units of the whole experiment, if known (see ``set_progress``).
            worker_id: the worker already running it (status 'running' without a claim).
        """
        _check_choice(status, EXPERIMENT_STATUSES, "experiment status")
        config_json = _dumps(config)
        planned = [(_record_delay(r) or 0, str(r["schedule"]), int(r["seed"]), int(r.get("member", 0)),
                    _dumps(r.get("config", {})))
                   for r in runs or []]
        now = time.time()
        with self._write() as conn:
            experiment_id = conn.execute(
                "INSERT INTO experiments (name, config_json, status, created_at, updated_at, progress_total, "
                "worker_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (str(name), config_json, status, now, now, _int_or_none(progress_total), worker_id)).lastrowid
            conn.executemany(
                "INSERT INTO runs (experiment_id, delay, schedule, seed, member, config_json, status) "
                "VALUES (?, ?, ?, ?, ?, ?, 'queued')", [(experiment_id, *p) for p in planned])
        return experiment_id

    def save_runs(self, experiment_id: int, records: list[dict]) -> list[int]:
        """Write finished runs (typically one ensemble, all seeds of a schedule) in ONE transaction.

        Each record updates the run row matching (experiment_id, delay, schedule, seed), or inserts one
        (delay: the record's "delay", else ``config["task"]["delay"]``; without either, any delay), and
        replaces that run's metrics, spectra and Jacobian rows. If any record is malformed nothing of
        the batch is written. Record keys: schedule, seed, member, config, status ('done', 'diverged',
        'failed', 'cancelled'; default 'done'), success, convergence_step, diverged_step, reason,
        final (dict of floats), floss_seconds, train_seconds, wall_seconds (s), device, versions (dict),
        metrics [{step, name, value}], spectra [{step, phase, exponents}],
        jacobian [{step, phase, horizon, log_sv, log_kappa, log_kappa_k, grad_norm}].

        Returns:
            the run ids, in record order.

        Raises:
            KeyError: no such experiment (e.g. deleted while it ran).
        """
        experiment_id = int(experiment_id)
        now = time.time()
        with self._write() as conn:
            _require_experiment(conn, experiment_id)
            # Records are converted inside the transaction: a bad value anywhere rolls back the runs
            # already written for this batch.
            run_ids = [_write_run(conn, experiment_id, record, now) for record in records]
            conn.execute("UPDATE experiments SET updated_at = ? WHERE id = ?", (now, experiment_id))
        return run_ids

    def delete_experiment(self, experiment_id: int) -> bool:
        """Delete an experiment with its runs, metrics, spectra and Jacobian rows. False if absent.

        A worker still running it sees ``cancel_requested() == True`` and its ``save_runs`` raises KeyError.
        """
        experiment_id = int(experiment_id)
        with self._write() as conn:
            # Explicit deletes (not only ON DELETE CASCADE), so this holds for any connection's pragmas.
            for table in ("metrics", "spectra", "jacobian"):
                conn.execute(f"DELETE FROM {table} WHERE run_id IN "
                             "(SELECT id FROM runs WHERE experiment_id = ?)", (experiment_id,))
            conn.execute("DELETE FROM runs WHERE experiment_id = ?", (experiment_id,))
            return conn.execute("DELETE FROM experiments WHERE id = ?", (experiment_id,)).rowcount > 0

    def rerun_config(self, experiment_id: int) -> dict:
        """The stored config of an experiment, to pass to ``add_experiment`` again."""
        experiment_id = int(experiment_id)
        with self._read() as conn:
            row = conn.execute("SELECT config_json FROM experiments WHERE id = ?", (experiment_id,)).fetchone()
        if row is None:
            raise KeyError(f"no experiment {experiment_id} in {self.path}")
        return _loads(row[0])

    # ------------------------------------------------------------------ queue primitives for the runner

    def claim_next_experiment(self, worker_id: str) -> int | None:
        """Atomically take the oldest queued experiment: mark it 'running' by ``worker_id``.

        Returns its id, or None if nothing is queued. Two workers never get the same experiment.
        """
        with self._write() as conn:
            row = conn.execute("SELECT id FROM experiments WHERE status = 'queued' AND cancel_requested = 0 "
                               "ORDER BY id LIMIT 1").fetchone()
            if row is None:
                return None
            conn.execute("UPDATE experiments SET status = 'running', worker_id = ?, error = NULL, "
                         "updated_at = ? WHERE id = ?", (worker_id, time.time(), row[0]))
            return row[0]

    def set_run_status(self, experiment_id: int, schedule: str, seeds: Iterable[int], status: str, *,
                       delay: int | None = None) -> int:
        """Set the status of the runs (experiment_id, schedule, seed in seeds; at ``delay`` if given, else
        at every delay); returns rows changed.

        'running' stamps started_at; a final status stamps finished_at, any other clears it.
        """
        experiment_id = int(experiment_id)
        _check_choice(status, RUN_STATUSES, "run status")
        now = time.time()
        started = now if status == "running" else None
        finished = now if status in FINAL_RUN_STATUSES else None
        with self._write() as conn:
            changed = conn.executemany(
                "UPDATE runs SET status = ?, started_at = COALESCE(?, started_at), finished_at = ? "
                "WHERE experiment_id = ? AND schedule = ? AND seed = ? AND (? IS NULL OR delay = ?)",
                [(status, started, finished, experiment_id, schedule, int(seed), delay, delay)
                 for seed in seeds]).rowcount
            conn.execute("UPDATE experiments SET updated_at = ? WHERE id = ?", (now, experiment_id))
        return changed

    def set_progress(self, experiment_id: int, step: int, total: int | None,
                     eta_seconds: float | None) -> None:
        """Record progress: ``step`` of ``total`` (any unit the runner likes) and the ETA in seconds."""
        experiment_id = int(experiment_id)
        with self._write() as conn:
            cur = conn.execute("UPDATE experiments SET progress_step = ?, progress_total = ?, eta_seconds = ?, "
                               "updated_at = ? WHERE id = ?",
                               (int(step), _int_or_none(total), _real(eta_seconds), time.time(), experiment_id))
            if cur.rowcount == 0:
                raise KeyError(f"no experiment {experiment_id} in {self.path}")

    def set_experiment_status(self, experiment_id: int, status: str, error: str | None = None) -> None:
        """Set an experiment's status (one of ``EXPERIMENT_STATUSES``) and error message (None clears it)."""
        experiment_id = int(experiment_id)
        _check_choice(status, EXPERIMENT_STATUSES, "experiment status")
        with self._write() as conn:
            cur = conn.execute("UPDATE experiments SET status = ?, error = ?, updated_at = ? WHERE id = ?",
                               (status, error, time.time(), experiment_id))
            if cur.rowcount == 0:
                raise KeyError(f"no experiment {experiment_id} in {self.path}")

    def request_cancel(self, experiment_id: int) -> None:
        """Ask for an experiment to stop. A queued one is cancelled at once (no worker would notice);
        a running one keeps running until its worker sees ``cancel_requested()``."""
        experiment_id = int(experiment_id)
        now = time.time()
        with self._write() as conn:
            status = _require_experiment(conn, experiment_id)
            conn.execute("UPDATE experiments SET cancel_requested = 1, updated_at = ? WHERE id = ?",
                         (now, experiment_id))
            if status == "queued":
                _finish_unfinished_runs(conn, experiment_id, "cancelled", now)
                conn.execute("UPDATE experiments SET status = 'cancelled' WHERE id = ?", (experiment_id,))

    def cancel_requested(self, experiment_id: int) -> bool:
        """True if a cancel was requested, or if the experiment no longer exists (deleted while running)."""
        experiment_id = int(experiment_id)
        with self._read() as conn:
            row = conn.execute("SELECT cancel_requested FROM experiments WHERE id = ?", (experiment_id,)).fetchone()
        return row is None or bool(row[0])

    def mark_unfinished(self, experiment_id: int, status: str) -> int:
        """Set every run of the experiment not yet done/failed/diverged/cancelled to ``status``.

        Returns the number of runs changed (e.g. after a cancel or a crash of the whole ensemble).
        """
        experiment_id = int(experiment_id)
        _check_choice(status, RUN_STATUSES, "run status")
        now = time.time()
        with self._write() as conn:
            changed = _finish_unfinished_runs(conn, experiment_id, status, now)
            conn.execute("UPDATE experiments SET updated_at = ? WHERE id = ?", (now, experiment_id))
        return changed

    # ------------------------------------------------------------------ workers and crash recovery
    # Worker rows do not bump last_change(): liveness depends on the clock, so never cache it anyway.

    def heartbeat(self, worker_id: str, pid: int, status: str = "idle") -> None:
        """Register a worker or refresh its heartbeat; ``status`` is 'idle' or 'busy'."""
        _check_choice(status, WORKER_STATUSES, "worker status")
        now = time.time()
        with self._write(count=False) as conn:
            conn.execute(
                "INSERT INTO workers (worker_id, pid, host, started_at, heartbeat_at, status) "
                "VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (worker_id) DO UPDATE SET pid = excluded.pid, host = excluded.host, "
                "heartbeat_at = excluded.heartbeat_at, status = excluded.status",
                (worker_id, int(pid), socket.gethostname(), now, now, status))

    def alive_workers(self, max_age_s: float = 15) -> list[dict]:
        """Workers whose last heartbeat is at most ``max_age_s`` seconds old, with ``age_s`` added."""
        now = time.time()
        with self._read() as conn:
            cur = conn.execute("SELECT worker_id, pid, host, started_at, heartbeat_at, status FROM workers "
                               "WHERE heartbeat_at >= ? ORDER BY started_at", (now - max_age_s,))
            rows = _dicts(cur)
        for row in rows:
            row["age_s"] = now - row["heartbeat_at"]
        return rows

    def remove_worker(self, worker_id: str) -> None:
        """Forget a worker (it shut down cleanly)."""
        with self._write(count=False) as conn:
            conn.execute("DELETE FROM workers WHERE worker_id = ?", (worker_id,))

    def requeue_stale(self, max_age_s: float = 15) -> list[int]:
        """Put experiments whose worker died back in the queue; returns their ids.

        An experiment is stale when it is 'running' and its worker's heartbeat is older than
        ``max_age_s`` or missing. Its unfinished runs go back to 'queued' (finished runs are kept) and
        ``attempts`` grows by one on the experiment and on each re-queued run. A stale experiment with
        a pending cancel request is cancelled instead (and not returned).
        """
        now = time.time()
        with self._write() as conn:
            stale = conn.execute(
                "SELECT e.id, e.cancel_requested FROM experiments e "
                "LEFT JOIN workers w ON w.worker_id = e.worker_id "
                "WHERE e.status = 'running' AND (w.heartbeat_at IS NULL OR w.heartbeat_at < ?) "
                "ORDER BY e.id", (now - max_age_s,)).fetchall()
            requeued = []
            for experiment_id, cancel in stale:
                status = "cancelled" if cancel else "queued"
                conn.execute(f"UPDATE runs SET status = ?, attempts = attempts + 1 "
                             f"WHERE experiment_id = ? AND status NOT IN {_FINAL_SQL}", (status, experiment_id))
                conn.execute("UPDATE experiments SET status = ?, worker_id = NULL, attempts = attempts + 1, "
                             "updated_at = ? WHERE id = ?", (status, now, experiment_id))
                if not cancel:
                    requeued.append(experiment_id)
        return requeued

    # ------------------------------------------------------------------ housekeeping

    def last_change(self) -> tuple[str, int]:
        """A cheap key that changes on every write that alters experiment or run data.

        ``(store_id, change_counter)``: the counter is bumped by every such transaction; the store id
        tells apart a store that was deleted and re-created at the same path.
        """
        with self._read() as conn:
            meta = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('store_id', 'change_counter')"))
        return meta.get("store_id", ""), int(meta["change_counter"])

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check``: 'ok' when the file is sound, else the problems found."""
        with self._read() as conn:
            return "\n".join(row[0] for row in conn.execute("PRAGMA integrity_check"))

    # ------------------------------------------------------------------ queries for the dashboard

    def experiments(self) -> pd.DataFrame:
        """All experiments, oldest first, one row each.

        Columns: id, name, status, created_at, updated_at (UTC timestamps), progress_step,
        progress_total, eta_seconds, cancel_requested (bool), error, worker_id, attempts,
        n_runs, n_finished (runs in a final state), config (dict).
        """
        return self._experiment_frame("", ())

    def experiment(self, experiment_id: int) -> dict:
        """One experiment as a dict with the same keys as a row of ``experiments()``; KeyError if absent."""
        experiment_id = int(experiment_id)
        df = self._experiment_frame("WHERE e.id = ?", (experiment_id,))
        if df.empty:
            raise KeyError(f"no experiment {experiment_id} in {self.path}")
        row = df.to_dict("records")[0]
        return {key: None if value is pd.NA else value for key, value in row.items()}

    def _experiment_frame(self, where: str, params: tuple) -> pd.DataFrame:
        df = self._frame(f"""
            SELECT e.id, e.name, e.status, e.created_at, e.updated_at, e.progress_step, e.progress_total,
                   e.eta_seconds, e.cancel_requested, e.error, e.worker_id, e.attempts,
                   (SELECT COUNT(*) FROM runs r WHERE r.experiment_id = e.id) AS n_runs,
                   (SELECT COUNT(*) FROM runs r WHERE r.experiment_id = e.id
                                                  AND r.status IN {_FINAL_SQL}) AS n_finished,
                   e.config_json
            FROM experiments e {where}
            ORDER BY e.id""", params)
        df["cancel_requested"] = df["cancel_requested"].astype(bool)
        df["progress_total"] = df["progress_total"].astype("Int64")
        df["eta_seconds"] = df["eta_seconds"].astype(float)
        df["config"] = df.pop("config_json").map(_loads)
        return _timestamps(df, ["created_at", "updated_at"])

    def runs(self, experiment_id: int | None = None, *, task: str | None = None, delay: int | None = None,
             schedule: str | Iterable[str] | None = None, status: str | Iterable[str] | None = None
             ) -> pd.DataFrame:
        """Runs, one row each, optionally filtered; planned runs included (status 'queued').

        Args:
            experiment_id: only this experiment's runs (None: all experiments).
            task, delay: match the run's task, ``config["task"]["name"]``, and its delay (returned as
                columns task and delay).
            schedule, status: one value or several.

        Columns: run_id, experiment_id, experiment (name), schedule, seed, member, task, delay, status,
        success (nullable bool), convergence_step, diverged_step, reason, floss_seconds, train_seconds,
        wall_seconds, device, started_at, finished_at, attempts, versions (dict), config (dict), then one
        column per key of the run's ``final`` dict (test_acc, lambda1_before, ...; NaN where absent).
        """
        clauses, params = [], []
        if experiment_id is not None:
            clauses.append("r.experiment_id = ?")
            params.append(int(experiment_id))
        if task is not None:
            clauses.append("json_extract(r.config_json, '$.task.name') = ?")
            params.append(task)
        if delay is not None:
            clauses.append("r.delay = ?")
            params.append(delay.item() if hasattr(delay, "item") else delay)
        for column, value in (("r.schedule", schedule), ("r.status", status)):
            if value is not None:
                values = [value] if isinstance(value, str) else list(value)
                clauses.append(f"{column} IN {_placeholders(values)}")
                params.extend(values)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        df = self._frame(f"""
            SELECT r.id AS run_id, r.experiment_id, e.name AS experiment, r.schedule, r.seed, r.member,
                   json_extract(r.config_json, '$.task.name') AS task,
                   r.delay,
                   r.status, r.success, r.convergence_step, r.diverged_step, r.reason,
                   r.floss_seconds, r.train_seconds, r.wall_seconds, r.device,
                   r.started_at, r.finished_at, r.attempts,
                   r.versions_json, r.config_json, r.final_json
            FROM runs r JOIN experiments e ON e.id = r.experiment_id
            {where}
            ORDER BY r.experiment_id, r.id""", params)
        df["success"] = df["success"].astype("boolean")
        for column in ("convergence_step", "diverged_step"):
            df[column] = df[column].astype("Int64")
        for column in ("floss_seconds", "train_seconds", "wall_seconds"):
            df[column] = df[column].astype(float)
        df["versions"] = df.pop("versions_json").map(lambda s: _loads(s) if isinstance(s, str) else {})
        df["config"] = df.pop("config_json").map(_loads)
        finals = pd.DataFrame([_loads(s) if isinstance(s, str) else {} for s in df.pop("final_json")],
                              index=df.index)
        finals = finals.rename(columns=lambda c: f"final_{c}" if c in df.columns else c)
        for column in finals.columns:
            with contextlib.suppress(TypeError, ValueError):  # a non-numeric extra stays as it is
                finals[column] = finals[column].astype(float)
        df = pd.concat([df, finals], axis=1)
        return _timestamps(df, ["started_at", "finished_at"])

    def metrics(self, experiment_id: int, names: str | Iterable[str] | None = None) -> pd.DataFrame:
        """Training curves in long form: columns run_id, schedule, seed, member, step, name, value.

        ``names`` keeps only those metrics (e.g. ``["train_loss", "lambda1"]``). NaN stays NaN.
        """
        experiment_id = int(experiment_id)
        sql = """
            SELECT m.run_id, m.step, m.name, m.value
            FROM metrics m
            WHERE m.run_id IN (SELECT id FROM runs WHERE experiment_id = ?)"""
        params: list = [experiment_id]
        if names is not None:
            names = [names] if isinstance(names, str) else list(names)
            sql += f" AND m.name IN {_placeholders(names)}"
            params.extend(names)
        with self._read() as conn:
            # Run columns are joined in pandas: cheaper than repeating them on every SQL row.
            runs = _dicts(conn.execute("SELECT id AS run_id, schedule, seed, member FROM runs "
                                       "WHERE experiment_id = ?", (experiment_id,)))
            rows = conn.execute(sql + " ORDER BY m.run_id, m.name, m.step", params).fetchall()
        df = pd.DataFrame(rows, columns=["run_id", "step", "name", "value"])
        df["value"] = df["value"].astype(float)
        runs = pd.DataFrame(runs, columns=["run_id", "schedule", "seed", "member"]).set_index("run_id")
        for column in ("schedule", "seed", "member"):
            df.insert(len(df.columns) - 3, column, df["run_id"].map(runs[column]))
        return df

    def spectra(self, experiment_id: int) -> pd.DataFrame:
        """Lyapunov spectra, one row per exponent.

        Columns: run_id, schedule, seed, member, step, phase, index (1-based, largest first), exponent.
        """
        experiment_id = int(experiment_id)
        with self._read() as conn:
            rows = conn.execute("""
                SELECT s.run_id, r.schedule, r.seed, r.member, s.step, s.phase, s.exponents_json
                FROM spectra s JOIN runs r ON r.id = s.run_id
                WHERE r.experiment_id = ?
                ORDER BY s.run_id, s.step, s.rowid""", (experiment_id,)).fetchall()
        exploded = [(*head, index, exponent)
                    for *head, exponents in rows
                    for index, exponent in enumerate(_loads(exponents), start=1)]
        df = pd.DataFrame(exploded, columns=["run_id", "schedule", "seed", "member", "step", "phase",
                                             "index", "exponent"])
        df["exponent"] = df["exponent"].astype(float)
        return df

    def jacobian(self, experiment_id: int) -> pd.DataFrame:
        """Long-term Jacobian diagnostics, one row per (run, step, phase, horizon).

        Columns: run_id, schedule, seed, member, step, phase, horizon, log_kappa, log_kappa_k,
        grad_norm, log_sv (list of log singular values).
        """
        experiment_id = int(experiment_id)
        df = self._frame("""
            SELECT j.run_id, r.schedule, r.seed, r.member, j.step, j.phase, j.horizon,
                   j.log_kappa, j.log_kappa_k, j.grad_norm, j.log_sv_json
            FROM jacobian j JOIN runs r ON r.id = j.run_id
            WHERE r.experiment_id = ?
            ORDER BY j.run_id, j.step, j.phase, j.horizon""", (experiment_id,))
        for column in ("log_kappa", "log_kappa_k", "grad_norm"):
            df[column] = df[column].astype(float)
        df["log_sv"] = df.pop("log_sv_json").map(_loads)
        return df

    def progress(self, experiment_id: int) -> dict:
        """Where an experiment stands, for a progress bar.

        Returns a dict: experiment_id, status, step, total, fraction (0..1, None if total unknown),
        eta_seconds, cancel_requested, error, worker_id, updated_at (Unix s) and runs, a dict
        {run status: count}. KeyError if absent.
        """
        experiment_id = int(experiment_id)
        with self._read() as conn:
            row = conn.execute("SELECT status, progress_step, progress_total, eta_seconds, cancel_requested, "
                               "error, worker_id, updated_at FROM experiments WHERE id = ?",
                               (experiment_id,)).fetchone()
            counts = dict(conn.execute("SELECT status, COUNT(*) FROM runs WHERE experiment_id = ? "
                                       "GROUP BY status", (experiment_id,)))
        if row is None:
            raise KeyError(f"no experiment {experiment_id} in {self.path}")
        status, step, total, eta, cancel, error, worker_id, updated_at = row
        return {"experiment_id": experiment_id, "status": status, "step": step, "total": total,
                "fraction": min(step / total, 1.0) if total else None,
                "eta_seconds": math.nan if eta is None else eta, "cancel_requested": bool(cancel),
                "error": error, "worker_id": worker_id, "updated_at": updated_at, "runs": counts}

    def _frame(self, sql: str, params: Iterable = ()) -> pd.DataFrame:
        with self._read() as conn:
            cur = conn.execute(sql, tuple(params))
            rows = cur.fetchall()
        return pd.DataFrame.from_records(rows, columns=[d[0] for d in cur.description])


# ---------------------------------------------------------------------- helpers

_FINAL_SQL = "(" + ", ".join(f"'{s}'" for s in FINAL_RUN_STATUSES) + ")"
_NOT_A_STORE = "{path} is not a Gradient Flossing Lab store ({why}); refusing to touch it"


def _inspect(path: Path, *, create: bool) -> int | None:
    """Schema version of an existing store, None for a missing or empty file that may be created.

    Opens the file read-only, so a foreign file is never modified, not even its journal mode.
    """
    if not path.exists():
        if create:
            return None
        raise StoreError(f"no store at {path} (pass create=True to make one)")
    if path.is_dir():
        raise StoreError(_NOT_A_STORE.format(path=path, why="it is a directory"))
    if path.stat().st_size == 0:
        if create:
            return None
        raise StoreError(_NOT_A_STORE.format(path=path, why="the file is empty"))
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
        try:
            version = _schema_version(conn, path)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(_NOT_A_STORE.format(path=path, why=exc)) from None
    if version is None and not create:
        raise StoreError(_NOT_A_STORE.format(path=path, why="an SQLite database without tables"))
    if version is not None and version > SCHEMA_VERSION:
        raise _newer_error(path, version)
    return version


def _schema_version(conn: sqlite3.Connection, path: Path) -> int | None:
    """The store's schema version; None for a database without tables; StoreError if foreign."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return None
    if "meta" not in tables:
        raise StoreError(_NOT_A_STORE.format(path=path, why="an SQLite database without floss_core's meta table"))
    meta = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('app', 'schema_version')"))
    if meta.get("app") != APP:
        raise StoreError(_NOT_A_STORE.format(path=path, why=f"meta says app={meta.get('app')!r}"))
    try:
        return int(meta["schema_version"])
    except (KeyError, ValueError):
        raise StoreError(_NOT_A_STORE.format(
            path=path, why=f"bad schema_version {meta.get('schema_version')!r}")) from None


def _newer_error(path: Path, version: int) -> StoreError:
    return StoreError(f"{path} has schema version {version}, but this floss_core reads versions up to "
                      f"{SCHEMA_VERSION}; upgrade floss_core (the file was left unchanged)")


def _statements(script: str) -> Iterator[str]:
    """Split an SQL script into statements (``executescript`` would COMMIT our open transaction)."""
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \t\n;"):
                yield buffer
            buffer = ""


def _write_run(conn: sqlite3.Connection, experiment_id: int, record: dict, now: float) -> int:
    """Write one finished run record (see ``Store.save_runs``) inside the caller's transaction."""
    schedule, seed, delay = str(record["schedule"]), int(record["seed"]), _record_delay(record)
    status = record.get("status", "done")
    _check_choice(status, RUN_STATUSES, "run status")
    member = _int_or_none(record.get("member"))
    config_json = _dumps(record["config"]) if "config" in record else None
    row = conn.execute("SELECT id FROM runs WHERE experiment_id = ? AND schedule = ? AND seed = ? "
                       "AND (? IS NULL OR delay = ?) ORDER BY id LIMIT 1",
                       (experiment_id, schedule, seed, delay, delay)).fetchone()
    if row is None:
        run_id = conn.execute("INSERT INTO runs (experiment_id, delay, schedule, seed) VALUES (?, ?, ?, ?)",
                              (experiment_id, delay or 0, schedule, seed)).lastrowid
    else:
        run_id = row[0]
    success = record.get("success")
    wall = _real(record.get("wall_seconds"))
    started = now - wall if wall is not None and math.isfinite(wall) else now
    conn.execute("""
        UPDATE runs SET member = COALESCE(?, member), config_json = COALESCE(?, config_json), status = ?,
                        success = ?, convergence_step = ?, diverged_step = ?, reason = ?, final_json = ?,
                        floss_seconds = ?, train_seconds = ?, wall_seconds = ?, device = ?, versions_json = ?,
                        started_at = COALESCE(started_at, ?), finished_at = ?
        WHERE id = ?""",
        (member, config_json, status,
         None if success is None else int(bool(success)),
         _int_or_none(record.get("convergence_step")), _int_or_none(record.get("diverged_step")),
         record.get("reason"), _dumps(record.get("final", {})),
         _real(record.get("floss_seconds")), _real(record.get("train_seconds")), wall,
         record.get("device"), _dumps(record.get("versions", {})),
         started, now, run_id))

    # Replace, never append: a retried save must not duplicate curves.
    for table in ("metrics", "spectra", "jacobian"):
        conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
    conn.executemany(
        "INSERT INTO metrics (run_id, step, name, value) VALUES (?, ?, ?, ?)",
        [(run_id, int(m["step"]), str(m["name"]), _real(m["value"])) for m in record.get("metrics", ())])
    conn.executemany(
        "INSERT INTO spectra (run_id, step, phase, exponents_json) VALUES (?, ?, ?, ?)",
        [(run_id, int(s["step"]), str(s["phase"]), _dumps([float(x) for x in s["exponents"]]))
         for s in record.get("spectra", ())])
    conn.executemany(
        "INSERT INTO jacobian (run_id, step, phase, horizon, log_sv_json, log_kappa, log_kappa_k, grad_norm) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(run_id, int(j["step"]), str(j["phase"]), int(j["horizon"]),
          _dumps([float(x) for x in j.get("log_sv", ())]),
          _real(j.get("log_kappa")), _real(j.get("log_kappa_k")), _real(j.get("grad_norm")))
         for j in record.get("jacobian", ())])
    return run_id


def _finish_unfinished_runs(conn: sqlite3.Connection, experiment_id: int, status: str, now: float) -> int:
    finished = now if status in FINAL_RUN_STATUSES else None
    return conn.execute(f"UPDATE runs SET status = ?, finished_at = ? "
                        f"WHERE experiment_id = ? AND status NOT IN {_FINAL_SQL}",
                        (status, finished, experiment_id)).rowcount


def _record_delay(record: dict) -> int | None:
    """A run's delay: its own "delay" key, else its config's task delay, else None (unknown)."""
    delay = record.get("delay")
    if delay is None:
        task = (record.get("config") or {}).get("task")
        delay = task.get("delay") if isinstance(task, dict) else None
    return None if delay is None else int(delay)


def _require_experiment(conn: sqlite3.Connection, experiment_id: int) -> str:
    row = conn.execute("SELECT status FROM experiments WHERE id = ?", (experiment_id,)).fetchone()
    if row is None:
        raise KeyError(f"no experiment {experiment_id}")
    return row[0]


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")


def _real(value: Any) -> float | None:
    """A REAL column value: None stays NULL, anything else must pass float() (NaN is stored as NULL)."""
    return None if value is None else float(value)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _placeholders(values: list) -> str:
    return "(" + ", ".join("?" * len(values)) + ")"


def _dicts(cur: sqlite3.Cursor) -> list[dict]:
    columns = [d[0] for d in cur.description]
    return [dict(zip(columns, row)) for row in cur.fetchall()]


def _timestamps(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    for column in columns:
        df[column] = pd.to_datetime(df[column].astype(float), unit="s", utc=True)
    return df


# Strict JSON has no NaN/Infinity; these strings stand in for them and are decoded back on read.
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _encode(obj: Any) -> Any:
    if isinstance(obj, float):
        if math.isnan(obj):
            return "NaN"
        if math.isinf(obj):
            return "Infinity" if obj > 0 else "-Infinity"
        return obj
    if isinstance(obj, dict):
        return {str(k): _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _encode(dataclasses.asdict(obj))
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy / torch scalars and arrays
        return _encode(obj.tolist())
    return obj


def _decode(obj: Any) -> Any:
    if isinstance(obj, str):
        return _NONFINITE.get(obj, obj)
    if isinstance(obj, dict):
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def _dumps(obj: Any) -> str:
    return json.dumps(_encode(obj), allow_nan=False)


def _loads(text: str) -> Any:
    return _decode(json.loads(text))
