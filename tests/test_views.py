"""floss_core.views: the dashboard's numbers against hand-computed answers, on frames read from a real store."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from floss_core import demo, views
from floss_core.experiment import wilson_interval
from floss_core.store import Store


def record(schedule, seed, *, delay=10, success=True, conv=50, wall=1.0, floss=0.0, train=0.5, status="done",
           acc=(0.5, 0.7, 0.9), lam1=(-0.5, -0.1), spectra=None, eval_s=None, diag=None):
    """A run record in the engine's format with chosen numbers (metrics at steps 0, 10, 20)."""
    return {
        "schedule": schedule, "seed": seed, "member": seed,
        "config": {"task": {"name": "xor", "delay": delay}, "seed": seed},
        "status": status, "success": success, "convergence_step": conv if success else None,
        "final": {"test_acc": acc[-1], "lambda1_before": lam1[0], "lambda1_after": lam1[-1]},
        "wall_seconds": wall, "floss_seconds": floss, "train_seconds": train, "device": "cpu",
        "eval_seconds": eval_s, "diag_seconds": diag,
        "metrics": [{"step": 10 * i, "name": "test_acc", "value": a} for i, a in enumerate(acc)]
        + [{"step": 10 * i, "name": "lambda1", "value": v} for i, v in enumerate(lam1)],
        "spectra": spectra if spectra is not None else [
            {"step": 0, "phase": "init", "exponents": [lam1[0], -1.0]},
            {"step": 30, "phase": "final", "exponents": [lam1[-1], -0.8]}],
        "jacobian": [{"step": 30, "phase": "final", "horizon": h, "log_sv": [0.0, -h * math.log(10)],
                      "log_kappa": h * math.log(10), "log_kappa_k": h * math.log(10), "grad_norm": 10.0 ** -h}
                     for h in (1, 2, 5)],
    }


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "floss.db") as s:
        yield s


def saved(store, records, name="t"):
    i = store.add_experiment({"name": name}, name=name, status="done")
    store.save_runs(i, records)
    return i


def test_success_vs_delay_counts_diverged_as_failures_and_ignores_unfinished(store):
    i = saved(store, [record("none", 0), record("none", 1, success=False), record("none", 2, success=False,
                                                                                  status="diverged"),
                      record("pre", 0), record("pre", 1), record("pre", 2, delay=20, success=False)])
    store.add_experiment({}, name="other")  # other experiments never leak in
    store.set_run_status(i, "none", [0], "done")
    runs = store.runs(i)
    runs = pd.concat([runs, runs.iloc[[0]].assign(status="queued", success=pd.NA, run_id=999)])
    s = views.success_vs_delay(runs)
    assert s[["delay", "schedule", "n", "successes"]].values.tolist() == [[10, "none", 3, 1], [10, "pre", 2, 2],
                                                                         [20, "pre", 1, 0]]
    row = s.iloc[0]
    assert row["rate"] == pytest.approx(1 / 3)
    assert (row["lo"], row["hi"]) == pytest.approx(wilson_interval(1, 3))


