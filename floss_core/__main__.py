"""Command line: ``python -m floss_core {spectrum,floss,compare,...} [--json]``.

Bad input gets one line on stderr naming the valid values, and exit code 2. Human-readable tables
by default, one JSON object on stdout with ``--json``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and exit code 2."""

    def error(self, message: str):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _fail(prog: str, message: str):
    sys.stderr.write(f"floss_core {prog}: error: {message}\n")
    raise SystemExit(2)


def _int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    return value


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _fmt(x, nd=3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def _print_table(rows: list[dict], columns: list[tuple[str, str]]) -> None:
    cells = [[h for _, h in columns]] + [[_fmt(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


# ------------------------------------------------------------------------------------ spectrum
def _add_spectrum(sub) -> None:
    p = sub.add_parser("spectrum", help="Lyapunov spectrum of a freshly initialised network")
    p.add_argument("--arch", choices=["rnn", "gru", "lstm"], default="rnn")
    p.add_argument("--hidden", type=_int, default=80)
    p.add_argument("--gain", type=_finite_float, default=1.0)
    p.add_argument("--k", type=_int, default=None, help="exponents (default: the state dimension)")
    p.add_argument("--steps", type=_int, default=1000)
    p.add_argument("--transient", type=_int, default=100)
    p.add_argument("--qr-every", type=_int, default=1)
    p.add_argument("--seed", type=_int, default=0)
    p.add_argument("--bias", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--input", choices=["none", "bits"], default="none")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--json", action="store_true")


def _cmd_spectrum(a) -> None:
    import torch
    from . import models as M
    from .lyapunov import lyapunov_spectrum
    from .train import resolve_device

    try:
        cfg = M.ModelConfig(arch=a.arch, hidden=a.hidden, gain=a.gain, bias=a.bias)
        M.validate_model(cfg)
        dev = resolve_device(a.device)
        d = M.state_dim(cfg)
        k = d if a.k is None else a.k
        if not 1 <= k <= d:
            raise ValueError(f"k must be in 1..{d}, got {k}")
        t0 = time.perf_counter()
        params = {n: v.to(dev) for n, v in M.init_ensemble(cfg, 1, 1, [a.seed]).items()}
        gen = torch.Generator().manual_seed(a.seed)
        x = torch.randint(0, 2, (a.steps, 1, 1, 1), generator=gen).float() if a.input == "bits" \
            else torch.zeros(a.steps, 1, 1, 1)
        with torch.no_grad():
            lam = lyapunov_spectrum(M.step_fn(cfg, params), params["h0"][:, :1], M.drive(cfg, params, x.to(dev)), k,
                                    jacobian=M.jacobian_fn(cfg, params), transient=a.transient,
                                    qr_every=a.qr_every, generator=gen)[0, 0].cpu()
    except ValueError as e:
        _fail("spectrum", str(e))
    out = {"exponents": lam.tolist(), "sum": float(lam.sum()), "arch": a.arch, "hidden": a.hidden,
           "gain": a.gain, "k": k, "steps": a.steps, "transient": a.transient, "qr_every": a.qr_every,
           "input": a.input, "device": str(dev), "seconds": time.perf_counter() - t0}
    if a.json:
        print(json.dumps(out))
        return
    print(f"{a.arch} N={a.hidden} g={a.gain} k={k}: {out['seconds']:.2f} s on {dev}")
    print("λ (per step): " + " ".join(f"{v:+.4f}" for v in out["exponents"]))
    print(f"sum = {out['sum']:+.4f}")


# ------------------------------------------------------------------------------------ floss
def _add_floss(sub) -> None:
    p = sub.add_parser("floss", help="floss a freshly initialised network with no task")
    p.add_argument("--arch", choices=["rnn", "gru", "lstm"], default="rnn")
    p.add_argument("--hidden", type=_int, default=80)
    p.add_argument("--gain", type=_finite_float, default=1.0)
    p.add_argument("--k", type=_int, default=8)
    p.add_argument("--floss-steps", type=_int, default=300)
    p.add_argument("--floss-len", type=_int, default=55)
    p.add_argument("--transient", type=_int, default=16)
    p.add_argument("--lr", type=_finite_float, default=1e-3)
    p.add_argument("--seed", type=_int, default=0)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--json", action="store_true")


def _cmd_floss(a) -> None:
    from . import models as M
    from .train import FlossConfig, floss_fresh

    try:
        if a.floss_steps < 0:
            raise ValueError(f"floss-steps must be >= 0, got {a.floss_steps}")
        t0 = time.perf_counter()
        r = floss_fresh(M.ModelConfig(arch=a.arch, hidden=a.hidden, gain=a.gain),
                        FlossConfig(k=a.k, seq_len=a.floss_len, transient=a.transient, lr=a.lr),
                        a.floss_steps, [a.seed], device=a.device)
    except ValueError as e:
        _fail("floss", str(e))
    out = {"before": r["before"][0].tolist(), "after": r["after"][0].tolist(), "arch": a.arch, "hidden": a.hidden,
           "gain": a.gain, "k": a.k, "floss_steps": a.floss_steps, "seconds": time.perf_counter() - t0}
    if a.json:
        print(json.dumps(out))
        return
    print(f"flossed {a.arch} N={a.hidden} g={a.gain} for {a.floss_steps} steps (k={a.k}) in {out['seconds']:.1f} s")
    print("before: " + " ".join(f"{v:+.4f}" for v in out["before"]))
    print("after:  " + " ".join(f"{v:+.4f}" for v in out["after"]))


# ------------------------------------------------------------------------------------ compare
def _add_comparison_args(p) -> None:
    """The arguments of a comparison (compare and submit share them)."""
    p.add_argument("--preset", choices=["paper", "quick"], default="quick")
    p.add_argument("--task", choices=["copy", "xor", "parity", "csv"], default=None)
    p.add_argument("--delay", type=_int_list, default=None, help="one delay or a comma-separated sweep")
    p.add_argument("--channels", type=_int, default=None)
    p.add_argument("--order", type=_int, default=None, help="parity over 2**order bits")
    p.add_argument("--csv", default=None, help="CSV file of the user's series (task csv)")
    p.add_argument("--arch", choices=["rnn", "gru", "lstm"], default=None)
    p.add_argument("--hidden", type=_int, default=None)
    p.add_argument("--gain", type=_finite_float, default=None)
    p.add_argument("--seeds", type=_int, default=None)
    p.add_argument("--steps", type=_int, default=None)
    p.add_argument("--seq-len", type=_int, default=None)
    p.add_argument("--schedules", default="none,pre", help="comma-separated: none,pre,inter,pre+inter,adaptive,joint")
    p.add_argument("--k", type=_int, default=None)
    p.add_argument("--qr-every", type=_int, default=None)
    p.add_argument("--pre-steps", type=_int, default=None)
    p.add_argument("--inter-steps", type=_int, default=None)
    p.add_argument("--inter-at", type=_int_list, default=None)
    p.add_argument("--every", type=_int, default=None)
    p.add_argument("--threshold", type=_finite_float, default=None)
    p.add_argument("--weight", type=_finite_float, default=None)
    p.add_argument("--success-acc", type=_finite_float, default=None)
    p.add_argument("--name", default=None)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")


def spec_from_args(a):
    """A validated ComparisonSpec from parsed comparison arguments (ValueError on bad input)."""
    from .experiment import make_spec

    return make_spec(a.preset, task=a.task, delays=a.delay, channels=a.channels, order=a.order, csv=a.csv,
                     arch=a.arch, hidden=a.hidden, gain=a.gain, seeds=a.seeds, steps=a.steps, seq_len=a.seq_len,
                     schedules=a.schedules, k=a.k, qr_every=a.qr_every, pre_steps=a.pre_steps,
                     inter_steps=a.inter_steps, inter_at=a.inter_at, every=a.every, threshold=a.threshold,
                     weight=a.weight, success_acc=a.success_acc, name=a.name, device=a.device)


SUMMARY_COLUMNS = [("delay", "delay"), ("schedule", "schedule"), ("successes", "solved"), ("n", "of"),
                   ("success_rate", "rate"), ("median_convergence", "median conv"),
                   ("iqr_convergence", "IQR conv"), ("final_acc", "final acc"),
                   ("lambda1_before", "λ1 before"), ("lambda1_after", "λ1 after"),
                   ("log10_kappa_before", "log10κ before"), ("log10_kappa_after", "log10κ after"),
                   ("wall_seconds", "wall s"), ("floss_share", "floss share")]


def print_summary(summary: list[dict], *, as_json: bool, extra: dict | None = None) -> None:
    if as_json:
        out = dict(extra or {})
        out["schedules"] = {}
        for row in summary:
            key = row["schedule"] if len({r["delay"] for r in summary}) == 1 else f"{row['schedule']}@{row['delay']}"
            out["schedules"][key] = row
        print(json.dumps(out, default=lambda x: None))
        return
    _print_table(summary, SUMMARY_COLUMNS)


def _add_compare(sub) -> None:
    p = sub.add_parser("compare", help="baseline-vs-flossed comparison, run in this process")
    _add_comparison_args(p)
    p.add_argument("--json", action="store_true")


def _cmd_compare(a) -> None:
    from .experiment import job_units, plan, run_comparison, summarize

    try:
        spec = spec_from_args(a)
    except ValueError as e:
        _fail("compare", str(e))
    total = sum(job_units(spec, j) for j in plan(spec))
    bar = None
    if not a.json and sys.stderr.isatty():
        from tqdm import tqdm
        bar = tqdm(total=total, unit="step", file=sys.stderr)

    def progress(done, _total, phase):
        if bar is not None:
            bar.n = done
            bar.set_description(phase[:40], refresh=False)
            bar.refresh()

    t0 = time.perf_counter()
    records = run_comparison(spec, on_progress=progress)
    if bar is not None:
        bar.close()
    print_summary(summarize(records), as_json=a.json,
                  extra={"name": spec.name, "preset": spec.preset, "seeds": list(spec.seeds),
                         "seconds": time.perf_counter() - t0})


# ------------------------------------------------------------------------------------ main
COMMANDS = {"spectrum": (_add_spectrum, _cmd_spectrum), "floss": (_add_floss, _cmd_floss),
            "compare": (_add_compare, _cmd_compare)}


def main(argv=None) -> None:
    parser = _Parser(prog="floss_core", description="Gradient Flossing Lab")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add, _ in COMMANDS.values():
        add(sub)
    args = parser.parse_args(argv)
    COMMANDS[args.command][1](args)


if __name__ == "__main__":
    main()
