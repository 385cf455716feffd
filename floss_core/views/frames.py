"""The dashboard's and the report's numbers: pure pandas, ``(store DataFrames) -> DataFrame``.

Inputs are the frames of ``floss_core.store.Store``: ``runs()``, ``metrics()``, ``spectra()``,
``jacobian()``. Outputs: bands of a quantity across seeds, success rates with 95% Wilson intervals,
time to solution (Kaplan–Meier curves, medians, log-rank and paired-seed tests), spectra per stage,
Jacobian curves per horizon and the conditioning headline, the ROI table, the runs and experiments lists.

A band is mean ± 1 sample standard deviation across seeds (0 for a single seed); non-finite values
(NaN, ±inf) are left out of their group and ``n`` counts the seeds that remain. Success counts only
the scored runs (``SCORED``): a diverged run is a failure, a failed or unfinished one no outcome.
"""
from __future__ import annotations

import functools
import inspect
import math

import numpy as np
import pandas as pd

from ..fmt import duration
from ..schedules import NAMES as SCHEDULES
from ..stats import solve_groups, solved_curve, solved_first, success_rate, time_to_solution
from ..tasks import SCORE_COLUMNS, TASKS, seasonal_lag
from ..store import SCORED_RUN_STATUSES as SCORED  # a diverged run is a failure, a failed one no outcome
from ..store import run_records

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


# ------------------------------------------------------------------------------ several experiments
# Runs of several experiments shown side by side carry a ``label`` column (``with_labels``: the set label of
# their experiment, ``sets.set_labels``). Every frame below then has the experiment as one more dimension:
# it is computed per label on that experiment's runs alone (a baseline, a log-rank test, a paired seed are
# always within one experiment), and its rows carry ``label`` (first) and ``series`` ('label · schedule',
# what a chart names a trace). Runs without a label column (one experiment, or a pooled set) give the frames
# exactly as before.
LABEL = "label"


def with_labels(runs: pd.DataFrame, labels: dict) -> pd.DataFrame:
    """``runs`` with a ``label`` column: ``labels[experiment_id]`` of each run."""
    return runs.assign(**{LABEL: runs["experiment_id"].map(labels)})


def series_names(df: pd.DataFrame, *, short: bool = False) -> pd.Series:
    """What each row of a frame is called on a chart: its ``series`` ('#3 arch=gru · pre'), else its schedule;
    ``short``: the experiment by its id alone ('#3 · pre'), for a headline figure beside the settings table."""
    if "series" not in df:
        return df["schedule"]
    if not short:
        return df["series"]
    return df[LABEL].astype(str).str.split(" ").str[0] + " · " + df["schedule"].astype(str)


def experiment_ids(table: pd.DataFrame) -> pd.DataFrame:
    """A display table of a set as a page shows it beside the settings table: its ``label`` column as the
    experiment's id alone ('#3'), headed 'experiment', so the table fits the page; as is without a label."""
    if LABEL not in table:
        return table
    return table.assign(**{LABEL: table[LABEL].astype(str).str.split(" ").str[0]}).rename(
        columns={LABEL: "experiment"})