def test_roi_table_by_hand(store):
    # every network: 0.5 s task training, 0.1 s evaluation; none: 1 s wall (0.4 s diagnostics), 1 of 2
    # solved; pre: 3 s wall, 1 s flossing (1.4 s diagnostics), 2 of 2; inter: 2 s wall, 0.5 s flossing, 0 of 2.
    # A schedule's cost is training + flossing: none 0.5 s, pre 1.5 s, inter 1.0 s per network (issue 15:
    # time to solution and the extra cost per success no longer count evaluation and diagnostics)
    part = dict(train=0.5, eval_s=0.1)
    i = saved(store, [record("none", 0, wall=1.0, diag=0.4, conv=80, **part),
                      record("none", 1, success=False, wall=1.0, diag=0.4, **part),
                      record("pre", 0, wall=3.0, floss=1.0, diag=1.4, conv=20, **part),
                      record("pre", 1, wall=3.0, floss=1.0, diag=1.4, conv=40, **part),
                      record("inter", 0, success=False, wall=2.0, floss=0.5, diag=0.9, **part),
                      record("inter", 1, success=False, wall=2.0, floss=0.5, diag=0.9, **part)])
    roi = views.roi_table(store.runs(i)).set_index("schedule")
    assert list(roi.index) == ["none", "pre", "inter"]
    assert roi.loc["pre", "wall_s_per_run"] == pytest.approx(3.0)
    assert roi.loc["pre", "floss_share"] == pytest.approx(2.0 / 6.0)
    assert roi.loc["none", "floss_share"] == 0.0
    assert roi.loc["pre", ["train_s_per_run", "floss_s_per_run", "eval_s_per_run", "diag_s_per_run"]].tolist() \
        == pytest.approx([0.5, 1.0, 0.1, 1.4])
    assert roi["compute_s_per_run"].tolist() == pytest.approx([0.5, 1.5, 1.0])
    assert roi["floss_cost_vs_training"].tolist() == pytest.approx([0.0, 2.0, 1.0])   # pre: +200 %, i.e. 3×
    assert roi.loc["pre", "diag_share"] == pytest.approx(2.8 / 6.0)
    assert roi.loc["pre", "median_convergence"] == 30.0
    assert roi.loc["none", "time_to_solution_s"] == pytest.approx(1.0)   # 2 × 0.5 s spent, 1 solved
    assert roi.loc["pre", "time_to_solution_s"] == pytest.approx(1.5)    # 2 × 1.5 s spent, 2 solved
    assert roi.loc["inter", "time_to_solution_s"] == math.inf            # never solved
    assert roi.loc["pre", "extra_s_per_success"] == pytest.approx((1.5 - 0.5) / (1.0 - 0.5))
    assert math.isnan(roi.loc["inter", "extra_s_per_success"])           # no gain over the baseline
    assert math.isnan(roi.loc["none", "extra_s_per_success"])
    assert (roi.loc["pre", "success_lo"], roi.loc["pre", "success_hi"]) == pytest.approx(wilson_interval(2, 2))
    h = views.roi_headline(roi.reset_index())
    assert (h["delay"], h["best"], h["gain"]) == (10, "none", "pre")
    assert (h["time_to_solution_s"], h["extra_s_per_success"]) == pytest.approx((1.0, 2.0))
    assert h["floss_share"] == pytest.approx((2.0 / 6.0 + 1.0 / 4.0) / 2)
    assert h["floss_cost"] == pytest.approx({"pre": 2.0, "inter": 1.0})
    assert (h["diag_s_per_run"], h["diag_share"]) == pytest.approx((5.4 / 6, 5.4 / 12))
    assert views.frames.floss_cost_text(h["floss_cost"]["pre"]) == "+200 % training compute, i.e. 3.0×"
    assert views.frames.floss_cost_text(1.1) == "+110 % training compute, i.e. 2.1×"


def test_roi_of_runs_from_before_the_cost_split_says_not_recorded(store):
    # an old store's runs: no evaluation / diagnostics seconds (NULL); flossing against training still holds
    i = saved(store, [record("none", 0, wall=1.0), record("pre", 0, wall=3.0, floss=1.0)])
    roi = views.roi_table(store.runs(i)).set_index("schedule")
    assert roi[["eval_s_per_run", "diag_s_per_run", "diag_share"]].isna().all().all()
    assert roi.loc["pre", "floss_cost_vs_training"] == pytest.approx(2.0)
    h = views.roi_headline(roi.reset_index())
    assert math.isnan(h["diag_s_per_run"]) and math.isnan(h["diag_share"])
    assert views.frames.floss_cost_text(math.nan) == "not recorded"
    fig = views.fig_cost_breakdown(roi.reset_index())
    assert [t.name for t in fig.data] == ["training", "flossing", "evaluation and diagnostics (not recorded apart)"]
    assert list(fig.data[2].y) == pytest.approx([0.5, 1.5])     # the rest of the wall time, as one bar


def test_roi_without_baseline_or_success_says_so(store):
    i = saved(store, [record("pre", 0, success=False), record("joint", 0, success=False)])
    roi = views.roi_table(store.runs(i))
    assert roi["extra_s_per_success"].isna().all()
    h = views.roi_headline(roi)
    assert h["best"] is None and h["gain"] is None and math.isnan(h["time_to_solution_s"])


