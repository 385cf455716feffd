"""Speed of the engine against a straightforward implementation, measured side by side in one run.

    OMP_NUM_THREADS=1 python bench/bench_speed.py                 # everything, a few minutes
    OMP_NUM_THREADS=1 python bench/bench_speed.py --only e2e --seeds 9 --steps 60 --floss-steps 30

Sections (each prints a markdown table; ratios are what to read, these machines are shared and noisy):
  machine   CPU, threads, and this machine's own large-matmul GFLOP/s, measured now
  steps     per-step cost of a training step and a flossing step: baseline (one network) vs engine
  scaling   how flossing and training steps grow with N, k, window length, E and the QR interval
  flops     achieved GFLOP/s of the ensemble training step vs the large-matmul figure
  qr        accuracy and speed of QR every step vs every 2/5/10 steps, Householder vs CholeskyQR2
  e2e       a reduced paper-protocol comparison (none vs pre, S seeds): baseline loop over seeds vs the
            engine (all seeds and both schedules in one ensemble), extrapolated to the full preset
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import baseline  # noqa: E402
from bench_ensemble import table  # noqa: E402  (one markdown-table printer for the bench scripts)
from floss_core import models as M  # noqa: E402
from floss_core import native  # noqa: E402
from floss_core import schedules as S  # noqa: E402
from floss_core import tasks as T  # noqa: E402
from floss_core.experiment import PRESETS  # noqa: E402
from floss_core.fastqr import rnn_lyapunov_spectrum  # noqa: E402
from floss_core.lyapunov import lyapunov_spectrum, random_orthonormal  # noqa: E402
from floss_core.train import (EnsembleAdam, FlossConfig, TrainConfig, _bits, clip_per_member,  # noqa: E402
                              flossing_exponents, member_generators, member_q0, task_forward, train)


def median_time(fn, reps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ------------------------------------------------------------------------------ engine steps
def engine_train_step(E: int, N: int = 80, B: int = 16, T_: int = 300, device: str = "cpu"):
    """A closure running one engine training step (forward, backward, clipping, Adam) for E seeds; the
    batch is drawn on the CPU from per-member generators and moved, as ``train`` does."""
    model = M.ModelConfig(hidden=N, relax_steps=0)
    task = T.TaskConfig(name="xor", delay=20, seq_len=T_, batch=B)
    seeds = list(range(E))
    params = {k: v.to(device).requires_grad_(True)
              for k, v in M.init_ensemble(model, 1, 1, seeds, batch=B).items()}
    opt = EnsembleAdam(list(params.values()), lr=1e-3)
    gens = member_generators(seeds, 1)
    active = torch.ones(E, dtype=torch.bool, device=device)

    def step():
        b = T.make_ensemble_batch(task, gens)
        batch = T.Batch(b.inputs.to(device), b.targets.to(device), b.mask.to(device))
        loss, *_ = task_forward(model, params, batch, "bce")
        opt.zero_grad()
        loss.sum().backward()
        clip_per_member(list(params.values()), 0.03)
        opt.step(active)
    return step


def engine_floss_step(E: int, N: int = 80, k: int = 75, L: int = 55, qr_every: int = 1, qr: str = "auto",
                      device: str = "cpu"):
    model = M.ModelConfig(hidden=N, relax_steps=0)
    floss = FlossConfig(k=k, seq_len=L, transient=min(16, L - 1), qr_every=qr_every, qr=qr)
    seeds = list(range(E))
    params = {k_: v.to(device).requires_grad_(True) for k_, v in M.init_ensemble(model, 1, 1, seeds).items()}
    opt = EnsembleAdam([params[n] for n in M.flossed_names(params)], lr=1e-3)
    gens = member_generators(seeds, 3)
    q0 = member_q0(seeds, N, k, device)
    active = torch.ones(E, dtype=torch.bool, device=device)

    def step():
        lam = flossing_exponents(model, params, floss, _bits(gens, L, 1, 1, device), q0)
        opt.zero_grad()
        (lam ** 2).mean(-1).sum().backward()
        opt.step(active)
    return step


def train_flops(E: int, N: int = 80, B: int = 16, T_: int = 300) -> float:
    """FLOPs of one training step: forward x_t = J tanh(x_{t-1}) + u_t (2BN² per step and network),
    backward δh = δx J and dJ = Σ δxᵀ tanh(x) (2BN² each); input and readout terms are O(BN) and left out."""
    return 6.0 * E * B * T_ * N * N


# ------------------------------------------------------------------------------ sections
def section_machine() -> float:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    a = torch.randn(2048, 2048)
    t = median_time(lambda: a @ a, reps=5)
    gflops = 2 * 2048 ** 3 / t / 1e9
    print("## Machine\n")
    table([{"cpu": cpu, "cores": os.cpu_count(), "torch threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "2048² matmul GFLOP/s": gflops,
            "load avg (1 min)": os.getloadavg()[0]}])
    return gflops


def section_steps() -> None:
    print("## Per-step cost: straightforward single network vs the engine\n")
    b_train = baseline.time_train_step(reps=5)
    b_floss = baseline.time_floss_step(reps=10)
    rows = [{"what": "training step (N=80, B=16, T=300)", "E": 1, "baseline ms/network": 1e3 * b_train,
             "engine ms/step": math.nan, "engine ms/network": math.nan, "speed-up per network": math.nan}]
    for E in (1, 9, 18):
        t = median_time(engine_train_step(E), reps=5)
        rows.append({"what": "training step", "E": E, "baseline ms/network": 1e3 * b_train, "engine ms/step": 1e3 * t,
                     "engine ms/network": 1e3 * t / E, "speed-up per network": b_train / (t / E)})
    t = median_time(engine_floss_step(1), reps=5)
    rows.append({"what": "flossing step (k=75, L=55, QR every step)", "E": 1,
                 "baseline ms/network": 1e3 * b_floss, "engine ms/step": 1e3 * t,
                 "engine ms/network": 1e3 * t / 1, "speed-up per network": b_floss / t})
    # the window kernel's loop compiled (csrc/window_qr.cpp) and in Python, alternating with each other and
    # with the baseline's flossing step, so all three see the same minutes of this noisy machine
    for E in (9, 18):
        win = _time_floss_windows(E)
        for mode in ("compiled", "python"):
            t = win[mode] / 1e3
            rows.append({"what": f"flossing step (k=75, L=55, QR every step), window loop {mode}", "E": E,
                         "baseline ms/network": win["baseline"], "engine ms/step": 1e3 * t,
                         "engine ms/network": 1e3 * t / E, "speed-up per network": win["baseline"] / (1e3 * t / E)})
    table(rows[1:])
    if native.available():
        loop = _time_loops(9)
        print(f"The training step's time loop from C++ vs from Python (`FLOSS_NATIVE=0`, the same ATen calls), E = 9, "
              f"alternating, median of 9: {loop['compiled']:.1f} vs {loop['python']:.1f} ms, "
              f"{loop['python'] / loop['compiled']:.2f}x\n")
    else:
        print(f"(compiled time loop unavailable: {native.status()})\n")


def _time_floss_windows(E: int, reps: int = 9) -> dict:
    """Median ms of one engine flossing step with the window kernel's loop compiled and in Python (the
    fallback, forced here by ``fastqr._native_window``), and of the baseline's flossing step, alternating."""
    from floss_core import fastqr

    step, native_window = engine_floss_step(E), fastqr._native_window
    params, Q0, gen = baseline.init_network(0, N=80, k=75)
    opt = baseline._adam([params["J"], params["b"], params["W_in"]], 1e-3)

    def b_step():                              # what baseline.time_floss_step times, one step
        baseline.floss_step(params, Q0, opt, gen, L=55, transient=16)
    times: dict = {"compiled": [], "python": [], "baseline": []}
    try:
        for i in range(reps + 1):
            for mode in times:
                fastqr._native_window = native_window if mode == "compiled" else (lambda *a: False)
                t0 = time.perf_counter()
                (b_step if mode == "baseline" else step)()
                if i:                                  # the first round warms all three up
                    times[mode].append(time.perf_counter() - t0)
    finally:
        fastqr._native_window = native_window
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def _time_loops(E: int, reps: int = 9) -> dict:
    """Median ms of one engine training step with the compiled and with the Python time loop, alternating."""
    step, old = engine_train_step(E), os.environ.get("FLOSS_NATIVE")
    times: dict = {"compiled": [], "python": []}
    try:
        for i in range(reps + 1):
            for mode in times:
                os.environ["FLOSS_NATIVE"] = "1" if mode == "compiled" else "0"
                t0 = time.perf_counter()
                step()
                if i:                                  # the first round warms both up
                    times[mode].append(time.perf_counter() - t0)
    finally:
        if old is None:
            os.environ.pop("FLOSS_NATIVE", None)
        else:
            os.environ["FLOSS_NATIVE"] = old
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def section_scaling() -> None:
    print("## Scaling: flossing step vs training step (engine, ms per step)\n")
    rows = []
    base = dict(E=1, N=80, k=75, L=55, qr_every=1)
    variants = [{}, {"N": 40, "k": 35}, {"N": 160, "k": 150}, {"k": 8}, {"k": 32}, {"L": 110}, {"E": 4}, {"E": 16},
                {"qr_every": 2}, {"qr_every": 5}]
    t_train = median_time(engine_train_step(1), reps=3)
    for v in variants:
        cfg = {**base, **v}
        t = median_time(engine_floss_step(**cfg), reps=3)
        rows.append({**cfg, "floss ms": 1e3 * t, "floss / train(E=1, paper)": t / t_train})
    table(rows)
    rows = []
    for v in [{}, {"N": 40}, {"N": 160}, {"T_": 150}, {"T_": 600}, {"E": 4}, {"E": 16}, {"E": 32}]:
        cfg = {"E": 1, "N": 80, "B": 16, "T_": 300, **v}
        t = median_time(engine_train_step(**cfg), reps=3)
        rows.append({"E": cfg["E"], "N": cfg["N"], "T": cfg["T_"], "train ms": 1e3 * t,
                     "ms per network": 1e3 * t / cfg["E"]})
    table(rows)


