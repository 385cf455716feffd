"""The "Your model" page under streamlit's AppTest: upload a real state_dict, see the spectrum and the
forecast, floss it and get the flossed weights back; a mismatched checkpoint gets one st.error. With a sample of
the model's inputs the reports run on it and say so; without one the page warns that random bits drive it,
unless the user says its inputs are bits."""
import io
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the pages import dashboard.py from the repository root

from floss_core import adapters  # noqa: E402
from floss_core.adapters import job as adapters_job  # noqa: E402
from floss_core.adapters.inputs import load_inputs  # noqa: E402

APP = str(ROOT / "app.py")


def _state_dict_bytes(module) -> bytes:
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return buf.getvalue()


def _page(monkeypatch, tmp_path) -> AppTest:
    monkeypatch.setenv("FLOSS_NO_WORKER", "1")
    monkeypatch.setenv("FLOSS_STORE", str(tmp_path / "floss.db"))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("pages/8_Your_model.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _declare(at, *, arch="gru", hidden=4, k=3, input_size=1):
    at.selectbox(key="arch").set_value(arch)
    at.number_input(key="hidden").set_value(hidden)
    at.number_input(key="k").set_value(k)
    at.number_input(key="input_size").set_value(input_size)


def _npy(a) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(a))
    return buf.getvalue()


BITS_WARNING = "No sample of your inputs: the model is driven by random bits (0 or 1) on every input channel"


def _verdict(at) -> str:
    return next(m.value for m in [*at.warning, *at.success] if "your task needs" in m.value)


@pytest.mark.slow
def test_upload_report_floss_download(monkeypatch, tmp_path):
    torch.manual_seed(0)
    gru = torch.nn.GRU(1, 4)
    at = _page(monkeypatch, tmp_path)
    assert at.info and "Upload a checkpoint" in at.info[0].value
    _declare(at)
    at.file_uploader[0].set_value(("my gru.pt", _state_dict_bytes(gru), "application/octet-stream"))
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    want = adapters.checkpoint_report(gru, delay=60, k=3)
    assert metrics["λ_1 (per step)"] == f"{want['exponents'][0]:+.4f}"    # the page shows the library's numbers
    assert len(at.get("plotly_chart")) == 3
    assert "your task needs 60" in _verdict(at)
    # no sample: the page says that random bits drive the model, and that this is right only for bit inputs
    assert [w.value for w in at.warning if w.value.startswith(BITS_WARNING)]
    assert any(c.value.startswith("Measured on random bits on every input channel.") for c in at.caption)
    at.number_input(key="floss_steps").set_value(3)
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    # flossing runs in a separate process; the page shows its progress until it is done
    assert "floss_job" in at.session_state and at.session_state["floss_job"]["proc"].pid != os.getpid()
    _until_flossed(at)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert len(at.get("plotly_chart")) == 4
    assert len(at.get("download_button")) == 1
    # what the button serves: a weights-only state_dict of the same architecture, flossed
    flossed = adapters.load_checkpoint(at.session_state["flossed"]["weights"], arch="gru", hidden=4, input_size=1)
    assert not torch.equal(flossed.weight_hh_l0, gru.weight_hh_l0)
    assert at.session_state["flossed"]["out"]["steps"] == 3


def _until_flossed(at, timeout=120.0):
    t0 = time.monotonic()
    while "floss_job" in at.session_state:
        assert time.monotonic() - t0 < timeout, "the flossing process did not finish"
        time.sleep(0.5)
        at.run()


def test_bad_flossing_request_gets_an_error_and_starts_nothing(monkeypatch, tmp_path):
    at = _page(monkeypatch, tmp_path)
    _declare(at)
    at.file_uploader[0].set_value(("g.pt", _state_dict_bytes(torch.nn.GRU(1, 4)), "application/octet-stream"))
    at.run()
    def refuse(steps, lr):  # the page's own widget limits let no bad value through, so refuse a good one
        raise ValueError("lr must be a positive number, got 0")
    monkeypatch.setattr(adapters_job, "_check_floss", refuse)   # the check start_floss_job calls
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["lr must be a positive number, got 0"]
    assert "floss_job" not in at.session_state


