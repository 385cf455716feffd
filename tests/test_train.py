"""Tests for floss_core.train: schedule phases at the right steps, divergence handling, reproducibility,
ensemble = separate runs, success logic, CSV tasks (the optimiser and clipping: test_optim.py; the fused
flossing window: test_phases.py).

Every run is tiny (N = 6, T = 12, a handful of steps) so the file stays fast on one CPU thread."""
import importlib
import math
import time
from dataclasses import replace

import pytest
import torch

from floss_core import models as M
from floss_core.configs import FlossConfig, TrainConfig
from floss_core.schedules import Schedule
from floss_core.tasks import TaskConfig
from floss_core.train import train

TR = importlib.import_module("floss_core.train")  # the module (the name floss_core.train is the function): the loop
# calls flossing_exponents from its namespace, so a patch of TR.flossing_exponents reaches the joint step

MODEL = M.ModelConfig(hidden=6, gain=1.5, relax_steps=5)
TASK = TaskConfig(name="xor", delay=4, seq_len=12, batch=4)
TRAIN = TrainConfig(steps=6, lr=1e-2, eval_every=3, eval_batch=8, log_every=1, monitor_k=2, diag_len=20,
                    diag_transient=5, diagnostics=False)
FLOSS = FlossConfig(k=2, seq_len=10, transient=3, lr=1e-2)
SCHED = dict(pre_steps=3, inter_steps=2, inter_at=(2, 4), every=3, adaptive_k=2, adaptive_steps=2)


def run(schedule="none", seeds=(0, 1), *, model=MODEL, task=TASK, train_cfg=TRAIN, floss=FLOSS, **kw):
    sched = Schedule(**{**SCHED, "name": schedule, **kw})
    return train(model, task, train_cfg, floss, sched, list(seeds))


def metric_steps(record, name):
    return [m["step"] for m in record["metrics"] if m["name"] == name]


def metrics_of(record, prefix=""):
    return [(m["step"], m["name"], m["value"]) for m in record["metrics"] if m["name"].startswith(prefix)]


def assert_same_metrics(a, b, atol=0.0):
    ma, mb = a["metrics"], b["metrics"]
    assert [(m["step"], m["name"]) for m in ma] == [(m["step"], m["name"]) for m in mb]
    for x, y in zip(ma, mb):
        if atol == 0.0:
            assert x["value"] == y["value"] or (math.isnan(x["value"]) and math.isnan(y["value"])), (x, y)
        else:
            assert math.isclose(x["value"], y["value"], abs_tol=atol, rel_tol=atol), (x, y)


# ------------------------------------------------------------------------------ schedules
@pytest.mark.parametrize("name,pre,inter", [
    ("none", [], []),
    ("pre", [0, 0, 0], []),
    ("inter", [], [2, 2, 4, 4]),
    ("pre+inter", [0, 0, 0], [2, 2, 4, 4]),
])
def test_flossing_phases_happen_at_the_right_steps(name, pre, inter):
    progress = []
    recs = train(MODEL, TASK, TRAIN, FLOSS, Schedule(**{**SCHED, "name": name}), [0, 1],
                 on_progress=lambda d, t, ph: progress.append((d, t, ph)))
    for r in recs:
        assert r["status"] == "done" and r["schedule"] == name
        assert metric_steps(r, "floss_loss_pre") == pre          # log_every = 1: one row per flossing step
        assert metric_steps(r, "floss_loss_inter") == inter
        assert metric_steps(r, "floss_loss_adaptive") == []
        assert metric_steps(r, "train_loss") == list(range(6))
        assert metric_steps(r, "test_acc") == [0, 3, 5]          # every 3 steps and at the end
    n_floss = len(pre) + len(inter)
    assert progress[-1][:2] == (n_floss + 6, n_floss + 6)          # progress ends at its total
    assert [d for d, _, _ in progress] == list(range(1, n_floss + 7))
    assert sum("flossing" in ph for _, _, ph in progress) == n_floss


