"""Return on investment: what flossing costs in compute and what it buys in success and convergence."""
import streamlit as st

import dashboard as ui
from floss_core import views

experiment_id = ui.results_page(
    "Return on investment",
    "A schedule's cost is its networks' task training plus their flossing (each network's share of its "
    "ensemble's seconds); evaluation and the lab's diagnostics are timed apart and never counted as a "
    "schedule's cost. Time to solution is the training + flossing spent per solved network (all of it / "
    "successes); the extra cost per additional success compares each schedule with training without "
    "flossing at the same delay.")
runs = ui.finished_runs(experiment_id)
roi = views.roi_table(runs)

h = views.roi_headline(roi)
cols = st.columns(3)
cols[0].metric(f"Least training + flossing per solved network at d={h['delay']}",
               f"{h['best']}: {ui.duration(h['time_to_solution_s'])}" if h["best"] else "nothing solved")
cols[1].metric(f"Extra training + flossing per additional success at d={h['delay']}",
               f"{h['gain']}: {ui.duration(h['extra_s_per_success'])}" if h["gain"] else "no gain over none",
               help="extra training + flossing seconds per network / extra success rate, against no flossing at "
                    "the same delay")
not_recorded = h["diag_s_per_run"] != h["diag_s_per_run"]
cols[2].metric(f"The lab's diagnostics per network at d={h['delay']}",
               "not recorded" if not_recorded
               else f"{ui.duration(h['diag_s_per_run'])} ({h['diag_share']:.0%} of the wall time)",
               help="spectra, κ₂ and gradient-vs-horizon snapshots and the λ monitor: what this lab measures, "
                    "not a cost of any schedule")

st.markdown(views.frames.cost_sentence(h["delay"], h["floss_cost"], h["diag_s_per_run"], h["diag_share"]))
st.caption("Flossing's cost is its seconds against the same networks' task-training seconds: what flossing "
           "adds to your own training loop. The diagnostics are the lab's measurement overhead, not a cost of "
           "the schedule." + (" These runs were stored before evaluation and diagnostics were timed apart: "
                              "their seconds are not recorded." if not_recorded else ""))

num = st.column_config.NumberColumn
columns = {"delay": num("delay"), "schedule": st.column_config.TextColumn("schedule"), "n": num("networks"),
           "successes": num("solved"), "success_rate": num("success", format="percent"),
           "success_lo": num("95% lo", format="percent"), "success_hi": num("95% hi", format="percent"),
           "compute_s_per_run": num("training + flossing s / network", format="%.2f"),
           "floss_cost_vs_training": num("flossing / training", format="percent"),
           "train_s_per_run": num("training s", format="%.2f"), "floss_s_per_run": num("flossing s", format="%.2f"),
           "eval_s_per_run": num("evaluation s", format="%.2f"),
           "diag_s_per_run": num("diagnostics s (lab)", format="%.2f"),
           "wall_s_per_run": num("wall s / network", format="%.2f"),
           "median_convergence": num("median convergence step", format="%.0f"),
           "time_to_solution_s": num("training + flossing s per solved network", format="%.2f"),
           "extra_s_per_success": num("extra s per additional success", format="%.2f")}
st.dataframe(roi, hide_index=True, column_order=list(columns), column_config=columns)

left, right = st.columns(2)
left.plotly_chart(views.fig_roi(roi), key="roi")
right.plotly_chart(views.fig_cost_breakdown(roi), key="cost")
