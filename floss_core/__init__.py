"""Gradient Flossing Lab: Lyapunov spectra, gradient flossing and baseline-vs-flossed comparisons
of recurrent networks (Engelken, NeurIPS 2023). The public API, re-exported here."""
from .experiment import ComparisonSpec, make_spec, run_comparison, summarize
from .flossing import flossing_loss
from .lyapunov import gradient_vs_horizon, long_term_jacobian, lyapunov_spectrum
from .models import ModelConfig, init_ensemble
from .schedules import Schedule
from .tasks import TaskConfig, make_batch
from .train import FlossConfig, TrainConfig, __version__, train

__all__ = ["ComparisonSpec", "make_spec", "run_comparison", "summarize", "flossing_loss",
           "gradient_vs_horizon", "long_term_jacobian", "lyapunov_spectrum", "ModelConfig", "init_ensemble",
           "Schedule", "TaskConfig", "make_batch", "FlossConfig", "TrainConfig", "train", "__version__"]
