"""The schedule adviser's search: over the schedule family the lab supports, on the user's task and
delay(s), which schedules buy success for how much compute (issue 19).

A search (an *advice*, a row of the store) starts from a base comparison spec (task, model, training,
seeds, delays, flossing settings: ``make_spec``) and an ``AdviseConfig``. It evaluates candidate
schedules, each one an ordinary comparison experiment of that one schedule in the store, on the spec's
own seeds:

* trial 0 is always no flossing, on every seed: the baseline every recommendation is measured against;
* trial 1 is the base spec's own flossing schedule (make_spec's default: ``pre`` with the preset's
  values), then every other searched schedule at the preset's values (``starting_points``), enqueued into
  the study; then Optuna's multi-objective sampler (TPE, multivariate, or NSGA-II; directions: maximise
  success rate, minimise time to solution and compute, ``objectives``) proposes the rest through its
  ask/tell interface;
  Optuna's storage is in memory, the lab's store is the record of every trial;
* the search space (``search_space``): the schedule (pre, inter, pre+inter, adaptive, joint), pre-flossing
  steps, an inter phase's length and when the first one runs, adaptive's threshold, interval and steps,
  joint's weight (log scale) and interval, and the cheap proxies: k (fewer exponents), the flossing window
  (shorter) and the QR interval (longer, 1 / 2 / 5); ranges are scaled from the base spec, so a tiny spec's
  search stays tiny;
* successive halving on seeds: a candidate first runs a prefix of the seeds (``rung_seeds``, a third by
  default); one that cannot reach the target even if every remaining seed succeeded, or that a complete
  trial already dominates at its first-rung cost, stops there (``stops_after_rung``); the others run the
  remaining seeds as a second experiment. Every candidate sees the same seeds, in the same order;
* compute = mean training + flossing seconds per run (the lab's diagnostics and evaluation excluded);
  divergence is an outcome (a diverged run is a failure), a job that fails is a failed trial, never a
  crash of the search;
* the verdict is ``floss_core.advice`` (``recommend``: the cheapest schedule on the Pareto front of success,
  time to solution and compute that reaches the target, its runner-up, its extra compute against no
  flossing), over the stored trials.

``run_advice`` runs a stored advice to its end (the CLI's ``advise``, the worker for a queued one);
``advise`` creates one and runs it here. Torch and Optuna load inside the functions that need them.
"""
from __future__ import annotations

import contextlib
import logging
import math
import platform
import time
import warnings
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING

from . import advice as A
from . import schedules as S

if TYPE_CHECKING:
    from .experiment import ComparisonSpec

log = logging.getLogger("floss_core.runner")   # the runner's logger: the worker's log names the trials

FLOSSING = tuple(n for n in S.NAMES if n != A.NONE)   # the schedules a candidate may have
SAMPLERS = ("tpe", "nsga2")
# the knobs a search may turn; one not searched keeps the base spec's value
KNOBS = ("schedule", "pre_steps", "inter_steps", "inter_at", "threshold", "every", "adaptive_steps", "weight",
         "k", "window", "qr_every")
QR_EVERY = (1, 2, 5)   # the QR intervals tried (plus the base spec's own)
_EPS = 1e-12


@dataclass(frozen=True)
class AdviseConfig:
    trials: int = 12                    # candidate schedules evaluated besides the no-flossing baseline
    #                                     (the first is the base spec's own flossing schedule)
    target: float = 0.8                 # the success rate the recommendation must reach, in (0, 1]
    rung_seeds: int | None = None       # seeds of the first rung of successive halving (a prefix of the
    #                                     spec's seeds); None: a third of them (at least 1); all of them: no halving
    sampler: str = "tpe"                # tpe (Optuna's multivariate TPE) | nsga2
    sampler_seed: int = 0               # the sampler's seed: the same seed and results, the same proposals
    startup_trials: int | None = None   # tpe: random proposals before it models (None: a third of trials, 2..10)
    schedules: tuple[str, ...] = FLOSSING   # the schedules searched (a subset of FLOSSING)
    knobs: tuple[str, ...] = KNOBS      # the knobs searched (a subset of KNOBS); the others keep the base's values


