"""The adviser's views (floss_core.views.advice) from synthetic trials: the highlighted recommendation is
advice.recommend's choice, first-rung trials are never on the front, the table's numbers are the trial dicts'."""
import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from advice_trials import TARGET, trials  # noqa: E402
from floss_core import advice  # noqa: E402
from floss_core.views import advice as V  # noqa: E402


def traces(fig, name):
    return [t for t in fig.data if t.name == name]


def test_the_highlighted_recommendation_is_recommends_choice():
    ts = trials()
    rec = advice.recommend(ts, TARGET)
    assert rec["status"] == "recommended" and rec["choice"]["trial"] == 1 and rec["runner_up"]["trial"] == 2
    fig = V.fig_advice(ts, rec)
    (star,) = traces(fig, "recommended")
    assert list(star.x) == [rec["choice"]["compute_seconds"]] and list(star.y) == [rec["choice"]["success_rate"]]
    assert star.customdata[0][0] == rec["choice"]["trial"] and rec["choice"]["label"] in star.text[0]
    (base,) = traces(fig, "no flossing")
    assert base.customdata[0][0] == rec["baseline"]["trial"] == 0
    # the target line and its label
    assert [s.y0 for s in fig.layout.shapes] == [TARGET] and "target 75 %" in fig.layout.annotations[0].text
    # the store keeps the recommendation as JSON: its copies highlight the same trial
    stored = json.loads(json.dumps(rec, default=str))
    again = V.fig_advice(ts, stored)
    assert traces(again, "recommended")[0].customdata[0][0] == 1


def test_first_rung_trials_are_marked_and_never_on_the_front():
    ts = trials()
    rec = advice.recommend(ts, TARGET)
    fig = V.fig_advice(ts, rec)
    (stopped,) = traces(fig, "stopped after the first rung (fewer seeds)")
    assert [c[0] for c in stopped.customdata] == [4]
    (front,) = traces(fig, "Pareto front")
    on_front = [c[0] for c in front.customdata]
    assert on_front == [t["trial"] for t in advice.pareto_front(ts)] == [0, 1, 2, 5]
    assert 4 not in on_front and 3 not in on_front           # stopped early; dominated
    assert front.line.shape in (None, "linear")               # drawn as a staircase of corners
    assert list(front.x) == [1.0, 1.4, 1.4, 1.9, 1.9, 3.25, 3.25]
    assert list(front.y) == [0.25, 0.25, 0.75, 0.75, 0.875, 0.875, 1.0]
    table = V.trials_table(ts, rec)
    assert table.set_index("trial").loc[4, "first_rung_only"] and not table.set_index("trial").loc[4, "on_front"]
    # every trial is drawn once, with its Wilson interval as error bars (the first rung's: none)
    drawn = sorted(c[0] for t in fig.data if t.name in ("none", "pre", "inter", "joint",
                                                         "stopped after the first rung (fewer seeds)")
                   for c in t.customdata)
    assert drawn == [0, 1, 2, 3, 4, 5]
    (pre,) = traces(fig, "pre")
    t1 = ts[1]
    assert pre.error_y.array[0] == pytest.approx(t1["ci_high"] - t1["success_rate"])
    assert pre.error_y.arrayminus[0] == pytest.approx(t1["success_rate"] - t1["ci_low"])


