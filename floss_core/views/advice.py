"""The schedule adviser's table and chart: its trials (``floss_core.advice``'s trial dicts) and recommendation
(``advice.recommend``'s dict, or the same dict as the store keeps it, JSON) -> a DataFrame and a plotly
figure, for the Advise page and the advice report alike. Pure pandas / plotly: no torch, no streamlit.

A trial is named by its number (``trial``) wherever the recommendation points at one, so a recommendation read
back from the store (copies of the trial dicts) highlights the same trial as one computed here.

    rec = advice.recommend(trials, target)
    table = trials_table(trials, rec)        # one row per trial, numbers: what the tests compare
    shown = trials_display(table)            # the same rows as text, for a page or a report
    fig = fig_advice(trials, rec)            # success rate (95 % Wilson) vs compute s per run, the front, the target
    fig = fig_time_to_solution(trials, rec)  # median convergence step vs compute s per run, the front ringed
"""
from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from ..advice import is_baseline, pareto_front, recommend
from ..fmt import duration
from ..stats import is_missing
from .figures import _figure, color

MISSING = "—"   # as views.frames: a value that does not exist
FRONT_COLOR = "#111827"
SOONER = "on the front by time to solution"   # the legend entry of full-front trials off the staircase
CHOICE_COLOR = "#16a34a"

# (column of trials_table, header of trials_display), in the order shown
DISPLAY = [("label", "Schedule tried"), ("schedule", "Schedule"), ("seeds_run", "Seeds run"),
           ("success", "Success (95 % interval)"), ("compute_seconds", "Compute per run"),
           ("extra_seconds", "Extra vs no flossing"), ("median_convergence", "Median convergence step"),
           ("on_front", "On the front"), ("first_rung_only", "Stopped after first rung"), ("role", "Verdict"),
           ("note", "Note")]


def trial_number(x) -> int | None:
    """A trial dict's number (or a number itself); None for None (no choice, no runner-up, no baseline)."""
    if x is None:
        return None
    return int(x["trial"]) if isinstance(x, dict) else int(x)


def recommendation(trials: list[dict], target: float, stored: dict | None = None) -> dict:
    """The recommendation to show: ``stored`` (the store's result, as the search wrote it) where it holds one,
    else ``advice.recommend`` over the trials so far."""
    if stored and stored.get("statement") and stored.get("status"):
        return stored
    return recommend(trials, target)


def roles(rec: dict | None) -> dict[int, str]:
    """trial number -> what the verdict makes of it: 'recommended' (or 'best found' where nothing reaches the
    target), 'runner-up', 'no flossing'."""
    out: dict[int, str] = {}
    if not rec:
        return out
    base = trial_number(rec.get("baseline"))
    if base is not None:
        out[base] = "no flossing"
    runner = trial_number(rec.get("runner_up"))
    if runner is not None:
        out[runner] = "runner-up"
    choice = trial_number(rec.get("choice"))
    if choice is not None:
        out[choice] = "recommended" if rec.get("status") in ("recommended", "no_flossing") else "best found"
    return out


def _baseline(trials: list[dict], rec: dict | None) -> dict | None:
    wanted = trial_number((rec or {}).get("baseline"))
    done = [t for t in trials if is_baseline(t) and t["complete"]]
    if wanted is not None:
        done = [t for t in trials if t["trial"] == wanted] or done
    return done[0] if done else None


def failed(t: dict) -> bool:
    """A trial whose job failed or whose candidate was refused (``error``): counted in no front."""
    return bool(t.get("error"))


def first_rung_only(t: dict) -> bool:
    """A trial successive halving stopped after the first rung (fewer seeds than the search's), not a failed one."""
    return not t["complete"] and not failed(t)


def drawable(t: dict) -> bool:
    """A trial with a success rate and a compute to draw (a refused candidate ran nothing)."""
    return not (is_missing(t.get("success_rate")) or is_missing(t.get("compute_seconds")))


def note(t: dict) -> str:
    """Why a trial is not complete, in words: its error, or why it stopped after the first rung; '' otherwise."""
    if failed(t):
        return str(t["error"])
    if not t["complete"]:
        return str(t.get("stopped") or "stopped after the first rung")
    return ""


