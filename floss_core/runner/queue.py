"""The queue side of the runner: what a comparison plans to train, putting it in the store, asking it to
stop, its progress while it runs, and its finished runs read back as records.

A comparison is planned as one run per delay x schedule x seed (``planned_runs``) and trained as jobs,
each one ensemble (``planned_jobs`` says how they are cut for the executor); progress is counted in
work units (flossing + training steps, ``total_units``).
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .. import settings
from ..store import SCORED_RUN_STATUSES, Store, run_records

if TYPE_CHECKING:
    from ..experiment import ComparisonSpec

PROGRESS_EVERY_S = 1.0    # progress writes, at most once per this many seconds
CANCEL_POLL_S = 0.5       # how often a running experiment checks for a cancel request


@contextlib.contextmanager
def _opened(store):
    """A Store as given, or one opened on a path for the duration (and closed after)."""
    if isinstance(store, Store):
        yield store
        return
    with Store(store) as opened:
        yield opened


# ------------------------------------------------------------------------------------ planning
def planned_runs(spec: ComparisonSpec) -> list[dict]:
    """One planned run per delay x schedule x seed, its config shaped like a finished run's
    (``train.train``'s ``config`` plus the comparison's name and preset)."""
    runs = []
    for delay in spec.delays:
        task = asdict(replace(spec.task, delay=delay))
        for schedule in spec.schedules:
            for member, seed in enumerate(spec.seeds):
                config = {"model": asdict(spec.model), "task": task, "train": asdict(spec.train),
                          "floss": asdict(spec.floss), "schedule": asdict(schedule), "seed": seed,
                          "comparison": spec.name, "preset": spec.preset}
                runs.append({"delay": delay, "schedule": schedule.name, "seed": seed, "member": member,
                             "config": config})
    return runs


def total_units(spec: ComparisonSpec, *, batch: bool = True, shards: int = 1) -> int:
    """Work units (flossing + training steps) of the whole comparison, as planned."""
    from ..plan import job_units, plan

    return sum(job_units(spec, job) for job in plan(spec, batch=batch, shards=shards))


def default_workers() -> int:
    """Worker processes when nobody says: one per CPU core this process may use, at most 8 (each holds
    a torch import). Every process runs one torch thread: on small matrices, processes on separate
    cores scale where threads inside one op do not (bench/RESULTS.md)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def configured_workers() -> int:
    """The worker processes a worker started now would use: $FLOSS_WORKERS (an integer, or auto), else
    one per core (``default_workers``). A malformed value raises ValueError (one line), as in the CLI."""
    workers = settings.get("FLOSS_WORKERS")
    return default_workers() if workers == "auto" else workers


def planned_jobs(spec: ComparisonSpec, executor: str, max_workers: int | None) -> tuple[bool, int]:
    """(batch, shards) for ``plan``. One local process: every schedule and seed of a delay in one
    ensemble (per-op overheads shared). A local pool of W processes: still every schedule per
    ensemble, but the seeds cut into parts so that W processes (one per core) share the work evenly.
    Dask: one job per schedule. FLOSS_PER_SCHEDULE=1 keeps one job per schedule everywhere (finer
    progress and crash recovery)."""
    from ..plan import shards_for

    if settings.get("FLOSS_PER_SCHEDULE") or executor != "local":
        return False, 1
    workers = max_workers or 1
    return True, shards_for(spec, workers) if workers > 1 else 1


# ------------------------------------------------------------------------------------ queue
def submit(spec: ComparisonSpec, store, *, worker_id: str | None = None) -> int:
    """Queue a comparison with its planned runs; returns the experiment id.

    Args:
        spec: a ComparisonSpec (from ``make_spec``); validated again here (ValueError, one line).
        store: a ``Store`` or a path.
        worker_id: insert it as already 'running' by this worker (``run_here`` does); None queues it.
    """
    from ..experiment import ComparisonSpec, spec_to_dict, validate_spec

    if not isinstance(spec, ComparisonSpec):
        raise TypeError(f"submit takes a ComparisonSpec (see make_spec), got {type(spec).__name__}")
    validate_spec(spec)
    if spec.task.csv_path:  # the worker may run in another directory: store where the file really is
        spec = replace(spec, task=replace(spec.task, csv_path=str(Path(spec.task.csv_path).resolve())))
    with _opened(store) as store:
        return store.add_experiment(spec_to_dict(spec), name=spec.name, runs=planned_runs(spec),
                                    progress_total=total_units(spec), worker_id=worker_id,
                                    status="queued" if worker_id is None else "running")


