"""What a report shows, read once from the store: an experiment's (or a set's) runs, their per-step
metrics, spectra and Jacobian diagnostics, and the per-schedule summary.

A set may hold any experiments. Those whose settings match (they differ at most in name, delays and seeds)
are pooled into one *part*, never repeating a run; experiments whose settings differ are separate parts,
each summarised and judged on its own and labelled by what differs (``views.sets``): no statistic mixes them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from ..experiment import spec_from_dict, spec_to_dict, summarize
from ..store import SCORED_RUN_STATUSES, Store, run_records
from ..views import sets as _sets


@dataclass
class Part:
    """Experiments of a set whose settings match, pooled: one summary, one verdict."""
    ids: list[int]               # experiment ids, in the order given
    label: str                   # '' for a report of one part; else what differs, e.g. '#3 arch=gru'
    specs: list[dict]
    finished: pd.DataFrame       # their runs with status done / diverged
    summary: list[dict]          # experiment.summarize over those runs


@dataclass
class ReportData:
    """Everything a report shows, read once from the store."""
    ids: list[int]               # experiment ids, in the order given
    experiments: list[dict]      # store.experiment(id) per id
    specs: list[dict]            # spec_to_dict of each experiment's validated spec
    runs: pd.DataFrame           # every run of the set (any status), store.runs columns
    finished: pd.DataFrame       # runs with status done / diverged: the outcomes
    metrics: pd.DataFrame        # store.metrics + experiment_id, delay
    spectra: pd.DataFrame        # store.spectra + experiment_id, delay
    jacobian: pd.DataFrame       # store.jacobian + experiment_id, delay
    summary: list[dict]          # experiment.summarize over the finished runs (a set of several parts: each
    #                              part's rows, in order, with its label under "set")
    parts: list[Part] = field(default_factory=list)   # the pooled groups (one for an experiment or a poolable set)
    settings: pd.DataFrame | None = None   # several parts: views.sets.settings_table, one row per differing setting
    differing: list[str] = field(default_factory=list)   # several parts: the settings that separate them

    @property
    def pooled(self) -> bool:
        """Whether the report is one pooled statistic (one experiment, or a set whose settings match)."""
        return len(self.parts) <= 1


def load(store: Store, experiment_ids) -> ReportData:
    """Read one experiment id (or a list: a chosen set) from the store.

    Experiments that share every setting except name, delays and seeds are pooled (and may not repeat a
    (delay, schedule, seed) run, so that pooling compares like with like); experiments whose settings
    differ are kept apart, one ``Part`` each, labelled by the settings that differ.
    Raises ValueError (one line) for an unknown id, a configuration that is not a comparison spec,
    or a pooled group that repeats a run."""
    ids = id_list(experiment_ids)
    experiments, specs = [], []
    for i in ids:
        try:
            exp = store.experiment(i)
        except KeyError:
            raise ValueError(f"no experiment {i} in {store.path}") from None
        try:
            spec = spec_to_dict(spec_from_dict(exp["config"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"experiment {i}'s configuration is not a comparison spec ({e})") from None
        experiments.append(exp)
        specs.append(spec)
    runs = pd.concat([store.runs(i) for i in ids], ignore_index=True)
    finished = runs[runs["status"].isin(SCORED_RUN_STATUSES)].reset_index(drop=True)
    by_id = dict(zip(ids, specs))
    parts = []
    for group in groups(ids, specs):
        done = finished[finished["experiment_id"].isin(group)].reset_index(drop=True)
        r = _sets.repeated_run(done)
        if r is not None:
            raise ValueError(f"run d={r['delay']} {r['schedule']} seed {r['seed']} appears in more than one of "
                             f"experiments {', '.join(map(str, group))}; choose experiments with distinct runs")
        parts.append(Part(group, "", [by_id[i] for i in group], done, summarize(records_from_runs(done))))
    settings, differing = None, []
    if len(parts) > 1:
        differing = _sets.differing_settings([_json_form(p.specs[0]) for p in parts], ignore=_sets.POOLABLE)
        for p, label in zip(parts, part_labels(parts)):
            p.label = label
        settings = _sets.settings_table(ids, [_json_form(s) for s in specs])
    delay_of = runs.set_index("run_id")["delay"]
    exp_of = runs.set_index("run_id")["experiment_id"]

    def tagged(frames: list[pd.DataFrame]) -> pd.DataFrame:
        df = pd.concat(frames, ignore_index=True)
        for pos, column, values in ((0, "experiment_id", exp_of), (2, "delay", delay_of)):
            if column not in df.columns:
                df.insert(pos, column, df["run_id"].map(values))
        return df[df["run_id"].isin(finished["run_id"])].reset_index(drop=True)

    summary = parts[0].summary if len(parts) == 1 else [{"set": p.label, **r} for p in parts for r in p.summary]
    return ReportData(ids=ids, experiments=experiments, specs=specs, runs=runs, finished=finished,
                      metrics=tagged([store.metrics(i) for i in ids]),
                      spectra=tagged([store.spectra(i) for i in ids]),
                      jacobian=tagged([store.jacobian(i) for i in ids]),
                      summary=summary, parts=parts, settings=settings, differing=differing)


def groups(ids: list[int], specs: list[dict]) -> list[list[int]]:
    """The ids in poolable groups (``views.sets.poolable``: settings equal but for name, delays and seeds),
    each group in the order given, the groups in the order of their first experiment."""
    out: dict[str, list[int]] = {}
    for i, spec in zip(ids, specs):
        key = repr(sorted((k, repr(v)) for k, v in _sets.flatten(_json_form(spec)).items()
                          if k.split(".")[0] not in _sets.POOLABLE))
        out.setdefault(key, []).append(i)
    return list(out.values())


def part_labels(parts: list[Part]) -> list[str]:
    """Each part named by its values of the settings that differ between the parts (``views.sets.set_labels``
    of their first experiments), its ids joined: '#3 arch=gru', '#1+#2 hidden=8'."""
    firsts = [p.ids[0] for p in parts]
    labels = _sets.set_labels(firsts, [_json_form(p.specs[0]) for p in parts], ignore=_sets.POOLABLE)
    out = []
    for p in parts:
        label = labels[p.ids[0]]
        out.append("+".join(f"#{i}" for i in p.ids) + label[len(f"#{p.ids[0]}"):])
    return out


def _json_form(spec: dict) -> dict:
    """A spec as stored (JSON: lists, not tuples), the form ``views.sets`` reads (it walks lists of schedules)."""
    return json.loads(json.dumps(spec))


def id_list(experiment_ids) -> list[int]:
    """One experiment id (int, str, numpy scalar) or several, as distinct ints; ValueError otherwise."""
    raw = [experiment_ids] if isinstance(experiment_ids, (int, str)) or hasattr(experiment_ids, "item") \
        else list(experiment_ids)
    ids = []
    for x in raw:
        try:
            ids.append(int(x))
        except (TypeError, ValueError):
            raise ValueError(f"experiment ids are integers, got {x!r}") from None
    if not ids:
        raise ValueError("name at least one experiment id")
    if len(set(ids)) != len(ids):
        raise ValueError(f"experiment ids must be distinct, got {', '.join(map(str, ids))}")
    return ids


records_from_runs = run_records   # store.runs() rows -> run records (one function: floss_core.store)
