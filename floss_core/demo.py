"""Ready-made comparisons for the dashboard: the one-click quick demo and the Launch page's sizes.

A *size* is a preset of ``experiment.PRESETS`` plus a few overrides: ``paper`` and ``quick`` are the
presets themselves; ``tiny`` is a smoke-test comparison that finishes in seconds (for trying the
dashboard out and for its end-to-end test), not a scientific result.

Stop when solved (``TrainConfig.stop_when_solved``): on for the demo, ``quick`` and ``tiny`` (the quick
preset's default), off for ``paper`` (the paper trains every network for a fixed budget).
"""
from __future__ import annotations

from .experiment import ComparisonSpec, make_spec, spec_to_dict
from .options import page_defaults

# size -> (preset, overrides passed to make_spec)
SIZES: dict[str, tuple[str, dict]] = {
    "quick": ("quick", {}),
    "paper": ("paper", {}),
    "tiny": ("quick", dict(hidden=8, steps=30, seeds=2, delays=[4, 6], k=4, seq_len=20, floss_len=20,
                           floss_transient=5, eval_every=10, pre_steps=5, inter_steps=5, inter_at=[10, 20],
                           every=10, adaptive_k=4, adaptive_steps=5, success_acc=0.55, diag_len=40,
                           diag_transient=10)),   # a 40-step diagnostics window: twice the sequence, as quick's
}

# The one-click demo: the paper's network (N = 80, T = 300, batch 16) on delayed XOR at d = 20, no flossing
# vs 50 steps of pre-flossing, 300 training steps, 16 seeds. Enough seeds for the difference to be
# evidence: measured here (bench/RESULTS.md, "The demo"), pre-flossing solved 18 of 27 seeds and no
# flossing 0 of 27 at these settings, so 16 seeds reach Fisher p < 0.05 unless a machine's rounding
# turns far more seeds than that (the chance of missing it at those rates is about 0.2 %). About a
# minute on 2 cores, in the background worker.
DEMO_PRESET = "paper"
DEMO = dict(name="demo: none vs pre, xor d=20", task="xor", delays=[20], seeds=16, steps=300, pre_steps=50,
            schedules=["none", "pre"], stop_when_solved=True)   # solved seeds stop: the same success rates


def quick_demo_spec() -> ComparisonSpec:
    """The landing page's one-click comparison (``DEMO``: paper-sized RNN, delayed XOR at d = 20, none vs
    pre-flossing, 16 seeds)."""
    return make_spec(DEMO_PRESET, **DEMO)


def launch_spec(size: str, **options) -> ComparisonSpec:
    """A validated spec of ``size`` (see ``SIZES``) with the user's ``options`` on top (ValueError, one line)."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    preset, overrides = SIZES[size]
    return make_spec(preset, **{**overrides, **{k: v for k, v in options.items() if v is not None}})


def launch_defaults(size: str) -> dict:
    """The Launch page's starting widget values for ``size``: flat ``make_spec`` option names
    (every page option of ``floss_core.options``, read off the size's spec)."""
    return page_defaults(spec_to_dict(launch_spec(size)))
