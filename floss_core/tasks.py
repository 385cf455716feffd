"""Tasks: delayed copy / XOR / parity of random bits, and forecasting a user's CSV series.

Every task yields time-major batches: inputs (T, B, C_in), targets (T, B, C_out) and a
mask (T,) that marks the scored steps. Tasks are picked by name from the flat dict
`TASKS`; `validate_task` checks a `TaskConfig` once, at the boundary, with one-line errors.

Bit tasks (gradient flossing paper, Engelken 2023): inputs are i.i.d. Bernoulli(0.5) bits
s_t in {0, 1}; with delay d and h = order,
    copy:    y_t = s_{t-d}
    xor:     y_t = s_{t-d/2} XOR s_{t-d}
    parity:  y_t = XOR_{j=1..2^h} s_{t - j d / 2^h}        (h = 1 is xor)
A step is scored only when t >= d, i.e. when every bit its target needs has been seen
(the reference code scores one step too early; we do not).
"""
from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .lyapunov import per_member


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
    r2_threshold: float = 0.5    # csv: success when test R^2 >= this


@dataclass(frozen=True)
class Batch:
    inputs: torch.Tensor   # (T, B, C_in) float32 (make_ensemble_batch: (T, E, B, C_in))
    targets: torch.Tensor  # (T, B, C_out) float32 (make_ensemble_batch: (T, E, B, C_out))
    mask: torch.Tensor     # (T,) bool, True where the step is scored


# ---------------------------------------------------------------- target functions
# Each maps a time-major sequence (T', B, C) to targets (T, B, C); entries at t < d are
# set to 0 and are never scored.

def _parity_of(bits: torch.Tensor, delay: int, n_bits: int) -> torch.Tensor:
    """XOR of the n_bits bits at t - j*delay/n_bits, j = 1..n_bits. (T, B, C) -> (T, B, C)."""
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


TASKS = {"copy": copy_target, "xor": xor_target, "parity": parity_target, "csv": csv_target}


# ---------------------------------------------------------------- validation

def _check_int(cfg: TaskConfig, field: str, low: int) -> None:
    value = getattr(cfg, field)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{field} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{field} must be >= {low}, got {value}")


def validate_task(cfg: TaskConfig) -> None:
    """Raise ValueError with one line naming the bad field and its valid range or choices.

    For task 'csv' this also loads and checks the file (see `load_series`) and that both the
    train and the test part hold at least seq_len + delay rows.
    """
    if cfg.name not in TASKS:
        raise ValueError(f"unknown task {cfg.name!r}; choose one of {', '.join(TASKS)}")
    for field in ("delay", "seq_len", "batch"):
        _check_int(cfg, field, 1)
    if cfg.seq_len <= cfg.delay:
        raise ValueError(f"seq_len ({cfg.seq_len}) must be larger than delay ({cfg.delay})")
    if cfg.name == "csv":
        if not isinstance(cfg.csv_path, (str, os.PathLike)) or not str(cfg.csv_path):
            raise ValueError("csv_path must name a CSV file for task 'csv'")
        tf = cfg.test_fraction
        if isinstance(tf, bool) or not isinstance(tf, (int, float)) or not 0 < tf < 1:
            raise ValueError(f"test_fraction must be strictly between 0 and 1, got {tf!r}")
        r2 = cfg.r2_threshold
        if isinstance(r2, bool) or not isinstance(r2, (int, float)) or not r2 <= 1:
            raise ValueError(f"r2_threshold must be a number <= 1, got {r2!r}")
        _csv_splits(cfg)
        return
    _check_int(cfg, "channels", 1)
    if cfg.name == "xor" and cfg.delay % 2:
        raise ValueError(f"delay must be even for xor, got {cfg.delay}")
    if cfg.name == "parity":
        _check_int(cfg, "order", 1)
        if cfg.delay % 2 ** cfg.order:
            raise ValueError(f"delay must be divisible by 2**order = {2 ** cfg.order} "
                             f"for parity of order {cfg.order}, got {cfg.delay}")


def task_dims(cfg: TaskConfig) -> tuple[int, int]:
    """(input channels, output channels); for 'csv' the number of columns in the file."""
    if cfg.name == "csv":
        c = load_series(cfg.csv_path).shape[1]
        return c, c
    return cfg.channels, cfg.channels


def loss_kind(cfg: TaskConfig) -> str:
    """'mse' for forecasting ('csv'), 'bce' (binary cross-entropy on logits) for bit tasks."""
    return "mse" if cfg.name == "csv" else "bce"


# ---------------------------------------------------------------- batches

