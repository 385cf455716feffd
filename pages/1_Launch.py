"""Launch: design a comparison, see what it costs, queue it for the background worker."""
import contextlib

import streamlit as st

import dashboard as ui
from floss_core import demo, options, tasks

st.title("Launch a comparison")
st.write("Every schedule trains the same seeds (same initial weights, same data), so the schedules differ only "
         "in flossing. Several delays at once give a success-vs-delay sweep.")
ui.sidebar()

sizes = list(demo.SIZES)
size = st.radio("Size", sizes, index=sizes.index(st.query_params.get("size", "quick")) if
                st.query_params.get("size") in sizes else 0, horizontal=True,
                help="quick: about a minute per schedule on a CPU; paper: the paper's protocol (hours); "
                     "tiny: a smoke test that finishes in seconds")
d = demo.launch_defaults(size)
key = size + ":"  # a new size resets every widget to its defaults
# every widget below comes from the option table (floss_core/options.py: label, choices, minimum, key,
# section): a new option with a page section appears here without an edit to this page
v: dict = {}      # the widgets' values, by make_spec option name

left, mid, right = st.columns(3)
with left:
    for o in options.on_page("task"):          # the task first, then only the task fields it reads
        section, _, fld = (o.field or "").partition(".")
        if o.name == "task" or section != "task" or tasks.uses(v["task"], fld):
            v[o.name] = ui.option_input(o.name, d, key)
    series = tasks.uses(v["task"], "csv_path")  # the task reads a user's file
    upload = st.file_uploader("CSV series (header row, numeric columns)", type="csv") if series else None
    csv = upload_error = None
    if upload is not None:
        try:
            csv = ui.save_upload(upload)
            info = ui.series_info(csv)
        except ValueError as e:   # shown with the other refusals below; nothing is queued
            upload_error = str(e)
        else:
            if info.index:
                st.caption(f"Column '{info.index}' ({info.index_kind}) is the file's index: it orders the rows "
                           "and is not forecast.")
            for line in info.not_numeric.values():
                st.warning(f"{line}: the column is not offered.")
            # the file's numeric columns; the key follows them, so another file starts from all of its own
            v["columns"] = st.multiselect(options.OPTIONS["columns"].label, list(info.columns),
                                          default=list(info.columns), key=key + "columns:" + ",".join(info.columns))
            gaps = sum(info.missing[c] for c in v["columns"])
            if gaps:
                st.caption(f"The chosen columns have {gaps} missing value{'s' if gaps != 1 else ''} (blank or NA); "
                           "choose below what to do with them, or the file is refused.")
    if series:   # the series options: gaps, the seasonal baseline, the success margin
        for o in options.on_page("series"):
            v[o.name] = ui.option_input(o.name, d, key)
with mid:
    for o in options.on_page("network"):
        v[o.name] = ui.option_input(o.name, d, key)
with right:
    for o in options.on_page("flossing"):
        v[o.name] = ui.option_input(o.name, d, key)
    with st.expander("Schedule parameters"):
        for o in options.on_page("details"):
            v[o.name] = ui.option_input(o.name, d, key)
# the name follows the form (task, size, file, what differs from the size's defaults, schedules) until typed
name = ui.name_input(ui.comparison_name(size, v, d, csv))

# every refusal is shown and disables Launch: a number below its minimum (the field's own value, never an older
# one: the widgets have no min_value), then the first problem of the rest; nothing is summarised or queued
errors = ui.out_of_range(v)
spec = None
try:
    if series and upload is None:
        raise ValueError(f"upload a CSV series for task {v['task']!r}")
    if upload_error:
        raise ValueError(upload_error)
    if not v["schedules"]:
        raise ValueError(f"pick at least one schedule to compare: {', '.join(options.SCHEDULES)}")
    v["delays"] = ui.ints(v["delays"], "delays", required=True)
    v["inter_at"] = ui.ints(v["inter_at"], "inter steps")
    ui.check_delays(size, v["delays"])     # in the page's words: the page has no sequence-length field
    if not errors:
        spec = demo.launch_spec(size, **v, csv=csv, name=name)
except ValueError as e:
    errors.append(str(e))
for line in errors:
    st.error(line)


def show_estimate(got: dict) -> None:
    """The estimated time and what it assumes; while this machine is not measured yet, what is happening."""
    e = got["estimate"]
    if e is None and got["worker"]:
        st.info(f"Measuring this machine... the background worker times the training loop's steps once, "
                f"while it has no experiment to run ({len(got['missing'])} parts left for this architecture, "
                "seconds each); the estimate appears here by itself.")
    elif e is None:
        st.info("No background worker runs here (FLOSS_NO_WORKER=1), so this machine has not been measured.")
        st.button("Measure this machine now (once; under a minute for the default network)",
                  on_click=st.session_state.update, kwargs={"measure_here": True})
    else:
        procs = f"{e.processes} worker process{'es' if e.processes != 1 else ''}"
        st.metric("Estimated time, at most" if e.solved_stop else "Estimated time", ui.duration(e.seconds),
                  help="this machine's measured cost of each training, flossing, evaluation and diagnostics "
                       "step, times how many of each the comparison runs")
        st.caption(f"Assumes {got['workers']} worker process{'es' if got['workers'] != 1 else ''} "
                   f"(FLOSS_WORKERS, else one per core): {e.jobs} ensemble{'s' if e.jobs != 1 else ''} on "
                   f"{procs}" + (f", {ui.duration(e.start_seconds)} to start them" if e.start_seconds else "")
                   + (". Flossing counted at its full budget: the stopping rule or an adaptive schedule may "
                      "end it sooner." if e.bound else ".")
                   + (" Training counted at its full budget too: each network stops when it solves (stop when "
                      "solved), and when that happens is not known in advance, so the run usually ends sooner."
                      if e.solved_stop else ""))


@st.fragment(run_every=2)
def poll_estimate(spec) -> None:
    """Look again every 2 s while the worker measures; redraw the page once the estimate is there."""
    got = ui.estimate(spec)
    if got["estimate"] is not None:
        st.rerun()
    show_estimate(got)


if spec is not None:
    st.write(ui.work_summary(spec))
    verdict = ui.forecast(spec)
    if verdict:
        st.info(f"Trainability forecast (untrained network): {verdict}")
    measure_here = st.session_state.pop("measure_here", False)
    with st.spinner("Measuring this machine (once)...", show_time=True) if measure_here else contextlib.nullcontext():
        got = ui.estimate(spec, measure_here=measure_here)
    if got["estimate"] is None and got["worker"]:
        poll_estimate(spec)
    else:
        show_estimate(got)

if st.button("Launch", type="primary", disabled=spec is None):
    experiment_id = ui.launch(spec)
    st.success(f"Queued experiment #{experiment_id}.")
    st.page_link(ui.PAGES["Runs"], label=f"Watch #{experiment_id} on the Runs page",
                 query_params={"experiment": experiment_id})
