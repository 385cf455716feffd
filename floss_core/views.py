"""What the dashboard and the report show: pure pandas over the store's DataFrames, and plotly figures.

Two kinds of functions, both free of streamlit (so the report can reuse the very same figures):

* data shaping, ``(store DataFrames) -> DataFrame``: bands of a quantity across seeds, success rates
  with 95% Wilson intervals, spectra per stage, Jacobian curves per horizon, the ROI table;
* ``fig_*(shaped DataFrame) -> plotly.graph_objects.Figure``, one trace per schedule (the trace name is
  the schedule's name, so a legend reads "none", "pre", ...), an error band around each mean.

Inputs are the frames of ``floss_core.store.Store``: ``runs()``, ``metrics()``, ``spectra()``,
``jacobian()``. A band is mean ± 1 sample standard deviation across seeds (0 for a single seed);
non-finite values (NaN, ±inf) are left out of their group and ``n`` counts the seeds that remain.
Figures of per-step or per-horizon quantities take the rows of ONE delay (filter ``runs`` first).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .stats import wilson_interval
from .store import SCORED_RUN_STATUSES as SCORED  # a diverged run is a failure, a failed one no outcome
from .schedules import NAMES as SCHEDULES

COLORS = {"none": "#6b7280", "pre": "#2563eb", "inter": "#ea580c", "pre+inter": "#7c3aed",
          "adaptive": "#059669", "joint": "#dc2626"}
STAGES = ("initial", "after flossing", "end of training")  # spectrum / Jacobian snapshots shown
STAGE_DASH = {"initial": "dot", "after flossing": "dash", "end of training": "solid"}


# ------------------------------------------------------------------------------ small helpers
def schedule_order(names) -> list[str]:
    """Schedule names in the canonical order none, pre, inter, pre+inter, adaptive, joint."""
    return sorted(set(names), key=lambda n: (SCHEDULES.index(n) if n in SCHEDULES else len(SCHEDULES), n))


def color(schedule: str) -> str:
    return COLORS.get(schedule, "#111827")


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


def score_column(runs: pd.DataFrame) -> str:
    """'test_acc' for bit tasks, 'test_r2' for a CSV forecast (whichever the runs recorded)."""
    return "test_r2" if "test_r2" in runs and runs["test_r2"].notna().any() and \
        not ("test_acc" in runs and runs["test_acc"].notna().any()) else "test_acc"


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
def success_vs_delay(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (delay, schedule) over finished runs (done or diverged): n, successes, rate, lo, hi (95% Wilson)."""
    cols = ["delay", "schedule", "n", "successes", "rate", "lo", "hi"]
    scored = runs[runs["status"].isin(SCORED)]
    rows = []
    for (delay, schedule), g in scored.groupby(["delay", "schedule"], sort=True):
        n, wins = len(g), int(g["success"].fillna(False).astype(bool).sum())
        lo, hi = wilson_interval(wins, n)
        rows.append((delay, schedule, n, wins, wins / n, lo, hi))
    out = pd.DataFrame(rows, columns=cols)
    return _by_schedule(out)