def test_spectrum_snapshots_before_and_after_each_phase():
    recs = run("pre+inter", train_cfg=replace(TRAIN, diagnostics=True))
    for r in recs:
        phases = [(s["step"], s["phase"]) for s in r["spectra"]]
        assert phases == [(0, "init"), (0, "pre_before"), (0, "pre_after"), (2, "inter_before"), (2, "inter_after"),
                          (4, "inter_before"), (4, "inter_after"), (6, "final")]
        assert all(len(s["exponents"]) == M.state_dim(MODEL) for s in r["spectra"])
        assert {j["phase"] for j in r["jacobian"]} == {p for _, p in phases}
        assert {"lambda1_before", "lambda1_after", "lambda1_flossed", "log10_kappa_before",
                "log10_kappa_after"} <= set(r["final"])
        assert r["final"]["lambda1_before"] == r["spectra"][0]["exponents"][0]
        assert r["final"]["lambda1_after"] == r["spectra"][-1]["exponents"][0]
        assert r["final"]["lambda1_flossed"] == r["spectra"][-2]["exponents"][0]


def test_a_snapshot_computes_only_members_whose_weights_changed(monkeypatch):
    # init and pre_before see the same weights: pre_before is init's numbers, not a second computation; a
    # phase's snapshots compute only its members; the numbers are those of snapshotting everyone every time
    from floss_core import diagnostics as D
    computed, real = [], D.snapshot

    def counting(model, params, inputs, **kw):
        computed.append(params["h0"].shape[0])
        return real(model, params, inputs, **kw)

    cfg = replace(TRAIN, diagnostics=True)
    seeds = [0, 1, 2]
    pre, none = Schedule(**{**SCHED, "name": "pre"}), Schedule(**{**SCHED, "name": "none"})
    monkeypatch.setattr(TR.D, "snapshot", counting)
    recs = train(MODEL, TASK, cfg, FLOSS, [pre, none, pre], seeds, members=True)
    assert computed == [3, 2, 3]               # init (all), pre_after (the two pre members), final (all)
    for r in recs:
        by = {s["phase"]: s["exponents"] for s in r["spectra"]}
        if r["schedule"] == "pre":
            assert by["pre_before"] == by["init"] and by["pre_after"] != by["init"]
    # each member's numbers equal a snapshot of the whole ensemble at those weights (here: the final one)
    out = TR._Run(MODEL, TASK, cfg, FLOSS, [pre, none, pre], seeds, torch.device("cpu"), total=1, on_progress=None,
                  should_stop=None)
    whole = real(MODEL, out.params, out.diag_inputs, transient=out.diag_transient, k=FLOSS.k, dtype=torch.float64)
    for i, r in enumerate(recs):
        assert r["spectra"][0]["exponents"] == whole["exponents"][i].tolist()   # init: untrained weights


def test_inter_phase_after_the_last_step_never_runs():
    recs = run("inter", inter_at=(2, 50))
    assert metric_steps(recs[0], "floss_loss_inter") == [2, 2]


def test_flossing_changes_training_and_none_does_not_floss():
    base, pre = run("none"), run("pre")
    assert pre[0]["floss_seconds"] > 0 and base[0]["floss_seconds"] == 0
    # the same seeds give the same data: the first training loss differs only through the flossed weights
    assert metrics_of(base[0], "train_loss")[0] != metrics_of(pre[0], "train_loss")[0]


def _lambda1_at_0(records):
    return [next(m["value"] for m in r["metrics"] if m["name"] == "lambda1" and m["step"] == 0) for r in records]


def test_adaptive_flosses_only_members_above_the_threshold():
    # adaptive_k = 1: the trigger is |λ_1| from the monitor at each evaluation (every 3 steps)
    seeds = [0, 1, 2, 3]
    base = run("none", seeds)
    lam = [abs(x) for x in _lambda1_at_0(base)]
    order = sorted(range(4), key=lambda i: lam[i])
    assert lam[order[-1]] - lam[order[0]] > 1e-3
    threshold = (lam[order[0]] + lam[order[-1]]) / 2
    above = [i for i in range(4) if lam[i] > threshold]
    assert 0 < len(above) < 4

    recs = run("adaptive", seeds, adaptive_k=1, threshold=threshold)
    for i, r in enumerate(recs):
        steps = metric_steps(r, "floss_loss_adaptive")
        if i in above:
            assert steps[:2] == [0, 0]                  # flossed at step 0 for adaptive_steps = 2 steps
            assert set(steps) <= {0, 3}
        else:
            assert 0 not in steps
            if not steps:                               # never triggered: exactly the unflossed run
                assert_same_metrics(r, base[i])
    # nobody is above an unreachable threshold: adaptive is then exactly 'none'
    never = run("adaptive", seeds, adaptive_k=1, threshold=100.0)
    for r, b in zip(never, base):
        assert metric_steps(r, "floss_loss_adaptive") == []
        assert_same_metrics(r, b)
    # everybody is above threshold 0, at every measurement (steps 0 and 3; step 5 is the final evaluation)
    always = run("adaptive", seeds, adaptive_k=2, threshold=0.0)
    for r in always:
        assert metric_steps(r, "floss_loss_adaptive") == [0, 0, 3, 3]


