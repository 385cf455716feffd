"""Statistics shared by the summaries, the dashboard's views and the report (no torch, no pandas).

Missing values (None, pandas' NA, NaN) are one idea here: ``is_missing`` decides, and the averages
and quantiles below leave such values out. Success counts are compared with Fisher's exact test
(``fisher_exact``), at the significance level ``ALPHA`` unless a caller says otherwise. Times to
solution (the step a run solved at, censored where it never did) are estimated and compared with
scipy's survival analysis (``solved_curve``, ``logrank_p``, ``sign_test``, ``time_to_solution``);
scipy loads when one of those is first called, so importing this module stays cheap.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

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


# ------------------------------------------------------------------------------ time to solution
# A run's time to solution is the training step of the first evaluation at which it reached the success
# threshold. A run that never did is right-censored: at its divergence step when it diverged, else at its
# budget (its last training step). The estimator (Kaplan–Meier), its confidence band and the tests
# (log-rank; the sign test of the paired seeds) are scipy's, loaded on first use and not with this module.

@dataclass(frozen=True)
class SolveCurve:
    """The Kaplan–Meier estimate of the fraction of runs solved by each step, F(t) = 1 − S(t).

    ``step``: each distinct step at which a run solved or was censored, ascending; ``solved``: F at that
    step; ``lo``, ``hi``: its pointwise confidence band (Greenwood's variance on the log-log scale;
    where S is 1 the band is the estimate, where S reaches 0 its upper edge stays); ``at_risk``: runs not yet solved or censored just
    before the step; ``events`` / ``censored``: runs that solved / were censored at it. ``median``: the
    first step at which half the runs had solved (inf: not within the budget); ``median_lo`` /
    ``median_hi``: its confidence interval, the first steps at which the band's upper / lower edge
    reaches one half (Brookmeyer and Crowley; inf: not reached)."""
    n: int
    step: list
    solved: list
    lo: list
    hi: list
    at_risk: list
    events: list
    censored: list
    median: float
    median_lo: float
    median_hi: float


def solve_time(success, convergence_step, status, diverged_step, budget) -> tuple[float, bool]:
    """(step, solved) of one run: its convergence step when it succeeded; else censored at its divergence
    step when it diverged, or at ``budget`` (its last training step)."""
    if success and not is_missing(convergence_step):
        return float(convergence_step), True
    if status == "diverged" and not is_missing(diverged_step):
        return float(diverged_step), False
    return float(budget), False


def solve_groups(records) -> dict:
    """Every run's (step, solved), as ``{(delay, schedule): {seed: (step, solved)}}``.

    ``records``: run records (``train.train``'s, or ``store.run_records`` of stored runs); a run's delay is
    ``config["task"]["delay"]`` and its budget its last training step, ``config["train"]["steps"] - 1``.
    Where a record does not say its steps, the budget is the latest step any of the runs solved or
    diverged at: a run censored at or after the last solve weighs the same in every estimate and test
    here wherever it lies, so only the curve's right end can differ from the true budget's."""
    rows = []
    for r in records:
        steps = (r["config"].get("train") or {}).get("steps")
        rows.append((r["config"]["task"]["delay"], r["schedule"], r["seed"], r,
                     math.nan if is_missing(steps) else float(steps) - 1))
    known = [float(r[k]) for *_, r, _ in rows for k in ("convergence_step", "diverged_step")
             if not is_missing(r.get(k))] + [b for *_, b in rows if not is_missing(b)]
    fallback = max(known, default=0.0)
    groups: dict = {}
    for delay, schedule, seed, r, budget in rows:
        groups.setdefault((delay, schedule), {})[seed] = solve_time(
            r["success"], r.get("convergence_step"), r["status"], r.get("diverged_step"),
            fallback if is_missing(budget) else budget)
    return groups


def _censored(times):
    """``[(step, solved), ...]`` as scipy's CensoredData (right-censored where not solved)."""
    from scipy.stats import CensoredData

    return CensoredData(uncensored=[t for t, s in times if s], right=[t for t, s in times if not s])


def _first_at_most_half(steps, survival) -> float:
    """The first step at which a survival value is at most one half (to rounding); inf if none is."""
    return next((float(t) for t, s in zip(steps, survival) if s <= 0.5 + 1e-12), math.inf)


def solved_curve(times, confidence: float = 0.95) -> SolveCurve:
    """The Kaplan–Meier curve of the fraction solved of ``times``, ``[(step, solved), ...]``
    (``scipy.stats.ecdf`` on right-censored data), its band and its median with a confidence interval."""
    import warnings

    import numpy as np
    from scipy.stats import ecdf

    times = [(float(t), bool(s)) for t, s in times]
    if not times:
        return SolveCurve(0, [], [], [], [], [], [], [], math.nan, math.nan, math.nan)
    sf = ecdf(_censored(times)).sf
    steps, surv = sf.quantiles, sf.probabilities
    with warnings.catch_warnings(), np.errstate(all="ignore"):  # log-log at S = 0 or 1: NaN, handled below
        warnings.simplefilter("ignore", RuntimeWarning)
        band = sf.confidence_interval(confidence, method="log-log")
    # S = 1 (nothing solved yet): the band is the estimate. S = 0 (every run left solved): the lower edge is
    # 0 and the upper edge stays where it was, so the last solve alone never closes the median's interval
    s_lo = np.where(np.isnan(band.low.probabilities), surv, band.low.probabilities)
    s_hi, last = [], 1.0
    for x, s in zip(band.high.probabilities, surv):
        last = float(x) if not math.isnan(x) else (1.0 if s >= 1 else last)
        s_hi.append(last)
    steps = [float(x) for x in steps]
    at_risk = [sum(t >= x for t, _ in times) for x in steps]
    events = [sum(t == x and s for t, s in times) for x in steps]
    censored = [sum(t == x and not s for t, s in times) for x in steps]
    return SolveCurve(len(times), steps, [float(1 - s) for s in surv],
                      [float(1 - s) for s in s_hi], [float(1 - s) for s in s_lo], at_risk, events, censored,
                      _first_at_most_half(steps, surv), _first_at_most_half(steps, s_lo),
                      _first_at_most_half(steps, s_hi))


def logrank_p(times_a, times_b) -> float:
    """Two-sided log-rank test (``scipy.stats.logrank``) that two groups' times to solution,
    ``[(step, solved), ...]`` each, come from one distribution: its p-value; NaN when a group is empty
    or no run of either solved (nothing to compare)."""
    import warnings

    from scipy.stats import logrank

    if not times_a or not times_b or not any(s for _, s in [*times_a, *times_b]):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(logrank(_censored(times_a), _censored(times_b)).pvalue)


def solved_first(a: tuple[float, bool], b: tuple[float, bool]) -> int:
    """Of one seed's two runs, ``(step, solved)`` each: 1 when ``a`` solved first, -1 when ``b`` did, 0 for
    a tie (same step, or neither solved). An unsolved run never solves within its budget, so a solved
    run was first against it wherever the other was censored."""
    (ta, sa), (tb, sb) = a, b
    if sa and (not sb or ta < tb):
        return 1
    if sb and (not sa or tb < ta):
        return -1
    return 0


def sign_test(wins: int, losses: int) -> float:
    """Two-sided sign test of paired outcomes, ties left out: the exact binomial p
    (``scipy.stats.binomtest``) of ``wins`` of ``wins + losses`` under p = 1/2; NaN with no untied pair."""
    from scipy.stats import binomtest

    return float(binomtest(wins, wins + losses, 0.5).pvalue) if wins + losses else math.nan


def time_to_solution(groups: dict, baseline: str = "none", confidence: float = 0.95) -> dict:
    """Per (delay, schedule) of ``solve_groups``' groups: the time-to-solution figures, as a dict of
    n, median_solve_step, median_solve_lo, median_solve_hi (the Kaplan–Meier median and its interval; inf:
    not reached within the budget), logrank_p (vs ``baseline`` at the same delay), paired_seeds (seeds
    run under both), solved_first / baseline_first (seeds this schedule / the baseline solved first) and
    paired_p (sign test of those). The comparison figures are NaN (counts 0) for the baseline itself and
    where the delay has no baseline."""
    out = {}
    for (delay, schedule), by_seed in groups.items():
        curve = solved_curve(list(by_seed.values()), confidence)
        row = {"n": curve.n, "median_solve_step": curve.median, "median_solve_lo": curve.median_lo,
               "median_solve_hi": curve.median_hi, "logrank_p": math.nan, "paired_seeds": 0, "solved_first": 0,
               "baseline_first": 0, "paired_p": math.nan}
        base = groups.get((delay, baseline))
        if schedule != baseline and base is not None:
            firsts = [solved_first(by_seed[s], base[s]) for s in sorted(set(by_seed) & set(base))]
            wins, losses = firsts.count(1), firsts.count(-1)
            row.update(logrank_p=logrank_p(list(by_seed.values()), list(base.values())), paired_seeds=len(firsts),
                       solved_first=wins, baseline_first=losses, paired_p=sign_test(wins, losses))
        out[(delay, schedule)] = row
    return out
