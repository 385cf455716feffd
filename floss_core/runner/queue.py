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


class _Job:
    """One job's progress as its experiment's ``_Progress`` sees it: units done of each kind, its runs'
    keys and what they are doing now."""

    def __init__(self, units: int, steps: int, keys: list[tuple]):
        self.units, self.steps, self.keys = units, steps, keys
        self.done = self.trained = 0                  # units done; of them, training steps
        self.started = self.finished = False
        self.t_last, self.idle = None, 0.0            # the last report's time; seconds since, no units done
        self.states: list[tuple] = []                 # (state, step, steps) per member, as last reported

    @property
    def flossed(self) -> int:
        return self.done - self.trained

    @property
    def floss_units(self) -> int:
        return self.units - self.steps


class _Progress:
    """One running experiment's progress, computed in one place: what its jobs have done, the fraction of
    its work and the ETA every display shows (the store keeps them: ``Store.set_progress``), what each run
    is doing now; throttled store writes and cancel polls.

    The time model: a job's work is training steps and flossing steps (its units, ``plan.job_units``), and
    a unit of each kind costs what units of that kind have cost so far: seconds of a job's own time per
    unit, measured as the jobs report (the time between two reports goes to the units done in between, in
    proportion to the kinds' costs; time in which none were done, e.g. a spectrum snapshot, to the next
    ones; a job's time after its last unit to its training steps). A job's remaining seconds are its
    remaining units times those costs; the ETA is the time ``processes`` processes need for them, the
    running jobs first (``_makespan``); the fraction is the seconds done over done + remaining, never
    moving back. While a kind with remaining units has not been measured yet (training, during
    pre-flossing) the ETA is unknown (None) and the fraction counts units. For constant-rate work the ETA
    is remaining units / rate. ``clock`` (monotonic seconds) is replaceable for tests.
    """

    def __init__(self, store: Store, experiment_id: int, jobs: list, *, processes: int = 1, done: int = 0,
                 clock=time.monotonic):
        """``jobs``: the jobs to run, as (units, training steps, run keys (delay, schedule, seed) in member
        order); ``done``: units of jobs finished before (an earlier attempt)."""
        self.store, self.experiment_id = store, experiment_id
        self.jobs = [_Job(*j) for j in jobs]
        self.processes, self.clock = max(1, int(processes)), clock
        self.before = done
        self.total = done + sum(j.units for j in self.jobs)
        self.seconds = {"train": 0.0, "floss": 0.0}   # measured seconds and units, per kind
        self.counted = {"train": 0, "floss": 0}
        self.fraction, self.eta = 0.0 if self.total else math.nan, None
        self.last_write = -math.inf
        self.last_poll, self.cancelled = -math.inf, False

    # -- what the executors report
    def start(self, slot: int) -> None:
        """Job ``slot`` began (its first spectrum, before any unit, counts with its first units)."""
        job = self.jobs[slot]
        if not job.started:
            job.started, job.t_last = True, self.clock()

    def observe(self, slot: int, done: int, trained: int) -> None:
        """Job ``slot`` has done ``done`` units, ``trained`` of them training steps (cheap: every step)."""
        job = self.jobs[slot]
        now = self.clock()
        if not job.started:     # first seen now (a pool process): its time so far is not known
            job.started, job.t_last = True, now
        done, trained = min(done, job.units), min(trained, job.steps, done)
        d_train, d_floss = trained - job.trained, (done - trained) - job.flossed
        seconds = now - job.t_last + job.idle
        job.t_last = now
        if d_train <= 0 and d_floss <= 0:
            job.idle = seconds
            return
        job.idle = 0.0
        self._charge(seconds, max(d_train, 0), max(d_floss, 0))
        job.done, job.trained = done, trained

    def report_states(self, slot: int, states: list[tuple]) -> None:
        """What each member of job ``slot`` is doing now (``train.train``'s ``on_state``)."""
        self.jobs[slot].states = list(states)

    def finish(self, slot: int) -> None:
        """Job ``slot``'s records are saved: its units not run (flossing that stopped early) never cost
        anything; its time since its last unit (the last spectrum, the records) goes to its training."""
        job = self.jobs[slot]
        if job.finished:
            return
        now = self.clock()
        if job.started:
            seconds = now - job.t_last + job.idle
            left_train, left_floss = job.steps - job.trained, job.floss_units - job.flossed
            if job.done == 0:       # nothing reported on the way (Dask): all its time for all its units
                self._charge(seconds, left_train, left_floss)
            else:
                self._charge(seconds, 0, 0, kind="train" if job.steps else "floss")
        job.done, job.trained, job.finished, job.idle = job.units, job.steps, True, 0.0

    def _charge(self, seconds: float, d_train: int, d_floss: int, kind: str | None = None) -> None:
        """Add ``seconds`` for ``d_train`` training and ``d_floss`` flossing units, split between the kinds
        in proportion to their costs so far (by units while one is unknown); ``kind`` takes it all."""
        if kind is not None:
            self.seconds[kind] += seconds
            return
        cost = self._costs()
        w_train = d_train * (cost["train"] if cost["train"] is not None and cost["floss"] is not None else 1.0)
        w_floss = d_floss * (cost["floss"] if cost["train"] is not None and cost["floss"] is not None else 1.0)
        weight = w_train + w_floss
        if weight <= 0:
            return
        self.seconds["train"] += seconds * w_train / weight
        self.seconds["floss"] += seconds * w_floss / weight
        self.counted["train"] += d_train
        self.counted["floss"] += d_floss

    def _costs(self) -> dict:
        """Seconds per unit of each kind so far (None: not measured yet)."""
        return {k: self.seconds[k] / self.counted[k] if self.counted[k] else None for k in self.seconds}

    # -- the one fraction and ETA
    def estimate(self) -> tuple[float, float | None]:
        """(fraction of the work done, seconds left or None while unknown), as every display shows them."""
        cost = self._costs()
        left = [(j.steps - j.trained, j.floss_units - j.flossed) for j in self.jobs if not j.finished]
        known = all(cost["train"] is not None or t == 0 for t, _ in left) and \
            all(cost["floss"] is not None or f == 0 for _, f in left)
        measured = [c for c in cost.values() if c is not None]
        fill = measured[0] if measured else 1.0     # a kind not timed yet: as the other, for the fraction only
        c_train = cost["train"] if cost["train"] is not None else fill
        c_floss = cost["floss"] if cost["floss"] is not None else fill
        if not measured:   # nothing timed yet: units
            done = self.before + sum(j.done for j in self.jobs)
            fraction = done / self.total if self.total else 1.0
        else:
            per_unit = (c_train * sum(j.steps for j in self.jobs) + c_floss * sum(j.floss_units for j in self.jobs)) \
                / max(1, sum(j.units for j in self.jobs))
            done = per_unit * self.before + sum(c_train * j.trained + c_floss * j.flossed for j in self.jobs)
            rest = sum(c_train * t + c_floss * f for t, f in left)
            fraction = done / (done + rest) if done + rest > 0 else 1.0
        self.fraction = max(self.fraction if not math.isnan(self.fraction) else 0.0, min(fraction, 1.0))
        if not left:
            self.eta = 0.0
        elif not known:
            self.eta = None
        else:
            running = [j for j in self.jobs if j.started and not j.finished]
            queued = [j for j in self.jobs if not j.started and not j.finished]
            rest = [c_train * (j.steps - j.trained) + c_floss * (j.floss_units - j.flossed) for j in running + queued]
            self.eta = _makespan(rest, self.processes)
        return self.fraction, self.eta

    # -- the store
    def write(self, *, force: bool = False) -> None:
        """Write progress, the fraction, the ETA and the running runs' states (at most once per
        ``PROGRESS_EVERY_S`` unless ``force``)."""
        now = self.clock()
        if not force and now - self.last_write < PROGRESS_EVERY_S:
            return
        self.last_write = now
        fraction, eta = self.estimate()
        runs = [(*key, *state) for j in self.jobs if j.started and not j.finished
                for key, state in zip(j.keys, j.states)]
        step = self.before + sum(j.done for j in self.jobs)
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
