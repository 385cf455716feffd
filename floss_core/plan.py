"""How a comparison is cut into work: jobs (one ensemble each), sharding for parallel processes, the
work units that progress and ETAs count, and the time estimate measured from a few real steps."""
from __future__ import annotations

import time
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


def estimate_seconds(spec: ComparisonSpec, *, probe_steps: int = 2, workers: int = 1) -> float:
    """Estimated wall time of the whole comparison, from timing a few real training and flossing
    steps of this spec's ensemble on this machine (so it is measured, not guessed). ``workers``
    processes share the runs of each delay (the cost per network barely depends on the ensemble size
    between E = 9 and 18, bench/RESULTS.md), plus a few seconds to start them."""
    from .configs import resolve_device
    from .diagnostics import task_forward
    from .phases import _bits, flossing_exponents, member_q0
    import torch

    from . import models as M

    dev = resolve_device(spec.device)
    task = replace(spec.task, delay=spec.delays[0])
    n_in, n_out = T.task_dims(task)
    params = {k: v.to(dev).requires_grad_(True) for k, v in
              M.init_ensemble(replace(spec.model, relax_steps=0), n_in, n_out, spec.seeds, batch=task.batch).items()}
    gens = [torch.Generator().manual_seed(s) for s in spec.seeds]

    def timed(fn) -> float:
        fn()  # warm-up
        t0 = time.perf_counter()
        for _ in range(probe_steps):
            fn()
        return (time.perf_counter() - t0) / probe_steps

    def train_step():
        batch = T.make_ensemble_batch(task, gens)
        loss, *_ = task_forward(spec.model, params, T.Batch(batch.inputs.to(dev), batch.targets.to(dev),
                                                            batch.mask.to(dev)), T.loss_kind(task))
        loss.sum().backward()

    q0 = member_q0(spec.seeds, M.state_dim(spec.model), spec.floss.k, dev)

    def floss_step():
        lam = flossing_exponents(spec.model, params, spec.floss, _bits(gens, spec.floss.seq_len, spec.floss.batch,
                                                                        n_in, dev), q0)
        (lam ** 2).sum().backward()

    t_train, t_floss = timed(train_step), timed(floss_step)
    total = 0.0
    for s in spec.schedules:
        total += spec.train.steps * t_train + S.planned_floss_steps(s, spec.train.steps) * t_floss
    # evaluation and diagnostic snapshots come on top: +45 % at the paper preset (bench/RESULTS.md, engine
    # with diagnostics on vs off, extrapolated to 3001 steps); with diagnostics off they are a few per cent
    parallel = max(1, min(int(workers), len(spec.seeds) * len(spec.schedules)))
    start = 5.0 if parallel > 1 else 0.0   # spawning the processes, each importing torch
    return total * len(spec.delays) * (1.45 if spec.train.diagnostics else 1.05) / parallel + start
