"""The dashboard's and the report's numbers: pure pandas, ``(store DataFrames) -> DataFrame``.

Inputs are the frames of ``floss_core.store.Store``: ``runs()``, ``metrics()``, ``spectra()``,
``jacobian()``. Outputs: bands of a quantity across seeds, success rates with 95% Wilson intervals,
spectra per stage, Jacobian curves per horizon, the ROI table, the runs and experiments lists.

A band is mean ± 1 sample standard deviation across seeds (0 for a single seed); non-finite values
(NaN, ±inf) are left out of their group and ``n`` counts the seeds that remain. Success counts only
the scored runs (``SCORED``): a diverged run is a failure, a failed or unfinished one no outcome.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..schedules import NAMES as SCHEDULES
from ..stats import success_rate
from ..tasks import SCORE_COLUMNS
from ..store import SCORED_RUN_STATUSES as SCORED  # a diverged run is a failure, a failed one no outcome

STAGES = ("initial", "after flossing", "end of training")  # the spectrum / Jacobian snapshots shown


# ------------------------------------------------------------------------------ small helpers
def schedule_order(names) -> list[str]:
    """Schedule names in the canonical order none, pre, inter, pre+inter, adaptive, joint."""
    return sorted(set(names), key=lambda n: (SCHEDULES.index(n) if n in SCHEDULES else len(SCHEDULES), n))


def _by_schedule(df: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by delay, then schedule in the canonical order."""
    if df.empty:
        return df
    rank = df["schedule"].map({s: i for i, s in enumerate(schedule_order(df["schedule"]))})
    return df.assign(_r=rank).sort_values(["delay", "_r"]).drop(columns="_r").reset_index(drop=True)


