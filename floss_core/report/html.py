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
from .reproduce import reproduce
from .verdict import percent, set_intro, verdict


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
table.results td[data-col='set'], table.survival td[data-col='set'] { white-space: normal; text-align: left; }
table.meta td, table.meta th { text-align: left; border: none; padding: 1px 8px 1px 0; }
table.meta th { background: none; color: #555; font-weight: normal; width: 130px; }
table.settings td { text-align: left; }
.verdict p { margin: 6px 0; } .verdict .head { font-weight: bold; }
.chart { margin: 12px 0 20px; break-inside: avoid; page-break-inside: avoid; }
.chart p { color: #555; font-size: 12px; margin: 2px 0; }
pre { background: #f6f6f6; padding: 8px; font-size: 11px; white-space: pre-wrap; word-break: break-all; }
pre.command { font-family: "DejaVu Sans Mono", monospace; line-height: 1.35; white-space: pre; word-break: normal;
              overflow-wrap: normal; overflow-x: auto; }
pre.command.wrap { white-space: pre-wrap; overflow-wrap: anywhere; }
pre.config { font-size: 8.5px; line-height: 1.15; column-count: 2; column-gap: 16px; }
.note { color: #555; font-size: 12px; }
@page { size: A4; margin: 14mm 12mm; }
@media print {
  body { font-size: 11px; } main { max-width: none; padding: 0; }
  h2, h3 { break-after: avoid; page-break-after: avoid; }
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
    if not data.pooled:                           # a set whose settings differ: what differs, first
        body.append(_set_section(data))
    body.append("<section class='verdict'><h2>Verdict</h2>")
    if data.pooled:
        body.append(_verdict(data.summary))
    else:
        body.append(f"<p class='head'>{e(set_intro([(p.label, p.ids) for p in data.parts], data.differing))}</p>")
        body += [f"<h3>{e(p.label)}</h3>" + _verdict(p.summary) for p in data.parts]
    body.append(_run_note(data) + "</section>")
    body.append("<section class='results'><h2>Results per schedule</h2>" + _tables(_labelled(data)) + "</section>")
    body.append(_baselines(data))                 # csv: the networks beside the naive forecasts
    if data.summary:
        body.append("<section class='survival'><h2>Time to solution</h2>" + _survival(_labelled(data)) + "</section>")
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


def _verdict(summary: list[dict]) -> str:
    """One summary's verdict: its headline in bold, then one paragraph per comparison."""
    sentences = verdict(summary)
    return f"<p class='head'>{_html.escape(sentences[0])}</p>" + "".join(
        f"<p>{_html.escape(s)}</p>" for s in sentences[1:])


def _labelled(data: ReportData) -> list[tuple[str, list[dict]]]:
    """(label, summary) per part: one unlabelled summary for a pooled report."""
    return [("", data.summary)] if data.pooled else [(p.label, p.summary) for p in data.parts]


def _set_section(data: ReportData) -> str:
    """A set whose settings differ: the table of the settings that differ, one column per experiment, and
    which experiments are pooled (their settings match)."""
    e = _html.escape
    table = data.settings
    head = "".join(f"<th>{e(str(c))}</th>" for c in table.columns)
    rows = "".join("<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in r) + "</tr>"
                   for r in table.itertuples(index=False))
    parts = "; ".join(f"{p.label}: experiment{'s' if len(p.ids) > 1 else ''} "
                      f"{', '.join(f'#{i}' for i in p.ids)}" for p in data.parts)
    return ("<section class='set'><h2>What differs</h2>"
            f"<table class='settings'><tr>{head}</tr>{rows}</table>"
            f"<p class='note'>Each series, table row and verdict below is labelled by the settings that differ "
            f"({e(parts)}). Experiments whose settings match but for name, delays and seeds are pooled; those "
            "that differ are never pooled.</p></section>")


def _spec_rows(spec: dict, specs: list[dict]) -> list[tuple[str, str]]:
    """The title block's rows about one configuration (delays and seeds: the union over ``specs``)."""
    task = spec["task"]
    entry = tasks.task_entry(task["name"])   # what the task reads decides what the title says about it
    shown = {"channels": lambda n: f"{n} channel{'s' if n != 1 else ''}", "order": lambda n: f"order {n}",
             "csv_path": str}
    extra = "".join(f", {shown[f](task[f])}" for f in entry.fields if f in shown)
    model = spec["model"]
    delays = sorted({d for s in specs for d in s["delays"]})
    seeds = sorted({x for s in specs for x in s["seeds"]})
    return [("Task", f"{task['name']}{extra}, sequence length {task['seq_len']}, batch {task['batch']}"),
            ("Delays", ", ".join(map(str, delays))),
            ("Architecture", f"{model['arch']}, {model['hidden']} units, gain {model['gain']}"),
            ("Seeds", f"{len(seeds)} per schedule ({_ranges(seeds)})"),
            ("Schedules", ", ".join(s["name"] for s in spec["schedules"])),
            ("Training", f"{spec['train']['steps']} steps, success at {entry.success_text()} ≥ "
                         f"{task[entry.threshold_field] if entry.threshold_field else spec['train']['success_acc']}"),
            ("Flossing", f"k = {spec['floss']['k']} exponents, window {spec['floss']['seq_len']}"),
            ("Preset", spec["preset"])]


def _title_block(data: ReportData) -> str:
    if data.pooled:
        rows = _spec_rows(data.specs[0], data.specs)
    else:   # a row that differs between the parts names each part's value
        per_part = [_spec_rows(p.specs[0], p.specs) for p in data.parts]
        rows = []
        for i, (key, value) in enumerate(per_part[0]):
            values = [r[i][1] for r in per_part]
            rows.append((key, value if len(set(values)) == 1 else
                         "; ".join(f"{p.label.split(' ')[0]}: {v}" for p, v in zip(data.parts, values))))
    used = sorted({str(d) for d in data.runs["device"].dropna()})
    created = min(x["created_at"] for x in data.experiments)
    versions = {}
    for v in data.finished["versions"]:
        versions.update(v or {})
    others = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()) if k != "floss_core")
    requested = ", ".join(dict.fromkeys(s["device"] for s in data.specs))
    rows += [("Device", f"{', '.join(used) or 'not run yet'} (requested: {requested})"),
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


STOPPED_ACC = "Final accuracy (at convergence where stopped)"   # the final_acc header when runs stopped when solved


def table_columns(rows) -> list:
    """``TABLE_COLUMNS`` for these summary rows: where some runs stopped when solved (``stopped``), their final
    accuracy is their accuracy at convergence, and the header says so."""
    if not any(r.get("stopped") for r in rows):
        return TABLE_COLUMNS
    return [(k, STOPPED_ACC if k == "final_acc" else h) for k, h in TABLE_COLUMNS]


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


def _tables(parts: list[tuple[str, list[dict]]]) -> str:
    """The per-schedule tables, one per delay; ``parts``: (label, summary) pairs. A set whose settings differ
    (labels not '') shows each part's rows beside the others', under an Experiment column."""
    if not any(summary for _, summary in parts):
        return "<p>No finished runs yet.</p>"
    out = []
    labelled = any(label for label, _ in parts)
    columns = table_columns([r for _, summary in parts for r in summary])
    head = ("<th>Experiment</th>" if labelled else "") + "".join(
        f"<th>{_html.escape(h)}</th>" for _, h in columns)
    for d in sorted({r["delay"] for _, summary in parts for r in summary}):
        rows = []
        for label, summary in parts:
            for r in (r for r in summary if r["delay"] == d):
                cells = table_cells(r)
                rows.append(_row(d, r["schedule"], label if labelled else None,
                                 [(k, cells[k]) for k, _ in columns]))
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
    if columns is not TABLE_COLUMNS:
        out.append("<p class='note'>Stop when solved: a network stopped training at the evaluation where it met "
                   "the success criterion, so its final accuracy is its accuracy at convergence; success rates "
                   "and convergence steps are those of training every network for the whole budget.</p>")
    return "".join(out)


def _row(delay, schedule: str, label: str | None, cells: list[tuple[str, str]]) -> str:
    """One table row keyed by delay and schedule (and, for a set side by side, the part's label, also shown in
    a first cell); ``cells``: (data-col key, text)."""
    e = _html.escape
    attr = "" if label is None else f" data-set='{e(label, quote=True)}'"
    first = "" if label is None else f"<td data-col='set'>{e(label)}</td>"
    return (f"<tr data-delay='{delay}' data-schedule='{e(schedule)}'{attr}>" + first
            + "".join(f"<td data-col='{k}'>{e(v)}</td>" for k, v in cells) + "</tr>")


SURVIVAL_KEYS = ("delay", "schedule", "km_solved", "km_median", "logrank_p", "paired_first", "paired_p")  # data-col


def _survival(parts: list[tuple[str, list[dict]]]) -> str:
    """The time-to-solution table (``views.survival_display`` of the summary's survival keys), one row per
    (delay, schedule) (per part, labelled, for a set whose settings differ), and what its columns mean."""
    import pandas as pd

    from .. import views

    labelled = any(label for label, _ in parts)
    rows, columns = [], []
    for label, summary in parts:
        if not summary:
            continue
        shown = views.survival_display(pd.DataFrame(summary))
        columns = list(shown.columns)
        keys = dict(zip(shown.columns, SURVIVAL_KEYS))
        rows += [_row(r["delay"], r["schedule"], label if labelled else None,
                      [(keys[c], str(r[c])) for c in shown.columns]) for r in shown.to_dict("records")]
    head = ("<th>Experiment</th>" if labelled else "") + "".join(f"<th>{_html.escape(c)}</th>" for c in columns)
    rows = "".join(rows)
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


COMMAND_WIDTH_PX = 670       # the command's text width: the page's, less the box's padding (A4 print and screen)
MONO_ADVANCE = 0.602         # DejaVu Sans Mono's advance, in em
COMMAND_PX = (5.0, 12.0)     # its font size: the largest that fits the longest line, within these


def command_font_px(lines: list[str]) -> float:
    """The font size (px) at which the longest of the command's lines fits the text width."""
    longest = max(len(line) for line in lines)
    return max(COMMAND_PX[0], min(COMMAND_PX[1], int(10 * COMMAND_WIDTH_PX / (MONO_ADVANCE * longest)) / 10))


def command_block(lines: list[str]) -> str:
    """The command as a shell block: one option per line, `` \\`` at the line ends, never wrapped (it breaks
    only between options, so a printed copy shows every option whole), at a font size that fits the page.
    Only a line too long even at the smallest size wraps."""
    px = command_font_px(lines)
    fits = px * MONO_ADVANCE * max(len(line) for line in lines) <= COMMAND_WIDTH_PX
    return (f"<pre class='command{'' if fits else ' wrap'}' style='font-size: {px:g}px'>"
            f"{_html.escape(chr(10).join(lines))}</pre>")


def _reproduce(data: ReportData) -> str:
    e = _html.escape
    out = []
    for i, spec in zip(data.ids, data.specs):
        r = reproduce(spec)
        if len(data.ids) > 1:
            out.append(f"<h3>Experiment #{i}</h3>")
        out.append(command_block(r.lines))
        if r.note:
            out.append(f"<p class='note'>{e(r.note)} Save it as spec.json (it is spec-{i}.json in the data zip), "
                       "queue it and run a worker:</p>"
                       "<pre>python -c \"import json; from floss_core.experiment import spec_from_dict; "
                       "from floss_core.runner import submit; from floss_core.store import Store; "
                       "print(submit(spec_from_dict(json.load(open('spec.json'))), Store()))\"\n"
                       "python -m floss_core worker --exit-when-idle</pre>")
        else:
            checked = f" (checked with {r.checked_with})" if r.checked_with else ""
            out.append("<p class='note'>Checked: this command parses back to exactly the configuration "
                       f"below{e(checked)}.</p>")
        out.append(f"<h3>Full configuration</h3><pre class='config'>{e(_json(spec))}</pre>")
    return "".join(out)


def _baselines(data: ReportData) -> str:
    """csv experiments: the networks' final test MSE, R² and skill beside the naive baselines' on the same
    test windows (``views.frames.baselines_table``), per delay, and the success rule; '' for the bit tasks.
    A set whose settings differ: one table per part, under its label."""
    parts = [("", data.finished, data.specs[0])] if data.pooled else \
        [(p.label, p.finished, p.specs[0]) for p in data.parts]
    tables = [(label, _baselines_table(finished), spec) for label, finished, spec in parts]
    tables = [t for t in tables if t[1]]
    if not tables:
        return ""
    margins = sorted({spec["task"].get("skill_margin") for _, _, spec in tables} - {None})
    rule = " or ".join(_html.escape(f"{m:g}") for m in margins)
    return ("<section class='baselines'><h2>Against naive forecasts</h2>"
            + "".join((f"<h3>{_html.escape(label)}</h3>" if label else "") + table for label, table, _ in tables)
            + "<p class='note'>Networks and baselines are scored on the same test windows (MSE in z-scored units, "
            "mean over seeds). Persistence forecasts the value d steps before the target; seasonal persistence "
            "the value one period P before it (P·⌈d/P⌉ steps when P &lt; d). Skill = 1 − MSE / MSE of the "
            "better baseline (0: no better than it). A run succeeds when its skill at the final evaluation is "
            f"at least {rule}.</p></section>")


def _baselines_table(finished) -> str:
    """One baselines table of some finished runs ('' when they are not csv runs)."""
    from ..views import frames

    table = frames.baselines_table(finished)
    if not len(table):
        return ""
    shown = frames.baselines_display(table)
    keys = dict(zip(shown.columns, ("delay", "forecaster", "mse", "r2", "skill", "solved")))   # data-col
    head = "".join(f"<th>{_html.escape(c)}</th>" for c in shown.columns)
    rows = "".join(f"<tr data-kind='{k}'>" + "".join(f"<td data-col='{keys[c]}'>{_html.escape(str(r[c]))}</td>"
                                                     for c in shown.columns) + "</tr>"
                   for k, r in zip(table["kind"], shown.to_dict("records")))
    return f"<table class='baselines'><tr>{head}</tr>{rows}</table>"
