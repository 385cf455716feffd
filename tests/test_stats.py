"""floss_core/stats.py and fmt.py: the statistics and number formats the summaries, views, report and CLI share."""
import math

import pandas as pd
import pytest

from floss_core import fmt, stats


@pytest.mark.parametrize("value, missing", [(None, True), (pd.NA, True), (math.nan, True), (float("nan"), True),
                                            (pd.NaT, True), (0, False), (0.0, False), (math.inf, False),
                                            ("nan", False), (False, False)])
def test_is_missing(value, missing):
    assert stats.is_missing(value) is missing


def test_mean_and_quantile_skip_missing_values():
    assert stats.mean([1.0, None, 3.0, math.nan, pd.NA]) == 2.0
    assert math.isnan(stats.mean([None, math.nan]))
    assert stats.quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.25) == 2.0 and stats.quantile([7.0], 0.75) == 7.0
    assert math.isnan(stats.quantile([], 0.5))


def test_success_rate_is_the_rate_and_its_wilson_interval():
    assert stats.success_rate(5, 10) == (0.5, *stats.wilson_interval(5, 10))
    assert stats.wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert all(math.isnan(x) for x in stats.success_rate(0, 0))


def test_finite_or_nan():
    assert stats.finite_or_nan(3) == 3.0 and math.isnan(stats.finite_or_nan(None))


@pytest.mark.parametrize("seconds, text", [(0.534, "0.53 s"), (42, "42 s"), (600, "10.0 min"), (7200, "2.0 h"),
                                           (math.inf, "∞"), (math.nan, "-"), (None, "-")])
def test_duration(seconds, text):
    assert fmt.duration(seconds) == text


# ------------------------------------------------------------------------------ time to solution
# seven seeds: solved at steps 10, 20, 20, 40; one diverged at 30; two never solved in a 51-step budget
SEVEN = [(10, True), (20, True), (20, True), (40, True), (30, False), (50, False), (50, False)]


def _loglog_band(s: float, greenwood: float, z: float = stats.Z95) -> tuple[float, float]:
    """S's 95% band on the log-log scale, by hand: exp(-exp(log(-log S) ± z·se)), se = √greenwood / |log S|."""
    se = math.sqrt(greenwood) / abs(math.log(s))
    return s ** math.exp(z * se), s ** math.exp(-z * se)


def test_kaplan_meier_of_a_hand_built_censored_example():
    c = stats.solved_curve(SEVEN)
    # S(t) = Π (1 − d_i / n_i) over the solve steps: 7 at risk at 10 (1 solves), 6 at 20 (2 solve), the
    # diverged seed leaves at 30, 3 at risk at 40 (1 solves), the last two are censored at 50
    s10, s20, s40 = 6 / 7, 6 / 7 * 4 / 6, 6 / 7 * 4 / 6 * 2 / 3
    assert c.n == 7 and c.step == [10, 20, 30, 40, 50]
    assert c.solved == pytest.approx([1 - s10, 1 - s20, 1 - s20, 1 - s40, 1 - s40])
    assert c.at_risk == [7, 6, 4, 3, 2] and c.events == [1, 2, 0, 1, 0] and c.censored == [0, 0, 1, 0, 2]
    # Greenwood: Var(log S) sums d / (n (n − d)) over the solves so far
    g10, g20, g40 = 1 / (7 * 6), 1 / (7 * 6) + 2 / (6 * 4), 1 / (7 * 6) + 2 / (6 * 4) + 1 / (3 * 2)
    bands = [_loglog_band(s, g) for s, g in ((s10, g10), (s20, g20), (s20, g20), (s40, g40), (s40, g40))]
    assert c.lo == pytest.approx([1 - hi for _, hi in bands]) and c.hi == pytest.approx([1 - lo for lo, _ in bands])
    # median: S first ≤ 1/2 at 40 (S(20) = 4/7 > 1/2); its interval: the first steps where the band's edges
    # cross 1/2: S's lower edge at 10 already (0.33), its upper edge never (0.72 at the end)
    assert bands[0][0] < 0.5 < bands[-1][1]
    assert (c.median, c.median_lo, c.median_hi) == (40.0, 10.0, math.inf)


def test_kaplan_meier_without_censoring_is_the_empirical_fraction():
    c = stats.solved_curve([(5, True), (15, True), (25, True), (35, True)])
    assert c.solved == pytest.approx([0.25, 0.5, 0.75, 1.0]) and c.median == 15.0   # S(15) = 1/2 exactly
    none = stats.solved_curve([(29, False)] * 3)
    assert none.solved == [0.0] and none.lo == none.hi == [0.0] and none.median == math.inf
    assert stats.solved_curve([]).n == 0 and math.isnan(stats.solved_curve([]).median)


def test_solve_time_censors_at_the_budget_or_the_divergence():
    assert stats.solve_time(True, 40, "done", None, 99) == (40.0, True)
    assert stats.solve_time(False, None, "done", None, 99) == (99.0, False)
    assert stats.solve_time(False, None, "diverged", 12, 99) == (12.0, False)
    assert stats.solve_time(False, 8, "diverged", 12, 99) == (12.0, False)   # solved, then diverged: no success


