"""Lyapunov spectra: before and after flossing and at the end of training, and λ_1 over training."""
import streamlit as st

import dashboard as ui
from floss_core import views

chosen = ui.compare_set(ui.results_page(
    "Lyapunov spectra",
    "The exponents λ_i measure how fast perturbations of the network's state grow (λ > 0) or shrink "
    "(λ < 0) per step; a gradient through many steps shrinks like exp(λ_1 · steps). Flossing pushes the "
    "top k exponents toward 0. Lines are the mean across seeds, bands ± 1 standard deviation."))
runs, spectra = ui.diagnostics_at_delay(chosen, "spectra",
                                      "This experiment stored no spectra (it ran with diagnostics off).")

band = views.spectrum_band(spectra, runs)
summary = views.lambda1_by_stage(band)
per_row = 3 if "series" in summary else 6   # a set's longer labels need the room
for col, r, name in zip(st.columns(max(min(len(summary), per_row), 1)) * 10, summary.to_dict("records"),
                        views.series_names(summary, short=True)):
    after = "no flossing phase" if r["after flossing"] != r["after flossing"] else f"{r['after flossing']:+.3f}"
    col.metric(f"λ_1 at the end of training, {name}", f"{r['end of training']:+.3f}",
               delta=f"{r['end of training'] - r['initial']:+.3f} vs initial", delta_color="off",
               help=f"initial {r['initial']:+.3f}, after flossing: {after}")

stages = st.multiselect("Stages", views.STAGES, default=list(views.STAGES))
st.plotly_chart(views.fig_spectra(band, stages), key="spectra")

st.subheader("Over training")
lambda1 = views.metric_band(ui.read("metrics", chosen), runs, "lambda1")
st.plotly_chart(views.fig_metric(lambda1, title="λ_1 at every evaluation (mean ± s.d. across seeds)",
                                 y="λ_1 (per step)"), key="lambda1")
k_max = int(spectra["index"].max())
k = st.slider("Top-k exponents at the stored snapshots", 1, max(k_max, 2), min(5, k_max))
st.plotly_chart(views.fig_topk(views.topk_over_training(spectra, runs, k)), key="topk")
