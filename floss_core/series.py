"""A user's CSV series for the forecasting task 'csv': reading, refusing bad files, gaps, columns, splits,
windows, and the naive forecasts a network must beat.

A series file is a CSV with a header row. Its first column is the file's **index**, not a series, when it
holds dates/times (``1958-03-29``, ``1958-03``, ``2020-01-01 12:00``) or at least three strictly increasing
integers (a year) with a value in every row that is not a blank line, and another column follows; the index
is never forecast (an integer index may still be named in ``columns``), and a date index must run forwards
in time. The series are the columns the user chooses
(``cfg.columns``; default every column but the index), each cell a finite float32. `load_series` reads
them (cached per path, mtime, size and choice) or refuses the whole file with one line that names the
column and data rows at fault (rows counted from 1 after the header, blank lines included). A file that is not
UTF-8 text (binary data such as an image or a workbook, UTF-16, another encoding) or not a comma-separated
table is refused in a user's words, never with the path or a codec's or parser's own message.

**Gaps** — blank cells, blank lines, NA tokens (``NA``, ``NaN``, ``null``, ...) in a chosen column — refuse
the file, naming the rows, unless ``cfg.missing`` says what to do: ``interpolate`` fills each gap inside a
column linearly between its neighbours (by row; the rows before a column's first or after its last value
cannot be interpolated and are dropped, which leaves the spacing of the rest alone), ``drop`` removes every
row with a gap (the series closes up: d steps ahead then spans more time across a gap). `facts` says
how many values were filled and rows dropped, and which columns are forecast; the run records them. Blank
lines after the last row are not gaps.

For training, the first rows form the training part and the last ``round(L * test_fraction)`` rows the
test part; both are z-scored with the training part's mean and standard deviation, and each must hold at
least seq_len + delay rows. `windows` cuts random windows of T + d consecutive rows out of one part: inputs
are the first T rows, targets the series d steps ahead (see ``tasks.csv_target``). The evaluations score
a fixed set of test windows (`test_windows`: every window of the test part, or ``n`` evenly spaced ones),
and on exactly those targets the **baselines** (`baseline_forecasts`):

* persistence: the value d steps before the target, i.e. the last value the network has seen;
* seasonal persistence, when a period P (rows) is given: the value ``seasonal_lag(P, d) = P * ceil(d / P)``
  steps before the target, the most recent value at the same phase of the season that is at least d steps
  old (P steps back when P >= d). Where that lies before the window it is read from the series' past (the
  rows before the window, possibly in the training part): a forecaster knows its past.

The functions below that take a ``cfg`` read its fields ``csv_path``, ``columns``, ``missing``,
``period``, ``skill_margin``, ``test_fraction``, ``seq_len`` and ``delay`` (a ``tasks.TaskConfig``).
"""
from __future__ import annotations

import functools
import math
import os
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .tasks import MISSING_MODES, seasonal_lag  # noqa: F401  (seasonal_lag: public here too)

MAX_BYTES = 50_000_000   # a larger file is refused as huge
MAX_ROWS = 2_000_000     # as is one with more data rows
ROWS_NAMED = 8           # a refusal names at most this many rows (or ranges of rows), then "and N more"

# cell texts that mean "no value" (compared lower-case, after stripping blanks)
_MISSING = {"", "nan", "-nan", "na", "n/a", "null", "none"}
_INTEGER = re.compile(r"[+-]?\d+")


# ---------------------------------------------------------------- reading

@dataclass(frozen=True)
class SeriesInfo:
    """What a CSV file offers, before a choice of columns (`describe`)."""
    index: str | None           # the index column's name, or None
    index_kind: str | None      # 'dates' | 'integers' | None
    columns: tuple[str, ...]    # the numeric columns that can be forecast, in file order (not the index)
    not_numeric: dict           # {column: the line that refuses it} for the other columns
    missing: dict               # {numeric column: its number of gaps}
    rows: int                   # data rows, blank lines inside the file included