def test_joint_with_weight_zero_equals_none_and_positive_weight_differs():
    base = run("none")
    zero = run("joint", weight=0.0, every=1)
    for a, b in zip(base, zero):
        assert_same_metrics(a, b)
        # the same numbers; only the step count differs: weight 0 still computes the term (issue 15: costs)
        assert {**a["final"], "floss_steps": 6} == b["final"] and a["final"]["floss_steps"] == 0
    joint = run("joint", weight=5.0, every=1)
    for a, b in zip(base, joint):
        assert metrics_of(a, "train_loss")[0] == metrics_of(b, "train_loss")[0]   # logged before the update
        assert metrics_of(a, "train_loss")[1] != metrics_of(b, "train_loss")[1]
        assert b["floss_seconds"] > 0 and a["floss_seconds"] == 0


@pytest.mark.parametrize("every,expected", [(1, 6), (2, 3), (4, 2), (10, 1)])
def test_joint_adds_the_term_on_steps_divisible_by_every(monkeypatch, every, expected):
    calls = []
    real = TR.flossing_exponents

    def counting(*args, **kwargs):      # the real computation, counted
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(TR, "flossing_exponents", counting)
    run("joint", seeds=(0,), weight=1.0, every=every)
    assert len(calls) == expected   # steps 0..5 with step % every == 0


def test_joint_every_changes_the_result_only_from_the_first_step_it_skips():
    a = run("joint", seeds=(0,), weight=5.0, every=1)[0]
    b = run("joint", seeds=(0,), weight=5.0, every=2)[0]
    la, lb = metrics_of(a, "train_loss"), metrics_of(b, "train_loss")
    assert la[:2] == lb[:2]          # both add the term at step 0, so step 1's loss agrees
    assert la[2] != lb[2]            # only every=1 adds it at step 1


# ------------------------------------------------------------------------------ divergence
def _poisoned_init(monkeypatch, member, name, value):
    """Make one member's initial weights non-finite / huge (through the real init)."""
    real = M.init_ensemble

    def init(*args, **kwargs):
        p = real(*args, **kwargs)
        p[name][member] = value
        return p

    monkeypatch.setattr(M, "init_ensemble", init)


@pytest.mark.parametrize("schedule,reason", [("none", "task loss became non-finite"),
                                             ("pre", "flossing exponents became non-finite")])
def test_a_diverging_member_is_frozen_and_the_other_finishes_alone(monkeypatch, schedule, reason):
    alone = run(schedule, seeds=(0,))[0]
    _poisoned_init(monkeypatch, 1, "J", float("nan"))
    recs = run(schedule, seeds=(0, 1))
    bad, good = recs[1], recs[0]
    assert bad["status"] == "diverged" and bad["success"] is False
    assert bad["diverged_step"] == 0 and reason in bad["reason"]
    assert good["status"] == "done" and good["diverged_step"] is None and good["reason"] is None
    assert_same_metrics(good, alone, atol=1e-5)
    # the diverged member records nothing after its divergence step
    assert all(m["step"] <= bad["diverged_step"] for m in bad["metrics"])


@pytest.mark.parametrize("schedule", ["none", "pre"])
def test_every_member_diverging_is_an_outcome_not_a_crash(monkeypatch, schedule):
    # a lone network whose flossing (or training) goes non-finite: the run ends, recorded as diverged (the
    # training loop used to go on with an empty ensemble and fail drawing a test batch for nobody)
    _poisoned_init(monkeypatch, 0, "J", float("nan"))
    recs = run(schedule, seeds=(0,), train_cfg=replace(TRAIN, diagnostics=True))
    assert [r["status"] for r in recs] == ["diverged"] and recs[0]["success"] is False
    assert recs[0]["final"]["train_steps"] == 0


