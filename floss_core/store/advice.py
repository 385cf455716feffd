"""The schedule adviser's rows (schema v5): one ``advice`` row per search over schedules, one
``advice_trials`` row per candidate it evaluated.

An advice is queued, claimed, run, cancelled like an experiment (the same statuses); its trials are the
trial dicts of ``floss_core.advice`` (the fields ``recommend`` reads), written one by one as they finish, so
a page shows a search while it runs and a recommendation always quotes stored numbers. Its runs live in
ordinary experiments, which each trial names (``experiment_id``; ``experiment_ids`` when successive halving
split a trial's seeds over two). No torch here.
"""

from __future__ import annotations

import math
import time

import pandas as pd

from .codec import _dumps, _int_or_none, _loads, _real
from .connection import _Connection, _dicts
from .schema import EXPERIMENT_STATUSES, _check_choice

# the trial fields kept in columns of their own (the rest: schedule, floss, seeds as JSON, others in extra)
_NUMBERS = ("success_rate", "ci_low", "ci_high", "compute_seconds", "train_seconds", "floss_seconds",
            "median_convergence")
_COLUMNS = ("trial", "label", "complete", "n", "successes", *_NUMBERS, "experiment_id")
_JSON = ("schedule", "floss", "seeds", "params")
_ADVICE_COLUMNS = ("id, name, status, created_at, updated_at, trials_done, trials_total, experiment_id, "
                   "cancel_requested, error, worker_id, attempts, config_json, result_json")


