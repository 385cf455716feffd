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
           acc=(0.5, 0.7, 0.9), lam1=(-0.5, -0.1), spectra=None):
    """A run record in the engine's format with chosen numbers (metrics at steps 0, 10, 20)."""
    return {
        "schedule": schedule, "seed": seed, "member": seed,
        "config": {"task": {"name": "xor", "delay": delay}, "seed": seed},
        "status": status, "success": success, "convergence_step": conv if success else None,
        "final": {"test_acc": acc[-1], "lambda1_before": lam1[0], "lambda1_after": lam1[-1]},
        "wall_seconds": wall, "floss_seconds": floss, "train_seconds": train, "device": "cpu",
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
    # none: 2 networks, 1 s each, 1 success; pre: 2 networks, 3 s each (1 s flossing), 2 successes
    i = saved(store, [record("none", 0, wall=1.0, conv=80), record("none", 1, success=False, wall=1.0),
                      record("pre", 0, wall=3.0, floss=1.0, conv=20), record("pre", 1, wall=3.0, floss=1.0, conv=40),
                      record("inter", 0, success=False, wall=2.0, floss=0.5),
                      record("inter", 1, success=False, wall=2.0, floss=0.5)])
    roi = views.roi_table(store.runs(i)).set_index("schedule")
    assert list(roi.index) == ["none", "pre", "inter"]
    assert roi.loc["pre", "wall_s_per_run"] == pytest.approx(3.0)
    assert roi.loc["pre", "floss_share"] == pytest.approx(2.0 / 6.0)
    assert roi.loc["none", "floss_share"] == 0.0
    assert roi.loc["pre", "median_convergence"] == 30.0
    assert roi.loc["none", "time_to_solution_s"] == pytest.approx(2.0)   # 2 s spent, 1 solved
    assert roi.loc["pre", "time_to_solution_s"] == pytest.approx(3.0)    # 6 s spent, 2 solved
    assert roi.loc["inter", "time_to_solution_s"] == math.inf            # never solved
    assert roi.loc["pre", "extra_s_per_success"] == pytest.approx((3.0 - 1.0) / (1.0 - 0.5))
    assert math.isnan(roi.loc["inter", "extra_s_per_success"])           # no gain over the baseline
    assert math.isnan(roi.loc["none", "extra_s_per_success"])
    assert (roi.loc["pre", "success_lo"], roi.loc["pre", "success_hi"]) == pytest.approx(wilson_interval(2, 2))
    h = views.roi_headline(roi.reset_index())
    assert (h["delay"], h["best"], h["gain"]) == (10, "none", "pre")
    assert (h["time_to_solution_s"], h["extra_s_per_success"]) == pytest.approx((2.0, 4.0))
    assert h["floss_share"] == pytest.approx((2.0 / 6.0 + 1.0 / 4.0) / 2)


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
    assert [s.name for s in spec.schedules] == ["none", "pre"] and len(spec.seeds) == 3
    with pytest.raises(ValueError, match="unknown size 'huge'; choose one of quick, paper, tiny"):
        demo.launch_spec("huge")
    with pytest.raises(ValueError, match="k must be in 1..8"):
        demo.launch_spec("tiny", k=9)