def trials_table(trials: list[dict], rec: dict | None = None) -> pd.DataFrame:
    """One row per trial, cheapest first (ties: the trial number), the trial dicts' own numbers: trial, label,
    schedule (its name), seeds_run, n, successes, success_rate, ci_low, ci_high, compute_seconds,
    extra_seconds (compute against the no-flossing trial's; NaN without one), median_convergence,
    on_front (on the Pareto front of complete trials: success, time to solution, compute), first_rung_only (stopped by successive halving after
    the first rung: fewer seeds), role (``roles``: '' for the others), note (why a trial stopped or failed:
    ``note``), baseline (the no-flossing trial the extra compute is measured against). A trial that ran
    nothing (a candidate the spec refused) has NaN numbers."""
    front = {t["trial"] for t in pareto_front(trials)}
    base = _baseline(trials, rec)
    role = roles(rec)
    rows = [{"trial": int(t["trial"]), "label": t["label"], "schedule": t["schedule"]["name"],
             "seeds_run": len(t["seeds"]), "n": int(t["n"]), "successes": int(t["successes"]),
             "success_rate": float(t["success_rate"]), "ci_low": float(t["ci_low"]), "ci_high": float(t["ci_high"]),
             "compute_seconds": float(t["compute_seconds"]),
             "extra_seconds": math.nan if base is None else
             float(t["compute_seconds"]) - float(base["compute_seconds"]),
             "median_convergence": math.nan if is_missing(t.get("median_convergence")) else
             float(t["median_convergence"]),
             "on_front": t["trial"] in front, "first_rung_only": first_rung_only(t),
             "role": role.get(int(t["trial"]), ""), "note": note(t),
             "baseline": base is not None and t["trial"] == base["trial"]} for t in trials]
    columns = ["trial", "label", "schedule", "seeds_run", "n", "successes", "success_rate", "ci_low", "ci_high",
               "compute_seconds", "extra_seconds", "median_convergence", "on_front", "first_rung_only", "role",
               "note", "baseline"]
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(["compute_seconds", "trial"], kind="stable").reset_index(drop=True)


def signed_seconds(x: float) -> str:
    """'+0.4 s', '−1.2 min' (``fmt.duration`` with its sign): an extra compute."""
    return ("+" if x >= 0 else "−") + duration(abs(x))


def success_text(successes: int, n: int, rate: float, lo: float, hi: float) -> str:
    """'7 of 8 (88 %, 53–98 %)': solved seeds, the rate and its 95 % Wilson interval, as advice's statement."""
    return f"{successes} of {n} ({100 * rate:.0f} %, {100 * lo:.0f}–{100 * hi:.0f} %)"


def trials_display(table: pd.DataFrame) -> pd.DataFrame:
    """A ``trials_table`` as text, headers as ``DISPLAY`` names them: no cell is None or NaN (a missing value
    is '—'); seconds as ``fmt.duration`` writes them (0.04 s, 1.4 s, 3.5 min), the extra compute signed
    ('+0.4 s (1.40×)'), the no-flossing row 'baseline'."""
    base = table[table["baseline"]]
    base_s = float(base["compute_seconds"].iloc[0]) if len(base) else math.nan

    def extra(r) -> str:
        if r.baseline:
            return "baseline"
        if is_missing(r.extra_seconds) or is_missing(r.compute_seconds):
            return MISSING
        ratio = f" ({r.compute_seconds / base_s:.2f}×)" if base_s > 0 else ""
        return f"{signed_seconds(r.extra_seconds)}{ratio}"

    rows = [(r.label, r.schedule, str(r.seeds_run),
             MISSING if not r.n or is_missing(r.success_rate) else
             success_text(r.successes, r.n, r.success_rate, r.ci_low, r.ci_high),
             MISSING if is_missing(r.compute_seconds) else duration(r.compute_seconds),
             extra(r), MISSING if is_missing(r.median_convergence) else f"{r.median_convergence:.0f}",
             "yes" if r.on_front else "", "yes" if r.first_rung_only else "", r.role, r.note)
            for r in table.itertuples()]
    return pd.DataFrame(rows, columns=[h for _, h in DISPLAY])


def _hover(t: dict) -> str:
    conv = t.get("median_convergence")
    conv = "nothing solved" if is_missing(conv) else f"median convergence step {conv:.0f}"
    seeds = f"{len(t['seeds'])} seeds" + (f" ({note(t)})" if note(t) else "")
    return (f"#{t['trial']} {t['label']}<br>{t['successes']} of {t['n']} solved ({100 * t['success_rate']:.0f} %, "
            f"95 % interval {100 * t['ci_low']:.0f}–{100 * t['ci_high']:.0f} %)<br>"
            f"{duration(t['compute_seconds'])} of training + flossing per run; {conv}; {seeds}")


