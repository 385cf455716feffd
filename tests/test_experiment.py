"""Tests for floss_core.experiment: make_spec validation, the spec's JSON round trip, and summarize on
hand-made records (Wilson interval, median / IQR of convergence steps); plan / job_units: test_plan.py."""
import json
import math

import pytest

from floss_core import experiment as X
from floss_core.schedules import Schedule


# ------------------------------------------------------------------------------ make_spec
def test_quick_preset_defaults():
    spec = X.make_spec("quick")
    assert spec.preset == "quick" and spec.model.hidden == 32 and spec.floss.k == 16
    assert [s.name for s in spec.schedules] == ["none", "pre"]
    assert spec.seeds == tuple(range(9)) and spec.delays == (spec.task.delay,)


def test_overrides_reach_their_fields():
    spec = X.make_spec("quick", delays=[10, 20], seeds=3, schedules="none, pre+inter,joint", hidden=16, k=4,
                       arch="gru", steps=50, lr=1e-2, inter_at=[5, 10], weight=0.5, qr="cholesky", name="x")
    assert spec.delays == (10, 20) and spec.seeds == (0, 1, 2)
    assert [s.name for s in spec.schedules] == ["none", "pre+inter", "joint"]
    assert all(s.inter_at == (5, 10) and s.weight == 0.5 for s in spec.schedules)
    assert spec.model.hidden == 16 and spec.model.arch == "gru" and spec.floss.k == 4 and spec.floss.qr == "cholesky"
    assert spec.train.steps == 50 and spec.train.lr == 1e-2 and spec.name == "x"
    assert X.make_spec("quick", seeds=[4, 7]).seeds == (4, 7)


@pytest.mark.parametrize("preset,options,field", [
    ("quick", dict(delays=[0]), "delay"),
    ("quick", dict(delays=[-4]), "delay"),
    ("quick", dict(delays=[20, 0]), "delay"),
    ("quick", dict(delays=0), "delay"),                   # a bare int, as seeds=3 is accepted
    ("quick", dict(delays=[7]), "delay"),                 # xor needs an even delay
    ("quick", dict(delays=[60]), "delay"),                # not below seq_len
    ("quick", dict(k=33), "k"),                           # k > state dimension (N = 32)
    ("quick", dict(k=0), "k"),
    ("quick", dict(arch="lstm", hidden=8, k=17), "k"),   # LSTM: D = 2N = 16
    ("quick", dict(seeds=0), "seeds"),
    ("quick", dict(seeds=[]), "seeds"),
    ("quick", dict(seeds=[1, 1]), "seeds"),
    ("quick", dict(task="xorr"), "task"),
    ("quick", dict(schedules=["none", "sometimes"]), "schedule"),
    ("quick", dict(schedules="pre,pre"), "schedules"),
    ("paper2", dict(), "preset"),
    ("quick", dict(steps=-5), "steps"),
    ("quick", dict(steps=0), "steps"),
    ("quick", dict(hidden=0), "hidden"),
    ("quick", dict(arch="transformer"), "arch"),
    ("quick", dict(task="csv", csv="/nonexistent/series.csv"), "csv"),
    ("quick", dict(task="csv"), "csv"),
    ("quick", dict(floss_transient=40), "transient"),
    ("quick", dict(every=0, schedules="joint"), "every"),
    ("quick", dict(schedules="adaptive", every=30), "every"),   # not a multiple of eval_every (50)
    ("quick", dict(device="tpu"), "device"),
    ("quick", dict(colour="red"), "colour"),
])
def test_make_spec_refuses_bad_input_naming_the_field(preset, options, field):
    with pytest.raises(ValueError) as info:
        X.make_spec(preset, **options)
    msg = str(info.value)
    assert field.lower() in msg.lower(), msg
    assert "\n" not in msg


