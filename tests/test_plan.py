"""Tests for floss_core.plan: plan / job_units (per schedule and batched), parts cut for parallel workers
(shards_for, Job labels), and estimate_seconds."""
import math

from floss_core.experiment import make_spec
from floss_core.plan import Job, estimate_seconds, job_units, plan, shards_for


def test_plan_and_job_units():
    spec = make_spec("quick", delays=[10, 20], schedules="none,pre,pre+inter", steps=120)
    jobs = plan(spec, batch=False)
    assert [(j.delay, j.schedules) for j in jobs] == [(10, ("none",)), (10, ("pre",)), (10, ("pre+inter",)),
                                                      (20, ("none",)), (20, ("pre",)), (20, ("pre+inter",))]
    # quick: pre 100 steps, inter 50 steps at 50 and 100
    assert [job_units(spec, j) for j in jobs[:3]] == [120, 220, 320]
    # batched: one ensemble per delay; pre phases of equal length run together, so 120 + 100 + 2 * 50
    batched = plan(spec)
    assert [(j.delay, j.schedules) for j in batched] == [(10, ("none", "pre", "pre+inter")),
                                                         (20, ("none", "pre", "pre+inter"))]
    assert job_units(spec, batched[0]) == 320


def test_estimate_seconds_times_real_steps_and_scales_with_the_work():
    small = make_spec("quick", hidden=8, seq_len=12, delays=[4], seeds=2, steps=10, k=4, pre_steps=5,
                        floss_len=10, floss_transient=2)
    big = make_spec("quick", hidden=8, seq_len=12, delays=[4], seeds=2, steps=1000, k=4, pre_steps=5,
                      floss_len=10, floss_transient=2)
    a, b = estimate_seconds(small), estimate_seconds(big)
    assert 0 < a < b and math.isfinite(b)
    assert b > 10 * a  # 100x the training steps: far more time, whatever the timing noise
    # two worker processes share the runs: about half, plus a few seconds to start them (timing noise
    # between the calls is why this is a range)
    two = estimate_seconds(big, workers=2)
    assert 0.1 * b + 5 < two < 1.5 * b + 5


def test_plan_cuts_runs_into_even_parts_with_each_schedule_spread():
    spec = make_spec("quick", seeds=9, delays=[10, 20], schedules=["none", "pre"])
    jobs = plan(spec, shards=2)
    assert len(jobs) == 4 and [len(j.members) for j in jobs] == [9, 9, 9, 9]
    a, b = jobs[0].members, jobs[1].members
    assert a == (("none", 0), ("none", 1), ("none", 2), ("none", 3), ("none", 4), ("pre", 0), ("pre", 1),
                 ("pre", 2), ("pre", 3))
    assert b == (("none", 5), ("none", 6), ("none", 7), ("none", 8), ("pre", 4), ("pre", 5), ("pre", 6),
                 ("pre", 7), ("pre", 8))
    assert sorted(a + b) == sorted(plan(spec)[0].member_list(spec))     # every run exactly once
    assert plan(spec) == [Job(10, ("none", "pre")), Job(20, ("none", "pre"))]
    assert len(plan(spec, shards=50)) == 36                   # never more parts than runs
    assert shards_for(spec, 2) == 1 and shards_for(spec, 4) == 2 and shards_for(spec, 5) == 3
    assert jobs[1].label == "d=10 none+pre seeds 4-8 (9 runs)" and jobs[1].seeds_of("pre", spec) == (4, 5, 6, 7, 8)