def cancel(store, experiment_id: int) -> str:
    """Ask an experiment to stop; returns its status afterwards.

    A queued experiment is cancelled at once ('cancelled'); a running one keeps 'running' until its
    worker notices, within a few seconds; a finished one is left alone (its status is returned).
    """
    with _opened(store) as store:
        status = store.experiment(experiment_id)["status"]  # KeyError if absent
        if status in ("queued", "running"):
            store.request_cancel(experiment_id)
            status = store.experiment(experiment_id)["status"]
        return status


KINDS = ("train", "floss", "diag")   # what a job's time goes to: training steps, flossing steps, snapshots


class _Job:
    """One job's progress as its experiment's ``_Progress`` sees it: how much of each kind of work it has
    (``total``) and has done (``count``), its runs' keys and what they are doing now."""

    def __init__(self, units: int, steps: int, keys: list[tuple], snapshots: int = 0):
        self.units, self.keys = units, keys
        self.total = {"train": steps, "floss": units - steps, "diag": snapshots}
        self.count = dict.fromkeys(KINDS, 0)
        self.started = self.finished = False
        self.t_last = None          # when its last units were done (or it started)
        self.diag_since = None      # when the snapshot under way began (None: none is)
        self.states: list[tuple] = []   # (state, step, steps) per member, as last reported

    @property
    def done(self) -> int:
        """Units done (training + flossing steps)."""
        return self.count["train"] + self.count["floss"]

    def left(self) -> dict:
        return {k: 0 if self.finished else max(0, self.total[k] - self.count[k]) for k in KINDS}


