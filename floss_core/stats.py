"""Statistics shared by the summaries, the dashboard's views and the report (no torch, no pandas).

Missing values (None, pandas' NA, NaN) are one idea here: ``is_missing`` decides, and the averages
and quantiles below leave such values out. Success counts are compared with Fisher's exact test
(``fisher_exact``), at the significance level ``ALPHA`` unless a caller says otherwise.
"""
from __future__ import annotations

import math
import statistics

Z95 = 1.959964  # two-sided 95 % normal quantile
ALPHA = 0.05    # the significance level behind every "difference" claim


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


def fisher_exact(x: int, n1: int, y: int, n2: int) -> float:
    """Two-sided Fisher's exact test of x/n1 vs y/n2 successes: the probability, given the margins,
    of a table at most as likely as the one observed."""
    k, n = x + y, n1 + n2
    # integer weights (hypergeometric numerators): exact, so equally likely tables compare equal
    w = [math.comb(n1, a) * math.comb(n2, k - a) for a in range(max(0, k - n2), min(n1, k) + 1)]
    observed = math.comb(n1, x) * math.comb(n2, y)
    return sum(v for v in w if v <= observed) / math.comb(n, k)


def min_attainable_p(n1: int, n2: int) -> float:
    """The smallest two-sided Fisher p any outcome of n1 vs n2 runs can give (all vs none)."""
    return min(fisher_exact(n1, n1, 0, n2), fisher_exact(0, n1, n2, n2))


def seeds_needed(alpha: float = ALPHA) -> int:
    """Seeds per schedule before an all-vs-none split can reach p < alpha."""
    n = 1
    while min_attainable_p(n, n) >= alpha:
        n += 1
    return n
