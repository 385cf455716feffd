"""Your model: upload a state_dict of your own nn.RNN / GRU / LSTM (or Cell) and a sample of its inputs, see its
spectrum, κ₂ and trainability forecast, floss it, download the flossed weights. All the math is in
floss_core.adapters; random bits drive the model only where the user says its inputs are bits, or with a warning."""
import math
import shutil
from pathlib import PurePath

import plotly.graph_objects as go
import streamlit as st

import dashboard as ui
from floss_core import adapters
from floss_core.views.figures import log_axis   # ticks in powers of ten, a decade or a few apart

st.title("Your model")
st.write("Upload the `state_dict` of your own PyTorch recurrent module (saved with "
         "`torch.save(module.state_dict(), 'model.pt')`), declare its architecture, and see its Lyapunov spectrum, "
         "the condition number κ₂ of its long-term Jacobian and whether gradients can bridge your task's delay. "
         "Then floss it and download the flossed weights. It is driven by a sample of your own inputs; random bits "
         "stand in only where your model's inputs are bits.")
ui.sidebar()

upload = st.file_uploader("state_dict (.pt)", type=["pt", "pth", "bin"],
                          help=f"loaded with torch.load(weights_only=True): no code in the file runs; "
                               f"at most {adapters.MAX_CHECKPOINT_BYTES // 1_000_000} MB")
left, mid, right = st.columns(3)
arch = left.selectbox("Architecture", list(adapters.TORCH_MODULES), index=2, key="arch",
                      help="rnn, gru, lstm: torch.nn.RNN / GRU / LSTM; *_cell: torch.nn.RNNCell / GRUCell / LSTMCell")
hidden = mid.number_input("hidden_size", 1, 4096, 32, key="hidden")
input_size = right.number_input("input_size", 1, 4096, 1, key="input_size")
num_layers = left.number_input("num_layers", 1, 16, 1, disabled=arch.endswith("_cell"), key="num_layers")
bias = mid.checkbox("bias", True)
batch_first = mid.checkbox("batch_first", False, disabled=arch.endswith("_cell"), key="batch_first",
                           help="your module's layout: a 3-D input sample is then (B, T, C), else (T, B, C)")
nonlinearity = right.selectbox("nonlinearity", ["tanh", "relu"], disabled=not arch.startswith("rnn"))
prefix = left.text_input("Key prefix", "", help="for a submodule of a bigger model's state_dict, e.g. 'lstm.'")
delay = mid.number_input("Your task's delay (steps)", 1, 100_000, 60, key="delay")
k = right.number_input("Exponents k", 1, 4096, 8, key="k")

if upload is None:
    st.info("Upload a checkpoint to begin. Any torch.nn.RNN, GRU, LSTM (any number of layers, batch_first either "
            "way, bias on or off) or their Cell variants; not bidirectional, no proj_size.")
    st.stop()

settings = dict(arch=arch, hidden=int(hidden), input_size=int(input_size), bias=bias, prefix=prefix,
                num_layers=1 if arch.endswith("_cell") else int(num_layers),
                **({"nonlinearity": nonlinearity} if arch.startswith("rnn") else {}),
                **({"batch_first": True} if batch_first and not arch.endswith("_cell") else {}))
data = upload.getvalue()

st.subheader("Inputs")
sample = st.file_uploader(
    "A sample of your model's inputs (.pt / .npy / .csv)", type=["pt", "pth", "npy", "csv"], key="sample",
    help=f"real inputs of your model, at most {adapters.MAX_INPUT_BYTES // 1_000_000} MB, C = input_size channels: a tensor "
         "(torch.save, loaded with weights_only=True) or an array (numpy.save, no pickles) of shape (T, C) for one "
         "sequence, (T, B, C) for several, or (B, T, C) with batch_first; a CSV is one sequence, rows = time steps, "
         f"columns = channels, a header row allowed. At least {adapters.REPORT_MIN_STEPS} steps for the report and "
         f"{adapters.FLOSSING_MIN_STEPS} for flossing, whose second half is held out to measure before and after.")
if sample is None and not st.checkbox("My model's inputs are bits (0 or 1)", key="inputs_are_bits",
                                      help="then random bits are its right inputs and no sample is needed"):
    st.warning("No sample of your inputs: the model is driven by random bits (0 or 1) on every input channel, "
               "which is right only if its inputs are bits. On other inputs λ_1 and the verdict can differ (a "
               "trained LSTM: λ_1 = −0.076 on bits, −0.223 on its real inputs). Upload a sample above, or tick the "
               "box if your model's inputs are bits.")
sample_file = None if sample is None else (sample.getvalue(), sample.name)


@st.cache_data(show_spinner="Measuring the spectrum, κ₂ and the gradient reach...", max_entries=16)
def report(data: bytes, settings: dict, delay: int, k: int, sample_file: tuple | None) -> dict:
    module = adapters.load_checkpoint(data, **settings)
    inputs = None if sample_file is None else adapters.load_inputs(*sample_file, module)
    return adapters.checkpoint_report(module, delay=delay, k=min(k, adapters.module_step(module).dim), inputs=inputs)


try:
    rep = report(data, settings, int(delay), int(k), sample_file)
except ValueError as e:
    st.error(str(e))
    st.stop()

fc = rep["forecast"]
c1, c2, c3, c4 = st.columns(4)
c1.metric("λ_1 (per step)", f"{fc['lambda1']:+.4f}")
c2.metric("Gradient reach (forecast)", "∞" if math.isinf(fc["horizon"]) else f"{fc['horizon']:.0f} steps",
          help=f"log(tol)/λ_1 with tol = {fc['tol']:g}: steps back before a gradient shrinks below tol")
