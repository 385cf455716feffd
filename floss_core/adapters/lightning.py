"""Gradient flossing in a PyTorch Lightning ``Trainer`` (issue 17, item 2): ``FlossingCallback``, an
optional extra (``pip install "gradient-flossing-lab[lightning]"``); nothing else in floss_core imports it.

    trainer = Trainer(callbacks=[FlossingCallback(k=8, every=10, weight=0.01)])          # term mode
    trainer = Trainer(callbacks=[FlossingCallback(k=8, weight=0, phase_steps=50,         # phase mode
                                                  phase_every=500)])

Both modes (Engelken, NeurIPS 2023) run on the window a ``hook.FlossingRegularizer`` keeps from the
LightningModule's own forward pass in ``training_step``: the recurrent module's real input and initial state.
Term mode adds the gradient of ``weight * flossing loss`` to the task gradient every ``every`` training
batches, in ``on_after_backward`` (before clipping and the optimizer step), which is what adding the term to
the loss would do. Phase mode runs a flossing phase (``floss``, its own Adam) after every ``phase_every``
training steps and/or epochs, and ``pre_steps`` before training.
"""
from __future__ import annotations

try:
    from lightning.pytorch import Callback
except ImportError:   # one clear line, naming the extra
    raise ImportError('floss_core.adapters.lightning needs PyTorch Lightning: '
                      'pip install "gradient-flossing-lab[lightning]"') from None

from .hook import WEIGHT, FlossingRegularizer
from .regularizer import MAX_RISE, STATE_HORIZON, STOP_TOL, VALIDATE_EVERY


def _positive_or_none(name, v) -> None:
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
        raise ValueError(f"{name} must be an integer >= 1 or None, got {v!r}")