def test_huge_weights_diverge_in_training(monkeypatch):
    _poisoned_init(monkeypatch, 0, "W_in", float("inf"))
    recs = run("none", seeds=(0, 1))
    assert recs[0]["status"] == "diverged" and recs[0]["diverged_step"] == 0
    assert recs[1]["status"] == "done"


# ------------------------------------------------------------------------------ reproducibility, ensembles
def test_same_seed_and_config_give_identical_records():
    a, b = run("pre+inter"), run("pre+inter")
    for x, y in zip(a, b):
        assert_same_metrics(x, y)
        assert x["final"] == y["final"] and x["convergence_step"] == y["convergence_step"]
    c = run("pre+inter", seeds=(2, 3))
    assert metrics_of(a[0], "train_loss") != metrics_of(c[0], "train_loss")


@pytest.mark.parametrize("schedule", ["none", "pre+inter", "joint"])
def test_ensemble_equals_separate_runs(schedule):
    together = run(schedule, seeds=(0, 1), weight=1.0, every=2)
    for i, s in enumerate((0, 1)):
        alone = run(schedule, seeds=(s,), weight=1.0, every=2)[0]
        assert together[i]["seed"] == s
        assert_same_metrics(together[i], alone, atol=1e-5)


def test_explicit_members_equal_the_same_runs_in_the_full_product():
    # a part cut for a parallel worker: any (schedule, seed) pairs in one ensemble give the numbers those
    # runs have in the schedules x seeds ensemble
    scheds = {n: Schedule(**{**SCHED, "name": n}) for n in ("none", "pre")}
    full = train(MODEL, TASK, TRAIN, FLOSS, list(scheds.values()), [0, 1])
    part = train(MODEL, TASK, TRAIN, FLOSS, [scheds["pre"], scheds["none"]], [0, 1], members=True)
    assert [(r["schedule"], r["seed"]) for r in part] == [("pre", 0), ("none", 1)]
    for r in part:
        ref = next(f for f in full if (f["schedule"], f["seed"]) == (r["schedule"], r["seed"]))
        assert_same_metrics(r, ref, atol=1e-5)
    with pytest.raises(ValueError, match="one schedule per seed"):
        train(MODEL, TASK, TRAIN, FLOSS, [scheds["pre"]], [0, 1], members=True)


def test_one_ensemble_of_several_schedules_equals_one_ensemble_per_schedule():
    names = ["none", "pre", "inter", "joint", "adaptive"]
    kw = dict(weight=1.0, every=3, threshold=0.0)
    scheds = [Schedule(**{**SCHED, **kw, "name": n}) for n in names]
    together = train(MODEL, TASK, TRAIN, FLOSS, scheds, [0, 1])
    assert [(r["schedule"], r["seed"]) for r in together] == [(n, s) for n in names for s in (0, 1)]
    for i, n in enumerate(names):
        alone = run(n, seeds=(0, 1), **kw)
        for j in range(2):
            r = together[2 * i + j]
            assert r["config"]["schedule"]["name"] == n and r["final"]["ensemble_size"] == 10
            assert_same_metrics(r, alone[j], atol=1e-5)
    # the schedules share the seeds' initial weights and data: the first evaluation (step 0, before any
    # update) agrees for every schedule that has not flossed before it, and differs after pre-flossing
    first = {r["schedule"]: metrics_of(r, "test_loss")[0] for r in together if r["seed"] == 0}
    assert len({v for k, v in first.items() if k != "pre"}) == 1 and first["pre"] != first["none"]


def test_record_fields():
    r = run("pre", seeds=(5,))[0]
    for key in ("schedule", "seed", "member", "config", "status", "success", "convergence_step", "diverged_step",
                "reason", "final", "floss_seconds", "train_seconds", "wall_seconds", "device", "versions",
                "metrics", "spectra", "jacobian"):
        assert key in r
    assert r["config"]["seed"] == 5 and r["config"]["floss"]["k"] == 2 and r["config"]["schedule"]["name"] == "pre"
    assert r["final"]["ensemble_size"] == 1 and r["device"] == "cpu"
    assert r["wall_seconds"] >= r["floss_seconds"] + r["train_seconds"] - 1e-9


# ------------------------------------------------------------------------------ the cost split
PARTS = ("train_seconds", "floss_seconds", "eval_seconds", "diag_seconds")
# a run's four parts sum to its wall time up to the bookkeeping between them (setting up, the schedule
# hooks, the progress callbacks): at most 5 % of the wall time plus 10 ms (measured: 1–3 %)
REST_TOLERANCE = (0.05, 0.010)


