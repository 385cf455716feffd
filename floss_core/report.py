"""Meeting reports: one experiment (or a chosen set) as a self-contained HTML page, a PDF printed
from that page by headless Chromium, and a zip of the data.

    html = render_html(store, 3)                    # one file, plotly.js inside, no external requests
    pdf = html_to_pdf(html)                         # bytes; ChromiumMissing if no Chromium is installed
    blob = data_zip(store, 3)                       # runs / metrics / spectra / jacobian as CSV (+ Parquet)
    path = write_report(store, 3, "pdf", "out/")    # any of the three, under a sanitised file name

The verdict is generated from the numbers and claims only what they support: success counts are
compared with Fisher's exact test (two-sided), and anything short of p < 0.05 is reported as "no
evidence of a difference", with the 95% Wilson intervals and, where the seeds are too few for any
split to reach p < 0.05, a sentence saying so. Convergence steps and compute are reported as
numbers, never as "faster" or "better".
"""
from __future__ import annotations

import concurrent.futures
import datetime as _dt
import html as _html
import io
import json
import math
import os
import re
import shlex
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import views
from .experiment import make_spec, spec_from_dict, spec_to_dict, summarize
from .store import Store
from . import __version__

FORMATS = ("html", "pdf", "zip")
FINISHED = ("done", "diverged")        # runs that count as outcomes (failed / cancelled runs are not)
ALPHA = 0.05                           # the significance level behind every "difference" claim
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
FIG_WIDTH, FIG_HEIGHT = 680, 340      # px: fits A4 portrait inside the print margins


class ChromiumMissing(RuntimeError):
    """PDF export needs a Chromium binary (and the playwright package) that are not installed."""


# ------------------------------------------------------------------------------------ the data
@dataclass
class ReportData:
    """Everything a report shows, read once from the store."""
    ids: list[int]               # experiment ids, in the order given
    experiments: list[dict]      # store.experiment(id) per id
    specs: list[dict]            # spec_to_dict of each experiment's validated spec
    runs: pd.DataFrame           # every run of the set (any status), store.runs columns
    finished: pd.DataFrame       # runs with status done / diverged: the outcomes
    metrics: pd.DataFrame        # store.metrics + experiment_id, delay
    spectra: pd.DataFrame        # store.spectra + experiment_id, delay
    jacobian: pd.DataFrame       # store.jacobian + experiment_id, delay
    summary: list[dict]          # experiment.summarize over the finished runs