def test_metric_band_is_mean_and_sample_sd_across_seeds(store):
    i = saved(store, [record("none", 0, acc=(0.5, 0.6, 0.7)), record("none", 1, acc=(0.5, 0.8, 0.9)),
                      record("pre", 0, acc=(0.5, 0.9, 1.0))])
    band = views.metric_band(store.metrics(i), store.runs(i), "test_acc")
    at10 = band[(band["schedule"] == "none") & (band["step"] == 10)].iloc[0]
    sd = np.std([0.6, 0.8], ddof=1)
    assert (at10["mean"], at10["lo"], at10["hi"], at10["n"]) == pytest.approx((0.7, 0.7 - sd, 0.7 + sd, 2))
    one = band[(band["schedule"] == "pre") & (band["step"] == 10)].iloc[0]
    assert one["lo"] == one["hi"] == one["mean"] == pytest.approx(0.9)    # a single seed has no spread
    seeds = views.metric_seeds(store.metrics(i), store.runs(i), "test_acc")
    assert len(seeds) == 9 and set(seeds["delay"]) == {10}


def test_band_leaves_out_nan_and_counts_what_remains(store):
    i = saved(store, [record("none", 0, acc=(0.5, math.nan, 0.7)), record("none", 1, acc=(0.5, 0.8, 0.9))])
    band = views.metric_band(store.metrics(i), store.runs(i), "test_acc")
    at10 = band[band["step"] == 10].iloc[0]
    assert (at10["mean"], at10["n"]) == (0.8, 1)


def test_spectrum_stages_pick_initial_first_flossing_and_final(store):
    phases = [(0, "init", [0.2, -1.0]), (0, "pre_before", [0.2, -1.0]), (0, "pre_after", [0.01, -0.5]),
              (100, "inter_before", [0.3, -0.9]), (100, "inter_after", [0.02, -0.4]), (300, "final", [0.1, -0.7])]
    spectra = [{"step": s, "phase": p, "exponents": e} for s, p, e in phases]
    i = saved(store, [record("pre+inter", 0, spectra=spectra), record("none", 0)])
    runs = store.runs(i)
    band = views.spectrum_band(store.spectra(i), runs)
    pi = band[(band["schedule"] == "pre+inter") & (band["index"] == 1)].set_index("stage")["mean"]
    assert pi.to_dict() == pytest.approx({"initial": 0.2, "after flossing": 0.01, "end of training": 0.1})
    wide = views.lambda1_by_stage(band).set_index("schedule")
    assert math.isnan(wide.loc["none", "after flossing"])
    assert wide.loc["none", "end of training"] == pytest.approx(-0.1)
    top = views.topk_over_training(store.spectra(i), runs, 1)
    at100 = top[(top["schedule"] == "pre+inter") & (top["step"] == 100)]["mean"]
    assert at100.tolist() == pytest.approx([0.02])  # the later snapshot at the same step wins


def test_jacobian_views_convert_to_log10(store):
    i = saved(store, [record("none", 0), record("pre", 0)])
    runs, jac = store.runs(i), store.jacobian(i)
    kappa = views.jacobian_band(jac, runs, "log10_kappa")
    assert kappa[kappa["schedule"] == "none"]["mean"].tolist() == pytest.approx([1, 2, 5])
    grads = views.jacobian_band(jac, runs, "log10_grad_norm")
    assert grads[grads["schedule"] == "pre"]["mean"].tolist() == pytest.approx([-1, -2, -5])
    sv = views.singular_values(jac, runs, top=2)
    at5 = sv[(sv["schedule"] == "none") & (sv["horizon"] == 5)].set_index("index")["mean"]
    assert at5.to_dict() == pytest.approx({1: 0.0, 2: -5.0})
    assert set(kappa["stage"]) == {"end of training"}