def _points(trials: list[dict], *, name: str, marker: dict, opacity: float = 1.0, showlegend: bool = True,
            text: list[str] | None = None, textposition: str = "top center", errors: bool = True,
            group: str | None = None) -> dict:
    """One scatter trace of trials: success rate (y, with its Wilson interval as error bars) against compute."""
    trace = dict(type="scatter", x=[t["compute_seconds"] for t in trials], y=[t["success_rate"] for t in trials],
                 mode="markers+text" if text else "markers", name=name, marker=marker, opacity=opacity,
                 showlegend=showlegend, legendgroup=group or name,
                 customdata=[[t["trial"], t["label"]] for t in trials],
                 hovertext=[_hover(t) for t in trials], hovertemplate="%{hovertext}<extra></extra>")
    if errors:
        trace["error_y"] = dict(type="data", symmetric=False,
                                array=[t["ci_high"] - t["success_rate"] for t in trials],
                                arrayminus=[t["success_rate"] - t["ci_low"] for t in trials],
                                color=marker.get("color"), thickness=1.2, width=3)
    if text:
        trace.update(text=text, textposition=textposition, textfont=dict(size=11, color=marker.get("color")),
                     cliponaxis=False)    # a label near the axis is drawn whole
    return trace


def _front_steps(front: list[dict]) -> tuple[list, list]:
    """The front as a staircase: from each trial, level to the next one's compute, then up to its rate (spending
    more buys the next trial's success)."""
    xs, ys = [], []
    for i, t in enumerate(front):
        if i:
            xs.append(t["compute_seconds"])
            ys.append(front[i - 1]["success_rate"])
        xs.append(t["compute_seconds"])
        ys.append(t["success_rate"])
    return xs, ys


def fig_advice(trials: list[dict], rec: dict | None = None, *, target: float | None = None) -> go.Figure:
    """Success rate (95 % Wilson interval as error bars) against training + flossing seconds per run: every trial
    faint in its schedule's colour (one legend entry per schedule), the trials successive halving stopped after
    the first rung as open crosses (not on the front: fewer seeds), the Pareto front as a staircase, the target
    as a dashed line, and the recommendation (green star) and no flossing (grey diamond) drawn over them and
    labelled. ``rec``: ``advice.recommend``'s dict (or the store's copy); ``target`` defaults to its own."""
    target = (rec or {}).get("target") if target is None else target
    by_trial = {int(t["trial"]): t for t in trials}
    shown = [t for t in trials if drawable(t)]                 # a refused candidate ran nothing: no point
    complete = [t for t in shown if t["complete"] and not failed(t)]
    stopped = [t for t in shown if first_rung_only(t)]
    broken = [t for t in shown if failed(t)]
    traces = []
    for name in dict.fromkeys(t["schedule"]["name"] for t in complete):     # faint: every complete trial
        traces.append(_points([t for t in complete if t["schedule"]["name"] == name], name=name, opacity=0.4,
                              marker=dict(color=color(name), size=9, symbol="circle")))
    if stopped:
        traces.append(_points(stopped, name="stopped after the first rung (fewer seeds)", opacity=0.5, errors=False,
                              marker=dict(color="#9ca3af", size=9, symbol="x-thin-open", line=dict(width=2))))
    if broken:
        traces.append(_points(broken, name="failed (a job failed: fewer runs)", opacity=0.5, errors=False,
                              marker=dict(color="#dc2626", size=9, symbol="x-thin-open", line=dict(width=2))))
    front = [t for t in pareto_front(trials, time=False) if drawable(t)]
    if front:
        xs, ys = _front_steps(front)
        traces.append(dict(type="scatter", x=xs, y=ys, mode="lines", name="Pareto front",
                           line=dict(color=FRONT_COLOR, width=2), hoverinfo="skip",
                           customdata=[[t["trial"]] for t in front]))
    on_staircase = {t["trial"] for t in front}
    sooner = [t for t in pareto_front(trials) if drawable(t) and t["trial"] not in on_staircase]
    if sooner:   # on the full front only by their time to solution: dearer or less sure, but they solve sooner
        traces.append(_points(sooner, name=SOONER, errors=False,
                              marker=dict(color="rgba(0,0,0,0)", size=16, symbol="circle-open",
                                          line=dict(color=FRONT_COLOR, width=2))))
    base = by_trial.get(trial_number((rec or {}).get("baseline"))) or _baseline(trials, None)
    choice = by_trial.get(trial_number((rec or {}).get("choice")))
    base, choice = (t if t is not None and drawable(t) else None for t in (base, choice))
    if base is not None and (choice is None or base["trial"] != choice["trial"]):
        traces.append(_points([base], name="no flossing", text=["no flossing"], textposition="bottom center",
                              marker=dict(color=color("none"), size=14, symbol="diamond",
                                          line=dict(color="#ffffff", width=1))))
    if choice is not None:
        word = "recommended" if rec.get("status") in ("recommended", "no_flossing") else "best found"
        traces.append(_points([choice], name=word, text=[f"{word}: {choice['label']}"],
                              marker=dict(color=CHOICE_COLOR, size=18, symbol="star",
                                          line=dict(color="#14532d", width=1))))
    layout = {}
    if target is not None:
        layout = dict(shapes=[dict(type="line", xref="paper", x0=0, x1=1, y0=target, y1=target,
                                   line=dict(color="#dc2626", width=1.5, dash="dash"))],
                      annotations=[dict(xref="paper", x=1, xanchor="right", y=target, yanchor="bottom",
                                        showarrow=False, text=f"target {100 * target:.0f} %",
                                        font=dict(size=11, color="#dc2626"))])
    xs = [t["compute_seconds"] for t in shown]
    span = (max(xs) - min(xs)) if xs else 1.0
    xaxis = dict(range=[0, max(xs) + 0.12 * (span or max(xs) or 1.0)]) if xs else {}   # from zero: ratios read true
    return _figure(traces, "Success rate vs compute per run (95 % Wilson interval; line: the front of success against "
                   "compute; rings: on the front because they solve sooner)",
                   "training + flossing seconds per run", "success rate",
                   yaxis=dict(range=[-0.05, 1.08], tickformat=".0%"), xaxis=xaxis, hovermode="closest",
                   legend=dict(title=dict(text="")), **layout)


