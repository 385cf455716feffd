"""Floss your own model: PyTorch's nn.RNN / nn.GRU / nn.LSTM, their *Cell variants, any step map.

A user's module becomes a one-step map ``step(state (B, D), x (B, C)) -> state (B, D)`` over ONE flat
state vector: all layers' hidden states (layer 0 first), then, for an LSTM, all layers' cell states.
It is stepped layer by layer with the module's own weights and the cell equations of the PyTorch docs
(the fused nn.LSTM kernel has no forward-mode AD on the CPU), so the pure functions of ``lyapunov.py``
apply unchanged: tangents come from forward-mode JVPs, no hand-written Jacobian is needed.

On top of that map, for the two modes of gradient flossing (Engelken, NeurIPS 2023):

    lam = spectrum(lstm, x, k=8)                                   # (B, k) exponents, nats per step
    loss = task_loss + 0.1 * flossing_loss_term(lstm, x, k=8)      # as a term, every M steps
    floss(lstm, sampler, k=8, steps=200, lr=1e-3)                  # or as a separate phase
    forecast(lam, delay=60)["verdict"]                             # trainability forecast

plus ``diagnostics`` (long-term Jacobian κ₂ and gradient vs horizon), ``load_checkpoint`` /
``save_state_dict`` for state dicts, and the two reports the dashboard's "Your model" page shows.

Inputs are in the module's own layout: (T, B, C), or (B, T, C) with ``batch_first``, or (T, C)
unbatched; an int T means T steps without input (x = 0). ``h0`` is what the module itself takes
((L, B, H) or ``(h, c)`` for the full modules, (B, H) or ``(h, c)`` for cells), default zeros.
For a custom step map, inputs are time-major (x_t = inputs[t]) and ``h0`` is its flat state (..., D).
Dropout between layers is not applied: the map is the module's evaluation-mode dynamics.

The modules, by job: ``stepper`` (module -> step map), ``measure`` (spectrum, diagnostics, forecast),
``regularizer`` (the flossing term and phase), ``checkpoint`` (loading a user's state_dict safely),
``reports`` (what the "Your model" page shows) and ``job`` (flossing a checkpoint in the background).
"""
from .checkpoint import TORCH_MODULES, MAX_CHECKPOINT_BYTES, build_module, load_checkpoint, save_state_dict
from .job import floss_job, floss_job_status, start_floss_job
from .measure import EDGE_OF_CHAOS, diagnostics, forecast, forecast_model, gradient_reach, spectrum, trajectory
from .regularizer import CLIP, CLIP_CHAOTIC_ONLY, STATE_HORIZON, floss, flossing_loss_term
from .reports import bit_inputs, checkpoint_report, floss_checkpoint
from .stepper import Stepper, module_step

__all__ = ["TORCH_MODULES", "MAX_CHECKPOINT_BYTES", "build_module", "load_checkpoint", "save_state_dict",
           "floss_job", "floss_job_status", "start_floss_job",
           "EDGE_OF_CHAOS", "diagnostics", "forecast", "forecast_model", "gradient_reach", "spectrum", "trajectory",
           "CLIP", "CLIP_CHAOTIC_ONLY", "STATE_HORIZON", "floss", "flossing_loss_term",
           "bit_inputs", "checkpoint_report", "floss_checkpoint", "Stepper", "module_step"]
