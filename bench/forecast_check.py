"""Check the trainability forecast against measured gradients and observed training success.

For a few untrained networks it prints one markdown table row each:

* the forecast: λ_1 measured on a long window of random input bits (``adapters.forecast_model``) and
  the horizon log(tol)/λ_1 a gradient can reach before shrinking below ``tol``;
* the measured reach: the first τ at which ‖∂L/∂h_{T−τ}‖ of the untrained network (a random
  projection of the final state, ``lyapunov.gradient_vs_horizon``) falls below tol × its value at τ = 0,
  median over seeds (">T" when it never does within the window);
* training success without flossing on the delayed copy task at each delay (the ``quick`` preset's
  loop, shortened: ``--steps`` steps, ``--seeds`` seeds): solved seeds and mean final accuracy;
* with ``--floss``, the same with the ``pre`` schedule (a flossing phase before training).

    OMP_NUM_THREADS=1 python bench/forecast_check.py --no-train         # forecasts and gradient reach: seconds
    OMP_NUM_THREADS=1 python bench/forecast_check.py --floss            # the README table: 22 min on a busy 2-core box
    OMP_NUM_THREADS=1 python bench/forecast_check.py --steps 60 --seeds 2 --delays 10   # a smoke run
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from floss_core import models as M  # noqa: E402
from floss_core.adapters import forecast, forecast_model, gradient_reach  # noqa: E402
from floss_core.experiment import make_spec, run_comparison, summarize  # noqa: E402
from floss_core.lyapunov import gradient_vs_horizon  # noqa: E402

NETWORKS = [("rnn", 0.5), ("rnn", 1.0), ("rnn", 1.5), ("rnn", 2.0), ("lstm", 1.0)]


def measured_reach(cfg: M.ModelConfig, seed: int, *, window: int, tol: float) -> float:
    """Where the untrained network's gradient falls below tol of its start, driven by random bits."""
    params = M.init_ensemble(cfg, 1, 1, [seed])
    bits = torch.randint(0, 2, (window, 1, 1, 1), generator=torch.Generator().manual_seed(1000 + seed)).float()
    norms = gradient_vs_horizon(M.step_fn(cfg, params), params["h0"][:, :1], M.drive(cfg, params, bits),
                                generator=torch.Generator().manual_seed(seed))[:, 0, 0]
    return gradient_reach(norms, tol=tol)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--delays", default="10,30")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=400, help="task training steps per run (the quick preset)")
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--window", type=int, default=300, help="steps of the measured gradient curve")
    p.add_argument("--floss", action="store_true", help="also train with a pre-flossing phase")
    p.add_argument("--no-train", action="store_true", help="forecasts and gradient curves only (seconds)")
    a = p.parse_args(argv)
    delays = [int(d) for d in a.delays.split(",")]
    schedules = ["none", "pre"] if a.floss else ["none"]
    t0 = time.perf_counter()
    head = ["network", "λ_1", "forecast reach", "measured reach (median)"] + [f"forecast d={d}" for d in delays]
    head += [] if a.no_train else [f"copy d={d} {s}: solved, acc" for d in delays for s in schedules]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for arch, gain in NETWORKS:
        cfg = M.ModelConfig(arch=arch, hidden=a.hidden, gain=gain)
        lam1 = [forecast_model(cfg, max(delays), tol=a.tol, seed=s)["lambda1"] for s in range(a.seeds)]
        lam = statistics.mean(lam1)
        horizon = math.log(a.tol) / lam if lam < 0 else math.inf
        reach = statistics.median(measured_reach(cfg, s, window=a.window, tol=a.tol) for s in range(a.seeds))
        cells = [f"{arch} N={a.hidden} g={gain}", f"{lam:+.3f}", "∞" if math.isinf(horizon) else f"{horizon:.0f}",
                 f">{a.window}" if math.isinf(reach) else f"{reach:.0f}"]
        cells += ["floss" if forecast(lam, d, tol=a.tol)["flossing_recommended"] else "trains" for d in delays]
        if a.no_train:
            print("| " + " | ".join(cells) + " |", flush=True)
            continue
        spec = make_spec("quick", task="copy", arch=arch, hidden=a.hidden, gain=gain, delays=delays,
                         seeds=a.seeds, steps=a.steps, schedules=schedules, diagnostics=False, device="cpu",
                         eval_every=50)
        rows = {(r["delay"], r["schedule"]): r for r in summarize(run_comparison(spec))}
        cells += [f"{rows[(d, s)]['successes']}/{rows[(d, s)]['n']}, {rows[(d, s)]['final_acc']:.2f}"
                  for d in delays for s in schedules]
        print("| " + " | ".join(cells) + " |", flush=True)
    trained = "" if a.no_train else f", {a.steps} training steps (quick preset, success = test accuracy >= 0.95)"
    print(f"\n{a.seeds} seeds{trained}, tol = {a.tol:g}; {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
