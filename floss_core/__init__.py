"""Gradient Flossing Lab: Lyapunov spectra, gradient flossing and baseline-vs-flossed comparisons
of recurrent networks (Engelken, NeurIPS 2023).

The public face: the research names below, loaded on first use (PEP 562), so that ``import
floss_core.store`` or ``floss_core.views`` (the CLI's status and cancel, every dashboard page) loads
no torch. The training loop itself is ``floss_core.train.train``; the modules are in ARCHITECTURE.md.
"""
from __future__ import annotations

import importlib

__version__ = "0.3.0"  # 0.3.0: the lab's flossing design by default, batch-invariant drives and sums,
# float64 diagnostics; 0.2.0: the training backward rounds δ(1 - h²) (tanh_backward)

# public name -> the module that defines it
_FACE = {
    "ComparisonSpec": "experiment", "make_spec": "experiment", "run_comparison": "experiment",
    "summarize": "experiment", "flossing_loss": "flossing", "lyapunov_spectrum": "lyapunov",
    "long_term_jacobian": "lyapunov", "gradient_vs_horizon": "lyapunov", "ModelConfig": "models",
    "init_ensemble": "models", "Schedule": "schedules", "TaskConfig": "tasks", "make_batch": "tasks",
    "FlossConfig": "configs", "TrainConfig": "configs",
}
__all__ = [*_FACE, "__version__"]


def __getattr__(name: str):
    if name in _FACE:
        value = getattr(importlib.import_module(f".{_FACE[name]}", __name__), name)
        globals()[name] = value   # once loaded, a plain attribute
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