def describe(path: str, *, max_bytes: int = MAX_BYTES, max_rows: int = MAX_ROWS) -> SeriesInfo:
    """The file's index, its numeric columns (what the Launch page offers), the columns that are not numeric
    (with the line that would refuse them) and the gaps per column. ValueError (one line) for a file that
    cannot be read at all (missing, empty, no header, unnamed or repeated column, a date index that goes
    back in time, huge)."""
    t = _table(path, max_bytes, max_rows)
    columns = tuple(c for c in t.header if c in t.values and c != t.index)
    return SeriesInfo(t.index, t.index_kind, columns, dict(t.bad),
                      {c: int(np.isnan(t.values[c]).sum()) for c in columns}, t.rows)


def load_series(path: str, *, columns=None, missing: str = "refuse", max_bytes: int = MAX_BYTES,
                max_rows: int = MAX_ROWS) -> torch.Tensor:
    """The chosen columns of a CSV (default: every column but the index) as raw values (L, C) float32,
    gaps handled as ``missing`` says (see the module's docstring).

    Refuses the whole file (ValueError, one line) when it is missing, empty, has no header, an unnamed or
    repeated column, a chosen column that is unknown, the date index, or holds a non-numeric or infinite
    cell (naming column and data row, counted from 1 after the header), a gap while ``missing`` is
    'refuse' (naming the rows), a constant column, or is huge. Parsed files are cached per (path, mtime,
    size, choice); the checks on an invalid file run on every call."""
    return _read(path, _columns(columns), missing, max_bytes, max_rows)[1].clone()


def _read(path, columns, missing, max_bytes=MAX_BYTES, max_rows=MAX_ROWS):
    """(column names, raw values (L, C) float32: the cached tensor, not to be changed, values filled,
    rows dropped)."""
    if missing not in MISSING_MODES:
        raise ValueError(f"missing must be one of {', '.join(MISSING_MODES)}, got {missing!r}")
    return _chosen(_table(path, max_bytes, max_rows), columns, missing)


def _columns(columns):
    """``columns`` as a tuple of names, or None (every column)."""
    if columns is None:
        return None
    if isinstance(columns, str):
        columns = [c.strip() for c in columns.split(",") if c.strip()]
    return tuple(columns)


@dataclass(frozen=True, eq=False)
class _Table:
    header: tuple
    index: str | None
    index_kind: str | None
    values: dict        # {numeric column (the index too, if integers): float64 values, NaN in the gaps}
    bad: dict           # {column: the line that refuses it}
    rows: int


def _table(path, max_bytes=MAX_BYTES, max_rows=MAX_ROWS) -> _Table:
    try:
        st = os.stat(path)
    except (OSError, TypeError):
        raise ValueError(f"CSV file not found: {path}") from None
    if not os.path.isfile(path):
        raise ValueError(f"CSV path is not a file: {path}")
    if st.st_size > max_bytes:
        raise ValueError(f"CSV file is huge: {st.st_size:,} bytes, the limit is {max_bytes:,}")
    return _parse_csv(os.path.abspath(path), st.st_mtime_ns, st.st_size, max_bytes, max_rows)


