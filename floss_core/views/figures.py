"""The dashboard's and the report's charts: ``fig_*(shaped DataFrame) -> plotly.graph_objects.Figure``.

Each takes a frame from ``floss_core.views.frames`` and draws one trace per schedule (the trace name is
the schedule's name, so a legend reads "none", "pre", ...), with an error band around each mean, in the
schedule's colour (``COLORS``). A frame of several experiments side by side (``frames.with_labels``: it has a
``series`` column) draws one trace per series, named by it ('#3 arch=gru · pre'), coloured by its schedule
and dashed (or marked) by its experiment (``DASHES``, ``SYMBOLS``). Free of streamlit, so the report reuses
the very same figures. Figures of per-step or per-horizon quantities take the rows of ONE delay (filter
``runs`` first). Log axes tick in powers of ten, once per decade or every few (``log_axis``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .frames import LABEL, STAGES, schedule_order, series_names

COLORS = {"none": "#6b7280", "pre": "#2563eb", "inter": "#ea580c", "pre+inter": "#7c3aed",
          "adaptive": "#059669", "joint": "#dc2626"}
STAGE_DASH = {"initial": "dot", "after flossing": "dash", "end of training": "solid"}
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")      # experiment 1, 2, ... of a set
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x")      # where the dash tells the stage
LOG_AXIS = dict(type="log", dtick=1, exponentformat="power")  # ticks 1, 10, 10², never "2 5" between them
THRESHOLD_DASH = "dash"


def color(schedule: str) -> str:
    return COLORS.get(schedule, "#111827")


# ------------------------------------------------------------------------------ building blocks
# Traces are collected as plain dicts and the figure is built once: plotly validates every add_trace /
# update_layout call, which costs far more than one construction.
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


def _each_series(df: pd.DataFrame):
    """(name, rows, schedule, i) per trace to draw: per schedule in the canonical order; for a frame of
    several experiments (a ``label`` column) per experiment in order, then per schedule, named by the
    series. ``i`` is the experiment's place in the set (0 for one experiment): its dash and marker."""
    if not len(df):
        return
    labels = list(pd.unique(df[LABEL])) if LABEL in df else [None]
    for i, label in enumerate(labels):
        rows = df if label is None else df[df[LABEL] == label]
        for schedule in schedule_order(rows["schedule"]):
            g = rows[rows["schedule"] == schedule]
            yield (schedule if label is None else g["series"].iloc[0]), g, schedule, i


def log_axis(values=()) -> dict:
    """A log axis (``LOG_AXIS``) that ticks every decade, or every n decades where ``values`` (the positive
    data drawn on it) span more than ``8`` of them, so that at most about 8 labels share the axis."""
    v = np.asarray([x for x in values if np.isfinite(x) and x > 0], dtype=float)
    decades = float(np.log10(v.max() / v.min())) if len(v) else 0.0
    return {**LOG_AXIS, "dtick": max(1, int(np.ceil(decades / 8)))}


def _legend(df: pd.DataFrame) -> dict:
    """A set side by side: the legend titled 'experiment · schedule', below the plot (its long names would
    squeeze the plot beside it); one experiment: the figure's default, at the right."""
    if LABEL not in df:
        return {}
    return dict(legend=dict(title=dict(text="experiment · schedule", side="top"), orientation="h", x=0,
                            xanchor="left", y=-0.22, yanchor="top"))


def _zero_line() -> dict:
    return dict(type="line", xref="paper", x0=0, x1=1, y0=0, y1=0, line=dict(color="#9ca3af", width=1))


def _threshold_lines(thresholds, what: str = "success threshold") -> dict:
    """Dashed horizontal lines, each labelled, at the given values: shapes and annotations for ``_figure``."""
    shapes = [dict(type="line", xref="paper", x0=0, x1=1, y0=t, y1=t,
                   line=dict(color="#111827", width=1.5, dash=THRESHOLD_DASH)) for t in thresholds]
    notes = [dict(xref="paper", x=1, xanchor="right", y=t, yanchor="bottom", showarrow=False,
                  text=f"{what} {t:g}", font=dict(size=11, color="#111827")) for t in thresholds]
    return dict(shapes=shapes, annotations=notes) if thresholds else {}