def test_solve_groups_reads_records_and_fills_an_unknown_budget():
    def rec(schedule, seed, success, conv=None, steps=100, status="done", div=None):
        return {"schedule": schedule, "seed": seed, "success": success, "convergence_step": conv, "status": status,
                "diverged_step": div, "config": {"task": {"delay": 8}, "train": {"steps": steps} if steps else {}}}

    g = stats.solve_groups([rec("none", 0, True, 30), rec("none", 1, False), rec("pre", 0, False, status="diverged",
                                                                                  div=7)])
    assert g == {(8, "none"): {0: (30.0, True), 1: (99.0, False)}, (8, "pre"): {0: (7.0, False)}}
    g = stats.solve_groups([rec("none", 0, True, 30, steps=None), rec("none", 1, False, steps=None)])
    assert g[(8, "none")][1] == (30.0, False)   # censored at the last solve: the same estimates as at the budget
    filled, true = stats.solved_curve(g[(8, "none")].values()), stats.solved_curve([(30, True), (99, False)])
    assert filled.solved[0] == true.solved[0] == 0.5 and filled.median == true.median == 30.0


def test_logrank_known_answers():
    assert stats.logrank_p(SEVEN, SEVEN) == pytest.approx(1.0)                  # identical groups
    assert math.isnan(stats.logrank_p([(9, False)], [(9, False), (9, False)]))  # nobody solved: nothing to test
    assert math.isnan(stats.logrank_p([], SEVEN))
    # one solve each, by hand: at step 1 both at risk, E_a = 1/2, V = 1/4 (hypergeometric); at step 2 only b
    # is at risk: E_a = 0, V = 0. Z = (O_a − E_a) / √V = (1 − 1/2) / (1/2) = 1, chi² = 1, p = 0.3173
    assert stats.logrank_p([(1, True)], [(2, True)]) == pytest.approx(math.erfc(1 / math.sqrt(2)))
    # two groups of 5, all of a solving before all of b: Z = Σ (O_a − E_a) / √Σ V by hand, one solve per step
    # (E_a = n_a / n, V = E_a (1 − E_a))
    a, b = [(t, True) for t in (1, 2, 3, 4, 5)], [(t, True) for t in (6, 7, 8, 9, 10)]
    o_minus_e, v = 0.0, 0.0
    for t in range(1, 11):   # at each step one solves; a at risk: n_a, total n
        n_a, n = max(0, 5 - (t - 1)) if t <= 5 else 0, 11 - t
        e = n_a / n
        o_minus_e += (t <= 5) - e
        v += e * (1 - e) if n > 1 else 0.0
    assert stats.logrank_p(a, b) == pytest.approx(math.erfc(abs(o_minus_e) / math.sqrt(v) / math.sqrt(2)))


def test_paired_seeds_and_the_sign_test():
    assert stats.solved_first((10, True), (20, True)) == 1 and stats.solved_first((30, True), (20, True)) == -1
    assert stats.solved_first((10, True), (99, False)) == 1 and stats.solved_first((5, False), (50, True)) == -1
    assert stats.solved_first((10, True), (10, True)) == 0 and stats.solved_first((99, False), (7, False)) == 0
    assert stats.sign_test(5, 0) == pytest.approx(2 / 2 ** 5)     # exact binomial, two-sided
    assert stats.sign_test(3, 1) == pytest.approx(10 / 16)        # P(≤1 or ≥3 of 4) = (1 + 4 + 4 + 1) / 16
    assert math.isnan(stats.sign_test(0, 0))


def test_time_to_solution_pairs_each_schedule_with_the_baseline():
    none = {0: (40.0, True), 1: (99.0, False), 2: (99.0, False), 3: (60.0, True)}
    pre = {0: (10.0, True), 1: (30.0, True), 2: (99.0, False), 3: (60.0, True)}
    out = stats.time_to_solution({(20, "none"): none, (20, "pre"): pre, (40, "pre"): pre})
    base, flossed, alone = out[(20, "none")], out[(20, "pre")], out[(40, "pre")]
    assert base["median_solve_step"] == 60.0 and flossed["median_solve_step"] == 30.0
    assert math.isnan(base["logrank_p"]) and base["paired_seeds"] == 0
    assert flossed["paired_seeds"] == 4 and (flossed["solved_first"], flossed["baseline_first"]) == (2, 0)
    assert flossed["paired_p"] == pytest.approx(0.5)
    assert flossed["logrank_p"] == pytest.approx(stats.logrank_p(list(pre.values()), list(none.values())))
    assert math.isnan(alone["logrank_p"]) and alone["paired_seeds"] == 0      # no baseline at delay 40


def test_importing_stats_does_not_load_scipy():
    import subprocess
    import sys

    code = "import sys, floss_core.stats, floss_core.views; print('scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=__import__("pathlib").Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False", out.stderr
