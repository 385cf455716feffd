"""views.sets: what differs between experiments' specs, and the labels that say it."""
import pandas as pd

from floss_core.views import sets


def spec(**over):
    base = {"name": "a", "delays": [10], "seeds": [0, 1], "model": {"arch": "rnn", "hidden": 32},
            "floss": {"k": 16}, "schedules": [{"name": "none"}, {"name": "pre"}]}
    for k, v in over.items():
        section, _, field = k.partition("__")
        if field:
            base[section] = {**base[section], field: v}
        else:
            base[section] = v
    return base


def test_flatten_names_nested_fields_and_list_items():
    assert sets.flatten({"a": {"b": 1}, "s": [{"n": "x"}], "d": [1, 2]}) == {"a.b": 1, "s.0.n": "x", "d": [1, 2]}


def test_differing_settings_ignore_the_name_and_find_every_difference():
    a, b = spec(), spec(name="b", model__arch="gru", floss__k=4)
    assert sets.differing_settings([a, b]) == ["floss.k", "model.arch"]
    assert sets.differing_settings([a, spec(name="other")]) == []
    assert sets.differing_settings([a, spec(schedules=[{"name": "none"}])]) == ["schedules.1.name"]


def test_labels_and_table_name_the_values_that_differ():
    a, b = spec(), spec(model__arch="gru", floss__k=4)
    assert sets.set_labels([3, 5], [a, b]) == {3: "#3 floss.k=16, arch=rnn", 5: "#5 floss.k=4, arch=gru"}
    assert sets.set_labels([3, 4], [a, spec(name="z")]) == {3: "#3", 4: "#4"}
    t = sets.settings_table([3, 5], [a, b])
    assert list(t.columns) == ["setting", "#3", "#5"] and t["#5"].tolist() == ["4", "gru"]


def test_poolable_only_when_name_delays_and_seeds_differ():
    assert sets.poolable([spec(), spec(name="b", delays=[20, 40], seeds=[5])])
    assert not sets.poolable([spec(), spec(floss__k=4)])


def runs_of(experiment_id, seeds, delay=10, status="done"):
    return pd.DataFrame({"experiment_id": experiment_id, "delay": delay, "schedule": "none", "seed": seeds,
                         "status": status})


def test_pool_refusal_names_what_differs_or_the_run_counted_twice():
    a, b = spec(), spec(floss__k=4, model__arch="gru")
    assert sets.pool_refusal([1, 2], [a, b]) == "they differ in floss.k (16 vs 4), model.arch (rnn vs gru)"
    same = spec(name="b", seeds=[5, 6])
    assert sets.pool_refusal([1, 2], [a, same], pd.concat([runs_of(1, [0, 1]), runs_of(2, [5, 6])])) is None
    twice = pd.concat([runs_of(1, [0, 1]), runs_of(2, [1, 2])])
    assert sets.pool_refusal([1, 2], [a, same], twice) == "run d=10 none seed 1 is in more than one of #1, #2"
    unfinished = pd.concat([runs_of(1, [0, 1]), runs_of(2, [1], status="queued")])
    assert sets.pool_refusal([1, 2], [a, same], unfinished) is None    # only outcomes count


def test_experiment_set_labels_runs_only_when_shown_side_by_side():
    a, b = spec(), spec(floss__k=4)
    runs = pd.concat([runs_of(3, [0]), runs_of(5, [0])], ignore_index=True)
    one = sets.ExperimentSet([3], [a])
    assert one.labels is None and one.label_runs(runs) is runs and one.summary() == "Experiment #3."
    side = sets.ExperimentSet([3, 5], [a, b], refusal=sets.pool_refusal([3, 5], [a, b]))
    assert side.labels == {3: "#3 floss.k=16", 5: "#5 floss.k=4"}
    assert side.label_runs(runs)["label"].tolist() == ["#3 floss.k=16", "#5 floss.k=4"]
    assert "never pooled across them (they differ in floss.k (16 vs 4))" in side.summary()
    assert side.table()["setting"].tolist() == ["floss.k"]
    pooled = sets.ExperimentSet([3, 5], [a, spec(seeds=[7])], pooled=True)
    assert pooled.labels is None and "label" not in pooled.label_runs(runs) and "pooled" in pooled.summary()
