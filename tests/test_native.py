"""The compiled time loop (floss_core/native.py, csrc/rnn_loop.cpp) against the Python loop it replaces."""
import shutil
import warnings

import pytest
import torch

from floss_core import models as M
from floss_core import native
from floss_core.train import versions

needs_compiler = pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                                    reason="no C++ compiler on this machine: the Python loop is used")


def _readouts_and_grads(dtype, seed=3):
    cfg = M.ModelConfig(hidden=7, gain=1.8, relax_steps=2)
    p = {k: v.to(dtype).requires_grad_(True) for k, v in M.init_ensemble(cfg, 2, 1, [1, 2, 3], batch=5).items()}
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(13, 3, 5, 2, generator=g, dtype=dtype).requires_grad_(True)
    w = torch.randn(13, 3, 5, 1, generator=g, dtype=dtype)
    r = M.rnn_readouts(p, M.initial_state(p, 5), x)
    (r * w).sum().backward()
    return [r.detach(), x.grad] + [p[k].grad for k in sorted(p)]


@needs_compiler
def test_the_compiled_loop_builds_here():
    assert native.load(), native.status()
    assert native.status() == "compiled"
    assert versions()["time_loop"] == "compiled"


@needs_compiler
def test_every_record_says_which_window_loop_ran(monkeypatch):
    assert native.window_available(), native.window_status()
    assert versions()["window_loop"] == "compiled"
    monkeypatch.setenv("FLOSS_NATIVE", "0")
    assert versions()["window_loop"] == "python (FLOSS_NATIVE=0)"


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_and_python_loops_give_identical_numbers(monkeypatch, dtype):
    # the same ATen calls in the same order: bit for bit the same readouts and gradients
    assert native.available()
    fast = _readouts_and_grads(dtype)
    monkeypatch.setenv("FLOSS_NATIVE", "0")
    assert not native.available()
    slow = _readouts_and_grads(dtype)
    for a, b in zip(fast, slow):
        assert torch.equal(a, b)


def test_python_loop_gradcheck(monkeypatch):
    # the fallback is a complete kernel on its own (the compiled path is gradchecked in test_models)
    monkeypatch.setenv("FLOSS_NATIVE", "0")
    cfg = M.ModelConfig(hidden=3, gain=1.5, relax_steps=0)
    base = {k: v.double() for k, v in M.init_ensemble(cfg, 1, 2, [4, 5], batch=2).items()}
    x = torch.randn(5, 2, 2, 1, generator=torch.Generator().manual_seed(6), dtype=torch.float64, requires_grad=True)
    names = sorted(base)

    def f(x, *vals):
        p = dict(zip(names, vals))
        return M.rnn_readouts(p, M.initial_state(p, 2), x)
    assert torch.autograd.gradcheck(f, (x, *(base[k].requires_grad_(True) for k in names)), eps=1e-6, atol=1e-7)


def test_a_failed_build_warns_once_and_falls_back_to_the_same_numbers(monkeypatch):
    import torch.utils.cpp_extension as cpp

    ref = None
    if native.available():
        ref = _readouts_and_grads(torch.float64, seed=8)

    def broken(*a, **k):
        raise RuntimeError("Ninja is required to load C++ extensions\nsecond line")
    monkeypatch.setattr(native, "_state", {"loaded": None, "error": None})
    monkeypatch.setattr(cpp, "load", broken)
    with pytest.warns(RuntimeWarning, match="Ninja is required"):
        assert not native.available()
    assert native.status() == "python (RuntimeError: Ninja is required to load C++ extensions)"
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no second warning, no second build attempt
        got = _readouts_and_grads(torch.float64, seed=8)
    if ref is not None:
        for a, b in zip(ref, got):
            assert torch.equal(a, b)


def test_floss_native_switch(monkeypatch):
    monkeypatch.setenv("FLOSS_NATIVE", "0")
    assert not native.enabled() and native.status() == "python (FLOSS_NATIVE=0)"
    monkeypatch.setenv("FLOSS_NATIVE", "maybe")
    with pytest.raises(ValueError, match="FLOSS_NATIVE must be 0 or 1, got 'maybe'"):
        native.enabled()


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_stops_page_faults_of_reallocated_blocks():
    import resource

    assert native.keep_freed_memory()
    n = (14 << 20) // 4                       # the size of an E = 9 step's state buffer
    torch.ones(n).sum()                       # the heap grows once
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        torch.ones(n).sum()                   # allocated, touched, freed: reused from the heap
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    # a fresh mapping each time faults all 3584 pages of each block (~14,000 here without this); a page
    # reclaimer (this VM runs DAMON) may take back an idle block once, so allow up to two blocks' worth
    assert faults <= 2 * 3584, faults


def test_a_stale_build_lock_is_removed_and_a_fresh_one_kept(tmp_path):
    # a build killed mid-way leaves <build dir>/lock, on which torch's FileBaton waits forever
    import os
    import time

    lock = tmp_path / "lock"
    lock.touch()
    assert not native.clear_stale_lock(tmp_path) and lock.exists()       # a build that may be running now
    old = time.time() - native.STALE_LOCK_S - 5
    os.utime(lock, (old, old))
    assert native.clear_stale_lock(tmp_path) and not lock.exists()
    assert not native.clear_stale_lock(tmp_path)                          # nothing to remove


def test_under_the_build_lock_a_left_over_torch_lock_is_removed_at_once(tmp_path):
    # no process of ours builds while we hold the flock, so torch's lock file can only be a killed build's
    (tmp_path / "lock").touch()
    with native.build_lock(tmp_path):
        assert not (tmp_path / "lock").exists()
    with native.build_lock(tmp_path):    # reusable, and nothing to remove
        pass


def test_a_killed_holder_of_the_build_lock_releases_it(tmp_path):
    import subprocess
    import sys

    code = ("import sys, time; from pathlib import Path; from floss_core import native\n"
            f"with native.build_lock(Path({str(tmp_path)!r})):\n    print('held', flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        p.kill()
        p.wait(timeout=10)
        (tmp_path / "lock").touch()       # what torch left behind in the killed build
        with native.build_lock(tmp_path): # does not wait forever: the kernel released the flock
            assert not (tmp_path / "lock").exists()
    finally:
        p.kill()


@needs_compiler
def test_the_compiled_flossing_window_builds_here():
    assert native.load_window(), native._window_state
    assert native.window_available()


def test_a_failed_window_build_warns_once_and_the_python_window_runs(monkeypatch):
    import torch.utils.cpp_extension as cpp

    from floss_core.fastqr import rnn_tangent_logs

    def broken(*a, **k):
        raise RuntimeError("Ninja is required to load C++ extensions\nsecond line")
    monkeypatch.setattr(native, "_window_state", {"loaded": None, "error": None})
    monkeypatch.setattr(cpp, "load", broken)
    with pytest.warns(RuntimeWarning, match=r"compiled flossing window is unavailable \(RuntimeError: Ninja"):
        assert not native.window_available()
    g = torch.Generator().manual_seed(1)
    X, J = torch.randn(5, 2, 1, 4, generator=g), (torch.randn(2, 4, 4, generator=g) / 2).requires_grad_(True)
    Q0 = torch.linalg.qr(torch.randn(2, 1, 4, 3, generator=g))[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no second warning, no second build attempt
        logs = rnn_tangent_logs(X, J, Q0, (1, 2, 3, 4, 5))
    assert not logs.grad_fn.native and torch.isfinite(logs).all()
