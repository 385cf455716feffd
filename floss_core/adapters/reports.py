"""The two reports the dashboard's "Your model" page shows for a loaded checkpoint: ``checkpoint_report``
(spectrum, forecast, long-term Jacobian and gradient reach) and ``floss_checkpoint`` (flossing in place,
with the spectrum before and after).

Both are driven by a sample of the user's own inputs when one is given (``inputs``: an ``inputs.Sample`` from
``load_inputs``, or a tensor in the module's layout), else by random bits on every input channel, which is
only right for a model whose inputs are bits (issue 17: a trained LSTM has λ1 = −0.076 on bits, −0.223 on its
real inputs). Each result says which inputs it used (``"inputs"``). Flossing on a sample draws its windows
from the first half of every sequence and measures before and after on the second half, which it never saw:
an effect is checked on data the method did not optimise.
"""
from __future__ import annotations

import math

import torch

from ..tasks import random_bits
from .inputs import as_sample, check_steps
from .measure import _check_forecast, diagnostics, forecast, spectrum, trajectory
from .regularizer import _check_floss, floss
from .resolve import resolve_module
from .stepper import _check_k, module_step


def bit_inputs(module, steps: int, *, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """Random input bits in the module's own layout ((T, B, C), or (B, T, C) with batch_first)."""
    module = resolve_module(module)   # a whole model's batch_first is its recurrent module's
    st = module_step(module)
    x = random_bits((steps, batch, st.input_size), torch.Generator().manual_seed(seed),
                    next(iter(module.parameters())).dtype)
    return x.transpose(0, 1) if getattr(module, "batch_first", False) else x


BITS = "random bits on every input channel"
MIN_MEASURED = 50        # steps a spectrum on a sample averages over at least, after its transient
MEASURE_TRANSIENT = 100  # floss_checkpoint's transient before measuring the spectrum before and after
MAX_SEQUENCES = 8        # a sample's sequences a report uses at most (the first ones): its cost grows with them
REPORT_MIN_STEPS = 100 + MIN_MEASURED                            # a sample's shortest length, default transient
FLOSSING_MIN_STEPS = 2 * max(55, MEASURE_TRANSIENT + MIN_MEASURED)  # and for flossing (default window): two halves


def _steps(n: int) -> str:
    return f"{n:,} step" + ("" if n == 1 else "s")


def _used(sample, steps: int, sequences: int) -> str:
    """What of the sample a measurement used, when not all of it: '; the first 8 of 50 sequences'."""
    out = ""
    if sequences < sample.sequences:
        out += f"; the first {sequences} of its {sample.sequences:,} sequences"
    if steps < sample.steps:
        out += f"; the first {steps:,} of its {sample.steps:,} steps"
    return out


def checkpoint_report(module, *, delay: int, k: int | None = None, steps: int = 500, transient: int = 100,
                      diag_steps: int = 200, tol: float = 1e-3, seed: int = 0, inputs=None,
                      max_sequences: int = MAX_SEQUENCES) -> dict:
    """What the "Your model" page shows for a module, driven by ``inputs`` or by random input bits.

    The spectrum averages ``steps`` steps after a ``transient``; the diagnostics use the first
    ``diag_steps`` steps after the transient (the long-term Jacobian tracks all D directions).
    ``inputs``: a sample of the user's inputs (``load_inputs``'s ``Sample`` or a tensor in the module's
    layout), at least ``transient`` + 50 steps long; its first ``max_sequences`` sequences are measured, each
    up to ``transient + steps`` steps, the exponents averaged over them; the diagnostics follow the first
    sequence. Default None: one sequence of random bits on every input channel.
    Returns ``exponents`` (k floats), ``forecast`` (see ``forecast``), ``horizons`` with
    ``log10_kappa`` (log10 σ_1/σ_D of the long-term Jacobian at each), ``grad_norms`` (diag_steps + 1
    floats, ‖∂L/∂h_{T−τ}‖ for τ = 0..) with ``grad_reach``, the state dimension ``dim``, ``params`` and
    ``inputs`` (what drove the module, in words: "random bits on every input channel", "your sample (x.npy):
    3 sequences × 400 steps × 2 channels; the first 100 steps of each a transient").
    """
    _check_forecast(delay, tol)
    for name, value, low in (("steps", steps, 1), ("transient", transient, 0), ("diag_steps", diag_steps, 1),
                             ("max_sequences", max_sequences, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    module = resolve_module(module)
    st = module_step(module)
    k = _check_k(k, st.dim)
    if inputs is None:
        x, used = bit_inputs(module, transient + steps, seed=seed), BITS
    else:
        sample = as_sample(inputs, module)
        check_steps(sample, transient + MIN_MEASURED, "the report",
                    f" (a {transient}-step transient, then at least {MIN_MEASURED} measured)")
        n_steps, n_seqs = min(sample.steps, transient + steps), min(sample.sequences, max_sequences)
        x = sample.part(0, n_steps, sequences=slice(0, n_seqs))
        steps = n_steps - transient
        used = (sample.describe() + _used(sample, n_steps, n_seqs)
                + (f"; the first {_steps(transient)}{' of each' if n_seqs > 1 else ''} a transient" if transient else "")
                + ("; κ₂ and the gradient reach on its first sequence" if n_seqs > 1 else ""))
    lam = spectrum(module, x, k=k, transient=transient, seed=seed).mean(0)     # over the sequences
    time_dim, batch_dim = (1, 0) if getattr(module, "batch_first", False) else (0, 1)
    x = x.narrow(batch_dim, 0, 1)
    warm, rest = x.narrow(time_dim, 0, transient), x.narrow(time_dim, transient, min(diag_steps, steps))
    h0 = st.state_to(trajectory(module, warm)[-1]) if transient else None   # start on the attractor
    d = diagnostics(module, rest, h0=h0, tol=tol, seed=seed)
    return {"exponents": lam.tolist(), "forecast": forecast(lam, delay, tol=tol), "dim": st.dim,
            "params": sum(p.numel() for p in module.parameters()), "horizons": d["horizons"],
            "log10_kappa": (d["log_kappa"][:, 0] / math.log(10)).tolist(),
            "grad_norms": d["grad_norms"][:, 0].tolist(), "grad_reach": d["grad_reach"][0], "inputs": used}


def floss_split(sample, *, window: int = 55, measure_transient: int = MEASURE_TRANSIENT) -> int:
    """Where ``floss_checkpoint`` cuts every sequence of ``sample``: steps 0..split-1 give the flossing windows,
    steps split.. (the second half, held out) the spectrum before and after. ValueError, naming the minimum
    length, for a sample too short for both halves."""
    half = max(window, measure_transient + MIN_MEASURED)
    check_steps(sample, 2 * half, "flossing on it",
                f": the first half for the {window}-step flossing windows, the second half held out for "
                f"measuring before and after (a {measure_transient}-step transient, then at least {MIN_MEASURED})")
    return sample.steps // 2


def floss_checkpoint(module, *, k: int, steps: int, lr: float = 1e-3, window: int = 55, transient: int = 16,
                     measure_steps: int = 500, seed: int = 0, on_step=None, inputs=None,
                     max_sequences: int = MAX_SEQUENCES) -> dict:
    """Floss ``module`` in place (the paper's protocol: a window of 55 steps, 16 transient, a fresh window
    each step) and measure its first k exponents on a long window (``measure_steps`` after a 100-step
    transient) ``before`` and ``after``.

    Without ``inputs`` the windows are fresh random bits and the measurement another draw of them. With a
    sample of the user's inputs (``load_inputs``'s ``Sample`` or a tensor in the module's layout) every
    sequence is cut in two (``floss_split``): the windows are drawn at random places of the first half of
    random sequences, and before / after are measured on the second half (up to 100 + ``measure_steps`` steps
    of its first ``max_sequences`` sequences, averaged), which the flossing never saw.
    Returns ``before``, ``after``, ``floss``'s dict, ``inputs`` (what was used for what, in words) and
    ``split``: None on bits, else {"floss": [0, split], "measure": [split, end]}, the steps (zero-based, end
    excluded) of every sequence that gave the windows and the measurement.
    """
    module = resolve_module(module)
    st = module_step(module)
    _check_k(k, st.dim)
    _check_floss(steps, lr)
    if isinstance(window, bool) or not isinstance(window, int) or not 0 <= transient < window:
        raise ValueError(f"transient must be in 0..{window - 1} (below the window), got {transient}")
    batch_first = getattr(module, "batch_first", False)
    if inputs is None:
        measure = bit_inputs(module, measure_steps + MEASURE_TRANSIENT, seed=seed + 1)
        gen = torch.Generator().manual_seed(seed + 2)

        def sampler(i):
            x = random_bits((window, 1, st.input_size), gen, measure.dtype)
            return x.transpose(0, 1) if batch_first else x
        used, split = BITS + ": a fresh draw for every flossing window, another for before and after", None
    else:
        sample = as_sample(inputs, module)
        cut = floss_split(sample, window=window)
        end = min(sample.steps, cut + MEASURE_TRANSIENT + measure_steps)
        n_seqs = min(sample.sequences, max_sequences)
        measure = sample.part(cut, end, sequences=slice(0, n_seqs))
        gen = torch.Generator().manual_seed(seed + 2)

        def sampler(i):   # a random window of the first half of a random sequence
            b = int(torch.randint(sample.sequences, (), generator=gen))
            start = int(torch.randint(cut - window + 1, (), generator=gen))
            return sample.part(start, start + window, sequences=slice(b, b + 1))
        split = {"floss": [0, cut], "measure": [cut, end]}
        used = (f"{sample.describe()}: flossing windows from steps 1–{cut:,} of "
                + ("its sequence" if sample.sequences == 1 else f"its {sample.sequences:,} sequences")
                + f"; before and after measured on steps {cut + 1:,}–{end:,}"
                + ("" if n_seqs == sample.sequences else f" of the first {n_seqs} sequences")
                + f", held out (the first {MEASURE_TRANSIENT} of them a transient)")
    before = spectrum(module, measure, k=k, transient=MEASURE_TRANSIENT, seed=seed).mean(0)
    result = floss(module, sampler, k=k, steps=steps, lr=lr, transient=transient, seed=seed, on_step=on_step)
    after = spectrum(module, measure, k=k, transient=MEASURE_TRANSIENT, seed=seed).mean(0)
    return {"before": before.tolist(), "after": after.tolist(), **result, "inputs": used, "split": split}
