"""Numbers as people read them, shared by the command line, the dashboard and the report."""
from __future__ import annotations

from .stats import is_missing


def duration(seconds) -> str:
    """0.53 s, 42 s, 3.5 min, 2.1 h; '-' for a missing value, '∞' for an infinite one."""
    if is_missing(seconds):
        return "-"
    if abs(seconds) == float("inf"):
        return "∞"
    if abs(seconds) < 10:
        return f"{seconds:.2g} s"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min" if seconds < 5400 else \
        f"{seconds / 3600:.1f} h"


def p_value(p: float) -> str:
    """A test's p as the verdicts write it: 0.023, 2.5e-04 below 0.001."""
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"
