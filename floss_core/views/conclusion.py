"""The home page's one-sentence answer: what an experiment shows, drawn from its success counts with the
same rule as the report's verdict (a difference only at Fisher's exact p < ALPHA, two-sided), with n and
the 95% Wilson interval beside every rate. Pure pandas over ``frames.success_vs_delay``; no torch."""
from __future__ import annotations

import pandas as pd

from ..fmt import p_value
from ..schedules import LABELS
from ..stats import ALPHA, fisher_exact, min_attainable_p


def rate_text(successes: int, n: int, lo: float, hi: float) -> str:
    """'11 of 16 seeds (69%, 95% interval 44–86%)'."""
    return f"{successes} of {n} seeds ({successes / n:.0%}, 95% interval {lo:.0%}–{hi:.0%})"


def conclusion(success: pd.DataFrame, *, alpha: float = ALPHA) -> str | None:
    """One sentence on the longest delay that has a no-flossing baseline: each flossing schedule's solved seeds
    against no flossing's, with n, the interval and Fisher's p, and whether that is evidence. None when the
    experiment has no 'none' baseline or no finished runs."""
    if success.empty or not (success["schedule"] == "none").any():
        return None
    delay = int(success.loc[success["schedule"] == "none", "delay"].max())
    at = success[success["delay"] == delay].set_index("schedule")
    base = at.loc["none"]
    parts, evidence, too_few = [], [], False
    for name, r in at.drop(index="none").iterrows():
        p = fisher_exact(int(r.successes), int(r.n), int(base.successes), int(base.n))
        parts.append(f"{LABELS.get(name, name)} solved {rate_text(int(r.successes), int(r.n), r.lo, r.hi)}")
        if p < alpha:
            evidence.append(f"{LABELS.get(name, name)} solved {'more' if r.rate > base.rate else 'fewer'} seeds, a "
                            f"difference unlikely to be chance (Fisher's exact test, two-sided p = {p_value(p)})")
        else:
            evidence.append(f"no evidence that {LABELS.get(name, name)} changes the success rate (Fisher's exact "
                            f"test, two-sided p = {p_value(p)})")
            too_few = too_few or min_attainable_p(int(r.n), int(base.n)) >= alpha
    if not parts:
        return None
    against = rate_text(int(base.successes), int(base.n), base.lo, base.hi)
    head = f"At delay {delay}, " + "; ".join(parts) + f", against {against} without flossing: " + "; ".join(evidence) + "."
    if too_few:
        head += f" Too few seeds for any split to reach p < {alpha}."
    return head
