"""The report's charts: the dashboard's own figures (floss_core.views), so report and dashboard show
the same charts; only their size and legend placement are set here, for print. views has no
cost-vs-convergence chart (its ROI chart is cost vs success rate, already covered by success vs
delay): that one is built here.

A set of experiments whose settings differ (``ReportData.parts``) gets the same charts overlaid: each part's
figure is drawn by the views from that part's runs alone (no statistic mixes parts), then its traces are
named by the part's label ('#3 arch=gru · pre'), dashed or marked by part (``DASHES``, ``SYMBOLS``; the colour
stays the schedule's) and drawn in one figure.
"""
from __future__ import annotations

import pandas as pd

from .. import views
from .data import ReportData

FIG_WIDTH, FIG_HEIGHT = 680, 340      # px: fits A4 portrait inside the print margins
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")     # part 1, 2, ... of a set
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x")     # where the dash tells the stage
LEGEND_ROW_PX = 20


def _legend_rows(fig) -> int:
    """About how many rows the horizontal legend takes at the print width (plotly packs entries left to right)."""
    rows, used = 1, 0
    for t in fig.data:
        if t.showlegend is False or not t.name:
            continue
        width = 40 + 6.5 * len(t.name)
        if used and used + width > FIG_WIDTH - 80:
            rows, used = rows + 1, 0
        used += width
    return rows