def fig_time_to_solution(trials: list[dict], rec: dict | None = None) -> go.Figure:
    """Time to solution (median convergence step of the solved runs) against training + flossing seconds per run,
    for the complete trials that solved something, in their schedule's colour, sized by their success rate; the
    trials on the Pareto front (success, time to solution, compute) ringed, the recommendation a green star and
    no flossing a grey diamond. A trial that solved nothing has no time to solution and is not drawn (the
    caption says how many)."""
    by_trial = {int(t["trial"]): t for t in trials}
    solved = [t for t in trials if drawable(t) and t["complete"] and not failed(t)
              and not is_missing(t.get("median_convergence"))]
    front = {t["trial"] for t in pareto_front(trials)}

    def points(ts, *, name, marker, text=None, showlegend=True):
        return dict(type="scatter", x=[t["compute_seconds"] for t in ts],
                    y=[float(t["median_convergence"]) for t in ts], mode="markers+text" if text else "markers",
                    name=name, marker=marker, showlegend=showlegend, customdata=[[t["trial"], t["label"]] for t in ts],
                    hovertext=[_hover(t) for t in ts], hovertemplate="%{hovertext}<extra></extra>",
                    **(dict(text=text, textposition="top center", cliponaxis=False,
                            textfont=dict(size=11, color=marker.get("color"))) if text else {}))

    traces = []
    for name in dict.fromkeys(t["schedule"]["name"] for t in solved):
        ts = [t for t in solved if t["schedule"]["name"] == name]
        traces.append(points(ts, name=name, marker=dict(color=color(name), opacity=0.55,
                                                        size=[8 + 10 * t["success_rate"] for t in ts])))
    ringed = [t for t in solved if t["trial"] in front]
    if ringed:
        traces.append(points(ringed, name="on the Pareto front", marker=dict(
            color="rgba(0,0,0,0)", size=[14 + 10 * t["success_rate"] for t in ringed], symbol="circle-open",
            line=dict(color=FRONT_COLOR, width=2))))
    choice = by_trial.get(trial_number((rec or {}).get("choice")))
    base = by_trial.get(trial_number((rec or {}).get("baseline"))) or _baseline(trials, None)
    numbers = {t["trial"] for t in solved}
    if base is not None and base["trial"] in numbers and (choice is None or base["trial"] != choice["trial"]):
        traces.append(points([base], name="no flossing", text=["no flossing"],
                             marker=dict(color=color("none"), size=14, symbol="diamond",
                                         line=dict(color="#ffffff", width=1))))
    if choice is not None and choice["trial"] in numbers:
        word = "recommended" if rec.get("status") in ("recommended", "no_flossing") else "best found"
        traces.append(points([choice], name=word, text=[word], marker=dict(
            color=CHOICE_COLOR, size=18, symbol="star", line=dict(color="#14532d", width=1))))
    xs = [t["compute_seconds"] for t in solved]
    xaxis = dict(range=[0, max(xs) * 1.12]) if xs else {}
    return _figure(traces, "Time to solution vs compute per run (marker size: success rate; ringed: on the front)",
                   "training + flossing seconds per run", "median convergence step (solved runs)",
                   xaxis=xaxis, yaxis=dict(rangemode="tozero"), hovermode="closest", legend=dict(title=dict(text="")))