def test_the_table_shows_the_trial_dicts_numbers():
    ts = trials()
    rec = advice.recommend(ts, TARGET)
    table = V.trials_table(ts, rec)
    assert list(table["trial"]) == [0, 4, 1, 2, 3, 5]      # cheapest first
    by = {t["trial"]: t for t in ts}
    for r in table.itertuples():
        t = by[r.trial]
        assert (r.label, r.schedule, r.seeds_run, r.n, r.successes) == (
            t["label"], t["schedule"]["name"], len(t["seeds"]), t["n"], t["successes"])
        assert (r.success_rate, r.ci_low, r.ci_high, r.compute_seconds) == (
            t["success_rate"], t["ci_low"], t["ci_high"], t["compute_seconds"])
        assert r.extra_seconds == pytest.approx(t["compute_seconds"] - by[0]["compute_seconds"])
        assert (math.isnan(r.median_convergence) and math.isnan(t["median_convergence"])) or \
            r.median_convergence == t["median_convergence"]
    assert dict(zip(table["trial"], table["role"])) == {0: "no flossing", 4: "", 1: "recommended", 2: "runner-up",
                                                         3: "", 5: ""}
    shown = V.trials_display(table)
    assert list(shown.columns) == [h for _, h in V.DISPLAY]
    row = shown.iloc[2].to_dict()     # trial 1: the choice
    assert row["Schedule tried"] == "pre 50 steps · k 4 · window 20"
    lo, hi = round(100 * by[1]["ci_low"]), round(100 * by[1]["ci_high"])
    assert row["Success (95 % interval)"] == f"6 of 8 (75 %, {lo}–{hi} %)"
    assert row["Compute per run"] == "1.4 s" and row["Extra vs no flossing"] == "+0.4 s (1.40×)"
    assert row["Median convergence step"] == "180" and row["On the front"] == "yes" and row["Verdict"] == "recommended"
    first_rung = shown.iloc[1].to_dict()
    assert first_rung["Stopped after first rung"] == "yes" and first_rung["Median convergence step"] == "—"
    assert first_rung["Seeds run"] == "2"
    assert shown.iloc[0]["Extra vs no flossing"] == "baseline"
    assert not shown.isna().any().any()


def test_the_headline_quotes_the_recommendation():
    ts = trials()
    rec = advice.recommend(ts, TARGET)
    h = V.headline(rec)
    assert h["title"] == "Recommended" and h["value"] == ts[1]["label"]
    assert h["detail"].startswith("6 of 8 (75 %") and h["detail"].endswith("at 1.4 s per run")
    assert h["extra"] == f"+0.4 s per run ({rec['compute_ratio']:.2f}×) against no flossing"
    assert V.signed_seconds(-75.0) == "−75 s" and V.signed_seconds(0.04) == "+0.04 s"


def test_when_no_flossing_reaches_the_target_it_is_the_highlighted_choice():
    ts = trials()
    rec = advice.recommend(ts, 0.2)
    assert rec["status"] == "no_flossing"
    fig = V.fig_advice(ts, rec)
    assert traces(fig, "recommended")[0].customdata[0][0] == 0
    shown = V.trials_display(V.trials_table(ts, rec))
    assert shown.iloc[0]["Verdict"] == "recommended" and shown.iloc[0]["Extra vs no flossing"] == "baseline"
    assert not traces(fig, "no flossing")             # one marker, not two on the same point
    assert V.headline(rec)["title"] == "No flossing reaches the target" and V.headline(rec)["extra"] == ""


def test_nothing_reaches_and_nothing_finished():
    ts = trials()
    rec = advice.recommend([t for t in ts if t["trial"] in (0, 3, 4)], 0.9)
    assert rec["status"] == "none_reaches"
    fig = V.fig_advice(ts, rec)
    assert traces(fig, "best found")[0].customdata[0][0] == rec["choice"]["trial"] == 3
    empty = advice.recommend([], 0.5)
    fig = V.fig_advice([], empty)
    assert [t.name for t in fig.data] == []
    assert V.trials_table([], empty).empty and V.trials_display(V.trials_table([], empty)).empty
    assert V.headline(empty)["title"] is None


def test_recommendation_prefers_the_stored_result():
    ts = trials()
    stored = json.loads(json.dumps(advice.recommend(ts, TARGET), default=str))
    assert V.recommendation(ts, TARGET, stored) is stored
    assert V.recommendation(ts, TARGET, None)["choice"]["trial"] == 1
    assert V.recommendation(ts, TARGET, {})["statement"] == advice.recommend(ts, TARGET)["statement"]


