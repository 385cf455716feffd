"""The one training loop: task training of an ensemble of E networks, with flossing phases per schedule.

Reads top to bottom like the protocol (Engelken 2023, reference code): ``train`` initialises E networks
from E seeds, snapshots them, flosses before training where a schedule asks, then trains on a fresh
batch per step with per-array gradient clipping and Adam, flossing in separate phases before the steps
the schedules name (or, for ``joint``, adding ``weight * flossing_loss`` to the task loss where the
reader can see it); last, one record per member. Members are independent: every loss is per member and
summed, the optimiser keeps per-member state, so an ensemble of E seeds gives exactly the numbers of E
separate runs. A member whose loss or exponents turn NaN/inf is recorded as diverged (step and reason)
and frozen; the others go on. With ``TrainConfig.stop_when_solved`` a member that has met the success
criterion (a task judged at its first passing evaluation) stops the same way: it trains and flosses no
more, and the run ends once every member is solved or diverged (or at the budget). A frozen member is
dropped from the batched computation (the others are computed on a slice of the stacked parameters, as
a flossing phase computes only its flossers), so the others' numbers are those of the full run.

The loop asks, never names: each member's schedule says when it flosses (``schedules``), the
architecture entry says which fast path it has (``models.Arch``). Around it: the configs
(``configs``), the flossing window and phase (``phases``), evaluation and diagnostics as plain
functions (``diagnostics``), the optimiser and clipping (``optim``). The names those modules define
that callers have imported from here stay importable from here.
"""
from __future__ import annotations

import functools
import math
import platform
import time
from dataclasses import asdict, dataclass, field

import torch

from . import __version__  # stored with every run
from . import diagnostics as D
from . import models as M
from . import native
from . import schedules as S
from . import tasks as T
from .configs import DIAG_DTYPES, Cancelled, FlossConfig, TrainConfig, resolve_device, validate_floss, validate_train
from .diagnostics import task_forward
from .flossing import flossing_loss
from .optim import EnsembleAdam, clip_per_member
from .phases import _bits, floss_phase, flossing_exponents, member_generators, member_q0

# the names callers have imported from floss_core.train since before the split, still here (re-exported)
from .configs import (DESIGN_FIELDS, FLOSS_DESIGNS, LAB_BUDGET, LAB_FLOSS, QR_CHOICES,  # noqa: F401
                      REFERENCE_FLOSS, STATE_GRADIENTS, design_of, with_design)
from .diagnostics import measure_spectrum  # noqa: F401
from .phases import MEASURE_STEPS, MEASURE_TRANSIENT, floss_fresh, save_params, state_gradient  # noqa: F401


def _to(batch: T.Batch, dev: torch.device) -> T.Batch:
    if batch.inputs.device == dev:
        return batch
    return T.Batch(batch.inputs.to(dev), batch.targets.to(dev), batch.mask.to(dev))


def _groups(counts) -> dict:
    """{n_steps: [members]} for the members whose schedule asks for n_steps > 0 flossing steps."""
    out: dict = {}
    for i, n in enumerate(counts):
        if n > 0:
            out.setdefault(n, []).append(i)
    return out


def work_units(schedules, steps: int) -> int:
    """Progress units of one ensemble: training steps plus the flossing steps it runs in sequence
    (phases of equal length for several schedules run together; adaptive counts its maximum)."""
    total = steps + sum(_groups([S.pre_steps(s) for s in schedules]))
    for t in sorted({t for s in schedules for t in s.inter_at if t < steps}):
        total += sum(_groups([S.inter_steps(s, t) for s in schedules]))
    return total + max(S.adaptive_budget(s, steps) for s in schedules)