def fig_metric(band: pd.DataFrame, *, title: str, y: str, seeds: pd.DataFrame | None = None,
               threshold=None) -> go.Figure:
    """A metric over training steps (one delay): mean ± s.d. per schedule (per series for a set),
    optionally every seed's line; ``threshold`` (a value or several, e.g. ``frames.success_thresholds``):
    a dashed line labelled 'success threshold 0.95' at each."""
    traces = [t for name, g, schedule, i in _each_series(band)
              for t in _band_traces(g["step"], g["mean"], g["lo"], g["hi"], name=name, group=name,
                                    colour=color(schedule), dash=DASHES[i % len(DASHES)])]
    if seeds is not None:
        for name, rows, schedule, i in _each_series(seeds):
            for seed, g in rows.groupby("seed", sort=True):
                traces.append(dict(type="scatter", x=list(g["step"]), y=list(g["value"]), mode="lines",
                                   name=f"{name} seed {seed}", legendgroup=name, showlegend=False, opacity=0.45,
                                   line=dict(color=color(schedule), width=1, dash=DASHES[i % len(DASHES)])))
    thresholds = [] if threshold is None else [threshold] if np.isscalar(threshold) else list(threshold)
    return _figure(traces, title, "training step", y, **_threshold_lines(thresholds), **_legend(band))


def fig_success_vs_delay(success: pd.DataFrame) -> go.Figure:
    """Success rate vs delay per schedule, with 95% Wilson intervals as error bars."""
    delays = sorted(int(d) for d in success["delay"].unique()) if len(success) else []
    n = len(list(_each_series(success)))
    span = (delays[-1] - delays[0]) if len(delays) > 1 else max(delays[0] if delays else 1, 1)
    gap = 0.025 * span                  # side by side, not on top of each other
    # one delay: a range around it, else plotly zooms onto the dodge and puts the schedules at the edges
    single = dict(range=[delays[0] - span / 2, delays[0] + span / 2]) if len(delays) == 1 else {}
    traces = [dict(type="scatter", x=list(g["delay"] + (j - (n - 1) / 2) * gap), y=list(g["rate"]),
                   mode="lines+markers", name=name, line=dict(color=color(schedule), dash=DASHES[i % len(DASHES)]),
                   marker=dict(symbol=SYMBOLS[i % len(SYMBOLS)], size=8),
                   error_y=dict(type="data", symmetric=False, array=list(g["hi"] - g["rate"]),
                                arrayminus=list(g["rate"] - g["lo"])),
                   customdata=np.stack([g["delay"], g["successes"], g["n"]], axis=1).tolist(),
                   hovertemplate="d=%{customdata[0]}: %{customdata[1]}/%{customdata[2]} solved (%{y:.0%})")
              for j, (name, g, schedule, i) in enumerate(_each_series(success))]
    return _figure(traces, "Success rate vs delay (95% Wilson interval)", "delay d (steps)", "success rate",
                   xaxis=dict(tickvals=delays, **single), yaxis=dict(range=[-0.05, 1.05], tickformat=".0%"),
                   hovermode="closest",
                   **_legend(success))


def fig_convergence(conv: pd.DataFrame) -> go.Figure:
    """Distribution of convergence steps (successful runs) per schedule, grouped by delay."""
    traces = [dict(type="box", x=[str(d) for d in g["delay"]], y=list(g["convergence_step"]), name=name,
                   boxpoints="all", marker=dict(color=color(schedule), symbol=SYMBOLS[i % len(SYMBOLS)]),
                   jitter=0.3, pointpos=0)
              for name, g, schedule, i in _each_series(conv)]
    return _figure(traces, "Convergence step of the successful runs", "delay d (steps)", "training step reached",
                   boxmode="group", hovermode="closest", **_legend(conv))


def fig_spectra(band: pd.DataFrame, stages=STAGES) -> go.Figure:
    """Lyapunov spectra λ_i vs i per schedule and stage, overlaid (dash = stage), mean ± s.d. across seeds."""
    traces = []
    for name, g, schedule, i in _each_series(band):
        for stage in stages:
            h = g[g["stage"] == stage]
            if len(h):
                traces += _band_traces(h["index"], h["mean"], h["lo"], h["hi"], name=f"{name} · {stage}",
                                       group=name, colour=color(schedule), dash=STAGE_DASH[stage],
                                       mode="lines+markers")
                traces[-1]["marker"] = dict(symbol=SYMBOLS[i % len(SYMBOLS)])
    return _figure(traces, "Lyapunov spectrum (dotted: initial, dashed: after flossing, solid: end of training)",
                   "exponent index i", "λ_i (per step)", shapes=[_zero_line()], **_legend(band))


