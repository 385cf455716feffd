"""A comparison: one spec (frozen dataclasses) -> one ensemble per (delay, schedule) -> run records.

Every schedule trains the same seeds, i.e. the same initial weights and the same task data, so the
schedules differ only in flossing. ``make_spec`` is the one validated entry point shared by the CLI,
the runner and the dashboard; ``summarize`` turns run records (or the store's runs table) into the
per-schedule figures a report shows.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field, replace

from . import options as O
from . import schedules as S
from . import tasks as T
from .models import ModelConfig, state_dim, validate_model
from .plan import Job, estimate_seconds, job_units, plan, shards_for  # noqa: F401  (the plan of a comparison: plan.py)
from .stats import is_missing, mean, quantile, success_rate, wilson_interval  # noqa: F401  (wilson_interval: public here)
from .stats import solve_groups, time_to_solution
from .configs import LAB_FLOSS, FlossConfig, TrainConfig, resolve_device, validate_floss, validate_train, with_design
from .train import train


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
                  train=TrainConfig(steps=3001, eval_every=100, diag_len=300),   # stop_when_solved off: the
                  #                                 paper trains every network for the fixed budget
                  floss=LAB_FLOSS,                 # floss_design="reference": the paper's code exactly
                  schedule=S.Schedule(pre_steps=500, inter_steps=500, inter_at=(100, 200), every=100)),
    "quick": dict(task=T.TaskConfig(seq_len=60, batch=16), model=ModelConfig(hidden=32, gain=1.0),
                  train=TrainConfig(steps=400, eval_every=50, diag_len=100, diag_transient=20, lr=3e-3,
                                    stop_when_solved=True),   # a solved network stops: the same success rates
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
    O.check(options)                                 # choices, with the table's messages
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
    resolve_device(spec.device)   # an unknown device, or cuda where there is none: ValueError
    validate_model(spec.model)
    validate_train(spec.train)
    validate_floss(spec.floss, state_dim(spec.model))
    length = spec.task.seq_len
    too_long = [d for d in spec.delays if isinstance(length, int) and length >= 1 and d >= length]
    if too_long:   # in the command line's words: the sequence length is a flag the user may not know of
        raise ValueError(f"delay {max(too_long)} does not fit in a sequence of {length} steps: choose delays below "
                         f"{length} ({O.OPTIONS['delays'].flag}), or a longer sequence "
                         f"({O.OPTIONS['seq_len'].flag} above {max(too_long)})")
    for d in spec.delays:
        T.validate_task(replace(spec.task, delay=d))
    for s in spec.schedules:
        S.validate_schedule(s, eval_every=spec.train.eval_every, k=spec.floss.k)


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


def run_job(spec: ComparisonSpec, job: Job, *, on_progress=None, should_stop=None, on_state=None,
            on_record=None) -> list[dict]:
    """Train one ensemble; records carry the delay and the comparison's name in their config.
    ``on_state(states)``: what each member (``job.member_list``'s order) is doing now; ``on_record(record)``:
    a member's record as soon as it is over before the others (diverged) (``train.train``)."""
    by_name = {s.name: s for s in spec.schedules}
    members = job.member_list(spec)

    def named(r: dict) -> dict:
        r["config"]["comparison"] = spec.name
        r["config"]["preset"] = spec.preset
        return r

    records = train(spec.model, replace(spec.task, delay=job.delay), spec.train, spec.floss,
                    [by_name[n] for n, _ in members], [seed for _, seed in members], members=True,
                    device=spec.device, on_progress=on_progress, should_stop=should_stop, on_state=on_state,
                    on_record=None if on_record is None else lambda r: on_record(named(r)))
    return [named(r) for r in records]


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
def _cost(rs: list[dict]) -> dict:
    """What the runs of one schedule cost, per run (a part not recorded, as in a store from before
    issue 15: NaN): ``train_s_per_run``, ``floss_s_per_run``, ``eval_s_per_run``, ``diag_s_per_run``; the
    schedule's cost ``compute_s_per_run`` = training + flossing (never evaluation or diagnostics);
    ``floss_cost_vs_training`` = flossing / task-training seconds (1.1: "+110 % training compute, i.e.
    2.1×"); ``diag_share``, the lab's diagnostics as a share of the wall time (measurement overhead, not a
    cost of the schedule); ``train_steps`` and ``floss_steps``, the mean step counts per run."""
    def seconds(r, part):
        v = r.get(f"{part}_seconds")
        return math.nan if is_missing(v) else float(v)

    def per_run(xs):
        xs = [x for x in xs if not math.isnan(x)]
        return sum(xs) / len(xs) if xs else math.nan

    train_floss = [(seconds(r, "train"), seconds(r, "floss")) for r in rs]
    both = [(t, f) for t, f in train_floss if not (math.isnan(t) or math.isnan(f))]
    trained = sum(t for t, _ in both)
    diag_wall = [(seconds(r, "diag"), seconds(r, "wall")) for r in rs]
    diag_wall = [(d, w) for d, w in diag_wall if not (math.isnan(d) or math.isnan(w))]
    walls = sum(w for _, w in diag_wall)
    return {"train_s_per_run": per_run(t for t, _ in train_floss),
            "floss_s_per_run": per_run(f for _, f in train_floss),
            "eval_s_per_run": per_run(seconds(r, "eval") for r in rs),
            "diag_s_per_run": per_run(seconds(r, "diag") for r in rs),
            "compute_s_per_run": per_run(t + f for t, f in both),
            "floss_cost_vs_training": sum(f for _, f in both) / trained if trained > 0 else math.nan,
            "diag_share": sum(d for d, _ in diag_wall) / walls if walls > 0 else math.nan,
            "train_steps": mean(r["final"].get("train_steps") for r in rs),
            "floss_steps": mean(r["final"].get("floss_steps") for r in rs)}


def summarize(records: list[dict]) -> list[dict]:
    """Per (delay, schedule): n, successes, success rate with its 95% interval, median / IQR
    convergence step (over successful runs), mean final accuracy (a run stopped when solved: its accuracy
    at convergence; ``stopped`` counts those runs), mean λ_1 and log10 κ₂ before /
    after, diverged count, wall time (sum over runs) and its flossing share, what a run costs (``_cost``:
    training and flossing, apart from evaluation and the lab's diagnostics); and the time to solution with
    the unsolved runs censored (``stats.time_to_solution``): median_solve_step with median_solve_lo /
    median_solve_hi (Kaplan–Meier median and 95% interval; inf, null in JSON: not reached within the
    budget), logrank_p vs 'none' at the same delay, and the paired seeds: paired_seeds, solved_first,
    baseline_first, paired_p (sign test)."""
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
            "final_acc": mean(next((f[c] for c in T.SCORE_COLUMNS if c in f), None) for f in fin),
            "lambda1_before": mean(f.get("lambda1_before") for f in fin),
            "lambda1_after": mean(f.get("lambda1_after") for f in fin),
            "lambda1_flossed": mean(f.get("lambda1_flossed") for f in fin),
            "log10_kappa_before": mean(f.get("log10_kappa_before") for f in fin),
            "log10_kappa_after": mean(f.get("log10_kappa_after") for f in fin),
            "diverged": sum(r["status"] == "diverged" for r in rs),
            # stop_when_solved: runs that stopped at convergence (their final_acc is their accuracy there)
            "stopped": sum(not is_missing(r["final"].get("stopped_at")) for r in rs),
            "wall_seconds": wall, "floss_share": floss_s / wall if wall else math.nan,
            **_cost(rs),
            **_skill(rs),
        })
    # time to solution, counting the runs that never solved (censored): stats.time_to_solution's keys
    survival = time_to_solution(solve_groups(records))
    for row in out:
        row.update({k: v for k, v in survival[(row["delay"], row["schedule"])].items() if k != "n"})
    return out