def _by_schedule(df: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by delay, then schedule in the canonical order."""
    if df.empty:
        return df
    rank = df["schedule"].map({s: i for i, s in enumerate(schedule_order(df["schedule"]))})
    return df.assign(_r=rank).sort_values(["delay", "_r"]).drop(columns="_r").reset_index(drop=True)


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
    ok = runs[runs["success"].fillna(False).astype(bool) & runs["convergence_step"].notna()]
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
    scored = runs[runs["status"].isin(SCORED)]
    rows = []
    for (delay, schedule), g in scored.groupby(["delay", "schedule"], sort=True):
        n = len(g)
        wins = int(g["success"].fillna(False).astype(bool).sum())
        lo, hi = wilson_interval(wins, n)
        wall, floss = g["wall_seconds"].sum(), g["floss_seconds"].sum()
        conv = g.loc[g["success"].fillna(False).astype(bool), "convergence_step"].dropna().astype(float)
        rows.append({"delay": delay, "schedule": schedule, "n": n, "successes": wins, "success_rate": wins / n,
                     "success_lo": lo, "success_hi": hi, "wall_s_per_run": wall / n,
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


# ------------------------------------------------------------------------------ figures
# Traces are collected as plain dicts and the figure is built once: plotly validates every add_trace /
# update_layout call, which costs ~10x more than one construction.
def _figure(traces: list[dict], title: str, x: str | None, y: str | None, *, fig: go.Figure | None = None,
            **layout) -> go.Figure:
    lay = dict(title=dict(text=title), xaxis=dict(title=dict(text=x)), yaxis=dict(title=dict(text=y)),
               template="plotly_white", legend=dict(title=dict(text="schedule")), hovermode="x unified",
               margin=dict(l=60, r=20, t=60, b=50))
    for key, value in layout.items():
        lay[key] = {**lay[key], **value} if isinstance(value, dict) and isinstance(lay.get(key), dict) else value
    if fig is None:
        return go.Figure(data=traces, layout=lay)
    return fig.update_layout(lay)


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    return f"rgba({int(h[0:2], 16)}, {int(h[2:4], 16)}, {int(h[4:6], 16)}, {alpha})"


def _band_traces(x, mean, lo, hi, *, name, group, colour, dash="solid", mode="lines") -> list:
    """A translucent lo..hi band (no legend entry) and the mean line in front of it."""
    x = list(x)
    return [dict(type="scatter", x=x + x[::-1], y=list(hi) + list(lo)[::-1], fill="toself", mode="lines",
                 line=dict(width=0), fillcolor=_rgba(colour, 0.15), hoverinfo="skip", showlegend=False,
                 legendgroup=group, name=f"{name} band"),
            dict(type="scatter", x=x, y=list(mean), mode=mode, name=name, legendgroup=group,
                 line=dict(color=colour, dash=dash))]


def _each_schedule(df: pd.DataFrame):
    for schedule in schedule_order(df["schedule"]) if len(df) else []:
        yield schedule, df[df["schedule"] == schedule]


def _zero_line() -> dict:
    return dict(type="line", xref="paper", x0=0, x1=1, y0=0, y1=0, line=dict(color="#9ca3af", width=1))


def fig_metric(band: pd.DataFrame, *, title: str, y: str, seeds: pd.DataFrame | None = None) -> go.Figure:
    """A metric over training steps (one delay): mean ± s.d. per schedule, optionally every seed's line."""
    traces = [t for schedule, g in _each_schedule(band)
              for t in _band_traces(g["step"], g["mean"], g["lo"], g["hi"], name=schedule, group=schedule,
                             colour=color(schedule))]
    if seeds is not None:
        for (schedule, seed), g in seeds.groupby(["schedule", "seed"], sort=True):
            traces.append(dict(type="scatter", x=list(g["step"]), y=list(g["value"]), mode="lines",
                               name=f"{schedule} seed {seed}", legendgroup=schedule, showlegend=False, opacity=0.45,
                               line=dict(color=color(schedule), width=1)))
    return _figure(traces, title, "training step", y)


def fig_success_vs_delay(success: pd.DataFrame) -> go.Figure:
    """Success rate vs delay per schedule, with 95% Wilson intervals as error bars."""
    delays = sorted(int(d) for d in success["delay"].unique()) if len(success) else []
    n = success["schedule"].nunique() if len(success) else 0
    gap = 0.012 * ((delays[-1] - delays[0]) if len(delays) > 1 else 1)  # side by side, not on top of each other
    traces = [dict(type="scatter", x=list(g["delay"] + (i - (n - 1) / 2) * gap), y=list(g["rate"]),
                   mode="lines+markers", name=schedule, line=dict(color=color(schedule)),
                   error_y=dict(type="data", symmetric=False, array=list(g["hi"] - g["rate"]),
                                arrayminus=list(g["rate"] - g["lo"])),
                   customdata=np.stack([g["delay"], g["successes"], g["n"]], axis=1).tolist(),
                   hovertemplate="d=%{customdata[0]}: %{customdata[1]}/%{customdata[2]} solved (%{y:.0%})")
              for i, (schedule, g) in enumerate(_each_schedule(success))]
    return _figure(traces, "Success rate vs delay (95% Wilson interval)", "delay d (steps)", "success rate",
                   xaxis=dict(tickvals=delays), yaxis=dict(range=[-0.05, 1.05], tickformat=".0%"), hovermode="closest")


def fig_convergence(conv: pd.DataFrame) -> go.Figure:
    """Distribution of convergence steps (successful runs) per schedule, grouped by delay."""
    traces = [dict(type="box", x=[str(d) for d in g["delay"]], y=list(g["convergence_step"]), name=schedule,
                   boxpoints="all", marker=dict(color=color(schedule)), jitter=0.3, pointpos=0)
              for schedule, g in _each_schedule(conv)]
    return _figure(traces, "Convergence step of the successful runs", "delay d (steps)", "training step reached",
                   boxmode="group", hovermode="closest")


def fig_spectra(band: pd.DataFrame, stages=STAGES) -> go.Figure:
    """Lyapunov spectra λ_i vs i per schedule and stage, overlaid (dash = stage), mean ± s.d. across seeds."""
    traces = []
    for schedule, g in _each_schedule(band):
        for stage in stages:
            h = g[g["stage"] == stage]
            if len(h):
                traces += _band_traces(h["index"], h["mean"], h["lo"], h["hi"], name=f"{schedule} · {stage}",
                                       group=schedule, colour=color(schedule), dash=STAGE_DASH[stage],
                                       mode="lines+markers")
    return _figure(traces, "Lyapunov spectrum (dotted: initial, dashed: after flossing, solid: end of training)",
                   "exponent index i", "λ_i (per step)", shapes=[_zero_line()])


def fig_topk(band: pd.DataFrame) -> go.Figure:
    """The top-k exponents at each stored snapshot over training, per schedule (λ_1 drawn thickest)."""
    traces = [dict(type="scatter", x=list(h["step"]), y=list(h["mean"]), mode="lines+markers",
                   name=f"{schedule} λ{i}", legendgroup=schedule, showlegend=bool(i == 1),
                   line=dict(color=color(schedule), width=3 if i == 1 else 1), opacity=1.0 if i == 1 else 0.5)
              for schedule, g in _each_schedule(band) for i, h in g.groupby("index", sort=True)]
    return _figure(traces, "Top exponents at the stored snapshots (mean across seeds)", "training step",
                   "λ_i (per step)", shapes=[_zero_line()])


def fig_horizon(band: pd.DataFrame, *, title: str, y: str, stage: str = "end of training",
                x: str = "horizon (steps)") -> go.Figure:
    """A long-term-Jacobian quantity vs horizon at one stage, per schedule, mean ± s.d. (log x axis)."""
    band = band[band["stage"] == stage]
    traces = [t for schedule, g in _each_schedule(band)
              for t in _band_traces(g["horizon"], g["mean"], g["lo"], g["hi"], name=schedule, group=schedule,
                             colour=color(schedule), mode="lines+markers")]
    return _figure(traces, f"{title} ({stage})", x, y,
                   xaxis=dict(type="log", tickvals=sorted(int(h) for h in band["horizon"].unique())))


def fig_singular_values(sv: pd.DataFrame, stage: str = "end of training") -> go.Figure:
    """log10 σ_i of the long-term Jacobian vs horizon, one panel per schedule side by side."""
    sv = sv[sv["stage"] == stage]
    names = schedule_order(sv["schedule"]) if len(sv) else ["none"]
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, shared_yaxes=True)
    traces, cols = [], []
    for c, schedule in enumerate(names, start=1):
        for i, h in sv[sv["schedule"] == schedule].groupby("index", sort=True):
            traces.append(dict(type="scatter", x=list(h["horizon"]), y=list(h["mean"]), mode="lines+markers",
                               name=f"{schedule} σ{i}", legendgroup=schedule, showlegend=bool(i == 1),
                               line=dict(color=color(schedule), width=3 if i == 1 else 1),
                               opacity=1.0 if i == 1 else 0.55))
            cols.append(c)
    if traces:
        fig.add_traces(traces, rows=[1] * len(traces), cols=cols)
    ticks = sorted(int(h) for h in sv["horizon"].unique())
    fig.update_xaxes(type="log", title_text="horizon (steps)", tickvals=ticks)
    return _figure([], f"Singular values of the long-term Jacobian ({stage}; thick: σ1)", "horizon (steps)",
                   "log10 σ_i", fig=fig, xaxis=dict(type="log", tickvals=ticks))