def fig_topk(band: pd.DataFrame) -> go.Figure:
    """The top-k exponents at each stored snapshot over training, per schedule (λ_1 drawn thickest); the
    legend names every exponent shown ('pre λ1', 'pre λ2', ...)."""
    traces = [dict(type="scatter", x=list(h["step"]), y=list(h["mean"]), mode="lines+markers",
                   name=f"{name} λ{k}", legendgroup=name,
                   line=dict(color=color(schedule), width=3 if k == 1 else 1, dash=DASHES[i % len(DASHES)]),
                   opacity=1.0 if k == 1 else 0.5)
              for name, g, schedule, i in _each_series(band) for k, h in g.groupby("index", sort=True)]
    return _figure(traces, "Top exponents at the stored snapshots (mean across seeds; thick: λ1)", "training step",
                   "λ_i (per step)", shapes=[_zero_line()], **_legend(band))


def fig_horizon(band: pd.DataFrame, *, title: str, y: str, stage: str = "end of training",
                x: str = "horizon (steps)") -> go.Figure:
    """A long-term-Jacobian quantity vs horizon at one stage, per schedule, mean ± s.d. (log x axis)."""
    band = band[band["stage"] == stage]
    traces = [t for name, g, schedule, i in _each_series(band)
              for t in _band_traces(g["horizon"], g["mean"], g["lo"], g["hi"], name=name, group=name,
                                    colour=color(schedule), dash=DASHES[i % len(DASHES)], mode="lines+markers")]
    return _figure(traces, f"{title} ({stage})", x, y, xaxis=log_axis(band["horizon"]), **_legend(band))


def fig_singular_values(sv: pd.DataFrame, stage: str = "end of training") -> go.Figure:
    """log10 σ_i of the long-term Jacobian vs horizon, one panel per schedule (per series for a set) side
    by side; the legend names every σ_i shown."""
    sv = sv[sv["stage"] == stage]
    panels = list(_each_series(sv)) or [("none", sv, "none", 0)]
    titles = [series_names(g, short=True).iloc[0] if len(g) else name for name, g, _, _ in panels]   # '#1 · pre'
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=titles, shared_yaxes=True)
    traces, cols = [], []
    for c, (name, g, schedule, _) in enumerate(panels, start=1):
        for i, h in g.groupby("index", sort=True):
            traces.append(dict(type="scatter", x=list(h["horizon"]), y=list(h["mean"]), mode="lines+markers",
                               name=f"{name} σ{i}", legendgroup=name,
                               line=dict(color=color(schedule), width=3 if i == 1 else 1),
                               opacity=1.0 if i == 1 else 0.55))
            cols.append(c)
    if traces:
        fig.add_traces(traces, rows=[1] * len(traces), cols=cols)
    axis = log_axis(sv["horizon"])
    fig.update_xaxes(title_text="horizon (steps)", **axis)
    return _figure([], f"Singular values of the long-term Jacobian ({stage}; thick: σ1)", "horizon (steps)",
                   "log10 σ_i", fig=fig, xaxis=axis)


def _staircase(x, *ys) -> tuple[list, ...]:
    """A right-continuous step function's points (x_i, y_i) as the corners of its staircase."""
    x = list(x)
    out = [[v for i in range(len(x)) for v in ((x[i], x[i]) if i else (x[i],))]]
    for y in ys:
        y = list(y)
        out.append([v for i in range(len(y)) for v in ((y[i - 1], y[i]) if i else (y[i],))])
    return tuple(out)