def make_batch(cfg: TaskConfig, generator: torch.Generator, *, split: str = "train",
               batch: int | None = None) -> Batch:
    """One batch: inputs (T, B, C_in), targets (T, B, C_out), mask (T,) with mask[t] = t >= d.

    Bit tasks draw fresh bits (train and test come from the same distribution, so `split`
    does not matter); 'csv' draws B random windows of T + d rows from the requested split.
    The same generator state gives the same batch.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    B, T, d = cfg.batch if batch is None else batch, cfg.seq_len, cfg.delay
    if cfg.name == "csv":
        series = _csv_splits(cfg)[0 if split == "train" else 1]            # (L, C)
        starts = torch.randint(0, series.shape[0] - (T + d) + 1, (B,), generator=generator)
        window = series[starts[None, :] + torch.arange(T + d)[:, None]]    # (T+d, B, C)
        inputs, targets = window[:T], TASKS["csv"](window, cfg)
    else:
        inputs = _bits(cfg, generator, B).float()
        targets = TASKS[cfg.name](inputs, cfg)
    mask = torch.arange(T) >= d
    return Batch(inputs.contiguous(), targets.contiguous(), mask)


def _bits(cfg: TaskConfig, generator: torch.Generator, batch: int) -> torch.Tensor:
    return random_bits((cfg.seq_len, batch, cfg.channels), generator)


def make_ensemble_batch(cfg: TaskConfig, generators: list[torch.Generator], *,
                        split: str = "train", batch: int | None = None) -> Batch:
    """One batch per ensemble member, stacked on dim 1: inputs (T, E, B, C_in),
    targets (T, E, B, C_out), mask (T,); member i's batch is ``make_batch(cfg, generators[i])``.
    Bit tasks draw each member's bits from its own generator and compute all targets at once (the
    target functions work along time and broadcast over the rest)."""
    if cfg.name == "csv":
        parts = [make_batch(cfg, g, split=split, batch=batch) for g in generators]
        return Batch(torch.stack([p.inputs for p in parts], 1),
                     torch.stack([p.targets for p in parts], 1), parts[0].mask)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    B = cfg.batch if batch is None else batch
    inputs = torch.stack([_bits(cfg, g, B) for g in generators], 1).float()
    return Batch(inputs, TASKS[cfg.name](inputs, cfg), torch.arange(cfg.seq_len) >= cfg.delay)


# ---------------------------------------------------------------- CSV series

_MISSING = {"", "nan", "-nan", "na", "n/a", "null", "none"}


def load_series(path: str, *, max_bytes: int = 50_000_000,
                max_rows: int = 2_000_000) -> torch.Tensor:
    """Read a numeric CSV with a header row. Returns raw values (L, C) float32.

    Refuses the whole file (ValueError, one line) when it is missing, empty, has no header,
    an unnamed column, a non-numeric, missing or infinite cell (naming column and data
    row, counted from 1 after the header), a constant column, or is huge. Parsed files
    are cached per (path, mtime, size); the checks on an invalid file run on every call.
    """
    return _read_csv(path, max_bytes, max_rows)[1].clone()


def _read_csv(path, max_bytes=50_000_000, max_rows=2_000_000):
    try:
        st = os.stat(path)
    except OSError:
        raise ValueError(f"CSV file not found: {path}") from None
    if not os.path.isfile(path):
        raise ValueError(f"CSV path is not a file: {path}")
    if st.st_size > max_bytes:
        raise ValueError(f"CSV file is huge: {st.st_size:,} bytes, the limit is {max_bytes:,}")
    return _parse_csv(os.path.abspath(path), st.st_mtime_ns, st.st_size, max_bytes, max_rows)


@functools.lru_cache(maxsize=8)
def _parse_csv(path, mtime_ns, size, max_bytes, max_rows):
    """Cached on (path, mtime, size, limits); exceptions are not cached."""
    try:  # header=None + str cells: we check every cell ourselves and own the messages
        df = pd.read_csv(path, header=None, dtype=str, keep_default_na=False,
                         nrows=max_rows + 2)
    except pd.errors.EmptyDataError:
        raise ValueError(f"CSV file is empty: {path}") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ValueError(f"could not parse CSV {path}: {str(e).strip().splitlines()[0]}") from None
    header, cells = [h.strip() for h in df.iloc[0]], df.iloc[1:]
    if all(not math.isnan(v) for v in pd.to_numeric(pd.Series(header), errors="coerce")):
        raise ValueError(f"CSV has no header row: the first line {','.join(header)} is numeric")
    for i, name in enumerate(header):
        if name == "" or re.fullmatch(r"Unnamed: \d+", name):
            raise ValueError(f"CSV column {i + 1} has no name in the header "
                             "(an unnamed index column? drop it)")
    if len(cells) == 0:
        raise ValueError(f"CSV has a header but no data rows: {path}")
    if len(cells) > max_rows:
        raise ValueError(f"CSV is huge: more than {max_rows:,} data rows")
    columns = []
    for name, (_, col) in zip(header, cells.items()):
        text = col.str.strip()
        with np.errstate(over="ignore"):   # too large for float32 -> inf, reported below
            values = pd.to_numeric(text, errors="coerce").to_numpy(np.float64).astype(np.float32)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            row, cell = bad[0], text.iloc[bad[0]]
            problem = ("is empty or NaN (missing value)" if cell.lower() in _MISSING
                       else "is not finite (inf, or too large for float32)" if not
                       math.isnan(values[row]) else "is not a number")
            raise ValueError(f"CSV column '{name}', data row {row + 1}: {cell!r} {problem}")
        if len(values) > 1 and values.min() == values.max():
            raise ValueError(f"CSV column '{name}' is constant ({values[0]:g}); drop it")
        columns.append(values)
    return tuple(header), torch.from_numpy(np.stack(columns, axis=1))


def _split_sizes(length: int, test_fraction: float) -> tuple[int, int]:
    n_test = int(round(length * test_fraction))
    return length - n_test, n_test


def _csv_splits(cfg: TaskConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) parts of the series, z-scored with the training part's mean/std."""
    names, raw = _read_csv(cfg.csv_path)
    need = cfg.seq_len + cfg.delay
    n_train, n_test = _split_sizes(raw.shape[0], cfg.test_fraction)
    if min(n_train, n_test) < need:
        total = math.ceil(need / min(cfg.test_fraction, 1 - cfg.test_fraction))
        while min(_split_sizes(total - 1, cfg.test_fraction)) >= need:
            total -= 1
        while min(_split_sizes(total, cfg.test_fraction)) < need:
            total += 1
        raise ValueError(
            f"CSV has {raw.shape[0]} rows ({n_train} train, {n_test} test); each part needs "
            f"seq_len + delay = {need} rows, i.e. at least {total} rows at test_fraction "
            f"{cfg.test_fraction}")
    return _zscored(names, raw, n_train)