# the csv runs' final numbers that summarize averages per schedule (diagnostics.judge, baseline_scores)
SKILL_KEYS = ("test_skill", "test_mse", "test_r2", "persistence_mse", "persistence_r2", "seasonal_mse",
              "seasonal_r2", "baseline_mse", "baseline_r2")


def _skill(rs: list[dict]) -> dict:
    """For runs judged against baselines (csv): 'skill', the mean final skill 1 - MSE / MSE of the better
    baseline; 'skill_margin', the bar of success; the means of the network's final test_mse and test_r2 and
    of the baselines' MSE and R² on the same test windows (seasonal_* only with a period); 'baseline', the
    better baseline's name. {} for runs without a skill (the bit tasks, runs stored before issue 15)."""
    fin = [r["final"] for r in rs]
    if not any("test_skill" in f for f in fin):
        return {}
    out = {("skill" if k == "test_skill" else k): mean(f.get(k) for f in fin)
           for k in SKILL_KEYS if any(k in f for f in fin)}
    names = [f["baseline"] for f in fin if isinstance(f.get("baseline"), str)]
    out["baseline"] = max(sorted(set(names)), key=names.count) if names else None   # the same for a delay
    out["skill_margin"] = rs[0]["config"]["task"].get("skill_margin")
    return out

