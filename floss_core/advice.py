"""The schedule adviser's verdict: the Pareto front over evaluated trials (success rate up, time to solution
down, compute down), and the recommendation a manager reads (the cheapest schedule on the front that reaches
the target success rate, its time to solution, its runner-up, its extra compute against no flossing, or the
statement that nothing beats no flossing).

Time to solution is a trial's median convergence step over its solved runs (training steps until the
success criterion); a trial that solved nothing has none, the worst value. A trial that costs more but solves
sooner than every cheaper one is on the front: a user who pays for wall time to a solution may want it. The
recommendation still picks by compute among the front's trials that reach the target (the cheapest trial
that reaches it is always on the front), and says how soon it solves.

Pure functions of plain trial dicts (no torch, no store): the search that produces the trials
(``advise``), the store that keeps them, the CLI, the page and the report all read these, so the numbers a
recommendation quotes are the stored trials' numbers.

A *trial* (one candidate schedule evaluated on the same seeds as every other) is a dict with:

* ``trial`` (int): its number in the search; the no-flossing baseline is a trial like the others;
* ``label`` (str): what it is in words (``"pre 120 steps · k 16 · window 40"``; ``"no flossing"``);
* ``schedule`` (dict): the ``schedules.Schedule`` fields (``name`` one of ``schedules.NAMES``);
  ``floss`` (dict): the ``FlossConfig`` fields it overrides (k, seq_len, qr_every; may be empty);
* ``seeds`` (list of int): the seeds it ran (a prefix of the search's seeds: successive halving stops a
  hopeless candidate after the first rung); ``complete`` (bool): it ran every seed of the search;
* ``n``, ``successes`` (int); ``success_rate`` (float); ``ci_low``, ``ci_high``: its 95 % Wilson interval;
* ``compute_seconds`` (float): mean training + flossing seconds per run (diagnostics excluded, as the
  comparison's "train+floss s/run"); ``train_seconds``, ``floss_seconds`` the two parts;
* ``median_convergence`` (float, NaN when nothing solved): median convergence step of the solved runs,
  the time to solution in training steps;
* ``experiment_id`` (int or None): the store's experiment that holds its runs.
"""
from __future__ import annotations

import math

from .fmt import duration
from .stats import ALPHA, fisher_exact, is_missing

NONE = "none"   # the schedule that does not floss: the baseline every recommendation is measured against


def is_baseline(trial: dict) -> bool:
    return trial["schedule"]["name"] == NONE


def time_to_solution(trial: dict) -> float:
    """The trial's median convergence step over its solved runs; infinity where it solved nothing (or the
    number is missing), so that any trial that solves something is sooner."""
    v = trial.get("median_convergence")
    return math.inf if is_missing(v) else float(v)


def dominates(a: dict, b: dict, *, time: bool = True) -> bool:
    """``a`` is at least as good as ``b`` in success rate (higher), time to solution (lower; ``time=False``
    leaves it out) and compute (lower), and better in one of them."""
    ka = (-a["success_rate"], time_to_solution(a) if time else 0.0, a["compute_seconds"])
    kb = (-b["success_rate"], time_to_solution(b) if time else 0.0, b["compute_seconds"])
    return all(x <= y for x, y in zip(ka, kb)) and any(x < y for x, y in zip(ka, kb))


def pareto_front(trials: list[dict], *, time: bool = True) -> list[dict]:
    """The complete trials no other complete trial dominates, cheapest first (ties: the lower trial
    number). Trials stopped after the first rung are not on it: they ran fewer seeds. ``time=False``: the
    front of success against compute alone (the staircase the chart draws), a subset of the full front."""
    done = [t for t in trials if t["complete"] and not is_missing(t["success_rate"])]
    front = [t for t in done if not any(dominates(o, t, time=time) for o in done if o is not t)]
    return sorted(front, key=lambda t: (t["compute_seconds"], t["trial"]))


def recommend(trials: list[dict], target: float, *, alpha: float = ALPHA) -> dict:
    """The recommendation over the complete trials for a target success rate in (0, 1].

    Returns a dict:
      ``status``: ``"recommended"`` (a flossing schedule reaches the target and no flossing does not),
      ``"no_flossing"`` (no flossing itself reaches the target: nothing beats it), ``"none_reaches"`` (no
      trial reaches the target: the best success rate found is named instead);
      ``choice``: the cheapest complete trial on the front with success rate ≥ target (``"no_flossing"``:
      the baseline; ``"none_reaches"``: the front's most successful trial); ``runner_up``: the next-cheapest
      complete trial that reaches the target (None where there is none);
      ``baseline``: the no-flossing trial (None when the search has none);
      ``extra_compute_seconds``, ``compute_ratio``: the choice's compute less / over the baseline's;
      ``p_vs_baseline``: Fisher's exact two-sided p of the choice's successes against the baseline's;
      ``target``, ``front`` (the Pareto front, cheapest first) and ``statement``: the verdict in words.
    """
    if not 0 < target <= 1:
        raise ValueError(f"target must be in (0, 1], got {target}")
    front = pareto_front(trials)
    complete = sorted((t for t in trials if t["complete"]), key=lambda t: (t["compute_seconds"], t["trial"]))
    base = next((t for t in complete if is_baseline(t)), None)
    reaching = [t for t in complete if t["success_rate"] >= target]
    on_front = [t for t in front if t["success_rate"] >= target]
    out = {"target": target, "front": front, "baseline": base, "runner_up": None, "choice": None}
    if base is not None and base["success_rate"] >= target:
        out.update(status="no_flossing", choice=base,
                   runner_up=next((t for t in reaching if t is not base), None))
    elif on_front:
        choice = on_front[0]
        out.update(status="recommended", choice=choice,
                   runner_up=next((t for t in reaching if t is not choice), None))
    elif front:
        out.update(status="none_reaches", choice=max(front, key=lambda t: (t["success_rate"], -t["compute_seconds"])))
    else:
        out.update(status="none_reaches")
    choice = out["choice"]
    if choice is not None and base is not None:
        out["extra_compute_seconds"] = choice["compute_seconds"] - base["compute_seconds"]
        out["compute_ratio"] = choice["compute_seconds"] / base["compute_seconds"] if base["compute_seconds"] > 0 \
            else math.nan
        out["p_vs_baseline"] = fisher_exact(choice["successes"], choice["n"], base["successes"], base["n"])
    else:
        out["extra_compute_seconds"] = out["compute_ratio"] = out["p_vs_baseline"] = math.nan
    out["statement"] = statement(out, alpha=alpha)
    return out


