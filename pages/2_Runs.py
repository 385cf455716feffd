"""Runs: every experiment and run in the store, live progress, cancel, delete, re-run."""
import streamlit as st

import dashboard as ui
from floss_core import views

st.title("Runs")
st.write("Experiments run in a background worker; this page polls the store every two seconds. "
         "A re-run queues the same configuration again (same seeds, so the same numbers on the same machine).")
selected = ui.select_experiment()


@st.fragment(run_every=2)
def live_progress():
    """Progress bars of queued / running experiments; reloads the page when one of them finishes."""
    s = ui.store()
    exps = s.experiments()
    active = exps[exps["status"].isin(["queued", "running"])]
    for row in active.itertuples():
        p = s.progress(row.id)
        eta = f", about {ui.duration(p['eta_seconds'])} left" if p["eta_seconds"] == p["eta_seconds"] else ""
        st.progress(p["fraction"] or 0.0, text=f"#{row.id} {row.name}: {row.status}, "
                                                f"{row.n_finished} of {row.n_runs} runs finished{eta}")
    if len(active) and not s.alive_workers():
        st.warning("No worker is alive: queued experiments wait until one starts.")
        if st.button("Start a worker"):
            ui.start_worker()
    if selected is not None and selected in set(exps["id"]) - set(active["id"]):  # finished: no bar above
        row = exps[exps["id"] == selected].iloc[0]
        st.markdown(f"**Experiment #{selected} {row['name']}**: {row['status']}, "
                    f"{row['n_finished']} of {row['n_runs']} runs finished" +
                    (f". Error: {row['error']}" if row["error"] else ""))
    state = tuple(zip(exps["id"], exps["status"]))
    if st.session_state.setdefault("runs_state", state) != state:
        st.session_state["runs_state"] = state
        st.rerun()


live_progress()
if selected is None:
    ui.need_results(None)

st.subheader("Experiments")
st.dataframe(views.experiments_table(ui.read("experiments")), hide_index=True, column_config={
    "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0),
    "eta_s": st.column_config.NumberColumn("ETA (s)", format="%.0f")})

status = ui.store().experiment(selected)["status"]
rerun, cancel, delete = st.columns(3)
if rerun.button(f"Re-run #{selected} with the same config"):
    st.success(f"Queued experiment #{ui.rerun(selected)}.")
if cancel.button(f"Cancel #{selected}", disabled=status not in ("queued", "running")):
    ui.cancel(selected)
    st.rerun()
if delete.button(f"Delete #{selected}..."):
    st.session_state["confirm_delete"] = selected
if st.session_state.get("confirm_delete") == selected:
    st.warning(f"Delete experiment #{selected} with all its runs, curves and spectra? This cannot be undone.")
    yes, no = st.columns(2)
    if yes.button("Yes, delete it", type="primary"):
        ui.store().delete_experiment(selected)
        st.session_state.pop("confirm_delete")
        st.session_state.pop("experiment", None)
        del st.query_params["experiment"]
        st.rerun()
    if no.button("Keep it"):
        st.session_state.pop("confirm_delete")
        st.rerun()

st.subheader("Runs")
runs = ui.read("runs")
only = st.checkbox(f"Only experiment #{selected}", value=True)
runs = runs[runs["experiment_id"] == selected] if only else runs
f1, f2, f3, f4 = st.columns(4)
chosen = dict(task=f1.multiselect("Task", sorted(runs["task"].dropna().unique())),
              delay=f2.multiselect("Delay", sorted(runs["delay"].dropna().unique())),
              schedule=f3.multiselect("Schedule", views.schedule_order(runs["schedule"])),
              status=f4.multiselect("Status", sorted(runs["status"].unique())))
st.dataframe(views.runs_table(views.filter_runs(runs, **chosen)), hide_index=True)
