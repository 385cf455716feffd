"""``advise``: the schedule search (``floss_core.advise``) on the comparison's task, model and seeds, stored in
the store like an experiment: the trials, the Pareto front of success, time to solution and compute, and the
recommendation (``floss_core.advice``). ``--queue`` hands it to the background worker instead;
``--cancel ID`` asks a running or queued search to stop.

Building the parser loads no torch (the comparison's arguments come from the option table)."""
from __future__ import annotations

import sys

from ..options import _finite_float, _int
from .common import (_add_executor_args, _add_store_arg, _executor_options, _export, _fail, _fmt, _open_store,
                     _print_json, _print_table)
from .comparison import _add_comparison_args, spec_from_args

TRIAL_COLUMNS = [("trial", "trial"), ("label", "schedule"), ("successes", "solved"), ("n", "of"),
                 ("success_rate", "rate"), ("ci", "95% interval"), ("compute_seconds", "train+floss s/run"),
                 ("floss_seconds", "floss s/run"), ("median_convergence", "median conv"), ("done", "seeds"),
                 ("experiment_id", "experiment")]


def _add_advise(sub) -> None:
    p = sub.add_parser("advise", help="search the schedules for the cheapest one that reaches a target success "
                                      "rate on this comparison (stored like an experiment)")
    _add_comparison_args(p)
    p.add_argument("--trials", type=_int, default=None,
                   help="candidate schedules to evaluate besides no flossing (default 12)")
    p.add_argument("--target", type=_finite_float, default=None,
                   help="the success rate the recommendation must reach, in (0, 1] (default 0.8)")
    p.add_argument("--rung-seeds", type=_int, default=None,
                   help="seeds every candidate runs first (successive halving; a hopeless one stops there); "
                        "default a third of the seeds, all of them: no halving")
    p.add_argument("--sampler", choices=["tpe", "nsga2"], default=None,
                   help="Optuna's sampler: tpe (multivariate TPE, default) or nsga2")
    p.add_argument("--sampler-seed", type=_int, default=None, help="the sampler's seed (default 0)")
    p.add_argument("--search-schedules", default=None,
                   help="the schedules searched, comma-separated (default: pre,inter,pre+inter,adaptive,joint)")
    p.add_argument("--knobs", default=None,
                   help="the knobs searched, comma-separated (default all: schedule, pre_steps, inter_steps, "
                        "inter_at, threshold, every, adaptive_steps, weight, k, window, qr_every)")
    _add_store_arg(p)
    _add_executor_args(p)
    p.add_argument("--queue", action="store_true", help="queue the search for the background worker; prints its id")
    p.add_argument("--cancel", type=_int, default=None, metavar="ID", help="ask search ID to stop, and exit")
    p.add_argument("--report", type=_int, default=None, metavar="ID",
                   help="export search ID's report (the recommendation as the verdict, the front charts, every "
                        "trial) as --format to --out, print its path, and exit")
    p.add_argument("--format", choices=["html", "pdf"], default="html", help="the report's format (default html)")
    p.add_argument("--out", default=None,
                   help="the report's file or an existing directory (default: a name derived from the search, in "
                        "the current directory)")
    p.add_argument("--json", action="store_true")


def _names(text: str | None):
    return None if text is None else tuple(n.strip() for n in text.split(",") if n.strip())


def _config(a):
    from ..advise import AdviseConfig

    given = {"trials": a.trials, "target": a.target, "rung_seeds": a.rung_seeds, "sampler": a.sampler,
             "sampler_seed": a.sampler_seed, "schedules": _names(a.search_schedules), "knobs": _names(a.knobs)}
    return AdviseConfig(**{k: v for k, v in given.items() if v is not None})


def _cmd_advise(a) -> None:
    if a.cancel is not None:
        return _cancel(a)
    if a.report is not None:
        return _report(a)
    if a.schedules is not None:
        _fail("advise", "advise searches the schedules itself: drop --schedules (--search-schedules limits the "
                        "schedules it tries)")
    from .. import advise as AD

    try:
        spec = spec_from_args(a)
        cfg = _config(a)
        config = AD.advice_config(spec, cfg)    # validates both: bad input is refused before the store is touched
    except ValueError as e:
        _fail("advise", str(e))
    options = _executor_options("advise", a)
    name = a.name or f"advise: {spec.task.name} d={','.join(map(str, spec.delays))}"
    store = _open_store("advise", a.store)
    try:
        if a.queue:
            advice_id = store.queue_advice(config, name)
            from ..runner import stale_after

            alive = store.alive_workers(max_age_s=stale_after())
            _print_json({"advice_id": advice_id}) if a.json else print(advice_id)
            if not alive:
                sys.stderr.write(f"queued advice {advice_id}; no worker is running: start one with "
                                 f"`python -m floss_core worker --store {store.path}`\n")
            return
        advice_id = store.create_advice(config, name)
        if not a.json:
            sys.stderr.write(f"advice {advice_id}: {cfg.trials} candidates + no flossing on {len(spec.seeds)} seeds "
                             f"x {len(spec.delays)} delay(s), stored in {store.path}\n")
        status = AD.run_advice(store, advice_id, on_trial=None if a.json else _progress, **options)
        row = store.advice(advice_id)
        trials = store.advice_trials(advice_id)
    finally:
        store.close()
    result = row["result"]
    if a.json:
        _print_json({"advice_id": advice_id, "status": status, "error": row["error"], "target": cfg.target,
                     "trials": trials, "front": None if result is None else result["front_trials"],
                     "recommendation": result})
    else:
        _print_report(advice_id, trials, result)
    if status != "done":   # not bad input (exit 2) but a search that did not finish
        sys.stderr.write(f"floss_core advise: advice {advice_id} {status}: {row['error']}\n")
        raise SystemExit(1)


def _progress(trial: dict, done: int, total: int) -> None:
    """One line on stderr per stored trial: the search's progress."""
    why = trial.get("stopped") or trial.get("error")
    how = "" if trial["complete"] else f" (stopped after {len(trial['seeds'])} seed(s): {why})"
    sys.stderr.write(f"trial {trial['trial']} ({done} of {total} done): {trial['label']}: {trial['successes']} of "
                     f"{trial['n']} solved, {_fmt(trial['compute_seconds'])} s/run{how}\n")
    sys.stderr.flush()


def _rows(trials: list[dict]) -> list[dict]:
    return [{**t, "ci": f"{_fmt(t['ci_low'], 2)}-{_fmt(t['ci_high'], 2)}",
             "done": f"{len(t['seeds'])}" + ("" if t["complete"] else " (stopped)")} for t in trials]


def _print_report(advice_id: int, trials: list[dict], result: dict | None) -> None:
    print(f"advice {advice_id}: trials")
    _print_table(_rows(trials), TRIAL_COLUMNS)
    if result is None:
        return
    print("\nPareto front (success rate, median convergence step and train+floss compute; complete trials, "
          "cheapest first)")
    _print_table(_rows(result["front"]), TRIAL_COLUMNS)
    print()
    print(result["statement"])


def _cancel(a) -> None:
    store = _open_store("advise", a.store, create=False)
    try:
        try:
            status = store.request_cancel_advice(a.cancel)
        except KeyError:
            _fail("advise", f"no advice {a.cancel} in {store.path}")
    finally:
        store.close()
    _print_json({"advice_id": a.cancel, "status": status}) if a.json else print(status)


def _report(a) -> None:
    from ..report.advice import write_advice_report

    _export("advise", a.store, a.out, lambda store: write_advice_report(store, a.report, a.format, a.out))
