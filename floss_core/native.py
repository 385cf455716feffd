"""The compiled time loop of the fused RNN training kernel, with the Python loop as its fallback.

``models._RNNReadoutSequence`` runs two ATen calls per time step forward and two backward. Written as a
Python loop, each step also pays the interpreter and the making of tensor views (what that costs per
training step: bench/RESULTS.md, "The training step's time loop from C++ vs from Python").
``csrc/rnn_loop.cpp`` makes the same ATen calls in the same order from C++, so both paths give identical
numbers (tests compare them with ``torch.equal``); it is built once per machine by
``torch.utils.cpp_extension`` (needs a C++ compiler and ninja, about 20 s, cached under
``TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``) and registered as ``torch.ops.floss_native``.
Where it cannot be built, a warning says why and the Python loop runs.

The flossing window of ``fastqr._RNNTangentLogs`` has a compiled loop too (``csrc/window_qr.cpp``, its own
library ``torch.ops.floss_window``, built and locked the same way, ``load_window`` / ``window_available``): it
calls the BLAS / LAPACK routines torch's CPU library exports, so a torch built without them loses only it,
not the training loop's. Its numbers equal the Python loop's to rounding, not bit for bit.

``FLOSS_NATIVE=0`` turns both off (``1``, the default, uses them when they can be built).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import time
import warnings
from pathlib import Path

import torch

from . import settings

SOURCE = Path(__file__).with_name("csrc") / "rnn_loop.cpp"
WINDOW_SOURCE = Path(__file__).with_name("csrc") / "window_qr.cpp"   # fastqr's window kernel, its own library
_state: dict = {"loaded": None, "error": None}
_window_state: dict = {"loaded": None, "error": None}
log = logging.getLogger(__name__)
STALE_LOCK_S = 300   # a build takes ~20 s here; torch waits forever on the lock of a build that was killed


def build_directory(name: str = "floss_native", source: Path = SOURCE) -> Path:
    """Where this checkout's loop is built: torch's extension folder, one subfolder per source path (ninja
    rebuilds whenever the path in its build file changes, so two checkouts sharing one folder rebuilt over
    each other, and a process killed mid-build left a lock behind)."""
    from torch.utils.cpp_extension import _get_build_directory

    tag = hashlib.sha256(str(Path(source).resolve()).encode()).hexdigest()[:10]
    return Path(_get_build_directory(name, verbose=False)) / tag


def clear_stale_lock(build_dir: Path, max_age_s: float = STALE_LOCK_S) -> bool:
    """Remove the build lock that a killed build left behind (older than ``max_age_s``): torch's
    ``FileBaton`` would otherwise make every later process wait for it forever. True if one was removed."""
    lock = Path(build_dir) / "lock"
    try:
        age = time.time() - lock.stat().st_mtime
    except OSError:
        return False
    if age <= max_age_s:
        return False
    log.warning("removing a stale build lock %s (%.0f s old: a build that was killed)", lock, age)
    lock.unlink(missing_ok=True)
    return True


def enabled() -> bool:
    """Whether the environment allows the compiled loop (``FLOSS_NATIVE``, default on; settings.py)."""
    return settings.get("FLOSS_NATIVE")


@contextlib.contextmanager
def build_lock(build_dir: Path):
    """Hold this folder's build lock for a build and load. torch's own lock is a file that a process killed
    inside the build leaves behind, and every later process then waits on it forever. An ``flock`` dies
    with its process, and while it is held nobody of ours is building, so a torch lock found then is one
    such leftover and is removed. Where there is no ``fcntl``, a torch lock older than STALE_LOCK_S is
    removed instead."""
    try:
        import fcntl
    except ImportError:                 # not POSIX
        clear_stale_lock(build_dir)
        yield
        return
    with open(Path(build_dir) / "floss_build.flock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)   # released by the kernel if this process dies
        clear_stale_lock(build_dir, max_age_s=-1)
        yield


def _load(state: dict, name: str, source: Path, probe: str, what: str, fallback: str, opt: str = "-O2") -> bool:
    """Build (once per machine) and load one library of ours; False, with one warning, if it can't be."""
    if state["loaded"] is None:
        try:
            from torch.utils.cpp_extension import load as _build
            folder = build_directory(name, source)
            folder.mkdir(parents=True, exist_ok=True)
            log.info("loading %s (built once per machine, ~20 s)", what)
            with build_lock(folder):
                _build(name, [str(source)], extra_cflags=[opt], is_python_module=False,
                       verbose=False, build_directory=str(folder))
            getattr(getattr(torch.ops, name), probe)  # raises if the library did not register
            state["loaded"] = True
        except Exception as exc:  # no compiler, no ninja, a read-only cache: the Python loop is exact too
            state["loaded"], state["error"] = False, f"{type(exc).__name__}: {exc}".splitlines()[0]
            warnings.warn(f"floss_core: {what} is unavailable ({state['error']}); using the Python loop "
                          f"({fallback})", RuntimeWarning, stacklevel=3)
    return state["loaded"]


