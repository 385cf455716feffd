"""The store's schema: the statuses it knows, the SQL of every schema version, and its error type.

Tables (schema version 5, see ``MIGRATIONS``): meta, experiments, runs (one per delay x schedule x seed),
metrics (long: one row per step x name), spectra (one Lyapunov spectrum per row), jacobian (one horizon
per row), workers, advice (one schedule search each) and advice_trials (one evaluated candidate each). Opening a file and running the migrations is ``connection``'s job.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

from .. import settings

APP = "floss_core"
EXPERIMENT_STATUSES = ("queued", "running", "done", "failed", "cancelled")
RUN_STATUSES = ("queued", "running", "done", "failed", "diverged", "cancelled")
FINAL_RUN_STATUSES = ("done", "failed", "diverged", "cancelled")   # a run in one of these never trains again
SCORED_RUN_STATUSES = ("done", "diverged")   # the runs that count in success rates and summaries
WORKER_STATUSES = ("idle", "busy")

# The runs table's columns as released in v1 (one run per experiment x schedule x seed); v2 rebuilt it
# with a delay column and the delay in its key. Frozen like the scripts below: a later change to runs is
# a new migration, never an edit here.
_RUNS_HEAD = """\
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        experiment_id    INTEGER NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
"""
_RUNS_DELAY = """\
        delay            INTEGER NOT NULL DEFAULT 0,         -- the task delay of this run (0: unknown)
"""
_RUNS_BODY = """\
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
"""


def _runs_table(name: str, *, delay: bool) -> str:
    """``CREATE TABLE name (...)`` with the runs columns: v1's, or with ``delay`` v2's (delay in the key)."""
    key = "experiment_id, delay, schedule, seed" if delay else "experiment_id, schedule, seed"
    return (f"CREATE TABLE {name} (\n" + _RUNS_HEAD + (_RUNS_DELAY if delay else "") + _RUNS_BODY
            + f"        UNIQUE ({key})\n    );")


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

    """ + _runs_table("runs", delay=False) + """

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
    "\n    " + _runs_table("runs_v2", delay=True) + """
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
    # v3: a run's wall time split four ways (issue 15): task training and flossing were there; evaluation
    # (test batches, the success check) and the lab's diagnostics (spectra, κ₂, gradient-vs-horizon
    # snapshots) get their own columns, so that no cost headline counts diagnostics as a schedule's cost.
    """
    ALTER TABLE runs ADD COLUMN eval_seconds REAL;
    ALTER TABLE runs ADD COLUMN diag_seconds REAL;
    """,
    # v4: progress that tells the truth (issue 16). While a run trains, what it is doing now (free text:
    # ``train.STATES``, e.g. training, pre flossing, waiting, diagnostics, diverged) and where: step
    # state_step of state_steps (training steps, or the flossing phase's); meaningful only while its status
    # is 'running'. The experiment's progress as one fraction of its work (time-weighted by the runner; the
    # bar, the table and the CLI all show this one number).
    """
    ALTER TABLE runs ADD COLUMN state TEXT;
    ALTER TABLE runs ADD COLUMN state_step INTEGER;
    ALTER TABLE runs ADD COLUMN state_steps INTEGER;
    ALTER TABLE experiments ADD COLUMN progress_fraction REAL;
    """,
    # v5: the schedule adviser (issue 19): a search over schedules is a kind of its own. An advice row is
    # one search (its config: the base comparison spec, the search's settings, the package versions; its
    # result: the recommendation with the Pareto front), queued, claimed and cancelled like an experiment;
    # an advice_trials row is one candidate schedule evaluated (the numbers ``advice.recommend`` reads, as
    # columns; the schedule, flossing overrides, seeds and sampler parameters as JSON), its runs held by
    # the experiment(s) it names.
    """
    CREATE TABLE advice (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        name             TEXT NOT NULL,
        config_json      TEXT NOT NULL,                      -- {"spec": ..., "advise": ..., "versions": ...}
        status           TEXT NOT NULL DEFAULT 'queued'
                         CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
        created_at       REAL NOT NULL,
        updated_at       REAL NOT NULL,
        trials_done      INTEGER NOT NULL DEFAULT 0,
        trials_total     INTEGER,
        experiment_id    INTEGER,                            -- the experiment the running trial trains now
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        result_json      TEXT,                               -- the recommendation (advice.recommend) once done
        error            TEXT,
        worker_id        TEXT,
        attempts         INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX advice_status ON advice (status, id);

    CREATE TABLE advice_trials (
        advice_id          INTEGER NOT NULL REFERENCES advice (id) ON DELETE CASCADE,
        trial              INTEGER NOT NULL,                 -- 0: the no-flossing baseline
        label              TEXT NOT NULL,
        schedule           TEXT NOT NULL,                    -- the schedule's name
        complete           INTEGER NOT NULL,                 -- 1: ran every seed of the search
        n                  INTEGER NOT NULL,
        successes          INTEGER NOT NULL,
        success_rate       REAL,
        ci_low             REAL,
        ci_high            REAL,
        compute_seconds    REAL,                             -- mean training + flossing seconds per run
        train_seconds      REAL,
        floss_seconds      REAL,
        median_convergence REAL,                             -- NULL: nothing solved
        experiment_id      INTEGER REFERENCES experiments (id) ON DELETE SET NULL,
        schedule_json      TEXT NOT NULL,
        floss_json         TEXT NOT NULL,
        seeds_json         TEXT NOT NULL,
        params_json        TEXT NOT NULL,                    -- the sampler's parameters ({} for the baseline)
        extra_json         TEXT NOT NULL DEFAULT '{}',       -- any further trial fields
        created_at         REAL NOT NULL,
        PRIMARY KEY (advice_id, trial)
    );
    CREATE INDEX advice_trials_experiment ON advice_trials (experiment_id);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS) - 1


class StoreError(Exception):
    """The file is not a usable Gradient Flossing Lab store (foreign, newer, missing or closed)."""


def default_store_path() -> Path:
    """Where the store lives unless told otherwise: ``$FLOSS_STORE``, else ``./floss_data/floss.db``."""
    return Path(settings.get("FLOSS_STORE") or Path("floss_data") / "floss.db")


def _statements(script: str) -> Iterator[str]:
    """Split an SQL script into statements (``executescript`` would COMMIT our open transaction)."""
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \t\n;"):
                yield buffer
            buffer = ""


# Run statuses that never train again, as an SQL list: ``status NOT IN {_FINAL_SQL}``.
_FINAL_SQL = "(" + ", ".join(f"'{s}'" for s in FINAL_RUN_STATUSES) + ")"


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")