def _delays_of(df: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``df`` that belong to ``runs`` (by run_id), plus each run's delay."""
    out = df[df["run_id"].isin(runs["run_id"])].copy()
    out["delay"] = out["run_id"].map(runs.set_index("run_id")["delay"])
    return out


def _band(df: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """Mean ± 1 s.d. of the finite ``value`` s over the rows of each ``keys`` group (one row per seed)."""
    cols = keys + ["mean", "lo", "hi", "n"]
    finite = df[np.isfinite(df[value].astype(float))]
    if finite.empty:
        return pd.DataFrame(columns=cols)
    g = finite.groupby(keys, sort=True)[value]
    out = g.agg(mean="mean", sd="std", n="count").reset_index()
    sd = out.pop("sd").fillna(0.0)
    out["lo"], out["hi"] = out["mean"] - sd, out["mean"] + sd
    return out[cols]


def _succeeded(runs: pd.DataFrame) -> pd.Series:
    """Per run: True where it succeeded (a missing success is no success)."""
    return runs["success"].fillna(False).astype(bool)


def _scored_groups(runs: pd.DataFrame):
    """The scored runs grouped by (delay, schedule), in sorted order."""
    return runs[runs["status"].isin(SCORED)].groupby(["delay", "schedule"], sort=True)


def score_column(runs: pd.DataFrame) -> str:
    """The test score the runs recorded: the first of the tasks' score columns (``tasks.SCORE_COLUMNS``:
    'test_acc' for bit tasks, 'test_r2' for a CSV forecast) that holds a value, else the first."""
    return next((c for c in SCORE_COLUMNS if c in runs and runs[c].notna().any()), SCORE_COLUMNS[0])


# ------------------------------------------------------------------------------ runs and experiments
def experiment_label(row) -> str:
    return f"#{row['id']} {row['name']} ({row['status']})"


def experiments_table(experiments: pd.DataFrame) -> pd.DataFrame:
    """The experiments list for display: id, name, status, progress (0..1), runs finished, created, ETA."""
    if experiments.empty:
        return pd.DataFrame(columns=["id", "name", "status", "progress", "runs", "created", "eta_s"])
    e = experiments
    total = e["progress_total"].astype(float)
    progress = np.where(e["status"] == "done", 1.0, (e["progress_step"] / total).fillna(0.0).clip(0, 1))
    return pd.DataFrame({"id": e["id"], "name": e["name"], "status": e["status"], "progress": progress,
                         "runs": e["n_finished"].astype(str) + " / " + e["n_runs"].astype(str),
                         "created": e["created_at"].dt.strftime("%Y-%m-%d %H:%M"),
                         "eta_s": e["eta_seconds"].where(e["status"].isin(["queued", "running"]))})


def filter_runs(runs: pd.DataFrame, *, task=(), delay=(), schedule=(), status=()) -> pd.DataFrame:
    """Rows of ``runs`` whose task / delay / schedule / status is among the given values (empty = any)."""
    keep = pd.Series(True, index=runs.index)
    for column, values in (("task", task), ("delay", delay), ("schedule", schedule), ("status", status)):
        if len(values):
            keep &= runs[column].isin(list(values))
    return runs[keep]


def runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs list for display: one row per run with its outcome, λ_1 / κ₂ before and after, timings."""
    score = score_column(runs)
    columns = {"run_id": "run", "experiment_id": "experiment", "task": "task", "delay": "delay",
               "schedule": "schedule", "seed": "seed", "status": "status", "success": "success",
               "convergence_step": "converged at", score: score.replace("_", " "),
               "lambda1_before": "λ1 before", "lambda1_after": "λ1 after",
               "log10_kappa_before": "log10 κ2 before", "log10_kappa_after": "log10 κ2 after",
               "wall_seconds": "wall s", "floss_seconds": "floss s", "reason": "reason"}
    out = pd.DataFrame({label: runs[c] if c in runs else np.nan for c, label in columns.items()})
    return out.reset_index(drop=True)


# ------------------------------------------------------------------------------ outcomes
def success_counts(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (delay, schedule) over the scored runs, in sorted order: n, successes, rate, lo, hi (95% Wilson)."""
    rows = []
    for (delay, schedule), g in _scored_groups(runs):
        n, wins = len(g), int(_succeeded(g).sum())
        rows.append((delay, schedule, n, wins, *success_rate(wins, n)))
    return pd.DataFrame(rows, columns=["delay", "schedule", "n", "successes", "rate", "lo", "hi"])


def success_vs_delay(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (delay, schedule) over finished runs (done or diverged): n, successes, rate, lo, hi (95% Wilson)."""
    return _by_schedule(success_counts(runs))


def metric_band(metrics: pd.DataFrame, runs: pd.DataFrame, name: str) -> pd.DataFrame:
    """Mean ± s.d. across seeds of metric ``name`` per (delay, schedule, step)."""
    m = _delays_of(metrics[metrics["name"] == name], runs)
    return _band(m, ["delay", "schedule", "step"], "value")


def metric_seeds(metrics: pd.DataFrame, runs: pd.DataFrame, name: str) -> pd.DataFrame:
    """Metric ``name`` per seed: columns delay, schedule, seed, step, value."""
    m = _delays_of(metrics[metrics["name"] == name], runs)
    return m[["delay", "schedule", "seed", "step", "value"]].reset_index(drop=True)


def convergence_steps(runs: pd.DataFrame) -> pd.DataFrame:
    """Successful runs' convergence steps: columns delay, schedule, seed, convergence_step."""
    ok = runs[_succeeded(runs) & runs["convergence_step"].notna()]
    out = ok[["delay", "schedule", "seed", "convergence_step"]].astype({"convergence_step": float})
    return out.reset_index(drop=True)


# ------------------------------------------------------------------------------ spectra
def spectrum_stages(spectra: pd.DataFrame) -> pd.DataFrame:
    """Spectra (or Jacobian rows) tagged with a ``stage``: 'initial' (phase init), 'after flossing' (the first flossing
    phase's *_after snapshot of each run) and 'end of training' (phase final); other snapshots dropped."""
    s = spectra
    after = s[s["phase"].str.endswith("_after")]
    first_after = after[after["step"] == after.groupby("run_id")["step"].transform("min")]
    first_after = first_after[first_after["phase"] == first_after.groupby("run_id")["phase"].transform("first")]
    parts = [s[s["phase"] == "init"].assign(stage="initial"), first_after.assign(stage="after flossing"),
             s[s["phase"] == "final"].assign(stage="end of training")]
    return pd.concat(parts, ignore_index=True)


def spectrum_band(spectra: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Mean ± s.d. of λ_i across seeds per (delay, schedule, stage, index)."""
    s = _delays_of(spectrum_stages(spectra), runs)
    return _band(s, ["delay", "schedule", "stage", "index"], "exponent")


def lambda1_by_stage(band: pd.DataFrame) -> pd.DataFrame:
    """From ``spectrum_band``: one row per (delay, schedule), mean λ_1 per stage in columns
    'initial', 'after flossing', 'end of training' (NaN where a stage was not recorded)."""
    top = band[band["index"] == 1]
    wide = top.pivot_table(index=["delay", "schedule"], columns="stage", values="mean", aggfunc="first")
    wide = wide.reindex(columns=list(STAGES)).reset_index()
    wide.columns.name = None
    return _by_schedule(wide)


def topk_over_training(spectra: pd.DataFrame, runs: pd.DataFrame, k: int) -> pd.DataFrame:
    """Mean ± s.d. of the top-k exponents at every stored snapshot, per (delay, schedule, step, index).

    Several snapshots at one step (before / after a flossing phase) keep the last one."""
    s = _delays_of(spectra[spectra["index"] <= k], runs)
    s = s.drop_duplicates(["run_id", "step", "index"], keep="last")  # the store keeps snapshot order
    return _band(s, ["delay", "schedule", "step", "index"], "exponent")


# ------------------------------------------------------------------------------ conditioning
def jacobian_band(jac: pd.DataFrame, runs: pd.DataFrame, value: str = "log10_kappa") -> pd.DataFrame:
    """Mean ± s.d. across seeds per (delay, schedule, stage, horizon) of ``value``: 'log10_kappa'
    (log10 of κ₂ of the long-term Jacobian), 'log10_kappa_k' (over the top-k singular values) or
    'log10_grad_norm' (log10 of the gradient norm ``horizon`` steps back)."""
    j = _delays_of(spectrum_stages(jac), runs)
    j["log10_kappa"] = j["log_kappa"] / math.log(10)
    j["log10_kappa_k"] = j["log_kappa_k"] / math.log(10)
    with np.errstate(divide="ignore", invalid="ignore"):
        j["log10_grad_norm"] = np.log10(j["grad_norm"].astype(float))
    return _band(j, ["delay", "schedule", "stage", "horizon"], value)


def singular_values(jac: pd.DataFrame, runs: pd.DataFrame, *, top: int = 5) -> pd.DataFrame:
    """Mean across seeds of log10 σ_i of the long-term Jacobian, i = 1..top, per
    (delay, schedule, stage, horizon, index)."""
    j = _delays_of(spectrum_stages(jac), runs)
    rows = [(r.delay, r.schedule, r.stage, r.horizon, i + 1, v / math.log(10))
            for r in j.itertuples() for i, v in enumerate(r.log_sv[:top])]
    df = pd.DataFrame(rows, columns=["delay", "schedule", "stage", "horizon", "index", "log10_sv"])
    return _band(df, ["delay", "schedule", "stage", "horizon", "index"], "log10_sv")


# ------------------------------------------------------------------------------ return on investment
def roi_table(runs: pd.DataFrame, baseline: str = "none") -> pd.DataFrame:
    """Per (delay, schedule) over finished runs: what each schedule costs and what it buys.

    Columns: delay, schedule, n, successes, success_rate, success_lo, success_hi,
    wall_s_per_run (mean compute seconds per network: its share of its ensemble's wall time),
    train_s_per_run, floss_s_per_run, floss_share (flossing seconds / wall seconds),
    median_convergence (step, successful runs), time_to_solution_s (compute seconds per solved network:
    all wall seconds / successes; inf with no success), extra_s_per_success (vs ``baseline`` at the same
    delay: extra seconds per run / extra success rate; NaN where there is no baseline or no gain).
    """
    cols = ["delay", "schedule", "n", "successes", "success_rate", "success_lo", "success_hi",
            "wall_s_per_run", "train_s_per_run", "floss_s_per_run", "floss_share", "median_convergence",
            "time_to_solution_s", "extra_s_per_success"]
    rows = []
    # success_counts has one row per scored group, in the groups' order: row c counts the runs g
    for c, (_, g) in zip(success_counts(runs).itertuples(), _scored_groups(runs)):
        n, wins = c.n, c.successes
        wall, floss = g["wall_seconds"].sum(), g["floss_seconds"].sum()
        conv = g.loc[_succeeded(g), "convergence_step"].dropna().astype(float)
        rows.append({"delay": c.delay, "schedule": c.schedule, "n": n, "successes": wins, "success_rate": c.rate,
                     "success_lo": c.lo, "success_hi": c.hi, "wall_s_per_run": wall / n,
                     "train_s_per_run": g["train_seconds"].sum() / n, "floss_s_per_run": floss / n,
                     "floss_share": floss / wall if wall > 0 else math.nan,
                     "median_convergence": conv.median() if len(conv) else math.nan,
                     "time_to_solution_s": wall / wins if wins else math.inf})
    out = pd.DataFrame(rows, columns=cols[:-1])
    extra = []
    for r in out.itertuples():
        base = out[(out["delay"] == r.delay) & (out["schedule"] == baseline)]
        if r.schedule == baseline or base.empty:
            extra.append(math.nan)
            continue
        gain = r.success_rate - base["success_rate"].iloc[0]
        extra.append((r.wall_s_per_run - base["wall_s_per_run"].iloc[0]) / gain if gain > 0 else math.nan)
    out["extra_s_per_success"] = extra
    return _by_schedule(out)


def roi_headline(roi: pd.DataFrame, baseline: str = "none") -> dict:
    """The answers at the longest (hardest) delay of a ``roi_table``: ``delay``; ``best``, the schedule with
    the least compute per solved network, and its ``time_to_solution_s`` (None / NaN when nothing was
    solved); ``gain``, the schedule whose additional successes over ``baseline`` come cheapest, and its
    ``extra_s_per_success`` (None / NaN when no schedule beat the baseline); ``floss_share``, the mean
    flossing share of the other schedules."""
    at = roi[roi["delay"] == roi["delay"].max()]
    solved = at[at["successes"] > 0].sort_values(["time_to_solution_s", "wall_s_per_run"])
    gains = at[at["extra_s_per_success"].notna()].sort_values("extra_s_per_success")
    flossed = at[at["schedule"] != baseline]["floss_share"]
    return {"delay": int(roi["delay"].max()),
            "best": solved["schedule"].iloc[0] if len(solved) else None,
            "time_to_solution_s": float(solved["time_to_solution_s"].iloc[0]) if len(solved) else math.nan,
            "gain": gains["schedule"].iloc[0] if len(gains) else None,
            "extra_s_per_success": float(gains["extra_s_per_success"].iloc[0]) if len(gains) else math.nan,
            "floss_share": float(flossed.mean()) if len(flossed) else math.nan}