def train(model: M.ModelConfig, task: T.TaskConfig, train_cfg: TrainConfig, floss: FlossConfig,
          schedule, seeds, *, members: bool = False, device: str = "cpu", on_progress=None,
          should_stop=None, on_state=None, on_record=None) -> list[dict]:
    """Train one ensemble: every seed under every schedule, E = len(schedules) × len(seeds) networks.

    ``schedule`` is one Schedule or a sequence of them. All schedules start from the same initial
    weights and see the same task data (both derive from the seed alone), so they differ only in
    flossing; a flossing phase computes only the members whose schedule asks for it.

    Args:
      members: False (default): every seed under every schedule. True: ``schedule`` and ``seeds`` are
        equally long lists, member i trains ``seeds[i]`` under ``schedule[i]`` (a part of a comparison
        cut for parallel workers; a member's numbers do not depend on who else is in the ensemble).
      on_progress: ``(done, total, phase: str)`` called as work progresses (units: flossing + training steps).
      should_stop: ``() -> bool`` polled every step; True raises ``Cancelled``.
      on_state: ``(states)`` called as each phase begins, at most every ``STATE_EVERY_S`` as work
        progresses, and once at the end: what each member is doing now, one ``(state, step, steps)`` per
        member (``_Run.states``).
      on_record: ``(record)`` called with a member's record as soon as it is over before the others: a
        member that diverged (frozen); the list returned at the end holds it again, timings completed.
    Returns:
      one run record (dict) per (schedule, seed), schedules outermost: status done/diverged, success,
      convergence_step, final metrics, metrics / spectra / jacobian rows, timings (``_Run.records``),
      device, versions, full config.
    """
    schedules = [schedule] if isinstance(schedule, S.Schedule) else list(schedule)
    dev = resolve_device(device)
    T.validate_task(task)
    M.validate_model(model)
    for s in schedules:
        S.validate_schedule(s)
    validate_train(train_cfg)
    validate_floss(floss, M.state_dim(model))
    seeds = [int(s) for s in seeds]
    if not seeds or not schedules:
        raise ValueError("seeds and schedules must each hold at least one entry")
    if members:
        if len(schedules) != len(seeds):
            raise ValueError(f"members=True needs one schedule per seed, got {len(schedules)} and {len(seeds)}")
        member_seeds, member_schedules = seeds, schedules
        distinct = list({s.name: s for s in schedules}.values())
    else:
        member_seeds = [s for _ in schedules for s in seeds]
        member_schedules = [s for s in schedules for _ in seeds]
        distinct = schedules
    run = _Run(model, task, train_cfg, floss, member_schedules, member_seeds, dev,
               total=work_units(distinct, train_cfg.steps), on_progress=on_progress, should_stop=should_stop,
               on_state=on_state, on_record=on_record)
    everyone = torch.ones_like(run.active)

    run.snapshot(0, "init", everyone)
    run.floss("pre", 0, [S.pre_steps(s) for s in member_schedules])
    for step in range(train_cfg.steps):
        if not bool(run.active.any()):
            break                                      # every member diverged (or stopped): nothing left to train
        run.floss("inter", step, [S.inter_steps(s, step) for s in member_schedules])
        if step % train_cfg.eval_every == 0:
            lam = run.evaluate(step).tolist()          # the cheap monitor: each member's top exponents
            if train_cfg.stop_when_solved:
                run.stop_solved(step)                  # solved members train no more (their record is ready)
                if not bool(run.active.any()):
                    break                              # everyone solved or diverged: the budget is not needed
            run.floss("adaptive", step, [S.adaptive_floss_steps(s, step, x) for s, x in zip(member_schedules, lam)])
        run.train_step(step)
    if (train_cfg.steps - 1) % train_cfg.eval_every and bool(run.active.any()):
        run.evaluate(train_cfg.steps - 1)
    run.snapshot(train_cfg.steps, "final", run.active | run.stopped)   # a stopped member: its weights at convergence
    if run.done < run.total:                           # the work a stop or divergence made unnecessary, as done
        run.tick(run.total - run.done, "solved" if bool(run.stopped.any()) else "done")
    run.report_state(done=True)
    return run.records()


