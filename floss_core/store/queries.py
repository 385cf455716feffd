"""The dashboard's readers: experiments, runs, curves, spectra and Jacobian diagnostics as DataFrames.

Every reader runs in one read transaction, so its frames come from one snapshot even while a worker
writes. NaN reads back as NaN; timestamps (stored as Unix seconds) come back as UTC ``pandas.Timestamp``;
JSON columns come back decoded (dicts and lists).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable

import pandas as pd

from .codec import _loads
from .connection import _Connection, _dicts
from .schema import SCORED_RUN_STATUSES


class _Queries(_Connection):
    """The read side of ``Store``."""

    def rerun_config(self, experiment_id: int) -> dict:
        """The stored config of an experiment, to pass to ``add_experiment`` again."""
        experiment_id = int(experiment_id)
        with self._read() as conn:
            row = conn.execute("SELECT config_json FROM experiments WHERE id = ?", (experiment_id,)).fetchone()
        if row is None:
            raise KeyError(f"no experiment {experiment_id} in {self.path}")
        return _loads(row[0])

    def experiments(self) -> pd.DataFrame:
        """All experiments, oldest first, one row each.

        Columns: id, name, status, created_at, updated_at (UTC timestamps), progress_step,
        progress_total, eta_seconds (NaN unless running and estimated), fraction (``progress_fraction``:
        the one progress figure every display shows), cancel_requested (bool), error, worker_id, attempts,
        n_runs, n_finished (runs trained to the end: done or diverged, the ones with results),
        n_cancelled, n_failed, n_running, n_queued, config (dict).
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
                   e.progress_fraction,
                   (SELECT COUNT(*) FROM runs r WHERE r.experiment_id = e.id) AS n_runs,
                   {_COUNTS}
                   e.config_json
            FROM experiments e {where}
            ORDER BY e.id""", params)
        df["cancel_requested"] = df["cancel_requested"].astype(bool)
        df["progress_total"] = df["progress_total"].astype("Int64")
        df["eta_seconds"] = [eta_of(st, eta) for st, eta in zip(df["status"], df["eta_seconds"])]
        df["eta_seconds"] = df["eta_seconds"].astype(float)
        df.insert(df.columns.get_loc("eta_seconds") + 1, "fraction",
                  [fraction_of(*row) for row in zip(df["status"], df["progress_step"], df["progress_total"],
                                                    df.pop("progress_fraction"))])
        df["fraction"] = df["fraction"].astype(float)
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
        eval_seconds, diag_seconds, wall_seconds, device, started_at, finished_at, attempts, state,
        state_step, state_steps (what a running run is doing now: ``set_progress``; left as last written
        once it is no longer running), versions (dict), config (dict), then one column per key of the
        run's ``final`` dict (test_acc, lambda1_before, ...; NaN where absent).
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
                   r.floss_seconds, r.train_seconds, r.eval_seconds, r.diag_seconds, r.wall_seconds, r.device,
                   r.started_at, r.finished_at, r.attempts, r.state, r.state_step, r.state_steps,
                   r.versions_json, r.config_json, r.final_json
            FROM runs r JOIN experiments e ON e.id = r.experiment_id
            {where}
            ORDER BY r.experiment_id, r.id""", params)
        df["success"] = df["success"].astype("boolean")
        for column in ("convergence_step", "diverged_step", "state_step", "state_steps"):
            df[column] = df[column].astype("Int64")
        for column in ("floss_seconds", "train_seconds", "eval_seconds", "diag_seconds", "wall_seconds"):
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

        Returns a dict: experiment_id, status, step, total (work units), fraction (``fraction_of``: 0..1,
        None if unknown), eta_seconds (``eta_of``: NaN unless running and estimated), cancel_requested,
        error, worker_id, updated_at (Unix s) and runs, a dict {run status: count}. KeyError if absent.
        """
        experiment_id = int(experiment_id)
        with self._read() as conn:
            row = conn.execute("SELECT status, progress_step, progress_total, eta_seconds, cancel_requested, "
                               "error, worker_id, updated_at, progress_fraction FROM experiments WHERE id = ?",
                               (experiment_id,)).fetchone()
            counts = dict(conn.execute("SELECT status, COUNT(*) FROM runs WHERE experiment_id = ? "
                                       "GROUP BY status", (experiment_id,)))
        if row is None:
            raise KeyError(f"no experiment {experiment_id} in {self.path}")
        status, step, total, eta, cancel, error, worker_id, updated_at, stored = row
        fraction = fraction_of(status, step, total, stored)
        return {"experiment_id": experiment_id, "status": status, "step": step, "total": total,
                "fraction": None if math.isnan(fraction) else fraction, "eta_seconds": eta_of(status, eta),
                "cancel_requested": bool(cancel), "error": error, "worker_id": worker_id,
                "updated_at": updated_at, "runs": counts}

    def _frame(self, sql: str, params: Iterable = ()) -> pd.DataFrame:
        with self._read() as conn:
            cur = conn.execute(sql, tuple(params))
            rows = cur.fetchall()
        return pd.DataFrame.from_records(rows, columns=[d[0] for d in cur.description])


# The run counts of an experiment row: finished = trained to the end (done or diverged: the runs with
# results), and the others by status, so that a cancelled experiment says how many finished and how many
# were cancelled.
_COUNTS = "".join(
    f"(SELECT COUNT(*) FROM runs r WHERE r.experiment_id = e.id AND r.status IN ({statuses})) AS n_{name},\n"
    for name, statuses in (("finished", ", ".join(f"'{s}'" for s in SCORED_RUN_STATUSES)),
                           ("cancelled", "'cancelled'"), ("failed", "'failed'"), ("running", "'running'"),
                           ("queued", "'queued'")))


def fraction_of(status: str, step, total, stored=None) -> float:
    """An experiment's progress, 0..1, the one figure every display shows: 1 when done; else the
    fraction the runner stored (its work weighted by time, ``runner.queue._Progress``), else step / total
    work units (a store from before schema v4); NaN when unknown."""
    if status == "done":
        return 1.0
    if stored is not None and not _missing(stored):
        return min(max(float(stored), 0.0), 1.0)
    if _missing(total) or not total or _missing(step):
        return math.nan
    return min(max(float(step) / float(total), 0.0), 1.0)


def eta_of(status: str, eta) -> float:
    """Seconds left, as the runner estimated them: NaN unless the experiment is running and an estimate
    exists (a queued, finished or cancelled experiment has no time left to show)."""
    if status != "running" or _missing(eta) or not math.isfinite(float(eta)):
        return math.nan
    return max(float(eta), 0.0)


def _missing(x) -> bool:
    return x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x))


def _placeholders(values: list) -> str:
    return "(" + ", ".join("?" * len(values)) + ")"


def _timestamps(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    for column in columns:
        df[column] = pd.to_datetime(df[column].astype(float), unit="s", utc=True)
    return df


def run_records(runs: pd.DataFrame) -> list[dict]:
    """``Store.runs()`` rows back into run records (``train.train``'s shape, without curves), ready for
    ``experiment.summarize``: the columns after ``config`` (the final metrics) go into ``final``, a missing
    value left out; a missing success counts as a failure. The runner, the CLI and the report all read
    stored runs through this one function."""
    from ..stats import is_missing

    base = list(runs.columns[:runs.columns.get_loc("config") + 1]) if "config" in runs else list(runs.columns)
    records = []
    for row in runs.to_dict("records"):
        final = {k[6:] if k.startswith("final_") and k[6:] in base else k: row[k]
                 for k in runs.columns if k not in base and not is_missing(row[k])}
        records.append({
            "run_id": row["run_id"], "schedule": row["schedule"], "seed": int(row["seed"]),
            "member": int(row["member"]), "config": row["config"], "status": row["status"],
            "success": bool(row["success"]) if not is_missing(row["success"]) else False,
            "convergence_step": None if is_missing(row["convergence_step"]) else int(row["convergence_step"]),
            "diverged_step": None if is_missing(row["diverged_step"]) else int(row["diverged_step"]),
            "reason": row["reason"], "final": final, "floss_seconds": row["floss_seconds"],
            "train_seconds": row["train_seconds"], "eval_seconds": row.get("eval_seconds"),
            "diag_seconds": row.get("diag_seconds"), "wall_seconds": row["wall_seconds"], "device": row["device"],
        })
    return records