def validate_config(cfg: AdviseConfig, n_seeds: int | None = None) -> None:
    """ValueError (one line, naming the valid values) for a bad search configuration."""
    if not isinstance(cfg.trials, int) or cfg.trials < 1:
        raise ValueError(f"trials must be an integer >= 1, got {cfg.trials!r}")
    if not (isinstance(cfg.target, (int, float)) and 0 < cfg.target <= 1):
        raise ValueError(f"target must be a success rate in (0, 1], got {cfg.target!r}")
    if cfg.rung_seeds is not None and (not isinstance(cfg.rung_seeds, int) or cfg.rung_seeds < 1):
        raise ValueError(f"rung_seeds must be an integer >= 1 (or None: a third of the seeds), got {cfg.rung_seeds!r}")
    if n_seeds is not None and cfg.rung_seeds is not None and cfg.rung_seeds > n_seeds:
        raise ValueError(f"rung_seeds must be in 1..{n_seeds} (the seeds), got {cfg.rung_seeds}")
    if cfg.sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {cfg.sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if not isinstance(cfg.sampler_seed, int):
        raise ValueError(f"sampler_seed must be an integer, got {cfg.sampler_seed!r}")
    if cfg.startup_trials is not None and (not isinstance(cfg.startup_trials, int) or cfg.startup_trials < 1):
        raise ValueError(f"startup_trials must be an integer >= 1 (or None), got {cfg.startup_trials!r}")
    if not cfg.schedules:
        raise ValueError(f"schedules must name at least one of {', '.join(FLOSSING)}")
    for name in cfg.schedules:
        if name not in FLOSSING:
            raise ValueError(f"unknown schedule to search {name!r}; choose from {', '.join(FLOSSING)}")
    for knob in cfg.knobs:
        if knob not in KNOBS:
            raise ValueError(f"unknown knob {knob!r}; choose from {', '.join(KNOBS)}")


def config_from_dict(d: dict) -> AdviseConfig:
    """Inverse of ``asdict`` (JSON lists back to tuples); unknown keys are refused (ValueError)."""
    names = {f.name for f in fields(AdviseConfig)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown advise setting {unknown[0]!r}; choose from {', '.join(sorted(names))}")
    cfg = AdviseConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
    validate_config(cfg)
    return cfg


def rung_size(cfg: AdviseConfig, n_seeds: int) -> int:
    """Seeds of the first rung: ``rung_seeds``, else a third of the seeds (at least 1)."""
    return min(n_seeds, cfg.rung_seeds if cfg.rung_seeds is not None else max(1, math.ceil(n_seeds / 3)))


def advice_config(spec: ComparisonSpec, cfg: AdviseConfig) -> dict:
    """What the store keeps of a search: the base spec, the search's settings and the package versions."""
    import numpy
    import optuna
    import torch

    from . import __version__
    from .experiment import spec_to_dict, validate_spec

    validate_spec(spec)
    validate_config(cfg, len(spec.seeds))
    return {"spec": spec_to_dict(spec), "advise": asdict(cfg),
            "versions": {"floss_core": __version__, "optuna": optuna.__version__, "torch": torch.__version__,
                         "numpy": numpy.__version__, "python": platform.python_version()}}


# ------------------------------------------------------------------------------------ the search space
def base_schedule(spec: ComparisonSpec) -> S.Schedule:
    """The base spec's own flossing schedule: its first that flosses, else its first renamed ``pre``
    (make_spec gives every schedule the same fields)."""
    return next((s for s in spec.schedules if s.name != A.NONE), replace(spec.schedules[0], name="pre"))


def _span(base: int, *, down: int = 5, up: int = 2) -> tuple[int, int]:
    b = max(1, int(base))
    low = max(1, b // down)
    return low, max(low, b * up)


def search_space(spec: ComparisonSpec, cfg: AdviseConfig) -> dict:
    """The Optuna distributions of the knobs searched, by parameter name (a schedule's own parameters are
    asked only for that schedule). Ranges scale from the base spec:

    * ``schedule``: ``cfg.schedules`` (fixed, not a parameter, when only one is searched);
    * ``pre_steps``, ``inter_steps``, ``adaptive_steps``: from a fifth of the base's value to twice it;
    * ``inter_at``: the step of the first inter phase, 0 .. twice the base's first (below the training
      steps); the later phases keep the base's spacing;
    * ``threshold`` (log, a tenth to ten times the base's), ``adaptive_every`` (in evaluations: adaptive
      measures at evaluations), ``joint_every`` (1 .. the base's every, log), ``weight`` (log, a hundredth
      to ten times the base's);
    * ``k``: an eighth of the base's k .. the base's k (which is at most the state dimension), log;
      ``window``: the flossing window, a quarter of the base's .. the base's (above its transient);
      ``qr_every``: 1, 2, 5 and the base's own.
    """
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    validate_config(cfg, len(spec.seeds))
    sch, fl, tr = base_schedule(spec), spec.floss, spec.train
    knobs, space = set(cfg.knobs), {}
    names = tuple(n for n in FLOSSING if n in cfg.schedules)
    if "schedule" in knobs and len(names) > 1:
        space["schedule"] = CategoricalDistribution(names)
    if "pre_steps" in knobs and {"pre", "pre+inter"} & set(names):
        space["pre_steps"] = IntDistribution(*_span(sch.pre_steps), log=True)
    if {"inter", "pre+inter"} & set(names):
        if "inter_steps" in knobs:
            space["inter_steps"] = IntDistribution(*_span(sch.inter_steps), log=True)
        if "inter_at" in knobs:
            first = sch.inter_at[0] if sch.inter_at else 0
            space["inter_at"] = IntDistribution(0, max(0, min(tr.steps - 1, 2 * first)))
    if "adaptive" in names:
        if "threshold" in knobs:
            t = sch.threshold if sch.threshold > 0 else 0.1
            space["threshold"] = FloatDistribution(t / 10, t * 10, log=True)
        if "every" in knobs:
            evals = max(1, tr.steps // tr.eval_every)
            space["adaptive_every"] = IntDistribution(1, max(1, min(evals, max(2, 2 * sch.every // tr.eval_every))))
        if "adaptive_steps" in knobs:
            space["adaptive_steps"] = IntDistribution(*_span(sch.adaptive_steps), log=True)
    if "joint" in names:
        if "weight" in knobs:
            w = sch.weight if sch.weight > 0 else 1.0
            space["weight"] = FloatDistribution(w / 100, w * 10, log=True)
        if "every" in knobs:
            space["joint_every"] = IntDistribution(1, max(1, sch.every), log=True)
    if "k" in knobs:
        space["k"] = IntDistribution(max(1, fl.k // 8), fl.k, log=True)
    if "window" in knobs:
        space["window"] = IntDistribution(min(fl.seq_len, max(fl.transient + 1, fl.seq_len // 4)), fl.seq_len)
    if "qr_every" in knobs:
        space["qr_every"] = CategoricalDistribution(tuple(sorted({*QR_EVERY, fl.qr_every})))
    return space


def _uses(name: str, param: str) -> bool:
    """Whether schedule ``name`` asks for ``param``."""
    own = {"pre_steps": ("pre", "pre+inter"), "inter_steps": ("inter", "pre+inter"), "inter_at": ("inter", "pre+inter"),
           "threshold": ("adaptive",), "adaptive_every": ("adaptive",), "adaptive_steps": ("adaptive",),
           "weight": ("joint",), "joint_every": ("joint",)}
    return name in own.get(param, (name,))


def sample(trial, space: dict, spec: ComparisonSpec, cfg: AdviseConfig) -> dict:
    """Ask an Optuna trial for a candidate's parameters (define-by-run: the schedule first, then the
    parameters that schedule uses, then the flossing knobs)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    def ask(name, dist):
        if isinstance(dist, CategoricalDistribution):
            return trial.suggest_categorical(name, dist.choices)
        if isinstance(dist, FloatDistribution):
            return trial.suggest_float(name, dist.low, dist.high, log=dist.log)
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log)

    params = {}
    if "schedule" in space:
        params["schedule"] = ask("schedule", space["schedule"])
    name = params.get("schedule", _fixed_schedule(spec, cfg))
    for param, dist in space.items():
        if param != "schedule" and _uses(name, param):
            params[param] = ask(param, dist)
    return params


def _fixed_schedule(spec: ComparisonSpec, cfg: AdviseConfig) -> str:
    """The schedule of every candidate when the schedule is not searched: the base's, if searched, else the
    first searched."""
    names = [n for n in FLOSSING if n in cfg.schedules]
    own = base_schedule(spec).name
    return own if own in names and ("schedule" not in cfg.knobs or len(names) == 1) else names[0]


def default_params(spec: ComparisonSpec, cfg: AdviseConfig, space: dict, name: str | None = None) -> dict | None:
    """The base spec's own flossing schedule as parameters (the search's first candidate), or with ``name``
    that schedule at the base spec's values (the preset's defaults); None when it is not searched."""
    sch, fl = base_schedule(spec), spec.floss
    if name is not None:
        sch = replace(sch, name=name)
    if sch.name not in cfg.schedules:
        return None
    values = {"schedule": sch.name, "pre_steps": sch.pre_steps, "inter_steps": sch.inter_steps,
              "inter_at": sch.inter_at[0] if sch.inter_at else 0, "threshold": sch.threshold,
              "adaptive_every": max(1, sch.every // spec.train.eval_every), "adaptive_steps": sch.adaptive_steps,
              "weight": sch.weight, "joint_every": sch.every, "k": fl.k, "window": fl.seq_len, "qr_every": fl.qr_every}
    out = {}
    for param, dist in space.items():
        if param == "schedule" or _uses(sch.name, param):
            value = values[param]
            if _within(dist, value):
                out[param] = value
    return out


def starting_points(spec: ComparisonSpec, cfg: AdviseConfig, space: dict) -> list[dict]:
    """The candidates the search tries before its sampler proposes any: the base spec's own flossing schedule,
    then every other searched schedule at the base spec's values (the preset's defaults), in ``FLOSSING``
    order. Each schedule family is then known at its defaults before the sampler spends the budget: on the
    paper's d = 40 an 8-trial search whose random start never drew ``adaptive`` missed the one schedule that
    solves it (README, "Which schedule pays off?")."""
    first = default_params(spec, cfg, space)
    out = [] if first is None else [first]
    if "schedule" in cfg.knobs:
        for name in FLOSSING:
            p = default_params(spec, cfg, space, name)
            if p is not None and p not in out:
                out.append(p)
    return out


def _within(dist, value) -> bool:
    """Whether ``value`` is one a distribution can give (the base's own value may lie outside a range)."""
    choices = getattr(dist, "choices", None)
    return value in choices if choices is not None else dist.low <= value <= dist.high


def candidate(params: dict, spec: ComparisonSpec, cfg: AdviseConfig) -> tuple[S.Schedule, dict]:
    """A candidate's schedule and the ``FlossConfig`` fields it overrides, from its parameters (a parameter
    not given keeps the base spec's value). The schedule is valid for the spec (``validate_schedule``)."""
    sch, fl, tr = base_schedule(spec), spec.floss, spec.train
    name = params.get("schedule", _fixed_schedule(spec, cfg))
    over = {}
    if "k" in params:
        over["k"] = int(params["k"])
    if "window" in params:
        over["seq_len"] = int(params["window"])
    if "qr_every" in params:
        over["qr_every"] = int(params["qr_every"])
    k = over.get("k", fl.k)
    changes: dict = {"name": name, "adaptive_k": max(1, min(sch.adaptive_k, k))}
    if "pre_steps" in params:
        changes["pre_steps"] = int(params["pre_steps"])
    if "inter_steps" in params:
        changes["inter_steps"] = int(params["inter_steps"])
    if "inter_at" in params:
        first = int(params["inter_at"])
        base = sch.inter_at or (0,)
        changes["inter_at"] = tuple(first + t - base[0] for t in base if first + t - base[0] < tr.steps) or (first,)
    if "threshold" in params:
        changes["threshold"] = float(params["threshold"])
    if "adaptive_every" in params:
        changes["every"] = int(params["adaptive_every"]) * tr.eval_every
    elif name == "adaptive" and sch.every % tr.eval_every:
        changes["every"] = max(1, sch.every // tr.eval_every) * tr.eval_every
    if "adaptive_steps" in params:
        changes["adaptive_steps"] = int(params["adaptive_steps"])
    if "weight" in params:
        changes["weight"] = float(params["weight"])
    if "joint_every" in params:
        changes["every"] = int(params["joint_every"])
    schedule = replace(sch, **changes)
    S.validate_schedule(schedule, eval_every=tr.eval_every, k=k)
    return schedule, over


def _steps(n: int) -> str:
    return f"{n} step" if n == 1 else f"{n} steps"


def label(schedule: S.Schedule, floss: dict) -> str:
    """A candidate in words: ``"pre 120 steps · k 16 · window 40"``; ``"no flossing"``."""
    s = schedule
    at = ", ".join(map(str, s.inter_at))
    words = {A.NONE: "no flossing", "pre": f"pre {_steps(s.pre_steps)}",
             "inter": f"inter {_steps(s.inter_steps)} at {at}",
             "pre+inter": f"pre {s.pre_steps} + inter {_steps(s.inter_steps)} at {at}",
             "adaptive": f"adaptive {_steps(s.adaptive_steps)} while |λ| > {s.threshold:.3g}, every {s.every}",
             "joint": f"joint weight {s.weight:.3g} every {s.every}"}[s.name]
    if s.name == A.NONE:
        return words
    parts = [words]
    if "k" in floss:
        parts.append(f"k {floss['k']}")
    if "seq_len" in floss:
        parts.append(f"window {floss['seq_len']}")
    if floss.get("qr_every", 1) != 1:
        parts.append(f"QR every {floss['qr_every']}")
    return " · ".join(parts)


# ------------------------------------------------------------------------------------ successive halving
def stops_after_rung(partial: dict, n_total: int, target: float, complete: list[dict], *,
                     solved_steps: list[float] = ()) -> str | None:
    """Why a candidate stops after its first rung, or None when it goes on to the remaining seeds.

    ``partial``: its first-rung numbers (``advice.trial_numbers``: n, successes, compute_seconds);
    ``n_total``: the runs of a complete trial; ``complete``: the complete trials so far; ``solved_steps``:
    the convergence steps of its solved first-rung runs. It stops when even if every remaining run
    succeeded its success rate would stay below ``target``, or when a complete trial dominates that best
    case (``advice.dominates``: success, time to solution and compute) at the first rung's compute per run.
    The best case's time to solution counts every remaining run as solved at step 0, the earliest
    evaluation: a candidate that might still solve sooner than the others is not stopped for being slow."""
    remaining = max(0, n_total - partial["n"])
    if remaining == 0:
        return None
    best = (partial["successes"] + remaining) / n_total
    if best < target - _EPS:
        return (f"cannot reach the target: {partial['successes']} of {partial['n']} first-rung runs solved, "
                f"at best {100 * best:.0f} % < {100 * target:.0f} %")
    soonest = sorted([0.0] * remaining + [float(s) for s in solved_steps])
    optimistic = {"success_rate": best, "compute_seconds": partial["compute_seconds"],
                  "median_convergence": A.median(soonest)}
    for other in complete:
        if not is_missing_number(other.get("compute_seconds")) and A.dominates(other, optimistic):
            return (f"dominated by trial {other['trial']} ({other['label']}) even if every remaining run "
                    f"succeeded at once")
    return None


def is_missing_number(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# ------------------------------------------------------------------------------------ running a search
class _Stop(Exception):
    """The search was cancelled (or its advice deleted)."""


def advise(spec: ComparisonSpec, cfg: AdviseConfig, store, *, name: str | None = None, executor: str = "local",
           scheduler: str | None = None, max_workers: int | None = None) -> int:
    """Create a search in ``store`` (a ``Store`` or a path) and run it here; returns its advice id."""
    from .runner.queue import _opened

    config = advice_config(spec, cfg)
    with _opened(store) as store:
        advice_id = store.create_advice(config, name or f"advise: {spec.name}")
        run_advice(store, advice_id, executor=executor, scheduler=scheduler, max_workers=max_workers)
    return advice_id


def run_advice(store, advice_id: int, *, executor: str = "local", scheduler: str | None = None,
               max_workers: int | None = None, worker_id: str | None = None, on_trial=None) -> str:
    """Run a stored search to its end: the baseline, then candidates until ``trials`` are stored (a search
    that was interrupted resumes after its stored trials), each trial written as it finishes, then the
    recommendation with the front (``Store.finish_advice``). Returns its final status: done, cancelled
    (``Store.request_cancel_advice``; the result holds the recommendation over the trials done) or failed.

    ``worker_id``: the worker running it (which heartbeats); None: this process registers and heartbeats
    as a worker of its own meanwhile, so that no other worker takes its experiments for orphans.
    ``on_trial(trial, done, total)``: called with each trial as it is stored (the CLI's progress lines)."""
    from .runner.queue import _opened
    from .runner.worker import _registered, new_worker_id, stale_after

    with _opened(store) as store:
        row = store.advice(advice_id)
        own = worker_id is None
        worker_id = worker_id or new_worker_id()
        with (_registered(store, worker_id, stale_after()) if own else contextlib.nullcontext()) as beat:
            if beat is not None:
                beat.status = "busy"
            status = store.hold_advice(advice_id, worker_id)   # held by a live worker: never re-queued meanwhile
            if status != "running":
                return status                                  # done or cancelled already: nothing to run
            run = _Runner(store, int(advice_id), executor, scheduler, max_workers, worker_id)
            run.on_trial = on_trial
            try:
                return _search(store, int(advice_id), row["config"], run)
            except _Stop:
                return _close(store, advice_id, "cancelled", None)
            except KeyError as e:
                if not _exists(store, advice_id):   # the advice was deleted meanwhile
                    return "deleted"
                log.exception("advice %s failed", advice_id)
                return _close(store, advice_id, "failed", f"KeyError: {e}")
            except Exception as e:  # noqa: BLE001 - the search fails with the reason, the caller goes on
                log.exception("advice %s failed", advice_id)
                return _close(store, advice_id, "failed", f"{type(e).__name__}: {e}")
            except BaseException:   # Ctrl-C, SIGTERM: what is stored stays
                with contextlib.suppress(Exception):
                    if run.current is not None:   # the trial under way is cancelled, not left for a worker
                        from .runner.executors import _finish

                        _finish(store, run.current, "cancelled", "interrupted")
                    if own:
                        _close(store, advice_id, "cancelled", "interrupted")
                    else:   # a worker leaving: back to the queue; the next worker resumes after the stored trials
                        store.finish_advice(advice_id, "queued", None)
                raise


def _exists(store, advice_id: int) -> bool:
    try:
        store.advice(advice_id)
        return True
    except KeyError:
        return False


def _close(store, advice_id: int, status: str, error: str | None) -> str:
    """Finish a search that stops early: the recommendation over what it stored (None if nothing)."""
    try:
        row = store.advice(advice_id)
        trials = store.advice_trials(advice_id)
        result = _result(trials, config_from_dict(row["config"]["advise"]).target) if trials else None
        store.finish_advice(advice_id, status, result, error)
    except KeyError:
        return "deleted"
    log.info("advice %s %s%s", advice_id, status, f": {error}" if error else "")
    return status


def _result(trials: list[dict], target: float) -> dict:
    rec = A.recommend(trials, target)
    rec["front_trials"] = [t["trial"] for t in rec["front"]]
    for key in ("choice", "runner_up", "baseline"):
        rec[f"{key}_trial"] = None if rec[key] is None else rec[key]["trial"]
    return rec


def _search(store, advice_id: int, config: dict, run: _Runner) -> str:
    import optuna
    from optuna.trial import TrialState, create_trial

    from .experiment import spec_from_dict

    spec = spec_from_dict(config["spec"])
    cfg = config_from_dict(config["advise"])
    validate_config(cfg, len(spec.seeds))
    store.set_advice_progress(advice_id, trials_total=cfg.trials + 1)
    seeds = tuple(spec.seeds)
    rung = rung_size(cfg, len(seeds))
    stored = {t["trial"]: t for t in store.advice_trials(advice_id)}
    run.spec = spec

    if store.advice_cancel_requested(advice_id):
        raise _Stop
    if 0 not in stored:   # the baseline: no flossing, every seed at once
        trial = run.evaluate(0, replace(base_schedule(spec), name=A.NONE), {}, {}, rung=len(seeds),
                             target=cfg.target, complete=[])
        store.save_advice_trial(advice_id, trial)
        stored[0] = trial
        run.report(trial, len(stored), cfg.trials + 1)

    space = search_space(spec, cfg)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(directions=list(DIRECTIONS), sampler=_sampler(cfg))
        for number in sorted(n for n in stored if n > 0):   # resuming: the study learns the stored trials
            t = stored[number]
            ok = not any(is_missing_number(t[k]) for k in ("success_rate", "compute_seconds"))
            study.add_trial(create_trial(
                params=t["params"], distributions={p: space[p] for p in t["params"] if p in space},
                values=objectives(t, spec) if ok else None,
                state=TrialState.COMPLETE if ok else TrialState.FAIL))
        if not any(n > 0 for n in stored):
            for first in starting_points(spec, cfg, space)[:cfg.trials]:
                study.enqueue_trial(first)
        while len([n for n in stored if n > 0]) < cfg.trials:
            if store.advice_cancel_requested(advice_id):
                raise _Stop
            asked = study.ask()
            number = max(stored) + 1
            params = sample(asked, space, spec, cfg)
            try:
                schedule, floss = candidate(params, spec, cfg)
            except ValueError as e:   # a candidate the spec refuses: a failed trial, the search goes on
                log.warning("advice %s trial %s: %s", advice_id, number, e)
                trial = _refused(number, params, str(e))
            else:
                complete = [t for t in stored.values() if t["complete"]]
                trial = run.evaluate(number, schedule, floss, params, rung=rung, target=cfg.target, complete=complete)
            store.save_advice_trial(advice_id, trial)
            stored[number] = trial
            run.report(trial, len(stored), cfg.trials + 1)
            if trial.get("error") or any(is_missing_number(trial[k]) for k in ("success_rate", "compute_seconds")):
                study.tell(asked, state=TrialState.FAIL)
            else:
                study.tell(asked, objectives(trial, spec))
            log.info("advice %s trial %s: %s: %d of %d solved, %.3f s/run%s", advice_id, number, trial["label"],
                     trial["successes"], trial["n"], trial["compute_seconds"],
                     "" if trial["complete"] else f" (stopped: {trial.get('stopped')})")
    trials = store.advice_trials(advice_id)   # the verdict quotes the stored numbers
    store.finish_advice(advice_id, "done", _result(trials, cfg.target))
    return "done"


DIRECTIONS = ("maximize", "minimize", "minimize")   # success rate, time to solution, compute: advice's front


def objectives(trial: dict, spec: ComparisonSpec) -> list[float]:
    """What the sampler optimises for a trial, in ``DIRECTIONS``' order: its success rate, its time to solution
    (median convergence step of its solved runs; one step past the training budget where it solved nothing,
    a finite worst value the samplers can rank) and its compute per run."""
    steps = A.time_to_solution(trial)
    return [float(trial["success_rate"]), float(spec.train.steps + 1) if math.isinf(steps) else steps,
            float(trial["compute_seconds"])]


def _refused(number: int, params: dict, error: str) -> dict:
    """The trial of a candidate the spec refuses (no runs): failed, not on any front."""
    name = params.get("schedule", "pre")
    return {"trial": number, "label": f"{name} (refused: {error})", "schedule": {"name": name}, "floss": {},
            "seeds": [], "complete": False, **A.trial_numbers([], planned=0), "experiment_id": None,
            "experiment_ids": [], "params": dict(params), "error": f"invalid candidate: {error}"}


def _sampler(cfg: AdviseConfig):
    import optuna

    if cfg.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=cfg.sampler_seed, population_size=max(2, min(10, cfg.trials // 2)))
    startup = cfg.startup_trials if cfg.startup_trials is not None else min(10, max(2, cfg.trials // 3))
    return optuna.samplers.TPESampler(seed=cfg.sampler_seed, multivariate=True, group=True, n_startup_trials=startup)


class _Runner:
    """Evaluates candidates as ordinary experiments in the store, held by this search's worker."""

    def __init__(self, store, advice_id, executor, scheduler, max_workers, worker_id):
        self.store, self.advice_id, self.spec = store, advice_id, None   # spec: the base, set by _search
        self.options = {"executor": executor, "scheduler": scheduler, "max_workers": max_workers}
        self.worker_id = worker_id
        self.current: int | None = None   # the experiment being trained now
        self.on_trial = None

    def report(self, trial: dict, done: int, total: int) -> None:
        if self.on_trial is not None:
            self.on_trial(trial, done, total)

    def experiment(self, number: int, text: str, schedule: S.Schedule, floss: dict, seeds: tuple,
                   part: str) -> tuple[int | None, str, str | None]:
        """Run one experiment of ``schedule`` on ``seeds``; (its id, status, error)."""
        from .runner import run_experiment, submit

        spec = replace(self.spec, schedules=(schedule,), floss=replace(self.spec.floss, **floss), seeds=seeds,
                       name=f"advise {self.advice_id} · trial {number}: {text}{part}")
        try:
            experiment_id = submit(spec, self.store, worker_id=self.worker_id)
        except ValueError as e:
            return None, "failed", f"invalid candidate: {e}"
        self.current = experiment_id
        self.store.set_advice_progress(self.advice_id, experiment_id=experiment_id)
        status = run_experiment(self.store, experiment_id, worker_id=self.worker_id, **self.options)
        self.current = None
        self.store.set_advice_progress(self.advice_id, experiment_id=None)
        if status in ("cancelled", "deleted") or self.store.advice_cancel_requested(self.advice_id):
            raise _Stop
        error = self.store.experiment(experiment_id)["error"] if status != "done" else None
        return experiment_id, status, error

    def evaluate(self, number: int, schedule: S.Schedule, floss: dict, params: dict, *, rung: int, target: float,
                 complete: list[dict]) -> dict:
        """A trial dict (``floss_core.advice``) for one candidate: its first rung, then, unless it stops
        there (``stops_after_rung``), the remaining seeds."""
        from .runner import stored_records

        seeds, delays = tuple(self.spec.seeds), len(self.spec.delays)
        text = label(schedule, floss)
        t0 = time.perf_counter()
        halving = rung < len(seeds)
        ids, records, ran, error, stopped = [], [], (), None, None
        for part, group in ((" · rung 1", seeds[:rung]), (" · rung 2", seeds[rung:])) if halving else (("", seeds),):
            experiment_id, status, error = self.experiment(number, text, schedule, floss, group, part)
            ran = ran + group
            if experiment_id is not None:
                ids.append(experiment_id)
                records += stored_records(self.store, experiment_id)
            if error is not None:
                break
            if part == " · rung 1":
                solved = [r["convergence_step"] for r in records
                          if r.get("success") and not is_missing_number(r.get("convergence_step"))]
                stopped = stops_after_rung(A.trial_numbers(records, planned=len(ran) * delays), len(seeds) * delays,
                                           target, complete, solved_steps=solved)
                if stopped:
                    break
        trial = {"trial": number, "label": text, "schedule": asdict(schedule), "floss": dict(floss),
                 "seeds": list(ran), "complete": error is None and stopped is None and len(ran) == len(seeds),
                 **A.trial_numbers(records, planned=len(ran) * delays),
                 "experiment_id": ids[0] if ids else None, "experiment_ids": ids, "params": dict(params),
                 "rung_seeds": rung, "delays": list(self.spec.delays), "wall_seconds": time.perf_counter() - t0}
        if stopped:
            trial["stopped"] = stopped
        if error is not None:
            trial["error"] = error
        return trial
