"""Outcomes: test accuracy over training, success rate vs delay, when the runs converged, and the time to
solution with the unsolved seeds censored (Kaplan–Meier, log-rank, paired seeds)."""
import streamlit as st

import dashboard as ui
from floss_core import views

chosen = ui.compare_set(ui.results_page(
    "Outcomes",
    "A run succeeds when its test score reaches the success threshold; its convergence step is the first "
    "evaluation where it did. Success rates carry 95% Wilson intervals: with a handful of seeds they are wide."))
runs = ui.finished_runs(chosen)
success = views.success_vs_delay(runs)
columns = st.columns(max(min(len(success), 4 if "series" in success else 6), 1)) * 10   # a set's labels: longer
for col, r, name in zip(columns, success.itertuples(), views.series_names(success, short=True)):
    col.metric(f"Success, {name} at d={r.delay}", f"{r.rate:.0%}",
               help=f"{r.successes} of {r.n} seeds; 95% interval {r.lo:.0%} to {r.hi:.0%}")
st.plotly_chart(views.fig_success_vs_delay(success), key="success")

st.subheader("Test score over training")
delay = ui.pick_delay(runs)
score = views.score_column(runs)
metrics = ui.read("metrics", chosen)
show_seeds = st.toggle("Show individual seeds")
delay_runs = runs[runs["delay"] == delay]
band = views.metric_band(metrics, delay_runs, score)
seeds = views.metric_seeds(metrics, delay_runs, score) if show_seeds else None
st.plotly_chart(views.fig_metric(band[band["delay"] == delay], seeds=seeds,
                                 title=f"{score.replace('_', ' ')} at d={delay} (mean ± s.d. across seeds)",
                                 y=score.replace("_", " "), threshold=views.success_thresholds(delay_runs)),
                key="accuracy")

st.subheader("Convergence")
conv = views.convergence_steps(runs)
if conv.empty:
    st.info("No run reached the success threshold, so there are no convergence steps to compare.")
else:
    st.plotly_chart(views.fig_convergence(conv), key="convergence")

st.subheader("Time to solution, counting the seeds that never solved")
st.markdown(
    "The median above sees only the solved seeds, and the success rate ignores when. The Kaplan–Meier curve "
    "counts every seed: the fraction solved by each training step, where a seed that never solved is "
    "*censored* at its budget (its last training step) or at the step it diverged. Its median is the step by "
    "which half the seeds solved; the log-rank test asks whether a schedule's curve differs from no "
    "flossing's. Every schedule trains the same seeds (the same initial weights and data), so the seeds also "
    "pair up: who solved first, seed by seed, with a sign test.")
survival = views.survival_table(runs)
at_delay = survival[survival["delay"] == delay]
for col, r, name in zip(st.columns(max(min(len(at_delay), 3), 1)) * 10, at_delay.itertuples(),
                         views.series_names(at_delay, short=True)):
    median = "not reached" if r.median_solve_step == float("inf") else f"step {r.median_solve_step:.0f}"
    col.metric(f"Median time to solution, {name} at d={r.delay}", median,
               help="Kaplan–Meier median over all seeds (unsolved ones censored); 95% interval in the table below")
st.plotly_chart(views.fig_survival(views.survival_curves(delay_runs), budget=views.training_budget(delay_runs)),
                key="survival")
st.dataframe(views.frames.experiment_ids(views.survival_display(survival)), hide_index=True)
paired = views.paired_solves(runs)
if len(paired):
    with st.expander("Seed by seed against no flossing"):
        st.dataframe(views.frames.experiment_ids(views.paired_display(paired)), hide_index=True)

# forecasting a series (csv): the networks beside the naive forecasts they must beat, on the same test windows
baselines = views.frames.baselines_table(runs)
if len(baselines):
    st.subheader("Against naive forecasts")
    margin = runs["config"].iloc[0]["task"].get("skill_margin")
    st.markdown(
        "Every network and every baseline is scored on the same test windows. *Persistence* forecasts the "
        "value d steps before the target, the last one the network has seen; *seasonal persistence* (given a "
        "period P) the value P steps before it (P·⌈d/P⌉ when P < d). *Skill* = 1 − MSE / MSE of the better "
        "baseline: 0 is no better than that baseline, 1 a perfect forecast; a baseline's own skill is against "
        f"the better one. A run succeeds when its skill at the final evaluation is at least {margin:g}.")
    st.dataframe(views.frames.experiment_ids(views.frames.baselines_display(baselines)), hide_index=True)
