"""How a comparison is cut into work: jobs (one ensemble each), sharding for parallel processes, the
work units that progress and ETAs count, and the time estimate: what each job runs (training steps,
evaluations, flossing steps and checks per phase, diagnostics snapshots) times what each costs on this
machine (``costs``: a table measured once, kept in the store), the jobs shared out among the worker
processes as the runner does."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from . import schedules as S
from . import tasks as T
from .train import work_units

if TYPE_CHECKING:
    from .experiment import ComparisonSpec


@dataclass(frozen=True)
class Job:
    """One ensemble at one delay: the named schedules for every seed of the spec, or, when ``members``
    is given, exactly those (schedule, seed) pairs (a part of a comparison cut for parallel workers)."""
    delay: int
    schedules: tuple[str, ...]
    members: tuple[tuple[str, int], ...] = ()

    @property
    def label(self) -> str:
        text = f"d={self.delay} {'+'.join(self.schedules)}"
        if self.members:
            seeds = sorted({seed for _, seed in self.members})
            text += f" seeds {seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else f" seed {seeds[0]}"
            text += f" ({len(self.members)} runs)"
        return text

    def member_list(self, spec: "ComparisonSpec") -> tuple[tuple[str, int], ...]:
        """(schedule, seed) of every member, schedules outermost."""
        return self.members or tuple((n, seed) for n in self.schedules for seed in spec.seeds)

    def seeds_of(self, name: str, spec: "ComparisonSpec") -> tuple[int, ...]:
        return tuple(seed for n, seed in self.member_list(spec) if n == name)


def _cut(items, n: int) -> list[tuple]:
    """``items`` cut into min(n, len) contiguous parts whose sizes differ by at most one."""
    items, n = tuple(items), max(1, min(n, len(items)))
    size, extra = divmod(len(items), n)
    out, start = [], 0
    for i in range(n):
        stop = start + size + (i < extra)
        out.append(items[start:stop])
        start = stop
    return out


def plan(spec: ComparisonSpec, *, batch: bool = True, shards: int = 1) -> list[Job]:
    """The ensembles to train. ``batch``: one per delay holding every schedule (E = schedules × seeds,
    the cheapest on one process: per-op overheads are shared); else one per (delay, schedule).
    ``shards`` > 1 cuts each of those into that many parts of (schedule, seed) runs whose sizes differ
    by at most one, for parallel processes (one per CPU core): the runs are taken seed by seed, so
    every part holds about the same number of runs of each schedule, and a process does not lag
    behind because it got all the flossing."""
    names = tuple(s.name for s in spec.schedules)
    groups = [names] if batch else [(n,) for n in names]
    jobs = []
    for d in spec.delays:
        for g in groups:
            if shards <= 1:
                jobs.append(Job(d, g))
                continue
            runs = [(n, seed) for seed in spec.seeds for n in g]               # seed by seed
            for part in _cut(runs, shards):
                part = tuple(sorted(part, key=lambda r: (g.index(r[0]), spec.seeds.index(r[1]))))
                jobs.append(Job(d, tuple(n for n in g if any(r[0] == n for r in part)), part))
    return jobs


def shards_for(spec: ComparisonSpec, workers: int) -> int:
    """Parts per delay that keep ``workers`` processes busy: ceil(workers / delays)."""
    return max(1, -(-int(workers) // max(1, len(spec.delays))))


def job_units(spec: ComparisonSpec, job: Job) -> int:
    """Work units (flossing + training steps) of one job, for progress and ETA."""
    return work_units([s for s in spec.schedules if s.name in job.schedules], spec.train.steps)


# ------------------------------------------------------------------------------------ the estimate
PARTS = ("train", "floss", "eval", "diag")    # where an estimate's seconds go (as a run's: train.PARTS)


@dataclass(frozen=True)
class Estimate:
    """The expected wall time of a comparison on this machine (``estimate``)."""
    seconds: float                  # start to finish
    workers: int                    # worker processes assumed (a worker's: FLOSS_WORKERS, else one per core)
    processes: int                  # the processes that train: one per job at most, one without a pool
    jobs: int                       # ensembles trained (``plan`` as the runner cuts it for those workers)
    start_seconds: float            # starting the processes
    parts: dict                     # seconds of work by part (PARTS), summed over jobs, one process alone
    bound: bool                     # flossing counted at its budget where it can stop early (adaptive, stopping rule)
    solved_stop: bool = False       # training counted at its budget though solved networks stop (stop_when_solved):
                                    # the estimate is then an upper bound (when a network solves is not known)


def _phases(spec: "ComparisonSpec", members) -> list[tuple[int, int]]:
    """(flossing steps, members flossing together) of every flossing phase of one ensemble, as the loop
    runs them (``train._groups``: members asking for the same number of steps floss together); the
    adaptive schedule's phases at their most (every measurement triggers one)."""
    from .train import _groups

    scheds = [s for s, _ in members]
    steps, out = spec.train.steps, []
    out += [(n, len(idx)) for n, idx in _groups([S.pre_steps(s) for s in scheds]).items()]
    for t in sorted({t for s in scheds for t in s.inter_at if t < steps}):
        out += [(n, len(idx)) for n, idx in _groups([S.inter_steps(s, t) for s in scheds]).items()]
    for t in range(0, steps, spec.train.eval_every):
        out += [(n, len(idx)) for n, idx in _groups([s.adaptive_steps if S.measures_at(s, t) else 0
                                                      for s in scheds]).items()]
    return out