class FlossingCallback(Callback):
    """Gradient flossing of the LightningModule's recurrent module, as a term and/or as phases.

    Args:
      module: the recurrent module (nn.RNN / GRU / LSTM / a Cell), or None (default): the one the
        LightningModule holds (``resolve.resolve_module``; several: pass one).
      k, every, weight, sample, transient, target, state_horizon, max_steps, seed: as for
        ``FlossingRegularizer``; ``weight=0`` turns term mode off. ``every`` counts training batches
        (with gradient accumulation, micro-batches; the term is divided by accumulate_grad_batches as
        Lightning divides the loss). Under a 16-bit GradScaler the term is scaled like the loss.
      phase_steps, phase_lr: a flossing phase's steps and Adam learning rate (0 steps: no phases).
      phase_every: a phase after every this many training steps (None: none by steps).
      phase_every_epochs: a phase after every this many training epochs (None: none by epochs).
      pre_steps: a phase of this many steps before training: before the first step on ``sampler`` if
        given, else right after the first training step, on the first window the hook keeps (the
        hook keeps nothing from the validation loop, sanity check included: flossing sees training inputs).
      sampler: ``i -> inputs`` in the module's layout for the phases instead of the window kept.
      validate: ``pl_module -> float``, your task loss on a validation batch: a phase stops when it rises
        by more than ``max_rise`` and the weights of its last passing check are restored (``floss``'s
        rails, checked every ``validate_every`` steps). Flossing a trained model hurts it: pass it.
      stop_tol: a phase stops at the target (``floss``); None: never.
      log: log ``flossing/lambda1`` and ``flossing/loss`` through the LightningModule's ``log``.
    Attributes: ``reg`` (the FlossingRegularizer, from fit start), ``history`` (its history),
    ``phases`` (one ``floss`` result dict per phase, with ``at``: the global step it ran at).
    Single-process training: under DDP each process would add its own term after the gradients'
    all-reduce.
    """

    def __init__(self, module=None, *, k: int, every: int = 10, weight: float = WEIGHT, sample: int = 1,
                 transient: int | None = None, target: float = 0.0, state_horizon: int | None = STATE_HORIZON,
                 max_steps: int | None = None, seed: int = 0,
                 phase_steps: int = 0, phase_lr: float = 1e-3, phase_every: int | None = None,
                 phase_every_epochs: int | None = None, pre_steps: int = 0, sampler=None,
                 validate=None, validate_every: int = VALIDATE_EVERY, max_rise: float = MAX_RISE,
                 stop_tol: float | None = STOP_TOL, log: bool = True):
        for name, v in (("phase_steps", phase_steps), ("pre_steps", pre_steps)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
        _positive_or_none("phase_every", phase_every)
        _positive_or_none("phase_every_epochs", phase_every_epochs)
        if validate is not None and not callable(validate):
            raise ValueError(f"validate must be a callable pl_module -> float, got {type(validate).__name__}")
        self.module = module
        self.reg_kwargs = dict(k=k, every=every, weight=weight, sample=sample, transient=transient, target=target,
                               state_horizon=state_horizon, max_steps=max_steps, seed=seed)
        self.phase_steps, self.phase_lr, self.phase_every = phase_steps, phase_lr, phase_every
        self.phase_every_epochs, self.pre_steps, self.sampler = phase_every_epochs, pre_steps, sampler
        self.validate, self.validate_every, self.max_rise = validate, validate_every, max_rise
        self.stop_tol, self.log = stop_tol, log
        self.reg, self.phases, self._pre_pending, self._history = None, [], False, []
        self._phased_at = None         # the global step of the last phase by steps (several batches share one)
        if self.module is not None:     # bad settings are refused here, not at fit start
            self.reg = FlossingRegularizer(self.module, **self.reg_kwargs)
            self.reg.remove()
            self.reg = None

    @property
    def history(self) -> list:
        return self.reg.history if self.reg is not None else self._history

    # ------------------------------------------------------------------------ lifetime
    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit" and self.reg is None:
            self.reg = FlossingRegularizer(self.module if self.module is not None else pl_module, **self.reg_kwargs)
            self.reg.history = self._history   # one history across fits (and from a checkpoint)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit" and self.reg is not None:
            self.reg.remove()
            self._history = self.reg.history
            self.reg = None

    def state_dict(self) -> dict:
        return {"history": self.history, "calls": self.reg.calls if self.reg is not None else 0,
                "phases": self.phases}

    def load_state_dict(self, state_dict: dict) -> None:
        self._history[:] = state_dict.get("history", [])
        self.phases = list(state_dict.get("phases", []))
        if self.reg is not None:
            self.reg.calls = state_dict.get("calls", 0)

    # ------------------------------------------------------------------------ term mode
    def on_after_backward(self, trainer, pl_module) -> None:
        if self.reg.weight == 0 or not pl_module.training:
            return
        term = self.reg()
        if not term.requires_grad:          # not an every-th batch, or no window kept yet
            return
        term = term / max(1, trainer.accumulate_grad_batches)
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        (scaler.scale(term) if scaler is not None else term).backward()
        if self.log:
            h = self.reg.history[-1]
            pl_module.log("flossing/lambda1", h["exponents"][0])
            pl_module.log("flossing/loss", h["loss"])

    # ------------------------------------------------------------------------ phase mode
    def _phase(self, trainer, pl_module, steps: int) -> None:
        if steps == 0:
            return
        validate = None if self.validate is None else (lambda: self.validate(pl_module))
        was_training = pl_module.training
        out = self.reg.phase(steps=steps, lr=self.phase_lr, sampler=self.sampler, validate=validate,
                             validate_every=self.validate_every, max_rise=self.max_rise, stop_tol=self.stop_tol)
        pl_module.train(was_training)
        for p in self.reg.module.parameters():   # the phase's own gradients are no part of the next task step
            p.grad = None
        out["at"] = trainer.global_step
        self.phases.append(out)

    def on_validation_start(self, trainer, pl_module) -> None:
        if self.reg is not None:            # the window stays the last training batch's
            self.reg.capturing = False

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.reg is not None:
            self.reg.capturing = True

    def on_train_start(self, trainer, pl_module) -> None:
        if self.pre_steps:
            if self.sampler is not None:
                self._phase(trainer, pl_module, self.pre_steps)
            else:
                self._pre_pending = True    # no window before the first forward pass: after the first step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._pre_pending and self.reg.inputs is not None:
            self._pre_pending = False
            self._phase(trainer, pl_module, self.pre_steps)
        step = trainer.global_step
        if self.phase_every is not None and step > 0 and step % self.phase_every == 0 and self._phased_at != step:
            self._phased_at = step
            self._phase(trainer, pl_module, self.phase_steps)
            if self.log and self.phases and self.phases[-1]["exponents"]:
                pl_module.log("flossing/phase_lambda1", self.reg.history[-1]["exponents"][0])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.phase_every_epochs is not None and (trainer.current_epoch + 1) % self.phase_every_epochs == 0:
            self._phase(trainer, pl_module, self.phase_steps)