def test_convergence_and_tables(store):
    i = saved(store, [record("none", 0, success=False), record("pre", 0, conv=70), record("pre", 1, conv=90)])
    runs = store.runs(i)
    conv = views.convergence_steps(runs)
    assert conv[["schedule", "convergence_step"]].values.tolist() == [["pre", 70.0], ["pre", 90.0]]
    table = views.runs_table(runs)
    assert list(table["schedule"]) == ["none", "pre", "pre"] and "test acc" in table
    shown = views.runs_display(table)      # as the Runs page shows it: no None / NaN / Infinity as text
    assert list(shown["converged at"]) == ["not reached", "70", "90"] and list(shown["success"]) == ["no", "yes", "yes"]
    unfinished = views.runs_display(table.assign(status="running", success=None, **{"converged at": np.nan}))
    assert set(unfinished["success"]) == {"—"} and set(unfinished["converged at"]) == {"—"}
    cells = " ".join(map(str, shown.to_numpy().ravel().tolist() + unfinished.to_numpy().ravel().tolist()))
    assert not {"None", "nan", "NaN", "inf", "Infinity", "<NA>"} & set(cells.split())
    assert len(views.filter_runs(runs, schedule=["pre"], status=["done"])) == 2
    assert len(views.filter_runs(runs, delay=[20])) == 0
    exps = views.experiments_table(store.experiments())
    assert exps.loc[0, "runs"] == "3 / 3" and exps.loc[0, "progress"] == 1.0


def test_figures_name_traces_by_schedule_in_canonical_order(store):
    i = saved(store, [record("pre", 0), record("none", 0), record("joint", 0, success=False)])
    runs, metrics = store.runs(i), store.metrics(i)
    success = views.fig_success_vs_delay(views.success_vs_delay(runs))
    assert [t.name for t in success.data] == ["none", "pre", "joint"]
    acc = views.fig_metric(views.metric_band(metrics, runs, "test_acc"), title="t", y="y",
                           seeds=views.metric_seeds(metrics, runs, "test_acc"))
    assert [t.name for t in acc.data if t.showlegend is not False] == ["none", "pre", "joint"]
    spectra = views.fig_spectra(views.spectrum_band(store.spectra(i), runs))
    assert "none · initial" in {t.name for t in spectra.data}
    figs = [success, acc, spectra, views.fig_roi(views.roi_table(runs)),
            views.fig_cost_breakdown(views.roi_table(runs)), views.fig_convergence(views.convergence_steps(runs)),
            views.fig_topk(views.topk_over_training(store.spectra(i), runs, 2)),
            views.fig_horizon(views.jacobian_band(store.jacobian(i), runs), title="k", y="y"),
            views.fig_singular_values(views.singular_values(store.jacobian(i), runs))]
    for fig in figs:
        assert len(fig.data) > 0
        json.loads(fig.to_json())  # serialisable as the browser and the report need it


def test_demo_sizes_are_valid_specs():
    tiny = demo.launch_spec("tiny")
    assert tiny.model.hidden == 8 and tiny.train.steps == 30 and len(tiny.seeds) == 2
    assert demo.launch_spec("tiny", hidden=12).model.hidden == 12
    assert demo.launch_defaults("paper")["k"] == 75
    spec = demo.quick_demo_spec()
    assert [s.name for s in spec.schedules] == ["none", "pre"] and len(spec.seeds) == 16
    assert spec.model.hidden == 80 and spec.delays == (20,) and spec.train.steps == 300
    assert spec.schedules[1].pre_steps == 50
    with pytest.raises(ValueError, match="unknown size 'huge'; choose one of quick, paper, tiny"):
        demo.launch_spec("huge")
    with pytest.raises(ValueError, match="k must be in 1..8"):
        demo.launch_spec("tiny", k=9)



# ------------------------------------------------------------------------------ time to solution
def timed(schedule, seed, *, conv=None, status="done", diverged=None, steps=100, k=2, delay=10):
    """A record with a training budget (steps) and the flossed k: solved at ``conv``, else not."""
    r = record(schedule, seed, delay=delay, success=conv is not None and status == "done", conv=conv, status=status)
    r["convergence_step"], r["diverged_step"] = conv, diverged
    r["config"].update(train={"steps": steps}, floss={"k": k})
    return r


