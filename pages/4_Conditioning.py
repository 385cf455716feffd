"""Conditioning and gradient flow: what flossing controls first (κ₂ of the top-k subspace, the gradient norm
vs horizon), then the full long-term Jacobian's κ₂ and its singular values."""
import streamlit as st

import dashboard as ui
from floss_core import views

chosen = ui.compare_set(ui.results_page(
    "Conditioning and gradient flow",
    "The long-term Jacobian maps a perturbation of the state to its effect h steps later; its condition "
    "number κ₂ = σ_max/σ_min grows with h, the faster the more the exponents spread. The gradient of the "
    "output with respect to the state h steps back shows how much signal training gets from that far."))
runs, jac = ui.diagnostics_at_delay(chosen, "jacobian",
                                  "This experiment stored no Jacobian diagnostics (it ran with diagnostics off).")

stage = st.radio("Snapshot", views.STAGES, index=2, horizontal=True,
                 help="after flossing: right after the first flossing phase (schedules that floss)")
k = views.flossed_k(runs)   # None where the experiments compared flossed different k
top_k = f"top-{k}" if k else "top-k"
label = views.frames.LABEL
ks = {name: views.flossed_k(g) for name, g in runs.groupby(label, sort=False)} if label in runs else {}


def top(r) -> str:
    """'top-4': the flossed subspace of a headline row's experiment."""
    own = ks.get(r.get(label), k)
    return f"top-{own}" if own else "top-k"


st.markdown(f"**What flossing controls.** Flossing pushes only the top {k or 'k'} Lyapunov exponents toward 0, "
            f"so it acts on κ₂ of the {top_k} subspace (σ₁/σ_{k or 'k'}) and on how far back the gradient "
            "reaches; the full κ₂ = σ₁/σ_min is set by the smallest singular value, which the unflossed bottom "
            "exponents drive, so it can stay the same while these two change.")
head = views.conditioning_headline(jac, runs, stage)
rows = list(zip(head.to_dict("records"), views.series_names(head, short=True)))
per_row = 3 if "series" in head else 4   # metrics per row: a set's longer labels need the room
for col, (r, name) in zip(st.columns(max(min(len(head), per_row), 1)) * 10, rows):
    col.metric(f"log10 κ₂ of the {top(r)} at h={r['horizon']}, {name}", f"{r['log10_kappa_k']:.1f}")
for col, (r, name) in zip(st.columns(max(min(len(head), per_row), 1)) * 10, rows):
    col.metric(f"log10 gradient norm {r['horizon']} steps back, {name}", f"{r['log10_grad_norm']:.1f}")

left, right = st.columns(2)
with left:
    kappa_k = views.jacobian_band(jac, runs, "log10_kappa_k")
    st.plotly_chart(views.fig_horizon(kappa_k, title=f"κ₂ of the {top_k} subspace", y=f"log10 σ₁/σ_{k or 'k'}",
                                      stage=stage), key="kappa_k")
with right:
    grads = views.jacobian_band(jac, runs, "log10_grad_norm")
    st.plotly_chart(views.fig_horizon(grads, title="Gradient norm vs steps back", y="log10 ‖∂y_T / ∂h_(T-h)‖",
                                      stage=stage, x="steps back h"), key="grad")

st.subheader("The full long-term Jacobian")
kappa = views.jacobian_band(jac, runs, "log10_kappa")
st.caption("κ₂ = σ_max/σ_min over all singular values, the bottom ones included: flossing the top exponents "
           "need not move it.")
for col, (r, name) in zip(st.columns(max(min(len(head), per_row), 1)) * 10, rows):
    col.metric(f"log10 κ₂ at h={r['horizon']}, {name}", f"{r['log10_kappa']:.1f}")
st.plotly_chart(views.fig_horizon(kappa, title="Condition number of the long-term Jacobian", y="log10 κ₂",
                                  stage=stage), key="kappa")
top = st.slider("Singular values shown", 1, 10, 5)
st.plotly_chart(views.fig_singular_values(views.singular_values(jac, runs, top=top), stage), key="sv")