class _Advice(_Connection):
    """The adviser's side of ``Store``."""

    # ---------------------------------------------------------------- writing
    def create_advice(self, config: dict, name: str, *, status: str = "running", worker_id: str | None = None,
                      trials_total: int | None = None) -> int:
        """Insert a schedule search; returns its id. ``config``: the base spec, the search's settings and
        the package versions (``advise.advice_config``). ``status`` 'running' (the default): this process
        runs it (no worker claims it); ``queue_advice`` queues one for the worker."""
        _check_choice(status, EXPERIMENT_STATUSES, "advice status")
        now = time.time()
        if trials_total is None and isinstance(config, dict):
            total = (config.get("advise") or {}).get("trials")
            trials_total = None if total is None else int(total) + 1   # + the no-flossing baseline
        with self._write() as conn:
            return conn.execute(
                "INSERT INTO advice (name, config_json, status, created_at, updated_at, trials_total, worker_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (str(name), _dumps(config), status, now, now, _int_or_none(trials_total), worker_id)).lastrowid

    def queue_advice(self, config: dict, name: str) -> int:
        """Queue a schedule search for the background worker (status 'queued'); returns its id."""
        return self.create_advice(config, name, status="queued")

    def save_advice_trial(self, advice_id: int, trial: dict) -> None:
        """Write one evaluated trial (a ``floss_core.advice`` trial dict; ``params``: the sampler's
        parameters, optional), replacing a row of the same number, and count it in the advice's progress."""
        advice_id = int(advice_id)
        extra = {k: v for k, v in trial.items() if k not in _COLUMNS and k not in _JSON}
        row = (advice_id, int(trial["trial"]), str(trial["label"]), str(trial["schedule"]["name"]),
               int(bool(trial["complete"])), int(trial["n"]), int(trial["successes"]),
               *(_real(trial.get(k)) for k in _NUMBERS), _int_or_none(trial.get("experiment_id")),
               _dumps(trial["schedule"]), _dumps(trial.get("floss") or {}), _dumps(list(trial["seeds"])),
               _dumps(trial.get("params") or {}), _dumps(extra), time.time())
        with self._write() as conn:
            _require_advice(conn, advice_id)
            conn.execute(
                "INSERT OR REPLACE INTO advice_trials (advice_id, trial, label, schedule, complete, n, successes, "
                "success_rate, ci_low, ci_high, compute_seconds, train_seconds, floss_seconds, median_convergence, "
                "experiment_id, schedule_json, floss_json, seeds_json, params_json, extra_json, created_at) "
                "VALUES (" + ", ".join("?" * len(row)) + ")", row)
            conn.execute("UPDATE advice SET trials_done = (SELECT COUNT(*) FROM advice_trials WHERE advice_id = ?), "
                         "updated_at = ? WHERE id = ?", (advice_id, time.time(), advice_id))

    def set_advice_progress(self, advice_id: int, *, experiment_id: int | None = None,
                            trials_total: int | None = None) -> None:
        """Which experiment the running trial trains now (None: between trials), and the trial budget."""
        advice_id = int(advice_id)
        with self._write() as conn:
            _require_advice(conn, advice_id)
            conn.execute("UPDATE advice SET experiment_id = ?, trials_total = COALESCE(?, trials_total), "
                         "updated_at = ? WHERE id = ?",
                         (_int_or_none(experiment_id), _int_or_none(trials_total), time.time(), advice_id))

    def finish_advice(self, advice_id: int, status: str, result: dict | None, error: str | None = None) -> None:
        """Set a search's final (or any) status, its result (the recommendation) and error message."""
        advice_id = int(advice_id)
        _check_choice(status, EXPERIMENT_STATUSES, "advice status")
        with self._write() as conn:
            _require_advice(conn, advice_id)
            conn.execute("UPDATE advice SET status = ?, result_json = ?, error = ?, experiment_id = NULL, "
                         "updated_at = ? WHERE id = ?",
                         (status, None if result is None else _dumps(result), error, time.time(), advice_id))

    # ---------------------------------------------------------------- the queue
    def claim_next_advice(self, worker_id: str) -> int | None:
        """Atomically take the oldest queued search (mark it 'running' by ``worker_id``); None if none."""
        with self._write() as conn:
            row = conn.execute("SELECT id FROM advice WHERE status = 'queued' AND cancel_requested = 0 "
                               "ORDER BY id LIMIT 1").fetchone()
            if row is None:
                return None
            conn.execute("UPDATE advice SET status = 'running', worker_id = ?, error = NULL, updated_at = ? "
                         "WHERE id = ?", (worker_id, time.time(), row[0]))
            return row[0]

    def hold_advice(self, advice_id: int, worker_id: str) -> str:
        """Mark a search 'running' by ``worker_id`` (the process about to run it, which heartbeats) unless it
        is done or cancelled already; returns its status afterwards (KeyError if absent). A failed one may
        run again: it resumes after its stored trials."""
        advice_id = int(advice_id)
        with self._write() as conn:
            status = _require_advice(conn, advice_id)
            if status in ("done", "cancelled"):
                return status
            conn.execute("UPDATE advice SET status = 'running', worker_id = ?, error = NULL, updated_at = ? "
                         "WHERE id = ?", (worker_id, time.time(), advice_id))
            return "running"

    def request_cancel_advice(self, advice_id: int) -> str:
        """Ask a search to stop; returns its status afterwards. A queued one is cancelled at once; a running
        one stops within seconds: the experiment its current trial trains is asked to stop too."""
        advice_id = int(advice_id)
        now = time.time()
        with self._write() as conn:
            status = _require_advice(conn, advice_id)
            if status not in ("queued", "running"):
                return status
            conn.execute("UPDATE advice SET cancel_requested = 1, updated_at = ? WHERE id = ?", (now, advice_id))
            if status == "queued":
                conn.execute("UPDATE advice SET status = 'cancelled' WHERE id = ?", (advice_id,))
                return "cancelled"
            conn.execute("UPDATE experiments SET cancel_requested = 1, updated_at = ? WHERE status = 'running' "
                         "AND id = (SELECT experiment_id FROM advice WHERE id = ?)", (now, advice_id))
            return status

    def advice_cancel_requested(self, advice_id: int) -> bool:
        """True if a cancel was requested, or the search no longer exists."""
        with self._read() as conn:
            row = conn.execute("SELECT cancel_requested FROM advice WHERE id = ?", (int(advice_id),)).fetchone()
        return row is None or bool(row[0])

    def requeue_stale_advice(self, max_age_s: float = 15) -> list[int]:
        """Put running searches whose worker died (no heartbeat for ``max_age_s``, or marked dead) back in
        the queue, their finished trials kept (``advise.run_advice`` resumes after them); a stale search with
        a pending cancel is cancelled. A running search no worker holds yet (``create_advice`` before its
        ``hold_advice``) is left alone. Returns the re-queued ids."""
        from .queue import DEAD_WORKER

        self.workers(max_age_s)   # marks dead workers
        now = time.time()
        with self._write() as conn:
            stale = conn.execute(
                "SELECT a.id, a.cancel_requested FROM advice a LEFT JOIN workers w ON w.worker_id = a.worker_id "
                "WHERE a.status = 'running' AND a.worker_id IS NOT NULL "
                "AND (w.heartbeat_at IS NULL OR w.heartbeat_at < ? OR w.status = ?) "
                "ORDER BY a.id", (now - max_age_s, DEAD_WORKER)).fetchall()
            requeued = []
            for advice_id, cancel in stale:
                conn.execute("UPDATE advice SET status = ?, worker_id = NULL, experiment_id = NULL, "
                             "attempts = attempts + 1, updated_at = ? WHERE id = ?",
                             ("cancelled" if cancel else "queued", now, advice_id))
                if not cancel:
                    requeued.append(advice_id)
        return requeued

    def delete_advice(self, advice_id: int) -> bool:
        """Delete a search and its trial rows (its experiments stay, as ordinary experiments). False if absent."""
        with self._write() as conn:
            conn.execute("DELETE FROM advice_trials WHERE advice_id = ?", (int(advice_id),))
            return conn.execute("DELETE FROM advice WHERE id = ?", (int(advice_id),)).rowcount > 0

    # ---------------------------------------------------------------- reading
    def advice(self, advice_id: int) -> dict:
        """One search: id, name, status, created_at, updated_at (Unix seconds), trials_done, trials_total,
        experiment_id (the running trial's), cancel_requested (bool), error, worker_id, attempts, config
        (dict), result (dict or None: the recommendation, ``advice.recommend``'s keys). KeyError if absent."""
        with self._read() as conn:
            rows = _dicts(conn.execute(f"SELECT {_ADVICE_COLUMNS} FROM advice WHERE id = ?", (int(advice_id),)))
        if not rows:
            raise KeyError(f"no advice {advice_id} in {self.path}")
        return _advice_row(rows[0])

    def advice_list(self) -> pd.DataFrame:
        """Every search, oldest first: the columns of ``advice`` (timestamps as UTC ``pandas.Timestamp``) and
        ``statement``, the recommendation in words (None until done)."""
        with self._read() as conn:
            rows = [_advice_row(r) for r in _dicts(conn.execute(f"SELECT {_ADVICE_COLUMNS} FROM advice ORDER BY id"))]
        columns = ["id", "name", "status", "created_at", "updated_at", "trials_done", "trials_total",
                   "experiment_id", "cancel_requested", "error", "worker_id", "attempts", "config", "result"]
        df = pd.DataFrame(rows, columns=columns)
        df["statement"] = [r.get("statement") if isinstance(r, dict) else None for r in df["result"]]
        for column in ("created_at", "updated_at"):
            df[column] = pd.to_datetime(df[column], unit="s", utc=True)
        df["trials_total"] = df["trials_total"].astype("Int64")
        df["experiment_id"] = df["experiment_id"].astype("Int64")
        return df

    def advice_trials(self, advice_id: int) -> list[dict]:
        """A search's evaluated trials, by trial number, as ``floss_core.advice`` trial dicts (a number that
        is not there, e.g. no solved run's convergence, is NaN) plus ``params``, the sampler's parameters."""
        with self._read() as conn:
            rows = _dicts(conn.execute(
                "SELECT trial, label, complete, n, successes, " + ", ".join(_NUMBERS) + ", experiment_id, "
                "schedule_json, floss_json, seeds_json, params_json, extra_json FROM advice_trials "
                "WHERE advice_id = ? ORDER BY trial", (int(advice_id),)))
        out = []
        for r in rows:
            trial = {k: r[k] for k in ("trial", "label", "n", "successes", "experiment_id")}
            trial["complete"] = bool(r["complete"])
            trial.update({k: math.nan if r[k] is None else float(r[k]) for k in _NUMBERS})
            for k in _JSON:
                trial[k] = _loads(r[f"{k}_json"])
            trial["seeds"] = [int(s) for s in trial["seeds"]]
            trial.update(_loads(r["extra_json"]))
            out.append(trial)
        return out


def _advice_row(row: dict) -> dict:
    row = dict(row)
    row["cancel_requested"] = bool(row["cancel_requested"])
    row["config"] = _loads(row.pop("config_json"))
    result = row.pop("result_json")
    row["result"] = None if result is None else _loads(result)
    return row


def _require_advice(conn, advice_id: int) -> str:
    row = conn.execute("SELECT status FROM advice WHERE id = ?", (advice_id,)).fetchone()
    if row is None:
        raise KeyError(f"no advice {advice_id}")
    return row[0]
