"""Conditioning and gradient flow: the long-term Jacobian and how far back a gradient reaches."""
import streamlit as st

import dashboard as ui
from floss_core import views

experiment_id = ui.results_page(
    "Conditioning and gradient flow",
    "The long-term Jacobian maps a perturbation of the state to its effect h steps later; its condition "
    "number κ₂ = σ_max/σ_min grows with h, the faster the more the exponents spread. The gradient of the "
    "output with respect to the state h steps back shows how much signal training gets from that far.")
runs, jac = ui.diagnostics_at_delay(experiment_id, "jacobian",
                                  "This experiment stored no Jacobian diagnostics (it ran with diagnostics off).")

stage = st.radio("Snapshot", views.STAGES, index=2, horizontal=True,
                 help="after flossing: right after the first flossing phase (schedules that floss)")
kappa = views.jacobian_band(jac, runs, "log10_kappa")
longest = kappa[(kappa["stage"] == stage) & (kappa["horizon"] == kappa["horizon"].max())]
for col, r in zip(st.columns(max(len(longest), 1)), longest.to_dict("records")):
    col.metric(f"log10 κ₂ at h={r['horizon']}, {r['schedule']}", f"{r['mean']:.1f}")

left, right = st.columns(2)
with left:
    st.plotly_chart(views.fig_horizon(kappa, title="Condition number of the long-term Jacobian", y="log10 κ₂",
                                      stage=stage), key="kappa")
with right:
    grads = views.jacobian_band(jac, runs, "log10_grad_norm")
    st.plotly_chart(views.fig_horizon(grads, title="Gradient norm vs steps back", y="log10 ‖∂y_T / ∂h_(T-h)‖",
                                      stage=stage, x="steps back h"), key="grad")
top = st.slider("Singular values shown", 1, 10, 5)
st.plotly_chart(views.fig_singular_values(views.singular_values(jac, runs, top=top), stage), key="sv")