def test_four_parts_sum_to_the_wall_time():
    names = ["none", "pre+inter", "adaptive", "joint"]
    scheds = [Schedule(**{**SCHED, "weight": 1.0, "every": 3, "threshold": 0.0, "name": n}) for n in names]
    recs = train(MODEL, TASK, replace(TRAIN, diagnostics=True), FLOSS, scheds, [0, 1])
    rel, abs_ = REST_TOLERANCE
    for r in recs:
        parts = [r[k] for k in PARTS]
        assert all(x >= 0 for x in parts) and r["train_seconds"] > 0 and r["eval_seconds"] > 0
        assert r["diag_seconds"] > 0
        assert 0 <= r["wall_seconds"] - sum(parts) <= rel * r["wall_seconds"] + abs_, (r["schedule"], parts)
        assert (r["floss_seconds"] > 0) == (r["schedule"] != "none")
    # the ensemble's shared work in equal shares: every member the same training, evaluation seconds
    assert len({r["train_seconds"] for r in recs}) == 1 and len({r["eval_seconds"] for r in recs}) == 1
    # the members' wall seconds add up to the ensemble's, which holds all the members' parts
    assert sum(r["wall_seconds"] for r in recs) >= sum(r[k] for r in recs for k in PARTS)


def test_progress_callbacks_are_nobodys_part():
    slept = []

    def slow(*_):
        time.sleep(0.004)
        slept.append(0.004)

    recs = train(MODEL, TASK, TRAIN, FLOSS, Schedule(**{**SCHED, "name": "pre"}), [0, 1], on_progress=slow)
    for r in recs:   # the callbacks' time is in the wall time, in none of the four parts
        assert r["wall_seconds"] - sum(r[k] for k in PARTS) >= sum(slept) / len(recs)


def test_step_counts_are_recorded_per_run():
    kw = dict(weight=1.0, every=3, threshold=0.0)
    counts = {n: [(r["final"]["train_steps"], r["final"]["floss_steps"]) for r in run(n, **kw)]
              for n in ("none", "pre+inter", "adaptive", "joint")}
    assert counts["none"] == [(6, 0)] * 2
    assert counts["pre+inter"] == [(6, 3 + 2 + 2)] * 2      # pre_steps 3, inter_steps 2 at steps 2 and 4
    assert counts["adaptive"] == [(6, 2 + 2)] * 2           # threshold 0: 2 steps at each measurement (0, 3)
    assert counts["joint"] == [(6, 2)] * 2                  # the joint term at steps 0 and 3
    stopped = run("pre", floss=replace(FLOSS, stop_tol=1e9, stop_every=1))   # within tolerance at once
    assert [r["final"]["floss_steps"] for r in stopped] == [1, 1]


def test_a_diverged_run_counts_the_updates_it_made(monkeypatch):
    _poisoned_init(monkeypatch, 0, "W_in", float("inf"))
    bad, good = run("none", seeds=(0, 1))
    assert (bad["final"]["train_steps"], good["final"]["train_steps"]) == (0, 6)


# ------------------------------------------------------------------------------ success logic
def _first_at_or_above(record, name, threshold):
    return next((m["step"] for m in record["metrics"] if m["name"] == name and m["value"] >= threshold), None)


@pytest.mark.parametrize("success_acc", [0.01, 0.5, 0.6, 1.0])
def test_success_and_convergence_step(success_acc):
    recs = run("none", seeds=(0, 1, 2), train_cfg=replace(TRAIN, success_acc=success_acc))
    for r in recs:
        expected = _first_at_or_above(r, "test_acc", success_acc)
        assert r["convergence_step"] == expected
        assert r["success"] == (expected is not None)
        if success_acc == 0.01:
            assert r["convergence_step"] == 0 and r["success"]
        if success_acc == 1.0:            # a perfect test batch is out of reach after 6 steps
            assert r["convergence_step"] is None and not r["success"]


