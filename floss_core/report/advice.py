"""The schedule adviser's report: one stored advice as a self-contained HTML page (the recommendation as its
verdict, the Pareto front as a chart, every trial in a table, the configuration), and the same page as a PDF
printed by headless Chromium (``pdf.html_to_pdf``), under a sanitised file name.

    html = advice_report(store, 2)                     # the page (plotly.js inline, no external requests)
    name, blob = export_advice(store, 2, "pdf")        # what the Advise page's download buttons serve
    path = write_advice_report(store, 2, "html", "out/")

The numbers are the stored trials' and the stored recommendation's (``views.advice``), so the page, the CLI
and this report quote the same ones; an advice still running is reported as it stands ("so far").
"""
from __future__ import annotations

import datetime as _dt
import html as _html
import os
from pathlib import Path

from .. import __version__
from ..store import Store
from ..views import advice as views
from .figures import _for_print
from .formats import safe_name, write_export
from .html import _CSS, _json
from .pdf import html_to_pdf

FORMATS = ("html", "pdf")
FINAL = ("done", "failed", "cancelled")

_NOTE = ("Compute: a run's training + flossing seconds (the mean over the seeds it ran; evaluation and the lab's "
         "diagnostics are measurement, not counted). Every schedule ran the same seeds; one stopped after the first "
         "rung (successive halving) ran only the first few, so it is not on the front. The front: the complete "
         "trials no other trial beats in success, time to solution (median convergence step) and compute at once. Success: solved seeds with the 95 % Wilson "
         "interval; the difference from no flossing is Fisher's exact test, two-sided.")


def target_of(row: dict, rec: dict | None = None) -> float | None:
    """The advice's target success rate: its recommendation's, else its configuration's."""
    target = (rec or {}).get("target")
    config = row.get("config") or {}
    if target is None:
        target = (config.get("advise") or {}).get("target", config.get("target"))
    return None if target is None else float(target)


def recommendation_of(row: dict, trials: list[dict]) -> dict | None:
    """The stored recommendation of a finished advice (its result), else ``advice.recommend`` over the trials
    so far; None without a target."""
    target = target_of(row, row.get("result"))
    if target is None:
        return None
    return views.recommendation(trials, target, row.get("result"))


def advice_report(store: Store, advice_id: int, *, generated: _dt.datetime | None = None) -> str:
    """The report of stored advice ``advice_id`` as one self-contained HTML page; KeyError / ValueError (the
    store's) for an unknown id."""
    row = store.advice(int(advice_id))
    return advice_html({**row, "id": row.get("id", int(advice_id))}, store.advice_trials(int(advice_id)),
                       generated=generated)


def advice_html(row: dict, trials: list[dict], *, generated: _dt.datetime | None = None) -> str:
    """The page from an advice row (``store.advice``: name, config, status, result, error) and its trials."""
    import plotly.offline

    e = _html.escape
    generated = generated or _dt.datetime.now(_dt.timezone.utc)
    name = str(row.get("name") or f"advice #{row.get('id')}")
    rec = recommendation_of(row, trials)
    status = str(row.get("status") or "")
    so_far = status not in FINAL
    body = [f"<header><h1>{e(name)}</h1>",
            f"<p class='sub'>Gradient Flossing Lab · schedule advice #{e(str(row.get('id')))} · generated "
            f"{generated:%Y-%m-%d %H:%M} UTC</p>", _meta(row, trials, rec), "</header>"]
    body.append("<section class='verdict'><h2>Verdict</h2>")
    if status == "failed":
        body.append(f"<p class='head'>The search failed: {e(str(row.get('error') or 'no reason recorded'))}</p>")
    if rec is not None:
        head = ("So far (" + f"{len(trials)} trial{'s' if len(trials) != 1 else ''}, the search is {status}): "
                if so_far or status == "cancelled" else "")
        body.append(f"<p class='head' data-status='{e(rec['status'])}'>{e(head + rec['statement'])}</p>")
    body.append("</section>")
    if trials:
        fig = _for_print(views.fig_advice(trials, rec))
        fig.update_layout(height=420)
        config = {"displaylogo": False, "responsive": False, "staticPlot": False}
        div = fig.to_html(include_plotlyjs=False, full_html=False, config=config, div_id="fig1")
        time_fig = _for_print(views.fig_time_to_solution(trials, rec))
        time_fig.update_layout(height=380)
        time_div = time_fig.to_html(include_plotlyjs=False, full_html=False, config=config, div_id="fig2")
        body.append("<section class='charts'><h2>The front: success, time to solution and compute</h2>"
                    f"<div class='chart'>{div}<p>{e(views.front_caption(rec))}</p></div>"
                    f"<div class='chart'>{time_div}<p>{e(views.time_caption(trials))}</p></div></section>")
    body.append("<section class='results'><h2>Every trial</h2>" + _table(trials, rec)
                + f"<p class='note'>{e(_NOTE)}</p></section>")
    body.append("<section class='reproduce'><h2>Configuration</h2>"
                f"<pre class='config'>{e(_json(row.get('config') or {}))}</pre></section>")
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='generator' content='floss_core {e(__version__)}'>"
            f"<title>{e(name)} · advice</title><style>{_CSS}</style>"
            f"<script type='text/javascript'>{plotly.offline.get_plotlyjs()}</script>"
            f"</head><body><main>{''.join(body)}</main></body></html>")


