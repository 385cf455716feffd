"""Command line (``python -m floss_core ...`` runs ``main``): ``python -m floss_core {spectrum,floss,compare,...} [--json]``.

Bad input gets one line on stderr naming the valid values, and exit code 2. Human-readable tables
by default, one JSON object on stdout with ``--json``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

from . import options as O
from . import settings
from .fmt import duration
from .stats import is_missing
from .options import _finite_float, _int, _int_list  # noqa: F401  (argparse types shared with the option table)


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and exit code 2."""

    def error(self, message: str):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _fail(prog: str, message: str):
    sys.stderr.write(f"floss_core {prog}: error: {message}\n")
    raise SystemExit(2)


def _strict(value):
    """``value`` with every non-finite float replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def _print_json(value) -> None:
    """One strict JSON object on stdout: a missing or undefined figure is null, never NaN."""
    print(json.dumps(_strict(value), allow_nan=False, default=lambda x: None))


def _fmt(x, nd=3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def _print_table(rows: list[dict], columns: list[tuple[str, str]]) -> None:
    cells = [[h for _, h in columns]] + [[_fmt(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


def _add_network_args(p) -> None:
    """The freshly initialised network that spectrum, floss and forecast look at."""
    p.add_argument("--arch", choices=list(O.ARCHS), default="rnn")
    p.add_argument("--hidden", type=_int, default=80)
    p.add_argument("--gain", type=_finite_float, default=1.0)


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


def _finite_or_fail(prog: str, values, what: str) -> None:
    if not all(math.isfinite(v) for v in values):
        _fail(prog, f"{what} are not finite (the state left the float range: the gain or the inputs are too "
                    f"large for this network); nothing to report")


def _cmd_spectrum(a) -> None:
    import warnings

    import torch
    from . import models as M
    from .lyapunov import LyapunovAccuracyWarning, lyapunov_spectrum
    from .tasks import random_bits
    from .train import resolve_device

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

    from . import models as M
    from .train import FLOSS_DESIGNS, MEASURE_STEPS, floss_fresh, save_params

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



# ------------------------------------------------------------------------------------ compare
_add_comparison_args = O.add_arguments   # the comparison's arguments: generated from the option table
spec_from_args = O.spec_from_args


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
            out["schedules"][key] = dict(row)   # a figure that does not exist is null (_print_json)
        _print_json(out)
        return
    _print_table(summary, SUMMARY_COLUMNS)


def _add_compare(sub) -> None:
    p = sub.add_parser("compare", help="baseline-vs-flossed comparison, run in this process")
    _add_comparison_args(p)
    p.add_argument("--store", default=None, help="also store the result there, like a queued experiment")
    _add_executor_args(p)
    p.add_argument("--json", action="store_true")


def _cmd_compare(a) -> None:
    from .experiment import job_units, plan, run_comparison, summarize

    try:
        spec = spec_from_args(a)
    except ValueError as e:
        _fail("compare", str(e))
    options = _executor_options("compare", a)
    if a.store is not None or options["executor"] != "local" or options["max_workers"] > 1:
        return _compare_via_runner(a, spec, options)
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


# ------------------------------------------------------------------------------------ store and runner
def _add_store_arg(p) -> None:
    p.add_argument("--store", default=None, help="store file (default: $FLOSS_STORE, else ./floss_data/floss.db)")


def _add_executor_args(p) -> None:
    p.add_argument("--executor", choices=["local", "dask"], default=None,
                   help="local (this machine) or dask (a Dask cluster); default $FLOSS_EXECUTOR, else local")
    p.add_argument("--scheduler", default=None,
                   help="Dask scheduler address, e.g. tcp://HOST:8786 (default $FLOSS_SCHEDULER)")
    p.add_argument("--workers", type=_int, default=None,
                   help="local: parallel worker processes, one torch thread each, the seeds shared out "
                        "among them (default $FLOSS_WORKERS, else auto = one per CPU core, at most 8)")


def _executor_options(prog: str, a) -> dict:
    """--executor / --scheduler / --workers, each defaulting to its FLOSS_* setting (a bad one: exit 2)."""
    try:
        a.executor = a.executor or settings.get("FLOSS_EXECUTOR")
        a.scheduler = a.scheduler or settings.get("FLOSS_SCHEDULER")
        workers = settings.get("FLOSS_WORKERS") if a.workers is None else a.workers
    except ValueError as e:
        _fail(prog, str(e))
    if workers == "auto":
        from .runner import default_workers

        workers = default_workers()
    if workers < 1:
        _fail(prog, f"workers must be >= 1, got {workers}")
    if a.executor == "dask" and not a.scheduler:
        _fail(prog, "executor dask needs --scheduler tcp://HOST:8786 (or FLOSS_SCHEDULER)")
    a.workers = workers
    return {"executor": a.executor, "scheduler": a.scheduler, "max_workers": workers}


def _open_store(prog: str, path, *, create: bool = True):
    """The store at ``path`` (default location if None); a bad file is one line on stderr and exit 2."""
    from pathlib import Path

    from .store import Store, StoreError, default_store_path

    path = Path(path) if path is not None else default_store_path()
    if not create and not path.exists():
        _fail(prog, f"no store at {path}; queue an experiment with submit first, or pass --store PATH")
    try:
        return Store(path, create=create)
    except StoreError as e:
        _fail(prog, str(e))


def _compare_via_runner(a, spec, options: dict) -> None:
    """compare --store / --executor dask / --workers N: run through the runner, which stores the result
    (in a temporary store if no --store was given) and print the same summary."""
    import tempfile

    from . import runner
    from .experiment import summarize

    with tempfile.TemporaryDirectory(prefix="floss-compare-") as tmp:
        store = _open_store("compare", a.store if a.store is not None else f"{tmp}/floss.db")
        t0 = time.perf_counter()
        try:
            experiment_id = runner.run_here(spec, store, **options)
            row = store.experiment(experiment_id)
            records = runner.stored_records(store, experiment_id)
        finally:
            store.close()
    if row["status"] != "done":  # not bad input (exit 2) but a run that did not finish
        sys.stderr.write(f"floss_core compare: experiment {experiment_id} {row['status']}: {row['error']}\n")
        raise SystemExit(1)
    extra = {"name": spec.name, "preset": spec.preset, "seeds": list(spec.seeds), "seconds": time.perf_counter() - t0}
    if a.store is not None:
        extra["experiment_id"] = experiment_id
        if not a.json:
            print(f"experiment {experiment_id} stored in {a.store}")
    print_summary(summarize(records), as_json=a.json, extra=extra)


def _add_submit(sub) -> None:
    p = sub.add_parser("submit", help="queue a comparison for a worker; prints its experiment id")
    _add_comparison_args(p)
    _add_store_arg(p)
    p.add_argument("--json", action="store_true")


def _cmd_submit(a) -> None:
    from . import runner
    from .runner import stale_after

    try:
        spec = spec_from_args(a)  # refused here, before the store is touched: nothing is queued
    except ValueError as e:
        _fail("submit", str(e))
    store = _open_store("submit", a.store)
    try:
        experiment_id = runner.submit(spec, store)
        alive = store.alive_workers(max_age_s=stale_after())
    finally:
        store.close()
    if a.json:
        _print_json({"experiment_id": experiment_id})
    else:
        print(experiment_id)
    if not alive:
        sys.stderr.write(f"queued experiment {experiment_id}; no worker is running: "
                         f"start one with `python -m floss_core worker --store {store.path}`\n")


def _add_worker(sub) -> None:
    p = sub.add_parser("worker", help="run queued experiments (until stopped, or --exit-when-idle)")
    _add_store_arg(p)
    p.add_argument("--exit-when-idle", action="store_true", help="drain the queue, then exit")
    _add_executor_args(p)
    p.add_argument("--stale-after", type=_finite_float, default=None,
                   help="seconds without a heartbeat before a worker counts as dead (default $FLOSS_STALE_S, else 15)")
    p.add_argument("--poll", type=_finite_float, default=1.0, help="seconds between queue checks when idle")
    p.add_argument("--worker-id", default=None, help=argparse.SUPPRESS)


def _cmd_worker(a) -> None:
    import logging
    import signal

    from . import runner

    options = _executor_options("worker", a)
    try:
        stale = a.stale_after if a.stale_after is not None else runner.stale_after()
    except ValueError as e:
        _fail("worker", str(e))
    if not stale > 0 or not a.poll > 0:
        _fail("worker", "--stale-after and --poll must be > 0 seconds")
    store = _open_store("worker", a.store)  # a foreign file is refused here, untouched
    store.close()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    # SIGTERM leaves like Ctrl-C: the worker deregisters and hands its experiment back to the queue.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        ran = runner.worker_loop(store.path, worker_id=a.worker_id, exit_when_idle=a.exit_when_idle,
                                 poll_s=a.poll, stale_s=stale, **options)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    logging.getLogger("floss_core.runner").info("worker done: %d experiment(s) run", ran)


def _add_status(sub) -> None:
    p = sub.add_parser("status", help="experiments with progress and results, or one experiment's runs")
    p.add_argument("experiment_id", nargs="?", type=_int, default=None)
    _add_store_arg(p)
    p.add_argument("--json", action="store_true")


def _headlines(runs) -> dict:
    from .store import SCORED_RUN_STATUSES

    """{experiment_id: {schedule (or schedule@delay): {successes, finished, n, success_rate}}}."""
    out: dict = {}
    for (eid, delay, schedule), g in runs.groupby(["experiment_id", "delay", "schedule"], sort=False):
        finished = g[g["status"].isin(SCORED_RUN_STATUSES)]
        wins = int(finished["success"].fillna(False).astype(bool).sum())
        multi = runs.loc[runs["experiment_id"] == eid, "delay"].nunique() > 1
        out.setdefault(int(eid), {})[f"{schedule}@{delay}" if multi else schedule] = {
            "successes": wins, "finished": len(finished), "n": len(g),
            "success_rate": wins / len(finished) if len(finished) else None}
    return out


def _experiment_row(e: dict, headline: dict) -> dict:
    total = e["progress_total"]
    fraction = None if is_missing(total) or total == 0 else min(e["progress_step"] / total, 1.0)
    if e["status"] == "done":
        fraction = 1.0
    eta = e["eta_seconds"]
    return {"id": int(e["id"]), "name": e["name"], "status": e["status"], "progress": fraction,
            "eta_seconds": eta if e["status"] == "running" and eta is not None and math.isfinite(eta) else None,
            "runs": int(e["n_runs"]), "finished": int(e["n_finished"]), "error": e["error"],
            "created_at": e["created_at"].isoformat(), "headline": headline}


def _cmd_status(a) -> None:
    store = _open_store("status", a.store, create=False)
    try:
        if a.experiment_id is None:
            experiments = store.experiments().to_dict("records")
            runs = store.runs()
        else:
            try:
                experiments = [store.experiment(a.experiment_id)]
            except KeyError:
                _fail("status", f"no experiment {a.experiment_id} in {store.path}")
            runs = store.runs(a.experiment_id)
    finally:
        store.close()
    heads = _headlines(runs)
    rows = [_experiment_row(e, heads.get(int(e["id"]), {})) for e in experiments]
    if a.experiment_id is None:
        if a.json:
            _print_json({"experiments": rows})
            return
        if not rows:
            print("no experiments yet")
        for r in rows:
            r["progress_text"] = "-" if r["progress"] is None else f"{100 * r['progress']:.0f}%"
            r["eta_text"] = duration(r["eta_seconds"])
            r["headline_text"] = "  ".join(f"{k} {v['successes']}/{v['finished']}" for k, v in r["headline"].items()
                                           if v["finished"]) or (r["error"] or "-")
        if rows:
            _print_table(rows, [("id", "id"), ("name", "name"), ("status", "status"), ("progress_text", "progress"),
                                ("eta_text", "ETA"), ("headline_text", "solved / finished per schedule")])
        return
    run_rows = [{"run_id": int(r["run_id"]), "delay": int(r["delay"]), "schedule": r["schedule"],
                 "seed": int(r["seed"]), "status": r["status"],
                 "success": None if is_missing(r["success"]) else bool(r["success"]),
                 "convergence_step": None if is_missing(r["convergence_step"]) else int(r["convergence_step"]),
                 "wall_seconds": None if is_missing(r["wall_seconds"]) else float(r["wall_seconds"]),
                 "attempts": int(r["attempts"])}
                for r in runs.to_dict("records")]
    if a.json:
        _print_json({"experiment": rows[0], "runs": run_rows})
        return
    e = rows[0]
    progress = "-" if e["progress"] is None else f"{100 * e['progress']:.0f}%"
    print(f"experiment {e['id']} {e['name']!r}: {e['status']}, {progress}, ETA {duration(e['eta_seconds'])}"
          + (f", error: {e['error']}" if e["error"] else ""))
    _print_table(run_rows, [("delay", "delay"), ("schedule", "schedule"), ("seed", "seed"), ("status", "status"),
                            ("success", "solved"), ("convergence_step", "conv step"), ("wall_seconds", "wall s")])


def _add_cancel(sub) -> None:
    p = sub.add_parser("cancel", help="stop a queued or running experiment")
    p.add_argument("experiment_id", type=_int)
    _add_store_arg(p)


def _cmd_cancel(a) -> None:
    from . import runner

    store = _open_store("cancel", a.store, create=False)
    try:
        before = store.experiment(a.experiment_id)["status"]
        status = runner.cancel(store, a.experiment_id)
    except KeyError:
        _fail("cancel", f"no experiment {a.experiment_id} in {store.path}")
    finally:
        store.close()
    if before not in ("queued", "running"):
        print(f"experiment {a.experiment_id} is already {before}; nothing to cancel")
    elif status == "cancelled":
        print(f"experiment {a.experiment_id} cancelled")
    else:
        print(f"experiment {a.experiment_id}: cancel requested; its worker stops within a few seconds")


# ------------------------------------------------------------------------------------ report
def _add_report(sub) -> None:
    p = sub.add_parser("report", help="export an experiment (or several, pooled) as HTML, PDF or a data zip")
    p.add_argument("experiment_id", type=_int, nargs="+", help="one experiment id, or several to pool")
    _add_store_arg(p)
    p.add_argument("--format", choices=["html", "pdf", "zip"], default="html")
    p.add_argument("--out", default=None, help="file or existing directory (default: a name derived from "
                                               "the experiment, in the current directory)")


def _cmd_report(a) -> None:
    from .report import ChromiumMissing, write_report

    store = _open_store("report", a.store, create=False)
    try:
        path = write_report(store, a.experiment_id, a.format, a.out)
    except (ValueError, ChromiumMissing) as e:
        _fail("report", str(e))
    except OSError as e:
        _fail("report", f"cannot write {a.out}: {e.strerror or e}")
    finally:
        store.close()
    print(path)


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
    from . import models as M
    from .adapters import forecast_model

    try:
        out = forecast_model(M.ModelConfig(arch=a.arch, hidden=a.hidden, gain=a.gain), a.delay, tol=a.tol,
                             steps=a.steps, transient=a.transient, seed=a.seed)
    except ValueError as e:
        _fail("forecast", str(e))
    if a.json:
        _print_json({**out, "arch": a.arch, "hidden": a.hidden, "gain": a.gain})   # an infinite horizon is null
        return
    print(out["verdict"])


# ------------------------------------------------------------------------------------ main
COMMANDS = {"spectrum": (_add_spectrum, _cmd_spectrum), "floss": (_add_floss, _cmd_floss),
            "compare": (_add_compare, _cmd_compare), "submit": (_add_submit, _cmd_submit),
            "worker": (_add_worker, _cmd_worker), "status": (_add_status, _cmd_status),
            "cancel": (_add_cancel, _cmd_cancel), "report": (_add_report, _cmd_report),
            "forecast": (_add_forecast, _cmd_forecast)}


def main(argv=None) -> None:
    parser = _Parser(prog="floss_core", description="Gradient Flossing Lab")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add, _ in COMMANDS.values():
        add(sub)
    args = parser.parse_args(argv)
    COMMANDS[args.command][1](args)


if __name__ == "__main__":
    main()
