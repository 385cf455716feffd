"""What a report shows, read once from the store: an experiment's (or a pooled set's) runs, their
per-step metrics, spectra and Jacobian diagnostics, and the per-schedule summary.

A set pools only experiments that differ in name, delays or seeds, and never repeats a run.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..experiment import spec_from_dict, spec_to_dict, summarize
from ..store import SCORED_RUN_STATUSES, Store, run_records
from .reproduce import _flatten

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
    summary: list[dict]          # experiment.summarize over the finished runs


def load(store: Store, experiment_ids) -> ReportData:
    """Read one experiment id (or a list: a chosen set) from the store.

    A set must share every setting except name, delays and seeds, and may not repeat a
    (delay, schedule, seed) run, so that pooling the runs compares like with like.
    Raises ValueError (one line) for an unknown id, a configuration that is not a comparison spec,
    or a set that does not pool."""
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
    _check_poolable(ids, specs)
    runs = pd.concat([store.runs(i) for i in ids], ignore_index=True)
    finished = runs[runs["status"].isin(SCORED_RUN_STATUSES)].reset_index(drop=True)
    dup = finished.duplicated(["delay", "schedule", "seed"])
    if dup.any():
        r = finished[dup].iloc[0]
        raise ValueError(f"run d={r['delay']} {r['schedule']} seed {r['seed']} appears in more than one of "
                         f"experiments {', '.join(map(str, ids))}; choose experiments with distinct runs")
    delay_of = runs.set_index("run_id")["delay"]
    exp_of = runs.set_index("run_id")["experiment_id"]

    def tagged(frames: list[pd.DataFrame]) -> pd.DataFrame:
        df = pd.concat(frames, ignore_index=True)
        for pos, column, values in ((0, "experiment_id", exp_of), (2, "delay", delay_of)):
            if column not in df.columns:
                df.insert(pos, column, df["run_id"].map(values))
        return df[df["run_id"].isin(finished["run_id"])].reset_index(drop=True)

    return ReportData(ids=ids, experiments=experiments, specs=specs, runs=runs, finished=finished,
                      metrics=tagged([store.metrics(i) for i in ids]),
                      spectra=tagged([store.spectra(i) for i in ids]),
                      jacobian=tagged([store.jacobian(i) for i in ids]),
                      summary=summarize(records_from_runs(finished)))


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


def _check_poolable(ids: list[int], specs: list[dict]) -> None:
    def core(d):
        return {k: v for k, v in d.items() if k not in ("name", "delays", "seeds")}

    for i, spec in zip(ids[1:], specs[1:]):
        a, b = _flatten(core(specs[0])), _flatten(core(spec))
        diff = next((k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)), None)
        if diff is not None:
            raise ValueError(f"experiments {ids[0]} and {i} differ in {diff} ({a.get(diff)!r} vs {b.get(diff)!r}); "
                             "a report pools only experiments that differ in name, delays or seeds")


records_from_runs = run_records   # store.runs() rows -> run records (one function: floss_core.store)
