"""This machine's cost table, and the cost model of the training loop's primitives that the time
estimate (``plan.estimate``) reads.

The table holds seconds measured here with the loop's own code (``train._Run``'s methods), per
architecture, at a grid of sizes (``points``): hidden N (state D), ensemble size E, batch B, lengths,
exponents k.

* ``train``: one task training step of E networks: B sequences of T steps (``_Run.train_step``);
* ``eval``: one evaluation: the test batch of B sequences of T steps, its score, and the λ monitor (the
  top k = min(monitor_k, D) exponents over the L-step diagnostics window) (``_Run.evaluate``);
* ``floss``: one flossing step of E networks: k exponents over an L-step window, b windows
  (``_Run.floss``), per variant (``floss_variant``: the gradient design's cost family, the QR path);
* ``exponents``: the top k exponents of E networks over an L-step window (the stopping rule's check);
* ``snapshot``: one diagnostics snapshot of E networks over the L-step window (``_Run.snapshot``),
  per dtype;
* per architecture, ``warmup``: what a fresh process pays the first time it trains it;
* ``machine``: an experiment's own overhead (queueing, saving), the seconds to start W worker
  processes, and how much slower each runs while W run side by side (``parallel``).

It is measured once per machine, part by part (``parts``, ``measure_part``: seconds each, so the
background worker measures one at a time while it is idle and a queued experiment waits at most one
part), and kept in the store (``Store.cost_table``). ``fresh`` says whether a stored table still
describes this machine (CPU, cores, torch, floss_core, threads, device, the table's own version). On
one torch thread the table holds CPU seconds, which other programs' load at the moment of measuring
does not inflate.

The model (``CostModel``): for each architecture and primitive, seconds = a nonnegative combination of
work counts (``_features``: per call, per step, per member-step and per element of the step's matrix
products), fitted to the measured points by nonnegative least squares on the relative error (scipy's
``nnls``), times the measured/fitted ratio of the nearest measured sizes (a kernel average in log size,
fading to 1 away from them): close to exact where measured, the fitted shape in between and beyond.
A variant measured at a few points only (``VARIANT_POINTS``) is its base primitive times their median
ratio.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import statistics
import time
from dataclasses import replace
from datetime import datetime, timezone

from . import __version__

TABLE_VERSION = 2                       # 2: snapshots of one pass, the compiled flossing window (issue 18)
HIDDEN = (8, 32, 80)                    # the sizes' hidden units (tiny, quick, paper)
ENSEMBLE = (1, 4, 16)                   # networks per ensemble, measured at every hidden size
OPS = ("train", "eval", "exponents", "floss", "snapshot")
FAMILIES = {"full": "full", "truncated": "truncated", "auto": "truncated", "one_step": "truncated",
            "none": "truncated"}        # state_gradient -> the flossing gradient's cost family
BASE = {"floss": "truncated/{qr}", "snapshot": "float64"}    # the variant measured on the whole grid
VARIANT_POINTS = ((1, 8), (4, 32), (16, 32))                 # (E, N) where the other variants are measured
PARALLEL_PROBE = dict(E=16, N=32, B=16, T=100)               # the training step the parallel factor times
K_MAX = 80                                                   # the most exponents measured (the paper floss 75)


def machine(device: str = "cpu") -> dict:
    """What a table's numbers depend on: the CPU, the cores this process may use (at most 8, as worker
    processes: ``runner.default_workers``), torch, floss_core,
    torch threads (FLOSS_THREADS), the compiled loop switch, the device and the table's version."""
    import torch

    from . import native, settings

    gpu = torch.cuda.get_device_name(0) if device == "cuda" and torch.cuda.is_available() else None
    return {"cpu": _cpu_name(), "cores": _cores(), "torch": torch.__version__, "floss_core": __version__,
            "threads": settings.get("FLOSS_THREADS"), "native": bool(native.enabled()), "device": device,
            "gpu": gpu, "version": TABLE_VERSION}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def new_table(device: str = "cpu") -> dict:
    """An empty table for this machine: its fingerprint, no parts measured yet."""
    return {"machine": machine(device), "started": _now(), "updated": None, "seconds_measuring": 0.0,
            "parts": {}}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def fresh(table: dict | None, device: str = "cpu") -> bool:
    """Whether ``table`` was measured on this machine as it is now (see ``machine``)."""
    return bool(table) and table.get("machine") == machine(device)


