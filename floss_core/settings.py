"""Every ``FLOSS_*`` environment variable, in one table: its default, its parser and what it does.

``get(name)`` is the only place the library reads them. A value is parsed once (memoised on its text),
so a hot path such as the kernel's ``FLOSS_NATIVE`` check costs a dictionary lookup, while a variable
changed at run time (a test, a benchmark switching the compiled loop off) still takes effect. A bad
value raises ``ValueError`` with one line naming the variable and what it accepts; the CLI turns that
into exit 2, the dashboard into ``st.error``. The README's table "Environment variables" lists them
all (a test keeps it in step with ``SETTINGS``).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable

_TRUE, _FALSE = ("1", "on", "true", "yes"), ("0", "off", "false", "no")


def _flag(name: str, text: str) -> bool:
    v = text.strip().lower()
    if v not in _TRUE + _FALSE:
        raise ValueError(f"{name} must be 0 or 1, got {v!r}")
    return v in _TRUE


def _positive_int(text: str) -> int | None:
    try:
        n = int(text)
    except ValueError:
        return None
    return n if n >= 1 else None


def _workers(name: str, text: str) -> int | str:
    if text.strip() == "auto":
        return "auto"
    n = _positive_int(text)
    if n is None:
        raise ValueError(f"{name} must be an integer >= 1 or auto, got {text!r}")
    return n


def _threads(name: str, text: str) -> int:
    n = _positive_int(text)
    if n is None:
        raise ValueError(f"{name} must be an integer >= 1, got {text!r}")
    return n


def _seconds(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a number of seconds > 0, got {text!r}")
    return value


def _executor(name: str, text: str) -> str:
    v = text.strip()
    if v not in ("local", "dask"):
        raise ValueError(f"unknown executor {v!r} in {name}; choose one of local, dask")
    return v


def _text(name: str, text: str) -> str:
    return text


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any                          # what an unset (or empty) variable means
    parse: Callable[[str, str], Any]      # (name, text) -> value; ValueError with one line on bad text
    help: str                             # one line for the README's table


SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("FLOSS_STORE", None, _text,
            "the experiment store (SQLite file); unset: `./floss_data/floss.db`"),
    Setting("FLOSS_WORKERS", "auto", _workers,
            "worker processes of a local worker: an integer >= 1, or `auto` = one per CPU core, at most 8"),
    Setting("FLOSS_EXECUTOR", "local", _executor,
            "where a worker trains: `local` (this machine) or `dask` (a Dask cluster)"),
    Setting("FLOSS_SCHEDULER", None, _text,
            "the Dask scheduler's address, e.g. `tcp://HOST:8786` (needed with `FLOSS_EXECUTOR=dask`)"),
    Setting("FLOSS_THREADS", 1, _threads,
            "torch threads of a worker process or Dask task (1: every layout gives the same numbers)"),
    Setting("FLOSS_STALE_S", 15.0, _seconds,
            "seconds without a heartbeat before a worker counts as dead and its runs are queued again"),
    Setting("FLOSS_PER_SCHEDULE", False, _flag,
            "`1`: one job per schedule everywhere (finer progress and crash recovery, slower)"),
    Setting("FLOSS_NO_WORKER", False, _flag,
            "`1`: the dashboard queues experiments but starts no worker (start one with `python -m floss_core worker`)"),
    Setting("FLOSS_NATIVE", True, _flag,
            "`0`: the training kernel's time loop (same numbers) and the flossing window's loop (equal to rounding) "
            "run in Python instead of compiled"),
    Setting("FLOSS_CHROMIUM", None, _text,
            "the Chromium binary for PDF reports; unset: `chromium` on PATH, else `/usr/bin/chromium`"),
)}

_parsed: dict[tuple[str, str], Any] = {}


def get(name: str) -> Any:
    """The value of ``name`` (one of ``SETTINGS``) now: its default when unset or empty, else its parse."""
    setting = SETTINGS[name]
    text = os.environ.get(name, "")
    if not text.strip():
        return setting.default
    key = (name, text)
    if key not in _parsed:
        _parsed[key] = setting.parse(name, text)
    return _parsed[key]


def readme_table() -> str:
    """The Markdown table of every variable, its default and its meaning (the README holds it)."""
    rows = ["| variable | default | what it does |", "| --- | --- | --- |"]
    for s in SETTINGS.values():
        default = "unset" if s.default is None else {True: "1", False: "0"}.get(s.default, s.default) \
            if isinstance(s.default, bool) else s.default
        rows.append(f"| `{s.name}` | {default} | {s.help} |")
    return "\n".join(rows)
