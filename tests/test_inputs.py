"""A sample of the user's own inputs (issue 17, item 5): ``adapters.inputs.load_inputs`` reads each file type
to exactly the tensor given, in the module's layout, and refuses a bad one whole in one line naming the
problem and the fix; the Your model reports and the flossing job run on it, flossing on one half of every
sequence and measuring on the other."""
import io
import os
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from floss_core import adapters as A
from floss_core.adapters import reports
from floss_core.adapters.inputs import MAX_INPUT_BYTES, Sample, as_sample, load_inputs


def _pt(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _npy(a) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _csv(a, header=None) -> bytes:
    buf = io.StringIO()
    np.savetxt(buf, np.asarray(a), delimiter=",", fmt="%.9g", header=header or "", comments="")
    return buf.getvalue().encode()


def _refusal(data, name, module, **kw) -> str:
    with pytest.raises(ValueError) as e:
        load_inputs(data, name, module, **kw)
    text = str(e.value)
    assert "\n" not in text, text
    return text


# ------------------------------------------------------------------------------------ reading, layouts
@pytest.mark.parametrize("name, encode", [("x.pt", _pt), ("x.pth", _pt), ("x.PT", _pt),
                                          ("x.npy", lambda t: _npy(t.numpy()))])
def test_each_binary_type_round_trips_to_exactly_the_tensor_given(name, encode):
    torch.manual_seed(0)
    x = torch.randn(30, 2, 3)
    s = load_inputs(encode(x), name, nn.GRU(3, 4))
    assert isinstance(s, Sample) and s.tensor.dtype == torch.float32 and torch.equal(s.tensor, x)
    assert (s.sequences, s.steps, s.channels) == (2, 30, 3)
    assert s.describe() == f"your sample ({name.lower()}): 2 sequences × 30 steps × 3 channels"


def test_a_csv_is_one_sequence_with_or_without_a_header():
    torch.manual_seed(0)
    x = torch.randn(25, 3)
    for data in (_csv(x.numpy()), _csv(x.numpy(), header="a,b,c")):
        s = load_inputs(data, "series.csv", nn.LSTM(3, 4))
        assert s.tensor.shape == (25, 1, 3) and torch.equal(s.tensor[:, 0], x)
        assert s.describe() == "your sample (series.csv): 1 sequence × 25 steps × 3 channels"


def test_a_pt_dict_or_list_of_exactly_one_tensor_counts_as_that_tensor():
    x = torch.randn(20, 1, 2)
    for obj in ({"inputs": x}, [x], (x,)):
        assert torch.equal(load_inputs(_pt(obj), "x.pt", nn.RNN(2, 3)).tensor, x)


def test_the_module_layout_decides_how_three_axes_are_read():
    x = torch.randn(7, 40, 2)            # (B, T, C) for a batch_first module
    s = load_inputs(_pt(x), "x.pt", nn.GRU(2, 3, batch_first=True))
    assert (s.sequences, s.steps) == (7, 40) and torch.equal(s.tensor, x)
    s = load_inputs(_pt(x), "x.pt", nn.GRU(2, 3))             # (T, B, C): 7 steps of 40 sequences
    assert (s.sequences, s.steps) == (40, 7)
    one = torch.randn(40, 2)                                   # (T, C): one sequence, batch axis added
    assert load_inputs(_pt(one), "x.pt", nn.GRU(2, 3, batch_first=True)).tensor.shape == (1, 40, 2)
    assert load_inputs(_pt(one), "x.pt", nn.GRUCell(2, 3)).tensor.shape == (40, 1, 2)
    bf = load_inputs(_pt(x), "x.pt", nn.GRU(2, 3, batch_first=True))
    assert torch.equal(bf.part(2, 5, sequences=slice(1, 3)), x[1:3, 2:5])     # steps 2..4 of sequences 1, 2
    assert torch.equal(s.part(2, 5, sequences=slice(1, 3)), x[2:5, 1:3])


def test_integers_and_bools_are_numbers_in_the_modules_dtype():
    bits = torch.randint(0, 2, (30, 1, 2))
    s = load_inputs(_pt(bits), "bits.pt", nn.RNN(2, 3).double())
    assert s.tensor.dtype == torch.float64 and torch.equal(s.tensor, bits.double())
    assert torch.equal(load_inputs(_npy(bits.numpy().astype(bool)), "b.npy", nn.RNN(2, 3)).tensor, bits.float())
    x = torch.randn(30, 1, 2)        # a half-precision module is measured in float32: its sample keeps float32
    assert torch.equal(load_inputs(_pt(x), "x.pt", nn.RNN(2, 3).half()).tensor, x)


def test_a_file_name_is_sanitised_and_keeps_its_type():
    s = load_inputs(_pt(torch.zeros(5, 1)), "../../etc/my inputs.NPY.pt", nn.RNN(1, 2))
    assert s.name == "my_inputs.NPY.pt"
    assert load_inputs(_npy(np.zeros((5, 1))), "x" * 300 + ".npy", nn.RNN(1, 2)).name.endswith(".npy")


# ------------------------------------------------------------------------------------ refusals
def test_wrong_channels_axes_and_transposed_samples_are_refused_with_the_fix():
    gru = nn.GRU(3, 4)
    assert _refusal(_npy(np.zeros((50, 4))), "x.npy", gru) == (
        "the sample x.npy has 4 channels (the last axis of shape (50, 4)), the module expects input_size=3; "
        "an index or time column? keep only the input channels")
    assert _refusal(_npy(np.zeros((50, 7))), "x.npy", gru) == (
        "the sample x.npy has 7 channels (the last axis of shape (50, 7)), the module expects input_size=3")
    assert _refusal(_npy(np.zeros((3, 50))), "x.npy", gru) == (
        "the sample x.npy has its 3 channels on axis 0 of shape (3, 50), not last; the module takes (T, C) with "
        "channels last: save its transpose, shape (50, 3)")
    assert _refusal(_pt(torch.zeros(50, 3, 2)), "x.pt", gru) == (
        "the sample x.pt has its 3 channels on axis 1 of shape (50, 3, 2), not last; the module takes (T, B, C) "
        "with channels last: move them last (x.movedim(1, -1) in torch, np.moveaxis(x, 1, -1) in NumPy)")
    assert "(B, T, C) with channels last" in _refusal(_pt(torch.zeros(3, 5, 6)), "x.pt", nn.GRU(3, 4, batch_first=True))
    assert _refusal(_npy(np.zeros(50)), "x.npy", nn.GRU(1, 4)) == (
        "the sample x.npy has shape (50,) (1 axis); it must be (T, C) for one sequence or (T, B, C) for several, "
        "with C = input_size = 1; for one channel save it as shape (50, 1)")
    assert _refusal(_pt(torch.zeros(2, 3, 4, 3)), "x.pt", gru).startswith(
        "the sample x.pt has shape (2, 3, 4, 3) (4 axes); it must be (T, C)")


def test_values_that_are_not_finite_or_not_numbers_are_refused_with_their_place():
    x = np.zeros((30, 2, 3), dtype=np.float32)
    x[12, 1, 2] = np.nan
    assert _refusal(_npy(x), "x.npy", nn.GRU(3, 4)) == (
        "the sample x.npy holds missing, NaN or infinite values (the first at step 13 of sequence 2, channel 3); "
        "fill or cut out the gaps before uploading")
    assert "step 2 of sequence 1, channel 2" in _refusal(b"a,b\n1,2\n3,\n5,6\n", "gap.csv", nn.GRU(2, 4))
    assert "step 1 of sequence 1, channel 1" in _refusal(_pt(torch.full((5, 1), float("inf"))), "x.pt", nn.GRU(1, 4))
    assert _refusal(b"time,a,b\n2024-01-01,1,2\n2024-01-02,3,4\n", "dated.csv", nn.GRU(2, 4)) == (
        "the sample dated.csv is not all numbers: column 1 ('time') holds '2024-01-01' at row 2; keep only the "
        "input channels, one number per cell (drop a time or index column)")
    assert "holds <U1 values, not real numbers" in _refusal(_npy(np.array([["a"]])), "s.npy", nn.GRU(1, 4))
    assert "holds torch.complex64 values" in _refusal(_pt(torch.zeros(5, 1, dtype=torch.complex64)), "c.pt",
                                                      nn.GRU(1, 4))


def test_too_few_steps_names_the_minimum_and_hints_at_a_swapped_layout():
    assert _refusal(_pt(torch.zeros(5, 1, 2)), "short.pt", nn.GRU(2, 4), min_steps=20) == (
        "the sample short.pt has 5 steps per sequence; this needs at least 20: upload longer sequences")
    assert _refusal(_pt(torch.zeros(5, 30, 2)), "bt.pt", nn.GRU(2, 4), min_steps=20).endswith(
        "upload longer sequences; is it (B, T, C)? then declare the module batch_first")


def test_the_size_limit_and_empty_or_unknown_files():
    big = _npy(np.zeros((MAX_INPUT_BYTES // 8 + 10, 1)))
    assert _refusal(big, "big.npy", nn.GRU(1, 4)).startswith(f"the sample big.npy is too big: {len(big):,} bytes, the "
                                                             f"limit is {MAX_INPUT_BYTES:,} (20 MB)")
    assert _refusal(b"1\n2\n", "x.csv", nn.GRU(1, 4), max_bytes=3).startswith("the sample x.csv is too big")
    assert _refusal(b"", "x.npy", nn.GRU(1, 4)) == "the sample x.npy is empty"
    assert _refusal(b"a,b\n", "h.csv", nn.GRU(2, 4)) == "the sample h.csv has a header and no rows of numbers"
    assert _refusal(b"x", "x.txt", nn.GRU(1, 4)).startswith("unsupported file type '.txt' (x.txt); upload a sample")
    assert _refusal(b"x", "inputs", nn.GRU(1, 4)).startswith("the sample inputs has no file type suffix")


def test_unreadable_and_unsafe_files_are_refused_without_running_anything(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)
    assert _refusal(pickle.dumps(Evil(), protocol=2), "evil.pt", nn.GRU(1, 4)) == (
        "sample refused: evil.pt holds code or objects other than tensors (posix.system); save a plain tensor: "
        "torch.save(x, path)")
    text = _refusal(_pt({"x": Evil()}), "evil.pt", nn.GRU(1, 4))
    assert text.startswith("sample refused: evil.pt holds code or objects other than tensors"), text
    for advice in ("weights_only", "Re-running", "trusted", "False"):
        assert advice not in text
    buf = io.BytesIO()
    np.save(buf, np.array([Evil()], dtype=object), allow_pickle=True)
    assert _refusal(buf.getvalue(), "evil.npy", nn.GRU(1, 4)).startswith("sample refused: evil.npy holds Python objects")
    assert not marker.exists()
    assert _refusal(b"junk", "j.npy", nn.GRU(1, 4)).startswith("could not read j.npy as a .npy file")
    assert _refusal(b"junk", "j.pt", nn.GRU(1, 4)).startswith("could not read j.pt as a torch.save file")
    assert _refusal(_pt({"x": torch.zeros(3, 1), "y": torch.zeros(3, 1)}), "d.pt", nn.GRU(1, 4)) == (
        "the sample d.pt holds a dict of 2 items, 2 of them tensors (keys 'x', 'y'); save just the inputs: "
        "torch.save(x, 'd.pt')")
    assert _refusal(_pt(3), "n.pt", nn.GRU(1, 4)).startswith("the sample n.pt holds a value of type int, not a tensor")


# ------------------------------------------------------------------------------------ the reports on a sample
def _saturating_rnn():
    """A tanh RNN near the edge of chaos on bits; inputs of scale 10 saturate it, so it contracts fast."""
    torch.manual_seed(0)
    m = nn.RNN(1, 8)
    with torch.no_grad():
        m.weight_hh_l0.mul_(2.0)
    return m


def test_a_report_on_a_sample_differs_from_the_report_on_bits_and_says_so():
    m = _saturating_rnn()
    x = 10 * torch.randn(120, 1, 1, generator=torch.Generator().manual_seed(1))
    kw = dict(delay=30, k=2, steps=100, transient=20, diag_steps=30)
    bits = A.checkpoint_report(m, **kw)
    real = A.checkpoint_report(m, **kw, inputs=as_sample(x, m, name="real.npy"))
    assert bits["inputs"] == "random bits on every input channel"
    assert real["inputs"] == ("your sample (real.npy): 1 sequence × 120 steps × 1 channel; the first 20 steps a "
                              "transient")
    # on bits it looks trainable at delay 30, on its real inputs it is not: the verdict flips
    assert bits["exponents"][0] > -0.05 and real["exponents"][0] < -0.3
    assert not bits["forecast"]["flossing_recommended"] and real["forecast"]["flossing_recommended"]
    assert set(real) == set(bits) and len(real["grad_norms"]) == 31
    # the exponents are the mean over the sequences measured; at most max_sequences of them, said so
    many = torch.cat([x, -x, 0.5 * x], dim=1)
    rep = A.checkpoint_report(m, **kw, inputs=many, max_sequences=2)
    want = A.spectrum(m, many[:, :2], k=2, transient=20).mean(0)
    assert rep["exponents"] == want.tolist()
    assert rep["inputs"] == ("your sample (inputs): 3 sequences × 120 steps × 1 channel; the first 2 of its 3 "
                             "sequences; the first 20 steps of each a transient; κ₂ and the gradient reach on its "
                             "first sequence")


def test_a_sample_too_short_for_the_report_is_refused_naming_the_minimum():
    with pytest.raises(ValueError, match=r"^the sample inputs has 60 steps per sequence; the report needs at least "
                                         r"70 \(a 20-step transient, then at least 50 measured\): upload longer"):
        A.checkpoint_report(nn.GRU(1, 3), delay=10, steps=100, transient=20, inputs=torch.zeros(60, 1))


def test_flossing_on_a_sample_sees_only_its_first_half_and_measures_on_the_held_out_half(monkeypatch):
    gru = nn.GRU(1, 3)
    x = torch.arange(320.0).reshape(320, 1, 1).repeat(1, 2, 1) / 320   # each input's value says its step
    seen = {"floss": [], "measure": []}
    real_floss, real_spectrum = reports.floss, reports.spectrum

    def spy_floss(module, sampler, **kw):
        def spied(i):
            w = sampler(i)
            seen["floss"].append(w)
            return w
        return real_floss(module, spied, **kw)

    def spy_spectrum(module, inputs, **kw):
        seen["measure"].append(inputs)
        return real_spectrum(module, inputs, **kw)
    monkeypatch.setattr(reports, "floss", spy_floss)
    monkeypatch.setattr(reports, "spectrum", spy_spectrum)
    out = A.floss_checkpoint(gru, k=2, steps=4, lr=1e-2, measure_steps=20, inputs=x)
    assert out["split"] == {"floss": [0, 160], "measure": [160, 280]}
    assert all(w.shape == (55, 1, 1) and float(w.max()) < 160 / 320 for w in seen["floss"])
    assert len(seen["measure"]) == 2 and all(float(m.min()) == 160 / 320 and m.shape == (120, 2, 1)
                                             for m in seen["measure"])
    assert out["inputs"] == ("your sample (inputs): 2 sequences × 320 steps × 1 channel: flossing windows from steps "
                             "1–160 of its 2 sequences; before and after measured on steps 161–280, held out (the "
                             "first 100 of them a transient)")
    assert len(out["loss"]) == 4 and len(out["before"]) == len(out["after"]) == 2
    bits = A.floss_checkpoint(nn.GRU(1, 3), k=2, steps=1, lr=1e-2, window=20, transient=5, measure_steps=20)
    assert bits["split"] is None and bits["inputs"].startswith("random bits on every input channel")


def test_a_sample_too_short_to_split_is_refused_naming_the_minimum():
    with pytest.raises(ValueError) as e:
        A.floss_checkpoint(nn.GRU(1, 3), k=2, steps=4, lr=1e-2, inputs=torch.zeros(250, 1))
    assert str(e.value) == (
        "the sample inputs has 250 steps per sequence; flossing on it needs at least 300: the first half for the "
        "55-step flossing windows, the second half held out for measuring before and after (a 100-step "
        "transient, then at least 50): upload longer sequences")
    assert reports.FLOSSING_MIN_STEPS == 300 and reports.REPORT_MIN_STEPS == 150


# ------------------------------------------------------------------------------------ the background job
def test_the_job_refuses_a_bad_sample_before_starting(tmp_path, monkeypatch):
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    data = A.save_state_dict(nn.GRU(2, 4))
    settings = dict(arch="gru", hidden=4, input_size=2)
    with pytest.raises(ValueError, match=r"has 3 channels .* expects input_size=2"):
        A.start_floss_job(data, settings, k=2, steps=3, lr=1e-2, inputs=(_npy(np.zeros((400, 3))), "x.npy"))
    with pytest.raises(ValueError, match="flossing on it needs at least 300"):
        A.start_floss_job(data, settings, k=2, steps=3, lr=1e-2, inputs=(_npy(np.zeros((200, 2))), "x.npy"))
    assert not list(tmp_path.iterdir())          # nothing written, nothing started


@pytest.mark.slow
def test_the_job_flosses_on_the_sample_in_a_separate_process():
    import time
    torch.manual_seed(3)
    gru = nn.GRU(2, 4)
    data = A.save_state_dict(gru)
    x = 3 * torch.randn(300, 2, 2, generator=torch.Generator().manual_seed(4))
    folder, proc = A.start_floss_job(data, dict(arch="gru", hidden=4, input_size=2), k=2, steps=3, lr=1e-2,
                                     inputs=(_npy(x.numpy()), "../my inputs.npy"))
    assert proc.pid != os.getpid() and os.listdir(os.path.join(folder, "sample")) == ["my_inputs.npy"]
    t0 = time.monotonic()
    while (s := A.floss_job_status(folder, proc))["state"] == "running":
        assert time.monotonic() - t0 < 120
        time.sleep(0.2)
    assert s["state"] == "done", s
    here = A.load_checkpoint(data, arch="gru", hidden=4, input_size=2)
    want = A.floss_checkpoint(here, k=2, steps=3, lr=1e-2, inputs=as_sample(x, here, name="my_inputs.npy"))
    assert s["out"]["after"] == want["after"] and s["out"]["split"] == {"floss": [0, 150], "measure": [150, 300]}
    assert s["out"]["inputs"] == want["inputs"] and s["out"]["inputs"].startswith("your sample (my_inputs.npy)")
