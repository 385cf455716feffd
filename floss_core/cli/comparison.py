"""The commands about baseline-vs-flossed comparisons: ``compare`` (run one here), ``submit`` (queue one),
``worker`` (run the queue), ``status`` (experiments, or one experiment's runs), ``cancel`` and ``report``.

The comparison's arguments come from the option table (``options.add_arguments``); building these
parsers, ``status`` and ``cancel`` load no torch: the runner and the experiment code load when a
command needs them."""
from __future__ import annotations

import argparse
import sys
import time

from .. import options as O
from ..options import _finite_float, _int
from ..stats import is_missing
from .common import (_add_executor_args, _add_store_arg, _executor_options, _export, _fail, _open_store, _print_json,
                     _print_table)

_add_comparison_args = O.add_arguments   # the comparison's arguments: generated from the option table
spec_from_args = O.spec_from_args


# ------------------------------------------------------------------------------------ compare
SUMMARY_COLUMNS = [("delay", "delay"), ("schedule", "schedule"), ("successes", "solved"), ("n", "of"),
                   ("success_rate", "rate"), ("median_convergence", "median conv"),
                   ("iqr_convergence", "IQR conv"), ("final_acc", "final acc"),
                   ("lambda1_before", "λ1 before"), ("lambda1_after", "λ1 after"),
                   ("log10_kappa_before", "log10κ before"), ("log10_kappa_after", "log10κ after"),
                   ("compute_s_per_run", "train+floss s/run"), ("floss_cost_vs_training", "floss/train"),
                   ("diag_s_per_run", "lab diag s/run"), ("wall_seconds", "wall s")]


def print_summary(summary: list[dict], *, as_json: bool, extra: dict | None = None) -> None:
    if as_json:
        out = dict(extra or {})
        out["schedules"] = {}
        for row in summary:
            key = row["schedule"] if len({r["delay"] for r in summary}) == 1 else f"{row['schedule']}@{row['delay']}"
            out["schedules"][key] = dict(row)   # a figure that does not exist is null (_print_json)
        _print_json(out)
        return
    columns = SUMMARY_COLUMNS
    if any(row.get("stopped") for row in summary):   # stop_when_solved: say what the accuracy column holds
        columns = [(k, "acc (at conv. if stopped)" if k == "final_acc" else v) for k, v in SUMMARY_COLUMNS]
        columns.insert(columns.index(("final_acc", "acc (at conv. if stopped)")), ("stopped", "stopped"))
    _print_table(summary, columns)


def _add_compare(sub) -> None:
    p = sub.add_parser("compare", help="baseline-vs-flossed comparison, run in this process")
    _add_comparison_args(p)
    p.add_argument("--store", default=None, help="also store the result there, like a queued experiment")
    _add_executor_args(p)
    p.add_argument("--json", action="store_true")


def _cmd_compare(a) -> None:
    from ..experiment import job_units, plan, run_comparison, summarize

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


def _compare_via_runner(a, spec, options: dict) -> None:
    """compare --store / --executor dask / --workers N: run through the runner, which stores the result
    (in a temporary store if no --store was given) and print the same summary."""
    import tempfile

    from .. import runner
    from ..experiment import summarize

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


# ------------------------------------------------------------------------------------ submit and worker
def _add_submit(sub) -> None:
    p = sub.add_parser("submit", help="queue a comparison for a worker; prints its experiment id")
    _add_comparison_args(p)
    _add_store_arg(p)
    p.add_argument("--json", action="store_true")


def _cmd_submit(a) -> None:
    from .. import runner
    from ..runner import stale_after

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

    from .. import runner

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


# ------------------------------------------------------------------------------------ status
def _add_status(sub) -> None:
    p = sub.add_parser("status", help="experiments with progress and results, or one experiment's runs")
    p.add_argument("experiment_id", nargs="?", type=_int, default=None)
    _add_store_arg(p)
    p.add_argument("--json", action="store_true")


def _headlines(runs) -> dict:
    """{experiment_id: {schedule (or schedule@delay): {successes, finished, n, success_rate}}}."""
    from ..store import SCORED_RUN_STATUSES

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
    """An experiment for ``status``: its progress and ETA are the store's (the dashboard shows the same);
    finished counts the runs trained to the end (done or diverged), cancelled and failed the others."""
    from ..views import eta_is_bound, runs_summary

    return {"id": int(e["id"]), "name": e["name"], "status": e["status"],
            "progress": None if is_missing(e["fraction"]) else float(e["fraction"]),
            "eta_seconds": None if is_missing(e["eta_seconds"]) else float(e["eta_seconds"]),
            "eta_is_upper_bound": eta_is_bound(e),   # stop-when-solved: the ETA counts the whole budget
            "runs": int(e["n_runs"]), "finished": int(e["n_finished"]), "cancelled": int(e["n_cancelled"]),
            "failed": int(e["n_failed"]), "summary": runs_summary(e), "error": e["error"],
            "created_at": e["created_at"].isoformat(), "headline": headline}


