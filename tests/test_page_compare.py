"""Several experiments on one page (issue 16, item 5): the sidebar's "Compare with…" overlays other experiments
on the Outcomes, Lyapunov spectra, Conditioning and ROI pages, each series labelled by the settings that
differ, with a table of those settings; experiments whose settings match are pooled (a toggle), others never.
AppTest over a store of real tiny comparisons; FLOSS_NO_WORKER=1 keeps the pages from starting workers."""
import json
import re

import pytest

from floss_core.experiment import make_spec, run_comparison, spec_to_dict
from floss_core.store import Store
from test_pages import copy_of, page

COMMON = dict(steps=30, seeds=2, schedules=["none", "pre"], pre_steps=5, eval_every=10, seq_len=20, floss_len=20,
              floss_transient=5, success_acc=0.55)
LABELS = {1: "#1 delays=4,6, floss.k=4, hidden=8", 2: "#2 delays=6, floss.k=2, hidden=6"}
PAGES = ["3_Lyapunov_spectra", "4_Conditioning", "5_Outcomes", "6_ROI"]


def saved(s: Store, spec) -> int:
    i = s.add_experiment(spec_to_dict(spec), name=spec.name, status="done")
    s.save_runs(i, run_comparison(spec))
    return i


@pytest.fixture(scope="module")
def two_store(tmp_path_factory):
    """#1: an 8-unit RNN flossing k = 4 at d = 4 and 6; #2: a 6-unit RNN flossing k = 2 at d = 6 (they differ
    in hidden, k and delays); #3: #2's settings on other seeds (poolable with #2)."""
    path = tmp_path_factory.mktemp("compare") / "floss.db"
    with Store(path) as s:
        saved(s, make_spec("quick", name="rnn k4", hidden=8, k=4, delays=[4, 6], **COMMON))
        saved(s, make_spec("quick", name="rnn k2", hidden=6, k=2, delays=[6], **COMMON))
        saved(s, make_spec("quick", name="rnn k2 more seeds", hidden=6, k=2, delays=[6],
                           **{**COMMON, "seeds": [5, 6]}))
    return path


@pytest.fixture
def env(monkeypatch, two_store):
    monkeypatch.setenv("FLOSS_NO_WORKER", "1")
    monkeypatch.setenv("FLOSS_STORE", str(two_store))
    return monkeypatch


def traces(at) -> list[str]:
    """The legend names of every chart on the page."""
    return [t.get("name", "") for c in at.get("plotly_chart") for t in json.loads(c.proto.spec)["data"]]


def settings_shown(at):
    return next(d.value for d in at.dataframe if "setting" in d.value.columns)


@pytest.mark.parametrize("name", PAGES)
def test_each_page_overlays_both_experiments_labelled_with_the_settings_table(env, name):
    at = page(name, experiment=1, compare=2)
    assert not at.error and not at.exception
    assert at.sidebar.selectbox[0].value == 1 and at.sidebar.multiselect[0].value == [2]
    table = settings_shown(at)
    assert list(table.columns) == ["setting", "#1", "#2"]
    assert table.set_index("setting").to_dict("index") == {"delays": {"#1": "4,6", "#2": "6"},
                                                           "floss.k": {"#1": "4", "#2": "2"},
                                                           "model.hidden": {"#1": "8", "#2": "6"}}
    assert any("side by side" in i.value and "never pooled" in i.value and "floss.k (4 vs 2)" in i.value
               for i in at.info)
    names = traces(at)
    for i, label in LABELS.items():   # both experiments, both schedules, on the page's charts
        for schedule in ("none", "pre"):
            assert any(n.startswith(f"{label} · {schedule}") for n in names), (label, schedule, names)
    metrics = [m.label for m in at.metric]          # headline figures name the experiment by its id
    if name != "6_ROI":                              # (the ROI page heads each experiment's: below)
        assert any("#1 · pre" in m for m in metrics) and any("#2 · pre" in m for m in metrics)


