"""Report: one experiment (or a set of them) as HTML, PDF and a zip of the data. A set is pooled where the
settings match (they differ at most in name, delays and seeds) and shown side by side, labelled by what
differs, where they do not."""
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
extra = st.multiselect("Add further experiments (pooled where the settings match but for name, delays and seeds; "
                       "side by side, labelled by what differs, where they do not)", others,
                       format_func=lambda i: f"#{i} {exps.set_index('id').loc[i, 'name']}")
ids = [experiment_id, *extra]
try:
    data = report.load(ui.store(), ids)
except (ValueError, KeyError) as e:
    st.error(str(e))
    st.stop()

if not data.pooled:
    st.subheader("What differs")
    st.caption(report.set_intro([(p.label, p.ids) for p in data.parts], data.differing))
    st.dataframe(data.settings, hide_index=True)
elif len(ids) > 1:
    st.caption(f"Experiments {', '.join(f'#{i}' for i in ids)} pooled: their settings match but for name, delays "
               "and seeds.")

st.subheader("Verdict")
for part in data.parts:
    if part.label:
        st.markdown(f"**{part.label}**")
    for sentence in report.verdict(part.summary):
        st.write(sentence)
for i, spec in zip(data.ids, data.specs):
    r = report.reproduce(spec)
    if len(data.ids) > 1:
        st.markdown(f"**Reproduce experiment #{i}**")
    st.code("\n".join(r.lines), language="bash")
    if r.note:
        st.caption(r.note + f" (the data zip holds it as spec-{i}.json).")

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