# ------------------------------------------------------------------------------------ parts
def arch_parts(arch: str) -> list[str]:
    """The parts of one architecture: each primitive at each hidden size, the variants, and what a fresh
    process pays the first time it runs the architecture (``warmup``)."""
    return [f"{arch}/{op}/{n}" for op in OPS for n in HIDDEN] + [f"{arch}/variants", f"{arch}/warmup"]


def parts(archs=None) -> list[str]:
    """Every part of a full table, in the order the worker measures them: the default architecture
    first, then the machine's part (an experiment's overhead, parallel worker processes), then the
    other architectures."""
    from .models import ARCHS

    archs = list(ARCHS) if archs is None else list(archs)
    out = arch_parts(archs[0]) + ["machine"]
    for a in archs[1:]:
        out += arch_parts(a)
    return out


def _cores() -> int:
    from .runner.queue import default_workers   # no torch: the runner's queue side

    return default_workers()


def missing(table: dict | None, wanted) -> list[str]:
    """The parts of ``wanted`` that ``table`` does not hold yet."""
    have = (table or {}).get("parts", {})
    return [p for p in wanted if p not in have]


def needed_parts(table: dict | None, arch: str) -> list[str]:
    """What an estimate for ``arch`` still lacks."""
    return missing(table, arch_parts(arch) + ["machine"])


def measure_part(table: dict, part: str, *, device: str = "cpu", workers: int | None = None, hidden=None,
                 ensemble=None) -> dict:
    """Measure one part (see ``parts``) into ``table`` (changed in place and returned): the parallel
    part for ``workers`` processes (default one per core); ``hidden`` and ``ensemble`` keep only the
    grid's points of those sizes (a quick table for small specs, e.g. in tests)."""
    t0 = time.perf_counter()
    with _worker_threads():
        if part == "machine":
            table["parts"]["machine"] = _measure_machine(workers or _cores(), device)
        elif part.endswith("/warmup"):
            table["parts"][part] = {"seconds": _measure_warmup(part.split("/")[0], device)}
        else:
            arch = part.split("/")[0]
            table["parts"][part] = [_measure_point(arch, op, p, device) for op, p in part_points(part)
                                    if (hidden is None or p["N"] in hidden) and (ensemble is None or p["E"] in ensemble)]
    table["seconds_measuring"] = table.get("seconds_measuring", 0.0) + time.perf_counter() - t0
    table["updated"] = _now()
    return table


def part_points(part: str) -> list[tuple[str, dict]]:
    """(primitive, sizes) of every point of an architecture's part of the grid or its variants."""
    arch, op, *n = part.split("/")
    return _variant_points(arch) if op == "variants" else [(op, p) for p in points(arch, op, int(n[0]))]


def measure(archs=None, *, device: str = "cpu", workers: int | None = None, hidden=HIDDEN,
            ensemble=None, warmup: bool = True, table: dict | None = None) -> dict:
    """A table measured now, all at once (the library's on-demand path, ``plan.table_for``; the worker
    measures the same parts one at a time): ``archs`` (default all), the machine's part for ``workers``
    processes (default one: no pool), only the grid's points of the ``hidden`` and ``ensemble`` sizes
    given, and each architecture's warm-up unless not ``warmup``."""
    table = table if table is not None else new_table(device)
    for part in parts(archs):
        if part.endswith("/warmup") and not warmup:
            continue
        if part == "machine" or part.count("/") == 1 or int(part.split("/")[2]) in hidden:
            measure_part(table, part, device=device, workers=workers or 1, hidden=hidden, ensemble=ensemble)
    return table