# ------------------------------------------------------------------------------ csv task
def _write_csv(path, rows=240):
    t = torch.arange(rows, dtype=torch.float64)
    lines = ["a,b"] + [f"{math.sin(0.3 * x):.6f},{math.cos(0.17 * x) + 0.01 * x:.6f}" for x in t.tolist()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_csv_task_trains_and_records_test_r2(tmp_path):
    # issue 15: the success bar is the skill over the better baseline (skill_margin), no longer R² (r2_threshold)
    task = TaskConfig(name="csv", delay=2, seq_len=16, batch=4, csv_path=_write_csv(tmp_path / "s.csv"),
                      skill_margin=-1e9)
    recs = train(MODEL, task, replace(TRAIN, steps=4, eval_every=2), FLOSS, Schedule("pre", pre_steps=2), [0, 1])
    for r in recs:
        assert r["status"] == "done"
        assert metric_steps(r, "test_r2") == [0, 2, 3] and metric_steps(r, "test_acc") == []
        assert "test_r2" in r["final"] and "test_acc" not in r["final"]
        assert math.isfinite(r["final"]["test_r2"])
        assert r["convergence_step"] == 0 and r["success"]     # margin -1e9: reached at once, and kept
        assert r["config"]["task"]["name"] == "csv"


def test_csv_success_is_the_final_skill_over_the_better_baseline(tmp_path):
    from floss_core import diagnostics as D

    task = TaskConfig(name="csv", delay=2, seq_len=16, batch=4, csv_path=_write_csv(tmp_path / "s.csv"),
                      period=21, skill_margin=0.0)
    cfg = replace(TRAIN, steps=7, eval_every=2)
    recs = train(MODEL, task, cfg, FLOSS, Schedule("none"), [0, 1, 2])
    base = D.baseline_scores(task, cfg.eval_batch)
    for r in recs:
        f = r["final"]
        # the network's MSE (its test loss), R², skill; both baselines' MSE and R²; the better one; the rule
        assert f["test_mse"] == f["test_loss"]
        assert f["test_skill"] == pytest.approx(1 - f["test_mse"] / min(f["persistence_mse"], f["seasonal_mse"]))
        assert {k: f[k] for k in base} == base and f["baseline_mse"] == min(f["persistence_mse"], f["seasonal_mse"])
        assert "final evaluation" in f["success_rule"] and "period 21" in f["success_rule"]
        assert (f["forecast_columns"], f["missing_filled"], f["missing_dropped"]) == ("a,b", 0, 0)
        # judged at the final evaluation (step 6); the convergence step is the first from which it held
        skills = [(m["step"], m["value"]) for m in r["metrics"] if m["name"] == "test_skill"]
        assert [s for s, _ in skills] == [0, 2, 4, 6] and skills[-1][1] == pytest.approx(f["test_skill"])
        assert r["success"] == (f["test_skill"] >= 0.0)
        held = [s for i, (s, _) in enumerate(skills) if all(v >= 0.0 for _, v in skills[i:])]
        assert r["convergence_step"] == (held[0] if held else None)


def test_csv_task_with_a_window_shorter_than_the_default_diagnostic_transient(tmp_path):
    # the diagnostics window of a csv task is one test window (seq_len steps); a seq_len below the default
    # diag_transient must either be refused at the boundary with a clear message or just work
    task = TaskConfig(name="csv", delay=2, seq_len=16, batch=4, csv_path=_write_csv(tmp_path / "s.csv"))
    cfg = TrainConfig(steps=2, eval_every=1, eval_batch=4, diagnostics=False)
    try:
        recs = train(MODEL, task, cfg, FLOSS, Schedule("none"), [0])
    except ValueError as e:
        assert "seq_len" in str(e) or "diag" in str(e), f"not a boundary message naming the setting: {e}"
    else:
        assert recs[0]["status"] == "done"


# ------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("kwargs,match", [
    (dict(floss=replace(FLOSS, k=7)), r"k must be in 1\.\.6"),
    (dict(floss=replace(FLOSS, transient=10)), r"floss transient must be in 0\.\.9"),
    (dict(train_cfg=replace(TRAIN, steps=0)), r"steps must be >= 1, got 0"),
    (dict(seeds=()), r"seeds"),
    (dict(schedule="sometimes"), r"unknown schedule 'sometimes'"),
])
def test_train_validates_its_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        run(**kwargs)


def test_should_stop_cancels():
    with pytest.raises(TR.Cancelled):
        train(MODEL, TASK, TRAIN, FLOSS, Schedule("none"), [0], should_stop=lambda: True)
