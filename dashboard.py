"""Plumbing shared by app.py and the pages: the store, cached reads, the selected experiment, launching.

Store path: ``$FLOSS_STORE``, else ``./floss_data/floss.db``. Reads are cached with ``st.cache_data``
keyed on ``Store.last_change()``, so a page re-reads only after something was written. The selected
experiment lives in the URL (``?experiment=3``, so a link reproduces a view) and in the session (so
it survives the sidebar navigation, which drops query parameters).

``FLOSS_NO_WORKER=1`` (a test / ops switch) makes launching only queue: no worker process is started.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path, PurePath

import pandas as pd
import streamlit as st

from floss_core import fmt, options, runner, tasks, views
from floss_core.schedules import planned_floss_steps
from floss_core.store import Store, StoreError, default_store_path


def _title(page: Path) -> str:
    """pages/3_Lyapunov_spectra.py -> 'Lyapunov spectra'."""
    return page.stem.split("_", 1)[1].replace("_", " ")


# Every script in pages/ is a page, in file-name order; the navigation in app.py lists them all.
PAGES = {_title(p): f"pages/{p.name}" for p in sorted((Path(__file__).parent / "pages").glob("[0-9]*_*.py"),
                                                       key=lambda p: int(p.name.split("_")[0]))}
ICONS = {"Home": ":material/home:", "Launch": ":material/rocket_launch:", "Runs": ":material/list_alt:",
         "Lyapunov spectra": ":material/show_chart:", "Conditioning": ":material/functions:",
         "Outcomes": ":material/flag:", "ROI": ":material/payments:", "Report": ":material/description:",
         "Your model": ":material/upload_file:", "Advise": ":material/tune:"}


def url_path(page: str) -> str:
    """pages/3_Lyapunov_spectra.py -> lyapunov_spectra (the page's address: /lyapunov_spectra?experiment=3)."""
    return PurePath(page).stem.split("_", 1)[1].lower()


@st.cache_resource(show_spinner=False)
def _open(path: str) -> Store:
    return Store(path)


def store() -> Store:
    """This process's handle on the store; a foreign or newer file stops the page with st.error."""
    path = str(default_store_path())
    try:
        return _open(path)
    except StoreError as e:
        st.error(str(e))
        st.stop()


@st.cache_data(max_entries=128, show_spinner=False)
def _read(path: str, change: tuple, what: str, experiment_id: int | None) -> pd.DataFrame:
    s = _open(path)
    return s.experiments() if what == "experiments" else getattr(s, what)(experiment_id)


def read(what: str, experiment_id=None) -> pd.DataFrame:
    """``store().<what>(experiment_id)`` (experiments, runs, metrics, spectra, jacobian), cached. For a
    ``views.ExperimentSet`` (``compare_set``): its experiments' rows together, the runs labelled by experiment
    when they are shown side by side."""
    if isinstance(experiment_id, views.ExperimentSet):
        rows = pd.concat([read(what, i) for i in experiment_id.ids], ignore_index=True)
        return experiment_id.label_runs(rows) if what == "runs" else rows
    s = store()
    return _read(str(s.path), s.last_change(), what, None if experiment_id is None else int(experiment_id))


def sidebar() -> None:
    st.sidebar.caption(f"Store: `{default_store_path()}`")


def select_experiment(*, finished_only: bool = False) -> int | None:
    """The experiment chosen in the sidebar, preselected from ``?experiment=`` or this session."""
    sidebar()
    exps = read("experiments")
    if finished_only:
        exps = exps[exps["n_finished"] > 0]
    if exps.empty:
        return None
    ids = [int(i) for i in exps["id"]]
    wanted = st.query_params.get("experiment", st.session_state.get("experiment"))
    wanted = int(wanted) if str(wanted).isdigit() and int(wanted) in ids else ids[-1]
    labels = {int(r["id"]): views.experiment_label(r) for _, r in exps.iterrows()}
    chosen = st.sidebar.selectbox("Experiment", ids, index=ids.index(wanted), format_func=labels.get)
    st.session_state["experiment"] = chosen
    st.query_params["experiment"] = str(chosen)
    return chosen


def select_compare(experiment_id: int) -> list[int]:
    """The sidebar's "Compare with…" under the experiment selector: further finished experiments to show beside
    ``experiment_id``, preselected from ``?compare=2,3`` or this session, and kept in both."""
    exps = read("experiments")
    others = [int(i) for i, n in zip(exps["id"], exps["n_finished"]) if n > 0 and int(i) != experiment_id]
    wanted = st.query_params.get("compare", st.session_state.get("compare", ""))
    wanted = [int(x) for x in str(wanted).split(",") if x.strip().isdigit() and int(x) in others]
    if not others:
        return []
    labels = {int(r["id"]): views.experiment_label(r) for _, r in exps.iterrows()}
    chosen = st.sidebar.multiselect("Compare with…", others, default=wanted, format_func=labels.get,
                                    placeholder="other experiments",
                                    help="overlay other experiments on this page (RNN vs GRU, k = 16 vs 4, other "
                                         "delays), each series labelled by the settings that differ")
    st.session_state["compare"] = ",".join(map(str, chosen))
    if chosen:
        st.query_params["compare"] = st.session_state["compare"]
    else:
        st.query_params.pop("compare", None)
    return chosen


def compare_set(experiment_id: int | None) -> views.ExperimentSet | None:
    """The experiment and those chosen under "Compare with…" as a ``views.ExperimentSet``, with a table of the
    settings that differ; experiments whose settings match may be pooled (a sidebar toggle, on by default),
    others are shown side by side, never pooled. None without an experiment."""
    if experiment_id is None:
        return None
    ids = [experiment_id, *select_compare(experiment_id)]
    configs = read("experiments").set_index("id")["config"]
    specs = [configs.loc[i] or {} for i in ids]
    if len(ids) == 1:
        return views.ExperimentSet(ids, specs)
    refusal = views.pool_refusal(ids, specs, pd.concat([read("runs", i) for i in ids], ignore_index=True))
    pooled = refusal is None and st.sidebar.toggle(
        "Pool them (their settings match)", value=st.session_state.get("pool", True),
        help="count the runs of these experiments together in every statistic; off: side by side")
    if refusal is None:
        st.session_state["pool"] = pooled
    chosen = views.ExperimentSet(ids, specs, pooled=pooled, refusal=refusal)
    st.info(chosen.summary())
    table = chosen.table()
    if len(table):
        st.dataframe(table, hide_index=True, key="settings_table")
    return chosen


def pick_delay(runs: pd.DataFrame) -> int | None:
    """A delay of this experiment (a selectbox when it swept several)."""
    delays = sorted(int(d) for d in runs["delay"].dropna().unique())
    if len(delays) > 1:
        return st.selectbox("Delay d", delays, index=len(delays) - 1)
    return delays[0] if delays else None


def diagnostics_at_delay(experiment_id: int | None, what: str, missing: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs at the delay the user picks and their rows of a diagnostics table ('spectra' or
    'jacobian'); stops the page with ``missing`` when the experiment stored none."""
    need_results(experiment_id)
    runs = read("runs", experiment_id)
    runs = runs[runs["delay"] == pick_delay(runs)]
    rows = read(what, experiment_id)
    rows = rows[rows["run_id"].isin(runs["run_id"])]
    if rows.empty:
        st.info(missing)
        st.stop()
    return runs, rows


def need_results(experiment_id: int | None, runs: pd.DataFrame | None = None) -> None:
    """Stop the page with a hint when there is nothing to show yet (a set: when its first experiment has none)."""
    if isinstance(experiment_id, views.ExperimentSet):
        experiment_id = experiment_id.ids[0]
    if experiment_id is None:
        st.info("No finished runs yet. Start one on the Launch page, or the quick demo on the home page.")
        st.page_link(PAGES["Launch"], label="Launch a comparison")
        st.stop()
    if runs is not None and not runs["status"].isin(views.SCORED).any():
        st.info(f"Experiment #{experiment_id} has no finished runs yet; the Runs page shows its progress.")
        st.page_link(PAGES["Runs"], label="Runs", query_params={"experiment": experiment_id})
        st.stop()


def launch(spec) -> int:
    """Queue ``spec`` and make sure a worker runs it (unless ``FLOSS_NO_WORKER=1``); its id."""
    experiment_id = runner.submit(spec, store())
    start_worker()
    st.session_state["experiment"] = experiment_id
    return experiment_id


def start_worker() -> None:
    """Start a detached worker on this store if none is alive (not with ``FLOSS_NO_WORKER=1``); a malformed
    FLOSS_* setting stops the page with st.error."""
    from floss_core import settings

    try:
        if not settings.get("FLOSS_NO_WORKER"):
            runner.ensure_worker(store().path)
    except ValueError as e:
        st.error(str(e))
        st.stop()


def rerun(experiment_id: int) -> int:
    """Queue an experiment's stored configuration again; the new id."""
    from floss_core.experiment import spec_from_dict   # torch loads when a spec is built, not with the page

    return launch(spec_from_dict(store().rerun_config(experiment_id)))


def cancel(experiment_id: int) -> None:
    runner.cancel(store(), experiment_id)


def ints(text: str, what: str, *, required: bool = False) -> list[int]:
    """'10, 20' -> [10, 20]; ValueError naming ``what`` otherwise (or when ``required`` and empty)."""
    try:
        values = [int(x) for x in str(text).replace(";", ",").split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated whole numbers, got {text!r}") from None
    if required and not values:
        raise ValueError(f"{what} must name at least one value, e.g. 20 or 10, 20, 40")
    return values


def option_input(name: str, defaults: dict, prefix: str):
    """The Launch page's widget for comparison option ``name`` (label, choices, minimum and widget key from
    ``floss_core.options``), starting at ``defaults[name]``; its key is ``prefix`` + the option's key."""
    o, value = options.OPTIONS[name], defaults[name]
    key = prefix + (o.key or o.name)
    if o.kind == "names":
        return st.multiselect(o.label, list(o.choices), default=value, key=key, help=o.page_help)
    if o.choices:
        return st.selectbox(o.label, list(o.choices), index=list(o.choices).index(value), key=key, help=o.page_help)
    if o.kind == "bool":
        return st.checkbox(o.label, value=bool(value), key=key, help=o.page_help)
    if o.kind == "ints":   # parsed with ints(), so a typo is an st.error, not a lost value
        return st.text_input(o.label, ", ".join(map(str, value)), key=key, help=o.page_help)
    # no min_value: with one, Streamlit keeps the old value of a field typed below it, and the page would show
    # and queue a value that is not in the field; out_of_range checks the typed value against the table's low
    return st.number_input(o.label, value=value, step=1 if o.kind == "int" else None, key=key, help=o.page_help)


def out_of_range(values: dict) -> list[str]:
    """One line per Launch-page number below its option's minimum (``low`` in floss_core/options.py), naming the
    field as the page labels it: "'Seeds (networks per schedule)' must be at least 1, got 0"."""
    out = []
    for name, value in values.items():
        o = options.OPTIONS.get(name)
        if (o is not None and o.page and o.low is not None and isinstance(value, (int, float))
                and not isinstance(value, bool) and value < o.low):
            out.append(f"'{o.label}' must be at least {o.low:g}, got {value:g}")
    return out


@st.cache_resource(show_spinner=False)
def _sequence_lengths() -> dict:
    from floss_core import demo   # builds specs: torch loads here, not with the page

    return {size: demo.launch_spec(size).task.seq_len for size in demo.SIZES}


def check_delays(size: str, delays: list[int]) -> None:
    """ValueError in the Launch page's words for a delay below 1 or one that does not fit in the size's
    sequences (the page has no sequence-length field): what the user can choose instead."""
    label = options.OPTIONS["delays"].label
    if min(delays, default=1) < 1:
        raise ValueError(f"'{label}' must be at least 1, got {min(delays)}")
    lengths = _sequence_lengths()
    length, worst = lengths[size], max(delays, default=0)
    if worst >= length:
        longer = [f"{s} ({n} steps)" for s, n in lengths.items() if n > worst]
        raise ValueError(f"delay {worst} does not fit: the {size} size's sequences are {length} steps long; choose "
                         f"delays below {length}" + (f", or size {' or '.join(longer)}" if longer else ""))


# the page options that name a comparison when they differ from the size's defaults, and their words
_NAMING = {"arch": str, "hidden": "N = {}".format, "delays": lambda d: "d = " + ", ".join(map(str, d)),
           "channels": "{} channels".format, "order": "order {}".format, "k": "k = {}".format,
           "floss_design": "{} flossing".format}


def comparison_name(size: str, values: dict, defaults: dict, csv: str | None = None) -> str:
    """The Launch page's default name, following the form: task and size, the uploaded file, the naming
    options that differ from the size's defaults, the schedules ("xor quick, gru, d = 10, 40: none vs pre vs
    adaptive"). Delays may still be the field's text (left out while it does not parse)."""
    parts = [f"{values['task']} {size}"] + ([PurePath(csv).name] if csv else [])
    for name, words in _NAMING.items():
        value = values.get(name)
        if name == "delays" and isinstance(value, str):
            try:
                value = ints(value, name)
            except ValueError:
                continue
        if name in values and value != defaults.get(name):
            parts.append(words(value))
    return ", ".join(parts) + ": " + " vs ".join(values.get("schedules") or [])


def name_input(default: str) -> str:
    """The Launch page's Name field: it follows ``default`` (the form) until the user types a name, which then
    stays whatever else changes, the size included; an emptied field takes the default again."""
    key, auto = "launch:name", "launch:name:default"
    if st.session_state.get(key) in (None, "", st.session_state.get(auto)):
        st.session_state[key] = default
    st.session_state[auto] = default
    text = st.text_input("Name", key=key, help="shown in the sidebar, on the Runs page and in the report (its title "
                                               "and file names); it follows the form until you type one")
    return text.strip() or default


def safe_filename(name: str) -> str:
    """A user's file name reduced to [A-Za-z0-9._-], no folders, no leading dot (no path traversal)."""
    from floss_core import files

    return files.safe_filename(name, basename=True, fallback="upload.csv", max_len=100)


def save_upload(upload) -> str:
    """Keep an uploaded CSV under the store's folder (uploads/<safe name>) once it reads as a table with a header
    and a column of numbers; otherwise ValueError (one line in the user's words, never the server's path) and
    nothing of it is kept: it is written to a temporary file beside, checked, and only then renamed into place.
    Its columns and gaps are checked with the spec, once the user has chosen the columns and what a gap does.
    An unchanged file is not rewritten (its parse stays cached)."""
    import os
    import tempfile

    folder = store().path.parent / "uploads"
    path = folder / safe_filename(upload.name)
    data = upload.getvalue()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if path.is_file() and path.read_bytes() == data:
            try:
                _check_upload(str(path))
            except ValueError:
                path.unlink(missing_ok=True)    # kept before refusals were checked first: keep nothing refused
                raise
            return str(path)
        fd, tmp = tempfile.mkstemp(prefix=".upload-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            _check_upload(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as e:
        raise ValueError(f"the upload could not be saved on the server ({e.strerror or type(e).__name__})") from None
    return str(path)


def _check_upload(path: str) -> None:
    """ValueError unless the file reads as a table with a header and at least one column of numbers."""
    info = series_info(path)
    if not info.columns:
        why = next(iter(info.not_numeric.values()), None)
        raise ValueError("this file has no column of numbers to forecast" + (f": {why}" if why else ""))


def series_info(path: str):
    """What an uploaded CSV offers (``floss_core.series.describe``): its index column, the numeric columns the
    Launch page lists, the other columns with the line that refuses them, the gaps per column."""
    from floss_core import series

    return series.describe(path)


duration = fmt.duration   # 0.53 s, 42 s, 3.5 min, 2.1 h (the CLI's status shows the same)


def work_summary(spec) -> str:
    """What a spec will train, in one line (instant: no measurement)."""
    def count(x: int, what: str) -> str:
        return f"{x} {what}" + ("s" if x != 1 else "")

    n = len(spec.schedules) * len(spec.seeds) * len(spec.delays)
    floss = ", ".join(f"{planned_floss_steps(s, spec.train.steps)} for {s.name}" for s in spec.schedules
                      if planned_floss_steps(s, spec.train.steps))
    return (f"**{count(n, 'network')}**: {count(len(spec.schedules), 'schedule')} × {count(len(spec.seeds), 'seed')}"
            f" × {count(len(spec.delays), 'delay')}, {spec.train.steps} training steps each"
            + (f"; flossing steps: {floss}" if floss else "") + ".")


@st.cache_data(show_spinner=False, max_entries=64)
def _estimate(spec_json: str, workers: int, device: str, measured: str):
    """The estimate of a spec from the store's cost table of ``device`` (``measured``: the table's last
    update, so a newer table is read anew)."""
    from floss_core.experiment import spec_from_dict
    from floss_core.plan import estimate as estimate_of

    return estimate_of(spec_from_dict(json.loads(spec_json)), store().cost_table(device), workers=workers)


def estimate(spec, *, measure_here: bool = False) -> dict:
    """The time ``spec`` will take here, at once, from this machine's cost table in the store, which the
    background worker measures once while idle (started now if none runs; a few minutes for every
    architecture, the default first). Returns {"estimate": a ``plan.Estimate`` or None while the table
    lacks the spec's part, "workers": the worker processes assumed (FLOSS_WORKERS, else one per core),
    "missing": the parts still to measure, "worker": whether a worker measures them}. With
    ``FLOSS_NO_WORKER=1`` nobody does: ``measure_here`` measures the spec's architecture in this process
    (the page shows a spinner; starting parallel processes is then left out of the estimate)."""
    from floss_core import costs, settings
    from floss_core.configs import resolve_device

    try:
        # the worker the dashboard starts shares the runs out among its processes (FLOSS_WORKERS, else one per core)
        workers = runner.configured_workers()
    except ValueError as e:  # a malformed FLOSS_WORKERS, which that worker would refuse too
        st.error(str(e))
        st.stop()
    device = resolve_device(spec.device).type
    table = store().cost_table(device)
    if not costs.fresh(table, device):
        table = None
    worker = not settings.get("FLOSS_NO_WORKER")
    lacking = costs.needed_parts(table, spec.model.arch)
    if lacking and worker:
        start_worker()
    elif lacking and measure_here:
        table = table or costs.new_table(device)
        for part in lacking:      # the machine's part without parallel processes: only a worker measures those
            costs.measure_part(table, part, device=device, workers=1)
        store().save_cost_table(table, device)
        lacking = []
    out = {"estimate": None, "workers": workers, "missing": lacking, "worker": worker}
    if not lacking:
        out["estimate"] = _estimate(json.dumps(asdict(spec), sort_keys=True), workers, device, table["updated"])
    return out


@st.cache_data(show_spinner=False, max_entries=64)
def _forecast(model_json: str, delay: int, channels: int) -> str | None:
    try:
        from floss_core.adapters import forecast_model
        from floss_core.models import ModelConfig

        return forecast_model(ModelConfig(**json.loads(model_json)), delay, channels=channels)["verdict"]
    except ValueError:  # λ_1 not measurable (NaN): no verdict rather than a wrong one
        return None


def forecast(spec) -> str | None:
    """The trainability verdict for the spec's network at its longest delay (bit tasks), if available."""
    if not tasks.task_entry(spec.task.name).bit_inputs:   # the forecast drives the network with random bits
        return None
    return _forecast(json.dumps(asdict(spec.model), sort_keys=True), max(spec.delays), spec.task.channels)


def results_page(title: str, intro: str) -> int | None:
    """A results page's head: its title and what it shows, then the finished experiment chosen in the sidebar."""
    st.title(title)
    st.write(intro)
    return select_experiment(finished_only=True)


def finished_runs(experiment_id: int | None) -> pd.DataFrame:
    """The experiment's runs once some have finished; until then the page stops with a hint."""
    need_results(experiment_id)
    runs = read("runs", experiment_id)
    need_results(experiment_id, runs)
    return runs