def _checks(floss, n: int) -> int:
    """The stopping rule's long-window measurements in a phase of ``n`` flossing steps (``phases.floss_phase``:
    every stop_every steps, also at step 0 where the design needs to know who is chaotic)."""
    from .phases import state_gradient

    regime = state_gradient(floss) == "auto" or (floss.clip_chaotic_only and floss.clip > 0)
    if not (floss.stop_tol > 0 or regime):
        return 0
    return sum(1 for i in range(0, n, floss.stop_every) if regime or i > 0)


def job_work(spec: "ComparisonSpec", job: Job) -> list[tuple[str, str, dict, int]]:
    """What one job runs: (part, primitive, sizes, calls) for the cost model (``costs.CostModel``):
    training steps, evaluations, flossing steps and the stopping rule's checks per phase, the joint
    term, diagnostics snapshots (the whole ensemble at the start and the end, a phase's members before and
    after it)."""
    from . import models as M
    from .train import _groups

    by_name = {s.name: s for s in spec.schedules}
    members = [(by_name[n], seed) for n, seed in job.member_list(spec)]
    e, n, d = len(members), spec.model.hidden, M.state_dim(spec.model)
    task, tr, fl = replace(spec.task, delay=job.delay), spec.train, spec.floss
    window = tr.diag_len if T.task_entry(task.name).bit_inputs else task.seq_len   # a csv diagnoses a test window
    k = min(fl.k, d)
    floss_sizes = dict(N=n, k=k, L=fl.seq_len, b=fl.batch)
    evals = len(range(0, tr.steps, tr.eval_every)) + (1 if (tr.steps - 1) % tr.eval_every else 0)
    work = [("train", "train", dict(E=e, N=n, B=task.batch, T=task.seq_len), tr.steps),
            ("eval", "eval", dict(E=e, N=n, B=tr.eval_batch, T=task.seq_len, L=window, k=min(tr.monitor_k, d)), evals)]
    phases = _phases(spec, members)
    for steps, m in phases:
        work.append(("floss", "floss", dict(floss_sizes, E=m), steps))
        work.append(("floss", "exponents", dict(N=n, E=m, k=k, L=fl.stop_len), _checks(fl, steps)))
    joint = [s for s, _ in members if s.name == "joint"]
    if joint:
        work.append(("floss", "floss", dict(floss_sizes, E=len(joint)), len(range(0, tr.steps, joint[0].every))))
    if tr.diagnostics:
        # the whole ensemble at the start and the end, a phase's members before and after it; a pre phase's
        # "before" is the initial snapshot's numbers (the same weights: ``_Run.snapshot`` computes nothing)
        snap = dict(N=n, k=max(1, min(fl.k, d)), L=window)
        work.append(("diag", "snapshot", dict(snap, E=e), 2))
        n_pre = len(_groups([S.pre_steps(s) for s, _ in members]))
        for i, (_, m) in enumerate(phases):
            work.append(("diag", "snapshot", dict(snap, E=m), 1 if i < n_pre else 2))
    return [w for w in work if w[3] > 0]


def job_seconds(spec: "ComparisonSpec", job: Job, model) -> dict:
    """Seconds of one job by part (``PARTS``), one process alone, from the cost model ``model``."""
    from .costs import floss_variant

    arch, out = spec.model.arch, dict.fromkeys(PARTS, 0.0)
    variant = {"floss": floss_variant(arch, spec.floss), "snapshot": spec.train.diag_dtype}
    for part, op, sizes, calls in job_work(spec, job):
        seconds = model.seconds(arch, op, variant.get(op), **sizes)
        if op == "eval":    # its λ monitor is the lab's diagnostics, as a run's records count it
            monitor = min(seconds, model.seconds(arch, "exponents", N=sizes["N"], E=sizes["E"], k=sizes["k"],
                                                 L=sizes["L"]))
            out["diag"] += calls * monitor
            seconds -= monitor
        out[part] += calls * seconds
    return out