def section_flops(peak: float) -> None:
    print("## Achieved FLOP/s of the ensemble training step\n")
    rows = []
    for E in (1, 9, 18, 36):
        t = median_time(engine_train_step(E), reps=3)
        g = train_flops(E) / t / 1e9
        rows.append({"E": E, "GFLOP per step": train_flops(E) / 1e9, "ms": 1e3 * t, "GFLOP/s": g,
                     "share of large-matmul GFLOP/s": g / peak})
    table(rows)


def section_qr() -> None:
    print("## QR interval and method: accuracy vs speed (float32, rnn N=80, g=2, k=75, 300-step window; reference: float64, QR every step)\n")
    model = M.ModelConfig(hidden=80, gain=2.0)
    params = M.init_ensemble(model, 1, 1, [0])
    x = torch.randint(0, 2, (300, 1, 1, 1), generator=torch.Generator().manual_seed(1)).float()
    u = M.drive(model, params, x)
    step, jac = M.step_fn(model, params), M.jacobian_fn(model, params)
    p64 = {k: v.double() for k, v in params.items()}
    ref = lyapunov_spectrum(M.step_fn(model, p64), p64["h0"][:, :1], u.double(), 75, transient=50,
                            jacobian=M.jacobian_fn(model, p64),
                            Q0=random_orthonormal(80, 75, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    Q0 = random_orthonormal(80, 75, generator=torch.Generator().manual_seed(0))
    x0 = params["h0"][:, :1]
    states = M.run_driven(model, params, x0, u)
    rows = []
    for qr in ("householder", "cholesky", "cholesky64", "window kernel (auto)"):
        for every in (1, 2, 5, 10):
            if qr.startswith("window"):
                # the flossing path: floss_core/fastqr.py (CholeskyQR, float64 Gram), states from the fused kernel
                def run():
                    return rnn_lyapunov_spectrum(torch.cat([x0[None], states[:-1]]), params["J"], Q0[None, None],
                                                 transient=50, qr_every=every)
            else:
                def run():
                    return lyapunov_spectrum(step, x0, u, 75, transient=50, qr_every=every, qr=qr,
                                             jacobian=jac, Q0=Q0)
            try:
                diff = (run().double() - ref).abs()
                err8, err = float(diff[..., :8].max()), float(diff.max())
                t = median_time(run, reps=3)
            except RuntimeError as e:  # Cholesky fails when the Gram matrix is not numerically positive definite
                err8, err, t = math.nan, math.nan, math.nan
                print(f"<!-- {qr} every {every}: {str(e).splitlines()[0]} -->")
            rows.append({"qr": qr, "qr_every": every, "max |Δλ| top 8": err8, "max |Δλ| all 75": err,
                         "ms (forward)": 1e3 * t})
    table(rows)


def _engine_e2e(seeds: int, steps: int, floss_steps: int, workers: int, diagnostics: bool):
    """The engine as a user runs it (``python -m floss_core compare --workers W``): a SQLite store and a
    pool of W spawned processes, one torch thread each, the seeds cut into W parts that each train
    both schedules as one ensemble. Returns (wall s, stored records, the plan's seed parts)."""
    import tempfile

    from floss_core import runner
    from floss_core.experiment import make_spec, plan
    from floss_core.store import Store

    spec = make_spec("paper", task="xor", delays=[20], seeds=seeds, schedules=["none", "pre"], steps=steps,
                     pre_steps=floss_steps, diagnostics=diagnostics, device="cpu")
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.db") as store:
        t0 = time.perf_counter()
        eid = runner.run_here(spec, store, max_workers=workers)
        wall = time.perf_counter() - t0
        assert store.experiment(eid)["status"] == "done", store.experiment(eid)
        recs = runner.stored_records(store, eid)
    batch, shards = runner.planned_jobs(spec, "local", workers)
    return wall, recs, [j.member_list(spec) for j in plan(spec, batch=batch, shards=shards)]


def section_e2e(seeds: int, steps: int, floss_steps: int, workers: int) -> None:
    print(f"## End to end: none vs pre, {seeds} seeds, {steps} training steps, {floss_steps} pre-flossing steps "
          f"(paper sizes otherwise), engine with {workers} worker processes\n")
    seed_list = list(range(seeds))
    evals = len(range(0, steps, 100)) + (1 if (steps - 1) % 100 else 0)
    full_evals = 31

    def engine(diagnostics: bool, when: str) -> dict:
        e_wall, recs, parts = _engine_e2e(seeds, steps, floss_steps, workers, diagnostics)
        # each process's own parts, scaled by their own counts; the slowest process sets the wall time,
        # and what the run spent outside the processes' jobs (spawning, importing torch, the store) is
        # added unscaled. Diagnostics snapshots (a fixed number per run) are scaled like evaluations:
        # an overestimate of the engine's full time.
        procs = []
        for part in parts:
            mine = [r for r in recs if (r["schedule"], r["seed"]) in part]
            train_s = sum(r["train_seconds"] for r in mine)
            floss_s = sum(r["floss_seconds"] for r in mine)
            other_s = sum(r["wall_seconds"] for r in mine) - train_s - floss_s
            procs.append((train_s + floss_s + other_s,
                          train_s * 3001 / steps + floss_s * 500 / floss_steps + other_s * full_evals / evals))
        outside = max(0.0, e_wall - max(p[0] for p in procs))
        print(f"engine ({when}, diagnostics {'on' if diagnostics else 'off'}): wall {e_wall:.1f} s, outside the "
              f"jobs {outside:.1f} s, parts of {[len(p) for p in parts]} runs", flush=True)
        return {"when": when, "diagnostics": diagnostics, "wall": e_wall, "recs": recs,
                "full": max(p[1] for p in procs) + outside}

    # the engine runs before the baseline, between its two halves (by seed) and after it: these shared
    # machines drift by up to 2x over minutes, so one engine run beside one baseline run can land in
    # different phases; three runs spread over the baseline's span show what the drift did, and their
    # mean is the engine's time over the same span
    # with the default diagnostics (on), as a user runs it; one run without them at the end
    runs = [engine(True, "before the baseline")]
    # the baseline in its best setting: one process, 1 thread or torch's default (all cores), whichever
    # runs its training step faster right now (on this machine 1 thread usually does; 2 threads vary more)
    threads = torch.get_num_threads()
    trial = {}
    for th in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(th)
        trial[th] = baseline.time_train_step(reps=5)
    best = min(trial, key=trial.get)
    print("baseline training step by torch threads: " + ", ".join(f"{th}: {1e3 * t:.1f} ms" for th, t in trial.items())
          + f"; the baseline runs with {best}", flush=True)
    half = (len(seed_list) + 1) // 2
    base, b_wall = [], 0.0
    for part, seeds_part in enumerate((seed_list[:half], seed_list[half:])):
        torch.set_num_threads(best)
        try:
            t0 = time.perf_counter()
            base += baseline.run_comparison(seeds_part, ["none", "pre"], steps=steps, floss_steps=floss_steps)
            b_part = time.perf_counter() - t0
        finally:
            torch.set_num_threads(threads)
        b_wall += b_part
        print(f"baseline seeds {seeds_part[0]}-{seeds_part[-1]}: wall {b_part:.1f} s", flush=True)
        if part == 0:
            runs.append(engine(True, "between the baseline's halves"))
    print(f"baseline: wall {b_wall:.1f} s", flush=True)
    runs += [engine(True, "after the baseline"), engine(False, "after the baseline")]
    b_train = sum(r["train_seconds"] for r in base)
    b_floss = sum(r["floss_seconds"] for r in base)
    b_other = b_wall - b_train - b_floss
    full_b = b_train * 3001 / steps + b_floss * 500 / floss_steps + b_other * full_evals / evals

    rows = []
    key = lambda r: (r["schedule"], r["seed"])  # noqa: E731
    for run in runs:
        agree = sum(a["success"] == b["success"] for a, b in zip(sorted(base, key=key), sorted(run["recs"], key=key)))
        rows.append({"engine run": run["when"], "diagnostics": "on" if run["diagnostics"] else "off",
                     "baseline s": b_wall, "engine s": run["wall"], "ratio (measured)": b_wall / run["wall"],
                     "baseline full min (extrap.)": full_b / 60, "engine full min (extrap.)": run["full"] / 60,
                     "ratio (full, extrap.)": full_b / run["full"], "same success as baseline": f"{agree}/{len(base)}"})
    on = [r for r in runs if r["diagnostics"]]
    mean_wall = sum(r["wall"] for r in on) / len(on)
    mean_full = sum(r["full"] for r in on) / len(on)
    rows.append({"engine run": f"mean of the {len(on)} runs with diagnostics", "diagnostics": "on", "baseline s": b_wall,
                 "engine s": mean_wall, "ratio (measured)": b_wall / mean_wall,
                 "baseline full min (extrap.)": full_b / 60, "engine full min (extrap.)": mean_full / 60,
                 "ratio (full, extrap.)": full_b / mean_full, "same success as baseline": ""})
    print()
    table(rows)
    print(f"Baseline ({best} torch thread{'s' if best > 1 else ''}) parts: train {b_train:.1f} s, flossing {b_floss:.1f} s, "
          f"evaluation {b_other:.1f} s. 'Same success' compares the same protocol with different random streams.\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="machine,steps,scaling,flops,qr,e2e")
    ap.add_argument("--seeds", type=int, default=9)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--floss-steps", type=int, default=30)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="engine worker processes for the end-to-end section (default: all cores)")
    a = ap.parse_args()
    only = set(a.only.split(","))
    # the allocator setting the engine's worker processes use (native.keep_freed_memory); set here too, so
    # the in-process baseline and per-step figures get it as well (it can only narrow the ratios)
    native.keep_freed_memory()
    print(f"`{' '.join(['OMP_NUM_THREADS=' + os.environ.get('OMP_NUM_THREADS', '(default)'), 'python'] + sys.argv)}` "
          f"on {time.strftime('%Y-%m-%d %H:%M')}\n")
    peak = section_machine()
    if "steps" in only:
        section_steps()
    if "scaling" in only:
        section_scaling()
    if "flops" in only:
        section_flops(peak)
    if "qr" in only:
        section_qr()
    if "e2e" in only:
        section_e2e(a.seeds, a.steps, a.floss_steps, a.workers)
    try:
        print("git " + subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout)
    except OSError:
        pass


if __name__ == "__main__":
    main()
