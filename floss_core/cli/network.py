"""The commands about one freshly initialised network: ``spectrum`` (its Lyapunov exponents), ``floss``
(flossed with no task, the exponents before and after) and ``forecast`` (its trainability for a delay).

Building these parsers loads no torch; each command imports what it computes with when it runs."""
from __future__ import annotations

import argparse
import math
import time

from .. import options as O
from ..options import _finite_float, _int
from .common import _fail, _print_json


def _add_network_args(p) -> None:
    """The freshly initialised network that spectrum, floss and forecast look at."""
    p.add_argument("--arch", choices=list(O.ARCHS), default="rnn")
    p.add_argument("--hidden", type=_int, default=80)
    p.add_argument("--gain", type=_finite_float, default=1.0)


def _finite_or_fail(prog: str, values, what: str) -> None:
    if not all(math.isfinite(v) for v in values):
        _fail(prog, f"{what} are not finite (the state left the float range: the gain or the inputs are too "
                    f"large for this network); nothing to report")


# ------------------------------------------------------------------------------------ spectrum
def _add_spectrum(sub) -> None:
    p = sub.add_parser("spectrum", help="Lyapunov spectrum of a freshly initialised network")
    _add_network_args(p)
    p.add_argument("--k", type=_int, default=None, help="exponents (default: the state dimension)")
    p.add_argument("--steps", type=_int, default=1000)
    p.add_argument("--transient", type=_int, default=100)
    p.add_argument("--qr-every", type=_int, default=1)
    p.add_argument("--seed", type=_int, default=0)
    p.add_argument("--bias", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--input", choices=["none", "bits"], default="none")
    p.add_argument("--dtype", choices=list(O.DIAG_DTYPES), default="float64",
                   help="float64 (default: exact down to strongly negative exponents) or float32 (faster; "
                        "exponents below about -1 per step drift)")
    p.add_argument("--device", choices=list(O.DEVICES), default="auto")
    p.add_argument("--json", action="store_true")


def _cmd_spectrum(a) -> None:
    # Not diagnostics.measure_spectrum: the user chooses qr_every, and the spectrum is taken with the
    # Householder QR and refused when lyapunov_spectrum warns that it is untrustworthy.
    import warnings

    import torch
    from .. import models as M
    from ..lyapunov import LyapunovAccuracyWarning, lyapunov_spectrum
    from ..tasks import random_bits
    from ..configs import resolve_device

    dtype = getattr(torch, a.dtype)
    try:
        cfg = M.ModelConfig(arch=a.arch, hidden=a.hidden, gain=a.gain, bias=a.bias)
        M.validate_model(cfg)
        dev = resolve_device(a.device)
        d = M.state_dim(cfg)
        k = d if a.k is None else a.k
        if not 1 <= k <= d:
            raise ValueError(f"k must be in 1..{d}, got {k}")
        t0 = time.perf_counter()
        params = {n: v.to(dev, dtype) for n, v in M.init_ensemble(cfg, 1, 1, [a.seed]).items()}
        gen = torch.Generator().manual_seed(a.seed)
        x = random_bits((a.steps, 1, 1, 1), gen, dtype) if a.input == "bits" \
            else torch.zeros(a.steps, 1, 1, 1, dtype=dtype)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("error", LyapunovAccuracyWarning)   # an untrustworthy spectrum is refused
            lam = lyapunov_spectrum(M.step_fn(cfg, params), params["h0"][:, :1], M.drive(cfg, params, x.to(dev)), k,
                                    jacobian=M.jacobian_fn(cfg, params), transient=a.transient,
                                    qr_every=a.qr_every, generator=gen)[0, 0].cpu()
    except (ValueError, LyapunovAccuracyWarning) as e:
        _fail("spectrum", str(e))
    _finite_or_fail("spectrum", lam.tolist(), "the exponents")
    out = {"exponents": lam.tolist(), "sum": float(lam.sum()), "arch": a.arch, "hidden": a.hidden,
           "gain": a.gain, "k": k, "steps": a.steps, "transient": a.transient, "qr_every": a.qr_every,
           "input": a.input, "dtype": a.dtype, "device": str(dev), "seconds": time.perf_counter() - t0}
    if a.json:
        _print_json(out)
        return
    print(f"{a.arch} N={a.hidden} g={a.gain} k={k} ({a.dtype}): {out['seconds']:.2f} s on {dev}")
    print("λ (per step): " + " ".join(f"{v:+.4f}" for v in out["exponents"]))
    print(f"sum = {out['sum']:+.4f}")


# ------------------------------------------------------------------------------------ floss
# the choices of train.FLOSS_DESIGNS and train.STATE_GRADIENTS, spelled out so that building the parser
# imports no torch (tests/test_cli.py and tests/test_options.py check they agree)
DESIGN_CHOICES = O.DESIGNS
STATE_GRAD_CHOICES = ("full", "auto", "truncated", "one_step", "none")


def _add_floss(sub) -> None:
    p = sub.add_parser("floss", help="floss a freshly initialised network with no task")
    _add_network_args(p)
    p.add_argument("--design", choices=DESIGN_CHOICES, default="lab",
                   help="lab (the lab's default: chosen by bench/floss_study.py) or reference (the paper's code "
                        "exactly); the flags below override single fields")
    p.add_argument("--k", type=_int, default=8)
    p.add_argument("--floss-steps", type=_int, default=None, help="step budget (default: the design's)")
    p.add_argument("--floss-len", type=_int, default=None)
    p.add_argument("--transient", type=_int, default=None)
    p.add_argument("--lr", type=_finite_float, default=None)
    p.add_argument("--state-grad", choices=STATE_GRAD_CHOICES, default=None,
                   help="gradient through the state trajectory: full (the reference), truncated (--state-horizon "
                        "steps back; the lab's), auto (full for stable networks, truncated for chaotic ones: λ_1 on "
                        "the check window), one_step "
                        "(each state's direct dependence on the weights) or none (the one-step Jacobians only)")
    p.add_argument("--state-horizon", type=_int, default=None, help="truncated / auto: steps back (lab: 3)")
    p.add_argument("--through-states", action=argparse.BooleanOptionalAction, default=None,
                   help="the same as --state-grad full / --state-grad none")
    p.add_argument("--stop-tol", type=_finite_float, default=None,
                   help="stop once max |λ_1..k| on a fresh long window is within this (0: the whole budget)")
    p.add_argument("--seed", type=_int, default=0)
    p.add_argument("--save", default=None, metavar="PATH",
                   help="write the flossed network's parameters there (a torch state dict of plain tensors)")
    p.add_argument("--device", choices=list(O.DEVICES), default="auto")
    p.add_argument("--json", action="store_true")


def _save_path(prog: str, text: str):
    """A writable file path for --save: its folder must exist; never a folder itself."""
    from pathlib import Path

    path = Path(text).expanduser()
    if path.is_dir():
        _fail(prog, f"--save {text}: is a folder; give a file name, e.g. {path / 'flossed.pt'}")
    if not path.parent.is_dir():
        _fail(prog, f"--save {text}: folder {path.parent} does not exist")
    return path.resolve()


def _cmd_floss(a) -> None:
    from dataclasses import replace

    from .. import models as M
    from ..configs import FLOSS_DESIGNS
    from ..phases import MEASURE_STEPS, floss_fresh, save_params

    floss, budget = FLOSS_DESIGNS[a.design]
    over = {"seq_len": a.floss_len, "transient": a.transient, "lr": a.lr, "stop_tol": a.stop_tol,
            "state_horizon": a.state_horizon}
    over = {key: v for key, v in over.items() if v is not None}
    if a.through_states is not None and a.state_grad is None:
        a.state_grad = "full" if a.through_states else "none"
    if a.state_grad is not None:
        over["state_grad"] = a.state_grad
    if a.lr is not None and floss.lr_end is not None:
        over["lr_end"] = min(floss.lr_end, a.lr)
    steps = budget if a.floss_steps is None else a.floss_steps
    save = _save_path("floss", a.save) if a.save is not None else None
    try:
        if steps < 0:
            raise ValueError(f"floss-steps must be >= 0, got {steps}")
        floss = replace(floss, k=a.k, **over)
        t0 = time.perf_counter()
        r = floss_fresh(M.ModelConfig(arch=a.arch, hidden=a.hidden, gain=a.gain), floss, steps, [a.seed],
                        device=a.device)
    except ValueError as e:
        _fail("floss", str(e))
    before, after = r["before"][0].tolist(), r["after"][0].tolist()
    _finite_or_fail("floss", before + after, "the exponents before or after flossing")
    out = {"before": before, "after": after, "arch": a.arch, "hidden": a.hidden, "gain": a.gain, "k": a.k,
           "design": a.design, "floss_steps": steps, "steps_taken": r["steps_taken"][0],
           "objective_before": sum(v * v for v in before) / len(before),
           "objective_after": sum(v * v for v in after) / len(after),
           "floss": {key: v for key, v in vars(floss).items()}, "seconds": time.perf_counter() - t0}
    if save is not None:
        try:
            save_params(r["params"], save)
        except OSError as e:
            _fail("floss", f"cannot write {save}: {e.strerror or e}")
        out["saved"] = str(save)
    if a.json:
        _print_json(out)
        return
    print(f"flossed {a.arch} N={a.hidden} g={a.gain} ({a.design} design, k={a.k}): {out['steps_taken']} of "
          f"{steps} steps in {out['seconds']:.1f} s; exponents on a fresh {MEASURE_STEPS}-step window:")
    print("before: " + " ".join(f"{v:+.4f}" for v in out["before"]))
    print("after:  " + " ".join(f"{v:+.4f}" for v in out["after"]))
    print(f"mean λ² over the {a.k}: {out['objective_before']:.4f} -> {out['objective_after']:.4f}")
    if save is not None:
        print(f"saved the flossed parameters to {save}")


# ------------------------------------------------------------------------------------ forecast
def _add_forecast(sub) -> None:
    p = sub.add_parser("forecast", help="trainability forecast of a freshly initialised network for a delay")
    _add_network_args(p)
    p.add_argument("--delay", type=_int, required=True, help="steps the task must bridge")
    p.add_argument("--tol", type=_finite_float, default=1e-3, help="gradient shrink factor counted as lost")
    p.add_argument("--steps", type=_int, default=1000)
    p.add_argument("--transient", type=_int, default=100)
    p.add_argument("--seed", type=_int, default=0)
    p.add_argument("--json", action="store_true")


def _cmd_forecast(a) -> None:
    from .. import models as M
    from ..adapters import forecast_model

    try:
        out = forecast_model(M.ModelConfig(arch=a.arch, hidden=a.hidden, gain=a.gain), a.delay, tol=a.tol,
                             steps=a.steps, transient=a.transient, seed=a.seed)
    except ValueError as e:
        _fail("forecast", str(e))
    if a.json:
        _print_json({**out, "arch": a.arch, "hidden": a.hidden, "gain": a.gain})   # an infinite horizon is null
        return
    print(out["verdict"])
