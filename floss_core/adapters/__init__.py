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

What you pass: the recurrent module (nn.RNN / GRU / LSTM / *Cell or a subclass, stepped with its own
weights; an overridden forward is not used), the whole model holding exactly one (several are listed to
choose from), or either wrapped by torch.compile / DataParallel / DistributedDataParallel
(``resolve_module``). Inputs are in the module's own layout: (T, B, C), or (B, T, C) with batch_first, or
(T, C) unbatched; a cell's sequence is time-major; an int T means T steps without input. ``h0`` is what the
module takes: (L, B, H) for GRU/RNN, ``(h0, c0)`` each (L, B, H) for an LSTM, (L, H) unbatched; (B, H) or
``(h, c)`` for cells; an unbatched h0 with batched inputs starts every sequence there; default zeros. Where
h0 gives the batch, an input whose batch axis disagrees is refused with the shape expected (a batch-first
tensor to a sequence-first module and the reverse, a step (B, C) without a time axis); without h0,
(B, T, C) and (T, B, C) are both legal and read as the module declares. Dropout between layers is not
applied (evaluation-mode dynamics; said once for a module in training mode); a float16 / bfloat16 module
is computed in float32 (said once; gradients reach its own parameters). For a custom step map, inputs are
time-major and h0 is its flat state (..., D).

In a training loop, ``FlossingRegularizer(model.rnn, k=8, every=10, weight=0.01)`` keeps a detached sample
of the module's real input and initial state from your own forward pass: ``loss = loss + reg()``;
``reg.phase(steps=...)`` flosses on the same window. ``floss_core.adapters.lightning.FlossingCallback``
does both modes in a Lightning Trainer (the ``lightning`` extra).

The modules, by job: ``resolve`` (what you pass -> the recurrent module), ``stepper`` (module -> step map),
``tangents`` (analytic tangent maps of the standard cells), ``window`` (the flossing loss of one window),
``measure`` (spectrum, diagnostics, forecast), ``regularizer`` (the flossing term and phase, with its
rails), ``hook`` (FlossingRegularizer), ``lightning`` (the Lightning callback; not imported here),
``inputs`` (a sample of your own inputs), ``checkpoint`` (loading a user's state_dict safely), ``reports``
(what the "Your model" page shows) and ``job`` (flossing a checkpoint in the background).
"""
from .checkpoint import TORCH_MODULES, MAX_CHECKPOINT_BYTES, build_module, load_checkpoint, save_state_dict
from .job import floss_job, floss_job_status, start_floss_job
from .measure import EDGE_OF_CHAOS, diagnostics, forecast, forecast_model, gradient_reach, spectrum, trajectory
from .hook import FlossingRegularizer, fitted_transient
from .inputs import MAX_INPUT_BYTES, Sample, load_inputs
from .regularizer import (CLIP, CLIP_CHAOTIC_ONLY, MAX_RISE, STATE_HORIZON, STOP_TOL, STOP_WINDOW, VALIDATE_EVERY,
                          floss, flossing_loss_term)
from .reports import FLOSSING_MIN_STEPS, REPORT_MIN_STEPS, bit_inputs, checkpoint_report, floss_checkpoint, floss_split
from .resolve import resolve_module
from .stepper import Stepper, module_step

__all__ = ["TORCH_MODULES", "MAX_CHECKPOINT_BYTES", "build_module", "load_checkpoint", "save_state_dict",
           "floss_job", "floss_job_status", "start_floss_job",
           "EDGE_OF_CHAOS", "diagnostics", "forecast", "forecast_model", "gradient_reach", "spectrum", "trajectory",
           "CLIP", "CLIP_CHAOTIC_ONLY", "MAX_RISE", "STATE_HORIZON", "STOP_TOL", "STOP_WINDOW", "VALIDATE_EVERY",
           "floss", "flossing_loss_term", "FlossingRegularizer", "fitted_transient",
           "MAX_INPUT_BYTES", "Sample", "load_inputs",
           "FLOSSING_MIN_STEPS", "REPORT_MIN_STEPS", "bit_inputs", "checkpoint_report", "floss_checkpoint", "floss_split",
           "resolve_module", "Stepper", "module_step"]