@functools.lru_cache(maxsize=8)
def _zscored(names, raw, n_train):
    # raw is the cached tensor of _parse_csv (hashed by identity), so this cache follows it
    train = raw[:n_train].double()
    mean, std = train.mean(0), train.std(0)
    for name, s in zip(names, std):
        if s == 0:
            raise ValueError(f"CSV column '{name}' is constant in the training part; drop it")
    z = ((raw.double() - mean) / std).float()
    return z[:n_train], z[n_train:]


# ---------------------------------------------------------------- losses and scores

def task_loss(preds: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
              kind: str) -> torch.Tensor:
    """Per-member loss, mean over scored steps, batch and channels.

    preds: logits ('bce') or predictions ('mse'), (T, E, B, C); targets (T, E, B, C);
    mask (T,) bool. Returns (E,), differentiable. 'bce' is binary cross-entropy with logits.
    """
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
    correct = (logits[mask] > 0) == (targets[mask] > 0.5)
    return per_member(correct.float()).mean(dim=1)


def r2_score(preds: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(T, E, B, C) -> (E,) coefficient of determination 1 - SSE/SST over scored entries.

    SST uses each channel's own mean (pooled over channels, i.e. variance-weighted);
    NaN when the scored targets have no variance.
    """
    p, y = preds[mask].double(), targets[mask].double()
    ym = y.permute(1, 3, 0, 2).reshape(y.shape[1], y.shape[3], -1).mean(dim=2)   # (E, C) channel means, row reductions
    sse = per_member((p - y) ** 2).sum(dim=1)
    sst = per_member((y - ym[None, :, None, :]) ** 2).sum(dim=1)
    r2 = 1 - sse / sst
    return torch.where(sst > 0, r2, torch.full_like(r2, float("nan"))).to(preds.dtype)


def random_bits(shape, generator: torch.Generator, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Fair random 0/1 values of ``shape`` drawn from ``generator`` (int64, or ``dtype``): every random
    input of the library — task bits, flossing windows, measurement inputs — is drawn here."""
    bits = torch.randint(0, 2, tuple(shape), generator=generator)
    return bits if dtype is None else bits.to(dtype)
