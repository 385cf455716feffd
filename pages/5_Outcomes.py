"""Outcomes: test accuracy over training, success rate vs delay, and when the runs converged."""
import streamlit as st

import dashboard as ui
from floss_core import views

experiment_id = ui.results_page(
    "Outcomes",
    "A run succeeds when its test score reaches the success threshold; its convergence step is the first "
    "evaluation where it did. Success rates carry 95% Wilson intervals: with a handful of seeds they are wide.")
runs = ui.finished_runs(experiment_id)
success = views.success_vs_delay(runs)
for col, r in zip(st.columns(min(len(success), 6)) * 10, success.itertuples()):
    col.metric(f"Success, {r.schedule} at d={r.delay}", f"{r.rate:.0%}",
               help=f"{r.successes} of {r.n} seeds; 95% interval {r.lo:.0%} to {r.hi:.0%}")
st.plotly_chart(views.fig_success_vs_delay(success), key="success")

st.subheader("Test score over training")
delay = ui.pick_delay(runs)
score = views.score_column(runs)
metrics = ui.read("metrics", experiment_id)
show_seeds = st.toggle("Show individual seeds")
delay_runs = runs[runs["delay"] == delay]
band = views.metric_band(metrics, delay_runs, score)
seeds = views.metric_seeds(metrics, delay_runs, score) if show_seeds else None
st.plotly_chart(views.fig_metric(band[band["delay"] == delay], seeds=seeds,
                                 title=f"{score.replace('_', ' ')} at d={delay} (mean ± s.d. across seeds)",
                                 y=score.replace("_", " ")), key="accuracy")

st.subheader("Convergence")
conv = views.convergence_steps(runs)
if conv.empty:
    st.info("No run reached the success threshold, so there are no convergence steps to compare.")
else:
    st.plotly_chart(views.fig_convergence(conv), key="convergence")