def test_mismatched_checkpoint_gets_one_error(monkeypatch, tmp_path):
    at = _page(monkeypatch, tmp_path)
    _declare(at, arch="lstm", hidden=4)
    at.file_uploader[0].set_value(("gru.pt", _state_dict_bytes(torch.nn.GRU(1, 4)), "application/octet-stream"))
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and "it looks like a gru with hidden=4" in at.error[0].value
    assert not at.get("plotly_chart")
    at.file_uploader[0].set_value(("junk.pt", b"junk", "application/octet-stream"))
    at.run()
    assert len(at.error) == 1 and "could not read the checkpoint" in at.error[0].value


def test_a_sample_of_the_models_inputs_drives_the_report(monkeypatch, tmp_path):
    torch.manual_seed(0)
    gru = torch.nn.GRU(2, 4)
    x = 5 * torch.randn(160, 2)                 # one sequence of real-valued inputs, not bits
    at = _page(monkeypatch, tmp_path)
    _declare(at, input_size=2)
    at.file_uploader[0].set_value(("g.pt", _state_dict_bytes(gru), "application/octet-stream"))
    at.run()
    at.checkbox(key="inputs_are_bits").check().run()     # the user says the inputs are bits: no warning
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert not [w for w in at.warning if w.value.startswith(BITS_WARNING)]
    at.file_uploader(key="sample").set_value(("my inputs.npy", _npy(x.numpy()), "application/octet-stream"))
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    want = adapters.checkpoint_report(gru, delay=60, k=3, inputs=load_inputs(_npy(x.numpy()), "my_inputs.npy", gru))
    bits = adapters.checkpoint_report(gru, delay=60, k=3)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["λ_1 (per step)"] == f"{want['exponents'][0]:+.4f}" != f"{bits['exponents'][0]:+.4f}"
    assert any(c.value.startswith("Measured on your sample (my_inputs.npy): 1 sequence × 160 steps × 2 channels; "
                                  "the first 100 steps a transient.") for c in at.caption)
    assert not [w for w in at.warning if w.value.startswith(BITS_WARNING)]
    # too short for flossing, which needs two halves, so the Floss button says so and starts nothing
    at.button[0].click().run()
    assert [e.value for e in at.error] == [
        "the sample my_inputs.npy has 160 steps per sequence; flossing on it needs at least 300: the first half for "
        "the 55-step flossing windows, the second half held out for measuring before and after (a 100-step "
        "transient, then at least 50): upload longer sequences"]
    assert "floss_job" not in at.session_state
    # a sample that does not fit the model: one st.error, no report
    at.file_uploader(key="sample").set_value(("x.npy", _npy(np.zeros((2, 160))), "application/octet-stream"))
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "the sample x.npy has its 2 channels on axis 0 of shape (2, 160), not last; the module takes (T, C) with "
        "channels last: save its transpose, shape (160, 2)"]
    assert not at.get("plotly_chart") and not at.metric


@pytest.mark.slow
def test_flossing_on_a_sample_measures_on_its_held_out_half(monkeypatch, tmp_path):
    torch.manual_seed(1)
    gru = torch.nn.GRU(2, 4, batch_first=True)
    x = 3 * torch.randn(2, 300, 2)              # (B, T, C): the module is batch_first
    at = _page(monkeypatch, tmp_path)
    _declare(at, input_size=2)
    at.checkbox(key="batch_first").check()
    at.file_uploader[0].set_value(("g.pt", _state_dict_bytes(gru), "application/octet-stream"))
    at.run()
    at.file_uploader(key="sample").set_value(("x.pt", _torch_saved(x), "application/octet-stream"))
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("your sample (x.pt): 2 sequences × 300 steps × 2 channels" in c.value for c in at.caption)
    at.number_input(key="floss_steps").set_value(2)
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    _until_flossed(at)
    assert not at.exception and not at.error, [e.value for e in at.error]
    out = at.session_state["flossed"]["out"]
    assert out["split"] == {"floss": [0, 150], "measure": [150, 300]} and out["steps"] == 2
    assert any(c.value.startswith("Inputs: your sample (x.pt): 2 sequences × 300 steps × 2 channels: flossing "
                                  "windows from steps 1–150") and "held out" in c.value for c in at.caption)


def _torch_saved(tensor) -> bytes:
    buf = io.BytesIO()
    torch.save(tensor, buf)
    return buf.getvalue()