def test_bad_csv_content_is_refused(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3,oops\n")
    with pytest.raises(ValueError, match=r"column 'b', data row 2: 'oops' is not a number"):
        X.make_spec("quick", task="csv", csv=str(bad))


# ------------------------------------------------------------------------------ round trip
def test_spec_round_trips_through_json(tmp_path):
    csv = tmp_path / "s.csv"
    csv.write_text("x\n" + "\n".join(str(math.sin(i / 5)) for i in range(400)) + "\n")
    for spec in (X.make_spec("quick"),
                 X.make_spec("paper", delays=[20, 40], seeds=[3, 5], schedules="pre,inter,adaptive,joint",
                             inter_at=[7, 9], k=10, qr_every=2, name="round trip", device="cpu"),
                 X.make_spec("quick", task="csv", csv=str(csv), delays=[3], seeds=2)):
        d = json.loads(json.dumps(X.spec_to_dict(spec)))
        back = X.spec_from_dict(d)
        assert back == spec
        assert isinstance(back.schedules[0], Schedule) and isinstance(back.schedules[0].inter_at, tuple)


def test_spec_from_dict_validates():
    d = json.loads(json.dumps(X.spec_to_dict(X.make_spec("quick"))))
    d["floss"]["k"] = 1000
    with pytest.raises(ValueError, match=r"k must be in 1\.\.32"):
        X.spec_from_dict(d)


# ------------------------------------------------------------------------------ summarize
def record(schedule, seed, *, delay=20, success=False, conv=None, status="done", wall=2.0, floss=0.5, **final):
    return {"schedule": schedule, "seed": seed, "config": {"task": {"delay": delay}}, "success": success,
            "convergence_step": conv, "status": status, "wall_seconds": wall, "floss_seconds": floss,
            "final": final}


def test_wilson_interval_known_values():
    # reference values (Wilson 1927; e.g. Newcombe 1998, Table I), z = 1.96
    assert X.wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert X.wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert X.wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert X.wilson_interval(1, 9) == pytest.approx((0.0199, 0.4350), abs=1e-4)
    lo, hi = X.wilson_interval(0, 0)
    assert math.isnan(lo) and math.isnan(hi)


def test_summarize_hand_made_records():
    recs = [record("pre", 0, success=True, conv=100, test_acc=0.96, lambda1_before=0.2, lambda1_after=0.0),
            record("pre", 1, success=True, conv=400, test_acc=0.97, lambda1_before=0.4, lambda1_after=0.1),
            record("pre", 2, success=True, conv=200, test_acc=0.99),
            record("pre", 3, success=True, conv=300, test_acc=0.98),
            record("pre", 4, success=False, conv=None, test_acc=0.6),
            record("none", 0, success=False, test_acc=0.5, wall=3.0, floss=0.0),
            record("none", 1, success=False, status="diverged", wall=1.0, floss=0.0),
            record("none", 0, delay=40, success=True, conv=700, test_acc=1.0)]
    rows = X.summarize(recs)
    assert [(r["delay"], r["schedule"]) for r in rows] == [(20, "none"), (20, "pre"), (40, "none")]
    none, pre, far = rows
    assert pre["n"] == 5 and pre["successes"] == 4 and pre["success_rate"] == 0.8
    assert (pre["success_lo"], pre["success_hi"]) == pytest.approx(X.wilson_interval(4, 5))
    assert pre["median_convergence"] == 250.0                 # of 100, 200, 300, 400 (successful runs only)
    assert pre["iqr_convergence"] == pytest.approx(325.0 - 175.0)   # inclusive quartiles
    assert pre["final_acc"] == pytest.approx((0.96 + 0.97 + 0.99 + 0.98 + 0.6) / 5)
    assert pre["lambda1_before"] == pytest.approx(0.3) and pre["lambda1_after"] == pytest.approx(0.05)
    assert math.isnan(pre["log10_kappa_before"])
    assert pre["wall_seconds"] == 10.0 and pre["floss_share"] == pytest.approx(0.25)
    assert pre["diverged"] == 0
    assert none["n"] == 2 and none["successes"] == 0 and none["diverged"] == 1
    assert math.isnan(none["median_convergence"]) and math.isnan(none["iqr_convergence"])
    assert none["final_acc"] == 0.5 and none["floss_share"] == 0.0 and none["wall_seconds"] == 4.0
    assert far["n"] == 1 and far["median_convergence"] == 700.0 and far["iqr_convergence"] == 0.0
    assert (far["success_lo"], far["success_hi"]) == pytest.approx((0.2065, 1.0), abs=1e-4)


def test_summarize_cost_is_training_and_flossing_with_diagnostics_apart():
    # per run: none 1 s training, 0.2 s evaluation, 2.8 s diagnostics (4 s wall); pre the same plus 1.1 s
    # flossing (5.1 s wall): flossing +110 % training compute, i.e. 2.1×; the lab's diagnostics 55–70 % of
    # the wall time, never the schedule's cost
    def timed(schedule, seed, floss, **steps):
        return {**record(schedule, seed, wall=4.0 + floss, floss=floss, **steps), "train_seconds": 1.0,
                "eval_seconds": 0.2, "diag_seconds": 2.8}

    rows = X.summarize([timed("none", 0, 0.0, train_steps=400, floss_steps=0),
                        timed("none", 1, 0.0, train_steps=400, floss_steps=0),
                        timed("pre", 0, 1.1, train_steps=400, floss_steps=100),
                        timed("pre", 1, 1.1, train_steps=200, floss_steps=100)])
    none, pre = rows
    assert (pre["train_s_per_run"], pre["floss_s_per_run"], pre["eval_s_per_run"], pre["diag_s_per_run"]) \
        == pytest.approx((1.0, 1.1, 0.2, 2.8))
    assert pre["compute_s_per_run"] == pytest.approx(2.1) and none["compute_s_per_run"] == pytest.approx(1.0)
    assert pre["floss_cost_vs_training"] == pytest.approx(1.1) and none["floss_cost_vs_training"] == 0.0
    assert pre["diag_share"] == pytest.approx(2.8 / 5.1) and none["diag_share"] == pytest.approx(0.7)
    assert (pre["train_steps"], pre["floss_steps"]) == (300.0, 100.0)
    assert pre["wall_seconds"] == pytest.approx(10.2) and pre["floss_share"] == pytest.approx(2.2 / 10.2)  # kept


def test_summarize_cost_of_runs_from_before_the_split_is_not_invented():
    # a store from before issue 15: no evaluation / diagnostics seconds (None from the record, NaN from the store)
    old = [{**record("pre", 0, wall=4.0, floss=1.0), "train_seconds": 2.0, "eval_seconds": None},
           {**record("pre", 1, wall=4.0, floss=1.0), "train_seconds": 2.0, "diag_seconds": math.nan}]
    (row,) = X.summarize(old)
    assert math.isnan(row["eval_s_per_run"]) and math.isnan(row["diag_s_per_run"]) and math.isnan(row["diag_share"])
    assert row["floss_cost_vs_training"] == pytest.approx(0.5) and row["compute_s_per_run"] == pytest.approx(3.0)
    assert math.isnan(row["train_steps"])
    (bare,) = X.summarize([record("pre", 0)])   # no training seconds at all: no ratio, not a zero
    assert math.isnan(bare["floss_cost_vs_training"]) and math.isnan(bare["compute_s_per_run"])


def test_summarize_odd_count_median_and_csv_scores():
    recs = [record("joint", s, success=True, conv=c, test_r2=r) for s, (c, r) in
            enumerate([(50, 0.5), (10, 0.7), (30, 0.9)])]
    row = X.summarize(recs)[0]
    assert row["median_convergence"] == 30.0 and row["iqr_convergence"] == pytest.approx(40.0 - 20.0)
    assert row["final_acc"] == pytest.approx(0.7)