def fig_roi(roi: pd.DataFrame) -> go.Figure:
    """Cost vs benefit: compute seconds per network (x) against success rate (y), per schedule and delay."""
    traces = [dict(type="scatter", x=list(g["wall_s_per_run"]), y=list(g["success_rate"]), mode="markers+text",
                   name=schedule, text=[f"d={d}" for d in g["delay"]],
                   textposition="middle left" if i % 2 else "middle right",
                   marker=dict(color=color(schedule), size=12),
                   error_y=dict(type="data", symmetric=False, array=list(g["success_hi"] - g["success_rate"]),
                                arrayminus=list(g["success_rate"] - g["success_lo"])),
                   customdata=[["-" if c != c else f"{c:.0f}", "-" if f != f else f"{f:.0%}"]
                               for c, f in zip(g["median_convergence"], g["floss_share"])],
                   hovertemplate="%{x:.2f} s per network, success %{y:.0%}<br>median convergence step "
                                 "%{customdata[0]}, flossing share %{customdata[1]}")
              for i, (schedule, g) in enumerate(_each_schedule(roi))]
    return _figure(traces, "Cost vs success (95% Wilson interval)", "compute seconds per network", "success rate",
                   yaxis=dict(range=[-0.05, 1.1], tickformat=".0%"), hovermode="closest")


def fig_cost_breakdown(roi: pd.DataFrame) -> go.Figure:
    """Seconds per network split into flossing, training and the rest (evaluation, diagnostics)."""
    x = [f"{r.schedule} d={r.delay}" for r in roi.itertuples()]
    other = (roi["wall_s_per_run"] - roi["train_s_per_run"] - roi["floss_s_per_run"]).clip(lower=0)
    traces = [dict(type="bar", x=x, y=list(roi["train_s_per_run"]), name="training", marker=dict(color="#94a3b8")),
              dict(type="bar", x=x, y=list(roi["floss_s_per_run"]), name="flossing", marker=dict(color="#2563eb")),
              dict(type="bar", x=x, y=list(other), name="evaluation and diagnostics", marker=dict(color="#e5e7eb"))]
    return _figure(traces, "Where the compute goes", "schedule and delay", "seconds per network", barmode="stack",
                   legend=dict(title=dict(text="")))
