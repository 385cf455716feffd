"""Advise: the schedule adviser. Queue a search over flossing schedules for the background worker, watch it, read
its recommendation (the verdict), the front of success against compute and every trial; download its report."""
import streamlit as st

import dashboard as ui
from floss_core import demo, options, report, tasks
from floss_core.report import advice as advice_report
from floss_core.views import advice as views

ACTIVE = ("queued", "running")

st.title("Advise: the least flossing for the success you need")
st.write("What is the least flossing that buys the success we need? The adviser tries flossing schedules on your "
         "task and delay, every one on the same seeds as training without flossing, and recommends the cheapest "
         "schedule that reaches your target success rate, with what it costs in compute (training + flossing "
         "seconds per run) against no flossing.")
ui.sidebar()

# ------------------------------------------------------------------------------------ the form
sizes = list(demo.SIZES)
size = st.radio("Size", sizes, index=sizes.index(st.query_params.get("size", "quick")) if
                st.query_params.get("size") in sizes else 0, horizontal=True, key="advise:size",
                help="quick: about a minute per schedule tried on a CPU; paper: the paper's protocol (hours per "
                     "schedule); tiny: a smoke test that finishes in seconds")
d = demo.launch_defaults(size)
bit_tasks = [t for t in options.OPTIONS["task"].choices if not tasks.uses(t, "csv_path")]   # no file on this page
LABELS = {"delay": "Delay d", "seeds": "Seeds (networks per schedule tried)",
          "trials": "Schedules to try (besides no flossing)", "target": "Target success rate (%)"}
with st.form(f"advise:{size}"):
    left, mid, right = st.columns(3)
    task = left.selectbox(options.OPTIONS["task"].label, bit_tasks,
                          index=bit_tasks.index(d["task"]) if d["task"] in bit_tasks else 0, key=f"{size}:a:task")
    delay = left.number_input(LABELS["delay"], value=int(max(d["delays"])), step=1, key=f"{size}:a:delay",
                              help="the delay the schedules must bridge")
    seeds = mid.number_input(LABELS["seeds"], value=int(d["seeds"]), step=1, key=f"{size}:a:seeds",
                             help="every schedule tried runs these seeds (a hopeless one stops after the first "
                                  "third of them)")
    trials = mid.number_input(LABELS["trials"], value=3 if size == "tiny" else 12, step=1, key=f"{size}:a:trials",
                              help="candidate schedules the search evaluates; the first is the size's own "
                                   "pre-flossing, the others are proposed by Optuna")
    target = right.number_input(LABELS["target"], value=80.0, step=5.0, key=f"{size}:a:target",
                                help="the recommendation is the cheapest schedule that solves at least this share "
                                     "of the seeds")
    name = right.text_input("Name", key=f"{size}:a:name", placeholder=f"advise: {task} {size} d={delay}",
                            help="shown below and in the report's title and file name")
    submitted = st.form_submit_button("Queue the search", type="primary")


def form_errors() -> list[str]:
    """The form's refusals in its own words (the widgets have no min_value, so the typed value is checked)."""
    out = [f"'{LABELS[k]}' must be at least 1, got {v:g}" for k, v in (("delay", delay), ("seeds", seeds),
                                                                      ("trials", trials)) if v < 1]
    if not 0 < target <= 100:
        out.append(f"'{LABELS['target']}' must be above 0 and at most 100, got {target:g}")
    if not out:
        try:
            ui.check_delays(size, [int(delay)])
        except ValueError as e:
            out.append(str(e))
    return out


if submitted:
    errors = form_errors()
    config = None
    if not errors:
        from floss_core import advise   # builds and validates the spec: torch loads on the click, not with the page

        try:
            title = name.strip() or f"advise: {task} {size} d={int(delay)}"
            spec = demo.launch_spec(size, task=task, delays=[int(delay)], seeds=int(seeds), name=title)
            config = advise.advice_config(spec, advise.AdviseConfig(trials=int(trials), target=float(target) / 100))
        except ValueError as e:
            errors.append(str(e))
    for line in errors:
        st.error(line)
    if config is not None:
        new_id = ui.store().queue_advice(config, title)
        ui.start_worker()
        st.session_state["advice"] = new_id
        st.query_params["advice"] = str(new_id)
        st.success(f"Queued search #{new_id}: no flossing and {int(trials)} schedules on {int(seeds)} seeds. It is "
                   "followed below.")