c3.metric("Gradient reach (measured)", "beyond the window" if math.isinf(rep["grad_reach"])
          else f"{rep['grad_reach']:.0f} steps", help="where ‖∂L/∂h_{T−τ}‖ fell below tol × its value at τ = 0")
c4.metric("log10 κ₂", f"{rep['log10_kappa'][-1]:.1f}", help=f"σ_1/σ_D of ∂h_T/∂h_0 at T = {rep['horizons'][-1]}")
(st.warning if fc["flossing_recommended"] else st.success)(fc["verdict"].capitalize())
st.caption(f"Measured on {rep['inputs']}. State dimension D = {rep['dim']} (all layers' hidden and cell states), "
           f"{rep['params']:,} parameters.")

left, mid, right = st.columns(3)
fig = go.Figure(go.Scatter(x=list(range(1, len(rep["exponents"]) + 1)), y=rep["exponents"], mode="lines+markers"))
fig.update_layout(title="Lyapunov spectrum", xaxis_title="index i", yaxis_title="λ_i (per step)")
left.plotly_chart(fig, key="spectrum")
fig = go.Figure(go.Scatter(x=rep["horizons"], y=rep["log10_kappa"], mode="lines+markers"))
fig.update_layout(title="Condition number of ∂h_t/∂h_0", xaxis_title="horizon t", yaxis_title="log10 κ₂",
                  xaxis=log_axis(rep["horizons"]))
mid.plotly_chart(fig, key="kappa")
fig = go.Figure(go.Scatter(x=list(range(len(rep["grad_norms"]))), y=rep["grad_norms"], mode="lines"))
fig.update_layout(title="Gradient vs horizon", xaxis_title="steps back τ", yaxis_title="‖∂L/∂h_{T−τ}‖",
                  yaxis=log_axis(rep["grad_norms"]))
right.plotly_chart(fig, key="gradient")

st.subheader("Floss it")
st.write("A flossing phase as in the paper: its own Adam on all of the module's parameters, a fresh 55-step window "
         "per step (16 transient), loss = mean of λ_i² over the first k exponents. "
         + ("The windows come from the first half of every sequence of your sample; before and after are measured "
            "on the second half, which flossing does not see." if sample else
            "The windows are random bits; before and after are measured on another draw of them."))
a, b, c = st.columns(3)
floss_k = a.number_input("Flossed exponents k", 1, rep["dim"], min(int(k), rep["dim"]))
floss_steps = b.number_input("Flossing steps", 1, 5000, 100, key="floss_steps")
lr = c.number_input("Learning rate", 1e-5, 1.0, 1e-2, format="%.4f")
job = (*(f and getattr(f, "file_id", f.name) for f in (upload, sample)), str(settings), floss_k, floss_steps, lr)
running = st.session_state.get("floss_job")
if running and running["job"] == job and st.button("Stop flossing"):
    running["proc"].terminate()
    running["proc"].wait(5)
if st.button("Floss", type="primary", disabled=bool(running and running["job"] == job and running["proc"].poll() is None)):
    try:  # checked here, then flossed in a separate process: the page stays live and shows progress
        folder, proc = adapters.start_floss_job(data, settings, k=int(floss_k), steps=int(floss_steps), lr=float(lr),
                                                inputs=sample_file)
    except ValueError as e:
        st.error(str(e))
        st.stop()
    st.session_state["floss_job"] = {"job": job, "folder": folder, "proc": proc, "steps": int(floss_steps)}
    st.session_state.pop("flossed", None)
    running = st.session_state["floss_job"]

if running and running["job"] == job:
    @st.fragment(run_every=1.0)
    def watch():
        s = adapters.floss_job_status(running["folder"], running["proc"])
        if s["state"] == "running":
            loss = "" if s["loss"] is None else f": loss {s['loss']:.4f}"
            st.progress(s["step"] / running["steps"], text=f"Flossing... step {s['step']} of {running['steps']}{loss}")
            return
        del st.session_state["floss_job"]
        shutil.rmtree(running["folder"], ignore_errors=True)
        st.session_state["flossed"] = {"job": job, **s}
        st.rerun()
    watch()

done = st.session_state.get("flossed")
if done and done["job"] == job and done["state"] == "failed":
    st.error(f"Flossing failed: {done['error']}")
elif done and done["job"] == job:
    out = done["out"]
    if out["diverged_step"] is not None:
        st.error(f"The flossing loss became non-finite at step {out['diverged_step']}; lower the learning rate.")
    elif out.get("stopped") == "target":
        st.info(f"Flossing reached its target after {out['steps']} of {int(floss_steps)} steps (the mean of its last "
                f"windows' exponents came within {adapters.STOP_TOL} of 0) and stopped there.")
    fig = go.Figure([go.Scatter(x=list(range(1, len(out[s]) + 1)), y=out[s], mode="lines+markers", name=s)
                     for s in ("before", "after")])
    fig.update_layout(title="First k exponents on a long window, before and after flossing", xaxis_title="index i",
                      yaxis_title="λ_i (per step)")
    st.plotly_chart(fig, key="flossed")
    st.write(f"λ_1: {out['before'][0]:+.4f} → {out['after'][0]:+.4f}. After flossing: "
             + adapters.forecast(out["after"], int(delay))["verdict"] + ".")
    st.caption(f"Inputs: {out['inputs']}.")
    st.download_button("Download the flossed weights", done["weights"],
                       file_name=f"{PurePath(ui.safe_filename(upload.name)).stem}_flossed.pt",
                       mime="application/octet-stream")
