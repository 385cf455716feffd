"""The report's charts: the dashboard's own figures (floss_core.views), so report and dashboard show
the same charts; only their size and legend placement are set here, for print. views has no
cost-vs-convergence chart (its ROI chart is cost vs success rate, already covered by success vs
delay): that one is built here.
"""
from __future__ import annotations

import pandas as pd

from .. import views
from .data import ReportData

FIG_WIDTH, FIG_HEIGHT = 680, 340      # px: fits A4 portrait inside the print margins


def _for_print(fig):
    # a band outline is a filled polygon, not data: no markers on it (plotly adds them by default to short traces)
    fig.update_traces(mode="lines", selector=dict(fill="toself"))
    fig.update_layout(width=FIG_WIDTH, height=FIG_HEIGHT, legend=dict(orientation="h", y=-0.25, x=0, title=None),
                      margin=dict(l=60, r=20, t=50, b=50), font=dict(family="DejaVu Sans, Arial, sans-serif",
                                                                     size=11), title=dict(x=0.01, font_size=14))
    return fig


def _dodge(fig, delays: list):
    """Shift each trace a little along x, so schedules with equal values do not hide each other."""
    gap = min((b - a for a, b in zip(delays, delays[1:])), default=1)
    n = len(fig.data)
    for i, trace in enumerate(fig.data):
        trace.x = [x + (i - (n - 1) / 2) * 0.05 * gap for x in trace.x]
    fig.update_xaxes(tickvals=delays, range=[delays[0] - 0.3 * gap, delays[-1] + 0.3 * gap])
    return fig


def _with_initial(fig, band: pd.DataFrame):
    """A ``views.fig_horizon`` chart with every horizon labelled and the 'initial' curve dotted in grey (the
    same seeds start every schedule: one curve)."""
    horizons = sorted(band["horizon"].unique())
    fig.update_xaxes(tickvals=horizons, ticktext=[str(h) for h in horizons])
    init = band[band["stage"] == "initial"].groupby("horizon")["mean"].first()
    if len(init):
        import plotly.graph_objects as go
        fig.add_trace(go.Scatter(x=init.index, y=init.values, mode="lines", name="initial",
                                 line=dict(color="#9ca3af", dash="dot")))
    return fig


