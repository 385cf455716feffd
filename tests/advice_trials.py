"""Synthetic adviser trials (the dicts floss_core.advice documents) for the views, page and report tests:
no training, numbers chosen so the front, the recommendation and the first-rung trial are known."""
import math

from floss_core.stats import wilson_interval

SEEDS = list(range(8))
TARGET = 0.75


def trial(number: int, label: str, name: str, successes: int, compute: float, *, n: int = 8,
          convergence: float = math.nan, complete: bool = True, floss_share: float = 0.3) -> dict:
    lo, hi = wilson_interval(successes, n)
    train = compute * (1 - floss_share) if name != "none" else compute
    return {"trial": number, "label": label, "schedule": {"name": name}, "floss": {},
            "seeds": SEEDS[:n], "complete": complete, "n": n, "successes": successes,
            "success_rate": successes / n, "ci_low": lo, "ci_high": hi, "compute_seconds": compute,
            "train_seconds": train, "floss_seconds": compute - train, "median_convergence": convergence,
            "experiment_id": None}


def trials() -> list[dict]:
    """No flossing solves 2 of 8 at 1.0 s; pre 50 steps reaches the target (6 of 8) at 1.4 s, pre 100 steps 7 of 8
    at 1.9 s (the runner-up); inter (5 of 8 at 2.5 s) is dominated; adaptive was stopped after the first rung
    (0 of 2 at 1.2 s: cheaper than the choice, never on the front); joint solves 8 of 8 at 3.25 s."""
    return [trial(0, "no flossing", "none", 2, 1.0, convergence=240.0),
            trial(1, "pre 50 steps · k 4 · window 20", "pre", 6, 1.4, convergence=180.0),
            trial(2, "pre 100 steps · k 4 · window 20", "pre", 7, 1.9, convergence=150.0),
            trial(3, "inter 10 steps every 20 · k 4", "inter", 5, 2.5, convergence=200.0),
            trial(4, "adaptive k 4 · 5 steps", "adaptive", 0, 1.2, n=2, complete=False),
            trial(5, "joint weight 0.1 · k 4", "joint", 8, 3.25, convergence=120.0)]