def test_survival_views_by_hand(store):
    # none: solved at 60, two never (censored at 99); pre: solved at 20 and 40, one diverged at 30
    i = saved(store, [timed("none", 0, conv=60), timed("none", 1), timed("none", 2),
                      timed("pre", 0, conv=20), timed("pre", 1, conv=40), timed("pre", 2, status="diverged",
                                                                                 diverged=30)])
    runs = store.runs(i)
    curves = views.survival_curves(runs)
    none = curves[curves["schedule"] == "none"]
    assert none["step"].tolist() == [0, 60, 99] and none["solved"].tolist() == pytest.approx([0, 1 / 3, 1 / 3])
    assert none["censored"].tolist() == [0, 0, 2] and none["at_risk"].tolist() == [3, 3, 2]
    pre = curves[curves["schedule"] == "pre"]
    # S: 2/3 after 20; the diverged seed leaves at 30; 1 at risk at 40 solves: S = 0
    assert pre["step"].tolist() == [0, 20, 30, 40] and pre["solved"].tolist() == pytest.approx([0, 1 / 3, 1 / 3, 1])
    assert (pre["lo"] <= pre["solved"] + 1e-12).all() and (pre["solved"] <= pre["hi"] + 1e-12).all()

    table = views.survival_table(runs).set_index("schedule")
    assert table.loc["none", "median_solve_step"] == math.inf and table.loc["pre", "median_solve_step"] == 40.0
    assert table.loc["pre", ["paired_seeds", "solved_first", "baseline_first"]].tolist() == [3, 2, 0]
    assert table.loc["pre", "paired_p"] == pytest.approx(0.5)    # 2 of 2 untied pairs: 2 × (1/2)²
    assert 0 < table.loc["pre", "logrank_p"] < 1 and math.isnan(table.loc["none", "logrank_p"])
    # the same figures as the summary behind compare --json and the report
    from floss_core.experiment import summarize
    from floss_core.store import run_records
    summary = {r["schedule"]: r for r in summarize(run_records(runs))}
    for key in ("median_solve_step", "median_solve_lo", "median_solve_hi", "logrank_p", "solved_first", "paired_p"):
        assert summary["pre"][key] == table.loc["pre", key], key

    paired = views.paired_solves(runs)
    assert paired[["seed", "first"]].values.tolist() == [[0, "schedule"], [1, "schedule"], [2, "tie"]]
    assert paired.loc[0, ["step", "baseline_step"]].tolist() == [20.0, 60.0]

    shown = views.survival_display(views.survival_table(runs)).set_index("schedule")
    assert shown.loc["none", "median step to solution (95% CI)"].startswith("not reached")
    assert shown.loc["pre", "solved"] == "2/3" and shown.loc["pre", "solved first: this / none / tie"] == "2 / 0 / 1"
    assert shown.loc["none", "log-rank p vs none"] == "–"
    assert views.training_budget(runs) == 99.0

    fig = views.fig_survival(curves[curves["delay"] == 10], budget=99)
    assert [t.name for t in fig.data if t.showlegend is not False] == ["none", "pre"]
    assert max(fig.data[1].x) == 99            # pre's curve is drawn on to the end of training
    json.loads(fig.to_json())


def test_survival_views_of_runs_without_a_recorded_budget_and_of_none(store):
    i = saved(store, [record("none", 0, success=False), record("pre", 0, conv=50)])
    table = views.survival_table(store.runs(i)).set_index("schedule")
    assert table.loc["pre", "median_solve_step"] == 50.0 and views.training_budget(store.runs(i)) is None
    empty = store.runs(i).iloc[0:0]
    assert views.survival_curves(empty).empty and views.survival_table(empty).empty and views.paired_solves(empty).empty
    assert len(views.fig_survival(views.survival_curves(empty)).data) == 0


