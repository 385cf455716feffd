"""What every command shares: the one-line error (``_fail``), strict JSON and plain tables on stdout, and
the store and executor arguments with their checks (a bad value is one line on stderr and exit 2).

Loads no torch: ``status`` and ``cancel`` start fast."""
from __future__ import annotations

import json
import math
import sys

from .. import settings
from ..options import _int


def _fail(prog: str, message: str):
    sys.stderr.write(f"floss_core {prog}: error: {message}\n")
    raise SystemExit(2)


def _strict(value):
    """``value`` with every non-finite float replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def _print_json(value) -> None:
    """One strict JSON object on stdout: a missing or undefined figure is null, never NaN."""
    print(json.dumps(_strict(value), allow_nan=False, default=lambda x: None))


def _fmt(x, nd=3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def _print_table(rows: list[dict], columns: list[tuple[str, str]]) -> None:
    cells = [[h for _, h in columns]] + [[_fmt(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


# ------------------------------------------------------------------------------------ the store
def _add_store_arg(p) -> None:
    p.add_argument("--store", default=None, help="store file (default: $FLOSS_STORE, else ./floss_data/floss.db)")


def _open_store(prog: str, path, *, create: bool = True, write: bool = True):
    """The store at ``path`` (default location if None); a bad file, or one this user may not write (when
    ``write``) or read, is one line on stderr naming the path and exit 2. ``write=False`` (status, report):
    a store this user may not write is opened read-only."""
    from pathlib import Path

    from ..store import Store, StoreError, default_store_path

    path = Path(path) if path is not None else default_store_path()
    if not create and not path.exists():
        _fail(prog, f"no store at {path}; queue an experiment with submit first, or pass --store PATH")
    try:
        return Store(path, create=create, read_only=False if write else None)
    except StoreError as e:
        _fail(prog, str(e))


# ------------------------------------------------------------------------------------ the executor
def _add_executor_args(p) -> None:
    p.add_argument("--executor", choices=["local", "dask"], default=None,
                   help="local (this machine) or dask (a Dask cluster); default $FLOSS_EXECUTOR, else local")
    p.add_argument("--scheduler", default=None,
                   help="Dask scheduler address, e.g. tcp://HOST:8786 (default $FLOSS_SCHEDULER)")
    p.add_argument("--workers", type=_int, default=None,
                   help="local: parallel worker processes, one torch thread each, the seeds shared out "
                        "among them (default $FLOSS_WORKERS, else auto = one per CPU core, at most 8)")


def _executor_options(prog: str, a) -> dict:
    """--executor / --scheduler / --workers, each defaulting to its FLOSS_* setting (a bad one: exit 2)."""
    try:
        a.executor = a.executor or settings.get("FLOSS_EXECUTOR")
        a.scheduler = a.scheduler or settings.get("FLOSS_SCHEDULER")
        workers = settings.get("FLOSS_WORKERS") if a.workers is None else a.workers
    except ValueError as e:
        _fail(prog, str(e))
    if workers == "auto":
        from ..runner import default_workers

        workers = default_workers()
    if workers < 1:
        _fail(prog, f"workers must be >= 1, got {workers}")
    if a.executor == "dask" and not a.scheduler:
        _fail(prog, "executor dask needs --scheduler tcp://HOST:8786 (or FLOSS_SCHEDULER)")
    a.workers = workers
    return {"executor": a.executor, "scheduler": a.scheduler, "max_workers": workers}


def _export(prog: str, store_path, out, write) -> None:
    """Export a report: ``write(store)`` writes it from the store at ``store_path`` (opened read-only where it
    must be) to ``out`` and returns the path, printed; a missing id (KeyError), bad input (ValueError), no
    Chromium for a PDF or a path that cannot be written is one line on stderr and exit 2."""
    from ..report import ChromiumMissing

    store = _open_store(prog, store_path, create=False, write=False)
    try:
        path = write(store)
    except KeyError as e:
        _fail(prog, str(e.args[0]) if e.args else "not found")
    except (ValueError, ChromiumMissing) as e:
        _fail(prog, str(e))
    except OSError as e:
        _fail(prog, f"cannot write {out}: {e.strerror or e}")
    finally:
        store.close()
    print(path)