@dataclass
class _Member:
    """Per-member bookkeeping (plain lists, turned into a run record at the end)."""
    seed: int
    diverged_step: int | None = None
    reason: str | None = None
    convergence_step: int | None = None
    stopped_at: int | None = None      # stop_when_solved: the step it stopped at (solved there), else None
    metrics: list = field(default_factory=list)
    spectra: list = field(default_factory=list)
    jacobian: list = field(default_factory=list)
    final: dict = field(default_factory=dict)


PARTS = ("train", "floss", "eval", "diag")   # where a run's seconds go (``_Run.records``)
# What a member is doing now (``_Run.states``; the store keeps it per running run): measured (a spectrum
# snapshot), training, waiting while ensemble-mates floss or are measured, flossing in a phase, diverged
# (frozen; its record is handed over at once: ``on_record``), done (its record is ready; also a member
# stopped when solved, ``TrainConfig.stop_when_solved``).
STATES = ("diagnostics", "training", "waiting", "pre flossing", "inter flossing", "adaptive flossing",
          "diverged", "done")
STATE_EVERY_S = 0.25    # ``on_state`` at most this often


class _Run:
    """One ensemble in training: its parameters, optimisers and data streams, each member's records,
    who is still active, the time spent and the progress made. ``train`` calls its phases in order.

    Time is kept per member in four parts (``PARTS``): task training (the task's batches, forward,
    backward, clipping and optimiser steps), flossing (the flossing phases, the joint term's forward and
    backward, adaptive's own measurements), evaluation (test batches, the success check) and the lab's
    diagnostics (spectra, κ₂, gradient-vs-horizon snapshots, the λ monitor). Work done for the whole
    ensemble is charged to its members in equal shares, flossing only to the members that flossed."""

    def __init__(self, model, task, train_cfg: TrainConfig, floss: FlossConfig, schedules: list, seeds: list,
                 dev, *, total: int, on_progress, should_stop, on_state=None, on_record=None):
        self.t_wall, self.callback_seconds = time.perf_counter(), 0.0
        self.model, self.task, self.cfg, self.fl = model, task, train_cfg, floss
        self.schedules, self.dev = schedules, dev
        self.kind = T.loss_kind(task)
        self.n_in, n_out = T.task_dims(task)
        e, self.d = len(seeds), M.state_dim(model)
        self.params = {k: v.to(dev).requires_grad_(True)
                       for k, v in M.init_ensemble(model, self.n_in, n_out, seeds, batch=task.batch).items()}
        self.task_opt = EnsembleAdam(list(self.params.values()), lr=train_cfg.lr)
        self.floss_opt = EnsembleAdam([self.params[k] for k in M.flossed_names(self.params)], lr=floss.lr)
        self.g_train, self.g_test = member_generators(seeds, 1), member_generators(seeds, 2)
        self.g_floss, self.g_check = member_generators(seeds, 3), member_generators(seeds, 6)
        self.Q0 = member_q0(seeds, self.d, floss.k, dev)
        g_diag = member_generators(seeds, 5)
        if T.task_entry(task.name).bit_inputs:       # the diagnostics window: fresh bits
            self.diag_inputs = _bits(g_diag, train_cfg.diag_len, 1, self.n_in, dev)
        else:                                        # or one test window of the series (csv)
            self.diag_inputs = T.make_ensemble_batch(task, g_diag, split="test", batch=1).inputs.to(dev)
        # a csv test window can be short: keep the transient inside it
        self.diag_transient = min(train_cfg.diag_transient, self.diag_inputs.shape[0] // 2)
        self.members = [_Member(s) for s in seeds]
        self.active = torch.ones(e, dtype=torch.bool, device=dev)
        self.stopped = torch.zeros(e, dtype=torch.bool, device=dev)   # solved and stopped (stop_when_solved)
        self._snapshots: dict[int, tuple[list, dict]] = {}   # member -> (its weights, its last snapshot)
        self.seconds = {part: [0.0] * e for part in PARTS}
        self.steps = {"train": torch.zeros(e, dtype=torch.long, device=dev), "floss": [0] * e}
        self.done, self.total, self.on_progress, self.should_stop = 0, total, on_progress, should_stop
        # what each member is doing (STATES), the training steps done, the flossing phase's (step, steps)
        self.state, self.trained, self.flossing_at = ["diagnostics"] * e, 0, (0, 0)
        self.on_state, self.state_t, self.on_record = on_state, -math.inf, on_record

    # -- bookkeeping
    def _alive(self, who: torch.Tensor) -> list[int]:
        """The members in ``who`` that are still active."""
        return torch.nonzero(who & self.active).flatten().tolist()

    def computed(self) -> list[int] | None:
        """The members a step computes: None while every member is active (the whole stacked ensemble),
        else the active ones' indices (a slice of it; a frozen member is dropped from the batch). A lone
        active member keeps one frozen companion (a stopped one first; its results are discarded): a batch of
        one takes another arithmetic path (the compiled loop's backward differs in the last bit at E = 1),
        and the survivor's numbers must stay those of the full run."""
        if bool(self.active.all()):
            return None
        idx = self._alive(self.active)
        if len(idx) == 1:
            frozen = torch.nonzero(self.stopped).flatten().tolist() + torch.nonzero(~self.active).flatten().tolist()
            idx = sorted(idx + frozen[:1])
        return idx

    def _slice(self, idx: list[int] | None) -> dict:
        """The parameters of the members ``idx`` (None: all): a differentiable slice of the stacked ones."""
        if idx is None:
            return self.params
        at = torch.tensor(idx, device=self.dev)
        return {k: v[at] for k, v in self.params.items()}

    def _scatter(self, values: torch.Tensor, idx: list[int] | None, fill: float = 0.0) -> torch.Tensor:
        """Per-member ``values`` of the members ``idx`` as an (E, ...) tensor, ``fill`` for the others."""
        if idx is None:
            return values
        out = torch.full((len(self.members), *values.shape[1:]), fill, dtype=values.dtype, device=values.device)
        return out.index_copy(0, torch.tensor(idx, device=values.device), values)

    def stop_solved(self, step: int) -> None:
        """``stop_when_solved``: freeze the active members that have met the success criterion at the
        evaluation before ``step`` (tasks judged at their first passing evaluation only: a task judged at its
        final evaluation is never solved before the end). They keep their weights, their final numbers are
        those at convergence, and ``on_record`` gets their records at once, like a diverged member's."""
        if T.task_entry(self.task.name).judged != "first":
            return
        solved = [i for i in self._alive(self.active) if self.members[i].convergence_step is not None]
        if not solved:
            return
        for i in solved:
            self.members[i].stopped_at = step
            self.stopped[i] = True
            self.active[i] = False
            self.state[i] = "done"
        if self.on_record:
            t0 = time.perf_counter()
            for i in solved:
                self.on_record(self.record(i))
            self.callback_seconds += time.perf_counter() - t0   # nobody's part (``_clock``)

    def tick(self, n: int, phase: str) -> None:
        t0 = time.perf_counter()
        self.done += n
        try:
            if self.on_progress:
                self.on_progress(min(self.done, self.total), self.total, phase)
            if self.on_state and t0 - self.state_t >= STATE_EVERY_S:
                self.report_state()
            if self.should_stop and self.should_stop():
                raise Cancelled()
        finally:                         # the callbacks' time is nobody's part (``_clock``)
            self.callback_seconds += time.perf_counter() - t0

    def enter(self, state: str, who: torch.Tensor | None = None) -> None:
        """The active members in ``who`` (default: all) now do ``state``; the other active ones wait. Told
        to ``on_state`` at once: a phase's start is when its time begins (the runner times snapshots so)."""
        inside = set(self._alive(self.active if who is None else who))
        for i in self._alive(self.active):
            self.state[i] = state if i in inside else "waiting"
        if self.on_state:
            t0 = time.perf_counter()
            self.report_state()
            self.callback_seconds += time.perf_counter() - t0   # nobody's part (``_clock``)

    def states(self) -> list[tuple[str, int, int]]:
        """(state, step, steps) per member: a flossing member, step of its phase's steps; a diverged one,
        the training step it diverged at; the others, training steps done of the budget."""
        steps = self.cfg.steps
        return [(s, *self.flossing_at) if s.endswith("flossing") else
                (s, self.members[i].diverged_step or 0, steps) if s == "diverged" else (s, self.trained, steps)
                for i, s in enumerate(self.state)]

    def report_state(self, *, done: bool = False) -> None:
        """Tell ``on_state`` what each member is doing (``done``: the run is over, its records are next)."""
        if done:
            self.state = ["diverged" if m.diverged_step is not None else "done" for m in self.members]
        if self.on_state:
            self.state_t = time.perf_counter()
            self.on_state(self.states())

    def _clock(self) -> float:
        """Seconds of work so far: the clock less the time spent in the progress callbacks, so that a
        difference of two readings times a stretch of work without them; on a GPU read once the queued
        kernels have run, so that the work is charged where it ran."""
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
        return time.perf_counter() - self.callback_seconds

    def _charge(self, part: str, seconds: float, members=None) -> None:
        """Charge ``seconds`` of ``part`` to ``members`` (indices; default every member) in equal shares."""
        members = range(len(self.members)) if members is None else list(members)
        for i in members:
            self.seconds[part][i] += seconds / len(members)

    def diverge(self, bad: torch.Tensor, step: int, reason: str) -> None:
        """Freeze the active members in ``bad`` as diverged at ``step``; ``on_record`` gets their records
        at once (they are over, whatever their ensemble-mates still do)."""
        if bool(bad.any()):
            frozen = self._alive(bad)
            for i in frozen:
                self.members[i].diverged_step, self.members[i].reason = step, reason
                self.state[i] = "diverged"
            self.active.mul_(~bad)
            if self.on_record and frozen:
                t0 = time.perf_counter()
                for i in frozen:
                    self.on_record(self.record(i))
                self.callback_seconds += time.perf_counter() - t0   # nobody's part (``_clock``)

    def log(self, step: int, i: int, **values) -> None:
        self.members[i].metrics += [{"step": step, "name": name, "value": float(v)} for name, v in values.items()]

    # -- the phases
    def snapshot(self, step: int, phase: str, who: torch.Tensor) -> None:
        """Spectrum, λ_1, κ₂, singular values and gradient-vs-horizon of the active members in ``who`` (and
        of the stopped ones in it: the final snapshot, of their weights at convergence, at the step they
        stopped at).

        Only those members are computed, and only those whose weights changed since their last snapshot:
        the others' numbers are that snapshot's (``_snapshots``), which is what computing them again would
        give (a phase's "before" right after the initial snapshot, a stopped member's final one). A lone
        member keeps a companion, as in ``computed`` (a batch of one takes another arithmetic path)."""
        if not self.cfg.diagnostics:
            return
        self.enter("diagnostics", who)
        t0 = self._clock()
        wanted = torch.nonzero(who & (self.active | self.stopped)).flatten().tolist()
        weights = {i: [v[i].detach() for v in self.params.values()] for i in wanted}
        need = [i for i in wanted if i not in self._snapshots
                or not all(torch.equal(a, b) for a, b in zip(self._snapshots[i][0], weights[i]))]
        if need:
            idx = need if len(need) > 1 or len(self.members) == 1 else \
                sorted(need + [next(j for j in range(len(self.members)) if j not in need)])
            snap = D.snapshot(self.model, self._slice(idx), self.diag_inputs[:, idx], transient=self.diag_transient,
                              k=self.fl.k, dtype=DIAG_DTYPES[self.cfg.diag_dtype])
            for i in need:
                j = idx.index(i)
                self._snapshots[i] = ([w.clone() for w in weights[i]],
                                      {"exponents": snap["exponents"][j], "horizons": snap["horizons"],
                                       **{key: snap[key][:, j] for key in ("log_sv", "log_kappa", "log_kappa_k",
                                                                          "grad_norm")}})
        for i in wanted:
            m, snap = self.members[i], self._snapshots[i][1]
            lam = snap["exponents"]
            at = step if m.stopped_at is None else m.stopped_at
            m.spectra.append({"step": at, "phase": phase, "exponents": lam.tolist()})
            for j, h in enumerate(snap["horizons"]):
                m.jacobian.append({"step": at, "phase": phase, "horizon": h,
                                   "log_sv": snap["log_sv"][j].tolist(),
                                   "log_kappa": float(snap["log_kappa"][j]),
                                   "log_kappa_k": float(snap["log_kappa_k"][j]),
                                   "grad_norm": float(snap["grad_norm"][h])})
            log10_kappa = float(snap["log_kappa"][-1]) / math.log(10)
            m.final.setdefault("lambda1_before", float(lam[0]))
            m.final.setdefault("log10_kappa_before", log10_kappa)
            m.final["lambda1_after"], m.final["log10_kappa_after"] = float(lam[0]), log10_kappa
            if phase.endswith("_after"):
                m.final["lambda1_flossed"] = float(lam[0])
        if need:
            self._charge("diag", self._clock() - t0, need)   # the members computed share its time
        elif wanted:
            self._charge("diag", self._clock() - t0, wanted)

    def floss(self, phase: str, step: int, counts: list[int]) -> None:
        """The flossing phases of the members whose schedule asks for counts[i] > 0 steps now: members
        asking for the same number of steps floss together, the others wait."""
        for n, idx in _groups(counts).items():
            who = torch.zeros_like(self.active)
            who[idx] = True
            who &= self.active
            if not bool(who.any()):
                continue
            self.snapshot(step, phase + "_before", who)
            self.flossing_at = (0, n)
            self.enter(f"{phase} flossing", who)
            t0 = self._clock()
            ran = floss_phase(self.model, self.params, self.fl, n, opt=self.floss_opt, generators=self.g_floss,
                              Q0=self.Q0, channels=self.n_in, active=who, check_generators=self.g_check,
                              on_step=functools.partial(self._flossed, phase, step, who))
            flossers = torch.nonzero(who).flatten().tolist()
            self._charge("floss", self._clock() - t0, flossers)
            if ran:                     # the steps each member took (NaN: not flossing at that step)
                took = (~torch.isnan(torch.stack(ran))).sum(0).tolist()
                for j in flossers:
                    self.steps["floss"][j] += int(took[j])
            if len(ran) < n:            # every member stopped early (the stopping rule): the rest is skipped
                self.tick(n - len(ran), f"{phase} flossing")
            self.snapshot(step, phase + "_after", who)

    def _flossed(self, phase: str, step: int, who: torch.Tensor, i: int, loss: torch.Tensor,
                 bad: torch.Tensor) -> None:
        """After flossing step i of a phase: divergence, the loss every log_every steps, progress."""
        self.diverge(bad, step, f"flossing exponents became non-finite ({phase} flossing step {i})")
        if i % self.cfg.log_every == 0:
            for j in self._alive(who):
                self.log(step, j, **{f"floss_loss_{phase}": loss[j]})
        self.flossing_at = (i + 1, self.flossing_at[1])
        self.tick(1, f"{phase} flossing")

    def evaluate(self, step: int) -> torch.Tensor:
        """Test loss / accuracy (or R²) and the top exponents (cheap monitor) of every active member;
        returns the monitor's exponents (E, monitor_k).

        The test batch and the score are evaluation time; the monitor is the lab's diagnostics, except for
        a member whose schedule measures now (adaptive): the measurement it flosses by is its flossing time."""
        idx = self.computed()          # the active members (None: all of them); the others' rows are NaN
        who = range(len(self.members)) if idx is None else idx
        alive = self._alive(self.active)   # who is charged (a lone member's companion is not)
        t0 = self._clock()
        batch = _to(T.make_test_batch(self.task, [self.g_test[i] for i in who], self.cfg.eval_batch), self.dev)
        params = self._slice(idx)
        loss, score = D.evaluate(self.model, self.task, params, batch)
        t1 = self._clock()
        inputs = self.diag_inputs if idx is None else self.diag_inputs[:, idx]
        lam = D.top_exponents(self.model, params, inputs, min(self.cfg.monitor_k, self.d),
                              transient=self.diag_transient)
        monitor = self._clock() - t1
        for i in alive:
            own = S.measures_at(self.schedules[i], step)
            self._charge("floss" if own else "diag", monitor / len(alive), [i])
        t2 = self._clock()
        # the success rule is the task's (diagnostics.judge): bit tasks, the first evaluation at the accuracy
        # bar; csv, the final evaluation's skill over the better naive baseline on the same test windows
        logged, recorded, passed = D.judge(self.task, loss, score, self.cfg.success_acc, self.cfg.eval_batch)
        loss, lam, passed = self._scatter(loss, idx, math.nan), self._scatter(lam, idx, math.nan), \
            self._scatter(passed, idx, False)
        logged = {k: self._scatter(v, idx, math.nan) for k, v in logged.items()}
        recorded = {k: self._scatter(v, idx, math.nan) for k, v in recorded.items()}
        facts = D.run_facts(self.task, self.cfg.success_acc, self.cfg.eval_batch)
        for i in self._alive(self.active):
            m = self.members[i]
            self.log(step, i, test_loss=loss[i], **{k: v[i] for k, v in logged.items()}, lambda1=lam[i, 0])
            m.final.update({"test_loss": float(loss[i]), **{k: float(v[i]) for k, v in {**logged, **recorded}.items()},
                            **facts})
            m.convergence_step = D.convergence_step(self.task, m.convergence_step, bool(passed[i]), step)
        self._charge("eval", t1 - t0 + self._clock() - t2, alive)
        return lam

    def train_step(self, step: int) -> None:
        """One task training step on a fresh batch; for the members whose schedule says so, the joint
        objective ``task loss + weight * flossing_loss`` on one fresh flossing window.

        The flossing term's forward and backward are timed as flossing (its graph shares only the leaf
        parameters with the task's, so its backward runs on its own); the rest as task training."""
        idx = self.computed()          # the active members (None: all); a frozen member's data stream stops
        who = range(len(self.members)) if idx is None else idx
        alive = self._alive(self.active)   # who trains and is charged (a lone member's companion is not)
        t0, flossing = self._clock(), 0.0
        batch = _to(T.make_ensemble_batch(self.task, [self.g_train[i] for i in who], split="train"), self.dev)
        loss, *_ = task_forward(self.model, self._slice(idx), batch, self.kind)
        loss = self._scatter(loss, idx)
        total_loss, term = loss, None
        now = [i for i in alive if S.joint_at(self.schedules[i], step)]
        if now:
            t1 = self._clock()
            idx = torch.tensor(now, device=self.dev)
            sub = {k: v[idx] for k, v in self.params.items()}
            window = _bits([self.g_floss[i] for i in now], self.fl.seq_len, self.fl.batch, self.n_in, self.dev)
            lam = flossing_exponents(self.model, sub, self.fl, window, self.Q0[idx])
            f_loss = torch.zeros(len(self.members), device=self.dev).index_add(
                0, idx, flossing_loss(lam, target=self.fl.target).mean(1))
            term = self.schedules[now[0]].weight * f_loss
            total_loss = loss + term                     # the joint objective, in plain view
            flossing += self._clock() - t1
            for i in now:
                self.steps["floss"][i] += 1
        self.diverge(~torch.isfinite(total_loss), step, "task loss became non-finite")
        self.task_opt.zero_grad()
        zero = torch.zeros_like(total_loss)
        if term is not None:                             # d(total)/dθ = d(loss)/dθ + d(term)/dθ, in two parts
            t1 = self._clock()
            torch.where(self.active, term, zero).sum().backward()
            flossing += self._clock() - t1
        torch.where(self.active, loss, zero).sum().backward()
        gnorm = clip_per_member(list(self.params.values()), self.cfg.clip)
        self.diverge(~torch.isfinite(gnorm), step, "gradient became non-finite")
        self.task_opt.step(self.active.clone())
        self.steps["train"] += self.active               # the members whose update was applied
        self._charge("train", self._clock() - t0 - flossing, alive)
        if now:
            self._charge("floss", flossing, now)
        if step % self.cfg.log_every == 0:
            loss = loss.detach()
            for i in self._alive(self.active):
                self.log(step, i, train_loss=loss[i], grad_norm=gnorm[i])
        self.trained = step + 1
        if self.on_state and "training" not in self.state:
            self.enter("training")
        self.tick(1, "training")

    # -- the records
    def records(self) -> list[dict]:
        """One run record per member (``train``'s Returns).

        Timings: ``train_seconds``, ``floss_seconds``, ``eval_seconds``, ``diag_seconds`` (``PARTS``, see
        ``_Run``) and ``wall_seconds``, the member's share of the ensemble's wall time: its four parts plus
        an equal share of the rest (setting up, the bookkeeping between the parts, the progress
        callbacks), so the members' wall seconds add up to the ensemble's. ``final`` carries the step
        counts: ``train_steps`` (updates applied: fewer after a divergence or a stop) and ``floss_steps``
        (flossing steps taken, joint terms included), and ``stopped_at``: the step a member solved and
        stopped at (``stop_when_solved``; None: it trained the whole budget or diverged); its other final
        numbers are then those at convergence."""
        trained = self.steps["train"].tolist()
        return [self.record(i, trained[i]) for i in range(len(self.members))]

    def record(self, i: int, trained: int | None = None) -> dict:
        """Member ``i``'s run record now (``records``; a diverged member's is final but for its timings,
        which go on taking their share until the ensemble ends). ``trained``: its training steps applied,
        if known."""
        wall = time.perf_counter() - self.t_wall
        e, sec, m = len(self.members), self.seconds, self.members[i]
        rest = (wall - sum(sum(sec[part]) for part in PARTS)) / e
        trained = int(self.steps["train"][i]) if trained is None else trained
        base = {"model": asdict(self.model), "task": asdict(self.task), "train": asdict(self.cfg),
                "floss": asdict(self.fl)}
        status = "diverged" if m.diverged_step is not None else "done"
        return {
            "schedule": self.schedules[i].name, "seed": m.seed, "member": i,
            "config": {**base, "schedule": asdict(self.schedules[i]), "seed": m.seed},
            "status": status, "success": status == "done" and m.convergence_step is not None,
            "convergence_step": m.convergence_step, "diverged_step": m.diverged_step, "reason": m.reason,
            "final": {**m.final, "ensemble_size": e, "train_steps": int(trained),
                      "floss_steps": self.steps["floss"][i], "stopped_at": m.stopped_at},
            **{f"{part}_seconds": sec[part][i] for part in PARTS},
            "wall_seconds": sum(sec[part][i] for part in PARTS) + rest,
            "device": str(self.dev), "versions": versions(),
            "metrics": m.metrics, "spectra": m.spectra, "jacobian": m.jacobian}


def versions() -> dict:
    """What made a record: the versions of floss_core, torch, numpy and python, which time loop ran
    (``native.status()``) and which flossing-window loop (``native.window_status()``)."""
    import numpy
    return {"floss_core": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version(), "time_loop": native.status(),
            "window_loop": native.window_status()}