def front_caption(rec: dict | None) -> str:
    """What ``fig_advice`` draws, in words (the page's caption and the report's)."""
    target = "" if rec is None else f"; dashed: the target of {100 * rec['target']:.0f} %"
    return ("Each point is one schedule tried, at its training + flossing seconds per run and its success rate "
            "(bars: 95 % Wilson interval). Line: the schedules no other beats in both success and compute"
            + target + "; rings: schedules on the Pareto front only because they solve sooner (a lower median "
            "convergence step) than every cheaper, as successful one; star: the recommendation; diamond: no "
            "flossing; crosses: stopped after the first rung of seeds (a hopeless candidate: fewer seeds, not on "
            "the front).")


def time_caption(trials: list[dict]) -> str:
    """What ``fig_time_to_solution`` draws, in words, with the trials it cannot draw."""
    unsolved = unsolved_count(trials)
    left = "" if not unsolved else (f" {unsolved} complete trial{'s' if unsolved != 1 else ''} solved nothing and "
                                    f"{'have' if unsolved != 1 else 'has'} no time to solution, so "
                                    f"{'they are' if unsolved != 1 else 'it is'} not drawn.")
    return ("Time to solution: the median training step at which a trial's solved runs first met the success "
            "criterion, against its compute per run; marker size: its success rate; rings: the Pareto front over "
            "success, time to solution and compute (lower and further left is better)." + left)


def unsolved_count(trials: list[dict]) -> int:
    """Complete trials that solved nothing: no time to solution, so not on ``fig_time_to_solution``."""
    return sum(1 for t in trials if drawable(t) and t["complete"] and not failed(t)
               and is_missing(t.get("median_convergence")))


def headline(rec: dict) -> dict:
    """The recommendation's key numbers for metrics: 'title' (what its choice is: 'Recommended', 'No flossing
    reaches the target', 'Best found', or None where nothing finished), 'value' (the choice's label), 'success'
    (solved seeds with the interval), 'detail' (that at its compute per run), 'extra' (the extra compute against
    no flossing, '+2.3 s per run (1.40×) against no flossing'; '' without a baseline or for no flossing)."""
    choice = rec.get("choice")
    if choice is None:
        return {"title": None, "value": "nothing finished on every seed", "success": "", "detail": "", "extra": ""}
    title = {"recommended": "Recommended", "no_flossing": "No flossing reaches the target"}.get(rec["status"],
                                                                                            "Best found")
    extra = rec.get("extra_compute_seconds")
    ratio = rec.get("compute_ratio")
    extra_text = "" if is_missing(extra) or rec.get("baseline") is None or \
        trial_number(choice) == trial_number(rec.get("baseline")) else \
        f"{signed_seconds(extra)} per run" + ("" if is_missing(ratio) else f" ({ratio:.2f}×)") + " against no flossing"
    success = success_text(choice["successes"], choice["n"], choice["success_rate"], choice["ci_low"],
                           choice["ci_high"])
    return {"title": title, "value": choice["label"], "success": success,
            "detail": success + f" at {duration(choice['compute_seconds'])} per run", "extra": extra_text}