def _meta(row: dict, trials: list[dict], rec: dict | None) -> str:
    """The title block: what was searched (the configuration's plain values), the target, the trials, status."""
    config = row.get("config") or {}
    spec, search = config.get("spec"), config.get("advise")
    if isinstance(spec, dict) and isinstance(search, dict):      # advise.advice_config: the base spec + the search
        rows = _search_rows(spec, search)
    else:                                                         # anything else: its plain values
        rows = [(str(k).replace("_", " ").capitalize(), _plain(v)) for k, v in config.items()
                if k != "target" and _plain(v) is not None]
    target = target_of(row, rec)
    if target is not None:
        rows.append(("Target", f"{100 * target:.0f} % success"))
    complete = sum(1 for t in trials if t["complete"])
    rows.append(("Trials", f"{len(trials)} evaluated, {complete} on every seed, {len(trials) - complete} stopped "
                           "after the first rung"))
    rows.append(("Status", str(row.get("status") or "")))
    created = row.get("created_at")
    if isinstance(created, (int, float)):                         # the store's Unix seconds
        created = _dt.datetime.fromtimestamp(created, _dt.timezone.utc)
    if isinstance(created, _dt.datetime):
        rows.append(("Date", f"created {created:%Y-%m-%d %H:%M} UTC"))
    rows.append(("Version", f"floss_core {__version__}"))
    return "<table class='meta'>" + "".join(
        f"<tr><th>{_html.escape(k)}</th><td>{_html.escape(v)}</td></tr>" for k, v in rows) + "</table>"


def _plain(v) -> str | None:
    """A configuration value as one cell ('4, 6' for a list of numbers); None for a nested one."""
    if isinstance(v, (str, int, float, bool)):
        return str(v)
    if isinstance(v, (list, tuple)) and all(isinstance(x, (str, int, float)) for x in v):
        return ", ".join(map(str, v))
    return None


def _search_rows(spec: dict, search: dict) -> list[tuple[str, str]]:
    """The title block's rows of a search: the base comparison (task, delays, network, seeds, training) and the
    search's own settings."""
    task, model, train = spec.get("task", {}), spec.get("model", {}), spec.get("train", {})
    seeds = spec.get("seeds", [])
    rung = search.get("rung_seeds")
    rows = [("Task", f"{task.get('name')}, sequence length {task.get('seq_len')}"),
            ("Delays", _plain(spec.get("delays", [])) or ""),
            ("Architecture", f"{model.get('arch')}, {model.get('hidden')} units"),
            ("Seeds", f"{len(seeds)} per candidate; the first rung runs "
                      + (f"{rung}" if rung is not None else "a third") + " of them"),
            ("Training", f"{train.get('steps')} steps, preset {spec.get('preset')}"),
            ("Candidates", f"{search.get('trials')} besides no flossing, {search.get('sampler')} sampler "
                           f"(seed {search.get('sampler_seed')})"),
            ("Schedules searched", _plain(search.get("schedules", [])) or ""),
            ("Knobs", _plain(search.get("knobs", [])) or "")]
    return rows


def _table(trials: list[dict], rec: dict | None) -> str:
    if not trials:
        return "<p>No trial evaluated yet.</p>"
    table = views.trials_table(trials, rec)
    shown = views.trials_display(table)
    keys = [k for k, _ in views.DISPLAY]
    head = "".join(f"<th>{_html.escape(h)}</th>" for h in shown.columns)
    rows = "".join(f"<tr data-trial='{n}' data-role='{_html.escape(role)}'>" + "".join(
        f"<td data-col='{k}'>{_html.escape(str(v))}</td>" for k, v in zip(keys, r)) + "</tr>"
        for n, role, r in zip(table["trial"], table["role"], shown.itertuples(index=False)))
    return f"<table class='results advice'><tr>{head}</tr>{rows}</table>"


def advice_filename(name: str, advice_id: int, fmt: str) -> str:
    """E.g. ``advice-xor-tiny-2.html``: 'advice', the advice's name (sanitised: no folders, no traversal), its
    id, the format."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return f"advice-{safe_name(name, fallback='advice')}-{int(advice_id)}.{fmt}"


def export_advice(store: Store, advice_id: int, fmt: str = "html") -> tuple[str, bytes]:
    """(file name, contents) of the advice report as HTML or PDF (PDF: ``pdf.ChromiumMissing`` where no Chromium
    or playwright is installed, saying how to get it)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    row = store.advice(int(advice_id))
    page = advice_html({**row, "id": row.get("id", int(advice_id))}, store.advice_trials(int(advice_id)))
    name = advice_filename(str(row.get("name") or ""), advice_id, fmt)
    return name, (page.encode("utf-8") if fmt == "html" else html_to_pdf(page))


def write_advice_report(store: Store, advice_id: int, fmt: str = "html",
                        out: str | os.PathLike | None = None) -> Path:
    """Write the advice report. ``out``: a file path, an existing directory (the sanitised name goes inside), or
    None (that name in the current directory). Returns the path."""
    return write_export(*export_advice(store, advice_id, fmt), out)


__all__ = ["FORMATS", "advice_filename", "advice_html", "advice_report", "export_advice", "recommendation_of",
           "target_of", "write_advice_report"]
