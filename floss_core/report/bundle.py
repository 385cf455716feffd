"""The data export: the report's tables as CSV (and Parquet where pyarrow is importable) and each
experiment's spec as JSON, in one zip."""
from __future__ import annotations

import io
import json
import zipfile

import pandas as pd

from .. import __version__, views
from ..store import Store
from .data import ReportData, load


def data_zip(store: Store, experiment_ids) -> bytes:
    """The runs, per-step metrics, spectra and Jacobian diagnostics as CSV (and Parquet where pyarrow
    is importable), the summary table, the Kaplan–Meier curves, and each experiment's spec as JSON, in
    one zip (bytes)."""
    return zip_from_data(load(store, experiment_ids))


def tables_for_export(data: ReportData) -> dict[str, pd.DataFrame]:
    """Flat tables (no nested objects: dicts and lists become JSON strings) named as in the zip."""
    runs = data.runs.copy()
    for c in ("versions", "config"):
        runs[c] = runs[c].map(lambda v: json.dumps(v, sort_keys=True))
    jac = data.jacobian.copy()
    jac["log_sv"] = jac["log_sv"].map(json.dumps)
    if data.pooled:
        survival = views.survival_curves(data.finished)
    else:   # a set whose settings differ: each part's curves from its own runs, under its label
        survival = pd.concat([views.survival_curves(p.finished).assign(set=p.label) for p in data.parts],
                             ignore_index=True)
    return {"runs": runs, "metrics": data.metrics, "spectra": data.spectra, "jacobian": jac,
            "summary": pd.DataFrame(data.summary), "survival": survival}


def zip_from_data(data: ReportData) -> bytes:
    tables = tables_for_export(data)
    try:
        import pyarrow  # noqa: F401
        parquet = True
    except ImportError:
        parquet = False
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, df in tables.items():
            z.writestr(f"{name}.csv", df.to_csv(index=False))
            if parquet:
                z.writestr(f"{name}.parquet", df.to_parquet(index=False))
        for i, spec in zip(data.ids, data.specs):
            z.writestr(f"spec-{i}.json", json.dumps(spec, indent=1))
        z.writestr("README.txt", _ZIP_README.format(ids=", ".join(map(str, data.ids)), version=__version__,
                                                    parquet=" and .parquet" if parquet else ""))
    return buf.getvalue()


_ZIP_README = """Gradient Flossing Lab data export: experiment(s) {ids}, floss_core {version}.

runs.csv{parquet}      one row per run (delay x schedule x seed): status, success, convergence_step,
                       timings (s), final metrics; config and versions as JSON strings
metrics.csv            per-step curves, long form: run_id, step, name, value
spectra.csv            Lyapunov spectra, one row per exponent: run_id, step, phase, index, exponent
jacobian.csv           long-term Jacobian per horizon: log_kappa (natural log of kappa_2), grad_norm,
                       log_sv (JSON list of log singular values)
summary.csv            the report's table: one row per (delay, schedule); median_solve_step / _lo / _hi
                       (Kaplan-Meier median step to solution, 95% CI; inf: not reached), logrank_p,
                       paired_seeds, solved_first, baseline_first, paired_p (vs 'none', same delay)
survival.csv           the Kaplan-Meier curves: per (delay, schedule) and step, the fraction of seeds
                       solved with its 95% band (lo, hi), at_risk, events (solved), censored (never
                       solved: at the last training step, or where the run diverged)
spec-<id>.json         the full comparison spec; floss_core.experiment.spec_from_dict reruns it
Empty cells are NaN. Tables join on run_id. A report of experiments whose settings differ keeps them apart:
summary.csv and survival.csv then have a 'set' column naming each experiment (or pooled group of
experiments with matching settings) by the settings that differ; runs.csv has experiment_id.
"""