def fig_cost_vs_convergence(roi: pd.DataFrame, budget: int):
    """Cost vs convergence from ``views.roi_table``: training + flossing seconds per run (the lab's evaluation
    and diagnostics left out: they are no cost of a schedule) against the median convergence
    step of the solved seeds, one marker per (schedule, delay); a schedule that solved no seed sits on
    the training budget, hollow."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for s in views.schedule_order(roi["schedule"]):
        g = roi[roi["schedule"] == s]
        solved = g["median_convergence"].notna()
        fig.add_trace(go.Scatter(
            x=g["compute_s_per_run"], y=g["median_convergence"].where(solved, budget), mode="markers+text", name=s,
            text=[f"d={d}: {a}/{b}" for d, a, b in zip(g["delay"], g["successes"], g["n"])],
            textposition="top center",
            marker=dict(color=views.color(s), size=12, symbol=["circle" if v else "circle-open" for v in solved],
                        line=dict(width=2, color=views.color(s)))))
    fig.add_hline(y=budget, line=dict(color="#9ca3af", dash="dot"), annotation_text="training budget",
                  annotation_position="bottom right")
    cost = roi["compute_s_per_run"]
    span = float(cost.max() - cost.min()) or float(cost.max()) or 1.0
    fig.update_layout(title="Cost vs convergence (labels: delay, seeds solved)", template="plotly_white",
                      xaxis_title="training + flossing seconds per network", yaxis_title="median convergence step")
    fig.update_yaxes(range=[0, budget * 1.18])
    fig.update_xaxes(range=[float(cost.min()) - 0.15 * span, float(cost.max()) + 0.15 * span])
    return fig


def figures(data: ReportData) -> list[tuple[str, object]]:
    """The key charts, as (caption, plotly figure); a chart with no data behind it is left out.
    Curves, the seeds solved vs step, spectra and the conditioning (κ₂ of the flossed top-k subspace, the
    gradient norm vs horizon, the full κ₂) are shown at the longest delay, where the schedules differ most."""
    if not data.summary:
        return []
    runs = data.finished
    delay = max(r["delay"] for r in data.summary)
    budget = max(s["train"]["steps"] for s in data.specs)
    out = [("Share of seeds that reached the success threshold, per schedule and delay (schedules drawn "
            "side by side around each delay). Error bars: 95% Wilson intervals.",
            _dodge(views.fig_success_vs_delay(views.success_vs_delay(runs)),
                   sorted({r["delay"] for r in data.summary})))]
    score = views.score_column(runs)
    band = views.metric_band(data.metrics, runs, score)
    band = band[band["delay"] == delay]
    if len(band):
        at = runs[runs["delay"] == delay]
        label = score.replace("_", " ")
        out.append((f"{label.capitalize()} at each evaluation, delay {delay}: mean ± 1 s.d. across seeds (band) "
                    "and every seed (thin lines).",
                    views.fig_metric(band, seeds=views.metric_seeds(data.metrics, at, score), y=label,
                                     title=f"{label} during training, delay {delay}")))
    curves = views.survival_curves(runs[runs["delay"] == delay])
    if len(curves):
        out.append((f"Fraction of seeds solved by each training step at delay {delay} (Kaplan–Meier, 95% band): a "
                    "seed that never solved counts until it stops, censored (tick) at its last training step or "
                    "where it diverged. The table 'Time to solution' gives each median and the log-rank test.",
                    views.fig_survival(curves, budget=budget - 1)))
    spectra = views.spectrum_band(data.spectra, runs)
    spectra = spectra[spectra["delay"] == delay]
    if len(spectra):
        out.append((f"Lyapunov exponents at delay {delay}, mean ± 1 s.d. across seeds: at initialisation, right "
                    "after the first flossing phase, and at the end of training. Flossing aims to push the top "
                    "exponents toward 0.", views.fig_spectra(spectra)))
    k = views.flossed_k(runs) or "k"
    for value, title, y, x, caption in (
            ("log10_kappa_k", f"κ₂ of the top-{k} subspace vs horizon, delay {delay}", f"log10 σ₁/σ_{k}",
             "horizon (steps)", f"Conditioning of what was flossed at delay {delay} (end of training; dotted: at "
             f"initialisation): κ₂ of the top {k} singular values of the long-term Jacobian. Flossing pushes the "
             f"top {k} Lyapunov exponents toward 0, so it controls this κ₂ and the gradient's reach (next chart), "
             "while the full κ₂ (the chart after) is set by the unflossed bottom exponents and can stay the same."),
            ("log10_grad_norm", f"Gradient norm vs steps back, delay {delay}", "log10 ‖∂y_T / ∂h_(T-h)‖",
             "steps back h", f"How far back the gradient reaches at delay {delay} (end of training; dotted: at "
             "initialisation): the norm of the output's gradient with respect to the state h steps back."),
            ("log10_kappa", f"Condition number κ₂ vs horizon, delay {delay}", "log10 κ₂", "horizon (steps)",
             f"Conditioning of the full long-term Jacobian at delay {delay} (end of training; dotted: at "
             "initialisation), all singular values included. A large κ₂ means gradients over that horizon "
             "explode or vanish in some directions.")):
        band = views.jacobian_band(data.jacobian, runs, value)
        band = band[band["delay"] == delay]
        if len(band):
            out.append((caption, _with_initial(views.fig_horizon(band, title=title, y=y, x=x), band)))
    out.append(("What each schedule cost (compute seconds per network, flossing included) against the median "
                "step at which its solved seeds converged; a hollow marker on the budget line: no seed solved.",
                fig_cost_vs_convergence(views.roi_table(runs), budget)))
    return [(caption, _for_print(fig)) for caption, fig in out]
