"""Tasks: delayed copy / XOR / parity of random bits, and forecasting a user's CSV series.

Every task yields time-major batches: inputs (T, B, C_in), targets (T, B, C_out) and a
mask (T,) that marks the scored steps. `TASKS` is the registry: one `Task` entry per name
holding everything the rest of the code asks about a task (how its inputs are drawn, its
targets, loss, score and score column, dimensions, the TaskConfig fields it reads, its
validation); the functions below (`validate_task`, `task_dims`, `loss_kind`, `make_batch`, ...)
ask the entry. Adding a task is adding an entry. `validate_task` checks a `TaskConfig` once,
at the boundary, with one-line errors.

Bit tasks (gradient flossing paper, Engelken 2023): inputs are i.i.d. Bernoulli(0.5) bits
s_t in {0, 1}; with delay d and h = order,
    copy:    y_t = s_{t-d}
    xor:     y_t = s_{t-d/2} XOR s_{t-d}
    parity:  y_t = XOR_{j=1..2^h} s_{t - j d / 2^h}        (h = 1 is xor)
A step is scored only when t >= d, i.e. when every bit its target needs has been seen
(the reference code scores one step too early; we do not).
The CSV task forecasts a user's series d steps ahead; reading and checking the file, its gaps and
columns, the train / test split, the z-scoring, the scored test windows and the naive baselines are in
`floss_core.series` (`load_series` is re-exported here). A csv run succeeds when its skill over the better
baseline, 1 - MSE / MSE_baseline, reaches ``skill_margin`` at the final evaluation.

Importing this module loads neither torch nor pandas (they load on the first batch, loss or
CSV), so the CLI's parser, the dashboard's pages and the views can read `NAMES` and the entries.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:   # annotations only: torch itself loads inside the functions that make tensors
    import torch


@dataclass(frozen=True)
class TaskConfig:
    name: str = "xor"            # copy | xor | parity | csv
    delay: int = 20              # d, steps between an input bit and the target that needs it
    channels: int = 1            # C independent channels (copy/xor/parity); csv: set from the file
    order: int = 1               # parity over 2**order bits (order=1 is XOR)
    seq_len: int = 300           # T, time steps per sequence
    batch: int = 16              # B, sequences per batch
    csv_path: str | None = None  # path of the user's CSV (task 'csv')
    test_fraction: float = 0.2   # csv: tail fraction of the series kept for testing
    r2_threshold: float = 0.5    # unused: csv success was test R² >= this before issue 15 (older specs hold it)
    columns: tuple[str, ...] | None = None  # csv: the columns to forecast (None: every column but the index)
    missing: str = "refuse"      # csv: gaps in the chosen columns: refuse | interpolate | drop (MISSING_MODES)
    period: int | None = None    # csv: season length P in rows; adds the seasonal persistence baseline
    skill_margin: float = 0.1    # csv: success when the final test skill 1 - MSE / MSE(better baseline) >= this

    def __post_init__(self):
        # columns as a tuple of names whatever way they were given ("a,b" from the command line, a list from
        # JSON or the Launch page): the spec compares and stores the same either way
        if isinstance(self.columns, str):
            object.__setattr__(self, "columns", tuple(c.strip() for c in self.columns.split(",") if c.strip()))
        elif isinstance(self.columns, list):
            object.__setattr__(self, "columns", tuple(self.columns))


MISSING_MODES = ("refuse", "interpolate", "drop")   # TaskConfig.missing: what a gap in a CSV series does


def seasonal_lag(period: int, delay: int) -> int:
    """How many steps before its target the seasonal persistence forecast looks (csv): the smallest multiple
    of the period P that is at least the delay d, P * ceil(d / P) (P when P >= d)."""
    return period * -(-delay // period)


@dataclass(frozen=True)
class Batch:
    inputs: torch.Tensor   # (T, B, C_in) float32 (make_ensemble_batch: (T, E, B, C_in))
    targets: torch.Tensor  # (T, B, C_out) float32 (make_ensemble_batch: (T, E, B, C_out))
    mask: torch.Tensor     # (T,) bool, True where the step is scored


# ---------------------------------------------------------------- target functions
# Each maps a time-major source sequence (T', B, C) (bits: T' = T; csv: a window of T + d rows)
# to targets (T, B, C); bit targets at t < d are set to 0 and are never scored. They work along
# time and broadcast over the other dimensions.

def _parity_of(bits: torch.Tensor, delay: int, n_bits: int) -> torch.Tensor:
    """XOR of the n_bits bits at t - j*delay/n_bits, j = 1..n_bits. (T, B, C) -> (T, B, C)."""
    import torch
    step = delay // n_bits
    total = torch.zeros_like(bits)
    for j in range(1, n_bits + 1):
        total[j * step:] += bits[: bits.shape[0] - j * step]
    target = total.remainder(2)
    target[:delay] = 0.0
    return target


def copy_target(bits: torch.Tensor, cfg: TaskConfig) -> torch.Tensor:
    """y_t = s_{t-d}. bits (T, B, C) -> (T, B, C)."""
    return _parity_of(bits, cfg.delay, 1)


def xor_target(bits: torch.Tensor, cfg: TaskConfig) -> torch.Tensor:
    """y_t = s_{t-d/2} XOR s_{t-d}. bits (T, B, C) -> (T, B, C)."""
    return _parity_of(bits, cfg.delay, 2)


def parity_target(bits: torch.Tensor, cfg: TaskConfig) -> torch.Tensor:
    """y_t = XOR of the 2**order bits spaced d / 2**order apart, the oldest at t-d."""
    return _parity_of(bits, cfg.delay, 2 ** cfg.order)


def csv_target(window: torch.Tensor, cfg: TaskConfig) -> torch.Tensor:
    """Forecast d steps ahead: window (T+d, B, C) of z-scored rows -> targets (T, B, C)."""
    return window[cfg.delay: cfg.delay + cfg.seq_len]


# ---------------------------------------------------------------- losses and scores

def task_loss(preds: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
              kind: str) -> torch.Tensor:
    """Per-member loss, mean over scored steps, batch and channels.

    preds: logits ('bce') or predictions ('mse'), (T, E, B, C); targets (T, E, B, C);
    mask (T,) bool. Returns (E,), differentiable. 'bce' is binary cross-entropy with logits.
    """
    import torch.nn.functional as F
    from .lyapunov import per_member
    p, y = preds[mask], targets[mask]
    if kind == "bce":
        per_entry = F.binary_cross_entropy_with_logits(p, y, reduction="none")
    elif kind == "mse":
        per_entry = (p - y) ** 2
    else:
        raise ValueError(f"unknown loss kind {kind!r}; choose one of bce, mse")
    return per_member(per_entry).mean(dim=1)     # a row reduction: the same whatever E


def task_accuracy(logits: torch.Tensor, targets: torch.Tensor,
                  mask: torch.Tensor) -> torch.Tensor:
    """(T, E, B, C) logits/targets, mask (T,) -> (E,) fraction of scored entries with
    (logit > 0) == (target == 1)."""
    from .lyapunov import per_member
    correct = (logits[mask] > 0) == (targets[mask] > 0.5)
    return per_member(correct.float()).mean(dim=1)


def r2_score(preds: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(T, E, B, C) -> (E,) coefficient of determination 1 - SSE/SST over scored entries.

    SST uses each channel's own mean (pooled over channels, i.e. variance-weighted);
    NaN when the scored targets have no variance.
    """
    import torch
    from .lyapunov import per_member
    p, y = preds[mask].double(), targets[mask].double()
    ym = y.permute(1, 3, 0, 2).reshape(y.shape[1], y.shape[3], -1).mean(dim=2)   # (E, C) channel means, row reductions
    sse = per_member((p - y) ** 2).sum(dim=1)
    sst = per_member((y - ym[None, :, None, :]) ** 2).sum(dim=1)
    r2 = 1 - sse / sst
    return torch.where(sst > 0, r2, torch.full_like(r2, float("nan"))).to(preds.dtype)