def _makespan(seconds: list[float], processes: int, slowdown) -> float:
    """Wall time of jobs taken in order by ``processes`` processes as each comes free, each process
    running ``slowdown(n)`` times slower while n run side by side."""
    queue, active, t = list(seconds), [], 0.0
    while queue and len(active) < processes:
        active.append(queue.pop(0))
    while active:
        f = slowdown(len(active))
        step = min(active)
        t += step * f
        active = [a - step for a in active if a - step > 1e-12]
        while queue and len(active) < processes:
            active.append(queue.pop(0))
    return t


def processes_for(spec: "ComparisonSpec", workers: int) -> tuple[list[Job], int]:
    """The jobs the runner trains with ``workers`` local worker processes (``runner.planned_jobs``) and
    how many processes train them: a pool of one per job at most, or this process alone."""
    from .runner.queue import planned_jobs

    workers = max(1, int(workers))
    batch, shards = planned_jobs(spec, "local", workers)
    jobs = plan(spec, batch=batch, shards=shards)
    return jobs, min(workers, len(jobs)) if workers > 1 and len(jobs) > 1 else 1


def estimate(spec: "ComparisonSpec", table: dict, *, workers: int = 1) -> Estimate:
    """The expected wall time of ``spec`` run by a local worker with ``workers`` processes, from this
    machine's cost table (``costs``; KeyError when it lacks the spec's architecture): what every job runs
    (``job_work``) times what each primitive costs here, the jobs shared out among the processes as the
    runner does (``processes_for``), plus starting them, each one's warm-up and the experiment's own
    overhead (queueing, saving; ``costs.CostModel``). Instant: nothing is trained."""
    from .costs import CostModel

    model = CostModel(table)
    jobs, processes = processes_for(spec, workers)
    per_job = [job_seconds(spec, job, model) for job in jobs]
    parts = {p: sum(j[p] for j in per_job) for p in PARTS}
    totals = [sum(j.values()) for j in per_job]
    for i in range(processes):       # each process's first job pays its warm-up
        totals[i] += model.warmup(spec.model.arch)
    start = model.start_seconds(processes)
    wall = model.overhead() + (_makespan(totals, processes, model.slowdown) + start if processes > 1 else sum(totals))
    bound = (spec.floss.stop_tol > 0 and any(S.planned_floss_steps(s, spec.train.steps) for s in spec.schedules)) \
        or any(s.name == "adaptive" for s in spec.schedules)
    return Estimate(seconds=wall, workers=max(1, int(workers)), processes=processes, jobs=len(jobs),
                    start_seconds=start if processes > 1 else 0.0, parts=parts, bound=bound,
                    solved_stop=bool(spec.train.stop_when_solved) and T.task_entry(spec.task.name).judged == "first")


_measured: dict = {}   # tables measured on demand in this process, by what they cover


def table_for(spec: "ComparisonSpec", workers: int = 1) -> dict:
    """A cost table for ``spec`` measured here now (once per process for what it covers): its
    architecture at the grid's sizes up to the first at or above the spec's hidden units and largest
    ensemble, the machine's part for the processes the runner would use, and the architecture's warm-up
    in a fresh process where the runner would start fresh processes (this one, measuring, is warm). The
    dashboard reads the table the background worker keeps in the store instead."""
    from . import costs
    from .configs import resolve_device

    jobs, processes = processes_for(spec, workers)
    biggest = max(len(j.member_list(spec)) for j in jobs)
    hidden = _up_to(costs.HIDDEN, spec.model.hidden)
    ensemble = _up_to(costs.ENSEMBLE + (36,), biggest)
    device = resolve_device(spec.device).type
    key = (spec.model.arch, hidden, ensemble, processes, device)
    if key not in _measured:
        _measured[key] = costs.measure([spec.model.arch], device=device, workers=processes, hidden=hidden,
                                       ensemble=ensemble, warmup=processes > 1)
    return _measured[key]


def _up_to(grid: tuple, value: int) -> tuple:
    """The grid's values up to the first at or above ``value`` (all of them if none is)."""
    above = [g for g in grid if g >= value]
    return tuple(g for g in grid if g <= (above[0] if above else grid[-1]))


def estimate_seconds(spec: "ComparisonSpec", *, workers: int = 1, table: dict | None = None) -> float:
    """``estimate(spec, table, workers=workers).seconds``; without a table, one measured here first
    (``table_for``: seconds to a minute, once per process)."""
    return estimate(spec, table if table is not None else table_for(spec, workers), workers=workers).seconds
