"""Return on investment: what flossing costs in compute and what it buys in success and convergence."""
import streamlit as st

import dashboard as ui
from floss_core import views

chosen = ui.compare_set(ui.results_page(
    "Return on investment",
    "A schedule's cost is its networks' task training plus their flossing (each network's share of its "
    "ensemble's seconds); evaluation and the lab's diagnostics are timed apart and never counted as a "
    "schedule's cost. Time to solution is the training + flossing spent per solved network (all of it / "
    "successes); the extra cost per additional success compares each schedule with training without "
    "flossing at the same delay."))
runs = ui.finished_runs(chosen)
roi = views.roi_table(runs)

label = views.frames.LABEL
not_recorded = False
for name, part in roi.groupby(label, sort=False) if label in roi else [(None, roi)]:
    if name:   # a set side by side: each experiment's own answers, under its label
        st.markdown(f"**{name}**")
    h = views.roi_headline(part)
    cols = st.columns(3)
    cols[0].metric(f"Least training + flossing per solved network at d={h['delay']}",
                   f"{h['best']}: {ui.duration(h['time_to_solution_s'])}" if h["best"] else "nothing solved")
    cols[1].metric(f"Extra cost per additional success at d={h['delay']}",
                   f"{h['gain']}: {ui.duration(h['extra_s_per_success'])}" if h["gain"] else "no gain over none",
                   help="extra training + flossing seconds per network / extra success rate, against no flossing "
                        "at the same delay")
    missing = h["diag_s_per_run"] != h["diag_s_per_run"]
    not_recorded |= missing
    cols[2].metric(f"The lab's diagnostics per network at d={h['delay']}",
                   "not recorded" if missing else ui.duration(h["diag_s_per_run"]),
                   delta=None if missing else f"{h['diag_share']:.0%} of the wall time", delta_color="off",
                   delta_arrow="off", help="spectra, κ₂ and gradient-vs-horizon snapshots and the λ monitor: what "
                                           "this lab measures, not a cost of any schedule")
    st.markdown(views.frames.cost_sentence(h["delay"], h["floss_cost"], h["diag_s_per_run"], h["diag_share"]))
st.caption("Flossing's cost is its seconds against the same networks' task-training seconds: what flossing "
           "adds to your own training loop. The diagnostics are the lab's measurement overhead, not a cost of "
           "the schedule." + (" These runs were stored before evaluation and diagnostics were timed apart: "
                              "their seconds are not recorded." if not_recorded else ""))

st.subheader("What each schedule buys")
st.caption("Median step: the median convergence step of the solved runs. Cost per solved network: training + "
           "flossing seconds of all its networks / the networks solved. Cost per extra success: the extra "
           "training + flossing seconds per network over no flossing at the same delay / the extra success rate.")
st.dataframe(views.frames.experiment_ids(views.roi_display(roi, "buys")), hide_index=True, key="roi_buys")
st.subheader("What each schedule costs, per network")
st.caption("Seconds per network (its share of its ensemble's). Training and flossing are the schedule's cost; "
           "evaluation and the lab's diagnostics are measurement, timed apart.")
st.dataframe(views.frames.experiment_ids(views.roi_display(roi, "costs")), hide_index=True, key="roi_costs")

left, right = st.columns(2)
left.plotly_chart(views.fig_roi(roi), key="roi")
right.plotly_chart(views.fig_cost_breakdown(roi), key="cost")