def test_outcomes_tables_and_headlines_carry_the_label(env):
    at = page("5_Outcomes", experiment=1, compare=2)
    metrics = {m.label for m in at.metric}
    assert {"Success, #1 · pre at d=4", "Success, #1 · pre at d=6", "Success, #2 · pre at d=6"} <= metrics
    assert "Success, #2 · pre at d=4" not in metrics         # #2 never ran d = 4
    survival = at.dataframe[1].value    # the experiments by id, as in the settings table above it
    assert survival.columns[0] == "experiment" and set(survival["experiment"]) == {"#1", "#2"}
    assert len(survival) == 6                   # #1: 2 delays × 2 schedules, #2: 1 × 2, each within itself
    for d in at.dataframe:
        assert not d.value.isna().any().any(), d.value   # no None / NaN printed as text


def test_roi_page_heads_each_experiment_and_its_tables_fit(env):
    at = page("6_ROI", experiment=1, compare=2)
    assert [m.value for m in at.markdown if m.value in (f"**{LABELS[1]}**", f"**{LABELS[2]}**")] == \
        [f"**{LABELS[1]}**", f"**{LABELS[2]}**"]        # each experiment's headline under its label
    assert [m.label for m in at.metric].count("Least training + flossing per solved network at d=6") == 2
    buys, costs = (d.value for d in at.dataframe if "schedule" in d.value.columns)
    assert list(buys.columns[:3]) == ["experiment", "delay", "schedule"] and len(buys) == 6
    assert "success (95% CI)" in buys and "flossing vs training" in costs
    for table in (buys, costs):
        text = table.astype(str).to_numpy().ravel()
        assert not any(x in ("None", "nan", "inf", "Infinity") for x in text), table


def test_compare_is_kept_in_the_url_and_the_session(env):
    at = page("5_Outcomes", experiment=1, compare=2)
    assert at.query_params["compare"] == "2"
    at.switch_page("pages/6_ROI.py").run()                 # the sidebar's navigation drops the query
    assert at.sidebar.multiselect[0].value == [2] and not at.exception
    at.sidebar.multiselect[0].set_value([]).run()        # back to one experiment: the page as before
    assert "compare" not in at.query_params and not any(d.value.columns[0] == "setting" for d in at.dataframe)
    assert not any("#2" in m.label for m in at.metric)
    at.switch_page("pages/5_Outcomes.py").run()
    assert at.sidebar.multiselect[0].value == []
    at = page("5_Outcomes", experiment=2, compare="1,9,x")  # unknown or malformed ids are dropped
    assert at.sidebar.multiselect[0].value == [1] and not at.error


def test_one_experiment_looks_as_before(env):
    at = page("5_Outcomes", experiment=1)
    assert at.sidebar.multiselect[0].value == [] and not any("setting" in d.value.columns for d in at.dataframe)
    assert not any("side by side" in i.value or "pooled" in i.value for i in at.info)
    assert {"Success, pre at d=6", "Success, none at d=4"} <= {m.label for m in at.metric}
    assert "none" in traces(at) and not any("#1" in n for n in traces(at))


def test_matching_settings_pool_and_the_toggle_sets_them_side_by_side(env):
    at = page("5_Outcomes", experiment=2, compare=3)
    assert any("pooled" in i.value and "their runs count together" in i.value for i in at.info)
    assert settings_shown(at)["setting"].tolist() == ["seeds"]          # the name is no setting
    helps = {m.label: m.help for m in at.metric}
    assert " of 4 seeds;" in helps["Success, pre at d=6"]              # 2 + 2 seeds counted together
    at.sidebar.toggle[0].set_value(False).run()
    labels = {m.label for m in at.metric}
    assert {"Success, #2 · pre at d=6", "Success, #3 · pre at d=6"} <= labels


def test_a_set_with_the_same_runs_twice_is_never_pooled(env, two_store, tmp_path):
    path = copy_of(two_store, tmp_path)
    with Store(path) as s:           # #4: #2 again (the same seeds): pooling would count each run twice
        saved(s, make_spec("quick", name="rnn k2 again", hidden=6, k=2, delays=[6], **COMMON))
    env.setenv("FLOSS_STORE", str(path))
    at = page("5_Outcomes", experiment=2, compare=4)
    assert not at.sidebar.toggle and not at.error
    refusal = r"never pooled across them \(run d=6 (none|pre) seed [01] is in more than one of #2, #4\)"
    assert any(re.search(refusal, i.value) for i in at.info), at.info[0].value
    assert {"Success, #2 · pre at d=6", "Success, #4 · pre at d=6"} <= {m.label for m in at.metric}
