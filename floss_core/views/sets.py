"""A set of experiments side by side: which settings differ between their stored specs, and a short label per
experiment naming its values of those settings (e.g. ``#3 arch=gru, floss.k=4``), so that overlaid charts and
tables say what each series is. Specs are ``experiment.spec_to_dict`` dicts; no torch, no streamlit."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..store import SCORED_RUN_STATUSES
from .frames import with_labels

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
    if isinstance(v, (list, tuple)):
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


def _values(specs: list[dict], key: str) -> str:
    return " vs ".join(_value(flatten(s).get(key)) for s in specs)


def pool_refusal(ids: list[int], specs: list[dict], runs: pd.DataFrame | None = None) -> str | None:
    """Why the experiments' runs may not be pooled into one statistic, in a line (None: they may): a setting
    other than name, delays and seeds differs ('they differ in floss.k (16 vs 4)'), or one (delay, schedule,
    seed) run is in more than one of them (``runs``: their store.runs rows), which pooling would count twice."""
    keys = differing_settings(specs, ignore=POOLABLE)
    if keys:
        return "they differ in " + ", ".join(f"{k} ({_values(specs, k)})" for k in keys)
    r = repeated_run(runs) if runs is not None and len(runs) else None
    if r is not None:
        return (f"run d={r['delay']} {r['schedule']} seed {r['seed']} is in more than one of "
                + ", ".join(f"#{i}" for i in ids))
    return None


def repeated_run(runs: pd.DataFrame):
    """The first finished (delay, schedule, seed) run that the frame holds more than once, which pooling would
    count twice (a store.runs row); None when there is none."""
    done = runs[runs["status"].isin(SCORED_RUN_STATUSES)]
    dup = done[done.duplicated(["delay", "schedule", "seed"])]
    return dup.iloc[0] if len(dup) else None


@dataclass
class ExperimentSet:
    """Experiments shown together: ``ids`` (the one chosen first, then those compared with it), their stored
    specs, whether their runs are pooled into one (only where ``pool_refusal`` has nothing against it) and,
    if not poolable, why (``refusal``)."""
    ids: list[int]
    specs: list[dict]
    pooled: bool = False
    refusal: str | None = None

    @property
    def labels(self) -> dict[int, str] | None:
        """{id: label} when the experiments are shown side by side; None for one experiment or a pooled set
        (its runs are then one experiment's, as far as every frame is concerned)."""
        return None if len(self.ids) == 1 or self.pooled else set_labels(self.ids, self.specs)

    def label_runs(self, runs: pd.DataFrame) -> pd.DataFrame:
        """``runs`` with the ``label`` column of ``frames.with_labels`` when the set is shown side by side."""
        labels = self.labels
        return runs if labels is None else with_labels(runs, labels)

    def table(self) -> pd.DataFrame:
        """The settings that differ between the experiments (``settings_table``)."""
        return settings_table(self.ids, self.specs)

    def summary(self) -> str:
        """What the pages show of the set, in one sentence."""
        names = ", ".join(f"#{i}" for i in self.ids)
        if len(self.ids) == 1:
            return f"Experiment #{self.ids[0]}."
        if self.pooled:
            return (f"Experiments {names} pooled: their settings match (they differ at most in name, delays and "
                    "seeds), so their runs count together in every statistic.")
        why = f" ({self.refusal})" if self.refusal else ""
        return (f"Experiments {names} side by side, each series labelled by its experiment and the settings that "
                f"differ; every statistic is computed within one experiment, never pooled across them{why}.")