def test_conditioning_headline_is_what_flossing_controls(store):
    def with_k(schedule, kappa_k_per_h, grad_per_h):
        r = timed(schedule, 0)
        for row in r["jacobian"]:
            row["log_kappa_k"] = kappa_k_per_h * row["horizon"] * math.log(10)
            row["grad_norm"] = 10.0 ** (-grad_per_h * row["horizon"])
        return r

    i = saved(store, [with_k("none", 3.0, 4.0), with_k("pre", 0.5, 0.2)])
    runs, jac = store.runs(i), store.jacobian(i)
    head = views.conditioning_headline(jac, runs).set_index("schedule")
    assert list(head.columns) == ["delay", "horizon", "log10_kappa_k", "log10_grad_norm", "log10_kappa"]
    assert head["horizon"].tolist() == [5, 5]                               # the longest horizon
    assert head.loc["none", ["log10_kappa_k", "log10_grad_norm", "log10_kappa"]].tolist() == pytest.approx([15, -20, 5])
    assert head.loc["pre", ["log10_kappa_k", "log10_grad_norm", "log10_kappa"]].tolist() == pytest.approx([2.5, -1, 5])
    assert views.conditioning_headline(jac, runs, "initial").empty         # no such snapshot stored
    assert views.flossed_k(runs) == 2 and views.flossed_k(runs.drop(columns="config")) is None


def test_conclusion_claims_a_difference_only_at_fisher_p_below_alpha():
    from floss_core.views.conclusion import conclusion

    def frame(pre, none, n):
        rows = []
        for name, wins in (("none", none), ("pre", pre)):
            lo, hi = wilson_interval(wins, n)
            rows.append(dict(delay=20, schedule=name, n=n, successes=wins, rate=wins / n, lo=lo, hi=hi))
        return pd.DataFrame(rows)

    # 7/9 vs 0/9: the one tail is C(9,7)·C(9,0)/C(18,7) = 36/31824, doubled by symmetry: p = 0.0023
    text = conclusion(frame(7, 0, 9))
    assert text.startswith("At delay 20, pre-flossing solved 7 of 9 seeds (78%, 95% interval 45%–94%), against "
                           "0 of 9 seeds (0%, 95% interval 0%–30%) without flossing")
    assert "unlikely to be chance" in text and "p = 0.0023" in text
    text = conclusion(frame(3, 0, 3))      # the old 3-seed demo: no split of 3 vs 3 reaches p < 0.05
    assert "no evidence" in text and "Too few seeds" in text and "p = 0.1" in text
    assert conclusion(frame(3, 0, 3)[lambda f: f["schedule"] == "pre"]) is None   # no baseline, no claim
    assert conclusion(frame(0, 0, 1).iloc[:0]) is None


# ------------------------------------------------------------------------------ several experiments (issue 16)
def two_experiments(store):
    """#1: none and pre (none solves 1 of 2, pre 2 of 2); #2: pre only (1 of 2), at delay 10, from the store."""
    a = saved(store, [timed("none", 0, conv=60), timed("none", 1), timed("pre", 0, conv=20),
                      timed("pre", 1, conv=40)], name="a")
    b = saved(store, [timed("pre", 0, conv=30), timed("pre", 1)], name="b")
    runs = pd.concat([store.runs(a), store.runs(b)], ignore_index=True)
    return a, b, views.with_labels(runs, {a: "#1 k=2", b: "#2 k=4"})