def random_bits(shape, generator: torch.Generator, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Fair random 0/1 values of ``shape`` drawn from ``generator`` (int64, or ``dtype``): every random
    input of the library — task bits, flossing windows, measurement inputs — is drawn here."""
    import torch
    bits = torch.randint(0, 2, tuple(shape), generator=generator)
    return bits if dtype is None else bits.to(dtype)


# ---------------------------------------------------------------- the entries' parts

def _check_int(cfg: TaskConfig, field: str, low: int) -> None:
    value = getattr(cfg, field)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{field} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{field} must be >= {low}, got {value}")


def _check_bits(cfg: TaskConfig) -> None:
    _check_int(cfg, "channels", 1)


def _check_xor(cfg: TaskConfig) -> None:
    _check_bits(cfg)
    if cfg.delay % 2:
        raise ValueError(f"delay must be even for xor, got {cfg.delay}")


def _check_parity(cfg: TaskConfig) -> None:
    _check_bits(cfg)
    _check_int(cfg, "order", 1)
    if cfg.delay % 2 ** cfg.order:
        raise ValueError(f"delay must be divisible by 2**order = {2 ** cfg.order} "
                         f"for parity of order {cfg.order}, got {cfg.delay}")


def _draw_bits(cfg: TaskConfig, generator: torch.Generator, split: str, batch: int) -> torch.Tensor:
    """Fresh bits (T, batch, C) float32; train and test come from the same distribution."""
    return random_bits((cfg.seq_len, batch, cfg.channels), generator).float()


def _bit_dims(cfg: TaskConfig) -> tuple[int, int]:
    return cfg.channels, cfg.channels


def _series(name: str) -> Callable:
    """floss_core.series.<name>, imported on the first call (pandas loads only for a CSV task)."""
    def call(*args):
        from . import series
        return getattr(series, name)(*args)
    call.__name__ = call.__qualname__ = f"series.{name}"
    return call


def _csv_dims(cfg: TaskConfig) -> tuple[int, int]:
    from . import series
    c = series.channels(cfg)
    return c, c


# ---------------------------------------------------------------- the registry

@dataclass(frozen=True)
class Task:
    """One task: what the training loop, the CLI, the pages and the report ask about it.

    Calling the entry computes its targets: ``TASKS[name](source, cfg)``.
    """
    name: str
    draw: Callable       # (cfg, generator, split, batch) -> source (T', batch, C) float32 that
    #                      the inputs (its first T steps) and the targets are cut from
    target: Callable     # (source (T', ..., C), cfg) -> targets (T, ..., C)
    dims: Callable       # cfg -> (input channels, output channels)
    check: Callable      # cfg -> None: the task's own checks (ValueError, one line)
    fields: tuple[str, ...]  # the TaskConfig fields it reads besides COMMON_FIELDS
    loss: str            # task_loss kind: 'bce' (classification of bits, logits) | 'mse' (regression)
    score: Callable      # (outputs, targets, mask) (T, E, B, C) -> (E,) test score per member
    score_name: str      # what the score is, for people: 'accuracy' | 'R²'
    score_column: str    # the stored test-score metric: 'test_acc' | 'test_r2'
    threshold_field: str | None  # the TaskConfig field with the success threshold (None: TrainConfig.success_acc)
    bit_inputs: bool     # inputs are fresh random bits, so windows of any length can be drawn
    #                      (diagnostics, trainability forecasts); False: windows of one series
    test_draw: Callable | None = None   # (cfg, n) -> the fixed source (T', N, C) every evaluation scores;
    #                      None: a fresh random test batch per member and evaluation (``draw``)
    baselines: Callable | None = None   # (cfg, n) -> {name: forecasts (T, N, C)} of test_draw's targets, the
    #                      naive forecasts the score is judged against (None: no baselines)
    facts: Callable | None = None       # cfg -> {name: value} for every run's final (csv: columns, gaps handled)
    success_metric: str | None = None   # the evaluated metric the threshold applies to (None: score_column)
    success_name: str | None = None     # what that metric is, for people (None: 'test ' + score_name)
    judged: str = "first"  # 'first': a run succeeds at the first evaluation that reaches the threshold;
    #                        'final': at the final evaluation (its convergence step: the first evaluation from
    #                        which every later one reached it)

    def __call__(self, source: torch.Tensor, cfg: TaskConfig) -> torch.Tensor:
        return self.target(source, cfg)

    def threshold(self, cfg: TaskConfig, success_acc: float) -> float:
        """The value of ``success_metric`` at or above which a run succeeds."""
        return success_acc if self.threshold_field is None else getattr(cfg, self.threshold_field)

    @property
    def metric(self) -> str:
        """The evaluated metric a run's success is judged on: 'test_acc' (bit tasks), 'test_skill' (csv)."""
        return self.success_metric or self.score_column

    def success_text(self) -> str:
        """The success rule in words, without its threshold: 'test accuracy', 'final test skill over ...'."""
        return self.success_name or f"test {self.score_name}"


COMMON_FIELDS = ("delay", "seq_len", "batch")   # TaskConfig fields every task reads

_BITS = dict(draw=_draw_bits, dims=_bit_dims, loss="bce", score=task_accuracy, score_name="accuracy",
             score_column="test_acc", threshold_field=None, bit_inputs=True)

TASKS: dict[str, Task] = {t.name: t for t in (
    Task("copy", target=copy_target, check=_check_bits, fields=("channels",), **_BITS),
    Task("xor", target=xor_target, check=_check_xor, fields=("channels",), **_BITS),
    Task("parity", target=parity_target, check=_check_parity, fields=("channels", "order"), **_BITS),
    Task("csv", draw=_series("windows"), target=csv_target, dims=_csv_dims, check=_series("validate"),
         fields=("csv_path", "test_fraction", "columns", "missing", "period", "skill_margin"), loss="mse",
         score=r2_score, score_name="R²", score_column="test_r2", threshold_field="skill_margin",
         bit_inputs=False, test_draw=_series("test_windows"), baselines=_series("baseline_forecasts"),
         facts=_series("facts"), success_metric="test_skill",
         success_name="final test skill (1 − MSE / MSE of the better baseline)", judged="final"),
)}
NAMES = tuple(TASKS)                                            # the choices, in display order
SCORE_COLUMNS = tuple(dict.fromkeys(t.score_column for t in TASKS.values()))   # 'test_acc', 'test_r2'


def task_entry(name: str) -> Task:
    """The registry entry of task ``name``; ValueError (one line) naming the choices otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


def score_column(name: str) -> str:
    """The stored test-score metric of task ``name``: 'test_acc' (bit tasks) or 'test_r2' (csv)."""
    return task_entry(name).score_column


def uses(name: str, field: str) -> bool:
    """Whether task ``name`` reads TaskConfig ``field`` (e.g. the Launch page's channels / order / upload)."""
    return field in COMMON_FIELDS or field in task_entry(name).fields


# ---------------------------------------------------------------- asking the entry

def validate_task(cfg: TaskConfig) -> None:
    """Raise ValueError with one line naming the bad field and its valid range or choices.

    For task 'csv' this also loads and checks the file (see `load_series`) and that both the
    train and the test part hold at least seq_len + delay rows.
    """
    task = task_entry(cfg.name)
    for field in COMMON_FIELDS:
        _check_int(cfg, field, 1)
    if cfg.seq_len <= cfg.delay:
        raise ValueError(f"delay {cfg.delay} does not fit in a sequence of {cfg.seq_len} steps (seq_len): choose a "
                         f"delay below {cfg.seq_len}, or seq_len above {cfg.delay}")
    task.check(cfg)


def task_dims(cfg: TaskConfig) -> tuple[int, int]:
    """(input channels, output channels); for 'csv' the number of columns in the file."""
    return task_entry(cfg.name).dims(cfg)


def loss_kind(cfg: TaskConfig) -> str:
    """'mse' for forecasting ('csv'), 'bce' (binary cross-entropy on logits) for bit tasks."""
    return task_entry(cfg.name).loss


def make_batch(cfg: TaskConfig, generator: torch.Generator, *, split: str = "train",
               batch: int | None = None) -> Batch:
    """One batch: inputs (T, B, C_in), targets (T, B, C_out), mask (T,) with mask[t] = t >= d.

    Bit tasks draw fresh bits (train and test come from the same distribution, so `split`
    does not matter); 'csv' draws B random windows of T + d rows from the requested split.
    The same generator state gives the same batch.
    """
    _check_split(split)
    source = task_entry(cfg.name).draw(cfg, generator, split, cfg.batch if batch is None else batch)
    return _cut(cfg, source)


def make_ensemble_batch(cfg: TaskConfig, generators: list[torch.Generator], *,
                        split: str = "train", batch: int | None = None) -> Batch:
    """One batch per ensemble member, stacked on dim 1: inputs (T, E, B, C_in),
    targets (T, E, B, C_out), mask (T,); member i's batch is ``make_batch(cfg, generators[i])``.
    Each member's source is drawn from its own generator and all targets are computed at once (the
    target functions work along time and broadcast over the rest)."""
    import torch
    _check_split(split)
    draw, b = task_entry(cfg.name).draw, cfg.batch if batch is None else batch
    return _cut(cfg, torch.stack([draw(cfg, g, split, b) for g in generators], 1))


def make_test_batch(cfg: TaskConfig, generators: list[torch.Generator], batch: int) -> Batch:
    """What one evaluation scores, stacked per member like ``make_ensemble_batch``: the task's fixed test
    windows (csv: ``series.test_windows``, at most ``batch``, the same for every member and evaluation, so
    that its baselines are scored on the same targets) where it has them, else a fresh random test batch
    per member drawn from ``generators``."""
    entry = task_entry(cfg.name)
    if entry.test_draw is None:
        return make_ensemble_batch(cfg, generators, split="test", batch=batch)
    source = entry.test_draw(cfg, batch)
    return _cut(cfg, source[:, None].expand(-1, len(generators), -1, -1))


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def _cut(cfg: TaskConfig, source: torch.Tensor) -> Batch:
    """The batch cut from a source (T', ...): inputs its first T steps, targets the task's."""
    import torch
    inputs, targets = source[:cfg.seq_len], TASKS[cfg.name](source, cfg)
    return Batch(inputs.contiguous(), targets.contiguous(), torch.arange(cfg.seq_len) >= cfg.delay)


def __getattr__(name: str):
    # the CSV reader, re-exported: floss_core.series (and pandas) load on first use
    if name == "load_series":
        from . import series
        return series.load_series
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