def _for_print(fig):
    # a band outline is a filled polygon, not data: no markers on it (plotly adds them by default to short traces)
    fig.update_traces(mode="lines", selector=dict(fill="toself"))
    height = FIG_HEIGHT + LEGEND_ROW_PX * (_legend_rows(fig) - 1)    # a long legend does not squeeze the plot
    fig.update_layout(width=FIG_WIDTH, height=height, legend=dict(orientation="h", y=-0.25, x=0, title=None),
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


def fig_cost_vs_convergence(roi: pd.DataFrame, budget: int, *, symbol: str = "circle"):
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
            marker=dict(color=views.color(s), size=12, symbol=[symbol if v else f"{symbol}-open" for v in solved],
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
    gradient norm vs horizon, the full κ₂) are shown at the longest delay, where the schedules differ most.
    A set whose settings differ: ``set_figures``."""
    if not data.summary:
        return []
    if not data.pooled:
        return set_figures(data)
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
                    "and every seed (thin lines); dashed: the success threshold.",
                    views.fig_metric(band, seeds=views.metric_seeds(data.metrics, at, score), y=label,
                                     title=f"{label} during training, delay {delay}",
                                     threshold=views.success_thresholds(at))))
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


# ------------------------------------------------------------------------------------ a set, overlaid
def _part_traces(fig, label: str, i: int, *, dash: bool = True, marker: bool = False) -> list:
    """``fig``'s traces named by the part ('#3 arch=gru · pre'), grouped by it, dashed (or marked) as part ``i``."""
    out = []
    for t in fig.data:
        t.name = f"{label} · {t.name}"
        t.legendgroup = f"{label} · {t.legendgroup or ''}"
        if dash and t.type == "scatter" and t.fill != "toself":
            t.line.dash = DASHES[i % len(DASHES)]
        if marker and t.type == "scatter" and t.fill != "toself":
            t.marker.symbol = SYMBOLS[i % len(SYMBOLS)]
        out.append(t)
    return out


def _overlay(figs: list, labels: list[str], *, dash: bool = True, marker: bool = False, title: str | None = None):
    """One figure of every part's traces (``figs[i]`` drawn from part i alone), the first one's layout."""
    import plotly.graph_objects as go

    traces = [t for i, (f, label) in enumerate(zip(figs, labels)) for t in _part_traces(f, label, i, dash=dash,
                                                                                       marker=marker)]
    fig = go.Figure(data=traces, layout=figs[0].layout)
    fig.update_layout(legend=dict(traceorder="normal", tracegroupgap=0))   # packed in rows, not one group a row
    if title:
        fig.update_layout(title_text=title)
    return fig


def _part_delays(data: ReportData) -> tuple[dict[str, int], str]:
    """The delay each part's per-step charts show: the longest delay every part has, else each part's longest;
    and how a caption says so."""
    have = [{r["delay"] for r in p.summary} for p in data.parts if p.summary]
    common = set.intersection(*have) if have else set()
    if common:
        d = max(common)
        return {p.label: d for p in data.parts}, f"delay {d}"
    chosen = {p.label: max(r["delay"] for r in p.summary) for p in data.parts if p.summary}
    return chosen, "each experiment's longest delay (" + ", ".join(
        f"{label.split(' ')[0]}: {d}" for label, d in chosen.items()) + ")"


def set_figures(data: ReportData) -> list[tuple[str, object]]:
    """The charts of a set whose settings differ: each chart of ``figures`` with every part's series overlaid,
    labelled by what differs (each part's statistics from its own runs only). Curves and spectra are shown
    at the longest delay common to the parts; the conditioning charts at the end of training."""
    parts = [p for p in data.parts if p.summary]
    labels = [p.label for p in parts]
    delay_of, at_text = _part_delays(data)
    budget = max(s["train"]["steps"] for s in data.specs)
    all_delays = sorted({r["delay"] for p in parts for r in p.summary})
    differs = ", ".join(data.differing)
    out = [(f"Share of seeds that reached the success threshold, per experiment, schedule and delay (line style: "
            f"experiment, colour: schedule; the experiments differ in {differs}). Error bars: 95% Wilson intervals, "
            "each within one experiment.",
            _dodge(_overlay([views.fig_success_vs_delay(views.success_vs_delay(p.finished)) for p in parts], labels,
                            marker=True), all_delays))]

    def at(p, frame):
        return frame[(frame["delay"] == delay_of[p.label]) & frame["experiment_id"].isin(p.ids)]

    scores = [views.score_column(p.finished) for p in parts]
    if len(set(scores)) == 1:
        score = scores[0]
        bands = [views.metric_band(at(p, data.metrics), p.finished, score) for p in parts]
        bands = [(b[b["delay"] == delay_of[p.label]], p, label) for b, p, label in zip(bands, parts, labels)]
        bands = [x for x in bands if len(x[0])]
        if bands:
            name = score.replace("_", " ")
            bars = sorted({t for _, p, _ in bands for t in views.success_thresholds(p.finished)})
            out.append((f"{name.capitalize()} at each evaluation, at {at_text}: mean ± 1 s.d. across seeds per "
                        "experiment (line style) and schedule (colour); dashed: the success threshold.",
                        _overlay([views.fig_metric(b, y=name, title="", threshold=bars) for b, _, _ in bands],
                                 [label for _, _, label in bands], title=f"{name} during training, {at_text}")))
    curves = [(views.survival_curves(p.finished[p.finished["delay"] == delay_of[p.label]]), p) for p in parts]
    curves = [(c, p) for c, p in curves if len(c)]
    if curves:
        out.append((f"Fraction of seeds solved by each training step at {at_text} (Kaplan–Meier within each "
                    "experiment, 95% band; ticks: censored). The table 'Time to solution' gives each median and "
                    "its log-rank test against no flossing in the same experiment.",
                    _overlay([views.fig_survival(c, budget=max(s["train"]["steps"] for s in p.specs) - 1)
                              for c, p in curves], [p.label for _, p in curves])))
    spectra = [(views.spectrum_band(at(p, data.spectra), p.finished), p) for p in parts]
    spectra = [(b[b["delay"] == delay_of[p.label]], p) for b, p in spectra]
    spectra = [(b, p) for b, p in spectra if len(b)]
    if spectra:
        figs = [views.fig_spectra(b, stages=("end of training",)) for b, _ in spectra]
        for f in figs:   # one stage: the legend names the series only
            for t in f.data:
                t.name = t.name.removesuffix(" · end of training")
        out.append((f"Lyapunov exponents at {at_text} at the end of training, mean ± 1 s.d. across seeds, per "
                    "experiment (marker) and schedule (colour). Flossing aims to push the top exponents toward 0.",
                    _overlay(figs, [p.label for _, p in spectra], dash=False, marker=True,
                             title=f"Lyapunov spectrum at the end of training, {at_text}")))
    ks = {views.flossed_k(p.finished) for p in parts}
    k = ks.pop() if len(ks) == 1 and None not in ks else "k"
    for value, title, y, x, caption in (
            ("log10_kappa_k", f"κ₂ of the top-{k} subspace vs horizon, {at_text}", f"log10 σ₁/σ_{k}",
             "horizon (steps)", f"Conditioning of what was flossed at {at_text} (end of training): κ₂ of the top "
             f"{k} singular values of the long-term Jacobian, each experiment its own k."),
            ("log10_grad_norm", f"Gradient norm vs steps back, {at_text}", "log10 ‖∂y_T / ∂h_(T-h)‖",
             "steps back h", f"How far back the gradient reaches at {at_text} (end of training): the norm of the "
             "output's gradient with respect to the state h steps back."),
            ("log10_kappa", f"Condition number κ₂ vs horizon, {at_text}", "log10 κ₂", "horizon (steps)",
             f"Conditioning of the full long-term Jacobian at {at_text} (end of training), all singular values "
             "included.")):
        bands = [(views.jacobian_band(at(p, data.jacobian), p.finished, value), p) for p in parts]
        bands = [(b[b["delay"] == delay_of[p.label]], p) for b, p in bands]
        bands = [(b, p) for b, p in bands if len(b)]
        if bands:
            fig = _overlay([views.fig_horizon(b, title=title, y=y, x=x) for b, _ in bands], [p.label for _, p in bands])
            horizons = sorted({h for b, _ in bands for h in b["horizon"].unique()})
            fig.update_xaxes(tickvals=horizons, ticktext=[str(h) for h in horizons])
            out.append((caption, fig))
    out.append((f"What each schedule cost (compute seconds per network, flossing included) against the median step "
                "at which its solved seeds converged, per experiment (marker) and schedule (colour); hollow on the "
                "budget line: no seed solved.",
                _overlay([fig_cost_vs_convergence(views.roi_table(p.finished), budget, symbol=SYMBOLS[i % len(SYMBOLS)])
                          for i, p in enumerate(parts)], labels, dash=False)))
    for _, fig in out[-1:]:   # every part's points inside the axes
        cost = pd.concat([views.roi_table(p.finished)["compute_s_per_run"] for p in parts])
        span = float(cost.max() - cost.min()) or float(cost.max()) or 1.0
        fig.update_xaxes(range=[float(cost.min()) - 0.15 * span, float(cost.max()) + 0.15 * span])
    return [(caption, _for_print(fig)) for caption, fig in out]