# ------------------------------------------------------------------------------------ a stored search
st.divider()
searches = ui.store().advice_list()
if searches.empty:
    st.info("No search yet: fill in the form above. On the tiny size a search of 3 schedules takes under a minute.")
    st.stop()
ids = [int(i) for i in searches["id"]]
wanted = st.query_params.get("advice", st.session_state.get("advice"))
wanted = int(wanted) if str(wanted).isdigit() and int(wanted) in ids else ids[-1]
names = dict(zip(ids, searches["name"]))
advice_id = st.selectbox("Search", ids, index=ids.index(wanted), format_func=lambda i: f"#{i} {names[i]}",
                         key="advice:pick", help="every search stored, newest last; its status is shown below")
st.session_state["advice"] = advice_id
st.query_params["advice"] = str(advice_id)


def show(row: dict) -> None:
    """One search as it stands: status and progress, the verdict, the chart, every trial."""
    trials = ui.store().advice_trials(row["id"])
    active = row["status"] in ACTIVE
    total = row.get("trials_total") or len(trials) or 1
    done = row.get("trials_done") or len(trials)
    st.progress(min(1.0, done / total), text=f"{row['status']}: {done} of {total} trials (no flossing included)")
    if row["status"] == "running" and row.get("experiment_id"):
        st.page_link(ui.PAGES["Runs"], label=f"Trial {done} trains as experiment #{row['experiment_id']}",
                     query_params={"experiment": row["experiment_id"]})
    if row["status"] == "failed":
        st.error(f"The search failed: {row.get('error') or 'no reason recorded'}")
    rec = advice_report.recommendation_of(row, trials)
    if rec is None or (active and not trials):    # nothing to say before the first trial
        return
    words = ("**So far** " + f"({done} of {total} trials): " if active else "**Verdict.** ") + rec["statement"]
    if rec["status"] == "recommended" and not active:
        st.success(words)
    elif rec["status"] == "none_reaches":
        st.warning(words)
    else:
        st.info(words)
    h = views.headline(rec)
    if h["title"]:
        choice = rec["choice"]
        cols = st.columns([2, 1, 1])
        cols[0].markdown(f"{h['title']}  \n**{h['value']}**")        # a label too long for a metric
        cols[1].metric("Success", f"{100 * choice['success_rate']:.0f} %", help="solved seeds (95 % Wilson interval)")
        cols[1].caption(h["success"])
        cols[2].metric("Compute per run", ui.duration(choice["compute_seconds"]),
                       help="the mean training + flossing seconds per run; evaluation and the lab's diagnostics "
                            "are measurement, not counted")
        cols[2].caption(h["extra"])
    if trials:
        st.plotly_chart(views.fig_advice(trials, rec), key=f"advice_fig:{row['id']}")
        st.caption(views.front_caption(rec))
        st.plotly_chart(views.fig_time_to_solution(trials, rec), key=f"advice_time:{row['id']}")
        st.caption(views.time_caption(trials))
        st.dataframe(views.trials_display(views.trials_table(trials, rec)), hide_index=True,
                     key=f"advice_table:{row['id']}")


@st.fragment(run_every=2)
def follow(advice_id: int) -> None:
    """Look again every 2 s while the search is queued or running; redraw the page once it has ended."""
    row = ui.store().advice(advice_id)
    if row["status"] not in ACTIVE:
        st.rerun()
    show(row)


row = ui.store().advice(advice_id)
st.subheader(f"#{advice_id} {row['name']}")
if row["status"] in ACTIVE:
    follow(advice_id)
    if st.button("Cancel this search", key=f"advice_cancel:{advice_id}"):
        st.info(f"Search #{advice_id}: {ui.store().request_cancel_advice(advice_id)}; a running one stops within "
                "seconds, keeping the trials it finished.")
else:
    show(row)

html, pdf = st.columns(2)
html.download_button("Download the report (HTML)", lambda: report.export_advice(ui.store(), advice_id, "html")[1],
                     file_name=report.advice_filename(row["name"], advice_id, "html"), mime="text/html",
                     type="primary", key=f"advice_html:{advice_id}")
problem = report.pdf_problem()  # None, or how to get Chromium / playwright
if problem is None:
    pdf.download_button("Download the report (PDF)", lambda: report.export_advice(ui.store(), advice_id, "pdf")[1],
                        file_name=report.advice_filename(row["name"], advice_id, "pdf"), mime="application/pdf",
                        key=f"advice_pdf:{advice_id}")
else:
    pdf.warning(problem)