@functools.lru_cache(maxsize=8)
def _parse_csv(path, mtime_ns, size, max_bytes, max_rows) -> _Table:
    """Cached on (path, mtime, size, limits); exceptions are not cached. The messages never name the path
    (the dashboard's uploads live on the server) and never pass on a codec's or parser's own words."""
    _check_text(path)
    try:  # header=None + str cells + blank lines kept: we check every cell ourselves and own the messages
        df = pd.read_csv(path, header=None, dtype=str, keep_default_na=False, skip_blank_lines=False,
                         nrows=max_rows + 2, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise ValueError("CSV file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ValueError(_parser_words(e)) from None
    df = df.fillna("").apply(lambda col: col.str.strip())
    blank = (df == "").all(axis=1).to_numpy()
    filled = np.flatnonzero(~blank)
    if len(filled) == 0:
        raise ValueError("CSV file is empty")
    df = df.iloc[filled[0]:filled[-1] + 1]   # blank lines before the header and after the last row: not data
    header, cells = list(df.iloc[0]), df.iloc[1:]
    if all(not math.isnan(v) for v in pd.to_numeric(pd.Series(header), errors="coerce")):
        raise ValueError(f"CSV has no header row: the first line {','.join(header)[:60]!r} holds numbers, not "
                         "column names; add a first line naming the columns (e.g. date,value)")
    for sep, word in ((";", "semicolons"), ("\t", "tabs")):
        if len(header) == 1 and sep in header[0] and len(cells) and sep in cells.iloc[0, 0]:
            raise ValueError(f"CSV columns are separated by {word}, not commas; save the file as comma-separated "
                             "CSV")
    for i, name in enumerate(header):
        if name == "" or re.fullmatch(r"Unnamed: \d+", name):
            raise ValueError(f"CSV column {i + 1} has no name in the header "
                             "(an unnamed index column? drop it)")
        if name in header[:i]:
            raise ValueError(f"CSV column name {name!r} appears twice in the header; rename one")
    if len(cells) == 0:
        raise ValueError("CSV has a header but no data rows")
    if len(cells) > max_rows:
        raise ValueError(f"CSV is huge: more than {max_rows:,} data rows")
    values, bad = {}, {}
    for name, (_, text) in zip(header, cells.items()):
        gap = text.str.lower().isin(_MISSING).to_numpy()
        with np.errstate(over="ignore"):   # too large for float32 -> inf, reported below
            v = pd.to_numeric(text.where(~gap, "nan"), errors="coerce").to_numpy(np.float64)
            wrong = np.flatnonzero(~gap & ~np.isfinite(v.astype(np.float32)))
        if len(wrong):
            row, cell = wrong[0], text.iloc[wrong[0]]
            problem = "is not finite (inf, or too large for float32)" if not math.isnan(v[row]) else "is not a number"
            bad[name] = f"CSV column '{name}', data row {row + 1}: {cell!r} {problem}"
        else:
            values[name] = v
    index, kind = _index(header, cells, values)
    if kind == "dates":
        bad.pop(index)
    for name in header[1:]:
        if name in bad and _dates(cells[header.index(name)]) is not None:
            bad[name] += " (a date/time column is the index only when it comes first)"
    return _Table(tuple(header), index, kind, values, bad, len(cells))


# what files renamed .csv by mistake begin with
_SIGNATURES = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
               (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a ZIP archive, such as an Excel .xlsx workbook"),
               (b"\xd0\xcf\x11\xe0", "an Office document, such as an Excel .xls workbook"),
               (b"\x1f\x8b", "a gzip archive"), (b"SQLite format 3\x00", "an SQLite database"))
_CONTROL = bytes(set(range(32)) - set(b"\t\n\r\f\v") | {127})   # bytes that text does not hold
_SAVE_AS = "save it as UTF-8 CSV (in Excel: Save As, 'CSV UTF-8')"


def _check_text(path) -> None:
    """ValueError (in a user's words) unless the file is UTF-8 text (a UTF-8 byte-order mark allowed): binary
    data (an image, a workbook, random bytes), UTF-16 text or another encoding is refused before pandas
    reads it."""
    with open(path, "rb") as f:
        data = f.read()
    for magic, what in _SIGNATURES:
        if data.startswith(magic):
            raise ValueError(f"this file is not a CSV table: it holds binary data ({what}), not text")
    if _utf16(data[:4096]):
        raise ValueError(f"this file is UTF-16 text, not UTF-8; {_SAVE_AS}")
    if b"\x00" in data or len(data) - len(data.translate(None, _CONTROL)) > 0.005 * len(data):
        raise ValueError("this file is not a CSV table: it holds binary data, not text")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ValueError(f"this file is not UTF-8 text (byte 0x{data[e.start]:02x} on line {line}: Latin-1 or "
                         f"Windows-1252 text?); {_SAVE_AS}") from None


def _utf16(head: bytes) -> bool:
    """Whether the file's first bytes are UTF-16 text: a byte-order mark, or (mostly ASCII text without one) a
    zero byte in every other place and hardly any in the others."""
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return True
    zeros = sorted((head[0::2].count(0), head[1::2].count(0)))
    half = len(head) // 2
    return half >= 2 and zeros[1] > 0.4 * half and zeros[0] < 0.1 * half


def _parser_words(e: Exception) -> str:
    """pandas' complaint about a text file as a one-line refusal (without the file's path)."""
    text = str(e)
    m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if m:
        want, line, saw = m.groups()
        return (f"could not parse the CSV file as a table: line {line} has {saw} cells where the first line has "
                f"{want}; every line needs one cell per column")
    m = re.search(r"EOF inside string starting at row (\d+)", text)
    if m:
        return (f"could not parse the CSV file as a table: a quote (\") opens a cell on line {int(m.group(1)) + 1} "
                "and never closes")
    return "could not parse the CSV file as a table of comma-separated values"


def _dates(text: pd.Series):
    """The cells as timestamps (NaT in the gaps) when every non-blank cell is a date/time, else None."""
    given = ~text.str.lower().isin(_MISSING)
    if not given.any() or pd.to_numeric(text[given], errors="coerce").notna().any():
        return None
    for fmt in ("ISO8601", "mixed"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                stamps = pd.to_datetime(text.where(given, None), errors="coerce", format=fmt)
            except (ValueError, TypeError, OverflowError):
                continue
        if stamps[given].notna().all():
            return stamps
    return None


def _index(header, cells, values):
    """(name, 'dates' | 'integers') of the first column when it is the file's index, else (None, None): dates
    / times in every cell that is not blank, or at least three strictly increasing integers with a value in
    every row that is not a blank line."""
    if len(header) < 2:
        return None, None
    name, text = header[0], cells[cells.columns[0]]
    stamps = _dates(text)
    if stamps is not None:
        given = stamps.dropna()
        back = np.flatnonzero((given.diff() <= pd.Timedelta(0)).to_numpy())
        if len(back):
            now, before = given.index[back[0]], given.index[back[0] - 1]
            raise ValueError(f"CSV index column '{name}' does not move forward in time at data row "
                             f"{now - cells.index[0] + 1} ({text.loc[now]!r} after {text.loc[before]!r}); "
                             "sort the file oldest first")
        return name, "dates"
    v = values.get(name)
    blank_rows = (cells == "").all(axis=1).to_numpy()
    if v is not None and not (np.isnan(v) & ~blank_rows).any():   # an index has a value in every row with data
        given = text[~np.isnan(v)]
        if len(given) > 2 and given.str.fullmatch(_INTEGER.pattern).all() and (np.diff(v[~np.isnan(v)]) > 0).all():
            return name, "integers"
    return None, None


def _rows_text(rows) -> str:
    """Data rows (0-based positions, sorted) as people read them: 'data row 4', 'data rows 4, 9-12 and 3 more'
    (at most ROWS_NAMED rows or ranges named, then how many rows are left)."""
    runs = []
    for r in rows:
        if runs and r == runs[-1][1] + 1:
            runs[-1][1] = r
        else:
            runs.append([r, r])
    shown = [f"{a + 1}" if a == b else f"{a + 1}-{b + 1}" for a, b in runs[:ROWS_NAMED]]
    rest = sum(b - a + 1 for a, b in runs[ROWS_NAMED:])
    more = f" and {rest} more" if rest else ""
    return ("data row " if len(rows) == 1 else "data rows ") + ", ".join(shown) + more


@functools.lru_cache(maxsize=16)
def _chosen(t: _Table, columns, missing):
    """(names, raw values (L, C) float32, values filled, rows dropped) of the chosen columns of table ``t``
    (cached with it: a changed file is a new table)."""
    if columns is None:
        names = [c for c in t.header if c != t.index]
        for c in names:
            if c in t.bad:
                raise ValueError(t.bad[c])
    else:
        if not columns:
            raise ValueError("columns must name at least one column of the CSV")
        for i, c in enumerate(columns):
            if not isinstance(c, str) or c not in t.header:
                offered = ", ".join(x for x in t.header if x in t.values and x != t.index)
                raise ValueError(f"CSV has no column {c!r}; its numeric columns: {offered or 'none'}")
            if c in columns[:i]:
                raise ValueError(f"columns names {c!r} twice")
            if c == t.index and t.index_kind == "dates":
                raise ValueError(f"CSV column '{c}' holds dates/times: it is the file's index, not a series")
            if c in t.bad:
                raise ValueError(t.bad[c])
        names = list(columns)
    raw = np.stack([t.values[c] for c in names], axis=1)                 # (L, C) float64, NaN in the gaps
    gaps = np.isnan(raw)
    filled = dropped = 0
    if gaps.any():
        rows = np.flatnonzero(gaps.any(axis=1))
        if missing == "refuse":
            where = [c for c, g in zip(names, gaps.T) if g.any()]
            what = (f"column '{where[0]}' has" if len(where) == 1 else
                    "columns " + ", ".join(f"'{c}'" for c in where) + " have")
            n = int(gaps.sum())
            raise ValueError(f"CSV {what} {n} missing value{'s' if n != 1 else ''} (blank or NA) at "
                             f"{_rows_text(rows)}; to use it, choose missing 'interpolate' or 'drop' (--missing)")
        if missing == "interpolate":
            frame = pd.DataFrame(raw).interpolate(method="linear", limit_area="inside")
            raw = frame.to_numpy(np.float64)
            filled = int(gaps.sum() - np.isnan(raw).sum())
        keep = ~np.isnan(raw).any(axis=1)          # interpolate: only the ends are left; drop: every gap row
        dropped = int((~keep).sum())
        raw = raw[keep]
        if len(raw) == 0:
            raise ValueError("CSV has no row without a missing value in the chosen columns")
    for c, col in zip(names, raw.T):
        if len(col) > 1 and col.min() == col.max():
            raise ValueError(f"CSV column '{c}' is constant ({col[0]:g}); drop it")
    return tuple(names), torch.from_numpy(raw.astype(np.float32)), filled, dropped


def _of(cfg):
    """`_read` of the series a task config names."""
    return _read(cfg.csv_path, _columns(cfg.columns), cfg.missing)


def channels(cfg) -> int:
    """The number of series (columns) the task config forecasts (ValueError as in `load_series`)."""
    return len(_of(cfg)[0])


def facts(cfg) -> dict:
    """What a run on this series records about it: {'forecast_columns': the columns forecast, comma-separated,
    'missing_filled': values filled by interpolation, 'missing_dropped': rows dropped}."""
    names, _, filled, dropped = _of(cfg)
    return {"forecast_columns": ",".join(names), "missing_filled": filled, "missing_dropped": dropped}


# ---------------------------------------------------------------- the task's configuration

def validate(cfg) -> None:
    """Raise ValueError (one line) unless cfg names a readable series, test_fraction lies in (0, 1),
    skill_margin is a finite number below 1, missing is one of MISSING_MODES, period is None or an integer
    >= 2 whose seasonal lag fits in the training part, both the train and the test part hold at least
    seq_len + delay rows, and no baseline forecasts every test target exactly (no skill to measure)."""
    if not isinstance(cfg.csv_path, (str, os.PathLike)) or not str(cfg.csv_path):
        raise ValueError("csv_path must name a CSV file for task 'csv'")
    tf = cfg.test_fraction
    if isinstance(tf, bool) or not isinstance(tf, (int, float)) or not 0 < tf < 1:
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {tf!r}")
    m = cfg.skill_margin
    if isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m) or not m < 1:
        raise ValueError(f"skill_margin must be a number below 1 (skill is at most 1), got {m!r}")
    if cfg.missing not in MISSING_MODES:
        raise ValueError(f"missing must be one of {', '.join(MISSING_MODES)}, got {cfg.missing!r}")
    p = cfg.period
    if p is not None and (isinstance(p, bool) or not isinstance(p, int) or p < 2):
        raise ValueError(f"period must be a whole number of rows >= 2 (or none), got {p!r}")
    if cfg.columns is not None and (isinstance(cfg.columns, str) or
                                    not all(isinstance(c, str) for c in cfg.columns)):
        raise ValueError(f"columns must be column names, got {cfg.columns!r}")
    train, test = splits(cfg)
    if p is not None and seasonal_lag(p, cfg.delay) > train.shape[0]:
        raise ValueError(f"period {p} looks {seasonal_lag(p, cfg.delay)} rows back at delay {cfg.delay}, more "
                         f"than the training part's {train.shape[0]} rows")
    # a baseline that is exact on every target a test window can score leaves no skill to measure (0 / 0)
    z = torch.cat([train, test])
    rows = torch.arange(train.shape[0] + 2 * cfg.delay, z.shape[0])     # the targets of steps t >= d
    if torch.equal(z[rows], z[rows - cfg.delay]):
        raise ValueError(f"persistence (the value {cfg.delay} step{'s' if cfg.delay != 1 else ''} back) forecasts "
                         "every test target exactly: the test part is constant, there is nothing to forecast")
    if p is not None and torch.equal(z[rows], z[rows - seasonal_lag(p, cfg.delay)]):
        raise ValueError(f"seasonal persistence with period {p} forecasts every test target exactly (the series "
                         "repeats itself): no forecast can beat it; leave the period out")


# ---------------------------------------------------------------- train / test parts

def _split_sizes(length: int, test_fraction: float) -> tuple[int, int]:
    n_test = int(round(length * test_fraction))
    return length - n_test, n_test


def splits(cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) parts of the series, z-scored with the training part's mean/std."""
    names, raw, _, _ = _of(cfg)
    need = cfg.seq_len + cfg.delay
    n_train, n_test = _split_sizes(raw.shape[0], cfg.test_fraction)
    if min(n_train, n_test) < need:
        total = math.ceil(need / min(cfg.test_fraction, 1 - cfg.test_fraction))
        while min(_split_sizes(total - 1, cfg.test_fraction)) >= need:
            total -= 1
        while min(_split_sizes(total, cfg.test_fraction)) < need:
            total += 1
        raise ValueError(
            f"CSV has {raw.shape[0]} rows ({n_train} train, {n_test} test); each part needs a sequence of "
            f"{cfg.seq_len} steps plus the delay {cfg.delay} = {need} rows, i.e. at least {total} rows at "
            f"test_fraction {cfg.test_fraction}: a longer series, or a shorter delay")
    return _zscored(names, raw, n_train)


@functools.lru_cache(maxsize=8)
def _zscored(names, raw, n_train):
    # raw is the cached tensor of _chosen (hashed by identity), so this cache follows it
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


# ---------------------------------------------------------------- the scored test windows and the baselines

def test_starts(cfg, n: int) -> torch.Tensor:
    """Where the scored test windows start in the test part: every possible start when there are at most
    ``n``, else ``n`` evenly spaced ones (the first and the last included). Deterministic."""
    part = splits(cfg)[1]
    last = part.shape[0] - (cfg.seq_len + cfg.delay)                    # the last possible start
    count = min(int(n), last + 1)
    return torch.from_numpy(np.unique(np.floor(np.linspace(0, last, count) + 0.5).astype(np.int64)))


def test_windows(cfg, n: int) -> torch.Tensor:
    """The scored test windows (T + d, N, C) at `test_starts`: what every evaluation scores."""
    part = splits(cfg)[1]
    starts = test_starts(cfg, n)
    return part[starts[None, :] + torch.arange(cfg.seq_len + cfg.delay)[:, None]]


def baseline_forecasts(cfg, n: int) -> dict[str, torch.Tensor]:
    """The naive forecasts of the targets of `test_windows` ``(cfg, n)``: {'persistence': (T, N, C)} and,
    when ``cfg.period`` is set, 'seasonal' (T, N, C); row t forecasts target t (the series d steps after
    input t). Persistence is input t itself; seasonal persistence the value ``seasonal_lag(P, d)`` steps
    before the target, read from the series' past where it precedes the window (steps t < d, which are
    never scored, are filled the same way)."""
    train, test = splits(cfg)
    series = torch.cat([train, test])                                     # (L, C) z-scored
    target_rows = train.shape[0] + test_starts(cfg, n)[None, :] + cfg.delay + torch.arange(cfg.seq_len)[:, None]
    out = {"persistence": series[target_rows - cfg.delay]}
    if cfg.period is not None:
        out["seasonal"] = series[(target_rows - seasonal_lag(cfg.period, cfg.delay)).clamp(min=0)]
    return out