def load(store: Store, experiment_ids) -> ReportData:
    """Read one experiment id (or a list: a chosen set) from the store.

    A set must share every setting except name, delays and seeds, and may not repeat a
    (delay, schedule, seed) run, so that pooling the runs compares like with like.
    Raises ValueError (one line) for an unknown id, a configuration that is not a comparison spec,
    or a set that does not pool."""
    ids = _ids(experiment_ids)
    experiments, specs = [], []
    for i in ids:
        try:
            exp = store.experiment(i)
        except KeyError:
            raise ValueError(f"no experiment {i} in {store.path}") from None
        try:
            spec = spec_to_dict(spec_from_dict(exp["config"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"experiment {i}'s configuration is not a comparison spec ({e})") from None
        experiments.append(exp)
        specs.append(spec)
    _check_poolable(ids, specs)
    runs = pd.concat([store.runs(i) for i in ids], ignore_index=True)
    finished = runs[runs["status"].isin(FINISHED)].reset_index(drop=True)
    dup = finished.duplicated(["delay", "schedule", "seed"])
    if dup.any():
        r = finished[dup].iloc[0]
        raise ValueError(f"run d={r['delay']} {r['schedule']} seed {r['seed']} appears in more than one of "
                         f"experiments {', '.join(map(str, ids))}; choose experiments with distinct runs")
    delay_of = runs.set_index("run_id")["delay"]
    exp_of = runs.set_index("run_id")["experiment_id"]

    def tagged(frames: list[pd.DataFrame]) -> pd.DataFrame:
        df = pd.concat(frames, ignore_index=True)
        for pos, column, values in ((0, "experiment_id", exp_of), (2, "delay", delay_of)):
            if column not in df.columns:
                df.insert(pos, column, df["run_id"].map(values))
        return df[df["run_id"].isin(finished["run_id"])].reset_index(drop=True)

    return ReportData(ids=ids, experiments=experiments, specs=specs, runs=runs, finished=finished,
                      metrics=tagged([store.metrics(i) for i in ids]),
                      spectra=tagged([store.spectra(i) for i in ids]),
                      jacobian=tagged([store.jacobian(i) for i in ids]),
                      summary=summarize(records_from_runs(finished)))


def _ids(experiment_ids) -> list[int]:
    raw = [experiment_ids] if isinstance(experiment_ids, (int, str)) or hasattr(experiment_ids, "item") \
        else list(experiment_ids)
    ids = []
    for x in raw:
        try:
            ids.append(int(x))
        except (TypeError, ValueError):
            raise ValueError(f"experiment ids are integers, got {x!r}") from None
    if not ids:
        raise ValueError("name at least one experiment id")
    if len(set(ids)) != len(ids):
        raise ValueError(f"experiment ids must be distinct, got {', '.join(map(str, ids))}")
    return ids


def _check_poolable(ids: list[int], specs: list[dict]) -> None:
    def core(d):
        return {k: v for k, v in d.items() if k not in ("name", "delays", "seeds")}

    for i, spec in zip(ids[1:], specs[1:]):
        a, b = _flatten(core(specs[0])), _flatten(core(spec))
        diff = next((k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)), None)
        if diff is not None:
            raise ValueError(f"experiments {ids[0]} and {i} differ in {diff} ({a.get(diff)!r} vs {b.get(diff)!r}); "
                             "a report pools only experiments that differ in name, delays or seeds")


def _flatten(d, prefix="") -> dict:
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    elif isinstance(d, list) and d and isinstance(d[0], dict):
        for i, v in enumerate(d):
            out.update(_flatten(v, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = d
    return out


# Columns of store.runs() that are not part of a run's ``final`` dict.
_RUN_COLUMNS = {"run_id", "experiment_id", "experiment", "schedule", "seed", "member", "task", "delay",
                "status", "success", "convergence_step", "diverged_step", "reason", "floss_seconds",
                "train_seconds", "wall_seconds", "device", "started_at", "finished_at", "attempts",
                "versions", "config"}


def records_from_runs(runs: pd.DataFrame) -> list[dict]:
    """store.runs() rows back into the run-record shape ``experiment.summarize`` takes."""
    finals = [c for c in runs.columns if c not in _RUN_COLUMNS]
    out = []
    for row in runs.to_dict("records"):
        success = row["success"]
        out.append({
            "schedule": row["schedule"], "seed": int(row["seed"]), "status": row["status"],
            "config": {"task": {"delay": int(row["delay"])}},
            "success": bool(success) if success is not None and success is not pd.NA else False,
            "convergence_step": None if pd.isna(row["convergence_step"]) else int(row["convergence_step"]),
            "wall_seconds": _num(row["wall_seconds"]), "floss_seconds": _num(row["floss_seconds"]),
            "final": {c: _num(row[c]) for c in finals if c.startswith(("test_", "lambda1", "log10_kappa"))}})
    return out


def _num(x) -> float:
    return math.nan if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)) else float(x)


# ------------------------------------------------------------------------------------ statistics
def fisher_exact(x: int, n1: int, y: int, n2: int) -> float:
    """Two-sided Fisher's exact test of x/n1 vs y/n2 successes: the probability, given the margins,
    of a table at most as likely as the one observed."""
    k, n = x + y, n1 + n2
    # integer weights (hypergeometric numerators): exact, so equally likely tables compare equal
    w = [math.comb(n1, a) * math.comb(n2, k - a) for a in range(max(0, k - n2), min(n1, k) + 1)]
    observed = math.comb(n1, x) * math.comb(n2, y)
    return sum(v for v in w if v <= observed) / math.comb(n, k)


def min_attainable_p(n1: int, n2: int) -> float:
    """The smallest two-sided Fisher p any outcome of n1 vs n2 runs can give (all vs none)."""
    return min(fisher_exact(n1, n1, 0, n2), fisher_exact(0, n1, n2, n2))


def seeds_needed(alpha: float = ALPHA) -> int:
    """Seeds per schedule before an all-vs-none split can reach p < alpha."""
    n = 1
    while min_attainable_p(n, n) >= alpha:
        n += 1
    return n


# ------------------------------------------------------------------------------------ the verdict
def _label(name: str) -> str:
    return {"none": "no flossing", "pre": "pre-flossing", "inter": "intermittent flossing",
            "pre+inter": "pre- and intermittent flossing", "adaptive": "adaptive flossing",
            "joint": "joint flossing"}.get(name, name)


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def verdict(summary: list[dict], *, alpha: float = ALPHA) -> list[str]:
    """The verdict as sentences: a headline, then one sentence per (delay, flossed schedule)
    comparing it with 'none' at the same delay. ``summary``: rows of ``experiment.summarize``.

    Claims a difference in success only at Fisher p < alpha; reports medians and compute ratios as
    numbers; says so when the seeds are too few for any outcome to count as evidence."""
    if not summary:
        return ["No finished runs yet, so there is nothing to conclude."]
    by = {(r["delay"], r["schedule"]): r for r in summary}
    delays = sorted({r["delay"] for r in summary})
    if not any(s == "none" for _, s in by):
        return ["This comparison has no 'none' (no flossing) baseline, so the verdict compares nothing; "
                "the table below lists each schedule on its own."]
    details, found, n_tests, too_few = [], [], 0, False
    for d in delays:
        base = by.get((d, "none"))
        for (dd, s), r in by.items():
            if dd != d or s == "none" or base is None:
                continue
            n_tests += 1
            x, n1, y, n2 = r["successes"], r["n"], base["successes"], base["n"]
            p = fisher_exact(x, n1, y, n2)
            parts = [f"At delay {d}, {_label(s)} solved {x}/{n1} seeds vs {y}/{n2} without flossing"]
            conv = _conv_phrase(r, base)
            if conv:
                parts.append(conv)
            ratio = _compute_ratio(r, base)
            if ratio:
                parts.append(ratio)
            sentence = ", ".join(parts)
            if p < alpha:
                more = "more" if x / n1 > y / n2 else "fewer"
                sentence += (f". It solved {more} seeds than no flossing, a difference unlikely to be chance "
                             f"(Fisher's exact test, two-sided p = {_p(p)})")
                found.append(f"{_label(s)} solved {more} seeds than no flossing at delay {d} "
                             f"({x}/{n1} vs {y}/{n2}, p = {_p(p)})")
            else:
                sentence += (f". No evidence of a difference in success rate (p = {_p(p)}; 95% intervals "
                             f"{_pct(r['success_lo'])}–{_pct(r['success_hi'])} vs "
                             f"{_pct(base['success_lo'])}–{_pct(base['success_hi'])})")
                if min_attainable_p(n1, n2) >= alpha:
                    too_few = True
                    sentence += f": with {n1} and {n2} seeds no outcome could reach p < {alpha}"
            if r.get("diverged"):
                sentence += f"; {r['diverged']} of its {n1} runs diverged"
            details.append(sentence + ".")
    if found:
        head = "; ".join(found)
        head = head[0].upper() + head[1:] + "."
    else:
        head = "No flossing schedule differed from no flossing in success rate beyond what chance explains."
        if too_few:
            head += (f" These runs are too few to show a difference: at least {seeds_needed(alpha)} seeds per "
                     "schedule are needed before even an all-vs-none split counts as evidence.")
    if n_tests > 1:
        head += f" ({n_tests} comparisons; p-values are not corrected for multiple testing.)"
    return [head] + details


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def _conv_phrase(r: dict, base: dict) -> str:
    a, b = r["median_convergence"], base["median_convergence"]
    if not math.isnan(a) and not math.isnan(b):
        return f"median convergence step {a:.0f} vs {b:.0f} (over solved seeds)"
    if not math.isnan(a):
        return f"median convergence step {a:.0f} (over solved seeds; none solved without flossing)"
    if not math.isnan(b):
        return f"median convergence step {b:.0f} without flossing (none solved with it)"
    return ""


def _compute_ratio(r: dict, base: dict) -> str:
    a, b = r["wall_seconds"] / r["n"], base["wall_seconds"] / base["n"]
    if not (a > 0 and b > 0):
        return ""
    share = r["floss_share"]
    extra = f", flossing {_pct(share)} of it" if not math.isnan(share) else ""
    return f"at {a / b:.2f}× the wall time per run{extra}"


# ------------------------------------------------------------------------------------ reproduce
# CLI option -> how to read it off a spec dict (make_spec applies schedule options to every schedule).
_CLI_OPTIONS = [
    ("--channels", lambda d: d["task"]["channels"]), ("--order", lambda d: d["task"]["order"]),
    ("--csv", lambda d: d["task"]["csv_path"]), ("--arch", lambda d: d["model"]["arch"]),
    ("--hidden", lambda d: d["model"]["hidden"]), ("--gain", lambda d: d["model"]["gain"]),
    ("--steps", lambda d: d["train"]["steps"]), ("--seq-len", lambda d: d["task"]["seq_len"]),
    ("--k", lambda d: d["floss"]["k"]), ("--qr-every", lambda d: d["floss"]["qr_every"]),
    ("--pre-steps", lambda d: d["schedules"][0]["pre_steps"]),
    ("--inter-steps", lambda d: d["schedules"][0]["inter_steps"]),
    ("--inter-at", lambda d: list(d["schedules"][0]["inter_at"])),
    ("--every", lambda d: d["schedules"][0]["every"]),
    ("--threshold", lambda d: d["schedules"][0]["threshold"]),
    ("--weight", lambda d: d["schedules"][0]["weight"]),
    ("--success-acc", lambda d: d["train"]["success_acc"]),
    ("--name", lambda d: d["name"]), ("--device", lambda d: d["device"]),
]


def reproduce_command(spec: dict) -> tuple[str, list[str]]:
    """The ``python -m floss_core compare ...`` command that reruns a stored spec (``spec_to_dict``
    form), and the spec fields the command line cannot set ([] when it reproduces the spec exactly;
    checked by parsing the command back with the CLI's own parser)."""
    seeds = list(spec["seeds"])
    args = ["--preset", spec["preset"], "--task", spec["task"]["name"],
            "--delay", ",".join(str(d) for d in spec["delays"]),
            "--seeds", str(len(seeds)), "--schedules", ",".join(s["name"] for s in spec["schedules"])]
    default = spec_to_dict(make_spec(spec["preset"], schedules=[s["name"] for s in spec["schedules"]]))
    for flag, get in _CLI_OPTIONS:
        try:
            value, dflt = get(spec), get(default)
        except (KeyError, IndexError):
            continue
        if value == dflt or value is None:
            continue
        args += [flag, ",".join(map(str, value)) if isinstance(value, list) else _arg(value)]
    cmd = "python -m floss_core compare " + " ".join(shlex.quote(a) for a in args)
    return cmd, _unreproduced(args, spec)


def _arg(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _unreproduced(args: list[str], spec: dict) -> list[str]:
    from .__main__ import _add_comparison_args, _Parser, spec_from_args  # the CLI's own parser

    parser = _Parser(prog="compare")
    _add_comparison_args(parser)
    try:
        got = spec_to_dict(spec_from_args(parser.parse_args(args)))
    except (ValueError, SystemExit):
        return ["(the command does not parse)"]
    a, b = _flatten(spec), _flatten(got)
    return [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


# ------------------------------------------------------------------------------------ figures
# The dashboard's own figures (floss_core.views), so report and dashboard show the same charts; only
# their size and legend placement are set here, for print. views has no cost-vs-convergence chart
# (its ROI chart is cost vs success rate, already covered by success vs delay): that one is built here.
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


def fig_cost_vs_convergence(roi: pd.DataFrame, budget: int):
    """Cost vs convergence from ``views.roi_table``: wall time per run against the median convergence
    step of the solved seeds, one marker per (schedule, delay); a schedule that solved no seed sits on
    the training budget, hollow."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for s in views.schedule_order(roi["schedule"]):
        g = roi[roi["schedule"] == s]
        solved = g["median_convergence"].notna()
        fig.add_trace(go.Scatter(
            x=g["wall_s_per_run"], y=g["median_convergence"].where(solved, budget), mode="markers+text", name=s,
            text=[f"d={d}: {a}/{b}" for d, a, b in zip(g["delay"], g["successes"], g["n"])],
            textposition="top center",
            marker=dict(color=views.color(s), size=12, symbol=["circle" if v else "circle-open" for v in solved],
                        line=dict(width=2, color=views.color(s)))))
    fig.add_hline(y=budget, line=dict(color="#9ca3af", dash="dot"), annotation_text="training budget",
                  annotation_position="bottom right")
    cost = roi["wall_s_per_run"]
    span = float(cost.max() - cost.min()) or float(cost.max()) or 1.0
    fig.update_layout(title="Cost vs convergence (labels: delay, seeds solved)", template="plotly_white",
                      xaxis_title="compute seconds per network", yaxis_title="median convergence step")
    fig.update_yaxes(range=[0, budget * 1.18])
    fig.update_xaxes(range=[float(cost.min()) - 0.15 * span, float(cost.max()) + 0.15 * span])
    return fig


def figures(data: ReportData) -> list[tuple[str, object]]:
    """The key charts, as (caption, plotly figure); a chart with no data behind it is left out.
    Curves, spectra and κ₂ are shown at the longest delay, where the schedules differ most."""
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
    spectra = views.spectrum_band(data.spectra, runs)
    spectra = spectra[spectra["delay"] == delay]
    if len(spectra):
        out.append((f"Lyapunov exponents at delay {delay}, mean ± 1 s.d. across seeds: at initialisation, right "
                    "after the first flossing phase, and at the end of training. Flossing aims to push the top "
                    "exponents toward 0.", views.fig_spectra(spectra)))
    kappa = views.jacobian_band(data.jacobian, runs, "log10_kappa")
    kappa = kappa[kappa["delay"] == delay]
    if len(kappa):
        fig = views.fig_horizon(kappa, title=f"Condition number κ₂ vs horizon, delay {delay}", y="log10 κ₂")
        horizons = sorted(kappa["horizon"].unique())
        fig.update_xaxes(tickvals=horizons, ticktext=[str(h) for h in horizons])
        init = kappa[kappa["stage"] == "initial"].groupby("horizon")["mean"].first()
        if len(init):  # the same seeds start every schedule: one 'initial' curve
            import plotly.graph_objects as go
            fig.add_trace(go.Scatter(x=init.index, y=init.values, mode="lines", name="initial",
                                     line=dict(color="#9ca3af", dash="dot")))
        out.append((f"Conditioning of the long-term Jacobian at delay {delay} (end of training; dotted: at "
                    "initialisation). A large κ₂ means gradients over that horizon explode or vanish in some "
                    "directions.", fig))
    out.append(("What each schedule cost (compute seconds per network, flossing included) against the median "
                "step at which its solved seeds converged; a hollow marker on the budget line: no seed solved.",
                fig_cost_vs_convergence(views.roi_table(runs), budget)))
    return [(caption, _for_print(fig)) for caption, fig in out]


# ------------------------------------------------------------------------------------ HTML
_CSS = """
body { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; color: #222; margin: 0; font-size: 14px; }
main { max-width: 740px; margin: 0 auto; padding: 24px 16px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 24px 0 8px; border-bottom: 1px solid #ddd; }
h3 { font-size: 15px; margin: 16px 0 6px; }
.sub { color: #666; margin: 0 0 12px; }
table { border-collapse: collapse; width: 100%; font-size: 12px; margin: 6px 0 12px; }
th, td { border: 1px solid #ccc; padding: 3px 5px; text-align: right; vertical-align: top; }
th { background: #f3f3f3; font-weight: 600; } td:first-child, th:first-child { text-align: left; }
table.results td { white-space: nowrap; } table.results { font-size: 11px; }
table.meta td, table.meta th { text-align: left; border: none; padding: 1px 8px 1px 0; }
table.meta th { background: none; color: #555; font-weight: normal; width: 130px; }
.verdict p { margin: 6px 0; } .verdict .head { font-weight: bold; }
.chart { margin: 12px 0 20px; break-inside: avoid; page-break-inside: avoid; }
.chart p { color: #555; font-size: 12px; margin: 2px 0; }
pre { background: #f6f6f6; padding: 8px; font-size: 11px; white-space: pre-wrap; word-break: break-all; }
pre.command { font-size: 12px; } pre.command span { white-space: nowrap; }
pre.config { font-size: 8.5px; line-height: 1.15; column-count: 2; column-gap: 16px; }
.note { color: #555; font-size: 12px; }
@page { size: A4; margin: 14mm 12mm; }
@media print {
  body { font-size: 11px; } main { max-width: none; padding: 0; }
  section.charts, section.reproduce { break-before: page; page-break-before: always; }
  .modebar-container { display: none !important; }
  tr { break-inside: avoid; }
}
"""


def render_html(store: Store, experiment_ids, *, generated: _dt.datetime | None = None) -> str:
    """The report as one self-contained HTML page (plotly.js inline, no external requests)."""
    return html_from_data(load(store, experiment_ids), generated=generated)


def html_from_data(data: ReportData, *, generated: _dt.datetime | None = None) -> str:
    import plotly.offline

    e = _html.escape
    generated = generated or _dt.datetime.now(_dt.timezone.utc)
    title = " + ".join(x["name"] for x in data.experiments)
    ids = ", ".join(f"#{i}" for i in data.ids)
    figs = figures(data)
    body = [f"<header><h1>{e(title)}</h1>",
            f"<p class='sub'>Gradient Flossing Lab report · experiment {ids} · generated "
            f"{generated:%Y-%m-%d %H:%M} UTC</p>", _title_block(data), "</header>"]
    body.append("<section class='verdict'><h2>Verdict</h2>")
    sentences = verdict(data.summary)
    body.append(f"<p class='head'>{e(sentences[0])}</p>")
    body += [f"<p>{e(s)}</p>" for s in sentences[1:]]
    body.append(_run_note(data) + "</section>")
    body.append("<section class='results'><h2>Results per schedule</h2>" + _tables(data.summary) + "</section>")
    if figs:
        body.append("<section class='charts'><h2>Charts</h2>")
        config = {"displaylogo": False, "responsive": False, "staticPlot": False}
        for i, (caption, fig) in enumerate(figs):
            div = fig.to_html(include_plotlyjs=False, full_html=False, config=config, div_id=f"fig{i + 1}")
            body.append(f"<div class='chart'>{div}<p>{e(caption)}</p></div>")
        body.append("</section>")
    body.append("<section class='reproduce'><h2>Reproduce</h2>" + _reproduce(data) + "</section>")
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='generator' content='floss_core {e(__version__)}'>"
            f"<title>{e(title)} · report</title><style>{_CSS}</style>"
            # plotly.js inline, once: the page works offline and fetches nothing
            f"<script type='text/javascript'>{plotly.offline.get_plotlyjs()}</script>"
            f"</head><body><main>{''.join(body)}</main></body></html>")


def _title_block(data: ReportData) -> str:
    spec = data.specs[0]
    task = spec["task"]
    extra = {"xor": f", {task['channels']} channels", "parity": f", order {task['order']}",
             "csv": f", {task['csv_path']}"}.get(task["name"], "")
    model = spec["model"]
    delays = sorted({d for s in data.specs for d in s["delays"]})
    seeds = sorted({x for s in data.specs for x in s["seeds"]})
    used = sorted({str(d) for d in data.runs["device"].dropna()})
    created = min(x["created_at"] for x in data.experiments)
    versions = {}
    for v in data.finished["versions"]:
        versions.update(v or {})
    others = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()) if k != "floss_core")
    rows = [("Task", f"{task['name']}{extra}, sequence length {task['seq_len']}, batch {task['batch']}"),
            ("Delays", ", ".join(map(str, delays))),
            ("Architecture", f"{model['arch']}, {model['hidden']} units, gain {model['gain']}"),
            ("Seeds", f"{len(seeds)} per schedule ({_ranges(seeds)})"),
            ("Schedules", ", ".join(s["name"] for s in spec["schedules"])),
            ("Training", f"{spec['train']['steps']} steps, success at test " + (
                f"R² ≥ {task['r2_threshold']}" if task["name"] == "csv"
                else f"accuracy ≥ {spec['train']['success_acc']}")),
            ("Flossing", f"k = {spec['floss']['k']} exponents, window {spec['floss']['seq_len']}"),
            ("Preset", spec["preset"]),
            ("Device", f"{', '.join(used) or 'not run yet'} (requested: {spec['device']})"),
            ("Date", f"created {created:%Y-%m-%d %H:%M} UTC"),
            ("Version", f"floss_core {__version__}" + (f" (runs: {others}; floss_core "
                                                        f"{versions.get('floss_core')})" if versions else ""))]
    return "<table class='meta'>" + "".join(
        f"<tr><th>{k}</th><td>{_html.escape(str(v))}</td></tr>" for k, v in rows) + "</table>"


def _ranges(xs: list[int]) -> str:
    if xs and xs == list(range(xs[0], xs[-1] + 1)) and len(xs) > 2:
        return f"{xs[0]}–{xs[-1]}"
    return ", ".join(map(str, xs))


def _run_note(data: ReportData) -> str:
    counts = data.runs["status"].value_counts().to_dict()
    other = {k: v for k, v in counts.items() if k not in FINISHED}
    note = f"Based on {len(data.finished)} finished run(s)"
    if other:
        note += "; not counted: " + ", ".join(f"{v} {k}" for k, v in sorted(other.items()))
    status = ", ".join(f"#{x['id']} {x['status']}" for x in data.experiments)
    return f"<p class='note'>{_html.escape(note)} (experiment status: {_html.escape(status)}).</p>"


TABLE_COLUMNS = [  # (key, header) of the per-schedule table
    ("schedule", "Schedule"), ("successes", "Solved"), ("success_rate", "Success (95% CI)"),
    ("median_convergence", "Convergence step: median (IQR)"), ("final_acc", "Final accuracy"),
    ("lambda1", "λ₁ before → after"), ("log10_kappa", "log₁₀ κ₂ before → after"),
    ("wall_seconds", "Wall s (all seeds)"), ("floss_share", "Flossing share"), ("diverged", "Diverged")]


def table_cells(r: dict) -> dict:
    """The formatted cells of one summary row (what the HTML table shows, keyed like TABLE_COLUMNS)."""
    def f(x, nd=3):
        return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"

    conv = r["median_convergence"]
    return {
        "schedule": r["schedule"], "successes": f"{r['successes']}/{r['n']}",
        "success_rate": f"{_pct(r['success_rate'])} ({_pct(r['success_lo'])}–{_pct(r['success_hi'])})",
        "median_convergence": "–" if math.isnan(conv) else f"{conv:.0f} ({r['iqr_convergence']:.0f})",
        "final_acc": f(r["final_acc"]),
        "lambda1": f"{f(r['lambda1_before'], 4)} → {f(r['lambda1_after'], 4)}",
        "log10_kappa": f"{f(r['log10_kappa_before'], 2)} → {f(r['log10_kappa_after'], 2)}",
        "wall_seconds": f(r["wall_seconds"], 1),
        "floss_share": "–" if math.isnan(r["floss_share"]) else _pct(r["floss_share"]),
        "diverged": str(r["diverged"])}


def _tables(summary: list[dict]) -> str:
    if not summary:
        return "<p>No finished runs yet.</p>"
    out = []
    head = "".join(f"<th>{_html.escape(h)}</th>" for _, h in TABLE_COLUMNS)
    for d in sorted({r["delay"] for r in summary}):
        rows = []
        for r in (r for r in summary if r["delay"] == d):
            cells = table_cells(r)
            rows.append(f"<tr data-delay='{d}' data-schedule='{_html.escape(r['schedule'])}'>" + "".join(
                f"<td data-col='{k}'>{_html.escape(cells[k])}</td>" for k, _ in TABLE_COLUMNS) + "</tr>")
        out.append(f"<h3>Delay {d}</h3><table class='results'><tr>{head}</tr>{''.join(rows)}</table>")
    out.append("<p class='note'>Convergence: the first evaluation step at which test accuracy reached the "
               "threshold, over solved seeds only. λ₁ (largest Lyapunov exponent, per step) and κ₂ (condition "
               "number of the long-term Jacobian over the diagnostic window): mean over seeds, at initialisation "
               "and after training. Wall time: the ensemble's, shared equally by its seeds.</p>")
    return "".join(out)


def _json(spec: dict) -> str:
    """Indented JSON with lists of numbers on one line."""
    def one_line(m):
        return "[" + ", ".join(x.strip() for x in m.group(0)[1:-1].split(",") if x.strip()) + "]"

    return re.sub(r"\[[-0-9.eE,\s]*\]", one_line, json.dumps(spec, indent=1))


def _reproduce(data: ReportData) -> str:
    e = _html.escape
    out = []
    for i, spec in zip(data.ids, data.specs):
        cmd, missing = reproduce_command(spec)
        if len(data.ids) > 1:
            out.append(f"<h3>Experiment #{i}</h3>")
        # one unbreakable span per argument: a printed command wraps between arguments, never inside "--k"
        spans = " ".join(f"<span>{e(token)}</span>" for token in cmd.split(" "))
        out.append(f"<pre class='command'>{spans}</pre>")
        if missing:
            out.append("<p class='note'>The command line cannot set every option of this configuration (it "
                       f"differs in {e(', '.join(missing))}). To rerun it exactly, save the configuration below "
                       f"as spec.json (it is spec-{i}.json in the data zip), queue it and run a worker:</p>"
                       "<pre>python -c \"import json; from floss_core.experiment import spec_from_dict; "
                       "from floss_core.runner import submit; from floss_core.store import Store; "
                       "print(submit(spec_from_dict(json.load(open('spec.json'))), Store()))\"\n"
                       "python -m floss_core worker --exit-when-idle</pre>")
        else:
            out.append("<p class='note'>Checked: this command parses back to exactly the configuration below.</p>")
        out.append(f"<h3>Full configuration</h3><pre class='config'>{e(_json(spec))}</pre>")
    return "".join(out)


# ------------------------------------------------------------------------------------ PDF
_INSTALL_HINT = "install Debian's package with `apt-get install chromium`"


def find_chromium() -> str:
    """The Chromium binary: $FLOSS_CHROMIUM if set, else ``chromium`` on PATH, else /usr/bin/chromium.
    Raises ChromiumMissing, saying how to get one."""
    chosen = os.environ.get("FLOSS_CHROMIUM")
    if chosen:
        if os.path.isfile(chosen) and os.access(chosen, os.X_OK):
            return chosen
        raise ChromiumMissing(f"PDF export: FLOSS_CHROMIUM={chosen} is not an executable file; point it at a "
                              f"Chromium binary, or unset it and {_INSTALL_HINT}; HTML and zip exports work "
                              "without it")
    for candidate in (shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise ChromiumMissing(f"PDF export needs Chromium: {_INSTALL_HINT} (or set FLOSS_CHROMIUM to a Chromium "
                          "binary); HTML and zip exports work without it")


def pdf_problem() -> str | None:
    """Why PDF export cannot work here (a message saying how to fix it), or None when it can."""
    try:
        find_chromium()
        import playwright.sync_api  # noqa: F401
    except ChromiumMissing as e:
        return str(e)
    except ImportError:
        return _NO_PLAYWRIGHT
    return None


_NO_PLAYWRIGHT = ("PDF export needs the playwright package: `pip install playwright` (the package only; it drives "
                  "the system Chromium, no `playwright install`); HTML and zip exports work without it")


def html_to_pdf(html: str, *, timeout_s: float = 60.0) -> bytes:
    """Print a report page to PDF (A4) with headless Chromium through Playwright, after every plotly
    chart has rendered. All network requests are refused: a report fetches nothing.

    Raises ChromiumMissing (with how to install it) where no Chromium or no playwright package is found."""
    exe = find_chromium()
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        raise ChromiumMissing(_NO_PLAYWRIGHT) from None
    # Playwright's sync API refuses to run in a thread with a running asyncio loop (e.g. inside some
    # servers): a fresh thread never has one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(_print_pdf, html, exe, timeout_s).result()


def _print_pdf(html: str, exe: str, timeout_s: float) -> bytes:
    from playwright.sync_api import sync_playwright

    n_charts = html.count('class="plotly-graph-div"')
    with tempfile.TemporaryDirectory() as tmp:
        page_path = Path(tmp) / "report.html"
        page_path.write_text(html, encoding="utf-8")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page()
                page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                           else route.abort())
                page.goto(page_path.as_uri(), wait_until="load", timeout=timeout_s * 1000)
                page.wait_for_function(
                    "n => { const g = document.querySelectorAll('.plotly-graph-div');"
                    " return g.length === n && [...g].every(d => d._fullLayout && d.querySelector('.main-svg')); }",
                    arg=n_charts, timeout=timeout_s * 1000)
                page.emulate_media(media="print")
                return page.pdf(format="A4", print_background=True, prefer_css_page_size=True)
            finally:
                browser.close()


# ------------------------------------------------------------------------------------ data zip
def data_zip(store: Store, experiment_ids) -> bytes:
    """The runs, per-step metrics, spectra and Jacobian diagnostics as CSV (and Parquet where pyarrow
    is importable), the summary table, and each experiment's spec as JSON, in one zip (bytes)."""
    return zip_from_data(load(store, experiment_ids))


def tables_for_export(data: ReportData) -> dict[str, pd.DataFrame]:
    """Flat tables (no nested objects: dicts and lists become JSON strings) named as in the zip."""
    runs = data.runs.copy()
    for c in ("versions", "config"):
        runs[c] = runs[c].map(lambda v: json.dumps(v, sort_keys=True))
    jac = data.jacobian.copy()
    jac["log_sv"] = jac["log_sv"].map(json.dumps)
    return {"runs": runs, "metrics": data.metrics, "spectra": data.spectra, "jacobian": jac,
            "summary": pd.DataFrame(data.summary)}


def zip_from_data(data: ReportData) -> bytes:
    tables = tables_for_export(data)
    try:
        import pyarrow  # noqa: F401
        parquet = True
    except ImportError:
        parquet = False
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, df in tables.items():
            z.writestr(f"{name}.csv", df.to_csv(index=False))
            if parquet:
                z.writestr(f"{name}.parquet", df.to_parquet(index=False))
        for i, spec in zip(data.ids, data.specs):
            z.writestr(f"spec-{i}.json", json.dumps(spec, indent=1))
        z.writestr("README.txt", _ZIP_README.format(ids=", ".join(map(str, data.ids)), version=__version__,
                                                    parquet=" and .parquet" if parquet else ""))
    return buf.getvalue()


_ZIP_README = """Gradient Flossing Lab data export: experiment(s) {ids}, floss_core {version}.

runs.csv{parquet}      one row per run (delay x schedule x seed): status, success, convergence_step,
                       timings (s), final metrics; config and versions as JSON strings
metrics.csv            per-step curves, long form: run_id, step, name, value
spectra.csv            Lyapunov spectra, one row per exponent: run_id, step, phase, index, exponent
jacobian.csv           long-term Jacobian per horizon: log_kappa (natural log of kappa_2), grad_norm,
                       log_sv (JSON list of log singular values)
summary.csv            the report's table: one row per (delay, schedule)
spec-<id>.json         the full comparison spec; floss_core.experiment.spec_from_dict reruns it
Empty cells are NaN. Tables join on run_id.
"""


# ------------------------------------------------------------------------------------ files
def safe_name(text: str, *, fallback: str = "experiment", max_len: int = 80) -> str:
    """A file-name part from user text: only [A-Za-z0-9._-], no '..', no leading dot or dash."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text))
    s = re.sub(r"\.{2,}", ".", s)
    s = s.lstrip("._-")[:max_len].rstrip("._-")
    return s or fallback


def report_filename(name: str, experiment_ids, fmt: str) -> str:
    """E.g. ``quick-sweep-3.html``: the experiment's name (sanitised) and id(s), then the format."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    ids = "_".join(str(i) for i in _ids(experiment_ids))
    return f"{safe_name(name)}-{ids}.{fmt}"


def export(store: Store, experiment_ids, fmt: str) -> tuple[str, bytes]:
    """(file name, contents) of one format of the report; the dashboard's download buttons use this."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    data = load(store, experiment_ids)
    name = report_filename("+".join(x["name"] for x in data.experiments), data.ids, fmt)
    if fmt == "zip":
        return name, zip_from_data(data)
    html = html_from_data(data)
    return name, (html.encode("utf-8") if fmt == "html" else html_to_pdf(html))


def write_report(store: Store, experiment_ids, fmt: str, out: str | os.PathLike | None = None) -> Path:
    """Write one format of the report. ``out``: a file path, an existing directory (the derived file
    name goes inside), or None (the derived name in the current directory). Returns the path."""
    name, blob = export(store, experiment_ids, fmt)
    path = Path(out) if out is not None else Path(name)
    if path.is_dir():
        path = path / name
    path.write_bytes(blob)
    return path
