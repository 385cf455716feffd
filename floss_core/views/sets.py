"""A set of experiments side by side: which settings differ between their stored specs, and a short label per
experiment naming its values of those settings (e.g. ``#3 arch=gru, floss.k=4``), so that overlaid charts and
tables say what each series is. Specs are ``experiment.spec_to_dict`` dicts; no torch, no streamlit."""
from __future__ import annotations

import pandas as pd

# settings that never make two experiments different comparisons (a pooled set may differ in these too)
NOT_A_SETTING = ("name",)
POOLABLE = ("name", "delays", "seeds")   # a report pools experiments whose specs differ only in these


def flatten(d, prefix: str = "") -> dict:
    """A nested spec dict as {"model.hidden": 64, "schedules.0.name": "none", ...}."""
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(d, list) and d and isinstance(d[0], dict):
        for i, v in enumerate(d):
            out.update(flatten(v, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = d
    return out


def differing_settings(specs: list[dict], *, ignore=NOT_A_SETTING) -> list[str]:
    """The flattened settings (sorted) whose values are not the same in every spec; a setting absent from
    one spec counts as differing. Settings under an ``ignore`` name (a top-level key) are left out."""
    flat = [{k: v for k, v in flatten(s).items() if k.split(".")[0] not in ignore} for s in specs]
    keys = sorted(set().union(*flat)) if flat else []
    return [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]


def _value(v) -> str:
    if isinstance(v, list):
        return ",".join(map(str, v))
    return "—" if v is None else str(v)


def settings_table(ids: list[int], specs: list[dict], *, ignore=NOT_A_SETTING) -> pd.DataFrame:
    """One row per differing setting, one column per experiment (``#3``): the table of what differs."""
    keys = differing_settings(specs, ignore=ignore)
    flat = [flatten(s) for s in specs]
    return pd.DataFrame({"setting": keys, **{f"#{i}": [_value(f.get(k)) for k in keys] for i, f in zip(ids, flat)}})


def set_labels(ids: list[int], specs: list[dict], *, ignore=NOT_A_SETTING) -> dict[int, str]:
    """{experiment id: '#3 arch=gru, floss.k=4'}: each experiment named by its values of the settings that
    differ (just '#3' when nothing does)."""
    keys = differing_settings(specs, ignore=ignore)
    out = {}
    for i, s in zip(ids, specs):
        f = flatten(s)
        parts = [f"{k.removeprefix('model.').removeprefix('task.').removeprefix('train.')}={_value(f.get(k))}"
                 for k in keys]
        out[i] = f"#{i} " + ", ".join(parts) if parts else f"#{i}"
    return out


def poolable(specs: list[dict]) -> bool:
    """Whether the specs differ only in name, delays and seeds (their runs may be pooled into one statistic)."""
    return not differing_settings(specs, ignore=POOLABLE)
