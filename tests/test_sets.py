"""views.sets: what differs between experiments' specs, and the labels that say it."""
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