def _rate(t: dict) -> str:
    return (f"{t['successes']} of {t['n']} seeds ({100 * t['success_rate']:.0f} %, 95 % interval "
            f"{100 * t['ci_low']:.0f}–{100 * t['ci_high']:.0f} %)")


def _soon(t: dict) -> str:
    """', solving in a median 300 training steps' (its time to solution), or '' where it solved nothing."""
    steps = time_to_solution(t)
    return "" if math.isinf(steps) else f", solving in a median {steps:.0f} training steps"


def statement(rec: dict, *, alpha: float = ALPHA) -> str:
    """The recommendation in words (what the CLI prints and the report's verdict says)."""
    target, choice, base, runner = rec["target"], rec["choice"], rec["baseline"], rec["runner_up"]
    want = f"the target of {100 * target:.0f} % success"
    if rec["status"] == "no_flossing":
        return (f"No flossing already reaches {want}: it solved {_rate(choice)} at {duration(choice['compute_seconds'])} "
                f"of compute per run{_soon(choice)}. Nothing beats it; flossing would only add cost here.")
    if rec["status"] == "none_reaches":
        if choice is None:
            return f"No trial finished on every seed, so nothing can be recommended for {want}."
        best = f"The best found was {choice['label']}: {_rate(choice)}"
        if base is not None and choice is not base:
            best += f", against no flossing's {_rate(base)}"
        return f"No schedule tried reaches {want}. {best}. Try more trials, a longer budget or a lower target."
    text = (f"Recommended: {choice['label']}. It solved {_rate(choice)} at {duration(choice['compute_seconds'])} of "
            f"compute per run{_soon(choice)}")
    if base is not None:
        extra = rec["extra_compute_seconds"]
        text += (f"; {'+' if extra >= 0 else '−'}{duration(abs(extra))} ({rec['compute_ratio']:.2f}×) against no "
                 f"flossing, which solved {_rate(base)}{_soon(base)}")
        p = rec["p_vs_baseline"]
        text += (f"; the difference in success is significant (Fisher p = {p:.3g})" if p < alpha else
                 f"; the difference in success is not significant at these seeds (Fisher p = {p:.2g})")
    text += "."
    if runner is not None:
        text += (f" Runner-up: {runner['label']}, {_rate(runner)} at {duration(runner['compute_seconds'])} per run"
                 f"{_soon(runner)}.")
    return text


def trial_numbers(records: list[dict], *, planned: int | None = None) -> dict:
    """A trial's numbers from its stored run records (``runner.stored_records`` of its experiment(s)): ``n``
    (``planned`` runs when given: a planned run with no record, e.g. its job failed, counts as a failure),
    ``successes`` (a diverged run is a failure), ``success_rate`` with its 95 % Wilson interval ``ci_low`` /
    ``ci_high``, ``compute_seconds`` (mean training + flossing seconds per run, over the runs that recorded
    both, as the comparison's "train+floss s/run"), ``train_seconds``, ``floss_seconds`` (their means) and
    ``median_convergence`` (median convergence step of the solved runs; NaN when none solved)."""
    from .stats import mean, success_rate

    n = len(records) if planned is None else int(planned)
    wins = sum(bool(r.get("success")) for r in records)
    rate, lo, hi = success_rate(wins, n)

    def seconds(r, part):
        v = r.get(f"{part}_seconds")
        return math.nan if is_missing(v) else float(v)

    pairs = [(seconds(r, "train"), seconds(r, "floss")) for r in records]
    both = [t + f for t, f in pairs if not (math.isnan(t) or math.isnan(f))]
    solved = sorted(float(r["convergence_step"]) for r in records
                    if r.get("success") and not is_missing(r.get("convergence_step")))
    return {"n": n, "successes": wins, "success_rate": rate, "ci_low": lo, "ci_high": hi,
            "compute_seconds": sum(both) / len(both) if both else math.nan,
            "train_seconds": mean(t for t, _ in pairs), "floss_seconds": mean(f for _, f in pairs),
            "median_convergence": median(solved)}


def median(xs: list[float]) -> float:
    """The median of sorted numbers; NaN for none."""
    if not xs:
        return math.nan
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2
