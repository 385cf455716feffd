"""Runs: every experiment and run in the store, live progress (per run), cancel, delete, re-run."""
import streamlit as st

import dashboard as ui
from floss_core import views

st.title("Runs")
st.write("Experiments run in a background worker; this page polls the store every two seconds. "
         "A re-run queues the same configuration again (same seeds, so the same numbers on the same machine).")
selected = ui.select_experiment()
if "runs_flash" in st.session_state:   # what the last button did, said after the rerun it caused
    st.success(st.session_state.pop("runs_flash"))
if selected is None:
    ui.need_results(None)

ACTIVE = ("queued", "running")


def _now(runs) -> str:
    """What a running experiment's unfinished runs are doing: ' · now 9 pre flossing, 9 waiting'."""
    states = {k: n for k, n in views.run_states(runs).items() if k not in ("done", "diverged", "cancelled", "failed")}
    return " · now " + ", ".join(f"{n} {k}" for k, n in states.items()) if states else ""


def _remember(exps) -> None:
    st.session_state["runs_state"] = tuple(zip(exps["id"], exps["status"]))


def progress(exps, runs) -> None:
    """Progress bars of queued / running experiments (the store's fraction and ETA, as the table below
    shows them: ``views.progress_text``), or the selected experiment's outcome in words."""
    active = exps[exps["status"].isin(ACTIVE)]
    for row in active.to_dict("records"):
        text = views.progress_text(row)
        if row["status"] == "running":
            text += _now(runs[runs["experiment_id"] == row["id"]])
            if row["cancel_requested"]:
                text += " · cancelling…"
        fraction = row["fraction"]
        st.progress(0.0 if fraction != fraction else float(fraction), text=text)
    if len(active) and not ui.store().alive_workers():
        st.warning("No worker is alive: queued experiments wait until one starts.")
        if st.button("Start a worker"):
            ui.start_worker()
    if selected in set(exps["id"]) - set(active["id"]):  # finished: no bar above
        row = exps[exps["id"] == selected].iloc[0]
        st.markdown(f"**Experiment #{selected} {row['name']}**: {views.runs_summary(row)}" +
                    (f". Error: {row['error']}" if row["error"] else ""))


def actions(exps) -> None:
    """Re-run (selecting the new experiment), cancel, delete with confirmation."""
    status = exps.loc[exps["id"] == selected, "status"].iloc[0]
    rerun, cancel, delete = st.columns(3)
    if rerun.button(f"Re-run #{selected} with the same config"):
        new = ui.rerun(selected)
        # the page shows the new experiment: the sidebar, the address and this session all select it
        st.session_state["experiment"] = new
        st.query_params["experiment"] = str(new)
        st.session_state["runs_flash"] = f"Queued experiment #{new}."
        _remember(ui.read("experiments"))     # known: the refresh need not reload the page once more
        st.rerun()
    if cancel.button(f"Cancel #{selected}", disabled=status not in ACTIVE):
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


def runs_list(runs) -> None:
    """Every run with what it is doing now (queued, training step s of S, flossing, diagnostics, done,
    diverged, cancelled)."""
    st.subheader("Runs")
    only = st.checkbox(f"Only experiment #{selected}", value=True)
    runs = runs[runs["experiment_id"] == selected] if only else runs
    f1, f2, f3, f4 = st.columns(4)
    chosen = dict(task=f1.multiselect("Task", sorted(runs["task"].dropna().unique())),
                  delay=f2.multiselect("Delay", sorted(runs["delay"].dropna().unique())),
                  schedule=f3.multiselect("Schedule", views.schedule_order(runs["schedule"])),
                  status=f4.multiselect("Status", sorted(runs["status"].unique())))
    st.dataframe(views.runs_display(views.runs_table(views.filter_runs(runs, **chosen))), hide_index=True,
                 column_config={"state": st.column_config.TextColumn("state", width="medium", help=views.STATE_HELP)})


@st.fragment(run_every=2)
def live():
    """The whole page below the title, from one read of the store every two seconds, so that the bars,
    the experiments table and the runs table agree; reloads the page when an experiment's status changes."""
    exps, runs = ui.read("experiments"), ui.read("runs")
    progress(exps, runs)
    st.subheader("Experiments")
    st.dataframe(views.experiments_table(exps), hide_index=True, column_config={
        "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0)})
    actions(exps)
    runs_list(runs)
    state = tuple(zip(exps["id"], exps["status"]))
    if st.session_state.setdefault("runs_state", state) != state:
        _remember(exps)
        st.rerun()


live()