def fig_survival(curves: pd.DataFrame, *, budget: float | None = None) -> go.Figure:
    """Kaplan–Meier curves (one delay, from ``frames.survival_curves``): the fraction of seeds solved vs
    training step per schedule as a staircase with its 95% band, a tick where a seed was censored (it
    never solved: at its last step, or where it diverged), and a dotted line at one half (the median)."""
    traces = []
    for name, g, schedule, i in _each_series(curves):
        x, y, lo, hi = _staircase(g["step"], g["solved"], g["lo"], g["hi"])
        if budget is not None and x and x[-1] < budget:   # the curve holds until the end of training
            x, y, lo, hi = x + [budget], y + [y[-1]], lo + [lo[-1]], hi + [hi[-1]]
        traces += _band_traces(x, y, lo, hi, name=name, group=name, colour=color(schedule),
                               dash=DASHES[i % len(DASHES)])
        cut = g[g["censored"] > 0]
        if len(cut):
            traces.append(dict(type="scatter", x=list(cut["step"]), y=list(cut["solved"]), mode="markers",
                               name=f"{name} censored", legendgroup=name, showlegend=False,
                               marker=dict(symbol="line-ns-open", size=10, color=color(schedule), line=dict(width=2)),
                               customdata=list(cut["censored"]), hovertemplate="%{customdata} censored at %{x}"))
    half = dict(type="line", xref="paper", x0=0, x1=1, y0=0.5, y1=0.5, line=dict(color="#9ca3af", width=1, dash="dot"))
    return _figure(traces, "Seeds solved vs training step (Kaplan–Meier, 95% band; ticks: censored)", "training step",
                   "fraction of seeds solved", yaxis=dict(range=[-0.02, 1.02], tickformat=".0%"), shapes=[half],
                   hovermode="closest", **_legend(curves))


def fig_roi(roi: pd.DataFrame) -> go.Figure:
    """Cost vs benefit: training + flossing seconds per network (x; evaluation and the lab's diagnostics
    are not a schedule's cost) against success rate (y), per schedule and delay."""
    def pct(x):
        return "not recorded" if x != x else f"+{x:.0%}"

    traces = [dict(type="scatter", x=list(g["compute_s_per_run"]), y=list(g["success_rate"]), mode="markers+text",
                   name=name, text=[f"d={d}" for d in g["delay"]],
                   textposition="middle left" if j % 2 else "middle right",
                   marker=dict(color=color(schedule), size=12, symbol=SYMBOLS[i % len(SYMBOLS)]),
                   error_y=dict(type="data", symmetric=False, array=list(g["success_hi"] - g["success_rate"]),
                                arrayminus=list(g["success_rate"] - g["success_lo"])),
                   customdata=[["-" if c != c else f"{c:.0f}", pct(f)]
                               for c, f in zip(g["median_convergence"], g["floss_cost_vs_training"])],
                   hovertemplate="%{x:.2f} s of training + flossing per network, success %{y:.0%}<br>median "
                                 "convergence step %{customdata[0]}, flossing %{customdata[1]} of training compute")
              for j, (name, g, schedule, i) in enumerate(_each_series(roi))]
    return _figure(traces, "Cost vs success (95% Wilson interval)", "training + flossing seconds per network",
                   "success rate", yaxis=dict(range=[-0.05, 1.1], tickformat=".0%"), hovermode="closest",
                   **_legend(roi))


def fig_cost_breakdown(roi: pd.DataFrame) -> go.Figure:
    """Seconds per network in its four parts: training and flossing (the schedule's cost), evaluation and
    the lab's diagnostics (measurement overhead); where a run did not record the last two apart (a store
    from before they were kept), the rest of its wall time as one bar."""
    x = [f"{name} d={d}" for name, d in zip(series_names(roi, short=True), roi["delay"])]
    split = roi["eval_s_per_run"].notna() & roi["diag_s_per_run"].notna()
    rest = (roi["wall_s_per_run"] - roi["train_s_per_run"] - roi["floss_s_per_run"]).clip(lower=0)
    bars = [("training", roi["train_s_per_run"], "#94a3b8"), ("flossing", roi["floss_s_per_run"], "#2563eb"),
            ("evaluation", roi["eval_s_per_run"].where(split), "#cbd5e1"),
            ("diagnostics (the lab's measurement overhead)", roi["diag_s_per_run"].where(split), "#e5e7eb"),
            ("evaluation and diagnostics (not recorded apart)", rest.where(~split), "#f3f4f6")]
    traces = [dict(type="bar", x=x, y=list(y), name=name, marker=dict(color=colour))
              for name, y, colour in bars if y.notna().any()]
    return _figure(traces, "Where the seconds go", "schedule and delay", "seconds per network", barmode="stack",
                   legend=dict(title=dict(text="")))
