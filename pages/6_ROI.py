"""Return on investment: what flossing costs in compute and what it buys in success and convergence."""
import streamlit as st

import dashboard as ui
from floss_core import views

experiment_id = ui.results_page(
    "Return on investment",
    "Compute is each network's share of its ensemble's wall time. Time to solution is the compute spent "
    "per solved network (all seconds / successes); the extra cost per additional success compares each "
    "schedule with training without flossing at the same delay.")
runs = ui.finished_runs(experiment_id)
roi = views.roi_table(runs)

h = views.roi_headline(roi)
cols = st.columns(3)
cols[0].metric(f"Least compute per solved network at d={h['delay']}",
               f"{h['best']}: {ui.duration(h['time_to_solution_s'])}" if h["best"] else "nothing solved")
cols[1].metric(f"Extra compute per additional success at d={h['delay']}",
               f"{h['gain']}: {ui.duration(h['extra_s_per_success'])}" if h["gain"] else "no gain over none",
               help="extra seconds per network / extra success rate, against no flossing at the same delay")
cols[2].metric(f"Flossing share of compute at d={h['delay']}",
               "-" if h["floss_share"] != h["floss_share"] else f"{h['floss_share']:.0%}",
               help="mean over the flossing schedules")

num = st.column_config.NumberColumn
columns = {"delay": num("delay"), "schedule": st.column_config.TextColumn("schedule"), "n": num("networks"),
           "successes": num("solved"), "success_rate": num("success", format="percent"),
           "success_lo": num("95% lo", format="percent"), "success_hi": num("95% hi", format="percent"),
           "wall_s_per_run": num("s / network", format="%.2f"), "floss_share": num("flossing share", format="percent"),
           "median_convergence": num("median convergence step", format="%.0f"),
           "time_to_solution_s": num("s per solved network", format="%.2f"),
           "extra_s_per_success": num("extra s per additional success", format="%.2f")}
st.dataframe(roi, hide_index=True, column_order=list(columns), column_config=columns)

left, right = st.columns(2)
left.plotly_chart(views.fig_roi(roi), key="roi")
right.plotly_chart(views.fig_cost_breakdown(roi), key="cost")