def test_frames_of_a_set_are_each_experiments_own_with_a_label(store):
    a, b, runs = two_experiments(store)
    alone = {i: store.runs(i) for i in (a, b)}
    success = views.success_vs_delay(runs)
    assert list(success.columns) == ["label", "delay", "schedule", "n", "successes", "rate", "lo", "hi", "series"]
    assert success["series"].tolist() == ["#1 k=2 · none", "#1 k=2 · pre", "#2 k=4 · pre"]
    assert views.series_names(success).tolist() == success["series"].tolist()
    for i, label in ((a, "#1 k=2"), (b, "#2 k=4")):     # the numbers are each experiment's alone
        part = success[success["label"] == label].drop(columns=["label", "series"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(part, views.success_vs_delay(alone[i]))
    # a baseline is always the experiment's own: #2 has no 'none', so nothing to gain against
    roi = views.roi_table(runs).set_index("series")
    assert roi.loc["#1 k=2 · pre", "extra_s_per_success"] == pytest.approx((0.5 - 0.5) / 0.5)
    assert math.isnan(roi.loc["#2 k=4 · pre", "extra_s_per_success"])
    table = views.survival_table(runs).set_index("series")
    assert table.loc["#1 k=2 · pre", "paired_seeds"] == 2 and math.isnan(table.loc["#2 k=4 · pre", "logrank_p"])
    shown = views.survival_display(views.survival_table(runs))
    assert shown.columns[0] == "label" and "series" not in shown and len(shown) == 3
    assert views.frames.experiment_ids(shown)["experiment"].tolist() == ["#1", "#1", "#2"]
    assert views.frames.experiment_ids(views.survival_display(views.survival_table(alone[a]))).columns[0] == "delay"
    paired = views.paired_solves(runs)
    assert set(paired["label"]) == {"#1 k=2"}             # pairs only within #1: #2 has no baseline
    # every frame of the pages carries the label; the metric, spectrum and Jacobian rows are matched by run
    band = views.metric_band(pd.concat([store.metrics(a), store.metrics(b)]), runs, "test_acc")
    assert set(band["series"]) == {"#1 k=2 · none", "#1 k=2 · pre", "#2 k=4 · pre"}
    spectra = pd.concat([store.spectra(a), store.spectra(b)], ignore_index=True)
    jac = pd.concat([store.jacobian(a), store.jacobian(b)], ignore_index=True)
    assert views.lambda1_by_stage(views.spectrum_band(spectra, runs))["series"].nunique() == 3
    assert views.conditioning_headline(jac, runs)["label"].tolist() == ["#1 k=2", "#1 k=2", "#2 k=4"]
    assert set(views.topk_over_training(spectra, runs, 2)["label"]) == {"#1 k=2", "#2 k=4"}
    assert len(views.singular_values(jac, runs)) and len(views.convergence_steps(runs)) == 4
    empty = views.success_vs_delay(runs.iloc[0:0])         # no rows: the frame's columns, the label's too
    assert empty.empty and "label" in empty


def test_figures_of_a_set_name_each_series_colour_by_schedule_and_dash_by_experiment(store):
    a, b, runs = two_experiments(store)
    metrics = pd.concat([store.metrics(a), store.metrics(b)], ignore_index=True)
    fig = views.fig_metric(views.metric_band(metrics, runs, "test_acc"), title="t", y="y",
                           seeds=views.metric_seeds(metrics, runs, "test_acc"))
    lines = {t.name: t for t in fig.data if t.showlegend is not False}
    assert list(lines) == ["#1 k=2 · none", "#1 k=2 · pre", "#2 k=4 · pre"]
    assert lines["#1 k=2 · pre"].line.color == lines["#2 k=4 · pre"].line.color == views.color("pre")
    assert lines["#1 k=2 · pre"].line.dash == "solid" and lines["#2 k=4 · pre"].line.dash == "dash"
    success = views.fig_success_vs_delay(views.success_vs_delay(runs))
    assert [t.name for t in success.data] == list(lines)
    roi = views.roi_table(runs)
    assert [t.name for t in views.fig_roi(roi).data] == list(lines)
    assert list(views.fig_cost_breakdown(roi).data[0].x) == ["#1 · none d=10", "#1 · pre d=10", "#2 · pre d=10"]
    survival = views.fig_survival(views.survival_curves(runs))
    assert [t.name for t in survival.data if t.showlegend is not False] == list(lines)
    sv = views.fig_singular_values(views.singular_values(pd.concat([store.jacobian(a), store.jacobian(b)]), runs))
    assert [a.text for a in sv.layout.annotations] == ["#1 · none", "#1 · pre", "#2 · pre"]   # a panel per series
    assert fig.layout.legend.title.text == "experiment · schedule"
    for f in (fig, success, survival, sv):
        json.loads(f.to_json())


def test_small_things_threshold_line_every_exponent_named_log_axes(store):
    i = saved(store, [timed("none", 0, conv=60), timed("pre", 0, conv=20)])
    runs = store.runs(i)
    assert views.success_thresholds(runs) == []                     # the records say no success_acc
    for r in runs["config"]:
        r["train"]["success_acc"] = 0.9
    assert views.success_thresholds(runs) == [0.9]
    csv = runs.assign(config=[{**c, "task": {"name": "csv"}} for c in runs["config"]])
    assert views.success_thresholds(csv) == []         # csv succeeds on skill, not on the R² the chart shows
    fig = views.fig_metric(views.metric_band(store.metrics(i), runs, "test_acc"), title="t", y="y", threshold=0.9)
    (line,), (note,) = fig.layout.shapes, fig.layout.annotations
    assert (line.y0, line.y1, line.line.dash) == (0.9, 0.9, "dash") and note.text == "success threshold 0.9"
    assert not views.fig_metric(views.metric_band(store.metrics(i), runs, "test_acc"), title="t", y="y").layout.shapes
    top = views.fig_topk(views.topk_over_training(store.spectra(i), runs, 2))
    assert [t.name for t in top.data if t.showlegend is not False] == ["none λ1", "none λ2", "pre λ1", "pre λ2"]
    horizon = views.fig_horizon(views.jacobian_band(store.jacobian(i), runs), title="k", y="y")
    sv = views.fig_singular_values(views.singular_values(store.jacobian(i), runs))
    for axis in (horizon.layout.xaxis, sv.layout.xaxis, sv.layout.xaxis2):
        assert (axis.type, axis.dtick, axis.exponentformat) == ("log", 1, "power")
    assert views.figures.log_axis([1e-23, 10.0])["dtick"] == 3      # 24 decades: a label every 3, not 25 labels
    assert views.figures.log_axis([])["dtick"] == 1 and views.figures.log_axis([0.0, 5.0])["dtick"] == 1
    assert [t.name for t in sv.data if t.showlegend is not False] == ["none σ1", "none σ2", "pre σ1", "pre σ2"]


def test_display_tables_print_no_none_nan_or_infinity(store):
    part = dict(train=0.5, eval_s=0.1, diag=0.2)
    i = saved(store, [record("none", 0, success=False, **part), record("pre", 0, floss=1.0, conv=20, **part),
                      record("inter", 0, success=False, floss=0.5, **part),
                      record("joint", 0, success=False, delay=20)])           # an old run: no parts recorded
    roi = views.roi_table(store.runs(i))
    buys, costs = views.roi_display(roi, "buys"), views.roi_display(roi, "costs")
    assert list(buys.columns) == views.frames.ROI_PARTS["buys"] and list(costs.columns) == views.frames.ROI_PARTS["costs"]
    for table in (buys, costs):
        assert not table.isna().any().any()
        assert not {"None", "nan", "inf", "Infinity", "-"} & set(table.astype(str).to_numpy().ravel())
    b = buys.set_index("schedule")
    assert b.loc["none", "cost per solved network"] == "nothing solved"
    assert b.loc["none", "cost per extra success"] == "baseline"
    assert b.loc["inter", "cost per extra success"] == "no gain over none"
    assert b.loc["joint", "cost per extra success"] == "no none run"
    assert b.loc["pre", "success (95% CI)"] == "100 % (21–100 %)" and b.loc["none", "median step"] == "—"
    c = costs.set_index("schedule")
    assert c.loc["pre", "flossing vs training"] == "+200 %" and c.loc["joint", "evaluation"] == "not recorded"
    runs = store.runs(i)
    paired = views.paired_display(views.paired_solves(pd.concat([runs, runs.assign(
        run_id=runs["run_id"] + 100, seed=1, success=False, convergence_step=None)])))
    assert list(paired.columns) == ["delay", "schedule", "seed", "this schedule", "none, same seed", "solved first"]
    assert not paired.isna().any().any()
    assert "solved at step 20" in set(paired["this schedule"])


def test_success_vs_delay_with_one_delay_keeps_the_schedules_beside_it():
    df = pd.DataFrame(dict(delay=[20, 20], schedule=["none", "pre"], n=[16, 16], successes=[0, 10],
                           rate=[0, 10 / 16], lo=[0, .39], hi=[.19, .82]))
    fig = views.fig_success_vs_delay(df)
    assert fig.layout.xaxis.range == (10.0, 30.0)               # not zoomed onto the 0.5-step dodge
    assert [t.x for t in fig.data] == [(19.75,), (20.25,)]
