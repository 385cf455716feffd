"""A comparison: one spec (frozen dataclasses) -> one ensemble per (delay, schedule) -> run records.

Every schedule trains the same seeds, i.e. the same initial weights and the same task data, so the
schedules differ only in flossing. ``make_spec`` is the one validated entry point shared by the CLI,
the runner and the dashboard; ``summarize`` turns run records (or the store's runs table) into the
per-schedule figures a report shows.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass, field, replace

from . import options as O
from . import schedules as S
from . import tasks as T
from .models import ModelConfig, state_dim, validate_model
from .stats import mean, quantile, success_rate, wilson_interval  # noqa: F401  (wilson_interval: public here)
from .train import LAB_FLOSS, FlossConfig, TrainConfig, train, validate_floss, validate_train, with_design, work_units


@dataclass(frozen=True)
class ComparisonSpec:
    name: str = "comparison"                          # shown in lists and reports
    preset: str = "quick"                             # paper | quick: where the defaults came from
    task: T.TaskConfig = field(default_factory=T.TaskConfig)   # task.delay is replaced by each of delays
    delays: tuple[int, ...] = (20,)                   # several delays give a success-vs-delay sweep
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    floss: FlossConfig = field(default_factory=FlossConfig)
    schedules: tuple[S.Schedule, ...] = (S.Schedule("none"), S.Schedule("pre"))
    seeds: tuple[int, ...] = tuple(range(9))          # the same seeds for every schedule
    device: str = "auto"                              # auto | cpu | cuda


# The paper preset is the reference protocol (PAPER_NOTES.md); quick shrinks it to about a minute.
PRESETS = {
    "paper": dict(task=T.TaskConfig(seq_len=300, batch=16), model=ModelConfig(hidden=80, gain=1.0),
                  train=TrainConfig(steps=3001, eval_every=100, diag_len=300),
                  floss=LAB_FLOSS,                 # floss_design="reference": the paper's code exactly
                  schedule=S.Schedule(pre_steps=500, inter_steps=500, inter_at=(100, 200), every=100)),
    "quick": dict(task=T.TaskConfig(seq_len=60, batch=16), model=ModelConfig(hidden=32, gain=1.0),
                  train=TrainConfig(steps=400, eval_every=50, diag_len=100, diag_transient=20, lr=3e-3),
                  floss=replace(LAB_FLOSS, k=16, seq_len=40, transient=10, lr=3e-3, stop_len=200),
                  schedule=S.Schedule(pre_steps=100, inter_steps=50, inter_at=(50, 100), every=50,
                                      adaptive_steps=25)),
}

OPTIONS = O.NAMES   # the flat keyword overrides make_spec takes (floss_core/options.py)


def make_spec(preset: str = "quick", **options) -> ComparisonSpec:
    """A validated spec from a preset plus flat overrides (``delays=[20, 40]``, ``seeds=9`` or a list,
    ``schedules=['none', 'pre']``, ``hidden=64``, ``k=16``, ...; see ``OPTIONS``).

    Raises ValueError with one line naming the field and the valid range or choices."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r}; choose from {', '.join(OPTIONS)}")
    base = PRESETS[preset]
    parts = {name: base[name] for name in ("task", "model", "train", "floss", "schedule")}
    if options.get("floss_design") is not None:      # first, so that single flossing fields still override it
        parts["floss"] = with_design(parts["floss"], options["floss_design"])
    for key, value in options.items():
        if key in O.FIELDS and value is not None:
            section, fld = O.FIELDS[key]
            parts[section] = replace(parts[section], **{fld: tuple(value) if O.OPTIONS[key].kind == "ints" else value})
    seeds = options.get("seeds") if options.get("seeds") is not None else 9
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        seeds = tuple(range(seeds))
    # None means "not given": the preset's default; an empty list is an error, never silently replaced
    delays = options.get("delays")
    delays = (parts["task"].delay,) if delays is None else (delays,) if isinstance(delays, int) else delays
    names = options.get("schedules")
    names = ("none", "pre") if names is None else names
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        raise ValueError(f"schedules must name at least one of {', '.join(S.NAMES)}")
    spec = ComparisonSpec(name=options.get("name") or "comparison", preset=preset, task=parts["task"],
                          delays=tuple(int(d) for d in delays), model=parts["model"], train=parts["train"],
                          floss=parts["floss"], schedules=tuple(replace(parts["schedule"], name=n) for n in names),
                          seeds=tuple(int(s) for s in seeds), device=options.get("device") or "auto")
    validate_spec(spec)
    return spec


def validate_spec(spec: ComparisonSpec) -> None:
    """Check everything once, at the boundary (ValueError, one line)."""
    if not spec.seeds:
        raise ValueError("seeds must be >= 1, got 0")
    if len(set(spec.seeds)) != len(spec.seeds):
        raise ValueError("seeds must be distinct")
    if not spec.delays:
        raise ValueError("delays must hold at least one delay")
    if not spec.schedules:
        raise ValueError(f"schedules must name at least one of {', '.join(S.NAMES)}")
    names = [s.name for s in spec.schedules]
    if len(set(names)) != len(names):
        raise ValueError(f"schedules must be distinct, got {', '.join(names)}")
    if spec.device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {spec.device!r}; choose one of auto, cpu, cuda")
    if spec.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but no CUDA device is available here; choose auto or cpu")
    validate_model(spec.model)
    validate_train(spec.train)
    validate_floss(spec.floss, state_dim(spec.model))
    for d in spec.delays:
        T.validate_task(replace(spec.task, delay=d))
    for s in spec.schedules:
        S.validate_schedule(s)
        if s.name == "adaptive" and s.every % spec.train.eval_every:
            raise ValueError(f"adaptive every ({s.every}) must be a multiple of eval_every ({spec.train.eval_every})")
        if s.name == "adaptive" and s.adaptive_k > spec.floss.k:
            raise ValueError(f"adaptive_k must be in 1..{spec.floss.k} (k), got {s.adaptive_k}")