def load() -> bool:
    """Build (once per machine) and load the compiled loop; False, with a warning, if it can't be."""
    return _load(_state, "floss_native", SOURCE, "rnn_forward_loop", "the compiled time loop",
                 "same numbers, ~10% slower training steps")


def load_window() -> bool:
    """Build (once per machine) and load the compiled flossing window (csrc/window_qr.cpp, its own library:
    it calls BLAS / LAPACK symbols of torch's CPU library, which a torch built without them lacks, and that
    must not cost the training loop its compiled path); False, with a warning, if it can't be."""
    return _load(_window_state, "floss_window", WINDOW_SOURCE, "window_forward", "the compiled flossing window",
                 "the same numbers to rounding, slower flossing steps", opt="-O3")


def available() -> bool:
    """True when training steps will use the compiled loop (enabled and built)."""
    return enabled() and load()


def window_available() -> bool:
    """True when fastqr's RNN window kernel can run its compiled loop (enabled and built; CPU tensors)."""
    return enabled() and load_window()


def status() -> str:
    """'compiled', 'python (FLOSS_NATIVE=0)' or 'python (<why the build failed>)'; stored with every run."""
    if not enabled():
        return "python (FLOSS_NATIVE=0)"
    return "compiled" if load() else f"python ({_state['error']})"


def window_status() -> str:
    """Which flossing-window loop this process ran, stored with every run (it equals the Python loop to rounding,
    not bit for bit): 'compiled', 'not used' (no CPU RNN window ran, so nothing was built),
    'python (FLOSS_NATIVE=0)' or 'python (<why the build failed>)'."""
    if not enabled():
        return "python (FLOSS_NATIVE=0)"
    if _window_state["loaded"] is None:
        return "not used"
    return "compiled" if _window_state["loaded"] else f"python ({_window_state['error']})"


def rnn_forward_loop(H: torch.Tensor, Y: torch.Tensor, W2: torch.Tensor, n: int) -> None:
    """Fill Y[t] = H[:, t] @ W2 and H[:, t+1, :, :n] = tanh(Y[t, ..., :n]) for t = 0..T-1 (in place).
    H (E, T+1, B, n+a), Y (T, E, B, n+o), W2 (E, n+a, n+o)."""
    if available():
        torch.ops.floss_native.rnn_forward_loop(H, Y, W2, n)
        return
    hs, ys, xs, hn = H.unbind(1), Y.unbind(0), Y[..., :n].unbind(0), H[..., :n].unbind(1)  # views, made once
    for t in range(Y.shape[0]):
        torch.bmm(hs[t], W2, out=ys[t])
        torch.tanh(xs[t], out=hn[t + 1])


def rnn_backward_loop(H: torch.Tensor, dY: torch.Tensor, WT: torch.Tensor, n: int) -> torch.Tensor:
    """For t = T-1..0: dY[:, t, :, :n] = δh_t ⊙ (1 - h_t²), δh_{t-1} = dY[:, t] @ WT, starting from
    δh_{T-1} = 0 (dY's last o columns hold the readout gradients). Returns δh for tanh(x_0), (E, B, n)."""
    if available():
        return torch.ops.floss_native.rnn_backward_loop(H, dY, WT, n)
    dh = torch.zeros((H.shape[0], H.shape[2], n), dtype=H.dtype, device=H.device)
    hn, dys, dxs = H[..., :n].unbind(1), dY.unbind(1), dY[..., :n].unbind(1)
    for t in range(dY.shape[1] - 1, -1, -1):
        torch.ops.aten.tanh_backward.grad_input(dh, hn[t + 1], grad_input=dxs[t])
        torch.bmm(dys[t], WT, out=dh)
    return dh


def keep_freed_memory() -> bool:
    """In a process that trains (a worker, ``compare``): let glibc keep freed blocks of up to 32 MiB for
    reuse instead of returning each to the kernel. A training step allocates a few such blocks (the
    states, 14 MiB at E = 9) and frees them; by default every new one is a fresh mapping whose 4 KiB
    pages fault on first touch (measured: bench/RESULTS.md, "no page faults in the workers"). Linux/glibc
    only; elsewhere it does nothing and says False."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3          # glibc's malloc.h
        return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):                      # musl and others have no mallopt
        return False