def test_failed_and_refused_trials_are_shown_but_never_drawn_as_points_of_the_front():
    from advice_trials import trial
    from floss_core.advice import trial_numbers

    refused = {"trial": 6, "label": "joint (refused: window too long)", "schedule": {"name": "joint"}, "floss": {},
               "seeds": [], "complete": False, **trial_numbers([], planned=0), "experiment_id": None,
               "error": "invalid candidate: window too long"}
    broken = {**trial(7, "inter 5 steps", "inter", 1, 2.0, n=3, complete=False), "error": "job failed: OOM"}
    ts = trials() + [refused, broken]
    rec = advice.recommend(ts, TARGET)
    assert rec["choice"]["trial"] == 1                         # neither changes the verdict
    fig = V.fig_advice(ts, rec)
    drawn = [c[0] for t in fig.data if t.name != "Pareto front" for c in t.customdata]
    assert 6 not in drawn and drawn.count(7) == 1
    assert [c[0] for c in traces(fig, "failed (a job failed: fewer runs)")[0].customdata] == [7]
    assert [c[0] for c in traces(fig, "stopped after the first rung (fewer seeds)")[0].customdata] == [4]
    table = V.trials_table(ts, rec).set_index("trial")
    assert list(table.loc[[4, 6, 7], "first_rung_only"]) == [True, False, False]
    assert table.loc[6, "note"] == "invalid candidate: window too long" and table.loc[7, "note"] == "job failed: OOM"
    shown = V.trials_display(V.trials_table(ts, rec))
    row = shown[shown["Schedule tried"] == refused["label"]].iloc[0]
    assert [row[c] for c in ("Success (95 % interval)", "Compute per run", "Extra vs no flossing")] == ["—"] * 3
    assert not shown.isna().any().any() and not shown.apply(lambda c: c.str.contains("nan")).any().any()


def test_a_dearer_trial_that_solves_sooner_is_on_the_front_and_ringed_but_not_chosen():
    from advice_trials import trial
    # pre 400 steps: 6 of 8 at 2.0 s is beaten in success and compute by pre 100 steps (7 of 8 at 1.9 s), but its
    # runs solve at a median step 60 against 150: on the front of success, time to solution and compute
    ts = trials() + [trial(6, "pre 400 steps · k 4 · window 20", "pre", 6, 2.0, convergence=60.0)]
    assert advice.dominates(ts[2], ts[6], time=False) and not advice.dominates(ts[2], ts[6])
    assert [t["trial"] for t in advice.pareto_front(ts)] == [0, 1, 2, 6, 5]
    assert [t["trial"] for t in advice.pareto_front(ts, time=False)] == [0, 1, 2, 5]
    # solving nothing is the worst time to solution: a solved trial beats it there
    unsolved = trial(7, "joint weight 1 · k 4", "joint", 0, 0.9)
    assert advice.time_to_solution(unsolved) == math.inf and advice.time_to_solution(ts[0]) == 240.0
    rec = advice.recommend(ts, TARGET)
    assert rec["choice"]["trial"] == 1 and rec["runner_up"]["trial"] == 2   # still the cheapest that reaches it
    assert "solving in a median 180 training steps" in rec["statement"]
    assert "which solved 2 of 8 seeds (25 %, 95 % interval 7–59 %), solving in a median 240" in rec["statement"]
    fig = V.fig_advice(ts, rec)
    assert [c[0] for c in traces(fig, "Pareto front")[0].customdata] == [0, 1, 2, 5]   # the staircase
    (ring,) = traces(fig, V.SOONER)
    assert [c[0] for c in ring.customdata] == [6]
    assert V.trials_table(ts, rec).set_index("trial").loc[6, "on_front"]
    # the time chart: every complete trial that solved something, at (compute, median step); the front ringed
    t_fig = V.fig_time_to_solution(ts + [unsolved], rec)
    drawn = {c[0]: (x, y) for t in t_fig.data if t.name in ("none", "pre", "inter", "joint")
             for c, x, y in zip(t.customdata, t.x, t.y)}
    assert drawn == {0: (1.0, 240.0), 1: (1.4, 180.0), 2: (1.9, 150.0), 3: (2.5, 200.0), 5: (3.25, 120.0),
                     6: (2.0, 60.0)}                        # not 4 (first rung only) nor 7 (solved nothing)
    assert sorted(c[0] for c in traces(t_fig, "on the Pareto front")[0].customdata) == [0, 1, 2, 5, 6]
    assert traces(t_fig, "recommended")[0].customdata[0][0] == 1
    assert "1 complete trial solved nothing" in V.time_caption(ts + [unsolved])
