"""What the dashboard and the report show, free of streamlit and torch: ``frames`` shapes the store's
DataFrames into what is shown (pandas), ``figures`` draws them (plotly). The names below are the ones
the dashboard, its pages, the report and the tests use; the rest live in their modules."""
from .figures import (color, fig_convergence, fig_cost_breakdown, fig_horizon, fig_metric, fig_roi,
                      fig_singular_values, fig_spectra, fig_success_vs_delay, fig_topk)
from .figures import fig_survival
from .frames import (conditioning_headline, flossed_k, paired_solves, survival_curves, survival_display,
                     survival_table, training_budget)
from .frames import paired_display, roi_display, series_names, success_thresholds, with_labels
from .sets import ExperimentSet, pool_refusal, set_labels, settings_table
from .frames import (SCORED, STAGES, convergence_steps, experiment_label, experiments_table, filter_runs,
                     jacobian_band, lambda1_by_stage, metric_band, metric_seeds, roi_headline, roi_table,
                     runs_table, runs_display, schedule_order, score_column, singular_values, spectrum_band, success_vs_delay,
                     topk_over_training)

__all__ = ["SCORED", "STAGES", "color", "convergence_steps", "experiment_label", "experiments_table",
           "fig_convergence", "fig_cost_breakdown", "fig_horizon", "fig_metric", "fig_roi", "fig_singular_values",
           "fig_spectra", "fig_success_vs_delay", "fig_topk", "filter_runs", "jacobian_band", "lambda1_by_stage",
           "metric_band", "metric_seeds", "roi_headline", "roi_table", "runs_table", "runs_display", "schedule_order",
           "score_column", "singular_values", "spectrum_band", "success_vs_delay", "topk_over_training"]
__all__ += ["conditioning_headline", "fig_survival", "flossed_k", "paired_solves", "survival_curves",
            "survival_display", "survival_table", "training_budget"]
__all__ += ["ExperimentSet", "paired_display", "pool_refusal", "roi_display", "series_names", "set_labels",
            "settings_table", "success_thresholds", "with_labels"]
from .frames import eta_is_bound, eta_text, progress_text, run_state_text, run_states, runs_summary
__all__ += ["eta_is_bound", "eta_text", "progress_text", "run_state_text", "run_states", "runs_summary"]
from .frames import STATE_HELP
__all__ += ["STATE_HELP"]
from .advice import fig_advice, fig_time_to_solution   # the adviser's charts; its table: views.advice.trials_table
__all__ += ["fig_advice", "fig_time_to_solution"]
