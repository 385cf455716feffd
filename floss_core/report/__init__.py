"""Meeting reports: one experiment (or a chosen set: pooled where the settings match, side by side and
labelled by what differs where they do not) as a self-contained HTML page, a PDF printed from that page by
headless Chromium, and a zip of the data.

    html = render_html(store, 3)                    # one file, plotly.js inside, no external requests
    pdf = html_to_pdf(html)                         # bytes; ChromiumMissing if no Chromium is installed
    blob = data_zip(store, 3)                       # runs / metrics / spectra / jacobian as CSV (+ Parquet)
    path = write_report(store, 3, "pdf", "out/")    # any of the three, under a sanitised file name
    page = advice_report(store, 2)                  # a schedule advice: its verdict, front and trials (advice.py)

One module per job: ``data`` (what a report shows, read from the store), ``verdict`` (the headline
sentences, claiming only what Fisher's exact test supports), ``figures``, ``html``, ``pdf``,
``bundle`` (the zip), ``reproduce`` (the command line that reruns a spec) and ``formats`` (file
names, export, write).
"""
from .. import __version__
from ..stats import fisher_exact, min_attainable_p, seeds_needed
from .advice import advice_filename, advice_report, export_advice, write_advice_report
from .bundle import data_zip
from .data import Part, ReportData, load, records_from_runs
from .formats import export, report_filename, safe_name, write_report
from .html import render_html
from .pdf import CHROMIUM_ARGS, ChromiumMissing, find_chromium, html_to_pdf, pdf_problem
from .reproduce import Reproduction, reproduce, reproduce_command
from .verdict import set_intro, verdict

__all__ = ["CHROMIUM_ARGS", "ChromiumMissing", "Part", "ReportData", "Reproduction", "advice_filename",
           "advice_report", "data_zip", "export", "export_advice", "write_advice_report",
           "find_chromium", "fisher_exact", "html_to_pdf", "load", "min_attainable_p", "pdf_problem",
           "records_from_runs", "render_html", "report_filename", "reproduce", "reproduce_command", "safe_name",
           "seeds_needed", "set_intro", "verdict", "write_report"]