def spec_to_dict(spec: ComparisonSpec) -> dict:
    return asdict(spec)


def spec_from_dict(d: dict) -> ComparisonSpec:
    """Inverse of ``spec_to_dict`` (JSON lists come back as tuples); validated."""
    spec = ComparisonSpec(
        name=d["name"], preset=d["preset"], task=T.TaskConfig(**d["task"]), delays=tuple(d["delays"]),
        model=ModelConfig(**d["model"]), train=TrainConfig(**d["train"]), floss=FlossConfig(**d["floss"]),
        schedules=tuple(S.Schedule(**{**s, "inter_at": tuple(s["inter_at"])}) for s in d["schedules"]),
        seeds=tuple(d["seeds"]), device=d["device"])
    validate_spec(spec)
    return spec


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


def run_job(spec: ComparisonSpec, job: Job, *, on_progress=None, should_stop=None) -> list[dict]:
    """Train one ensemble; records carry the delay and the comparison's name in their config."""
    by_name = {s.name: s for s in spec.schedules}
    members = job.member_list(spec)
    records = train(spec.model, replace(spec.task, delay=job.delay), spec.train, spec.floss,
                    [by_name[n] for n, _ in members], [seed for _, seed in members], members=True,
                    device=spec.device, on_progress=on_progress, should_stop=should_stop)
    for r in records:
        r["config"]["comparison"] = spec.name
        r["config"]["preset"] = spec.preset
    return records


def run_comparison(spec: ComparisonSpec, *, on_progress=None, should_stop=None, batch: bool = True,
                   shards: int = 1) -> list[dict]:
    """Run every job of ``plan(spec, batch=, shards=)`` in this process, one after another.
    ``on_progress(done, total, phase)``."""
    jobs = plan(spec, batch=batch, shards=shards)
    total = sum(job_units(spec, j) for j in jobs)
    offset, records = 0, []
    for job in jobs:
        def progress(done, _total, phase, offset=offset, job=job):
            if on_progress:
                on_progress(offset + done, total, f"{job.label}: {phase}")
        records += run_job(spec, job, on_progress=progress, should_stop=should_stop)
        offset += job_units(spec, job)
    return records


# ------------------------------------------------------------------------------------ summaries
def summarize(records: list[dict]) -> list[dict]:
    """Per (delay, schedule): n, successes, success rate with its 95% interval, median / IQR
    convergence step (over successful runs), mean final accuracy, mean λ_1 and log10 κ₂ before /
    after, diverged count, wall time (sum over runs) and its flossing share."""
    groups: dict = {}
    for r in records:
        key = (r["config"]["task"]["delay"], r["schedule"])
        groups.setdefault(key, []).append(r)
    out = []
    for (delay, schedule), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], S.NAMES.index(kv[0][1]))):
        n, wins = len(rs), sum(bool(r["success"]) for r in rs)
        conv = sorted(float(r["convergence_step"]) for r in rs if r["success"])
        wall = sum(r["wall_seconds"] or 0.0 for r in rs)
        floss_s = sum(r["floss_seconds"] or 0.0 for r in rs)
        _, lo, hi = success_rate(wins, n)
        fin = [r["final"] for r in rs]
        out.append({
            "delay": delay, "schedule": schedule, "n": n, "successes": wins, "success_rate": wins / n,
            "success_lo": lo, "success_hi": hi,
            "median_convergence": statistics.median(conv) if conv else math.nan,
            "iqr_convergence": (quantile(conv, 0.75) - quantile(conv, 0.25)) if conv else math.nan,
            "final_acc": mean(f.get("test_acc", f.get("test_r2")) for f in fin),
            "lambda1_before": mean(f.get("lambda1_before") for f in fin),
            "lambda1_after": mean(f.get("lambda1_after") for f in fin),
            "lambda1_flossed": mean(f.get("lambda1_flossed") for f in fin),
            "log10_kappa_before": mean(f.get("log10_kappa_before") for f in fin),
            "log10_kappa_after": mean(f.get("log10_kappa_after") for f in fin),
            "diverged": sum(r["status"] == "diverged" for r in rs),
            "wall_seconds": wall, "floss_share": floss_s / wall if wall else math.nan,
        })
    return out


def estimate_seconds(spec: ComparisonSpec, *, probe_steps: int = 2, workers: int = 1) -> float:
    """Estimated wall time of the whole comparison, from timing a few real training and flossing
    steps of this spec's ensemble on this machine (so it is measured, not guessed). ``workers``
    processes share the runs of each delay (the cost per network barely depends on the ensemble size
    between E = 9 and 18, bench/RESULTS.md), plus a few seconds to start them."""
    from .train import _bits, flossing_exponents, member_q0, resolve_device, task_forward
    from . import models as M
    import torch

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

    q0 = member_q0(spec.seeds, state_dim(spec.model), spec.floss.k, dev)

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
