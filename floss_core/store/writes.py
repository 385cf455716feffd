"""Writing experiments and their finished runs: ``add_experiment``, ``save_runs``, ``delete_experiment``.

A run record is what the training engine returns for one ensemble member (see ``save_runs`` for its
keys); it lands whole, with its curves, spectra and Jacobian rows, or not at all. Experiment ids are
plain ints; numpy ints taken from a DataFrame are accepted too.
"""

from __future__ import annotations

import math
import sqlite3
import time

from .codec import _dumps, _int_or_none, _real
from .connection import _Connection
from .schema import EXPERIMENT_STATUSES, RUN_STATUSES, _check_choice


class _Writes(_Connection):
    """The experiment and run writes of ``Store``."""

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
                        floss_seconds = ?, train_seconds = ?, eval_seconds = ?, diag_seconds = ?,
                        wall_seconds = ?, device = ?, versions_json = ?,
                        started_at = COALESCE(started_at, ?), finished_at = ?
        WHERE id = ?""",
        (member, config_json, status,
         None if success is None else int(bool(success)),
         _int_or_none(record.get("convergence_step")), _int_or_none(record.get("diverged_step")),
         record.get("reason"), _dumps(record.get("final", {})),
         _real(record.get("floss_seconds")), _real(record.get("train_seconds")),
         _real(record.get("eval_seconds")), _real(record.get("diag_seconds")), wall,
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

