"""The report as one self-contained HTML page: title block, verdict, per-schedule tables, charts and
the reproduce section, plotly.js inline, no external requests."""
from __future__ import annotations

import datetime as _dt
import html as _html
import json
import math
import re

from .. import __version__, tasks
from ..stats import is_missing
from ..store import SCORED_RUN_STATUSES, Store
from .data import ReportData, load
from .figures import figures
from .reproduce import reproduce_command
from .verdict import percent, verdict


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
    body.append(_baselines(data))                 # csv: the networks beside the naive forecasts
    if data.summary:
        body.append("<section class='survival'><h2>Time to solution</h2>" + _survival(data.summary) + "</section>")
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
    entry = tasks.task_entry(task["name"])   # what the task reads decides what the title says about it
    shown = {"channels": lambda n: f"{n} channel{'s' if n != 1 else ''}", "order": lambda n: f"order {n}",
             "csv_path": str}
    extra = "".join(f", {shown[f](task[f])}" for f in entry.fields if f in shown)
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
            ("Training", f"{spec['train']['steps']} steps, success at {entry.success_text()} ≥ "
                         f"{task[entry.threshold_field] if entry.threshold_field else spec['train']['success_acc']}"),
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
    other = {k: v for k, v in counts.items() if k not in SCORED_RUN_STATUSES}
    note = f"Based on {len(data.finished)} finished run(s)"
    if other:
        note += "; not counted: " + ", ".join(f"{v} {k}" for k, v in sorted(other.items()))
    status = ", ".join(f"#{x['id']} {x['status']}" for x in data.experiments)
    return f"<p class='note'>{_html.escape(note)} (experiment status: {_html.escape(status)}).</p>"


TABLE_COLUMNS = [  # (key, header) of the per-schedule table
    ("schedule", "Schedule"), ("successes", "Solved"), ("success_rate", "Success (95% CI)"),
    ("median_convergence", "Convergence step: median (IQR)"), ("final_acc", "Final accuracy"),
    ("lambda1", "λ₁ before → after"), ("log10_kappa", "log₁₀ κ₂ before → after"),
    ("compute_s_per_run", "Train + floss s / run"), ("floss_cost_vs_training", "Flossing vs training"),
    ("diag_s_per_run", "Lab diagnostics s / run"), ("diverged", "Diverged")]


def table_cells(r: dict) -> dict:
    """The formatted cells of one summary row (what the HTML table shows, keyed like TABLE_COLUMNS)."""
    def f(x, nd=3):
        return "–" if is_missing(x) else f"{x:.{nd}f}"

    conv = r["median_convergence"]
    return {
        "schedule": r["schedule"], "successes": f"{r['successes']}/{r['n']}",
        "success_rate": f"{percent(r['success_rate'])} ({percent(r['success_lo'])}–{percent(r['success_hi'])})",
        "median_convergence": "–" if math.isnan(conv) else f"{conv:.0f} ({r['iqr_convergence']:.0f})",
        "final_acc": f(r["final_acc"]),
        "lambda1": f"{f(r['lambda1_before'], 4)} → {f(r['lambda1_after'], 4)}",
        "log10_kappa": f"{f(r['log10_kappa_before'], 2)} → {f(r['log10_kappa_after'], 2)}",
        "compute_s_per_run": _recorded(r.get("compute_s_per_run"), "{:.2f}"),
        "floss_cost_vs_training": _recorded(r.get("floss_cost_vs_training"), "+{:.0f} % ({:.1f}×)",
                                            lambda x: (100 * x, 1 + x)),
        "diag_s_per_run": _recorded(r.get("diag_s_per_run"), "{:.2f}"),
        "diverged": str(r["diverged"])}


def _recorded(x, template: str, args=lambda x: (x,)) -> str:
    """A cost cell: ``template`` filled from ``args(x)``; 'not recorded' where the runs did not time it."""
    return "not recorded" if is_missing(x) else template.format(*args(x))


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
               "and after training. Cost: a run's task training + flossing seconds (its share of its ensemble's); "
               "flossing vs training: its flossing seconds against its task-training seconds (+110 % (2.1×): "
               "flossing more than doubles the training compute). The lab's diagnostics (spectra, κ₂, "
               "gradient-vs-horizon snapshots, the λ monitor) are measurement overhead, not a cost of the "
               "schedule; evaluation is not counted either. Not recorded: runs stored before these were "
               "timed apart.</p>")
    return "".join(out)


SURVIVAL_KEYS = ("delay", "schedule", "km_solved", "km_median", "logrank_p", "paired_first", "paired_p")  # data-col


def _survival(summary: list[dict]) -> str:
    """The time-to-solution table (``views.survival_display`` of the summary's survival keys), one row per
    (delay, schedule), and what its columns mean."""
    import pandas as pd

    from .. import views

    shown = views.survival_display(pd.DataFrame(summary))
    keys = dict(zip(shown.columns, SURVIVAL_KEYS))
    head = "".join(f"<th>{_html.escape(c)}</th>" for c in shown.columns)
    rows = "".join(f"<tr data-delay='{r['delay']}' data-schedule='{_html.escape(r['schedule'])}'>" + "".join(
        f"<td data-col='{keys[c]}'>{_html.escape(str(r[c]))}</td>" for c in shown.columns) + "</tr>"
        for r in shown.to_dict("records"))
    return (f"<table class='survival'><tr>{head}</tr>{rows}</table>"
            "<p class='note'>Kaplan–Meier over every seed: one that never reached the threshold is censored at its "
            "last training step (or where it diverged), not left out; 'not reached': fewer than half solved. "
            "Log-rank and sign test (the same seeds, paired: who solved first) vs no flossing, two-sided, "
            "not corrected for the number of comparisons.</p>")


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


def _baselines(data: ReportData) -> str:
    """csv experiments: the networks' final test MSE, R² and skill beside the naive baselines' on the same
    test windows (``views.frames.baselines_table``), per delay, and the success rule; '' for the bit tasks."""
    from ..views import frames

    table = frames.baselines_table(data.finished)
    if not len(table):
        return ""
    shown = frames.baselines_display(table)
    keys = dict(zip(shown.columns, ("delay", "forecaster", "mse", "r2", "skill", "solved")))   # data-col
    head = "".join(f"<th>{_html.escape(c)}</th>" for c in shown.columns)
    rows = "".join(f"<tr data-kind='{k}'>" + "".join(f"<td data-col='{keys[c]}'>{_html.escape(str(r[c]))}</td>"
                                                     for c in shown.columns) + "</tr>"
                   for k, r in zip(table["kind"], shown.to_dict("records")))
    margin = data.specs[0]["task"].get("skill_margin")
    return ("<section class='baselines'><h2>Against naive forecasts</h2>"
            f"<table class='baselines'><tr>{head}</tr>{rows}</table>"
            "<p class='note'>Networks and baselines are scored on the same test windows (MSE in z-scored units, "
            "mean over seeds). Persistence forecasts the value d steps before the target; seasonal persistence "
            "the value one period P before it (P·⌈d/P⌉ steps when P &lt; d). Skill = 1 − MSE / MSE of the "
            "better baseline (0: no better than it). A run succeeds when its skill at the final evaluation is "
            f"at least {_html.escape(f'{margin:g}')}.</p></section>")