class _Progress:
    """One running experiment's progress, computed in one place: what its jobs have done, the fraction of
    its work and the ETA every display shows (the store keeps them: ``Store.set_progress``), what each run
    is doing now; throttled store writes and cancel polls.

    The time model: a job's work is training steps, flossing steps (its units, ``plan.job_units``) and
    spectrum snapshots (``plan.job_work``), and one of each kind costs what that kind has cost so far,
    measured as the jobs report: a snapshot lasts while the same members are in 'diagnostics';
    the other time between two reports goes to the units done in between (in proportion to their kinds'
    costs), time in which none were done to the next ones. A job's remaining seconds are what it has left
    of each kind times those costs; the ETA is the time ``processes`` processes need for them, the running
    jobs first (``_makespan``); the fraction is the seconds done over done + remaining, never moving back.
    A kind not timed yet (training, during pre-flossing) costs what ``prior`` (seconds per step / snapshot
    this machine's cost table predicts, ``costs``) says, times how much slower or faster than predicted the
    timed kinds ran; without a prior the ETA is unknown until then (None: 'estimating…') and the fraction
    takes it at the others' cost. For constant-rate work the ETA is remaining units / rate. ``clock``
    (monotonic seconds) is replaceable for tests.
    """

    def __init__(self, store: Store, experiment_id: int, jobs: list, *, processes: int = 1, done: int = 0,
                 prior: dict | None = None, clock=time.monotonic):
        """``jobs``: the jobs to run, as (units, training steps, run keys (delay, schedule, seed) in member
        order[, snapshots]); ``done``: units of jobs finished before (an earlier attempt); ``prior``:
        {kind: predicted seconds per step or snapshot} (``KINDS``), or None."""
        self.store, self.experiment_id = store, experiment_id
        self.prior = {k: float(v) for k, v in (prior or {}).items() if k in KINDS and v and v > 0}
        self.jobs = [_Job(*j) for j in jobs]
        self.processes, self.clock = max(1, int(processes)), clock
        self.before = done
        self.total = done + sum(j.units for j in self.jobs)
        self.seconds = dict.fromkeys(KINDS, 0.0)    # measured seconds and counts, per kind
        self.counted = dict.fromkeys(KINDS, 0)
        self.fraction, self.eta = 0.0, None
        self.last_write, self.urgent = -math.inf, False
        self.last_poll, self.cancelled = -math.inf, False

    # -- what the executors report
    def start(self, slot: int) -> None:
        """Job ``slot`` began (what it does before its first report counts with what it reports first)."""
        job = self.jobs[slot]
        if not job.started:
            job.started, job.t_last = True, self.clock()

    def observe(self, slot: int, done: int, trained: int) -> None:
        """Job ``slot`` has done ``done`` units, ``trained`` of them training steps (cheap: every step)."""
        job = self.jobs[slot]
        now = self.clock()
        if not job.started:     # first seen now (a pool process): its time so far is not known
            job.started, job.t_last = True, now
        trained = min(trained, job.total["train"], done)
        flossed = min(done - trained, job.total["floss"])
        delta = {"train": trained - job.count["train"], "floss": flossed - job.count["floss"]}
        if delta["train"] <= 0 and delta["floss"] <= 0:
            return              # the time goes on to the next units
        if job.diag_since is None:   # (else a snapshot ended between two reports: its time is not theirs)
            self._charge(now - job.t_last, delta)
        job.t_last = now
        job.count["train"], job.count["floss"] = trained, flossed

    def report_states(self, slot: int, states: list[tuple]) -> None:
        """What each member of job ``slot`` is doing now (``train.train``'s ``on_state``); a member in
        'diagnostics' means a snapshot is under way."""
        job = self.jobs[slot]
        self.urgent |= not job.states     # a job's first report: its runs stop saying 'starting' at once
        measured = [i for i, (state, _, _) in enumerate(states) if state == "diagnostics"]
        was = [i for i, (state, _, _) in enumerate(job.states) if state == "diagnostics"]
        job.states = list(states)
        now = self.clock()
        if job.diag_since is not None and measured != was:   # that snapshot is over (another may begin)
            self._end_snapshot(job, now)
        if measured and job.diag_since is None:
            job.started = True
            job.diag_since = now

    def _end_snapshot(self, job: _Job, now: float) -> None:
        self._charge(now - job.diag_since, {"diag": 1})
        job.count["diag"] += 1
        job.diag_since, job.t_last = None, now

    def finish(self, slot: int) -> None:
        """Job ``slot``'s records are saved. What it did not run (flossing that stopped early, snapshots
        of phases that did not happen) never cost anything; a job that reported nothing on the way (Dask)
        gives its whole time to all its work."""
        job = self.jobs[slot]
        if job.finished:
            return
        now = self.clock()
        if job.diag_since is not None:
            self._end_snapshot(job, now)
        if job.started and not any(job.count.values()):
            self._charge(now - job.t_last, dict(job.total))
            job.count = dict(job.total)
        job.finished = True

    def _charge(self, seconds: float, counts: dict) -> None:
        """Add ``seconds`` for ``counts`` {kind: n}, split between the kinds in proportion to their costs so
        far (by count while one of them has not been timed)."""
        cost = self._model_costs()
        counts = {k: n for k, n in counts.items() if n > 0}
        timed = all(cost[k] for k in counts)
        weights = {k: n * (cost[k] if timed else 1.0) for k, n in counts.items()}
        total = sum(weights.values())
        for k, n in counts.items():
            self.seconds[k] += seconds * weights[k] / total if total > 0 else 0.0
            self.counted[k] += n

    def _costs(self) -> dict:
        """Seconds per step (per snapshot) of each kind so far; None: not timed yet."""
        return {k: self.seconds[k] / self.counted[k] if self.counted[k] and self.seconds[k] > 0 else None
                for k in KINDS}

    def _model_costs(self) -> dict:
        """The measured costs, a kind not timed yet filled in from ``prior`` scaled by how the timed kinds
        compare with their predictions (1 while none is timed)."""
        cost = self._costs()
        if self.prior:
            timed = [k for k in KINDS if cost[k] is not None and k in self.prior]
            predicted = sum(self.counted[k] * self.prior[k] for k in timed)
            speed = sum(self.seconds[k] for k in timed) / predicted if predicted > 0 else 1.0
            cost = {k: speed * self.prior[k] if cost[k] is None and k in self.prior else cost[k] for k in KINDS}
        return cost

    # -- the one fraction and ETA
    def estimate(self) -> tuple[float, float | None]:
        """(fraction of the work done, seconds left or None while unknown), as every display shows them."""
        cost = self._model_costs()
        timed = [cost[k] for k in ("train", "floss") if cost[k] is not None]
        fill = sum(timed) / len(timed) if timed else 1.0   # a kind not timed yet, for the fraction only
        c = {k: fill if cost[k] is None else cost[k] for k in KINDS}
        jobs = [j for j in self.jobs if not j.finished]
        left = {k: sum(j.left()[k] for j in jobs) for k in KINDS}
        if not any(v is not None for v in cost.values()):   # nothing timed yet: units
            fraction = (self.before + sum(j.done for j in self.jobs)) / self.total if self.total else 1.0
        else:
            per_unit = (c["train"] * sum(j.total["train"] for j in self.jobs)
                        + c["floss"] * sum(j.total["floss"] for j in self.jobs)) / max(1, sum(j.units for j in self.jobs))
            done = per_unit * self.before + sum(c[k] * j.count[k] for j in self.jobs for k in KINDS)
            rest = sum(c[k] * left[k] for k in KINDS)
            fraction = done / (done + rest) if done + rest > 0 else 1.0
        self.fraction = max(self.fraction, min(fraction, 1.0))
        if not jobs:
            self.eta = 0.0
        elif any(left[k] > 0 and cost[k] is None for k in KINDS):
            self.eta = None
        else:
            order = [j for j in jobs if j.started] + [j for j in jobs if not j.started]
            self.eta = _makespan([sum(c[k] * j.left()[k] for k in KINDS) for j in order], self.processes)
        return self.fraction, self.eta

    # -- the store
    def write(self, *, force: bool = False) -> None:
        """Write progress, the fraction, the ETA and the running runs' states (at most once per
        ``PROGRESS_EVERY_S`` unless ``force``, or a job has just said what its runs do)."""
        now = self.clock()
        if not force and not self.urgent and now - self.last_write < PROGRESS_EVERY_S:
            return
        self.last_write, self.urgent = now, False
        fraction, eta = self.estimate()
        runs = [(*key, *state) for j in self.jobs if j.started and not j.finished
                for key, state in zip(j.keys, j.states)]
        step = self.before + sum(j.units if j.finished else j.done for j in self.jobs)
        self.store.set_progress(self.experiment_id, min(step, self.total), self.total, eta, fraction=fraction,
                                runs=runs)

    def should_stop(self) -> bool:
        now = self.clock()
        if not self.cancelled and now - self.last_poll >= CANCEL_POLL_S:
            self.last_poll = now
            self.cancelled = self.store.cancel_requested(self.experiment_id)
        return self.cancelled


def _makespan(seconds: list[float], processes: int) -> float:
    """Wall seconds for jobs of ``seconds`` each, taken in order by ``processes`` processes as each comes free."""
    free = [0.0] * min(max(1, processes), max(1, len(seconds)))
    for s in seconds:
        i = free.index(min(free))
        free[i] += s
    return max(free) if seconds else 0.0


# ------------------------------------------------------------------------------------ reading back
def stored_records(store, experiment_id: int) -> list[dict]:
    """An experiment's finished runs as run records (without curves), ready for ``summarize``."""
    with _opened(store) as store:
        return run_records(store.runs(experiment_id, status=SCORED_RUN_STATUSES))