def _per_label(argument: str = "runs", *, series: bool = True):
    """Give a frame function the experiment dimension: when its ``argument`` frame has a ``label`` column,
    the function runs once per label (in the order the labels first appear) on that label's rows without the
    column, and the results are stacked with ``label`` first and, with ``series``, a ``series`` column last."""
    def wrap(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def labelled(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            df = bound.arguments[argument]
            if LABEL not in df:
                return fn(*args, **kwargs)
            parts = []
            for label in pd.unique(df[LABEL]):
                bound.arguments[argument] = df[df[LABEL] == label].drop(columns=LABEL)
                part = fn(*bound.args, **bound.kwargs)
                part.insert(0, LABEL, label)
                parts.append(part)
            if not parts:   # no rows at all: the function's empty frame, with the columns
                bound.arguments[argument] = df.drop(columns=LABEL)
                part = fn(*bound.args, **bound.kwargs)
                part.insert(0, LABEL, pd.Series(dtype=object))
                parts.append(part)
            out = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)
            if series and "schedule" in out:
                out["series"] = out[LABEL].astype(str) + " · " + out["schedule"].astype(str)
            return out
        return labelled
    return wrap


# ------------------------------------------------------------------------------ runs and experiments
def experiment_label(row) -> str:
    return f"#{row['id']} {row['name']} ({row['status']})"


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def runs_summary(e) -> str:
    """How an experiment's runs stand, in words (the Runs page and the CLI's ``status``): 'done, 18 of 18
    runs finished', 'running, 9 of 18 runs finished', 'cancelled: 5 runs finished, 7 cancelled'. A run is
    finished when it trained to the end (done or diverged: it has results); ``e`` is a row of
    ``Store.experiments()`` (or its dict)."""
    status, n, done = e["status"], int(e["n_runs"]), int(e["n_finished"])
    cancelled, failed = int(e.get("n_cancelled", 0) or 0), int(e.get("n_failed", 0) or 0)
    if status in ("cancelled", "failed"):
        parts = [_count(done, "run") + " finished"] + [f"{k} {what}" for k, what in
                                                       ((cancelled, "cancelled"), (failed, "failed")) if k]
        return f"{status}: " + ", ".join(parts)
    return f"{status}, {done} of {_count(n, 'run')} finished"


def eta_text(status: str, eta, *, at_most: bool = False) -> str:
    """The time left as every display shows it: '42 s' / '3.5 min' while running ('at most 42 s' with
    ``at_most``: ``eta_is_bound``), 'estimating…' before the runner has measured enough, 'finishing…' once
    only the last records are left, '—' otherwise (queued, done, cancelled: no time left to show).
    ``eta``: ``Store.experiments()``'s eta_seconds."""
    if status != "running":
        return "—"
    if eta is None or not isinstance(eta, (int, float)) or math.isnan(eta):
        return "estimating…"
    return "finishing…" if eta < 0.5 else ("at most " if at_most else "") + duration(eta)


def eta_is_bound(e) -> bool:
    """Whether an experiment's ETA is an upper bound: its networks stop when solved (``stop_when_solved`` in
    its stored config, on a task judged at the first evaluation that passes), and the ETA counts the whole
    training budget because when a network will solve is not known in advance."""
    config = e.get("config") if hasattr(e, "get") else None
    if not isinstance(config, dict):
        return False
    task = (config.get("task") or {}).get("name")
    return bool((config.get("train") or {}).get("stop_when_solved")) and task in TASKS and \
        TASKS[task].judged == "first"


def progress_text(e) -> str:
    """One line for an experiment's progress bar: '#3 demo: running, 9 of 18 runs finished · 42 % ·
    ETA 35 s' (the fraction and ETA of the store's experiments row: the table shows the same)."""
    fraction = e["fraction"]
    percent = "" if fraction is None or math.isnan(fraction) else f" · {100 * fraction:.0f} %"
    eta = eta_text(e["status"], e["eta_seconds"], at_most=eta_is_bound(e))
    return f"#{e['id']} {e['name']}: {runs_summary(e)}{percent}" + ("" if eta == "—" else f" · ETA {eta}")


def experiments_table(experiments: pd.DataFrame) -> pd.DataFrame:
    """The experiments list for display: id, name, status, progress (0..1: the store's one fraction, as
    the progress bars show it), runs ('finished / all', then cancelled or failed ones), created, ETA
    (``eta_text``)."""
    if experiments.empty:
        return pd.DataFrame(columns=["id", "name", "status", "progress", "runs", "created", "ETA"])
    e = experiments

    def runs(row) -> str:
        extra = [f"{int(row.get(c, 0) or 0)} {what}" for c, what in (("n_cancelled", "cancelled"), ("n_failed", "failed"))
                 if int(row.get(c, 0) or 0)]
        return f"{int(row['n_finished'])} / {int(row['n_runs'])}" + "".join(f" · {x}" for x in extra)

    rows = e.to_dict("records")
    return pd.DataFrame({"id": e["id"], "name": e["name"], "status": e["status"],
                         "progress": e["fraction"].astype(float).fillna(0.0).to_numpy(),
                         "runs": [runs(r) for r in rows],
                         "created": e["created_at"].dt.strftime("%Y-%m-%d %H:%M"),
                         "ETA": [eta_text(r["status"], r["eta_seconds"], at_most=eta_is_bound(r)) for r in rows]})


def filter_runs(runs: pd.DataFrame, *, task=(), delay=(), schedule=(), status=()) -> pd.DataFrame:
    """Rows of ``runs`` whose task / delay / schedule / status is among the given values (empty = any)."""
    keep = pd.Series(True, index=runs.index)
    for column, values in (("task", task), ("delay", delay), ("schedule", schedule), ("status", status)):
        if len(values):
            keep &= runs[column].isin(list(values))
    return runs[keep]


STATE_HELP = ("what a run is doing: training or flossing, step s of S; 'waiting' while its ensemble-mates "
              "floss or are measured (an ensemble trains in lock-step); 'diagnostics' while its spectrum is measured")


def run_state_text(run) -> str:
    """What a run is doing, in words: its status once it is no longer running ('queued', 'done',
    'diverged', 'cancelled', 'failed'); while it runs, its live state (``Store.runs``' state columns, as
    the training loop reports it): 'training, step 120 of 300', 'pre flossing, step 40 of 100', 'waiting,
    step 0 of 300' (its ensemble-mates floss or are measured: ``STATE_HELP``), 'diagnostics, step 300 of
    300', 'diverged at step 57 (being stored)'."""
    status, state = run["status"], run.get("state")
    if status != "running":
        return status
    if not isinstance(state, str):
        return "starting"
    step, steps = run.get("state_step"), run.get("state_steps")
    at = "" if pd.isna(step) or pd.isna(steps) else f", step {int(step)} of {int(steps)}"
    if state == "diverged":
        return f"diverged at step {int(step) if not pd.isna(step) else '?'} (being stored)"
    if state == "done":
        return "finished (being stored)"
    return f"{state}{at}"


def run_states(runs: pd.DataFrame) -> dict:
    """{what: runs} over an experiment's runs, in words for a progress line: queued, each live state
    (training, pre flossing, waiting, ...), and the final statuses; in that order."""
    keys = [("queued" if r["status"] == "queued" else r["state"] if r["status"] == "running" and
             isinstance(r.get("state"), str) else "starting" if r["status"] == "running" else r["status"])
            for r in runs.to_dict("records")]
    order = ["done", "diverged", "training", "pre flossing", "inter flossing", "adaptive flossing", "diagnostics",
             "waiting", "starting", "queued", "cancelled", "failed"]
    counts = {k: keys.count(k) for k in dict.fromkeys(keys)}
    return dict(sorted(counts.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))


def runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs list for display: one row per run with its status, what it is doing now
    (``run_state_text``), its outcome, λ_1 / κ₂ before and after, timings; where runs stopped when solved,
    the step each stopped at ('stopped at') and the score column labelled as at convergence there."""
    score = score_column(runs)
    runs = runs.assign(_state=[run_state_text(r) for r in runs.to_dict("records")])
    # stop_when_solved: a run that stopped at convergence shows its accuracy there, and the header says so
    stopped = "stopped_at" in runs and bool(runs["stopped_at"].notna().any())
    columns = {"run_id": "run", "experiment_id": "experiment", "task": "task", "delay": "delay",
               "schedule": "schedule", "seed": "seed", "status": "status", "_state": "state", "success": "success",
               "convergence_step": "converged at", **({"stopped_at": "stopped at"} if stopped else {}),
               score: score.replace("_", " ") + (" (at convergence where stopped)" if stopped else ""),
               "lambda1_before": "λ1 before", "lambda1_after": "λ1 after",
               "log10_kappa_before": "log10 κ2 before", "log10_kappa_after": "log10 κ2 after",
               "wall_seconds": "wall s", "floss_seconds": "floss s", "reason": "reason"}
    out = pd.DataFrame({label: runs[c] if c in runs else np.nan for c, label in columns.items()})
    return out.reset_index(drop=True)


def runs_display(table: pd.DataFrame) -> pd.DataFrame:
    """A ``runs_table`` as text for a page: a value that does not exist yet (a run still training) or at all
    (no convergence) reads '—' or 'not reached', never None / NaN / Infinity; numbers at a sensible precision."""
    finished = table["status"].isin(SCORED)

    def fmt(col: str, f) -> pd.Series:
        return pd.Series([MISSING if pd.isna(v) else f(v) for v in table[col]], index=table.index, dtype=object)

    out = table.astype(object).where(table.notna(), MISSING)
    out["success"] = fmt("success", lambda v: "yes" if bool(v) else "no")
    conv = fmt("converged at", lambda v: f"{int(v)}")
    out["converged at"] = conv.where(~(finished & table["converged at"].isna()), "not reached")
    if "stopped at" in table:      # stop_when_solved: '—' for a run that trained the whole budget
        out["stopped at"] = fmt("stopped at", lambda v: f"{int(v)}")
    for col in table.columns:
        if col.startswith("λ1"):
            out[col] = fmt(col, lambda v: "∞" if math.isinf(v) else f"{v:+.3f}")
        elif col.startswith("log10") or col.endswith(" s"):
            out[col] = fmt(col, lambda v: "∞" if math.isinf(v) else f"{v:.2f}")
        elif col not in ("run", "experiment", "delay", "seed", "success", "converged at", "stopped at") and \
                pd.api.types.is_float_dtype(table[col]):
            out[col] = fmt(col, lambda v: f"{v:.3f}")
    return out


# ------------------------------------------------------------------------------ outcomes
@_per_label()
def success_counts(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (delay, schedule) over the scored runs, in sorted order: n, successes, rate, lo, hi (95% Wilson)."""
    rows = []
    for (delay, schedule), g in _scored_groups(runs):
        n, wins = len(g), int(_succeeded(g).sum())
        rows.append((delay, schedule, n, wins, *success_rate(wins, n)))
    return pd.DataFrame(rows, columns=["delay", "schedule", "n", "successes", "rate", "lo", "hi"])


@_per_label()
def success_vs_delay(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (delay, schedule) over finished runs (done or diverged): n, successes, rate, lo, hi (95% Wilson)."""
    return _by_schedule(success_counts(runs))


@_per_label()
def metric_band(metrics: pd.DataFrame, runs: pd.DataFrame, name: str) -> pd.DataFrame:
    """Mean ± s.d. across seeds of metric ``name`` per (delay, schedule, step)."""
    m = _delays_of(metrics[metrics["name"] == name], runs)
    return _band(m, ["delay", "schedule", "step"], "value")


@_per_label()
def metric_seeds(metrics: pd.DataFrame, runs: pd.DataFrame, name: str) -> pd.DataFrame:
    """Metric ``name`` per seed: columns delay, schedule, seed, step, value."""
    m = _delays_of(metrics[metrics["name"] == name], runs)
    return m[["delay", "schedule", "seed", "step", "value"]].reset_index(drop=True)


@_per_label()
def convergence_steps(runs: pd.DataFrame) -> pd.DataFrame:
    """Successful runs' convergence steps: columns delay, schedule, seed, convergence_step."""
    ok = runs[_succeeded(runs) & runs["convergence_step"].notna()]
    out = ok[["delay", "schedule", "seed", "convergence_step"]].astype({"convergence_step": float})
    return out.reset_index(drop=True)


# ------------------------------------------------------------------------------ time to solution
# A run's time to solution is its convergence step; a run that never solved is censored at its last
# training step, a diverged one at its divergence step (floss_core.stats: Kaplan–Meier, log-rank, sign test).
def _solve_groups(runs: pd.DataFrame) -> dict:
    """``stats.solve_groups`` of the scored runs: {(delay, schedule): {seed: (step, solved)}}."""
    return solve_groups(run_records(runs[runs["status"].isin(SCORED)]))


SURVIVAL_CURVE_COLUMNS = ["delay", "schedule", "n", "step", "solved", "lo", "hi", "at_risk", "events", "censored"]


@_per_label()
def survival_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (delay, schedule) over the scored runs: the Kaplan–Meier curve of the fraction of seeds solved
    vs training step, one row per step at which a seed solved or was censored (plus step 0, where none
    had solved, unless one solved there): n, step, solved, lo, hi (95% band), at_risk, events, censored."""
    rows = []
    for (delay, schedule), by_seed in _solve_groups(runs).items():
        c = solved_curve(list(by_seed.values()))
        start = [] if c.step and c.step[0] == 0 else [(0.0, 0.0, 0.0, 0.0, c.n, 0, 0)]
        rows += [(delay, schedule, c.n, *r) for r in start + list(zip(c.step, c.solved, c.lo, c.hi, c.at_risk,
                                                                       c.events, c.censored))]
    return _by_schedule(pd.DataFrame(rows, columns=SURVIVAL_CURVE_COLUMNS))


@_per_label()
def survival_table(runs: pd.DataFrame, baseline: str = "none") -> pd.DataFrame:
    """Per (delay, schedule) over the scored runs: n, successes, the Kaplan–Meier median step to solution
    and its 95% interval (median_solve_step, median_solve_lo, median_solve_hi; inf: not reached within
    the budget), logrank_p vs ``baseline`` at the same delay, and the seeds paired with the baseline:
    paired_seeds, solved_first, baseline_first, paired_p (two-sided sign test); the same figures as
    ``experiment.summarize``'s (one function: ``stats.time_to_solution``)."""
    groups = _solve_groups(runs)
    rows = [{"delay": delay, "schedule": schedule, "successes": sum(s for _, s in groups[(delay, schedule)].values()),
             **row} for (delay, schedule), row in time_to_solution(groups, baseline).items()]
    cols = ["delay", "schedule", "n", "successes", "median_solve_step", "median_solve_lo", "median_solve_hi",
            "logrank_p", "paired_seeds", "solved_first", "baseline_first", "paired_p"]
    return _by_schedule(pd.DataFrame(rows, columns=cols))


@_per_label()
def paired_solves(runs: pd.DataFrame, baseline: str = "none") -> pd.DataFrame:
    """Seed by seed, each schedule against ``baseline`` at the same delay (every schedule trains the same
    seeds: the same initial weights and data): delay, schedule, seed, step, solved, baseline_step,
    baseline_solved, first ('schedule', 'baseline' or 'tie': who solved first; a tie is the same step
    or neither solved). ``step`` is the convergence step, or the step the run was censored at."""
    groups = _solve_groups(runs)
    order = schedule_order(s for _, s in groups)
    rows = []
    for delay, schedule in sorted(groups, key=lambda k: (k[0], order.index(k[1]))):
        by_seed, base = groups[(delay, schedule)], groups.get((delay, baseline))
        if schedule == baseline or base is None:
            continue
        for seed in sorted(set(by_seed) & set(base)):
            first = {1: "schedule", -1: "baseline", 0: "tie"}[solved_first(by_seed[seed], base[seed])]
            rows.append((delay, schedule, seed, *by_seed[seed], *base[seed], first))
    cols = ["delay", "schedule", "seed", "step", "solved", "baseline_step", "baseline_solved", "first"]
    return pd.DataFrame(rows, columns=cols)


def training_budget(runs: pd.DataFrame) -> float | None:
    """The last training step of the runs (``config["train"]["steps"] - 1``, the longest), None when unknown."""
    steps = [c.get("train", {}).get("steps") for c in runs["config"]] if "config" in runs else []
    steps = [x for x in steps if x is not None]
    return float(max(steps)) - 1 if steps else None


def success_thresholds(runs: pd.DataFrame) -> list[float]:
    """The success thresholds on the test score the runs show (``score_column``), sorted: the bit tasks'
    test accuracy bar ``config["train"]["success_acc"]`` (one per value the runs used). Empty where the
    runs do not record it, or where success is judged on another metric than the score shown (csv: on the
    skill over the naive forecasts, not on R²)."""
    out = set()
    for c in runs["config"] if "config" in runs else []:
        entry = TASKS.get((c.get("task") or {}).get("name"))
        bar = (c.get("train") or {}).get("success_acc")
        if entry is not None and entry.success_metric is None and bar is not None:
            out.add(float(bar))
    return sorted(out)


def _step_text(x: float) -> str:
    return "not reached" if x == math.inf else "–" if x != x else f"{x:.0f}"


def _median_text(median: float, lo: float, hi: float) -> str:
    if median == math.inf:   # the interval's upper end is unbounded too; its lower end may still be known
        return "not reached" + (f" (95% CI from {lo:.0f})" if math.isfinite(lo) else "")
    return f"{_step_text(median)} ({_step_text(lo)}–{_step_text(hi)})"


def _p_text(p: float) -> str:
    return "–" if p != p else f"{p:.2g}" if p < 0.01 else f"{p:.2f}"


@_per_label("table", series=False)
def survival_display(table: pd.DataFrame, baseline: str = "none") -> pd.DataFrame:
    """A ``survival_table`` as text, for a page or a report: delay, schedule, solved ('3/5'), median step
    to solution with its 95% interval ('250 (120–not reached)'), the log-rank p vs ``baseline``, the paired
    seeds ('2 / 0 / 1': this schedule first / the baseline first / ties) and the sign test's p."""
    rows = [{"delay": r.delay, "schedule": r.schedule, "solved": f"{r.successes}/{r.n}",
             "median step to solution (95% CI)": _median_text(r.median_solve_step, r.median_solve_lo,
                                                              r.median_solve_hi),
             f"log-rank p vs {baseline}": _p_text(r.logrank_p),
             f"solved first: this / {baseline} / tie": "–" if r.schedule == baseline or not r.paired_seeds else
             f"{r.solved_first} / {r.baseline_first} / {r.paired_seeds - r.solved_first - r.baseline_first}",
             "sign test p": _p_text(r.paired_p)} for r in table.itertuples()]
    return pd.DataFrame(rows, columns=["delay", "schedule", "solved", "median step to solution (95% CI)",
                                       f"log-rank p vs {baseline}", f"solved first: this / {baseline} / tie",
                                       "sign test p"])


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


@_per_label()
def spectrum_band(spectra: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Mean ± s.d. of λ_i across seeds per (delay, schedule, stage, index)."""
    s = _delays_of(spectrum_stages(spectra), runs)
    return _band(s, ["delay", "schedule", "stage", "index"], "exponent")


@_per_label("band")
def lambda1_by_stage(band: pd.DataFrame) -> pd.DataFrame:
    """From ``spectrum_band``: one row per (delay, schedule), mean λ_1 per stage in columns
    'initial', 'after flossing', 'end of training' (NaN where a stage was not recorded)."""
    top = band[band["index"] == 1]
    wide = top.pivot_table(index=["delay", "schedule"], columns="stage", values="mean", aggfunc="first")
    wide = wide.reindex(columns=list(STAGES)).reset_index()
    wide.columns.name = None
    return _by_schedule(wide)


@_per_label()
def topk_over_training(spectra: pd.DataFrame, runs: pd.DataFrame, k: int) -> pd.DataFrame:
    """Mean ± s.d. of the top-k exponents at every stored snapshot, per (delay, schedule, step, index).

    Several snapshots at one step (before / after a flossing phase) keep the last one."""
    s = _delays_of(spectra[spectra["index"] <= k], runs)
    s = s.drop_duplicates(["run_id", "step", "index"], keep="last")  # the store keeps snapshot order
    return _band(s, ["delay", "schedule", "step", "index"], "exponent")


# ------------------------------------------------------------------------------ conditioning
@_per_label()
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


@_per_label()
def singular_values(jac: pd.DataFrame, runs: pd.DataFrame, *, top: int = 5) -> pd.DataFrame:
    """Mean across seeds of log10 σ_i of the long-term Jacobian, i = 1..top, per
    (delay, schedule, stage, horizon, index)."""
    j = _delays_of(spectrum_stages(jac), runs)
    rows = [(r.delay, r.schedule, r.stage, r.horizon, i + 1, v / math.log(10))
            for r in j.itertuples() for i, v in enumerate(r.log_sv[:top])]
    df = pd.DataFrame(rows, columns=["delay", "schedule", "stage", "horizon", "index", "log10_sv"])
    return _band(df, ["delay", "schedule", "stage", "horizon", "index"], "log10_sv")


CONDITIONING = ("log10_kappa_k", "log10_grad_norm", "log10_kappa")  # what flossing controls first, then full κ₂


@_per_label()
def conditioning_headline(jac: pd.DataFrame, runs: pd.DataFrame, stage: str = "end of training") -> pd.DataFrame:
    """Per (delay, schedule) at the longest horizon stored at ``stage``: the mean across seeds of
    log10 κ₂ of the top-k subspace (σ_1/σ_k, k the flossed exponents: what flossing controls), of log10 of
    the gradient norm that many steps back, and of log10 κ₂ of the full long-term Jacobian (set by the
    unflossed bottom exponents); columns delay, schedule, horizon, then those three (``CONDITIONING``)."""
    cols = ["delay", "schedule", "horizon", *CONDITIONING]
    bands = [b[b["stage"] == stage] for b in (jacobian_band(jac, runs, v) for v in CONDITIONING)]
    if bands[0].empty:
        return pd.DataFrame(columns=cols)
    longest = bands[0].groupby("delay")["horizon"].transform("max")
    out = bands[0][bands[0]["horizon"] == longest][["delay", "schedule", "horizon"]]
    for value, band in zip(CONDITIONING, bands):
        out = out.merge(band[["delay", "schedule", "horizon", "mean"]].rename(columns={"mean": value}),
                        on=["delay", "schedule", "horizon"], how="left")
    return _by_schedule(out[cols])


def flossed_k(runs: pd.DataFrame) -> int | None:
    """The number k of exponents the runs' flossing acts on (``config["floss"]["k"]``), None when unknown."""
    ks = {c.get("floss", {}).get("k") for c in runs["config"]} if "config" in runs else set()
    ks.discard(None)
    return int(ks.pop()) if len(ks) == 1 else None


# ------------------------------------------------------------------------------ return on investment
def _seconds(g: pd.DataFrame, part: str) -> pd.Series:
    """The runs' ``<part>_seconds`` as floats (NaN where not recorded, or where the frame has no such column)."""
    column = f"{part}_seconds"
    return g[column].astype(float) if column in g else pd.Series(math.nan, index=g.index)


def _per_run(x: pd.Series) -> float:
    """Mean over the runs that recorded it; NaN where none did."""
    return float(x.mean()) if x.notna().any() else math.nan


@_per_label()
def roi_table(runs: pd.DataFrame, baseline: str = "none") -> pd.DataFrame:
    """Per (delay, schedule) over finished runs: what each schedule costs and what it buys.

    A schedule's cost is its task training plus its flossing (``compute_s_per_run``); evaluation and the
    lab's diagnostics are shown apart and never counted as its cost.

    Columns: delay, schedule, n, successes, success_rate, success_lo, success_hi,
    wall_s_per_run (mean seconds per network: its share of its ensemble's wall time), train_s_per_run,
    floss_s_per_run, eval_s_per_run, diag_s_per_run (the four parts of it; NaN: not recorded, a run from
    before they were kept apart), compute_s_per_run (training + flossing), floss_cost_vs_training
    (flossing / task-training seconds: 1.1 is "+110 % training compute, i.e. 2.1×"), floss_share
    (flossing / wall seconds), diag_share (diagnostics / wall seconds: the lab's measurement overhead),
    median_convergence (step, successful runs), time_to_solution_s (training + flossing seconds per solved
    network: all of them / successes; inf with no success), extra_s_per_success (vs ``baseline`` at the
    same delay: extra training + flossing seconds per run / extra success rate; NaN where there is no
    baseline or no gain).
    """
    cols = ["delay", "schedule", "n", "successes", "success_rate", "success_lo", "success_hi",
            "wall_s_per_run", "train_s_per_run", "floss_s_per_run", "eval_s_per_run", "diag_s_per_run",
            "compute_s_per_run", "floss_cost_vs_training", "floss_share", "diag_share", "median_convergence",
            "time_to_solution_s", "extra_s_per_success"]
    rows = []
    # success_counts has one row per scored group, in the groups' order: row c counts the runs g
    for c, (_, g) in zip(success_counts(runs).itertuples(), _scored_groups(runs)):
        n, wins = c.n, c.successes
        wall, train, floss = _seconds(g, "wall"), _seconds(g, "train"), _seconds(g, "floss")
        diag = _seconds(g, "diag")
        both = train.notna() & floss.notna()          # the runs whose cost is known
        compute = (train + floss)[both]
        known = diag.notna() & wall.notna()
        conv = g.loc[_succeeded(g), "convergence_step"].dropna().astype(float)
        rows.append({"delay": c.delay, "schedule": c.schedule, "n": n, "successes": wins, "success_rate": c.rate,
                     "success_lo": c.lo, "success_hi": c.hi, "wall_s_per_run": wall.sum() / n,
                     "train_s_per_run": _per_run(train), "floss_s_per_run": _per_run(floss),
                     "eval_s_per_run": _per_run(_seconds(g, "eval")), "diag_s_per_run": _per_run(diag),
                     "compute_s_per_run": _per_run(compute),
                     "floss_cost_vs_training": floss[both].sum() / train[both].sum() if train[both].sum() > 0
                     else math.nan,
                     "floss_share": floss.sum() / wall.sum() if wall.sum() > 0 else math.nan,
                     "diag_share": diag[known].sum() / wall[known].sum() if wall[known].sum() > 0 else math.nan,
                     "median_convergence": conv.median() if len(conv) else math.nan,
                     # every network's training + flossing, per network solved (n × the mean: a run that
                     # did not record its cost counts at the mean of those that did)
                     "time_to_solution_s": (n * _per_run(compute) / wins) if wins else math.inf})
    out = pd.DataFrame(rows, columns=cols[:-1])
    extra = []
    for r in out.itertuples():
        base = out[(out["delay"] == r.delay) & (out["schedule"] == baseline)]
        if r.schedule == baseline or base.empty:
            extra.append(math.nan)
            continue
        gain = r.success_rate - base["success_rate"].iloc[0]
        extra.append((r.compute_s_per_run - base["compute_s_per_run"].iloc[0]) / gain if gain > 0 else math.nan)
    out["extra_s_per_success"] = extra
    return _by_schedule(out)


def roi_headline(roi: pd.DataFrame, baseline: str = "none") -> dict:
    """The answers at the longest (hardest) delay of a ``roi_table``: ``delay``; ``best``, the schedule with
    the least training + flossing per solved network, and its ``time_to_solution_s`` (None / NaN when
    nothing was solved); ``gain``, the schedule whose additional successes over ``baseline`` come cheapest,
    and its ``extra_s_per_success`` (None / NaN when no schedule beat the baseline); ``floss_cost``,
    {schedule: flossing / task-training seconds} of the other schedules (NaN: not recorded);
    ``floss_share``, their mean flossing share of the wall time; ``diag_s_per_run`` and ``diag_share``, the
    lab's diagnostics per network and as a share of the wall time, over every schedule (NaN: not
    recorded)."""
    at = roi[roi["delay"] == roi["delay"].max()]
    solved = at[at["successes"] > 0].sort_values(["time_to_solution_s", "compute_s_per_run"])
    gains = at[at["extra_s_per_success"].notna()].sort_values("extra_s_per_success")
    others = at[at["schedule"] != baseline]
    networks = at["n"].sum()
    diag = (at["diag_s_per_run"] * at["n"]).sum() if at["diag_s_per_run"].notna().all() else math.nan
    wall = (at["wall_s_per_run"] * at["n"]).sum()
    return {"delay": int(roi["delay"].max()),
            "best": solved["schedule"].iloc[0] if len(solved) else None,
            "time_to_solution_s": float(solved["time_to_solution_s"].iloc[0]) if len(solved) else math.nan,
            "gain": gains["schedule"].iloc[0] if len(gains) else None,
            "extra_s_per_success": float(gains["extra_s_per_success"].iloc[0]) if len(gains) else math.nan,
            "floss_cost": dict(zip(others["schedule"], others["floss_cost_vs_training"].astype(float))),
            "floss_share": float(others["floss_share"].mean()) if len(others) else math.nan,
            "diag_s_per_run": float(diag / networks) if networks else math.nan,
            "diag_share": float(diag / wall) if wall > 0 else math.nan}


def floss_cost_text(ratio) -> str:
    """Flossing seconds / task-training seconds as a meeting reads it: 1.1 -> '+110 % training compute,
    i.e. 2.1×'; 'not recorded' where it is missing."""
    if pd.isna(ratio):
        return "not recorded"
    return f"+{100 * ratio:.0f} % training compute, i.e. {1 + ratio:.1f}×"


MISSING = "—"   # what a display table shows for a value that does not exist


def _seconds_text(x) -> str:
    return "not recorded" if pd.isna(x) else duration(x)


def _pct(x) -> str:
    return MISSING if pd.isna(x) else f"{100 * x:.0f} %"


def _extra_text(r, roi: pd.DataFrame, baseline: str) -> str:
    if r.schedule == baseline:
        return "baseline"
    if pd.notna(r.extra_s_per_success):
        return duration(r.extra_s_per_success)
    has_base = ((roi["delay"] == r.delay) & (roi["schedule"] == baseline)).any()
    return f"no gain over {baseline}" if has_base else f"no {baseline} run"


ROI_PARTS = {   # the ROI table in two parts that each fit a page's width: what a schedule buys, what it costs
    "buys": ["delay", "schedule", "solved", "success (95% CI)", "median step", "cost per solved network",
             "cost per extra success"],
    "costs": ["delay", "schedule", "training", "flossing", "flossing vs training", "evaluation",
              "diagnostics (lab)", "wall time"]}


@_per_label("roi", series=False)
def roi_display(roi: pd.DataFrame, part: str = "buys", baseline: str = "none") -> pd.DataFrame:
    """A ``roi_table`` as text for a page or a report, in one of two parts (``ROI_PARTS``). 'buys': solved
    ('2 of 3'), the success rate with its 95% Wilson interval, the median convergence step of the solved
    runs, training + flossing seconds per solved network ('nothing solved' where none was) and the extra
    training + flossing seconds per additional success over ``baseline`` at the same delay ('baseline' for
    it, 'no gain over none' where there is none, 'no none run' where it did not run at that delay).
    'costs': seconds per network of task training, flossing, evaluation, the lab's diagnostics and the wall
    time, and flossing against task training ('+110 %'); 'not recorded' where the runs did not time a part
    apart. No cell is None, NaN or inf: a missing value is '—' (``MISSING``)."""
    rows = []
    for r in roi.itertuples():
        if part == "buys":
            rows.append((r.delay, r.schedule, f"{r.successes} of {r.n}",
                         f"{_pct(r.success_rate)} ({100 * r.success_lo:.0f}–{100 * r.success_hi:.0f} %)",
                         MISSING if pd.isna(r.median_convergence) else f"{r.median_convergence:.0f}",
                         "nothing solved" if r.time_to_solution_s == math.inf else _seconds_text(r.time_to_solution_s),
                         _extra_text(r, roi, baseline)))
        else:
            rows.append((r.delay, r.schedule, _seconds_text(r.train_s_per_run), _seconds_text(r.floss_s_per_run),
                         "not recorded" if pd.isna(r.floss_cost_vs_training) else f"+{_pct(r.floss_cost_vs_training)}",
                         _seconds_text(r.eval_s_per_run), _seconds_text(r.diag_s_per_run),
                         _seconds_text(r.wall_s_per_run)))
    return pd.DataFrame(rows, columns=ROI_PARTS[part])


@_per_label("paired", series=False)
def paired_display(paired: pd.DataFrame, baseline: str = "none") -> pd.DataFrame:
    """A ``paired_solves`` table as text: delay, schedule, seed, how this schedule's run and the baseline's
    ended ('solved at step 40', 'not solved (censored at 99)') and who solved first."""
    def ended(step, solved) -> str:
        return f"solved at step {step:.0f}" if solved else f"not solved (censored at {step:.0f})"

    first = {"schedule": "this schedule", "baseline": baseline, "tie": "tie (the same step, or neither)"}
    mine, base = zip(paired["step"], paired["solved"]), zip(paired["baseline_step"], paired["baseline_solved"])
    return pd.DataFrame({"delay": paired["delay"], "schedule": paired["schedule"], "seed": paired["seed"],
                         "this schedule": [ended(*x) for x in mine], f"{baseline}, same seed": [ended(*x) for x in base],
                         "solved first": paired["first"].map(first)}).reset_index(drop=True)


def diagnostics_text(diag_s_per_run, diag_share) -> str:
    """The lab's diagnostics as a clause: 'the lab's diagnostics took 0.9 s per network (45 % of the wall
    time), measurement overhead, not a cost of the schedule'; 'not recorded' where they were not timed."""
    if pd.isna(diag_s_per_run) or pd.isna(diag_share):
        return ("the lab's diagnostics were not recorded apart for these runs (stored before they were timed "
                "separately)")
    return (f"the lab's diagnostics took {duration(diag_s_per_run)} per network ({100 * diag_share:.0f} % of the "
            "wall time), measurement overhead, not a cost of the schedule")


def cost_sentence(delay, floss_cost: dict, diag_s_per_run, diag_share, *, name=str) -> str:
    """The cost headline: 'At delay 20, flossing cost (against task training) pre +110 % training compute,
    i.e. 2.1×; the lab's diagnostics took ...' from ``roi_headline``'s numbers; ``name`` labels a schedule."""
    if floss_cost:
        head = f"At delay {delay}, flossing cost (against task training) " + "; ".join(
            f"{name(s)} {floss_cost_text(r)}" for s, r in floss_cost.items())
    else:
        head = f"At delay {delay}, no schedule flossed"
    return f"{head}; {diagnostics_text(diag_s_per_run, diag_share)}."

# ------------------------------------------------------------------------------ forecasts against baselines
BASELINE_COLUMNS = ["delay", "forecaster", "kind", "n", "mse", "r2", "skill", "successes", "success_rate"]


@_per_label()
def baselines_table(runs: pd.DataFrame) -> pd.DataFrame:
    """For forecasting runs judged against naive baselines (csv): per delay, one row per schedule (kind
    'network': n scored runs, the mean over seeds of the final test MSE, R² and skill, successes and success
    rate) and one per baseline on the same test windows (kind 'baseline': its MSE and R², and its skill
    against the better baseline: 0 for that one, below 0 for the other). The forecaster names say what each
    baseline is ('persistence (10 steps back)', 'seasonal persistence (period 52: 52 steps back)').
    Empty for runs without a skill (bit tasks, runs stored before issue 15)."""
    if "test_skill" not in runs or not runs["test_skill"].notna().any():
        return pd.DataFrame(columns=BASELINE_COLUMNS)
    scored = runs[runs["status"].isin(SCORED) & runs["test_skill"].notna()]
    mse = "test_mse" if "test_mse" in scored else "test_loss"
    rows = []
    for delay, g in scored.groupby("delay", sort=True):
        for schedule in schedule_order(g["schedule"]):
            s = g[g["schedule"] == schedule]
            wins = int(_succeeded(s).sum())
            rows.append((delay, schedule, "network", len(s), s[mse].mean(), s["test_r2"].mean(),
                         s["test_skill"].mean(), wins, wins / len(s)))
        period = g["config"].iloc[0]["task"].get("period")
        names = {"persistence": f"persistence ({_steps(delay)} back)"}
        if period:
            names["seasonal"] = (f"seasonal persistence (period {period}: "
                                 f"{_steps(seasonal_lag(int(period), int(delay)))} back)")
        for name, label in names.items():
            if f"{name}_mse" in g and g[f"{name}_mse"].notna().any():
                m = g[f"{name}_mse"].mean()
                rows.append((delay, label, "baseline", math.nan, m, g[f"{name}_r2"].mean(),
                             1 - m / g["baseline_mse"].mean(), math.nan, math.nan))
    return pd.DataFrame(rows, columns=BASELINE_COLUMNS)

def _steps(n) -> str:
    return f"{int(n)} step" + ("s" if int(n) != 1 else "")


@_per_label("table", series=False)
def baselines_display(table: pd.DataFrame) -> pd.DataFrame:
    """A ``baselines_table`` as the Outcomes page and the report show it: Delay, Forecaster, MSE (z-scored
    units, mean over seeds), R², Skill (vs the better baseline) and Solved ('2 of 3' for a schedule, '–' for
    a baseline), numbers as text."""
    def num(x, digits=3):
        return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"

    return pd.DataFrame({
        "Delay": table["delay"].astype(int).astype(str), "Forecaster": table["forecaster"],
        "MSE": [num(x, 4) for x in table["mse"]], "R²": [num(x) for x in table["r2"]],
        "Skill": [num(x) for x in table["skill"]],
        "Solved": [f"{int(w)} of {int(n)}" if k == "network" else "–"
                   for k, w, n in zip(table["kind"], table["successes"], table["n"])]})
