"""A user's CSV series for the forecasting task 'csv': reading, refusing bad files, splits, windows.

A series file is a numeric CSV with a header row: L data rows, C named columns, every cell a finite
float32. `load_series` reads it (cached per path, mtime and size) or refuses it with one line that
names the column and data row at fault. For training, the first rows form the training part and the
last ``round(L * test_fraction)`` rows the test part; both are z-scored with the training part's mean
and standard deviation, and each must hold at least seq_len + delay rows. `windows` cuts random
windows of T + d consecutive rows out of one part: inputs are the first T rows, targets the series
d steps ahead (see ``tasks.csv_target``).

The functions below that take a ``cfg`` read its fields ``csv_path``, ``test_fraction``,
``r2_threshold``, ``seq_len`` and ``delay`` (a ``tasks.TaskConfig``).
"""
from __future__ import annotations

import functools
import math
import os
import re

import numpy as np
import pandas as pd
import torch

MAX_BYTES = 50_000_000   # a larger file is refused as huge
MAX_ROWS = 2_000_000     # as is one with more data rows

# cell texts that mean "no value" (compared lower-case, after stripping blanks)
_MISSING = {"", "nan", "-nan", "na", "n/a", "null", "none"}


# ---------------------------------------------------------------- reading

def load_series(path: str, *, max_bytes: int = MAX_BYTES, max_rows: int = MAX_ROWS) -> torch.Tensor:
    """Read a numeric CSV with a header row. Returns raw values (L, C) float32.

    Refuses the whole file (ValueError, one line) when it is missing, empty, has no header,
    an unnamed column, a non-numeric, missing or infinite cell (naming column and data
    row, counted from 1 after the header), a constant column, or is huge. Parsed files
    are cached per (path, mtime, size); the checks on an invalid file run on every call.
    """
    return _read_csv(path, max_bytes, max_rows)[1].clone()


def n_columns(path: str) -> int:
    """The number of columns of the series at ``path`` (ValueError as in `load_series`)."""
    return _read_csv(path)[1].shape[1]


def _read_csv(path, max_bytes=MAX_BYTES, max_rows=MAX_ROWS):
    """(column names, raw values (L, C) float32: the cached tensor, not to be changed)."""
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


# ---------------------------------------------------------------- the task's configuration

def validate(cfg) -> None:
    """Raise ValueError (one line) unless cfg names a readable series, test_fraction lies in (0, 1),
    r2_threshold <= 1, and both the train and the test part hold at least seq_len + delay rows."""
    if not isinstance(cfg.csv_path, (str, os.PathLike)) or not str(cfg.csv_path):
        raise ValueError("csv_path must name a CSV file for task 'csv'")
    tf = cfg.test_fraction
    if isinstance(tf, bool) or not isinstance(tf, (int, float)) or not 0 < tf < 1:
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {tf!r}")
    r2 = cfg.r2_threshold
    if isinstance(r2, bool) or not isinstance(r2, (int, float)) or not r2 <= 1:
        raise ValueError(f"r2_threshold must be a number <= 1, got {r2!r}")
    splits(cfg)


# ---------------------------------------------------------------- train / test parts

def _split_sizes(length: int, test_fraction: float) -> tuple[int, int]:
    n_test = int(round(length * test_fraction))
    return length - n_test, n_test


def splits(cfg) -> tuple[torch.Tensor, torch.Tensor]:
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


def windows(cfg, generator: torch.Generator, split: str, batch: int) -> torch.Tensor:
    """``batch`` random windows of T + d consecutive rows of the split ('train' or 'test'), drawn
    from ``generator``: (T + d, batch, C)."""
    part = splits(cfg)[0 if split == "train" else 1]                      # (L, C)
    length = cfg.seq_len + cfg.delay
    starts = torch.randint(0, part.shape[0] - length + 1, (batch,), generator=generator)
    return part[starts[None, :] + torch.arange(length)[:, None]]
