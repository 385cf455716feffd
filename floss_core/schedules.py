"""When to floss: the schedules as data plus the small decisions the training loop asks them.

``pre`` and ``inter`` are the paper's (Engelken 2023: 500 flossing steps before training, 500 more at
training steps 100 and 200); ``adaptive`` (floss only while the measured exponents are far from
zero) and ``joint`` (the flossing loss added to the task loss) go beyond it.

The loop knows no schedule by name; it asks each member's schedule: ``pre_steps`` (flossing steps
before training), ``inter_steps`` (before training step t), ``adaptive_floss_steps`` (after the
measurement at step t, given the exponents it found) and ``joint_at`` (add the flossing term to step
t's loss?). ``planned_floss_steps`` and ``adaptive_budget`` count ahead for progress and estimates.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

NAMES = ("none", "pre", "inter", "pre+inter", "adaptive", "joint")
# how reports name them in a sentence ("pre-flossing solved 9 of 9 seeds")
LABELS = {"none": "no flossing", "pre": "pre-flossing", "inter": "intermittent flossing",
          "pre+inter": "pre- and intermittent flossing", "adaptive": "adaptive flossing",
          "joint": "joint flossing"}


@dataclass(frozen=True)
class Schedule:
    name: str = "none"                      # none | pre | inter | pre+inter | adaptive | joint
    pre_steps: int = 500                    # pre, pre+inter: flossing steps before training
    inter_steps: int = 500                  # inter, pre+inter: flossing steps per intermittent phase
    inter_at: tuple[int, ...] = (100, 200)  # inter, pre+inter: training steps before which a phase runs
    every: int = 100                        # adaptive: measure every M steps; joint: add the term every M steps
    threshold: float = 0.1                  # adaptive: floss while max |λ_i| of the top exponents exceeds it
    #                                         (0.1 / every 100 / 100 steps: the best of the variants measured
    #                                         on the paper's task, bench/schedule_study.py, README)
    adaptive_k: int = 8                     # adaptive: exponents in the cheap measurement
    adaptive_steps: int = 100               # adaptive: flossing steps per triggered phase
    weight: float = 1.0                     # joint: loss = task + weight * flossing_loss


def validate_schedule(s: Schedule, *, eval_every: int | None = None, k: int | None = None) -> None:
    """ValueError (one line) for a bad schedule; with the comparison's ``eval_every`` and flossing ``k``
    also what the schedule needs of them (adaptive: it measures at evaluations, at most k exponents)."""
    if s.name not in NAMES:
        raise ValueError(f"unknown schedule {s.name!r}; choose one of {', '.join(NAMES)}")
    for field in ("pre_steps", "inter_steps", "adaptive_steps"):
        if getattr(s, field) < 0:
            raise ValueError(f"{field} must be >= 0, got {getattr(s, field)}")
    if s.every < 1:
        raise ValueError(f"every must be >= 1, got {s.every}")
    if any(t < 0 for t in s.inter_at):
        raise ValueError(f"inter_at steps must be >= 0, got {list(s.inter_at)}")
    if s.adaptive_k < 1:
        raise ValueError(f"adaptive_k must be >= 1, got {s.adaptive_k}")
    if not s.threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {s.threshold}")
    if not s.weight >= 0:
        raise ValueError(f"weight must be >= 0, got {s.weight}")
    if s.name == "adaptive" and eval_every is not None and s.every % eval_every:
        raise ValueError(f"adaptive every ({s.every}) must be a multiple of eval_every ({eval_every})")
    if s.name == "adaptive" and k is not None and s.adaptive_k > k:
        raise ValueError(f"adaptive_k must be in 1..{k} (k), got {s.adaptive_k}")


def pre_steps(s: Schedule) -> int:
    """Flossing steps before the first training step."""
    return s.pre_steps if s.name in ("pre", "pre+inter") else 0


def inter_steps(s: Schedule, step: int) -> int:
    """Flossing steps to run just before training step ``step``."""
    return s.inter_steps if s.name in ("inter", "pre+inter") and step in s.inter_at else 0


def measures_at(s: Schedule, step: int) -> bool:
    """Adaptive: is the cheap exponent measurement due before this training step?"""
    return s.name == "adaptive" and step % s.every == 0


def adaptive_steps(s: Schedule, max_abs_lambda: float) -> int:
    """Adaptive: flossing steps to run given the measured max |λ_i| (0 when close enough to zero)."""
    return s.adaptive_steps if max_abs_lambda > s.threshold else 0


def adaptive_floss_steps(s: Schedule, step: int, exponents) -> int:
    """Flossing steps to run after the cheap measurement before training step ``step``, given the
    member's measured top exponents there (a sequence, largest first; its first ``adaptive_k`` count):
    ``adaptive_steps`` when the measurement is due and their max |λ_i| exceeds the threshold, else 0
    (also when one of them is NaN: no measurement is not far from zero)."""
    if not measures_at(s, step):
        return 0
    top = [abs(float(x)) for x in exponents[: s.adaptive_k]]
    return 0 if any(math.isnan(x) for x in top) else adaptive_steps(s, max(top))


def adaptive_budget(s: Schedule, train_steps: int) -> int:
    """The most flossing steps the adaptive phases of ``train_steps`` training steps can run (0 for
    the other schedules)."""
    return s.adaptive_steps * len(range(0, train_steps, s.every)) if s.name == "adaptive" else 0


def joint_at(s: Schedule, step: int) -> bool:
    """Joint: is the flossing term added to this training step's loss?"""
    return s.name == "joint" and step % s.every == 0


def planned_floss_steps(s: Schedule, train_steps: int) -> int:
    """Flossing steps known in advance (for progress and cost estimates; adaptive counts its maximum)."""
    return (pre_steps(s) + sum(inter_steps(s, t) for t in set(s.inter_at) if t < train_steps)
            + adaptive_budget(s, train_steps))
