"""The verdict: sentences generated from the summary that claim only what the numbers support.

Success counts are compared with Fisher's exact test (two-sided); anything short of p < ALPHA is
reported as "no evidence of a difference", with the 95% Wilson intervals and, where the seeds are too
few for any split to reach p < ALPHA, a sentence saying so. Convergence steps and compute are
reported as numbers, never as "faster" or "better". Compute is flossing's cost against task training
(never against evaluation or the lab's diagnostics, which are reported apart as measurement overhead).
"""
from __future__ import annotations

import math

from ..fmt import p_value
from ..schedules import LABELS
from ..stats import ALPHA, fisher_exact, min_attainable_p, seeds_needed
from ..views.frames import cost_sentence, floss_cost_text


def _label(name: str) -> str:
    return LABELS.get(name, name)


def percent(x: float) -> str:
    """0.25 -> '25%'."""
    return f"{100 * x:.0f}%"


def verdict(summary: list[dict], *, alpha: float = ALPHA) -> list[str]:
    """The verdict as sentences: a headline, then one sentence per (delay, flossed schedule)
    comparing it with 'none' at the same delay. ``summary``: rows of ``experiment.summarize``.

    Claims a difference in success only at Fisher p < alpha; reports medians and compute ratios as
    numbers; says so when the seeds are too few for any outcome to count as evidence."""
    if not summary:
        return ["No finished runs yet, so there is nothing to conclude."]
    by = {(r["delay"], r["schedule"]): r for r in summary}
    delays = sorted({r["delay"] for r in summary})
    if not any(s == "none" for _, s in by):
        return ["This comparison has no 'none' (no flossing) baseline, so the verdict compares nothing; "
                "the table below lists each schedule on its own."]
    details, found, n_tests, too_few = [], [], 0, False
    for d in delays:
        base = by.get((d, "none"))
        for (dd, s), r in by.items():
            if dd != d or s == "none" or base is None:
                continue
            n_tests += 1
            x, n1, y, n2 = r["successes"], r["n"], base["successes"], base["n"]
            p = fisher_exact(x, n1, y, n2)
            parts = [f"At delay {d}, {_label(s)} solved {x}/{n1} seeds vs {y}/{n2} without flossing"]
            conv = _conv_phrase(r, base)
            if conv:
                parts.append(conv)
            cost = _floss_cost(r)
            if cost:
                parts.append(cost)
            sentence = ", ".join(parts)
            if p < alpha:
                more = "more" if x / n1 > y / n2 else "fewer"
                sentence += (f". It solved {more} seeds than no flossing, a difference unlikely to be chance "
                             f"(Fisher's exact test, two-sided p = {p_value(p)})")
                found.append(f"{_label(s)} solved {more} seeds than no flossing at delay {d} "
                             f"({x}/{n1} vs {y}/{n2}, p = {p_value(p)})")
            else:
                sentence += (f". No evidence of a difference in success rate (p = {p_value(p)}; 95% intervals "
                             f"{percent(r['success_lo'])}–{percent(r['success_hi'])} vs "
                             f"{percent(base['success_lo'])}–{percent(base['success_hi'])})")
                if min_attainable_p(n1, n2) >= alpha:
                    too_few = True
                    sentence += f": with {n1} and {n2} seeds no outcome could reach p < {alpha}"
            if r.get("diverged"):
                sentence += f"; {r['diverged']} of its {n1} runs diverged"
            details.append(sentence + ".")
    if found:
        head = "; ".join(found)
        head = head[0].upper() + head[1:] + "."
    else:
        head = "No flossing schedule differed from no flossing in success rate beyond what chance explains."
        if too_few:
            head += (f" These runs are too few to show a difference: at least {seeds_needed(alpha)} seeds per "
                     "schedule are needed before even an all-vs-none split counts as evidence.")
    if n_tests > 1:
        head += f" ({n_tests} comparisons; p-values are not corrected for multiple testing.)"
    cost = _cost_headline(summary)
    if cost:
        head += " " + cost
    return [head] + details


def set_intro(parts: list[tuple[str, list[int]]], differing: list[str]) -> str:
    """The verdict's first sentence for a set of experiments whose settings differ: ``parts`` are (label, ids)
    of its pooled groups, ``differing`` the settings that separate them (``views.sets.differing_settings``)."""
    n = sum(len(ids) for _, ids in parts)
    what = ", ".join(differing[:-1]) + " and " + differing[-1] if len(differing) > 1 else differing[0]
    text = (f"These {n} experiments differ in {what}, so their runs are not pooled: each "
            f"{'experiment' if n == len(parts) else 'group of experiments with matching settings'} is judged on "
            "its own below, with its own tests, and no statistic mixes them")
    pooled = [label.split(" ")[0] for label, ids in parts if len(ids) > 1]
    if pooled:
        text += f" ({', '.join(pooled)}: pooled, their settings match but for name, delays or seeds)"
    return text + "."




def _conv_phrase(r: dict, base: dict) -> str:
    a, b = r["median_convergence"], base["median_convergence"]
    if not math.isnan(a) and not math.isnan(b):
        return f"median convergence step {a:.0f} vs {b:.0f} (over solved seeds)"
    if not math.isnan(a):
        return f"median convergence step {a:.0f} (over solved seeds; none solved without flossing)"
    if not math.isnan(b):
        return f"median convergence step {b:.0f} without flossing (none solved with it)"
    return ""


def _floss_cost(r: dict) -> str:
    """'flossing +110 % training compute, i.e. 2.1×' (its flossing seconds against its own task-training
    seconds); '' for a summary row without the cost split."""
    if "floss_cost_vs_training" not in r:
        return ""
    ratio = r["floss_cost_vs_training"]
    if ratio is None or math.isnan(ratio):
        return "its flossing's cost against task training not recorded"
    return f"flossing {floss_cost_text(ratio)}"


def _cost_headline(summary: list[dict]) -> str:
    """The cost at the longest delay: each flossing schedule's flossing against task training, and the
    lab's diagnostics apart (``views.frames.cost_sentence``); '' for rows without the cost split."""
    delay = max(r["delay"] for r in summary)
    at = [r for r in summary if r["delay"] == delay]
    if not all("floss_cost_vs_training" in r and "diag_s_per_run" in r for r in at):
        return ""
    flossed = {r["schedule"]: r["floss_cost_vs_training"] for r in at if r["schedule"] != "none"}
    n, wall = sum(r["n"] for r in at), sum(r["wall_seconds"] for r in at)
    diag = sum(r["diag_s_per_run"] * r["n"] for r in at)           # NaN where a schedule did not record it
    share = sum(r["diag_share"] * r["wall_seconds"] for r in at)
    return cost_sentence(delay, flossed, diag / n if n else math.nan, share / wall if wall > 0 else math.nan,
                         name=_label)
