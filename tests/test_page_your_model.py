"""The "Your model" page under streamlit's AppTest: upload a real state_dict, see the spectrum and the
forecast, floss it and get the flossed weights back; a mismatched checkpoint gets one st.error."""
import io
import os
import sys
import time
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the pages import dashboard.py from the repository root

from floss_core import adapters  # noqa: E402
from floss_core.adapters import job as adapters_job  # noqa: E402

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


def _declare(at, *, arch="gru", hidden=4, k=3):
    at.selectbox(key="arch").set_value(arch)
    at.number_input(key="hidden").set_value(hidden)
    at.number_input(key="k").set_value(k)


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
    verdict = (at.warning or at.success)[0].value
    assert "your task needs 60" in verdict
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