def _search_row(r: dict) -> dict:
    """A schedule search for ``status``: its progress in trials and its verdict (the recommended schedule, or
    what the recommendation says instead) once it has one."""
    result = r["result"] if isinstance(r.get("result"), dict) else {}
    choice = result.get("choice") if isinstance(result.get("choice"), dict) else None
    words = {"recommended": "recommended", "no_flossing": "no flossing reaches the target",
             "none_reaches": "nothing reaches the target; best found"}.get(result.get("status"))
    verdict = "-" if words is None else words + (f": {choice['label']}" if choice and result["status"] != "no_flossing"
                                                 else "")
    total = None if is_missing(r["trials_total"]) else int(r["trials_total"])
    return {"id": int(r["id"]), "name": r["name"], "status": r["status"], "trials_done": int(r["trials_done"] or 0),
            "trials_total": total, "verdict": verdict, "statement": result.get("statement"), "error": r["error"],
            "trials_text": f"{int(r['trials_done'] or 0)} / {'?' if total is None else total}"}


def _cmd_status(a) -> None:
    from ..views import eta_text, run_state_text

    store = _open_store("status", a.store, create=False, write=False)
    try:
        if a.experiment_id is None:
            experiments = store.experiments().to_dict("records")
            runs = store.runs()
            searches = [_search_row(r) for r in store.advice_list().to_dict("records")]
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
            _print_json({"experiments": rows, "searches": searches})
            return
        if not rows:
            print("no experiments yet")
        for r in rows:
            r["progress_text"] = "-" if r["progress"] is None else f"{100 * r['progress']:.0f}%"
            r["eta_text"] = eta_text(r["status"], r["eta_seconds"], at_most=r["eta_is_upper_bound"])
            r["headline_text"] = "  ".join(f"{k} {v['successes']}/{v['finished']}" for k, v in r["headline"].items()
                                           if v["finished"]) or (r["error"] or "-")
        if rows:
            _print_table(rows, [("id", "id"), ("name", "name"), ("status", "status"), ("progress_text", "progress"),
                                ("eta_text", "ETA"), ("summary", "runs"),
                                ("headline_text", "solved / finished per schedule")])
        if searches:   # the adviser's searches (advise): their trials are among the experiments above
            print("\nschedule searches (advise; `advise --report ID` exports one)")
            _print_table(searches, [("id", "id"), ("name", "name"), ("status", "status"), ("trials_text", "trials"),
                                    ("verdict", "verdict")])
        return
    run_rows = [{"run_id": int(r["run_id"]), "delay": int(r["delay"]), "schedule": r["schedule"],
                 "seed": int(r["seed"]), "status": r["status"], "state": run_state_text(r),
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
    print(f"experiment {e['id']} {e['name']!r}: {e['summary']}, {progress}, ETA {eta_text(e['status'], e['eta_seconds'], at_most=e['eta_is_upper_bound'])}"
          + (f", error: {e['error']}" if e["error"] else ""))
    _print_table(run_rows, [("delay", "delay"), ("schedule", "schedule"), ("seed", "seed"), ("state", "status"),
                            ("success", "solved"), ("convergence_step", "conv step"), ("wall_seconds", "wall s")])


# ------------------------------------------------------------------------------------ cancel and report
def _add_cancel(sub) -> None:
    p = sub.add_parser("cancel", help="stop a queued or running experiment")
    p.add_argument("experiment_id", type=_int)
    _add_store_arg(p)


def _cmd_cancel(a) -> None:
    from .. import runner

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


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="export an experiment (or several) as HTML, PDF or a data zip")
    p.add_argument("experiment_id", type=_int, nargs="+",
                   help="one experiment id, or several: pooled where their settings match but for name, delays "
                        "and seeds, else side by side, labelled by the settings that differ")
    _add_store_arg(p)
    p.add_argument("--format", choices=list(O.REPORT_FORMATS), default="html")
    p.add_argument("--out", default=None, help="file or existing directory (default: a name derived from "
                                               "the experiment, in the current directory)")


def _cmd_report(a) -> None:
    from ..report import write_report

    _export("report", a.store, a.out, lambda store: write_report(store, a.experiment_id, a.format, a.out))