# ------------------------------------------------------------------------------------ the grid
def _fast(arch: str) -> bool:
    """Whether the architecture has the fused kernels (its steps cost little per time step, so longer
    windows are affordable to measure)."""
    from .models import ARCHS

    return ARCHS[arch].run is not None


def points(arch: str, op: str, hidden: int) -> list[dict]:
    """The measured sizes of ``op`` at ``hidden`` units: every E of ``ENSEMBLE`` (and 36 for the cheap
    primitives at small sizes), each at a short and a long length (and a larger batch), k all of D (at
    most ``K_MAX``) and a quarter of it. Architectures without fused kernels cost about the same per
    time step at any length, so they are measured over fewer steps."""
    from .models import ARCHS

    d = ARCHS[arch].state_factor * hidden
    kf, kq = min(d, K_MAX), max(1, min(d, K_MAX) // 4)
    fast = _fast(arch)
    out = []
    for e in ENSEMBLE + ((36,) if hidden <= 32 and op in ("train", "eval") else ()):
        base = dict(E=e, N=hidden)
        if op == "train":
            out += [dict(base, B=16, T=T) for T in ((30, 300) if fast else (15, 60))]
            out.append(dict(base, B=64, T=100 if fast else 30))
        elif op == "eval":
            km = min(8, d)
            out += [dict(base, B=64, T=30 if fast else 15, L=300 if fast else 40, k=km),
                    dict(base, B=64, T=300 if fast else 60, L=40 if fast else 10, k=km),
                    dict(base, B=256, T=100 if fast else 30, L=40 if fast else 10, k=km)]
        elif op == "exponents":
            out += [dict(base, k=kf, L=50 if fast else 10), dict(base, k=kq, L=500 if fast else 40)]
        elif op == "floss":
            out += [dict(base, k=kf, L=55 if fast else 12, b=1), dict(base, k=kq, L=20, b=1)]
            if fast:
                out.append(dict(base, k=max(1, kf // 2), L=40, b=2))
        elif op == "snapshot":
            out += [dict(base, k=max(1, d // 2), L=L) for L in ((30, 150) if fast else (5, 12))]
    return [dict(p, op=op, variant=_base_variant(arch, op)) for p in out]


def _base_variant(arch: str, op: str) -> str:
    return BASE.get(op, "").format(qr="fused" if _fast(arch) else "generic")


def _variant_points(arch: str) -> list[tuple[str, dict]]:
    """(op, point) of the variants besides the base: the full-trajectory flossing gradient (the
    reference design), the generic QR path where the architecture has a fused one, float32 snapshots."""
    fast, out = _fast(arch), []
    for e, n in VARIANT_POINTS:
        fl = [p for p in points(arch, "floss", n) if p["E"] == e][0]
        out.append(("floss", dict(fl, variant="full/" + ("fused" if fast else "generic"))))
        if fast:
            out.append(("floss", dict(fl, variant="truncated/generic")))
        sn = [p for p in points(arch, "snapshot", n) if p["E"] == e][-1]
        out.append(("snapshot", dict(sn, variant="float32")))
    return out


def floss_variant(arch: str, floss) -> str:
    """The flossing variant of a ``FlossConfig``: its gradient's cost family / its QR path."""
    from .phases import state_gradient

    qr = "fused" if _fast(arch) and floss.qr == "auto" else "generic"
    return f"{FAMILIES[state_gradient(floss)]}/{qr}"


# ------------------------------------------------------------------------------------ measuring
def _seconds(fn, *, device: str = "cpu", budget: float = 0.3, calls: int = 3) -> float:
    """Seconds of one call of ``fn``: after a first (warm-up) call, the median of up to ``calls`` more
    within ``budget`` seconds (one more where a call alone takes longer, none where it takes more than
    four times as long). On a CPU with one torch thread they are this process's CPU seconds (on one
    thread a call's CPU time is its wall time on an otherwise idle core, and other programs' load does
    not inflate it); else wall seconds, on a GPU once its queued kernels have run."""
    if device == "cuda":
        import torch

        work = fn

        def fn():
            work()
            torch.cuda.synchronize()
    clock = time.process_time if device == "cpu" and _threads() == 1 else time.perf_counter
    t0 = clock()
    fn()
    first = clock() - t0
    if first > 4 * budget:          # a long call: its first run is as good as any (and costs the most)
        return first
    times, start = [], time.perf_counter()
    while len(times) < (1 if first > budget else calls) and (not times or time.perf_counter() - start < budget):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.median(times)


def _probe_run(arch: str, p: dict, device: str):
    """A ``train._Run`` of E fresh networks at the point's sizes (xor, no relaxation; the flossing design
    without the stopping rule's checks, which ``exponents`` times on its own)."""
    from . import models as M
    from . import schedules as S
    from . import tasks as T
    from .configs import LAB_FLOSS, REFERENCE_FLOSS, TrainConfig, resolve_device
    from .train import _Run

    d = M.ARCHS[arch].state_factor * p["N"]
    seq = p.get("T", 20)
    model = M.ModelConfig(arch=arch, hidden=p["N"], relax_steps=0)
    task = T.TaskConfig(name="xor", delay=2, seq_len=max(seq, 3), batch=p.get("B", 16))
    diag = p.get("L", 20) if p["op"] in ("eval", "snapshot") else 20
    cfg = TrainConfig(steps=10, eval_batch=p.get("B", 64), diag_len=diag, diag_transient=diag // 5,
                      diagnostics=p["op"] == "snapshot", monitor_k=p.get("k", 8) if p["op"] == "eval" else 8,
                      diag_dtype="float32" if p.get("variant") == "float32" else "float64")
    design = REFERENCE_FLOSS if p.get("variant", "").startswith("full") else LAB_FLOSS
    L = p.get("L", 20)
    floss = replace(design, k=min(p.get("k", 1), d), seq_len=max(L, 2), transient=L // 4, batch=p.get("b", 1),
                    stop_tol=0.0, clip_chaotic_only=False,
                    qr="householder" if p.get("variant", "").endswith("generic") else "auto")
    seeds = list(range(p["E"]))
    return _Run(model, task, cfg, floss, [S.Schedule("none")] * p["E"], seeds, resolve_device(device),
                total=1 << 60, on_progress=None, should_stop=None)


def _threads() -> int:
    from . import settings

    return settings.get("FLOSS_THREADS")


@contextlib.contextmanager
def _worker_threads():
    """Measure on the torch threads a worker process trains on (FLOSS_THREADS); the caller's setting is
    restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(_threads())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _call(run, p: dict):
    """The primitive of point ``p`` on ``run``, as a function of no arguments."""
    import torch

    from .diagnostics import top_exponents
    from .phases import _bits

    op, everyone = p["op"], torch.ones_like(run.active)
    if op == "train":
        return lambda: run.train_step(1)
    if op == "eval":
        return lambda: run.evaluate(1)
    if op == "floss":
        return lambda: run.floss("pre", 0, [1] * len(run.members))
    if op == "snapshot":       # forget the last one: unchanged weights would reuse it (``_Run.snapshot``)
        return lambda: (run._snapshots.clear(), run.snapshot(0, "init", everyone))
    if op == "exponents":
        window = _bits(run.g_check, p["L"], 1, run.n_in, run.dev)
        return lambda: top_exponents(run.model, run.params, window, p["k"], transient=p["L"] // 5)
    raise ValueError(f"unknown primitive {op!r}; choose one of {', '.join(OPS)}")


def _measure_point(arch: str, op: str, p: dict, device: str) -> dict:
    run = _probe_run(arch, dict(p, op=op), device)
    return dict(p, op=op, arch=arch, t=_seconds(_call(run, dict(p, op=op)), device=device))


def _measure_machine(workers: int, device: str) -> dict:
    """What running an experiment costs here besides its work (``overhead``, ``_experiment_overhead``);
    starting ``workers`` fresh worker processes side by side (``start``: the CPU seconds each takes to
    import what a pool job needs, torch and floss_core; the slowest of them); and the parallel factor:
    a training step's seconds in each of them while all run side by side, over its seconds in one of
    them alone (before and after, averaged: the same fresh processes, so only running side by side differs)."""
    overhead = _experiment_overhead(device)
    if workers <= 1:
        return {"workers": 1, "start": 0.0, "parallel": {"1": 1.0}, "overhead": overhead}
    procs = [_spawn("parallel", device) for _ in range(workers)]

    def timed(group) -> list[float]:
        for p in group:
            p.stdin.write("time\n")
            p.stdin.flush()
        return [_answer(p)["seconds"] for p in group]

    try:
        ready = [_answer(p)["ready"] for p in procs]     # every process has imported what a job needs
        before = timed(procs[:1])[0]
        side_by_side = statistics.median(timed(procs))
        alone = (before + timed(procs[:1])[0]) / 2
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(timeout=60)
    return {"workers": workers, "start": max(ready), "alone": alone, "side_by_side": side_by_side,
            "overhead": overhead, "parallel": {"1": 1.0, str(workers): max(1.0, side_by_side / alone)}}


def _experiment_overhead(device: str) -> float:
    """Wall seconds of what a stored experiment costs besides its training: queueing it, planning,
    saving its runs, finishing (``runner.run_here`` of a one-step comparison; the faster of two)."""
    import tempfile

    from .experiment import make_spec
    from .runner import run_here

    spec = make_spec("quick", hidden=2, seq_len=4, delays=[2], seeds=1, steps=1, schedules="none", k=1,
                     diagnostics=False, device=device, name="cost table: overhead")
    times, log = [], logging.getLogger("floss_core.runner")
    level = log.level
    log.setLevel(logging.WARNING)           # a worker's log tells of real experiments only
    try:
        with tempfile.TemporaryDirectory(prefix="floss-costs-") as tmp:
            for i in range(2):
                t0 = time.perf_counter()
                run_here(spec, os.path.join(tmp, f"{i}.db"), max_workers=1)
                times.append(time.perf_counter() - t0)
    finally:
        log.setLevel(level)
    return min(times)


def _measure_warmup(arch: str, device: str) -> float:
    """CPU seconds a fresh process pays the first time it trains ``arch`` (e.g. the first forward-mode
    JVP loads torch's compiler stack) beyond what the same small job costs it the second time."""
    p = _spawn("warmup", arch, device)
    try:
        got = _answer(p)
    finally:
        p.wait(timeout=60)
    return max(0.0, got["first"] - got["second"])


def _spawn(*args: str):
    """A fresh ``python -c`` process running ``_child(args)`` (a plain subprocess, so it works from any
    caller, an interactive session too), answering one JSON line at a time on its stdout."""
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])     # the folder holding floss_core/
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    return subprocess.Popen([sys.executable, "-c", f"from floss_core.costs import _child; _child({list(args)!r})"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


def _answer(proc) -> dict:
    import json

    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"a measuring process ended early (exit code {proc.wait(timeout=60)})")
    return json.loads(line)


def _child(args: list) -> None:
    """In a measuring process: 'warmup ARCH DEVICE' (a small job twice, CPU seconds of each) or
    'parallel DEVICE' (import what a pool job needs, say when ready, then time the probe once per line
    read)."""
    import json
    import sys

    import torch

    torch.set_num_threads(1)      # as the runner's pool processes (executors._pool_init)
    if args[0] == "parallel":
        import floss_core.runner.executors  # noqa: F401  what a pool process imports before its first job

        print(json.dumps({"ready": time.process_time()}), flush=True)
        probe = dict(PARALLEL_PROBE, op="train", variant="")
        step = _call(_probe_run("rnn", probe, args[1]), probe)
        while sys.stdin.readline():          # 'time': one timing; the end of the input: done
            print(json.dumps({"seconds": _seconds(step, device=args[1], budget=1.0, calls=50)}), flush=True)
        return
    from .experiment import make_spec, plan, run_job

    arch, device = args[1], args[2]
    spec = make_spec("quick", arch=arch, hidden=4, seq_len=8, delays=[2], seeds=1, steps=2, schedules="none,pre",
                     pre_steps=2, k=2, floss_len=6, floss_transient=1, eval_every=1, device=device)
    job, times = plan(spec)[0], []
    for _ in range(2):
        t0 = time.process_time()
        run_job(spec, job)
        times.append(time.process_time() - t0)
    print(json.dumps({"first": times[0], "second": times[1]}), flush=True)


# ------------------------------------------------------------------------------------ the model
def _features(op: str, p: dict, factor: int) -> list[float]:
    """Work counts of one call at sizes ``p``: what its seconds are a nonnegative combination of."""
    e, n = p["E"], p["N"]
    d = factor * n
    if op == "train":
        t, b = p["T"], p["B"]
        return [1, e, e * n * n, t, t * e, t * e * b * n, t * e * b * n * n]
    if op == "eval":
        t, b, L, k = p["T"], p["B"], p["L"], p["k"]
        return [1, e, t, t * e, t * e * b * n, t * e * b * n * n, L, L * e, L * e * d * k, L * e * d * d * k]
    if op in ("exponents", "floss"):
        L, k, b = p["L"], p["k"], p.get("b", 1)
        return [1, e, e * n * n, L, L * e, L * e * b * d, L * e * b * d * k, L * e * b * d * d * k,
                L * e * b * d * k * k]
    if op == "snapshot":
        L = p["L"]
        return [1, e, L, L * e, L * e * d, L * e * d * d, L * e * d * d * d]
    raise ValueError(f"unknown primitive {op!r}; choose one of {', '.join(OPS)}")


def _log_sizes(p: dict) -> list[float]:
    return [math.log(p[key]) for key in ("E", "N", "T", "L", "k", "B") if key in p]


class CostModel:
    """Seconds of the loop's primitives on the machine a table was measured on (see the module's text).

    ``seconds(arch, op, variant=None, **sizes)``: sizes E, N and, by primitive, B, T (train, eval),
    L and k (eval, exponents, floss, snapshot), b (floss). KeyError when the table lacks the
    architecture."""

    BANDWIDTH = math.log(2.5)   # log-size distance at which a measured point's correction halves (about)
    PRIOR = 0.25                # the weight of "no correction" against the measured points'

    def __init__(self, table: dict):
        self.table = table
        self._fits: dict = {}
        self._points: dict = {}
        for part, pts in table.get("parts", {}).items():
            if part == "machine" or part.endswith("/warmup"):
                continue
            for p in pts:
                self._points.setdefault((p["arch"], p["op"], p["variant"]), []).append(p)

    def archs(self) -> set[str]:
        return {a for a, _, _ in self._points}

    def _fit(self, arch: str, op: str, variant: str):
        import numpy as np
        from scipy.optimize import nnls

        from .models import ARCHS

        key = (arch, op, variant)
        if key not in self._fits:
            pts = self._points.get(key)
            if not pts:
                raise KeyError(f"the cost table has no {op} of {arch} ({variant or 'base'})")
            factor = ARCHS[arch].state_factor
            X = np.array([_features(op, p, factor) for p in pts], float)
            y = np.array([p["t"] for p in pts], float)
            scale = X.max(axis=0)
            scale[scale == 0] = 1.0
            coef, _ = nnls(X / scale / y[:, None], np.ones(len(y)))     # relative error, columns scaled
            coef = coef / scale
            fitted = X @ coef
            resid = np.log(y / np.maximum(fitted, 1e-12))
            self._fits[key] = (coef, factor, [(_log_sizes(p), r) for p, r in zip(pts, resid)])
        return self._fits[key]

    def _base_seconds(self, arch: str, op: str, variant: str, sizes: dict) -> float:
        coef, factor, resid = self._fit(arch, op, variant)
        fitted = float(sum(c * f for c, f in zip(coef, _features(op, sizes, factor))))
        x = _log_sizes(sizes)
        weights = [math.exp(-0.5 * sum((a - b) ** 2 for a, b in zip(x, xi)) / self.BANDWIDTH ** 2) for xi, _ in resid]
        total = sum(weights)
        correction = sum(w * r for w, (_, r) in zip(weights, resid)) / (total + self.PRIOR) if total else 0.0
        return fitted * math.exp(correction)

    def seconds(self, arch: str, op: str, variant: str | None = None, **sizes) -> float:
        """Seconds of one call of primitive ``op`` of ``arch`` at ``sizes`` (see the class)."""
        base = _base_variant(arch, op)
        t = self._base_seconds(arch, op, base, dict(sizes, op=op))
        return t if variant is None or variant == base else t * self.variant_factor(arch, op, variant)

    def variant_factor(self, arch: str, op: str, variant: str) -> float:
        """How much slower (> 1) or faster a variant is than its base primitive: the median ratio at
        the points where it was measured; a flossing variant never measured as such multiplies the
        factors of its family and its QR path."""
        base = _base_variant(arch, op)
        pts = self._points.get((arch, op, variant))
        if pts:
            return statistics.median(p["t"] / self._base_seconds(arch, op, base, p) for p in pts)
        if op == "floss":   # full/generic = full/fused x truncated/generic
            family, qr = variant.split("/")
            bfam, bqr = base.split("/")
            f = 1.0
            if family != bfam:
                f *= self.variant_factor(arch, op, f"{family}/{bqr}")
            if qr != bqr:
                f *= self.variant_factor(arch, op, f"{bfam}/{qr}")
            return f
        return 1.0

    def machine(self) -> dict:
        """The table's machine part: ``overhead`` and ``start`` seconds, ``parallel`` factors by worker count."""
        return self.table.get("parts", {}).get("machine") or {"workers": 1, "start": 0.0, "parallel": {"1": 1.0}}

    def warmup(self, arch: str) -> float:
        """Seconds a fresh process pays the first time it trains ``arch`` (0 where not measured)."""
        return float(self.table.get("parts", {}).get(f"{arch}/warmup", {}).get("seconds", 0.0))

    def overhead(self) -> float:
        """Seconds an experiment costs besides its jobs' work (queueing, planning, saving, finishing)."""
        return float(self.machine().get("overhead", 0.0))

    def slowdown(self, running: int) -> float:
        """How much slower each of ``running`` side-by-side processes runs than one alone: measured at the
        table's worker count, linear in between, and in proportion beyond the cores."""
        if running <= 1:
            return 1.0
        m = self.machine()
        w, f = int(m["workers"]), float(m["parallel"].get(str(m["workers"]), 1.0))
        cores = int(self.table.get("machine", {}).get("cores", w))
        if w <= 1:
            return max(1.0, running / max(1, cores))
        base = 1.0 + (f - 1.0) * (min(running, w) - 1) / (w - 1)
        return base * max(1.0, running / max(cores, w))

    def start_seconds(self, processes: int) -> float:
        """Seconds to start ``processes`` worker processes (measured for the table's worker count; more
        than the cores start in rounds)."""
        if processes <= 1:
            return 0.0
        m = self.machine()
        cores = int(self.table.get("machine", {}).get("cores", 1))
        return float(m.get("start", 0.0)) * max(1.0, processes / max(cores, int(m["workers"])))
