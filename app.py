"""Gradient Flossing Lab: `streamlit run app.py`. This file is the home page and the navigation; every
other view is one script in pages/.

Why the st.App below: a folder named pages/ beside the main script makes Streamlit's first script run of a
fresh server use its old multipage mode (file-name addresses such as /Launch), before this file's
st.navigation takes over; a deep link (/outcomes?experiment=1) as a fresh server's first request was then
"Page not found". `streamlit run app.py` sees the `app = st.App(...)` assignment, imports this file once in
the server (``__name__ == "app"``) and serves it as the script (``__name__ == "__main__"``); the import
switches that mode off before any session, so every address works from the first request.
"""
import streamlit as st

if __name__ != "__main__":   # imported by `streamlit run app.py` to serve it, or by a test
    from streamlit.runtime.pages_manager import PagesManager

    PagesManager.uses_pages_directory = False   # pages/ holds st.navigation's scripts, not a v1 page folder
    app = st.App(__file__)
else:
    import dashboard as ui
    from floss_core import views
    from floss_core.views.conclusion import conclusion


def home():
    st.title("Gradient Flossing Lab")
    st.write("Train recurrent networks with and without *gradient flossing* (Engelken, NeurIPS 2023), which "
             "pushes the Lyapunov exponents of the network's dynamics toward zero so that gradients survive long "
             "delays. Compare flossing schedules on the same seeds and see whether it pays off.")
    experiment_id = ui.select_experiment()
    if experiment_id is None:
        st.subheader("Start here")
        st.write("The store is empty. The demo trains the paper's 80-unit RNN on delayed XOR at delay 20, 16 seeds "
                 "without flossing and the same 16 with 50 steps of pre-flossing, 300 training steps each, in a "
                 "background worker (about a minute on 2 cores), and says whether the difference is evidence.")
        if st.button("Run the demo comparison", type="primary"):
            from floss_core.demo import quick_demo_spec   # the spec code (and torch) loads on the click

            new_id = ui.launch(quick_demo_spec())
            st.switch_page(ui.PAGES["Runs"], query_params={"experiment": new_id})
        st.page_link(ui.PAGES["Launch"], label="Or design your own comparison on the Launch page",
                     icon=ui.ICONS["Launch"])
        return

    exp = ui.store().experiment(experiment_id)
    st.subheader(f"#{experiment_id} {exp['name']}: {exp['status']}, "
                 f"{exp['n_finished']} of {exp['n_runs']} runs finished")
    runs = ui.read("runs", experiment_id)
    success = views.success_vs_delay(runs)
    if success.empty:
        st.info("No finished runs yet: the Runs page shows the progress.")
    else:
        sentence = conclusion(success)
        if sentence and exp["status"] == "done":
            st.success(f"**What it shows.** {sentence}")
        elif sentence:
            st.info(f"**So far** ({exp['n_finished']} of {exp['n_runs']} runs). {sentence}")
        for col, r in zip(st.columns(min(len(success), 6)) * 10, success.itertuples()):
            col.metric(f"{r.schedule}, d={r.delay}: success of {r.n} seeds", f"{r.rate:.0%}",
                       help="95% Wilson interval: the range of success rates these seeds are consistent with")
            col.caption(f"{r.successes} of {r.n} solved; 95% interval {r.lo:.0%}–{r.hi:.0%}")
        h = views.roi_headline(views.roi_table(runs))   # the cost: flossing against task training
        st.markdown(views.frames.cost_sentence(h["delay"], h["floss_cost"], h["diag_s_per_run"], h["diag_share"]))
        st.plotly_chart(views.fig_success_vs_delay(success))
    for col, (title, path) in zip(st.columns(4) * 3, ui.PAGES.items()):  # links that carry this experiment
        col.page_link(path, label=title, icon=ui.ICONS.get(title), query_params={"experiment": experiment_id})


if __name__ == "__main__":
    st.set_page_config(page_title="Gradient Flossing Lab", page_icon="🪥", layout="wide")
    st.navigation([st.Page(home, title="Home", icon=ui.ICONS["Home"], default=True)] +
                  [st.Page(path, title=title, icon=ui.ICONS.get(title), url_path=ui.url_path(path))
                   for title, path in ui.PAGES.items()]).run()
