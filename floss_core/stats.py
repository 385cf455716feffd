"""Statistics shared by the summaries, the dashboard's views and the report (no torch, no pandas).

Missing values (None, pandas' NA, NaN) are one idea here: ``is_missing`` decides, and the averages
and quantiles below leave such values out.
"""
from __future__ import annotations

import math
import statistics

Z95 = 1.959964  # two-sided 95 % normal quantile


def is_missing(value) -> bool:
    """True for None, pandas' NA and a float NaN (what a store row holds for "not measured")."""
    if value is None or isinstance(value, (str, bytes)):
        return value is None
    try:
        return bool(value != value)  # NaN and pd.NA are the values not equal to themselves
    except TypeError:                 # pd.NA: its comparison is NA, whose truth value raises
        return True


def finite_or_nan(value) -> float:
    """``value`` as a float, NaN where it is missing."""
    return math.nan if is_missing(value) else float(value)


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of a success rate (sound for small n and rates near 0 or 1)."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def success_rate(successes: int, n: int) -> tuple[float, float, float]:
    """(rate, lo, hi): the success rate and its 95 % Wilson interval (NaN, NaN, NaN for n = 0)."""
    lo, hi = wilson_interval(successes, n)
    return (successes / n if n else math.nan, lo, hi)


def quantile(xs: list[float], q: float) -> float:
    """The q-quartile (q in 0.25, 0.5, 0.75) of ``xs``, inclusive method; NaN for none."""
    if not xs:
        return math.nan
    return statistics.quantiles(xs, n=4, method="inclusive")[int(q * 4) - 1] if len(xs) > 1 else xs[0]


def mean(xs) -> float:
    """Mean of the values that are not missing; NaN when none is left."""
    xs = [x for x in xs if not is_missing(x)]
    return sum(xs) / len(xs) if xs else math.nan
