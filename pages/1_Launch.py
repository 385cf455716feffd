"""Launch: design a comparison, see what it costs, queue it for the background worker."""
import streamlit as st

import dashboard as ui
from floss_core import demo
from floss_core.schedules import NAMES

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

left, mid, right = st.columns(3)
with left:
    task = st.selectbox("Task", ["copy", "xor", "parity", "csv"], index=["copy", "xor", "parity", "csv"].index(
        d["task"]), key=key + "task", help="csv: forecast your own series d steps ahead")
    delays = st.text_input("Delays d (comma-separated)", ", ".join(map(str, d["delays"])), key=key + "delays")
    upload = st.file_uploader("CSV series (header row, numeric columns)", type="csv") if task == "csv" else None
    channels = st.number_input("Channels (more than 1: multi-channel task)", 1, value=d["channels"],
                               key=key + "channels") if task != "csv" else None
    order = st.number_input("Parity order (2^order bits)", 1, value=d["order"], key=key + "order") \
        if task == "parity" else None
with mid:
    arch = st.selectbox("Architecture", ["rnn", "gru", "lstm"], key=key + "arch")
    hidden = st.number_input("Hidden units", 1, value=d["hidden"], key=key + "hidden")
    seeds = st.number_input("Seeds (networks per schedule)", 1, value=d["seeds"], key=key + "seeds")
    steps = st.number_input("Training steps", 1, value=d["steps"], key=key + "steps")
    device = st.selectbox("Device", ["auto", "cpu", "cuda"], key=key + "device")
with right:
    schedules = st.multiselect("Schedules to compare", NAMES, default=d["schedules"], key=key + "schedules")
    k = st.number_input("k, exponents flossed", 1, value=d["k"], key=key + "k")
    with st.expander("Schedule parameters"):
        pre_steps = st.number_input("pre: flossing steps before training", 0, value=d["pre_steps"], key=key + "pre")
        inter_steps = st.number_input("inter: flossing steps per phase", 0, value=d["inter_steps"], key=key + "is")
        inter_at = st.text_input("inter: before training steps", ", ".join(map(str, d["inter_at"])), key=key + "ia")
        every = st.number_input("adaptive / joint: every M steps", 1, value=d["every"], key=key + "every")
        threshold = st.number_input("adaptive: floss while max |λ| exceeds", 0.0, value=d["threshold"],
                                    key=key + "thr")
        adaptive_k = st.number_input("adaptive: exponents measured", 1, value=d["adaptive_k"], key=key + "ak")
        weight = st.number_input("joint: weight of the flossing term", 0.0, value=d["weight"], key=key + "w")
        designs = ["lab", "reference"]
        floss_design = st.selectbox("Flossing design", designs, index=designs.index(d["floss_design"]),
                                    key=key + "design",
                                    help="lab: truncated state gradient, clipping and a stopping rule, chosen by "
                                         "bench/floss_study.py; reference: the paper's code exactly")
name = st.text_input("Name", f"{task} {size}: {' vs '.join(schedules)}", key=key + "name")

spec = None
try:
    if task == "csv" and upload is None:
        raise ValueError("upload a CSV series for task 'csv'")
    if not schedules:
        raise ValueError(f"pick at least one schedule to compare: {', '.join(NAMES)}")
    spec = demo.launch_spec(
        size, task=task, delays=ui.ints(delays, "delays", required=True), channels=channels, order=order,
        csv=ui.save_upload(upload) if upload else None, arch=arch, hidden=hidden, seeds=seeds, steps=steps,
        device=device, schedules=schedules, k=k, pre_steps=pre_steps, inter_steps=inter_steps,
        inter_at=ui.ints(inter_at, "inter steps"), every=every, threshold=threshold, adaptive_k=adaptive_k,
        weight=weight, floss_design=floss_design, name=name)
except ValueError as e:
    st.error(str(e))

if spec is not None:
    st.write(ui.work_summary(spec))
    verdict = ui.forecast(spec)
    if verdict:
        st.info(f"Trainability forecast (untrained network): {verdict}")
    seconds = ui.estimate(spec, measure=st.button("Estimate the time (times a few real steps here)"))
    if seconds is not None:
        st.metric("Estimated time", ui.duration(seconds), help="measured on this machine from a few real steps")

if st.button("Launch", type="primary", disabled=spec is None):
    experiment_id = ui.launch(spec)
    st.success(f"Queued experiment #{experiment_id}.")
    st.page_link(ui.PAGES["Runs"], label=f"Watch #{experiment_id} on the Runs page",
                 query_params={"experiment": experiment_id})
