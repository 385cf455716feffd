"""Report: one experiment (or a set of compatible ones) as HTML, PDF and a zip of the data."""
import streamlit as st

import dashboard as ui
from floss_core import report

experiment_id = ui.results_page(
    "Report",
    "A report stands alone for a meeting: the verdict drawn from the numbers, the key charts, a table per "
    "schedule, the full configuration and the command that reproduces it. HTML works offline; the PDF is "
    "printed from it by headless Chromium; the zip holds every run and curve as CSV.")
ui.need_results(experiment_id)
exps = ui.read("experiments")
others = [int(i) for i in exps["id"] if int(i) != experiment_id and exps.set_index("id").loc[i, "n_finished"]]
extra = st.multiselect("Pool with further experiments (same settings except name, delays and seeds)", others,
                       format_func=lambda i: f"#{i} {exps.set_index('id').loc[i, 'name']}")
ids = [experiment_id, *extra]
try:
    data = report.load(ui.store(), ids)
except (ValueError, KeyError) as e:
    st.error(str(e))
    st.stop()

st.subheader("Verdict")
for sentence in report.verdict(data.summary):
    st.write(sentence)
command, missing = report.reproduce_command(data.specs[0])
st.code(command, language="bash")
if missing:
    st.caption("The command line cannot set: " + ", ".join(missing) + " (the report's configuration has them).")

name = "+".join(e["name"] for e in data.experiments)
html, pdf, zipped = st.columns(3)
html.download_button("Download HTML", lambda: report.export(ui.store(), ids, "html")[1],
                     file_name=report.report_filename(name, ids, "html"), mime="text/html", type="primary")
zipped.download_button("Download data (zip of CSV)", lambda: report.export(ui.store(), ids, "zip")[1],
                       file_name=report.report_filename(name, ids, "zip"), mime="application/zip")
problem = report.pdf_problem()  # None, or how to get Chromium / playwright
if problem is None:
    pdf.download_button("Download PDF", lambda: report.export(ui.store(), ids, "pdf")[1],
                        file_name=report.report_filename(name, ids, "pdf"), mime="application/pdf")
else:
    pdf.warning(problem)
