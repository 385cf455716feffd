"""The queue primitives the runner works with: claiming, statuses, progress, cancelling, heartbeats.

An experiment is 'queued' until a worker claims it, 'running' while the worker heartbeats, and goes back
to the queue when the heartbeat stops (``requeue_stale``); a cancel request is a flag the worker polls.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Iterable

from .codec import _int_or_none, _real
from .connection import _Connection, _dicts
from .schema import (EXPERIMENT_STATUSES, FINAL_RUN_STATUSES, RUN_STATUSES, WORKER_STATUSES, _FINAL_SQL,
                     _check_choice)
from .writes import _require_experiment


DEAD_WORKER = "dead"   # a worker row's status once it is found dead (no schema change: the column is free text)


class _Queue(_Connection):
    """The runner's side of ``Store``: the queue, the workers and crash recovery."""

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

        'running' stamps started_at and clears the runs' live state (``set_progress``) until the loop
        reports; a final status stamps finished_at, any other clears it.
        """
        experiment_id = int(experiment_id)
        _check_choice(status, RUN_STATUSES, "run status")
        now = time.time()
        started = now if status == "running" else None
        finished = now if status in FINAL_RUN_STATUSES else None
        with self._write() as conn:
            changed = conn.executemany(
                "UPDATE runs SET status = ?, started_at = COALESCE(?, started_at), finished_at = ?, "
                "state = CASE WHEN ? IS NULL THEN state END "
                "WHERE experiment_id = ? AND schedule = ? AND seed = ? AND (? IS NULL OR delay = ?)",
                [(status, started, finished, started, experiment_id, schedule, int(seed), delay, delay)
                 for seed in seeds]).rowcount
            conn.execute("UPDATE experiments SET updated_at = ? WHERE id = ?", (now, experiment_id))
        return changed

    def set_progress(self, experiment_id: int, step: int, total: int | None, eta_seconds: float | None, *,
                     fraction: float | None = None, runs: Iterable[tuple] = ()) -> None:
        """Record progress in one transaction: ``step`` of ``total`` (any unit the runner likes), the ETA
        in seconds (None: not known yet), the ``fraction`` of the work done that every display shows
        (None: step / total), and what running runs are doing now: ``runs`` holds (delay, schedule,
        seed, state, state_step, state_steps) tuples (``train.STATES``; e.g. 'training', 120, 300);
        only runs still 'running' take them."""
        experiment_id = int(experiment_id)
        with self._write() as conn:
            cur = conn.execute("UPDATE experiments SET progress_step = ?, progress_total = ?, eta_seconds = ?, "
                               "progress_fraction = ?, updated_at = ? WHERE id = ?",
                               (int(step), _int_or_none(total), _real(eta_seconds), _real(fraction), time.time(),
                                experiment_id))
            if cur.rowcount == 0:
                raise KeyError(f"no experiment {experiment_id} in {self.path}")
            conn.executemany(
                "UPDATE runs SET state = ?, state_step = ?, state_steps = ? WHERE experiment_id = ? AND delay = ? "
                "AND schedule = ? AND seed = ? AND status = 'running'",
                [(str(state), _int_or_none(at), _int_or_none(of), experiment_id, int(delay), str(schedule), int(seed))
                 for delay, schedule, seed, state, at, of in runs])

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
        """Workers whose last heartbeat is at most ``max_age_s`` seconds old and whose process is alive
        (checked by pid on this host), with ``age_s`` added. Rows found dead are marked so
        (``workers(max_age_s)``)."""
        return [row for row in self.workers(max_age_s) if row["status"] != DEAD_WORKER]

    def workers(self, max_age_s: float = 15) -> list[dict]:
        """Every registered worker, with ``age_s`` (seconds since its heartbeat) added, status 'dead' for
        one that is: its heartbeat is older than ``max_age_s``, or it ran on this host and its pid is gone.

        A gone pid (a ``kill -9`` leaves the row behind) is proof, so that row is marked 'dead' in the
        store too, and ``requeue_stale`` hands its experiment back at once. A stale heartbeat is only
        listed as dead: a worker whose beat is late under this caller's ``max_age_s`` may beat again, and
        each worker re-queues by its own threshold. A read-only store is not written.
        """
        now = time.time()
        with self._read() as conn:
            rows = _dicts(conn.execute("SELECT worker_id, pid, host, started_at, heartbeat_at, status "
                                       "FROM workers ORDER BY started_at"))
        host = socket.gethostname()
        gone = []
        for row in rows:
            row["age_s"] = now - row["heartbeat_at"]
            if row["status"] == DEAD_WORKER:
                continue
            if row["host"] == host and row["pid"] is not None and not pid_alive(int(row["pid"])):
                gone.append(row)
                row["status"] = DEAD_WORKER
            elif row["age_s"] > max_age_s:
                row["status"] = DEAD_WORKER
        if gone and not self.read_only:
            with self._write(count=False) as conn:
                # only a row whose heartbeat has not moved since it was read (its pid was not re-registered)
                conn.executemany("UPDATE workers SET status = ? WHERE worker_id = ? AND heartbeat_at = ?",
                                 [(DEAD_WORKER, r["worker_id"], r["heartbeat_at"]) for r in gone])
        return rows

    def remove_worker(self, worker_id: str) -> None:
        """Forget a worker (it shut down cleanly)."""
        with self._write(count=False) as conn:
            conn.execute("DELETE FROM workers WHERE worker_id = ?", (worker_id,))

    def requeue_stale(self, max_age_s: float = 15) -> list[int]:
        """Put experiments whose worker died back in the queue; returns their ids.

        An experiment is stale when it is 'running' and its worker's heartbeat is older than
        ``max_age_s`` or missing, or its worker is dead (``workers``: on this host, a pid that is gone
        counts at once). Its unfinished runs go back to 'queued' (finished runs are kept) and
        ``attempts`` grows by one on the experiment and on each re-queued run. A stale experiment with
        a pending cancel request is cancelled instead (and not returned).
        """
        self.workers(max_age_s)  # marks dead workers
        now = time.time()
        with self._write() as conn:
            stale = conn.execute(
                "SELECT e.id, e.cancel_requested FROM experiments e "
                "LEFT JOIN workers w ON w.worker_id = e.worker_id "
                "WHERE e.status = 'running' AND (w.heartbeat_at IS NULL OR w.heartbeat_at < ? OR w.status = ?) "
                "ORDER BY e.id", (now - max_age_s, DEAD_WORKER)).fetchall()
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


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs (a zombie, dead but not yet reaped, does not)."""
    if pid <= 0:
        return False
    if os.name != "posix":  # Windows' os.kill(pid, 0) would send Ctrl-C: the heartbeat's age decides there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    except OSError:
        return True  # cannot tell (e.g. not POSIX): the heartbeat's age decides
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (not Linux), or it just ended: kill's answer stands
    return state not in (b"Z", b"X")


def _finish_unfinished_runs(conn: sqlite3.Connection, experiment_id: int, status: str, now: float) -> int:
    finished = now if status in FINAL_RUN_STATUSES else None
    return conn.execute(f"UPDATE runs SET status = ?, finished_at = ? "
                        f"WHERE experiment_id = ? AND status NOT IN {_FINAL_SQL}",
                        (status, finished, experiment_id)).rowcount
